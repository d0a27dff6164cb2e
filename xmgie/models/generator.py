"""The InstructPix2Pix-style generator (DESIGN §4): the noisy image and the source image are concatenated on
channels, the expressive instruction's token features enter by cross-attention (Eq. 4: Z0 = [X; I]).
The four modules attach as `EditPlugin`s."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import torch
from diffusers import DDPMScheduler
from torch import nn

from xmgie.conditioning.text_encoder import TextEncoder, TextEncoderConfig
from xmgie.models.plugin import EditCondition, EditPlugin, StopUNet, phases
from xmgie.models.unet import UNET_SIZES, build_unet

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


class TextContext(NamedTuple):
    """tokens: (B, T', D) read by cross-attention; pooled: (B, D) sentence feature."""

    tokens: torch.Tensor
    pooled: torch.Tensor


@dataclass
class GeneratorConfig:
    """Everything that fixes the generator's architecture and diffusion process.

    Attributes:
        size: a key of UNET_SIZES.
        text: the text tower.
        prediction_type: what the U-Net predicts: "epsilon", "v_prediction" or "sample" (x0). v with the x̂0
            losses trains far better than ε on short CPU budgets.
        hide_masked_source: the U-Net sees source * (1 - mask) plus the mask (caption datasets).
        mask_channel: the U-Net also sees the edit mask as a 4th input channel (always on with
            hide_masked_source). The mask is an input of the method (PFB, CAM and GB use it too); as a channel it
            tells the U-Net where to edit. An all-ones mask means "unknown: anywhere".
        pooled_text: add the pooled instruction feature to the timestep embedding (as Imagen and SDXL do), a
            global path that every ResNet block reads; cross-attention still carries the per-token detail.
        film: the timestep (+ pooled text) embedding scales and shifts each ResNet block (FiLM) instead of
            only shifting it.
        num_train_timesteps: T of the forward process.
        beta_schedule: diffusers schedule name; the cosine schedule suits small pixel-space images.
        residual: diffuse the edit (X_gt − X_ref) / 2 instead of X_gt, X_ref being the image the U-Net is shown.
            Copying the source is then the zero output, which a small model learns at once; keep it off for
            pretrained InstructPix2Pix weights, which denoise the target itself.
    """

    size: str = "tiny"
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    prediction_type: str = "v_prediction"
    hide_masked_source: bool = False
    mask_channel: bool = False
    pooled_text: bool = False
    film: bool = False
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    residual: bool = False

    def __post_init__(self) -> None:
        if self.size not in UNET_SIZES:
            raise ValueError(f"unknown size {self.size!r}; available: {', '.join(UNET_SIZES)}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}")


class EditGenerator(nn.Module):
    """Text encoder + U-Net + plugins, with the noise schedule they were trained under."""

    def __init__(self, cfg: GeneratorConfig, plugins: Sequence[EditPlugin] = ()):
        super().__init__()
        self.cfg = cfg
        self.text_encoder = TextEncoder(cfg.text)
        cond_channels = 4 if self.sees_mask else 3
        self.unet = build_unet(cfg.size, in_channels=3 + cond_channels, out_channels=3,
                               cross_attention_dim=cfg.text.width, pooled_text=cfg.pooled_text,
                               film=cfg.film)
        self.plugins = nn.ModuleList(plugins)
        for plugin in self.plugins:
            plugin.attach(self.unet)
        self.scheduler = DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                                       prediction_type=cfg.prediction_type, clip_sample=False)
        self.register_buffer("alphas_cumprod", self.scheduler.alphas_cumprod.clone().float(), persistent=False)
        self.register_buffer("null_tokens", self.text_encoder.tokenize([""]), persistent=False)  # (1, T)

    @property
    def sees_mask(self) -> bool:
        return self.cfg.hide_masked_source or self.cfg.mask_channel

    # -- conditioning ------------------------------------------------------------------------
    def image_condition(self, cond: EditCondition) -> torch.Tensor:
        """(B, 3 or 4, H, W): the source as shown (`reference`), plus the mask channel when the U-Net sees it;
        samples whose image is dropped get zeros (the null image condition)."""
        shown = self.reference(cond)
        image = torch.cat([shown, cond.mask], dim=1) if self.sees_mask else shown  # (B, 3 or 4, H, W)
        return image * (~cond.image_dropped).to(image.dtype)[:, None, None, None]

    def tokenize(self, instructions: Sequence[str], text_dropped: torch.Tensor | None = None) -> torch.Tensor:
        """B strings -> (B, T) ids; dropped samples get the empty instruction (the null text condition)."""
        if text_dropped is not None:
            instructions = ["" if d else s for s, d in zip(instructions, text_dropped.tolist())]
        return self.text_encoder.tokenize(instructions).to(self.alphas_cumprod.device)

    def make_condition(self, source: torch.Tensor, mask: torch.Tensor, instructions: Sequence[str],
                       text_dropped: torch.Tensor | None = None,
                       image_dropped: torch.Tensor | None = None) -> EditCondition:
        none = torch.zeros(source.shape[0], dtype=torch.bool, device=source.device)
        text_dropped = none if text_dropped is None else text_dropped.to(source.device)
        image_dropped = none if image_dropped is None else image_dropped.to(source.device)
        cond = EditCondition(source=source, mask=mask, tokens=self.tokenize(instructions, text_dropped),
                             text_dropped=text_dropped, image_dropped=image_dropped)
        for plugin in self.plugins:
            plugin.prepare(cond)
        return cond

    def context(self, cond: EditCondition) -> TextContext:
        """Text features of the condition: the tokens cross-attention reads (extended by plugins) and the
        pooled sentence feature."""
        features, pooled = self.text_encoder(cond.tokens)  # (B, T, D), (B, D)
        for plugin in self.plugins:
            features = plugin.extend_context(features, cond)
        return TextContext(features, pooled)

    # -- the space the diffusion runs in -------------------------------------------------------
    def reference(self, cond: EditCondition) -> torch.Tensor:
        """(B, 3, H, W): the part of the source the U-Net is shown (masked out when hide_masked_source)."""
        return cond.source * (1 - cond.mask) if self.cfg.hide_masked_source else cond.source

    def to_diffusion_space(self, image: torch.Tensor, cond: EditCondition) -> torch.Tensor:
        """Image in [-1, 1] -> what is noised and denoised: the image, or the residual (image − ref) / 2."""
        return (image - self.reference(cond)) / 2 if self.cfg.residual else image

    def to_image_space(self, z: torch.Tensor, cond: EditCondition) -> torch.Tensor:
        """Inverse of `to_diffusion_space`."""
        return self.reference(cond) + 2 * z if self.cfg.residual else z

    # -- denoising ---------------------------------------------------------------------------
    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: EditCondition, context: TextContext | None = None,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) noisy image at integer timesteps t (B,) -> the U-Net's prediction (B, 3, H, W).

        With a plugin that needs a reference branch (PFB), `noise` is the ε that made x_t: the reference branch
        denoises the source noised to the same t with the same ε under the null instruction. With gradients on,
        it runs first as a gradient-free pass (its backward would cost as much as the edit branch's); without,
        both branches run as one batched U-Net call.
        """
        users = [p for p in self.plugins if p.needs_reference]
        if not users:
            return self._denoise(x_t, t, cond, context)
        if noise is None:
            raise ValueError("the reference branch (PFB) needs the noise ε that made x_t")
        B = x_t.shape[0]
        ref_cond = dataclasses.replace(cond, tokens=self.null_tokens.expand(B, -1),
                                       text_dropped=torch.ones_like(cond.text_dropped))
        x_ref = self.add_noise(self.to_diffusion_space(self.reference(cond), cond), noise, t)
        if torch.is_grad_enabled():
            with torch.no_grad(), phases(users, "record"):
                try:
                    self._denoise(x_ref, t, ref_cond)
                except StopUNet:  # the decoder blocks after the last blended one are not needed
                    pass
            with phases(users, "edit"):
                return self._denoise(x_t, t, cond, context)
        context = self.context(cond) if context is None else context
        ref_context = self.context(ref_cond)
        both = TextContext(torch.cat([context.tokens, ref_context.tokens]),
                           torch.cat([context.pooled, ref_context.pooled]))
        with phases(users, "batched"):
            return self._denoise(torch.cat([x_t, x_ref]), torch.cat([t, t]), cond.cat(ref_cond), both)[:B]

    def _denoise(self, x_t: torch.Tensor, t: torch.Tensor, cond: EditCondition,
                 context: TextContext | None = None) -> torch.Tensor:
        """One U-Net call: Z0 = [x_t; image condition] and the text context (Eq. 4)."""
        for plugin in self.plugins:
            plugin.condition(cond)
        context = self.context(cond) if context is None else context
        z = torch.cat([x_t, self.image_condition(cond)], dim=1)  # (B, 3 + 3|4, H, W): Eq. 4, image half
        pooled = context.pooled if self.cfg.pooled_text else None
        return self.unet(z, t, encoder_hidden_states=context.tokens, class_labels=pooled).sample

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
        for plugin in self.plugins:
            x0 = plugin.postprocess(x0, cond)
        return x0
