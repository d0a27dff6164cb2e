"""CLIP's text transformer (Radford et al. 2021) in the parameter layout of open_clip's `TextTransformer`, so
checkpoints written with either load into the other (tests compare the two with the same weights). Kept here so
that the `tiny` generator depends on no other package's internals and editing does not import open_clip.

    ids (B, T) ─ token + position embedding ─ L × [x + attn(LN(x)),  x + MLP(LN(x))] ─ LN ─ features (B, T, W)
                                                                                         └ at the end token (B, W)
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm(nn.LayerNorm):
    """LayerNorm whose output keeps the input's dtype (under autocast too), as CLIP's does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps).to(x.dtype)


class ResidualAttentionBlock(nn.Module):
    """Pre-norm block: (B, T, W) -> (B, T, W); `attn_mask` (T, T) additive (−inf above the diagonal: causal)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.ln_1 = LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(width, hidden), gelu=nn.GELU(),
                                             c_proj=nn.Linear(hidden, width)))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.ln_1(x)
        mask = attn_mask.to(x.dtype) if attn_mask is not None else None
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.width, self.layers = width, layers
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, attn_mask=attn_mask)
        return x


def causal_mask(n: int) -> torch.Tensor:
    """(n, n) additive mask: 0 on and below the diagonal, −inf above (token i sees tokens ≤ i)."""
    return torch.full((n, n), float("-inf")).triu_(1)


class TextTransformer(nn.Module):
    """ids (B, T) int64, T = context_length, each row's largest id its end token -> (pooled (B, W), features
    (B, T, W)): the features after the final LayerNorm, pooled at the end token.

    Initialised as CLIP is (normal, std 0.02 for tokens, 0.01 for positions, width-scaled for the blocks)."""

    def __init__(self, context_length: int, vocab_size: int, width: int, heads: int, layers: int,
                 causal: bool = True):
        super().__init__()
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.transformer = Transformer(width, layers, heads)
        self.ln_final = LayerNorm(width)
        self.register_buffer("attn_mask", causal_mask(context_length) if causal else None, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        width, layers = self.transformer.width, self.transformer.layers
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=width ** -0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=width ** -0.5 * (2 * layers) ** -0.5)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=width ** -0.5 * (2 * layers) ** -0.5)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        blocks = self.transformer.resblocks
        x = self.token_embedding(ids).to((blocks[0].mlp.c_fc if blocks else self.token_embedding).weight.dtype)
        #                                                                                      (B, T, W)
        x = x + self.positional_embedding[:ids.shape[1]].to(x.dtype)
        x = self.ln_final(self.transformer(x, attn_mask=self.attn_mask))
        pooled = x[torch.arange(x.shape[0], device=x.device), ids.argmax(dim=-1)]           # (B, W)
        return pooled, x
