"""`xmgie baseline train`: a GAN baseline on a dataset for a fixed number of steps, with the data settings of the
generator's run (experiments/data/<dataset>.yaml: resolution, batch size) so the comparison is like for like."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

from xmgie.errors import UserError
from xmgie.training.stage_trainer import data_facts, stage_datamodule

DATA_CONFIGS = Path(__file__).resolve().parents[2] / "experiments" / "data"


def data_defaults(dataset: str) -> dict[str, Any]:
    """resolution and batch_size of experiments/data/<dataset>.yaml (what `make train` uses), if it exists."""
    path = DATA_CONFIGS / f"{dataset}.yaml"
    if not path.is_file():
        return {}
    args = (yaml.safe_load(path.read_text()) or {}).get("init_args", {})
    return {k: args[k] for k in ("resolution", "batch_size") if k in args}


def train_baseline(method: str, dataset: str, out: str | Path, steps: int = 200, batch_size: int | None = None,
                   resolution: int | None = None, seed: int = 0, root: str | None = None, channels: int = 32,
                   val_batches: int = 4) -> dict[str, Any]:
    """Train `method` (a GAN baseline) and save its checkpoint at `out` and a .json summary beside it.

    1. the dataset at the generator run's resolution and batch size (overridable); 2. `steps` generator updates;
    3. PSNR/SSIM of one-pass edits on `val_batches` batches of the val split; 4. save.
    """
    from xmgie.methods.gan import GANConfig
    from xmgie.methods.registry import gan_baselines

    gans = gan_baselines()
    if method not in gans:
        raise UserError(f"unknown GAN baseline {method!r}; available: {', '.join(gans)}")
    defaults = data_defaults(dataset)
    dm = stage_datamodule(dataset, batch_size or defaults.get("batch_size", 16),  # 1.
                          resolution or defaults.get("resolution"), seed, root)
    dm.setup("fit")
    module = gans[method](GANConfig(channels=channels))
    module.data_info = data_facts(dm, getattr(dm, "hide_masked_source", False))
    start = time.perf_counter()
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_model_summary=False,
                        accelerator="auto", devices=1, num_sanity_val_steps=0, limit_val_batches=val_batches,
                        val_check_interval=None, check_val_every_n_epoch=None, enable_progress_bar=False)
    trainer.fit(module, train_dataloaders=dm.loader("train", shuffle=True))  # 2.
    train_s = time.perf_counter() - start
    trainer.validate(module, dataloaders=dm.loader("val", shuffle=False), verbose=False)  # 3.
    val = {k.removeprefix("val/"): round(float(v), 4) for k, v in trainer.callback_metrics.items()
           if k.startswith("val/")}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(out)  # 4.
    summary = {"method": method, "dataset": dm.name, "steps": steps, "batch_size": dm.batch_size,
               "resolution": dm.resolution, "seed": seed, "train_s": round(train_s, 1),
               "parameters": sum(p.numel() for p in module.parameters()), "val": val, "checkpoint": str(out)}
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def load_baseline(ckpt: dict, device: str | torch.device = "cpu", path: str | Path = "checkpoint"):
    """The GANBaseline of a checkpoint dict read by `read_checkpoint`."""
    from xmgie.checkpoints import build_module
    from xmgie.methods.registry import gan_baselines

    method = ckpt["xmgie"].get("method")
    gans = gan_baselines()
    if method not in gans:
        raise UserError(f"checkpoint of unknown baseline {method!r}; known: {', '.join(gans)}")
    module = build_module(gans[method], ckpt["hyper_parameters"], ckpt["state_dict"], path)
    module.on_load_checkpoint(ckpt)
    return module.to(device).eval()
