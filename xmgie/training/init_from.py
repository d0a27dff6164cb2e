"""Fine-tuning from a trained editor (`--model.init_from=<checkpoint>`): the regime the paper's modules live in.

The new run's generator (U-Net, text tower), its EMA copy and the discriminator start from the base
checkpoint; the configured modules (PFB, CAM, IE, GB: every parameter under `plugins.`) start fresh. The
optimiser state does not travel: fine-tuning starts a new schedule.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from xmgie.checkpoints import read_checkpoint
from xmgie.errors import UserError

# GeneratorConfig fields that fix the weights' meaning: a base that differs in one of them is another model
ARCHITECTURE_FIELDS = ("size", "text", "prediction_type", "mask_channel", "pooled_text", "film",
                       "num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "residual")


def is_module_key(key: str) -> bool:
    """Whether a state-dict key belongs to one of the four modules (the generator's or the EMA's plugins)."""
    return key.startswith(("generator.plugins.", "ema.plugins."))


def check_architecture(base: dict[str, Any], current: dict[str, Any], path: str | Path) -> None:
    """base / current: the two runs' `generator` hyper-parameters; a differing architecture field is an error."""
    for name in ARCHITECTURE_FIELDS:
        if name in base and base[name] != current[name]:
            raise UserError(f"init_from {path}: its generator has {name}={base[name]!r}, this run "
                            f"{current[name]!r}; set --model.generator.{name} to match the base")


def match_state(base: dict[str, torch.Tensor], model: dict[str, torch.Tensor],
                path: str | Path) -> dict[str, torch.Tensor]:
    """The base tensors to load into `model`'s state dict. Every key of the model outside the modules must be in
    the base with the same shape, and every base key must be in the model: anything else is a one-line error
    naming the key. Module keys present in both load too (fine-tuning an already fine-tuned run)."""
    missing = [k for k in model if k not in base and not is_module_key(k)]
    if missing:
        raise UserError(f"init_from {path}: the base has no {missing[0]} ({len(missing)} missing; is it a "
                        f"checkpoint of the same generator size?)")
    unexpected = [k for k in base if k not in model]
    if unexpected:
        raise UserError(f"init_from {path}: this run has no {unexpected[0]} ({len(unexpected)} unexpected; the "
                        f"base has a module or part this configuration lacks)")
    for k, v in base.items():
        if v.shape != model[k].shape:
            raise UserError(f"init_from {path}: {k} has shape {tuple(v.shape)} in the base, "
                            f"{tuple(model[k].shape)} here")
    return base


def load_base(module: nn.Module, path: str | Path, generator_hparams: dict[str, Any]) -> dict[str, Any]:
    """Copy a trained generator checkpoint's weights into `module` (an XMGIEModule) before fine-tuning.

    Returns the provenance the run records: path, sha256, the base's step count and its hyper-parameters' text
    source. The EMA copy starts from the base's EMA weights (or, for a base trained without EMA, from its
    generator weights)."""
    from xmgie.evaluation.weights import sha256_of
    from xmgie.training.generator_module import CHECKPOINT_KIND

    ckpt = read_checkpoint(path)
    kind = ckpt.get("xmgie", {}).get("kind") if isinstance(ckpt, dict) else None
    if kind != CHECKPOINT_KIND:
        raise UserError(f"init_from {path}: not an xMGIE generator checkpoint (kind {kind!r})")
    check_architecture(ckpt["hyper_parameters"].get("generator", {}), generator_hparams, path)
    base = dict(ckpt["state_dict"])
    own = module.state_dict()
    if module.ema is not None and not any(k.startswith("ema.") for k in base):
        base.update({"ema." + k[len("generator."):]: v for k, v in base.items() if k.startswith("generator.")})
    if module.ema is None:
        base = {k: v for k, v in base.items() if not k.startswith("ema.")}
    tensors = match_state(base, own, path)
    module.load_state_dict(tensors, strict=False)
    return {"path": str(path), "sha256": sha256_of(path), "global_step": int(ckpt.get("global_step", 0)),
            "loaded_tensors": len(tensors), "fresh_module_tensors": sum(1 for k in own if k not in tensors)}
