"""The layers of the conditional U-Net (`unet2d.py`): timestep embedding, ResNet block, attention, transformer block,
down- and upsampling. Parameter names are those of diffusers' `UNet2DConditionModel`, so its weights (and
checkpoints trained with it) load as they are; importing this module costs no more than torch.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, flip_sin_to_cos: bool = True, freq_shift: float = 0.0,
                       max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (B,) timesteps -> (B, dim) float32: frequencies exp(−ln(max_period)·i / (dim/2 −
    freq_shift)), [sin, cos] (or [cos, sin] with `flip_sin_to_cos`), zero-padded when dim is odd."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device)
                      / (half - freq_shift))                                   # (half,)
    args = t[:, None].float() * freqs[None]                                    # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)] if flip_sin_to_cos else [torch.sin(args), torch.cos(args)],
                    dim=-1)
    return F.pad(emb, (0, dim % 2))


class TimestepEmbedding(nn.Module):
    """(B, in) -> (B, out): Linear, SiLU, Linear (the timestep's MLP; also the pooled-text projection)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_features, out_features)
        self.linear_2 = nn.Linear(out_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock(nn.Module):
    """GroupNorm-SiLU-conv twice with the time embedding added between them (`scale_shift`: FiLM of the second
    norm), plus a 1x1 shortcut when the channel count changes. (B, C_in, h, w), (B, T_emb) -> (B, C_out, h, w)."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, groups: int, eps: float,
                 time_scale_shift: bool = False, dropout: float = 0.0, output_scale_factor: float = 1.0):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.time_scale_shift, self.output_scale_factor = time_scale_shift, output_scale_factor
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels * (2 if time_scale_shift else 1))
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        t = self.time_emb_proj(F.silu(temb))[:, :, None, None]                 # (B, C_out or 2·C_out, 1, 1)
        if self.time_scale_shift:
            scale, shift = t.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + t)
        h = self.conv2(self.dropout(F.silu(h)))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return (skip + h) / self.output_scale_factor


AttentionProcessor = Callable[["Attention", torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def attend(attn: "Attention", hidden: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
    """The default processor: multi-head attention of hidden (B, N, C) over context (B, T, D) (itself when None)
    -> (B, N, C)."""
    context = hidden if context is None else context
    q = attn.split_heads(attn.to_q(hidden))                                    # (B, h, N, d)
    k, v = attn.split_heads(attn.to_k(context)), attn.split_heads(attn.to_v(context))  # (B, h, T, d)
    out = F.scaled_dot_product_attention(q, k, v)                              # (B, h, N, d)
    return attn.to_out[1](attn.to_out[0](out.transpose(1, 2).flatten(2)))      # (B, N, C)


class Attention(nn.Module):
    """Multi-head attention without biases on q, k, v. `processor(attn, hidden, context)` computes it: `attend`
    unless a module replaced it (CAM's masked cross-attention)."""

    def __init__(self, query_dim: int, heads: int, head_dim: int, cross_attention_dim: int | None = None,
                 dropout: float = 0.0):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(cross_attention_dim or query_dim, inner, bias=False)
        self.to_v = nn.Linear(cross_attention_dim or query_dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim), nn.Dropout(dropout)])
        self.processor: AttentionProcessor = attend

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, h·d) -> (B, h, N, d)."""
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(self, hidden: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self.processor(self, hidden, context)


class GEGLU(nn.Module):
    """(…, dim) -> (…, inner): a · GELU(g) for [a; g] = proj(x)."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, g = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(g)


class FeedForward(nn.Module):
    """GEGLU MLP with 4x width; `net` keeps the reference layout (GEGLU, dropout, output projection)."""

    def __init__(self, dim: int, dropout: float = 0.0, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, mult * dim), nn.Dropout(dropout), nn.Linear(mult * dim, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class TransformerBlock(nn.Module):
    """Pre-norm self-attention (attn1), cross-attention over the text (attn2) and feed-forward, each residual.
    (B, N, C), (B, T, D) -> (B, N, C)."""

    def __init__(self, dim: int, heads: int, head_dim: int, cross_attention_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, head_dim, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, head_dim, cross_attention_dim, dropout=dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """Feature map <-> tokens around transformer blocks, with a residual: (B, C, h, w), (B, T, D) -> (B, C, h, w).
    `linear`: 1x1 projections as Linear layers on tokens (Stable Diffusion 2) instead of 1x1 convolutions."""

    def __init__(self, channels: int, heads: int, cross_attention_dim: int, groups: int, layers: int = 1,
                 linear: bool = False, dropout: float = 0.0):
        super().__init__()
        self.linear = linear
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        proj = (lambda: nn.Linear(channels, channels)) if linear else (lambda: nn.Conv2d(channels, channels, 1))
        self.proj_in = proj()
        self.transformer_blocks = nn.ModuleList(
            TransformerBlock(channels, heads, channels // heads, cross_attention_dim, dropout) for _ in range(layers))
        self.proj_out = proj()

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        B, C, h, w = x.shape
        tokens = self.norm(x)
        if not self.linear:
            tokens = self.proj_in(tokens)
        tokens = tokens.permute(0, 2, 3, 1).reshape(B, h * w, C)                # (B, N, C)
        if self.linear:
            tokens = self.proj_in(tokens)
        for block in self.transformer_blocks:
            tokens = block(tokens, context)
        if self.linear:
            tokens = self.proj_out(tokens)
        out = tokens.reshape(B, h, w, C).permute(0, 3, 1, 2)                   # (B, C, h, w)
        if not self.linear:
            out = self.proj_out(out.contiguous())
        return out + x


class Downsample(nn.Module):
    """3x3 convolution with stride 2: (B, C, h, w) -> (B, C, ⌈h/2⌉, ⌈w/2⌉)."""

    def __init__(self, channels: int, padding: int = 1):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == 0:  # the reference pads right and bottom only
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling (x2, or to `size`: the skip connection's, for sizes 2ⁿ does not divide)
    then a 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest") if size is None else \
            F.interpolate(x, size=size, mode="nearest")
        return self.conv(x)
