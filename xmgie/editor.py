"""A trained diffusion editor without its training machinery: the generator's sampling weights (the EMA copy when
there is one), its DDIM settings and the facts of the data it was trained on, read from a checkpoint or an
exported folder. Editing with it imports neither Lightning nor the dataset code.

It keeps the editor contract (`Editor`) that `xmgie edit` and `xmgie evaluate` rely on, and loads any trained
model as the module it was trained as (`load_generator_module`, which does import Lightning).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import torch
from torch import nn

from xmgie.checkpoints import (BASELINE_KIND, GENERATOR_KIND, build_module, is_export, load_weights, read_checkpoint,
                               read_export)
from xmgie.errors import UserError
from xmgie.models.build import build_generator
from xmgie.models.config import GeneratorConfig
from xmgie.models.generator import EditGenerator
from xmgie.models.sampling import ddim_edit
from xmgie.modules.config import ModulesConfig
from xmgie.training.config import SamplingConfig, coerce


@runtime_checkable
class Editor(Protocol):
    """What `xmgie edit` and `xmgie evaluate` need of a trained model, diffusion or GAN.

    data_info: what the checkpoint records of its data (dataset, root, resolution, hide_masked_source, notes).
    sampling_cfg: the DDIM steps and guidance scales `edit` defaults to; None for a one-pass editor (a GAN
        baseline), which has neither (results then record them as null).
    edit: batch {"source" (B, 3, H, W) in [-1, 1], "mask" (B, 1, H, W) in {0, 1}, the text fields} -> edits
        (B, 3, H, W) in [-1, 1]; `texts` replaces the text the editor would read from the batch.
    """

    data_info: dict[str, Any]
    sampling_cfg: SamplingConfig | None

    def edit(self, batch: dict[str, Any], steps: int | None = None, seed: int | None = 0,
             guidance_text: float | None = None, guidance_image: float | None = None,
             texts: list[str] | None = None) -> torch.Tensor: ...


class DiffusionEditor(nn.Module):
    """The sampling generator of a trained xMGIE / MGIE / GLIDE / PFB-Diff model.

    Args:
        generator: the generator with its modules, holding the weights edits are made with.
        sampling: DDIM steps and guidance scales (the defaults of `edit`).
        text_source: "instruction" or "prompt" (what the batch key the generator reads is); "expander": the
            prompt expanded by the instruction expander at `expander`.
        data_info: what the checkpoint records of its data (dataset, resolution, hide_masked_source).
    """

    def __init__(self, generator: EditGenerator, sampling: SamplingConfig, text_source: str = "instruction",
                 expander: str | None = None, data_info: dict[str, Any] | None = None):
        super().__init__()
        self.generator = generator.eval()
        self.sampling_cfg = sampling
        self.text_source, self.expander_path = text_source, expander
        self.data_info = dict(data_info or {})
        object.__setattr__(self, "_expander", None)  # frozen, loaded on first use

    @property
    def sampler(self) -> EditGenerator:
        return self.generator

    def conditioning_texts(self, batch: dict[str, Any]) -> list[str]:
        if self.text_source != "expander":
            return batch[self.text_source]
        if self._expander is None:
            from xmgie.conditioning.expander import load_expander

            try:
                object.__setattr__(self, "_expander", load_expander(self.expander_path, self.device))
            except (FileNotFoundError, ValueError) as err:
                raise UserError(str(err)) from None
        return self._expander.generate(batch["source"], batch["prompt"])

    @property
    def device(self) -> torch.device:
        return self.generator.alphas_cumprod.device

    @torch.no_grad()
    def edit(self, batch: dict[str, Any], steps: int | None = None, seed: int | None = 0,
             guidance_text: float | None = None, guidance_image: float | None = None,
             texts: list[str] | None = None, noise: torch.Tensor | None = None,
             on_step: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """DDIM edits (B, 3, H, W) in [-1, 1] of batch["source"] under batch["mask"]; None means the checkpoint's
        steps / scales; `texts` an already expanded instruction; `noise` the starting x_T instead of seeded draws;
        `on_step(done, total)` after each DDIM step."""
        s = self.sampling_cfg
        return ddim_edit(self.generator, batch["source"], batch["mask"],
                         texts if texts is not None else self.conditioning_texts(batch), steps=steps or s.steps,
                         guidance_text=s.guidance_text if guidance_text is None else guidance_text,
                         guidance_image=s.guidance_image if guidance_image is None else guidance_image,
                         seed=seed, source_blend=s.source_blend, initial_noise=noise, on_step=on_step)


def editor_from(hparams: dict[str, Any], state: dict[str, torch.Tensor], data_info: dict[str, Any],
                path: str | Path) -> DiffusionEditor:
    """The editor of a generator checkpoint's hyper-parameters and state dict: the `ema.*` weights when the run
    kept an EMA copy, else `generator.*`. A mismatch is a one-line UserError naming `path`."""
    try:
        gen_cfg = dataclasses.replace(coerce(GeneratorConfig, hparams.get("generator")), compile=None,
                                      gradient_checkpointing=False)
        modules = coerce(ModulesConfig, hparams.get("modules"))
        sampling = coerce(SamplingConfig, hparams.get("sampling"))
        generator = build_generator(gen_cfg, modules)
    except (TypeError, ValueError, KeyError) as err:
        raise UserError(f"{path}: its hyper-parameters do not build a generator: {err}") from None
    prefix = "ema." if (hparams.get("optim") or {}).get("ema_decay", 0) > 0 else "generator."
    load_weights(generator, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, path)
    return DiffusionEditor(generator, sampling, hparams.get("text_source", "instruction"),
                           hparams.get("expander"), data_info)


def load_editor(path: str | Path, device: str | torch.device = "cpu") -> Editor:
    """A trained editor in eval mode from a checkpoint or an exported folder: a DiffusionEditor for the diffusion
    methods; a GAN baseline (SISGAN, TAGAN, ManiGAN, HiFill) as its LightningModule."""
    if is_export(path):
        config, tensors = read_export(path)
        if config.get("kind") != GENERATOR_KIND:
            return load_generator_module(path, device)
        info = dict(config.get("xmgie", {}))
        hparams, state = config["hyper_parameters"], tensors
    else:
        ckpt = read_checkpoint(path)
        info = dict(ckpt["xmgie"])
        if info["kind"] != GENERATOR_KIND:
            return load_generator_module(path, device)
        hparams, state = ckpt["hyper_parameters"], ckpt["state_dict"]
    for key in ("kind", "method", "base"):
        info.pop(key, None)
    return editor_from(hparams, state, info, path).to(device).eval()


def load_generator_module(path: str | Path, device: str | torch.device = "cpu"):
    """A trained editor (eval mode) from `path`: an XMGIEModule (xMGIE, MGIE, GLIDE, PFB-Diff) or a GAN baseline
    (SISGAN, TAGAN, ManiGAN, HiFill), from a checkpoint or an exported folder; both edit with
    `.edit(batch, …)`. Refuses checkpoints of another kind."""
    from xmgie.training.lit_generator import XMGIEModule

    if is_export(path):
        return load_export(path).to(device).eval()
    ckpt = read_checkpoint(path)
    kind = ckpt["xmgie"]["kind"]
    if kind == BASELINE_KIND:
        from xmgie.methods.train import load_baseline

        return load_baseline(ckpt, device, path)
    if kind != GENERATOR_KIND:
        raise UserError(f"{path} is not an xMGIE generator checkpoint (kind {kind!r}); "
                        f"use runs/<dataset>/<name>/checkpoints/last.ckpt or best.ckpt")
    module = build_module(XMGIEModule, ckpt["hyper_parameters"], ckpt["state_dict"], path)
    module.on_load_checkpoint(ckpt)
    return module.to(device).eval()


def load_export(folder: str | Path):
    """The editor of an exported folder as its module (an XMGIEModule without EMA copy, or a GAN baseline)."""
    from xmgie.methods.registry import gan_baselines
    from xmgie.training.lit_generator import XMGIEModule

    config, tensors = read_export(folder)
    kind, method = config.get("kind"), config.get("method")
    gans = gan_baselines()
    if kind == BASELINE_KIND and method in gans:
        module = build_module(gans[method], config["hyper_parameters"], tensors, folder)
    elif kind == GENERATOR_KIND:
        module = build_module(XMGIEModule, config["hyper_parameters"], tensors, folder, strict=False)
    else:
        raise UserError(f"{folder}: unknown editor kind {kind!r} / method {method!r}")
    module.on_load_checkpoint({"xmgie": config.get("xmgie", {})})
    return module.eval()
