"""What the image-space losses cost at full scale: the generator's training computation (forward, loss terms,
backward; no optimiser step) of the `ip2p` shape (Stable Diffusion 1.5 U-Net, VAE and CLIP text tower, random
init) with X_edit decoded by the VAE for every row (`loss.pixel_rows: 0`) or for the k least-noisy rows, side by
side in one process (the variants alternate, the median of each is kept).

    .venv/bin/python benchmarks/pixel_losses.py                       # CPU: 128 px, batch 4 (minutes)
    .venv/bin/python benchmarks/pixel_losses.py --resolution 512      # a GPU

Writes benchmarks/results/pixel_losses_<device>.json. The modules are off (their cost is bench_gpu.py's
subject); the terms are the paper's λ_recon = 1 and λ_adv = 0.1 with gradient checkpointing, as in
experiments/ip2p.yaml.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_gpu import sync  # noqa: E402


def build(device: torch.device):
    from xmgie.models import GeneratorConfig
    from xmgie.training.config import LossConfig, OptimConfig
    from xmgie.training.lit_generator import XMGIEModule

    torch.manual_seed(0)
    gen = GeneratorConfig(size="ip2p", prediction_type="epsilon", beta_schedule="scaled_linear", beta_start=0.00085,
                          beta_end=0.012, residual=False, mask_channel=True, gradient_checkpointing=True)
    module = XMGIEModule(generator=gen, loss=LossConfig(recon=1.0, adv=0.1), optim=OptimConfig(ema_decay=0.0))
    return module.to(device).train()


def step(module, batch: dict, device: torch.device) -> float:
    """Seconds for one generator forward + loss terms + backward."""
    module.zero_grad(set_to_none=True)
    sync(device)
    start = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = module.generator_forward(batch)
        terms = module.generator_terms(out, adversarial=True)
        loss = sum(getattr(module.loss_cfg, name) * value for name, value in terms.items())
    loss.backward()
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=int, default=None, help="default: 512 on a GPU, 128 on a CPU")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--rows", type=int, nargs="+", default=[1], help="pixel_rows values compared with every row")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out")
    args = p.parse_args()
    from data_modules.base import collate
    from data_modules.synthetic import ShapesDataModule

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolution = args.resolution or (512 if device.type == "cuda" else 128)
    module = build(device)
    ds = ShapesDataModule(resolution=resolution).dataset("train")
    batch = {k: v.to(device) if torch.is_tensor(v) else v
             for k, v in collate([ds[i] for i in range(args.batch_size)]).items()}
    variants = [0, *args.rows]
    times: dict[int, list[float]] = {k: [] for k in variants}
    for rep in range(args.repeats + 1):  # the first round warms up
        for k in variants:
            module.loss_cfg = dataclasses.replace(module.loss_cfg, pixel_rows=k)
            seconds = step(module, batch, device)
            if rep:
                times[k].append(seconds)
    every = statistics.median(times[0])
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
              "threads": torch.get_num_threads(), "torch": torch.__version__, "shape": "ip2p", "random_init": True,
              "resolution": resolution, "batch_size": args.batch_size, "repeats": args.repeats,
              "median_s": {("every row" if k == 0 else f"pixel_rows={k}"): round(statistics.median(v), 3)
                           for k, v in times.items()},
              "ratio_to_every_row": {f"pixel_rows={k}": round(statistics.median(times[k]) / every, 3)
                                     for k in args.rows}}
    out = Path(args.out or REPO / "benchmarks/results" / f"pixel_losses_{device.type}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
