"""Reading trained models' files safely, with one-line errors (the layer below every package that loads one;
building the model a file holds is `xmgie.editor.load_generator_module`).

A `.ckpt` (Lightning) or expander `.pt` file is read with `torch.load(weights_only=True)`: tensors and plain data
(dicts, lists, strings, numbers) only, so nothing in the file can run code. A file that needs more is refused,
naming the way out: `trust_file(path)` (the CLI's `--trust-checkpoint`) for a file you made yourself, or an
exported folder (`xmgie export`: safetensors weights + JSON config), the format made for sharing.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch

from xmgie.errors import UserError

GENERATOR_KIND = "xmgie-generator"  # the "kind" a generator checkpoint (and exported folder) records
BASELINE_KIND = "xmgie-baseline"    # … and a GAN baseline's
# an exported folder (`xmgie export`): safetensors weights, JSON config, a model card
EXPORT_FORMAT = "xmgie-editor"
EXPORT_FORMAT_VERSION = 1
WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"
_TRUSTED: set[Path] = set()
WAY_OUT = ("load it with --trust-checkpoint only if you made it yourself; to share a model, "
           "`xmgie export` it to a safetensors folder")


def trust_file(path: str | Path) -> None:
    """Allow full unpickling of this one file (a checkpoint you made yourself with an older or custom version)."""
    _TRUSTED.add(Path(path).resolve())


def safe_load(path: str | Path, what: str = "checkpoint") -> Any:
    """torch.load on CPU with weights_only=True unless `path` was trusted; every problem is a one-line UserError
    and a refused file is never unpickled past the first forbidden object."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    trusted = path.resolve() in _TRUSTED
    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as err:
        # weights_only names the first object it does not allow ("Unsupported global: GLOBAL posix.system");
        # any other unpickling error means the bytes are not a torch file at all
        refused = next((line.strip() for line in str(err).splitlines() if "GLOBAL" in line), None)
        if refused is None:
            raise UserError(f"cannot read {what} {path}: not a file torch.save wrote") from None
        raise UserError(f"refused to load {path}: {refused[:160]}; {WAY_OUT}") from None
    except Exception as err:  # truncated file, not a torch file …
        raise UserError(f"cannot read {what} {path}: {type(err).__name__}: {str(err).splitlines()[0][:200]}") from None


def read_checkpoint(path: str | Path) -> dict:
    """A Lightning checkpoint dict of this project: {"xmgie": {"kind": …}, "hyper_parameters": dict,
    "state_dict": {name: tensor}}; anything else is a one-line UserError."""
    ckpt = safe_load(path)
    if not isinstance(ckpt, dict):
        raise UserError(f"{path} is not a checkpoint: it holds a {type(ckpt).__name__}, not a dict")
    marker = ckpt.get("xmgie")
    if not isinstance(marker, dict) or not isinstance(marker.get("kind"), str):
        raise UserError(f"{path} is not an xMGIE generator checkpoint (no xmgie marker); "
                        f"use runs/<dataset>/<name>/checkpoints/last.ckpt or best.ckpt")
    if not isinstance(ckpt.get("hyper_parameters"), dict):
        raise UserError(f"{path} is malformed: no hyper_parameters dict")
    state = ckpt.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} is malformed: no state_dict of tensors")
    return ckpt


def build_module(cls, hparams: dict, state: dict[str, torch.Tensor], path: str | Path, strict: bool = True):
    """cls(**hparams) with `state` loaded; a hyper-parameter or weight that does not fit is a one-line UserError.
    With strict=False only missing discriminator weights are allowed (an exported editor has none)."""
    try:
        module = cls(**hparams)
    except (TypeError, ValueError, KeyError) as err:
        raise UserError(f"{path}: its hyper-parameters do not build a {cls.__name__}: {err}") from None
    return load_weights(module, state, path, strict)


def load_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path, strict: bool = True):
    """`module` with `state` loaded; a missing, unexpected or mis-shaped weight is a one-line UserError naming
    `path` (with strict=False missing discriminator weights are allowed)."""
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes
        first = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line), str(err)[:200])
        raise UserError(f"{path}: weights do not fit the model: {first}") from None
    missing = [k for k in missing if strict or not k.startswith("discriminator.")]
    if missing or unexpected:
        name = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise UserError(f"{path}: weights do not fit the model ({name}; {len(missing)} missing, "
                        f"{len(unexpected)} unexpected)")
    return module


def is_export(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / CONFIG).is_file()


def read_export(folder: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config, tensors) of an exported folder; anything malformed is a one-line UserError."""
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        config = json.loads((folder / CONFIG).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{folder / CONFIG}: not readable JSON ({err})") from None
    if not isinstance(config, dict) or config.get("format") != EXPORT_FORMAT:
        raise UserError(f"{folder} is not an exported xMGIE editor (config.json format is not {EXPORT_FORMAT!r})")
    if config.get("format_version") != EXPORT_FORMAT_VERSION or not isinstance(config.get("hyper_parameters"), dict):
        raise UserError(f"{folder}: config.json version {config.get('format_version')!r} or its hyper-parameters "
                        f"are not readable by this version")
    try:
        tensors = load_file(str(folder / WEIGHTS))
    except Exception as err:  # missing, truncated or not safetensors
        raise UserError(f"{folder / WEIGHTS}: not readable safetensors ({type(err).__name__}: {err})") from None
    return config, tensors
