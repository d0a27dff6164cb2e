"""Cross-Attention Masking (CAM, §3.4, Eq. 10–12): the instruction's words may only act inside the edit mask.

    A   = softmax(Q Kᵀ / √d)          (Eq. 10)
    A_M = A ⊙ M                        (Eq. 11), M[n, t] = mask[n] for selected (word) tokens t, 1 for the others
    O   = A_M V                        (Eq. 12)

Post-softmax masking without renormalisation is the paper's form; `pre_softmax` (PFB-Diff's variant) fills the
masked logits with the dtype's minimum instead, so each row still sums to one over what is left.
Self-attention is untouched: the processor only replaces cross-attention layers.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from xmgie.conditioning.text_encoder import word_tokens
from xmgie.modules.plugin import EditCondition, EditPlugin

MODES = ("post_softmax", "pre_softmax")


def masked_cross_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spatial_mask: torch.Tensor,
                           token_select: torch.Tensor, mode: str = "post_softmax") -> torch.Tensor:
    """Eq. 10–12.

    q (B·heads, N, d), k / v (B·heads, T, d) with batch-major heads (row b·heads + h), spatial_mask (B, N) in
    {0, 1}, token_select (B, T) bool -> (B·heads, N, d).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    heads = q.shape[0] // spatial_mask.shape[0]
    spatial = spatial_mask.to(q.dtype).repeat_interleave(heads, dim=0)        # (B·h, N)
    select = token_select.to(torch.bool).repeat_interleave(heads, dim=0)      # (B·h, T)
    # M = 1 where the token is not selected, else the spatial mask: (B·h, N, T)
    m = torch.where(select[:, None, :], spatial[:, :, None], torch.ones((), dtype=q.dtype, device=q.device))
    logits = torch.baddbmm(torch.zeros((), dtype=q.dtype, device=q.device), q, k.transpose(1, 2),
                           alpha=q.shape[-1] ** -0.5)                          # (B·h, N, T)
    if mode == "pre_softmax":
        probs = logits.masked_fill(m == 0, torch.finfo(q.dtype).min).softmax(dim=-1)
    else:
        probs = logits.softmax(dim=-1) * m
    return torch.bmm(probs, v)                                                # (B·h, N, d)


def layer_mask(mask: torch.Tensor, tokens: int) -> torch.Tensor:
    """(B, 1, H, W) edit mask -> (B, N) for a layer whose N = h·w tokens keep the image's aspect ratio:
    area-resized (or nearest, when upsampling) and re-binarised at 0.5."""
    H, W = mask.shape[-2:]
    scale = (H * W / tokens) ** 0.5
    h, w = round(H / scale), round(W / scale)
    if h * w != tokens:
        raise ValueError(f"cannot map {tokens} attention tokens onto a {H}x{W} mask")
    mode = "area" if h <= H else "nearest"
    return (F.interpolate(mask.float(), size=(h, w), mode=mode) >= 0.5).flatten(1)  # (B, N)


class CAMState:
    """The edit mask and word selection of one U-Net call; the mask resized once per layer token count."""

    def __init__(self, mask: torch.Tensor, select: torch.Tensor):
        self.mask, self.select = mask, select                                  # (B, 1, H, W), (B, T)
        self._spatial: dict[int, torch.Tensor] = {}

    def spatial(self, tokens: int) -> torch.Tensor:
        """(B, N) mask of a layer with N tokens."""
        if tokens not in self._spatial:
            self._spatial[tokens] = layer_mask(self.mask, tokens)
        return self._spatial[tokens]


class MaskedCrossAttnProcessor:
    """Attention processor of a cross-attention layer: masked cross-attention (Eq. 10–12) with the plugin's
    current mask; without one (the plugin reset) or without a context, the layer's previous processor."""

    def __init__(self, plugin: "CrossAttentionMasking", fallback: Callable[..., torch.Tensor]):
        self.plugin, self.fallback = plugin, fallback

    def __call__(self, attn: nn.Module, hidden: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        state = self.plugin.state
        if context is None or state is None:
            return self.fallback(attn, hidden, context)
        select = F.pad(state.select, (0, context.shape[1] - state.select.shape[1]), value=False)  # (B, T'):
        # appended tokens (IE's identity tokens) are not masked
        q = attn.split_heads(attn.to_q(hidden)).flatten(0, 1)                # (B·h, N, d), batch-major heads
        k = attn.split_heads(attn.to_k(context)).flatten(0, 1)                # (B·h, T', d)
        v = attn.split_heads(attn.to_v(context)).flatten(0, 1)
        out = masked_cross_attention(q, k, v, state.spatial(hidden.shape[1]), select, self.plugin.mode)
        out = out.unflatten(0, (hidden.shape[0], attn.heads)).transpose(1, 2).flatten(2)  # (B, N, h·d)
        return attn.to_out[1](attn.to_out[0](out))                            # (B, N, C)


class CrossAttentionMasking(EditPlugin):
    """CAM as a generator plugin: installs `MaskedCrossAttnProcessor` on every cross-attention layer and feeds
    it the edit mask and the instruction's word tokens (not start, end or padding) of each U-Net call."""

    name = "cam"

    def __init__(self, mode: str = "post_softmax", start_token: int = 49406, end_token: int = 49407):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"cam mode must be one of {MODES}, got {mode!r}")
        self.mode, self.start_token, self.end_token = mode, start_token, end_token
        self.state: CAMState | None = None

    def attach(self, unet: nn.Module) -> None:
        """Wrap the processor of every cross-attention layer (`models.unet_layers.Attention` named attn2)."""
        for name, module in unet.named_modules():
            if name.endswith("attn2"):
                module.processor = MaskedCrossAttnProcessor(self, module.processor)

    def word_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, T) bool: the instruction's words."""
        return word_tokens(tokens, self.start_token, self.end_token)

    def condition(self, cond: EditCondition) -> None:
        self.state = CAMState(cond.mask, self.word_tokens(cond.tokens))

    def reset(self) -> None:
        self.state = None

    def extra_repr(self) -> str:
        return f"mode={self.mode}"
