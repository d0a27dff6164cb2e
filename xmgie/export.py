"""`xmgie export --ckpt C --out DIR`: a trained editor as a folder made for sharing.

    DIR/model.safetensors   the weights edits are made with (a generator's EMA weights; a GAN baseline's module)
    DIR/config.json         format, kind, method, hyper-parameters, data facts, the base it was fine-tuned from
    DIR/README.md           a model card (method, modules, dataset, resolution, steps, test figures when given)

safetensors holds tensors only and JSON holds plain data, so loading a folder runs nothing from it. Every command
that takes `--ckpt` (and `--model.init_from`) also takes such a folder; its edits are bit-identical to the
checkpoint's.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch

from xmgie.checkpoints import (BASELINE_KIND, CARD, CONFIG, EXPORT_FORMAT, EXPORT_FORMAT_VERSION, GENERATOR_KIND,
                               WEIGHTS, is_export, read_checkpoint)
from xmgie.editor import load_generator_module
from xmgie.errors import UserError


def editor_weights(module) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """(tensors, hyper-parameters, which weights) of a loaded editor. A generator exports its sampling weights (the
    EMA copy when there is one) as `generator.*` and is rebuilt without an EMA copy; a GAN baseline exports its
    whole module."""
    from xmgie.training.lit_generator import XMGIEModule

    hparams = copy.deepcopy(dict(module.hparams))
    if isinstance(module, XMGIEModule):
        which = "ema" if module.ema is not None else "generator"
        hparams["optim"]["ema_decay"] = 0.0  # the exported weights are the sampler: no second copy
        state = {f"generator.{k}": v for k, v in module.sampler.state_dict().items()}
    else:
        which, state = "module", module.state_dict()
    # safetensors wants contiguous tensors that share no memory
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}, hparams, which


def model_card(config: dict[str, Any], results: dict[str, Any] | None) -> str:
    hp, info = config["hyper_parameters"], config["xmgie"]
    modules = [m for m, c in hp.get("modules", {}).items() if c.get("enabled")]
    lines = ["---", "library_name: xmgie", "pipeline_tag: image-to-image",
             "tags: [image-editing, instruction-guided-image-editing, diffusion]", "---", "",
             f"# {config['method']} editor", "",
             f"- method: {config['method']} ({config['kind']})"]
    if "modules" in hp:
        lines.append(f"- modules on: {', '.join(modules) if modules else 'none'}")
    lines += [f"- dataset: {info.get('dataset', 'unknown')}, resolution {info.get('resolution', 'unknown')} px",
             f"- training steps: {config['global_step']}; weights: {config['weights']}"]
    base = info.get("base")
    if base:
        lines.append(f"- fine-tuned from a base editor of {base['global_step']} steps, sha256 {base['sha256']}")
    if results:
        shown = {k: v for k, v in results.get("metrics", {}).items() if isinstance(v, (int, float))}
        lines.append(f"- {results.get('split', 'test')} split ({results.get('n_images')} images): " +
                     ", ".join(f"{k} {v:.4g}" for k, v in sorted(shown.items())))
        if results.get("uncalibrated"):
            lines.append(f"  (uncalibrated backbones, not comparable to published numbers: "
                         f"{', '.join(results['uncalibrated'])})")
    lines += ["", "Use: `xmgie edit --ckpt <this folder> --image in.png --prompt \"...\" --out out.png`", ""]
    return "\n".join(lines) + "\n"


def export_editor(ckpt: str | Path, out: str | Path, results: str | Path | None = None) -> Path:
    """Write the folder for the editor in `ckpt` (a checkpoint, or an exported folder); `results`: a result JSON
    of `xmgie evaluate` whose figures go into the model card."""
    from safetensors.torch import save_file

    out = Path(out)
    if out.exists() and any(out.iterdir()):  # before the (slow) load
        raise UserError(f"{out} exists and is not empty: choose another --out")
    module = load_generator_module(ckpt)
    tensors, hparams, which = editor_weights(module)
    step = 0 if is_export(ckpt) else int(read_checkpoint(ckpt).get("global_step", 0))
    marker = {"kind": _kind(module), "method": getattr(module, "METHOD", "xmgie"), **module.data_info}
    if getattr(module, "base_info", None):
        marker["base"] = module.base_info
    config = {"format": EXPORT_FORMAT, "format_version": EXPORT_FORMAT_VERSION, "kind": marker["kind"],
              "method": marker["method"], "weights": which, "global_step": step, "hyper_parameters": hparams,
              "xmgie": marker}
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / WEIGHTS), metadata={"format": "pt"})
    (out / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    shown = json.loads(Path(results).read_text()) if results else None
    (out / CARD).write_text(model_card(config, shown))
    return out


def _kind(module) -> str:
    from xmgie.training.lit_generator import XMGIEModule

    return GENERATOR_KIND if isinstance(module, XMGIEModule) else BASELINE_KIND
