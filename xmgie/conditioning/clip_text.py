"""The CLIP text tower of a latent (`ip2p`) generator: transformers' `CLIPTextModel` and `CLIPTokenizer`, the
parts Stable Diffusion 1.5 and InstructPix2Pix ship. Same interface as `TextEncoder`: `tokenize` then
`forward` -> (token features, pooled feature). Frozen unless asked otherwise, as InstructPix2Pix fine-tunes it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import torch
from torch import nn

from xmgie.conditioning.bpe import BPETokenizer, read_vocabulary, vocabulary_file

if TYPE_CHECKING:  # transformers is imported where a tower is built: a pixel-space editor never needs it
    from transformers import CLIPTextModel

START, END = "<|startoftext|>", "<|endoftext|>"  # the names transformers' CLIPTokenizer gives them


class CLIPText(nn.Module):
    """strings -> (B, T) ids (<start> words <end>, padded with the pad id to T) -> (B, T, D), (B, D).

    Args:
        model: the CLIP text transformer.
        tokenize: list of B strings -> (B, T) int64 ids.
        special_tokens: the (start, end) ids; CAM masks only the other (word) tokens.
        trainable: train the tower with the generator (False: frozen, features computed without a graph).
    """

    def __init__(self, model: "CLIPTextModel", tokenize: Callable[[list[str]], torch.Tensor],
                 special_tokens: tuple[int, int], trainable: bool = False):
        super().__init__()
        self.model = model.requires_grad_(trainable)
        self._tokenize = tokenize
        self.special_tokens = special_tokens
        self.trainable = trainable
        if not trainable:
            self.model.eval()

    @property
    def width(self) -> int:
        return self.model.config.hidden_size

    def train(self, mode: bool = True) -> "CLIPText":
        super().train(mode)
        if not self.trainable:
            self.model.eval()  # frozen: never in training mode
        return self

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self._tokenize(list(texts))

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) int64 -> last hidden state (B, T, D) (what SD's cross-attention reads) and the pooled (B, D)."""
        tokens = tokens.to(self.model.device)
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            out = self.model(input_ids=tokens)
        return out.last_hidden_state, out.pooler_output


def hf_tokenize(tokenizer) -> Callable[[list[str]], torch.Tensor]:
    """A transformers CLIPTokenizer as a `tokenize` callable: padded to its model_max_length, truncated."""
    def tokenize(texts: list[str]) -> torch.Tensor:
        return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                         return_tensors="pt").input_ids
    return tokenize


def open_clip_tokenize(context_length: int = 77) -> Callable[[list[str]], torch.Tensor]:
    """CLIP's BPE tokenizer over open_clip's shipped vocabulary (pads with 0): for a randomly initialised tower."""
    return BPETokenizer(context_length)


def random_clip_text(width: int, layers: int, heads: int, intermediate: int, context_length: int = 77,
                     vocab_size: int = 49408) -> "CLIPTextModel":
    """A randomly initialised CLIP text transformer of the given shape, with CLIP's special token ids."""
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(vocab_size=vocab_size, hidden_size=width, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=context_length,
                         bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
                         projection_dim=width)
    return CLIPTextModel(cfg)


def write_clip_tokenizer_files(folder: str | Path, context_length: int = 77) -> Path:
    """Write a `CLIPTokenizer` folder (vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json)
    built from the BPE file that ships with open_clip, so no download is needed; its ids equal open_clip's.

    The vocabulary is CLIP's: the 256 byte symbols, the same with `</w>`, the first 48,894 merges joined, then
    the start and end tokens (49,408 entries).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, ranks = read_vocabulary(vocabulary_file())
    vocab = (*vocab[:-2], START, END)
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False))
    merges = "\n".join(" ".join(pair) for pair in ranks)  # in rank order
    (folder / "merges.txt").write_text(f"#version: 0.2\n{merges}\n", encoding="utf-8")
    special = {"bos_token": START, "eos_token": END, "unk_token": END, "pad_token": END}
    (folder / "special_tokens_map.json").write_text(json.dumps(special))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "CLIPTokenizer", "model_max_length": context_length, "do_lower_case": True, **special}))
    return folder
