"""Speed and memory of the full-scale `ip2p` model (Stable Diffusion 1.5 shape, random init: no weights needed).

    benchmarks/gpu.sh                 one GPU: 512x512, DDIM 20 and 50 steps, training at batch 4 in bf16
    benchmarks/gpu.sh --smoke         any machine, in seconds: the ip2p-mini shape at 64 px (checks the script)

For each variant — `xmgie` (PFB, CAM, IE, GB on, experiments/ip2p.yaml) and `base` (all four off) — it trains a
few steps through the same LightningCLI config as `make train CONFIG=experiments/ip2p.yaml` (bf16 autocast,
gradient checkpointing, EMA) and then edits one image: median seconds per training step and per edit
(InstructPix2Pix's two guidance scales, 3 U-Net passes per step), peak GPU memory of each; `xmgie_pixel_rows_1`
trains only, with the image-space losses on the least-noisy row of each batch (`loss.pixel_rows: 1`). Then GB on
a 1024² image (its device path: torch distance transform) against one fixed-σ Kornia blur. Writes
benchmarks/results/gpu_<device>.json (gpu_smoke.json with --smoke).
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench import StepTimer  # noqa: E402
from bench_modules import bench_gb  # noqa: E402

PAPER_CLAIM_S = (1.0, 2.0)  # seconds per edited image on one GPU (the paper's abstract)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


class SyncedStepTimer(StepTimer):
    """Step times that include the GPU's queued work."""

    def __init__(self, device: torch.device):
        super().__init__()
        self.device = device

    def on_train_batch_start(self, *args) -> None:
        sync(self.device)
        super().on_train_batch_start(*args)

    def on_train_batch_end(self, *args) -> None:
        sync(self.device)
        super().on_train_batch_end(*args)


def first_host_sync(fn) -> str:
    """'none' when `fn` runs with CUDA's sync debug mode at "error", else the first synchronising call's message
    (the uploads before the loop count too: pageable host-to-device copies synchronise)."""
    if not torch.cuda.is_available():
        return "not checked: no CUDA device"
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        fn()
        return "none"
    except RuntimeError as err:
        return str(err).strip().splitlines()[0][:300]
    finally:
        torch.cuda.set_sync_debug_mode("default")


# variant: (the four modules on, loss.pixel_rows, edits timed too)
VARIANTS = {"xmgie": (True, 0, True), "base": (False, 0, True), "xmgie_pixel_rows_1": (True, 1, False)}


def cli_args(variant: str, args: argparse.Namespace, identity: Path, root: str) -> list[str]:
    """experiments/ip2p.yaml at random init, on `shapes` at the benchmark's resolution and batch size."""
    modules, pixel_rows, _ = VARIANTS[variant]
    on = "true" if modules else "false"
    return ["--config", str(REPO / "experiments/ip2p.yaml"), "--data", str(REPO / "experiments/data/shapes.yaml"),
            f"--data.init_args.resolution={args.resolution}", f"--data.init_args.batch_size={args.batch_size}",
            f"--data.init_args.num_workers={args.workers}", "--model.generator.pretrained=null",
            f"--model.generator.size={args.size}", f"--trainer.accelerator={args.accelerator}",
            f"--trainer.max_steps={args.warmup + args.train_steps}", "--trainer.limit_val_batches=0",
            "--trainer.enable_progress_bar=false", "--trainer.logger=false", "--checkpoint_every=1000000",
            f"--trainer.default_root_dir={root}", f"--model.modules.ie.weights={identity}",
            f"--model.loss.pixel_rows={pixel_rows}",
            *(f"--model.modules.{m}.enabled={on}" for m in ("pfb", "cam", "ie", "gb"))]


