"""CLIP's byte-pair tokenizer, over the vocabulary file that ships inside open_clip (works offline), without
importing open_clip (whose package import loads every model family it has). Same ids as open_clip's
`SimpleTokenizer` with its default lower-case cleaning (tests compare the two).

    text ─ ftfy + HTML unescape, whitespace collapsed, lower case ─ split into words, numbers and punctuation
         ─ each piece's UTF-8 bytes as printable characters ─ BPE merges by rank ─ ids
"""
from __future__ import annotations

import gzip
import html
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import ftfy
import regex
import torch

START, END = "<start_of_text>", "<end_of_text>"
N_MERGES = 49152 - 256 - 2  # the merges CLIP's vocabulary uses out of the shipped file
WORD_END = "</w>"
PIECES = regex.compile(rf"{START}|{END}|'s|'t|'re|'ve|'m|'ll|'d|[\p{{L}}]+|[\p{{N}}]|[^\s\p{{L}}\p{{N}}]+",
                       regex.IGNORECASE)


def vocabulary_file() -> Path:
    """open_clip's `bpe_simple_vocab_16e6.txt.gz`, located without running the package's `__init__`."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("open_clip is not installed: its BPE vocabulary file is the tokenizer's")
    return Path(spec.submodule_search_locations[0]) / "bpe_simple_vocab_16e6.txt.gz"


@lru_cache
def byte_characters() -> dict[int, str]:
    """Byte value -> a printable character: the printable Latin-1 bytes stand for themselves, the other 68 (space,
    control characters, …) for chr(256), chr(257), … in byte order. The order of the dict is the vocabulary's."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return dict(zip(printable + others, map(chr, printable + list(range(256, 256 + len(others))))))


def clean(text: str) -> str:
    """Mojibake and HTML entities fixed, runs of whitespace collapsed, lower case."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).lower()


def merge(symbols: tuple[str, ...], ranks: dict[tuple[str, str], int]) -> tuple[str, ...]:
    """Apply BPE to one word's symbols: repeatedly join every occurrence (left to right) of the adjacent pair of
    lowest merge rank, until no adjacent pair is a known merge."""
    while len(symbols) > 1:
        best = min(zip(symbols, symbols[1:]), key=lambda pair: ranks.get(pair, len(ranks)))
        if best not in ranks:
            break
        joined, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                joined.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                joined.append(symbols[i])
                i += 1
        symbols = tuple(joined)
    return symbols


@lru_cache(maxsize=4)
def read_vocabulary(path: Path) -> tuple[tuple[str, ...], dict[tuple[str, str], int]]:
    """The BPE file -> (tokens in id order, merge pair -> rank): the 256 byte characters, the same ending a word,
    the first N_MERGES merges, <start>, <end>. Read once per process."""
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:N_MERGES + 1]]
    chars = list(byte_characters().values())
    vocab = (*chars, *(c + WORD_END for c in chars), *("".join(m) for m in merges), START, END)
    return vocab, {pair: i for i, pair in enumerate(merges)}


class BPETokenizer:
    """strings -> (B, T) int64 ids: <start> words <end>, padded with 0 to T = `context_length`; longer text is
    truncated and ends with <end>. `encode` / `decode` map one string to ids and back."""

    def __init__(self, context_length: int = 77, path: str | Path | None = None):
        vocab, self.ranks = read_vocabulary(Path(path) if path else vocabulary_file())
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.decoder = dict(enumerate(vocab))
        self.start_id, self.end_id = self.encoder[START], self.encoder[END]
        self.context_length = context_length
        self._words: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def _word_ids(self, piece: str) -> list[int]:
        if piece not in self._words:
            if piece in (START, END):
                symbols: tuple[str, ...] = (piece,)
            else:
                chars = "".join(byte_characters()[b] for b in piece.encode("utf-8"))
                symbols = merge((*chars[:-1], chars[-1] + WORD_END), self.ranks)
            self._words[piece] = [self.encoder[s] for s in symbols]
        return self._words[piece]

    def encode(self, text: str) -> list[int]:
        return [i for piece in PIECES.findall(clean(text)) for i in self._word_ids(piece)]

    def decode(self, ids: Sequence[int]) -> str:
        to_byte = {c: b for b, c in byte_characters().items()}
        data = bytes(to_byte[c] for i in ids for c in self.decoder[int(i)])
        return data.decode("utf-8", errors="replace").replace(WORD_END, " ")

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.start_id, *self.encode(text), self.end_id]
            if len(ids) > self.context_length:
                ids = ids[:self.context_length - 1] + [self.end_id]
            out[row, :len(ids)] = torch.tensor(ids)
        return out
