"""The InstructPix2Pix-style generator (docs/model.md): the noisy image and the source image are concatenated on
channels, the expressive instruction's token features enter by cross-attention (Eq. 4: Z0 = [X; I]).
The four modules attach as `EditPlugin`s."""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from typing import Collection, Iterator, NamedTuple, Sequence

import torch
from torch import nn

from xmgie.models.backbone import Backbone, build_backbone
from xmgie.models.config import GeneratorConfig
from xmgie.modules.plugin import EditCondition, EditPlugin, StopUNet, phases



class SharedReference(NamedTuple):
    """Edit rows that share a reference branch (guidance branches that show the same image: the same source,
    t, ε and null instruction). rows: (R,) int64, the rows of the condition whose reference branch runs;
    index: (B,) int64, which of those R each of the B rows reads."""

    rows: torch.Tensor
    index: torch.Tensor


class TextContext(NamedTuple):
    """tokens: (B, T', D) read by cross-attention; pooled: (B, D) sentence feature."""

    tokens: torch.Tensor
    pooled: torch.Tensor


class EditGenerator(nn.Module):
    """Text encoder + U-Net + plugins, with the noise schedule they were trained under."""

    def __init__(self, cfg: GeneratorConfig, plugins: Sequence[EditPlugin] = (), backbone: Backbone | None = None):
        super().__init__()
        self.cfg = cfg
        backbone = backbone or build_backbone(cfg)
        self.text_encoder = backbone.text_encoder
        self.codec = backbone.codec  # the frozen VAE of a latent size; None in pixel space
        self.unet = backbone.unet
        if cfg.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
            if self.codec is not None:
                self.codec.vae.enable_gradient_checkpointing()
        self.plugins = nn.ModuleList(plugins)
        for plugin in self.plugins:
            plugin.attach(self.unet)
        if cfg.compile:
            self.unet.compile(backend=cfg.compile)  # in place: parameter names (checkpoints) are unchanged
        self.schedule = backbone.schedule
        self.register_buffer("alphas_cumprod", self.schedule.alphas_cumprod, persistent=False)  # (T,) float32
        self.register_buffer("null_tokens", self.text_encoder.tokenize([""]), persistent=False)  # (1, T)

    def backbone(self) -> Backbone:
        """The parts this generator was built from (for a copy that shares the frozen ones)."""
        return Backbone(self.unet, self.text_encoder, self.codec, self.schedule)

    @property
    def active_plugins(self) -> list[EditPlugin]:
        """The plugins in use (all of them outside `modules_off`)."""
        return [p for p in self.plugins if p.active]

    @contextmanager
    def modules_off(self, names: Collection[str]) -> Iterator[None]:
        """Within the block the generator edits as if the named modules ("pfb", "cam", "ie", "gb") were absent:
        they are skipped and their hooks leave the U-Net as it is. A name this generator lacks is a ValueError."""
        missing = set(names) - {p.name for p in self.plugins}
        if missing:
            have = ", ".join(p.name for p in self.plugins) or "none"
            raise ValueError(f"this generator has no module {', '.join(sorted(missing))} (it has: {have})")
        off = [p for p in self.plugins if p.name in names and p.active]
        for plugin in off:
            plugin.active = False
            plugin.reset()
        try:
            yield
        finally:
            for plugin in off:
                plugin.active = True

    @property
    def sees_mask(self) -> bool:
        return self.cfg.hide_masked_source or self.cfg.mask_channel

    # -- conditioning ------------------------------------------------------------------------
    def image_condition(self, cond: EditCondition) -> torch.Tensor:
        """(B, C (+1), h, w): the source as shown (`reference`; in latent space its unscaled VAE latent, as
        InstructPix2Pix), plus the mask channel when the U-Net sees it; samples whose image is dropped get zeros
        (the null image condition)."""
        if self.codec is None:
            shown, mask = self.reference(cond), cond.mask                      # (B, 3, H, W), (B, 1, H, W)
        else:
            shown, mask = cond.extras["shown_latent"], self.codec.mask(cond.mask)  # (B, 4, h, w), (B, 1, h, w)
        image = torch.cat([shown, mask.to(shown.dtype)], dim=1) if self.sees_mask else shown
        return image * (~cond.image_dropped).to(image.dtype)[:, None, None, None]

    def tokenize(self, instructions: Sequence[str], text_dropped: torch.Tensor | None = None) -> torch.Tensor:
        """B strings -> (B, T) ids; dropped samples get the empty instruction (the null text condition), chosen
        on the device (reading the flags back would stall an accelerator every step)."""
        ids = self.text_encoder.tokenize(list(instructions)).to(self.null_tokens.device, non_blocking=True)
        if text_dropped is None:
            return ids
        return torch.where(text_dropped.to(ids.device)[:, None], self.null_tokens, ids)

    def make_condition(self, source: torch.Tensor, mask: torch.Tensor, instructions: Sequence[str],
                       text_dropped: torch.Tensor | None = None, image_dropped: torch.Tensor | None = None,
                       copies: int = 1) -> EditCondition:
        """The condition of `copies` stacked repeats of the B sources (B, 3, H, W) and masks (B, 1, H, W) — the
        guidance branches of one edit — with len(instructions) == copies·B and the dropped flags (copies·B,).
        The per-source work (the VAE's encoding, the plugins' `prepare`) runs once on the B sources."""
        tokens = self.tokenize(instructions, text_dropped)
        if copies == 1:
            cond = once = self._condition(source, mask, tokens, text_dropped, image_dropped)
        else:
            cond = self._condition(source.repeat(copies, 1, 1, 1), mask.repeat(copies, 1, 1, 1), tokens,
                                   text_dropped, image_dropped)
            once = self._condition(source, mask, tokens[:source.shape[0]])
        if self.codec is not None:  # the VAE encodes the shown source once per edit, not once per U-Net call
            latent = self.codec.encode_condition(self.reference(once))  # (B, 4, h, w), unscaled
            once.extras["shown_latent"] = latent
            once.extras["reference_latent"] = latent * self.codec.scaling
        for plugin in self.active_plugins:
            plugin.prepare(once)
        if copies > 1:
            cond.extras = {k: v.repeat(copies, *[1] * (v.dim() - 1)) for k, v in once.extras.items()}
        return cond

    @staticmethod
    def _condition(source: torch.Tensor, mask: torch.Tensor, tokens: torch.Tensor,
                   text_dropped: torch.Tensor | None = None,
                   image_dropped: torch.Tensor | None = None) -> EditCondition:
        none = torch.zeros(source.shape[0], dtype=torch.bool, device=source.device)
        return EditCondition(source=source, mask=mask, tokens=tokens,
                             text_dropped=none if text_dropped is None else text_dropped.to(source.device),
                             image_dropped=none if image_dropped is None else image_dropped.to(source.device))

    def context(self, cond: EditCondition) -> TextContext:
        """Text features of the condition: the tokens cross-attention reads (extended by plugins) and the
        pooled sentence feature."""
        features, pooled = self.text_encoder(cond.tokens)  # (B, T, D), (B, D)
        for plugin in self.active_plugins:
            features = plugin.extend_context(features, cond)
        return TextContext(features, pooled)

    # -- the space the diffusion runs in -------------------------------------------------------
    def reference(self, cond: EditCondition) -> torch.Tensor:
        """(B, 3, H, W): the part of the source the U-Net is shown (masked out when hide_masked_source)."""
        return cond.source * (1 - cond.mask) if self.cfg.hide_masked_source else cond.source

    def to_diffusion_space(self, image: torch.Tensor, cond: EditCondition) -> torch.Tensor:
        """Image (B, 3, H, W) in [-1, 1] -> what is noised and denoised: the image, the residual (image − ref) / 2,
        or the VAE's scaled latent (B, 4, H/f, W/f), encoded without a graph."""
        if self.codec is not None:
            return self.codec.encode(image)
        return (image - self.reference(cond)) / 2 if self.cfg.residual else image

    def to_image_space(self, z: torch.Tensor, cond: EditCondition) -> torch.Tensor:
        """Inverse of `to_diffusion_space` (the VAE's decoder in latent space, differentiable in z)."""
        if self.codec is not None:
            return self.codec.decode(z)
        return self.reference(cond) + 2 * z if self.cfg.residual else z

    def reference_in_diffusion_space(self, cond: EditCondition) -> torch.Tensor:
        """The shown source in the diffusion's space (what the reference branch noises)."""
        if self.codec is not None:
            return cond.extras["reference_latent"]
        return self.to_diffusion_space(self.reference(cond), cond)

    def diffusion_mask(self, cond: EditCondition) -> torch.Tensor:
        """The edit mask on the diffusion's grid: (B, 1, H, W), or (B, 1, H/f, W/f) cell coverage in latent space."""
        return cond.mask if self.codec is None else self.codec.mask(cond.mask)

    def diffusion_shape(self, source: torch.Tensor) -> tuple[int, ...]:
        """Shape of x_t for sources (B, 3, H, W)."""
        return tuple(source.shape) if self.codec is None else self.codec.shape(source.shape)

    # -- denoising ---------------------------------------------------------------------------
    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: EditCondition, context: TextContext | None = None,
                noise: torch.Tensor | None = None, shared: SharedReference | None = None) -> torch.Tensor:
        """(B, C, h, w) noisy image (or latent) at integer timesteps t (B,) -> the U-Net's prediction, same shape.
        `noise` is the ε that made x_t; PFB needs it (its reference branch and its 'out' layer). `shared`: rows
        whose reference branch is the same, computed once (gradient-free calls)."""
        return self.blend_prediction(self.predict(x_t, t, cond, context, noise, shared), t, cond, noise)

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: EditCondition, context: TextContext | None = None,
                noise: torch.Tensor | None = None, shared: SharedReference | None = None) -> torch.Tensor:
        """The U-Net's prediction. With a plugin that needs a reference branch (PFB's feature layers), the
        reference branch denoises the source noised to the same t with the same ε under the null instruction.
        With gradients on, it runs first as a gradient-free pass (its backward would cost as much as the edit
        branch's); without, both branches run as one batched U-Net call, with one reference row per group of
        `shared` rows."""
        users = [p for p in self.active_plugins if p.needs_reference]
        if not users:
            return self.denoise(x_t, t, cond, context)
        if noise is None:
            raise ValueError("the reference branch (PFB) needs the noise ε that made x_t")
        B = x_t.shape[0]
        ref_cond = dataclasses.replace(cond, tokens=self.null_tokens.expand(B, -1),
                                       text_dropped=torch.ones_like(cond.text_dropped))
        if shared is not None and not torch.is_grad_enabled():
            ref_cond, noise, t_ref = ref_cond.rows(shared.rows), noise[shared.rows], t[shared.rows]
        else:
            shared, t_ref = None, t
        x_ref = self.add_noise(self.reference_in_diffusion_space(ref_cond), noise, t_ref)
        if torch.is_grad_enabled():
            with torch.no_grad(), phases(users, "record"):
                try:
                    self.denoise(x_ref, t, ref_cond)
                except StopUNet:  # the decoder blocks after the last blended one are not needed
                    pass
            with phases(users, "edit"):
                return self.denoise(x_t, t, cond, context)
        context = self.context(cond) if context is None else context
        ref_context = self.context(ref_cond)
        both = TextContext(torch.cat([context.tokens, ref_context.tokens]),
                           torch.cat([context.pooled, ref_context.pooled]))
        with phases(users, "batched", None if shared is None else shared.index):
            return self.denoise(torch.cat([x_t, x_ref]), torch.cat([t, t_ref]), cond.cat(ref_cond), both)[:B]

    def blend_prediction(self, pred: torch.Tensor, t: torch.Tensor, cond: EditCondition,
                         noise: torch.Tensor | None) -> torch.Tensor:
        """Hand the prediction to the plugins that blend it (PFB's 'out' layer) with the source's own target at t
        under the ε that made x_t: outside the mask x̂0 is then the source, and a DDIM step keeps x_t on the
        source's noising trajectory (x_t = sqrt(ᾱ_t) x_src + sqrt(1 − ᾱ_t) ε)."""
        blenders = [p for p in self.active_plugins if p.blends_prediction]
        if not blenders:
            return pred
        if noise is None:
            raise ValueError("blending the prediction (PFB's 'out' layer) needs the noise ε that made x_t")
        known = self.prediction_target(self.reference_in_diffusion_space(cond), noise, t)
        for plugin in blenders:
            pred = plugin.blend_prediction(pred, known.to(pred.dtype), cond)
        return pred

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, cond: EditCondition,
                 context: TextContext | None = None) -> torch.Tensor:
        """One U-Net call: Z0 = [x_t; image condition] and the text context (Eq. 4), without the reference branch
        (`forward` adds it for PFB; the mask predictor calls this directly)."""
        for plugin in self.active_plugins:
            plugin.condition(cond)
        context = self.context(cond) if context is None else context
        z = torch.cat([x_t, self.image_condition(cond)], dim=1)  # (B, C + C (+1), h, w): Eq. 4, image half
        pooled = context.pooled if self.cfg.pooled_text else None
        return self.unet(z, t, context.tokens, class_labels=pooled)

    def _coefficients(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.alphas_cumprod[t].to(torch.float32)[:, None, None, None]  # (B, 1, 1, 1)
        return a.sqrt(), (1 - a).sqrt()

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) ε."""
        s, n = self._coefficients(t)
        return s * x0 + n * noise

    def prediction_target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the U-Net should output: ε, v = sqrt(ᾱ) ε - sqrt(1 - ᾱ) x0, or x0."""
        if self.cfg.prediction_type == "epsilon":
            return noise
        if self.cfg.prediction_type == "sample":
            return x0
        s, n = self._coefficients(t)
        return s * noise - n * x0

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
        """x̂0 from the prediction: (x_t - sqrt(1-ᾱ) ε̂) / sqrt(ᾱ), sqrt(ᾱ) x_t - sqrt(1-ᾱ) v̂, or x̂0 itself."""
        if self.cfg.prediction_type == "sample":
            return prediction
        s, n = self._coefficients(t)
        if self.cfg.prediction_type == "epsilon":
            return (x_t - n * prediction) / s.clamp(min=1e-4)
        return s * x_t - n * prediction

    def postprocess(self, x0: torch.Tensor, cond: EditCondition) -> torch.Tensor:
        """Denoised sample (diffusion space) -> X_edit: back to image space, then every plugin's
        post-processing (GB, Eq. 19)."""
        x0 = self.to_image_space(x0, cond)
        for plugin in self.active_plugins:
            x0 = plugin.postprocess(x0, cond)
        return x0