def bench_variant(variant: str, args: argparse.Namespace, device: torch.device, tmp: Path) -> dict:
    from data_modules.base import collate
    from xmgie.training.lightning_cli import XMGIECLI
    from xmgie.training.lit_generator import XMGIEModule
    from data_modules.base import EditDataModule
    from xmgie.modules.identity import SmallIdentityCNN, save_identity_encoder

    # 1. training: a few steps through the real config; the first `warmup` steps are not timed
    identity = save_identity_encoder(SmallIdentityCNN(64), tmp / "identity.pt")  # timing needs no trained E_id
    timer = SyncedStepTimer(device)
    reset_peak(device)
    cli = XMGIECLI(XMGIEModule, EditDataModule, subclass_mode_data=True, run=False,
                   args=cli_args(variant, args, identity, str(tmp / variant)))
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(cli.model, cli.datamodule)
    sync(device)
    module = cli.model.to(device).eval()  # Lightning's teardown left it on the CPU
    n_unet = sum(p.numel() for p in module.generator.unet.parameters())
    train = {"median_step_s": round(statistics.median(timer.times[args.warmup:]), 4), "batch_size": args.batch_size,
             "steps_timed": len(timer.times[args.warmup:]), "peak_gpu_memory_gb": peak_memory_gb(device)}
    if not VARIANTS[variant][2]:  # training only: what the image-space terms cost
        result = {"modules": module.modules_cfg.enabled, "pixel_rows": VARIANTS[variant][1], "training_bf16": train}
        del cli, module
        gc.collect()
        return result
    # 2. editing one image at the benchmark's resolution with both guidance scales (3 U-Net passes a step)
    batch = collate([cli.datamodule.dataset("test")[0]])
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    edit = {}
    for steps in args.steps:
        reset_peak(device)
        times = []
        for i in range(args.repeats + 1):  # the first call is a warm-up
            sync(device)
            t = time.perf_counter()
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
                module.edit(batch, steps=steps, guidance_text=7.5, guidance_image=1.5)
            sync(device)
            times.append(time.perf_counter() - t)
        edit[f"ddim{steps}"] = {"s_per_image": round(statistics.median(times[1:]), 4),
                                "peak_gpu_memory_gb": peak_memory_gb(device)}
    # 3. host syncs: a 2-step edit and one generator forward under CUDA's sync debug mode "error"
    def edit_once():
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
            module.edit(batch, steps=2, guidance_text=7.5, guidance_image=1.5)

    def forward_once():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            module.generator_forward(batch)

    syncs = {"edit": first_host_sync(edit_once), "training_forward": first_host_sync(forward_once)}
    result = {"modules": module.modules_cfg.enabled, "unet_parameters_m": round(n_unet / 1e6, 1),
              "training_bf16": train, "editing_bf16": edit, "host_syncs": syncs}
    del cli, module
    gc.collect()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="ip2p-mini at 64 px on whatever device there is")
    p.add_argument("--out", help="JSON to write (default benchmarks/results/gpu_<device>.json)")
    args = p.parse_args()
    sys.argv = sys.argv[:1]  # LightningCLI gets its arguments from cli_args only
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        sys.exit("bench_gpu: no CUDA device here; run on a GPU machine, or add --smoke to check the script on a CPU")
    device = torch.device("cuda" if cuda else "cpu")
    full = not args.smoke
    args.size, args.resolution = ("ip2p", 512) if full else ("ip2p-mini", 64)
    args.steps = (20, 50) if full else (2, 3)
    args.batch_size, args.warmup = 4, 3 if full else 1
    args.train_steps, args.repeats = (10, 3) if full else (2, 1)
    args.accelerator, args.workers = ("gpu" if cuda else "cpu"), 4 if full else 0
    name = torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine()
    torch.backends.cuda.matmul.allow_tf32 = True
    with tempfile.TemporaryDirectory() as tmp:
        variants = {v: bench_variant(v, args, device, Path(tmp)) for v in VARIANTS}
    gb = bench_gb(repeats=5, device=device.type, brute_force=False)  # GB's device path on a GPU
    result = {"device": name, "torch": torch.__version__, "shape": args.size, "resolution": args.resolution,
              "smoke": args.smoke, "random_init": True, "variants": variants, "gb_1024": gb,
              "paper_claim_s_per_image": list(PAPER_CLAIM_S)}
    out = Path(args.out or REPO / "benchmarks/results" /
               ("gpu_smoke.json" if args.smoke else f"gpu_{name.replace(' ', '_')}.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(out)


if __name__ == "__main__":
    main()
