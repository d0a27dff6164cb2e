"""Typed configs of the generator's training (LightningCLI exposes each field as --model.<group>.<field>)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_type_hints

T = TypeVar("T")


@dataclass
class LossConfig:
    """Weights of L = λ_diff·MSE(pred, target) + λ_recon·|X_edit − X_gt|₁ + λ_adv·L_adv (Eq. 9, docs/model.md).

    Attributes:
        diff: λ_diff, the denoising term a diffusion model needs.
        recon: λ_recon (paper: 1.0), Eq. 7 on X_edit = GB(x̂0).
        adv: λ_adv (paper: 0.1), Eq. 8 through a PatchGAN; 0 switches the discriminator off.
        id: λ_id (paper: 0.5), Eq. 16; used when the IE module is on.
        id_weighting: how the rows of a batch count in L_id: 'uniform' (Eq. 16, the batch mean) or 'signal'
            (each row by ᾱ_t, normalised: the rows whose x̂0 is still a blur at high noise count little).
        adv_start_step: generator updates before the adversarial term (and the D updates) begin.
        mask_balanced: the denoising term averages its error inside and outside the edit mask separately
            (`losses.mask_balanced_mse`), so small edits are not drowned by the copied background.
        timestep_power: t = ⌊T·u^p⌋ with u ~ U(0, 1); p = 1 is the usual uniform t, p < 1 trains more at high
            noise, where the edit is decided (the first DDIM steps), and less at low noise, where denoising is easy.
        pixel_rows: the image-space terms (recon, id, adv) and the discriminator read only the this many rows of
            each batch with the lowest t (0: every row). In latent space X_edit is the VAE decoder's output with
            gradients, which at 512 px costs about as much as the U-Net; at high noise x̂0 is a blur that these
            terms can only pull towards the mean.
    """

    diff: float = 1.0
    recon: float = 1.0
    adv: float = 0.1
    id: float = 0.5
    id_weighting: Literal["uniform", "signal"] = "uniform"
    adv_start_step: int = 0
    timestep_power: float = 1.0
    mask_balanced: bool = False
    pixel_rows: int = 0

    def __post_init__(self) -> None:
        if min(self.diff, self.recon, self.adv, self.id) < 0:
            raise ValueError(f"loss weights must be non-negative, got {self}")
        if self.pixel_rows < 0:
            raise ValueError(f"pixel_rows must be 0 (every row) or positive, got {self.pixel_rows}")
        if self.timestep_power <= 0:
            raise ValueError(f"timestep_power must be positive, got {self.timestep_power}")
        if self.id_weighting not in ("uniform", "signal"):
            raise ValueError(f"loss.id_weighting must be 'uniform' or 'signal', got {self.id_weighting!r}")


@dataclass
class OptimConfig:
    """Adam for the generator (U-Net, text encoder, modules) and for the discriminator.

    Attributes:
        lr: generator learning rate (paper: 1e-4).
        d_lr: discriminator learning rate.
        betas: Adam betas (paper: 0.9, 0.999).
        grad_clip: max global gradient norm of each update (0 = off).
        ema_decay: decay of the EMA of generator weights used for sampling (0 = sample from the raw weights).
        warmup_steps: linear learning-rate warm-up, in generator updates.
        schedule: after warm-up, "constant" or "cosine" (decay to lr·final_lr_ratio at trainer.max_steps).
        final_lr_ratio: the cosine schedule's last learning rate as a fraction of lr.
        text_lr_scale: the trainable text tower's learning rate as a multiple of lr.
    """

    lr: float = 1e-4
    d_lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    warmup_steps: int = 0
    schedule: str = "constant"
    final_lr_ratio: float = 0.1
    text_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if not 0 <= self.final_lr_ratio <= 1:
            raise ValueError(f"final_lr_ratio must be in [0, 1], got {self.final_lr_ratio}")
        if self.lr <= 0 or self.d_lr <= 0 or self.text_lr_scale <= 0:
            raise ValueError(f"learning rates must be positive, got lr={self.lr}, d_lr={self.d_lr}, "
                             f"text_lr_scale={self.text_lr_scale}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        self.betas = tuple(self.betas)


@dataclass
class SamplingConfig:
    """Classifier-free guidance training and DDIM sampling.

    Attributes:
        text_dropout / image_dropout: probability of training a sample with the null instruction / null image.
        mask_dropout: probability of showing a mask-channel generator the all-ones ("unknown") mask instead of
            the edit mask, so that it also edits without one.
        steps: DDIM steps when editing (validation, test, `xmgie edit`).
        guidance_text / guidance_image: s_T and s_I; 1.0 / 1.0 runs a single U-Net pass per step.
        val_steps: DDIM steps for the validation edits (cheaper than `steps`).
        source_blend: fraction of the DDIM steps after each of which the sample outside the mask is replaced by
            the source noised to the same level (PFB-Diff's latent blending; 0 = off).
    """

    text_dropout: float = 0.05
    image_dropout: float = 0.05
    mask_dropout: float = 0.1
    steps: int = 32
    guidance_text: float = 1.0
    guidance_image: float = 1.0
    val_steps: int = 16
    source_blend: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.source_blend <= 1:
            raise ValueError(f"source_blend must be in [0, 1], got {self.source_blend}")
        if not all(0 <= p < 1 for p in (self.text_dropout, self.image_dropout, self.mask_dropout)):
            raise ValueError("dropout probabilities must be in [0, 1)")
        if self.steps < 1 or self.val_steps < 1:
            raise ValueError("steps and val_steps must be at least 1")


def coerce(cls: type[T], value: Any) -> T:
    """A dataclass from itself or from a (possibly nested) dict, as checkpoints store hyper-parameters."""
    if isinstance(value, cls):
        return value
    if value is None:
        return cls()
    kwargs = dict(value)
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]) and isinstance(kwargs.get(f.name), dict):
            kwargs[f.name] = coerce(hints[f.name], kwargs[f.name])
    return cls(**kwargs)


@dataclass
class DataStageConfig:
    """What every training stage besides the generator takes (`xmgie <stage> train`).

    Attributes:
        out: the file to write (a .json summary is written beside it).
        dataset: the dataset's name (shapes, cub, flowers, coco, celebahq, cars, deepfashion, triplets).
        root: where a dataset on disk lives (default data/<dataset>).
        steps: optimiser updates.
        batch_size: images per update.
        resolution: image side in pixels (default: the dataset's).
        seed: the seed of the data order and the initial weights.
    """

    out: str
    dataset: str = "shapes"
    root: str | None = field(default=None, metadata={"flag": "--data-root"})
    steps: int = 1000
    batch_size: int = 32
    resolution: int | None = None
    seed: int = 0


@dataclass
class IdentityStageConfig(DataStageConfig):
    """`xmgie identity train`: the small E_id CNN of the IE module on a dataset's identity labels; prints JSON.

    Attributes:
        out: weights file to write (a .json summary is written beside it).
        dim: embedding size D_id.
        lr: learning rate.
        loss: softmax classification or ArcFace margins.
    """

    dim: int = 64
    lr: float = 2e-3
    loss: Literal["softmax", "arcface"] = "softmax"


@dataclass
class AttributeStageConfig(DataStageConfig):
    """`xmgie attributes train`: the multi-label classifier behind AA on a dataset's attributes; prints JSON.

    Attributes:
        out: weights file to write (a .json summary is written beside it).
        arch: the classifier (a small CNN, or a ResNet-18 from scratch).
        lr: learning rate.
    """

    batch_size: int = 64
    arch: Literal["cnn", "resnet18"] = "cnn"
    lr: float = 2e-3


@dataclass
class ExpanderStageConfig(DataStageConfig):
    """`xmgie expander train`: the instruction expander on a dataset's (image, prompt, instruction) triples; prints
    JSON.

    Attributes:
        out: expander file to write (a .json of held-out metrics beside it).
        lr: learning rate.
        pretrained_lm: a local GPT-2 folder (weights + tokenizer) to start from.
        eval_images: held-out images scored after training.
        visual_tokens: one token per ViT patch (LLaVA) or K tokens from the pooled embedding (ClipCap).
    """

    steps: int = 1500
    lr: float = 1e-3
    pretrained_lm: str | None = None
    eval_images: int = 256
    visual_tokens: Literal["patches", "pooled"] = "patches"


@dataclass
class MaskStageConfig(DataStageConfig):
    """`xmgie mask train`: the learned edit-mask predictor (for `--mask auto --mask-net FILE`) on a dataset's masks;
    prints JSON.

    Attributes:
        out: predictor file to write (a .json of held-out IoU, precision and recall beside it).
        steps: optimiser updates.
        channels: width of the first level (then 2×, 4×).
        lr: learning rate.
        threshold: τ on the probabilities for the held-out scores (what --mask-threshold does at use).
        blur: largest σ (pixels) of the Gaussian blur applied to half the training photos, so photos downsized from
            a larger size are read as well as the dataset's own renders (0: none).
    """

    steps: int = 1500
    channels: int = 32
    lr: float = 2e-3
    threshold: float = 0.5
    blur: float = 1.0
