"""The conditional U-Net that denoises (Eq. 4's ε_θ), written for this package: the architecture of diffusers'
`UNet2DConditionModel` for the configurations Stable Diffusion 1.x/2.x, InstructPix2Pix and the size table
(`unet_sizes.py`) use, with the same parameter names and config keys, so diffusers' weights and folders load as they are
(`unet_folder.py`) and nothing but torch is imported to edit.

    x (B, C_in, H, W), t (B,), text (B, T, D) [, pooled (B, D)]  ->  prediction (B, C_out, H, W)

1. t -> sinusoidal embedding -> MLP (+ the pooled text's projection when `class_embed_type="projection"`);
2. conv_in; encoder levels, each leaving its skip features; the middle level;
3. decoder levels, each reading its skips, upsampled to the next skip's size; GroupNorm-SiLU-conv_out.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xmgie.models.unet_blocks import BLOCK_KINDS, DownLevel, MidLevel, UpLevel
from xmgie.models.unet_layers import ResnetBlock, TimestepEmbedding, timestep_embedding

# config keys of the reference this U-Net does not implement, with the only value it accepts for each
FIXED_KEYS: dict[str, Any] = {
    "center_input_sample": False, "mid_block_type": "UNetMidBlock2DCrossAttn", "only_cross_attention": False,
    "act_fn": "silu", "transformer_layers_per_block": 1, "reverse_transformer_layers_per_block": None,
    "encoder_hid_dim": None, "encoder_hid_dim_type": None, "num_attention_heads": None, "dual_cross_attention": False,
    "addition_embed_type": None, "addition_time_embed_dim": None, "num_class_embeds": None, "upcast_attention": False,
    "resnet_skip_time_act": False, "resnet_out_scale_factor": 1.0, "time_embedding_type": "positional",
    "time_embedding_dim": None, "time_embedding_act_fn": None, "timestep_post_act": None, "time_cond_proj_dim": None,
    "conv_in_kernel": 3, "conv_out_kernel": 3, "attention_type": "default", "class_embeddings_concat": False,
    "mid_block_only_cross_attention": None, "cross_attention_norm": None, "addition_embed_type_num_heads": 64}


@dataclass(frozen=True)
class UNetConfig:
    """The architecture, under the reference's config keys. `attention_head_dim` is, as there, the number of heads
    (one for every level, or one per level)."""

    in_channels: int = 4
    out_channels: int = 4
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    down_block_types: tuple[str, ...] = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    up_block_types: tuple[str, ...] = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    layers_per_block: int = 2
    attention_head_dim: int | tuple[int, ...] = 8
    cross_attention_dim: int = 1280
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    downsample_padding: int = 1
    mid_block_scale_factor: float = 1.0
    dropout: float = 0.0
    use_linear_projection: bool = False
    class_embed_type: str | None = None            # None or "projection" (of a pooled text feature)
    projection_class_embeddings_input_dim: int | None = None
    resnet_time_scale_shift: str = "default"       # "default" (add) or "scale_shift" (FiLM)
    sample_size: int | tuple[int, int] | None = field(default=None, compare=False)  # informative only

    def __post_init__(self) -> None:
        n = len(self.block_out_channels)
        if len(self.down_block_types) != n or len(self.up_block_types) != n:
            raise ValueError(f"a U-Net with {n} levels needs {n} down and {n} up block types")
        unknown = {*self.down_block_types, *self.up_block_types} - set(BLOCK_KINDS)
        if unknown:
            raise ValueError(f"unsupported U-Net block types {sorted(unknown)}; supported: {', '.join(BLOCK_KINDS)}")
        if self.class_embed_type not in (None, "projection"):
            raise ValueError(f"unsupported class_embed_type {self.class_embed_type!r} (None or 'projection')")
        if self.class_embed_type and not self.projection_class_embeddings_input_dim:
            raise ValueError("class_embed_type 'projection' needs projection_class_embeddings_input_dim")
        if self.resnet_time_scale_shift not in ("default", "scale_shift"):
            raise ValueError(f"unsupported resnet_time_scale_shift {self.resnet_time_scale_shift!r}")

    @property
    def heads(self) -> tuple[int, ...]:
        """Attention heads per level."""
        h = self.attention_head_dim
        return tuple(h) if isinstance(h, (tuple, list)) else (h,) * len(self.block_out_channels)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> "UNetConfig":
        """From a diffusers `config.json` dict: keys starting with "_" are metadata; a key of the reference this
        U-Net does not implement must hold its one supported value (ValueError naming it otherwise)."""
        names = {f.name for f in dataclasses.fields(cls)}
        wrong = [f"{k}={v!r}" for k, v in config.items()
                 if not (k.startswith("_") or k in names or _supported(v, FIXED_KEYS.get(k)))]
        if wrong:
            raise ValueError(f"unsupported U-Net config: {', '.join(wrong)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in names}
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The reference's config keys (config.json of a diffusers folder)."""
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        return {"_class_name": "UNet2DConditionModel", **out, **FIXED_KEYS}


