"""Speed and memory of the default config on this machine; writes benchmarks/results/<name>.json.

    python benchmarks/bench.py [--steps 40] [--out benchmarks/results/cpu.json]

Reports medians: training steps/s (one step = D update + G update on one batch of the default config),
peak resident memory, DDIM edit latency per image (32 steps, batch 1 and batch 16), and `shapes` render
time per sample. Timings are wall-clock on a shared machine: compare numbers from one run only.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


class StepTimer(L.Callback):
    def __init__(self):
        self.times: list[float] = []
        self._t = 0.0

    def on_train_batch_start(self, *args) -> None:
        self._t = time.perf_counter()

    def on_train_batch_end(self, *args) -> None:
        self.times.append(time.perf_counter() - self._t)


def bench_training(steps: int, extra_args: list[str] = ()) -> dict:
    from xmgie.training.lightning_cli import XMGIECLI
    from xmgie.training.lit_generator import XMGIEModule
    from data_modules.base import EditDataModule

    with tempfile.TemporaryDirectory() as tmp:
        timer = StepTimer()
        cli = XMGIECLI(XMGIEModule, EditDataModule, subclass_mode_data=True, run=False,
                       args=["--config", str(REPO / "experiments/train.yaml"), "--data",
                             str(REPO / "experiments/data/shapes.yaml"), f"--trainer.default_root_dir={tmp}",
                             f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=0",
                             "--trainer.enable_progress_bar=false", "--trainer.logger=false", *extra_args])
        cli.trainer.callbacks.append(timer)
        cli.trainer.fit(cli.model, cli.datamodule)
        warm = timer.times[5:]  # the first steps pay for allocation and kernel selection
        med = statistics.median(warm)
        return {"model": cli.model, "datamodule": cli.datamodule, "median_step_s": round(med, 4),
                "steps_per_s": round(1 / med, 3), "batch_size": cli.datamodule.batch_size,
                "resolution": cli.datamodule.resolution, "steps_timed": len(warm)}


def variant_args(variant: str, tmp: Path) -> list[str]:
    """CLI overrides of a variant. Timing does not depend on E_id's weights: a random encoder file stands in."""
    from xmgie.modules.identity import SmallIdentityCNN, save_identity_encoder

    weights = save_identity_encoder(SmallIdentityCNN(64), tmp / "identity.pt")
    return ["--config", str(REPO / f"experiments/ablation/{variant}.yaml"), f"--model.modules.ie.weights={weights}"]


def bench_edit(module, dm, repeats: int = 5) -> dict:
    from data_modules.base import collate

    ds = dm.dataset("test")
    out = {}
    for bs in (1, 16):
        batch = collate([ds[i] for i in range(bs)])
        module.edit(batch, steps=32)  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            module.edit(batch, steps=32)
            times.append((time.perf_counter() - t) / bs)
        out[f"ddim32_s_per_image_batch{bs}"] = round(statistics.median(times), 4)
    return out


def bench_render(n: int = 2000) -> dict:
    from data_modules.synthetic import make_sample

    t = time.perf_counter()
    for i in range(n):
        make_sample(i, 32)
    return {"shapes_render_ms_per_sample_32px": round((time.perf_counter() - t) / n * 1000, 3)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--out", default=str(REPO / "benchmarks/results/cpu.json"))
    p.add_argument("--variant", default="base", choices=("full", "base"),
                   help="all four modules (experiments/ablation/full.yaml) or none (ablation/base.yaml: the default)")
    p.add_argument("--skip-edit", action="store_true", help="time training only")
    args = p.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        train = bench_training(args.steps, variant_args(args.variant, Path(tmp)))
    module, dm = train.pop("model").eval(), train.pop("datamodule")
    with torch.no_grad():
        edit = {} if args.skip_edit else bench_edit(module, dm)
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                          "torch": torch.__version__},
              "config": "experiments/train.yaml + experiments/data/shapes.yaml", "variant": args.variant,
              "training": train, "editing": edit, **bench_render(),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
