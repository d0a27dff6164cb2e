"""Training-free methods derived from a trained generator checkpoint: the same weights, other inference settings.

A derived method (`Recipe("derive", derive=...)`) writes an ordinary generator checkpoint whose hyperparameters
switch on modules or sampling options that add no parameter, so `xmgie evaluate`, `xmgie edit` and the demo read it
like any other.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from xmgie.checkpoints import read_checkpoint
from xmgie.errors import UserError


def derive_generator(source_ckpt: str | Path, out: str | Path, method: str, modules: dict[str, dict[str, Any]],
                     sampling: dict[str, Any]) -> Path:
    """Write `out`: the generator of `source_ckpt` (a run with every module off) with `modules` and `sampling`
    merged into its hyperparameters, and its weights unchanged.

    1. read the source and check it is a generator without modules; 2. rebuild its LightningModule with the new
    settings; 3. load its weights (a derived method adds no parameter: every key must fit); 4. save with the
    source's data facts and where it came from.
    """
    from xmgie.training.lit_generator import CHECKPOINT_KIND, XMGIEModule

    ckpt = read_checkpoint(source_ckpt)  # 1.
    marker = ckpt.get("xmgie", {}) if isinstance(ckpt, dict) else {}
    if marker.get("kind") != CHECKPOINT_KIND:
        raise UserError(f"{source_ckpt} is not an xMGIE generator checkpoint: {method} is derived from one (mgie)")
    hp = dict(ckpt["hyper_parameters"])
    on = [m for m, c in hp["modules"].items() if c.get("enabled")]
    if on:
        raise UserError(f"{method} is derived from a generator without modules; {source_ckpt} has {', '.join(on)} on")
    hp["modules"] = {**hp["modules"], **{name: {**hp["modules"].get(name, {}), **cfg}  # 2.
                                         for name, cfg in modules.items()}}
    hp["sampling"] = {**hp["sampling"], **sampling}
    module = XMGIEModule(**hp)
    missing, unexpected = module.load_state_dict(ckpt["state_dict"], strict=False)  # 3.
    if missing or unexpected:
        raise UserError(f"{source_ckpt}: weights do not fit {method}'s generator (missing {missing[:3]}, "
                        f"unexpected {unexpected[:3]})")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),  # 4.
                "xmgie": {**marker, "method": method, "derived_from": str(source_ckpt)}}, out)
    return out
