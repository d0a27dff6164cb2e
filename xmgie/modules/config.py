"""Typed configs of the four modules (`--model.modules.<module>.<field>`) and the table that builds them.

Each module is off unless enabled, so the defaults are the plain MGIE-style generator (the ablation's `base`);
`experiments/ablation/full.yaml` switches all four on, `experiments/finetune.yaml` sets their fine-tuning values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from xmgie.modules.cam import MODES, CrossAttentionMasking
from xmgie.modules.gaussian_blur import GaussianBlur
from xmgie.modules.identity import ATTENTION_KINDS, ENCODER_KINDS, IdentityEmbedding, build_identity_encoder
from xmgie.modules.pfb import ProgressiveFeatureBlending
from xmgie.modules.plugin import EditPlugin


@dataclass
class PFBConfig:
    """enabled; layers: 'mid' and 'up<i>' (decoder block i, 0 next to the bottleneck) as in the paper, and 'out'
    (the prediction, blended with the source's exact target: outside the mask the edit keeps the source exactly);
    alpha: None learns α_l (the paper), a number fixes every α_l (1.0: PFB-Diff's training-free blending);
    alpha_init: where a learned α_l starts (the paper's 0.5 replaces half of a trained editor's in-mask features
    by the source's at step 0)."""

    enabled: bool = False
    layers: tuple[str, ...] = ("mid", "up0", "up1")
    alpha: float | None = None
    alpha_init: float = 0.5

    def __post_init__(self) -> None:
        self.layers = tuple(self.layers)
        if self.alpha is not None and not 0 <= self.alpha <= 1:
            raise ValueError(f"pfb.alpha must be in [0, 1] or null, got {self.alpha}")
        if not 0 < self.alpha_init < 1:
            raise ValueError(f"pfb.alpha_init must be in (0, 1), got {self.alpha_init}")


@dataclass
class CAMConfig:
    """enabled; mode: 'post_softmax' (the paper, Eq. 11) or 'pre_softmax' (masked logits)."""

    enabled: bool = False
    mode: str = "post_softmax"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"cam.mode must be one of {MODES}, got {self.mode!r}")


@dataclass
class IEConfig:
    """enabled; encoder: 'cnn' (trained by `make train-identity`) or 'facenet'; weights: its file (needed to
    train; a checkpoint carries them afterwards); tokens: K identity tokens (Eq. 14); dim: the CNN's D_id;
    attention: how cross-attention reads the tokens: 'appended' to the text tokens (Eq. 14 literally: they take
    a share of every softmax row from the start) or 'decoupled' (their own keys/values and a zero-initialised
    gate per layer, added to the text attention: an exact no-op until trained)."""

    enabled: bool = False
    encoder: str = "cnn"
    weights: str | None = None
    tokens: int = 4
    dim: int = 64
    attention: str = "appended"

    def __post_init__(self) -> None:
        if self.encoder not in ENCODER_KINDS:
            raise ValueError(f"ie.encoder must be one of {ENCODER_KINDS}, got {self.encoder!r}")
        if self.attention not in ATTENTION_KINDS:
            raise ValueError(f"ie.attention must be one of {ATTENTION_KINDS}, got {self.attention!r}")
        if self.tokens < 0:
            raise ValueError(f"ie.tokens must be >= 0, got {self.tokens}")


@dataclass
class GBConfig:
    """enabled; sigma_max, sigma_s: σ_max and σ_s of Eq. 18 in pixels at the working resolution."""

    enabled: bool = False
    sigma_max: float = 5.0
    sigma_s: float = 10.0

    def __post_init__(self) -> None:
        if self.sigma_max < 0 or self.sigma_s <= 0:
            raise ValueError(f"gb needs sigma_max >= 0 and sigma_s > 0, got {self.sigma_max}, {self.sigma_s}")


@dataclass
class ModulesConfig:
    pfb: PFBConfig = field(default_factory=PFBConfig)
    cam: CAMConfig = field(default_factory=CAMConfig)
    ie: IEConfig = field(default_factory=IEConfig)
    gb: GBConfig = field(default_factory=GBConfig)

    @property
    def enabled(self) -> list[str]:
        return [name for name in MODULE_FACTORIES if getattr(self, name).enabled]


# name -> factory(config of that module, text width, (start, end) token ids). The order is the order the
# plugins run in: IE fuses a block's output before PFB blends it; GB post-processes last.
MODULE_FACTORIES: dict[str, Callable[..., EditPlugin]] = {
    "ie": lambda c, width, special: IdentityEmbedding(build_identity_encoder(c.encoder, c.dim), width, c.tokens,
                                                      c.attention),
    "cam": lambda c, width, special: CrossAttentionMasking(c.mode, *special),
    "pfb": lambda c, width, special: ProgressiveFeatureBlending(c.layers, c.alpha, c.alpha_init),
    "gb": lambda c, width, special: GaussianBlur(c.sigma_max, c.sigma_s),
}


def build_plugins(cfg: ModulesConfig, text_width: int, special_tokens: tuple[int, int]) -> list[EditPlugin]:
    """The enabled modules as generator plugins; special_tokens: the tokenizer's (start, end) ids."""
    return [MODULE_FACTORIES[name](getattr(cfg, name), text_width, special_tokens) for name in cfg.enabled]
