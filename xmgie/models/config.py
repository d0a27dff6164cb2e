"""What fixes a generator's architecture and diffusion process (read by the backbone's builders and the generator)."""
from __future__ import annotations

from dataclasses import dataclass, field

from xmgie.conditioning.text_encoder import TextEncoderConfig
from xmgie.models.unet_sizes import UNET_SIZES

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


@dataclass
class GeneratorConfig:
    """Everything that fixes the generator's architecture and diffusion process.

    Attributes:
        size: a key of UNET_SIZES.
        text: the text tower.
        prediction_type: what the U-Net predicts: "epsilon", "v_prediction" or "sample" (x0). v with the x̂0
            losses trains far better than ε on short CPU budgets; experiments/train.yaml predicts x0, which also
            keeps the copy outside the mask through multi-step DDIM (docs/model.md).
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
        beta_start / beta_end: first and last β of the "linear" and "scaled_linear" schedules.
        residual: diffuse the edit (X_gt − X_ref) / 2 instead of X_gt, X_ref being the image the U-Net is shown.
            Copying the source is then the zero output, which a small model learns at once; pixel sizes only
            (pretrained InstructPix2Pix weights denoise the target latent itself).
        pretrained: a latent size's local diffusers folder in the timbrooks/instruct-pix2pix layout (or `ip2p`,
            the weights registry's copy); None initialises the size's shapes at random. The folder's schedule
            must equal the one configured here.
        train_text_encoder: train the text tower with the U-Net (the `tiny` tower always trains: it starts
            from random weights); a pretrained CLIP tower is frozen by default, as InstructPix2Pix keeps it.
        gradient_checkpointing: recompute the U-Net's (and the VAE decoder's) activations in the backward pass.
        compile: a torch.compile backend for the U-Net ("inductor" on GPUs), None for eager execution.
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
    beta_start: float = 0.0001
    beta_end: float = 0.02
    residual: bool = False
    pretrained: str | None = None
    train_text_encoder: bool = False
    gradient_checkpointing: bool = False
    compile: str | None = None

    def __post_init__(self) -> None:
        if self.size not in UNET_SIZES:
            raise ValueError(f"unknown size {self.size!r}; available: {', '.join(UNET_SIZES)}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}")
        if not self.latent and (self.pretrained or self.train_text_encoder):
            raise ValueError(f"size {self.size!r} works in pixel space: pretrained and train_text_encoder are for "
                             f"the latent sizes ({', '.join(k for k, v in UNET_SIZES.items() if v.latent)})")
        if self.latent and self.residual:
            raise ValueError("residual diffusion is for pixel sizes; a latent generator denoises the target latent")

    @property
    def latent(self) -> bool:
        return UNET_SIZES[self.size].latent
