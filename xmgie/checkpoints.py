"""Loading trained generator checkpoints with clear errors."""
from __future__ import annotations

from pathlib import Path

import torch

from xmgie.errors import UserError


def read_checkpoint(path: str | Path) -> dict:
    """Load a Lightning checkpoint dict on CPU; any problem is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated file, not a torch file …
        raise UserError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from None
    return ckpt


def load_generator_module(path: str | Path, device: str | torch.device = "cpu"):
    """A trained editor (eval mode) from `path`: an XMGIEModule (xMGIE, MGIE, GLIDE, PFB-Diff) or a GAN baseline
    (SISGAN, TAGAN, ManiGAN, HiFill); both edit with `.edit(batch, …)`. Refuses checkpoints of another kind."""
    from xmgie.baselines.gan import CHECKPOINT_KIND as BASELINE_KIND
    from xmgie.training.generator_module import CHECKPOINT_KIND, XMGIEModule

    ckpt = read_checkpoint(path)
    kind = ckpt.get("xmgie", {}).get("kind") if isinstance(ckpt, dict) else None
    if kind == BASELINE_KIND:
        from xmgie.baselines.train import load_baseline

        return load_baseline(ckpt, device)
    if kind != CHECKPOINT_KIND:
        found = f"kind {kind!r}" if kind else "no xmgie marker"
        raise UserError(f"{path} is not an xMGIE generator checkpoint ({found}); "
                        f"use runs/<dataset>/<name>/checkpoints/last.ckpt or best.ckpt")
    module = XMGIEModule(**ckpt["hyper_parameters"])
    module.load_state_dict(ckpt["state_dict"])
    module.on_load_checkpoint(ckpt)
    return module.to(device).eval()
