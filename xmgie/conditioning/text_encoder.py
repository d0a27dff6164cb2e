"""The CLIP text encoder that turns the expressive instruction I into token features (Eq. 4).

For the `tiny` size the text tower is a small config trained from scratch with the generator; the tokenizer is
CLIP's BPE tokenizer over the vocabulary that ships inside open_clip (works offline). Both are this package's own
(`bpe`, `text_transformer`), with open_clip's ids and parameter names, so editing never imports open_clip.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from xmgie.conditioning.bpe import BPETokenizer
from xmgie.conditioning.text_transformer import TextTransformer

VOCAB_SIZE = 49408  # open_clip's shipped BPE vocabulary
START_TOKEN, END_TOKEN = 49406, 49407  # its <start_of_text> and <end_of_text> ids; padding is 0


@dataclass
class TextEncoderConfig:
    """Size of the text tower.

    Attributes:
        context_length: tokens per instruction, start and end tokens included; longer text is truncated.
        width: feature size of each token (= the U-Net's cross_attention_dim).
        layers: transformer blocks.
        heads: attention heads per block (must divide width).
        causal: CLIP's causal mask (each token sees only the ones before it). Off, every token sees the whole
            instruction, so the edit's key word reaches all features from the first step.
    """

    context_length: int = 48
    width: int = 64
    layers: int = 2
    heads: int = 2
    causal: bool = True

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"text width {self.width} is not divisible by heads {self.heads}")
        if self.context_length < 3:
            raise ValueError(f"context_length must be at least 3, got {self.context_length}")


def word_tokens(tokens: torch.Tensor, start: int = START_TOKEN, end: int = END_TOKEN) -> torch.Tensor:
    """(B, T) ids -> (B, T) bool: the instruction's words (not start, end or 0-padding)."""
    return (tokens != 0) & (tokens != start) & (tokens != end)


class TextEncoder(nn.Module):
    """instruction strings -> token ids (B, T) int64 -> token features (B, T, width) float."""

    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = BPETokenizer(context_length=cfg.context_length)
        self.transformer = TextTransformer(cfg.context_length, VOCAB_SIZE, cfg.width, cfg.heads, cfg.layers,
                                           causal=cfg.causal)

    @property
    def width(self) -> int:
        return self.cfg.width

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """list of B strings -> (B, T) int64 ids: <start> words <end> 0-padding, truncated to T."""
        return self.tokenizer(list(texts))

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) int64 -> token features (B, T, width) after the last LayerNorm, and the pooled sentence
        feature (B, width) read at the end token, as CLIP pools."""
        pooled, features = self.transformer(tokens.to(self.transformer.token_embedding.weight.device))
        return features, pooled