def _supported(value: Any, fixed: Any) -> bool:
    """Whether a key outside UNetConfig holds its one supported value (None for a key this module does not know).
    None and False both count as "off" (Stable Diffusion 1.5 writes `"upcast_attention": null`); a per-level list of
    the value counts too (transformer_layers_per_block [1, 1, 1])."""
    values = value if isinstance(value, list) else [value]
    return all(v == fixed or (v in (None, False) and fixed in (None, False)) for v in values)


class ConditionalUNet(nn.Module):
    """ε_θ(x_t, t, text[, pooled]) of `config` at random initialisation (see the module docstring for the steps)."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = c = config
        chans, heads, n = c.block_out_channels, c.heads, len(c.block_out_channels)
        temb = 4 * chans[0]
        self.conv_in = nn.Conv2d(c.in_channels, chans[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(chans[0], temb)
        self.class_embedding = (TimestepEmbedding(c.projection_class_embeddings_input_dim, temb)
                                if c.class_embed_type == "projection" else None)

        def resnet(c_in: int, c_out: int, scale: float = 1.0) -> ResnetBlock:
            return ResnetBlock(c_in, c_out, temb, c.norm_num_groups, c.norm_eps,
                               time_scale_shift=c.resnet_time_scale_shift == "scale_shift", dropout=c.dropout,
                               output_scale_factor=scale)

        def attention(level: int) -> dict:
            return dict(heads=heads[level], cross_attention_dim=c.cross_attention_dim, groups=c.norm_num_groups,
                        linear=c.use_linear_projection, dropout=c.dropout)

        # registered in the reference's order (encoder, decoder, middle), so parameters() lists them as it does
        self.down_blocks, self.up_blocks = nn.ModuleList(), nn.ModuleList()
        for i, kind in enumerate(c.down_block_types):
            c_in = chans[max(i - 1, 0)]
            resnets = [partial(resnet, c_in if j == 0 else chans[i], chans[i]) for j in range(c.layers_per_block)]
            self.down_blocks.append(DownLevel(resnets, attention(i) if BLOCK_KINDS[kind] else None,
                                              downsample=i < n - 1, padding=c.downsample_padding))
        s = c.mid_block_scale_factor
        self.mid_block = MidLevel([partial(resnet, chans[-1], chans[-1], s)] * 2, attention(n - 1))
        rev = chans[::-1]
        for i, kind in enumerate(c.up_block_types):
            c_out, k = rev[i], c.layers_per_block
            inputs = [rev[max(i - 1, 0)]] + [c_out] * k       # what each ResNet block reads before its skip …
            skips = [c_out] * k + [rev[min(i + 1, n - 1)]]      # … and the skip's channels (the last: the level below)
            resnets = [partial(resnet, a + b, c_out) for a, b in zip(inputs, skips)]
            self.up_blocks.append(UpLevel(resnets, attention(n - 1 - i) if BLOCK_KINDS[kind] else None,
                                          upsample=i < n - 1))
        self.conv_norm_out = nn.GroupNorm(c.norm_num_groups, chans[0], eps=c.norm_eps)
        self.conv_out = nn.Conv2d(chans[0], c.out_channels, 3, padding=1)

    def enable_gradient_checkpointing(self) -> None:
        """Recompute each ResNet block and transformer in the backward pass instead of keeping its activations."""
        for block in [*self.down_blocks, self.mid_block, *self.up_blocks]:
            block.gradient_checkpointing = True

    def forward(self, x: torch.Tensor, t: torch.Tensor | int, encoder_hidden_states: torch.Tensor,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C_in, H, W), t (B,) or a scalar, encoder_hidden_states (B, T, D), class_labels (B, D) the pooled
        text (with `class_embed_type="projection"`) -> (B, C_out, H, W) in x's dtype."""
        t = torch.as_tensor(t, device=x.device)
        t = t.reshape(-1).expand(x.shape[0])                                   # (B,)
        emb = self.time_embedding(timestep_embedding(t, self.config.block_out_channels[0], self.config.flip_sin_to_cos,
                                                     self.config.freq_shift).to(x.dtype))  # 1.
        if self.class_embedding is not None:
            if class_labels is None:
                raise ValueError("this U-Net projects a pooled text feature: pass class_labels")
            emb = emb + self.class_embedding(class_labels.to(x.dtype))
        h = self.conv_in(x)                                                    # 2.
        skips: list[torch.Tensor] = [h]
        for block in self.down_blocks:
            h, level_skips = block(h, emb, encoder_hidden_states)
            skips.extend(level_skips)
        h = self.mid_block(h, emb, encoder_hidden_states)
        for block in self.up_blocks:                                           # 3.
            k = len(block.resnets)
            level_skips, skips = tuple(skips[-k:]), skips[:-k]
            size = tuple(skips[-1].shape[-2:]) if skips else None
            h = block(h, level_skips, emb, encoder_hidden_states, size)
        return self.conv_out(F.silu(self.conv_norm_out(h)))
