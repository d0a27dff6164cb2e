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

from xmgie.checkpoints import GENERATOR_KIND, WEIGHTS, is_export, read_checkpoint, read_export
from xmgie.errors import UserError
from xmgie.weights import sha256_of

# GeneratorConfig fields that fix the weights' meaning: a base that differs in one of them is another model
ARCHITECTURE_FIELDS = ("size", "text", "prediction_type", "mask_channel", "pooled_text", "film",
                       "num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "residual")


MODULE_PREFIXES = ("generator.plugins.", "ema.plugins.")


def is_module_key(key: str) -> bool:
    """Whether a state-dict key belongs to one of the four modules (the generator's or the EMA's plugins)."""
    return key.startswith(MODULE_PREFIXES)


def read_base(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], int, str]:
    """(generator hyper-parameters, state dict, steps, sha256) of a generator checkpoint or an exported folder (whose
    weights are the sampling weights, without a discriminator)."""
    if is_export(path):
        config, state = read_export(path)
        kind, hparams, step, digest = config.get("kind"), config["hyper_parameters"], config.get("global_step", 0), \
            sha256_of(Path(path) / WEIGHTS)
    else:
        ckpt = read_checkpoint(path)
        kind, hparams, state = ckpt["xmgie"]["kind"], ckpt["hyper_parameters"], ckpt["state_dict"]
        step, digest = ckpt.get("global_step", 0), sha256_of(path)
    if kind != GENERATOR_KIND:
        raise UserError(f"init_from {path}: not an xMGIE generator (kind {kind!r})")
    return hparams.get("generator", {}), dict(state), int(step), digest


def check_architecture(base: dict[str, Any], current: dict[str, Any], path: str | Path) -> None:
    """base / current: the two runs' `generator` hyper-parameters; a differing architecture field is an error."""
    for name in ARCHITECTURE_FIELDS:
        if name in base and base[name] != current[name]:
            raise UserError(f"init_from {path}: its generator has {name}={base[name]!r}, this run "
                            f"{current[name]!r}; set --model.generator.{name} to match the base")


def match_state(base: dict[str, torch.Tensor], model: dict[str, torch.Tensor], path: str | Path,
                fresh: tuple[str, ...] = MODULE_PREFIXES) -> dict[str, torch.Tensor]:
    """The base tensors to load into `model`'s state dict. Every key of the model outside the `fresh` prefixes (the
    modules') must be in the base with the same shape, and every base key must be in the model: anything else is
    a one-line error naming the key. Module keys present in both load too (fine-tuning an already fine-tuned run)."""
    missing = [k for k in model if k not in base and not k.startswith(fresh)]
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
    """Copy a trained generator's weights (a checkpoint or an exported folder) into `module` (an XMGIEModule)
    before fine-tuning.

    Returns the provenance the run records: path, sha256 (of the weights file), the base's step count and how many
    tensors loaded / started fresh. The EMA copy starts from the base's EMA weights (for a base without them, from
    its generator weights); an exported base has no discriminator, so a fresh one starts."""
    base_generator, base, step, digest = read_base(path)
    check_architecture(base_generator, generator_hparams, path)
    own = module.state_dict()
    fresh = MODULE_PREFIXES + (() if any(k.startswith("discriminator.") for k in base) else ("discriminator.",))
    if module.ema is not None and not any(k.startswith("ema.") for k in base):
        base.update({"ema." + k[len("generator."):]: v for k, v in base.items() if k.startswith("generator.")})
    if module.ema is None:
        base = {k: v for k, v in base.items() if not k.startswith("ema.")}
    tensors = match_state(base, own, path, fresh)
    module.load_state_dict(tensors, strict=False)
    return {"path": str(path), "sha256": digest, "global_step": step,
            "loaded_tensors": len(tensors), "fresh_module_tensors": sum(1 for k in own if k not in tensors)}
