"""Token vocabularies of the instruction expander's language model.

Two kinds, one interface (encode / decode / size and the special ids pad, sep, eos):
    CompactBPE    open_clip's BPE tokenizer (ships with the package, works offline), with the ids remapped onto
                  the tokens the training texts use plus five specials: a from-scratch LM then predicts over a
                  few hundred entries instead of 49,408 (a 100× smaller output layer).
    HFVocabulary  the tokenizer of a local GPT-2 folder, as is; its end-of-text token also separates the
                  prompt from the instruction (no new embeddings, so pretrained weights stay usable).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from xmgie.conditioning.bpe import BPETokenizer

PAD, SEP, EOS, UNK = 0, 1, 2, 3
N_SPECIAL = 4


class CompactBPE:
    """open_clip BPE ids mapped onto 4 + len(bpe_ids) compact ids (unknown BPE ids → UNK)."""

    pad, sep, eos = PAD, SEP, EOS

    def __init__(self, bpe_ids: Iterable[int]):
        self.bpe_ids = sorted(set(int(i) for i in bpe_ids))
        self.to_compact = {b: N_SPECIAL + k for k, b in enumerate(self.bpe_ids)}
        self.bpe = BPETokenizer()

    @classmethod
    def build(cls, texts: Iterable[str]) -> "CompactBPE":
        """The vocabulary of every BPE token in `texts`."""
        bpe = BPETokenizer()
        return cls(i for t in texts for i in bpe.encode(t))

    @property
    def size(self) -> int:
        return N_SPECIAL + len(self.bpe_ids)

    def encode(self, text: str) -> list[int]:
        return [self.to_compact.get(i, UNK) for i in self.bpe.encode(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Compact ids → text; specials are dropped, decoding stops at EOS."""
        bpe = []
        for i in ids:
            if i == EOS:
                break
            if i >= N_SPECIAL:
                bpe.append(self.bpe_ids[i - N_SPECIAL])
        # open_clip's decoder puts a space before punctuation ("left , keep"): write it as typed
        return re.sub(r"\s+([,.;:!?])", r"\1", self.bpe.decode(bpe)).strip()

    def state(self) -> dict[str, Any]:
        return {"kind": "compact_bpe", "bpe_ids": self.bpe_ids}


class HFVocabulary:
    """A Hugging Face tokenizer (a local GPT-2 folder's)."""

    def __init__(self, folder: str | Path):
        from transformers import AutoTokenizer

        self.folder = str(folder)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
        except (OSError, ValueError) as err:
            raise FileNotFoundError(f"no tokenizer in {folder}: {err}") from None
        eos = self.tokenizer.eos_token_id
        if eos is None:
            raise ValueError(f"the tokenizer in {folder} has no end-of-text token")
        self.pad = self.sep = self.eos = int(eos)

    @property
    def size(self) -> int:
        return len(self.tokenizer)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Iterable[int]) -> str:
        out = []
        for i in ids:
            if i == self.eos:
                break
            out.append(int(i))
        return self.tokenizer.decode(out, skip_special_tokens=True).strip()

    def state(self) -> dict[str, Any]:
        return {"kind": "hf", "folder": self.folder}


def vocabulary_from_state(state: dict[str, Any], folder: str | Path | None = None) -> CompactBPE | HFVocabulary:
    """Rebuild a vocabulary saved with `state()`; `folder` overrides where an HF tokenizer is read from."""
    if state["kind"] == "compact_bpe":
        return CompactBPE(state["bpe_ids"])
    if state["kind"] == "hf":
        return HFVocabulary(folder or state["folder"])
    raise ValueError(f"unknown vocabulary kind {state['kind']!r}")
