"""The base of the file-backed datasets: an index of `Record`s per split, read once from the annotation files
(and cached outside the dataset folder), turned into `EditSample`s by one Dataset class.

A subclass states where the data lives and how to read it:
    LAYOUT, SOURCE          the official layout and where it comes from (for the missing-data error)
    index()                 {split: [Record]} from the annotation files (tracking every file it reads)
    sample_mask(...)        the edit mask of a record, from whatever its annotation holds
    instruction(...)        the expressive instruction I from the record's annotations (a small heuristic)
"""
from __future__ import annotations

import abc
import hashlib
import os
import pickle
import random
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from data_modules.base import BadSample, EditDataModule, EditSample
from data_modules.images import Box, centre_crop, crop_resize, object_crop, read_rgb_for_crop
from data_modules.masks import location_phrase
from xmgie.errors import UserError

CACHE_ENV = "XMGIE_CACHE"
INDEX_FORMAT = 2  # 2: the cache keeps the index's fallback notes


class DatasetMissing(UserError):
    """A dataset folder or annotation file is not where the official layout puts it."""


@dataclass
class Record:
    """One image of a file-backed dataset, as its annotation files describe it.

    key: stable id (the file name, relative to the root); seeds splits and pairings.
    captions: one or more captions (the prompt P is one of them).
    attributes: (A,) float32 multi-hot, or None when the dataset has none.
    facts: words about the image for the instruction heuristic (class name, attribute phrases …).
    bbox: object box (x, y, w, h) in pixels, for the object crop; None: centre crop.
    mask: the dataset's mask annotation (a path, polygons, a box …), read by the DataModule's `sample_mask`.
    target: path of the edited image (instruction triplets); None: the target is the source.
    """

    key: str
    image: str
    captions: tuple[str, ...]
    identity: int = -1
    attributes: np.ndarray | None = None
    facts: tuple[str, ...] = ()
    bbox: tuple[float, float, float, float] | None = None
    mask: Any = None
    target: str | None = None


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    """`value` when it is one of `allowed`; otherwise the one-line ValueError naming the option."""
    if value not in allowed:
        raise ValueError(f"{name} must be {' or '.join(repr(a) for a in allowed)}, got {value!r}")
    return value


def pairing(n: int, seed: int) -> np.ndarray:
    """(n,) index of the record whose text each record is edited with: a seeded permutation arranged as one
    cycle, so no record keeps its own text (n ≥ 2) and every run and every method edits the same pairs."""
    if n < 2:
        return np.arange(n)
    order = np.random.default_rng(seed).permutation(n)
    partner = np.empty(n, dtype=np.int64)
    partner[order] = np.roll(order, -1)
    return partner


def hash_fraction(key: str) -> float:
    """A stable number in [0, 1) for a string (split assignment that never depends on order or machine)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2.0 ** 64


class RecordDataset(Dataset):
    """EditSamples from records: read the image, its mask, crop, resize, attach the (possibly paired) text."""

    def __init__(self, dm: "FileDataModule", records: Sequence[Record], train: bool, partner: np.ndarray | None):
        self.dm, self.records, self.train, self.partner = dm, list(records), train, partner

    def __len__(self) -> int:
        return len(self.records)

    def _crop(self, rec: Record) -> Callable[[tuple[int, int]], Box]:
        """size (W, H) → crop box: around the object's bbox when the dataset crops to objects, else centred."""
        if rec.bbox and self.dm.crop_ratio:
            return lambda size: object_crop(rec.bbox, size, self.dm.crop_ratio)
        return centre_crop

    def __getitem__(self, index: int) -> EditSample:
        rec = self.records[index]
        text = self.records[int(self.partner[index])] if self.partner is not None else rec
        # training draws one of the captions each time; evaluation always takes the first (reproducible)
        caption = random.choice(text.captions) if self.train else text.captions[0]
        image, size, crop = read_rgb_for_crop(self.dm.path(rec.image), self._crop(rec), self.dm.resolution)
        mask = self.dm.sample_mask(rec, text, caption, size)  # (H, W) at full resolution
        source, m = crop_resize(image, mask, crop, self.dm.resolution)
        target = source
        if rec.target is not None:
            after, after_size, _ = read_rgb_for_crop(self.dm.path(rec.target), self._crop(rec), self.dm.resolution)
            if after_size != size:
                raise BadSample(f"{rec.target} is {after_size[0]}×{after_size[1]}, its source {size[0]}×{size[1]}")
            target, _ = crop_resize(after, mask, crop, self.dm.resolution)
        attributes = torch.from_numpy(text.attributes) if text.attributes is not None else torch.zeros(0)
        instruction = self.dm.instruction(text, caption, location_phrase(m[0].numpy() > 0))
        return EditSample(source, target, m, caption, instruction, attributes, rec.identity)


class FileDataModule(EditDataModule):
    """A dataset on disk under `root`, in its official layout.

    Args:
        root: the folder the official download unpacks to (default data/<name>).
        seed: seeds the validation carve-out and the test pairing of the caption protocol.
        val_size: validation images taken from the training split when the dataset has no official val split.
        cache: keep the parsed index under $XMGIE_CACHE (default ~/.cache/xmgie/index); never in `root`.
    """

    LAYOUT: str = ""
    SOURCE: str = ""
    INDEX_OPTIONS: tuple[str, ...] = ()  # constructor options that change the index (part of the cache key)
    hide_masked_source = True
    protocol = "captions"
    crop_ratio: float | None = None  # set: crop r = crop_ratio·max(w, h) around the bbox (records with one)

    def __init__(self, root: str | None = None, resolution: int = 64, batch_size: int = 16, num_workers: int = 0,
                 seed: int = 0, val_size: int = 64, cache: bool = True):
        super().__init__(resolution, batch_size, num_workers)
        self.root = Path(root if root is not None else f"data/{self.name}")
        self.seed, self.val_size, self.cache = seed, val_size, cache
        self._index: dict[str, list[Record]] | None = None
        self._tracked: list[Path] = []
        self.malformed: dict[str, int] = {}  # annotation file -> lines skipped as malformed
        self._notes: dict[str, str] = {}     # topic -> what the index used instead of a missing optional part

    # -- subclass API ------------------------------------------------------------------------
    @abc.abstractmethod
    def index(self) -> dict[str, list[Record]]:
        """{"train": [...], "test": [...], optionally "val": [...]} from the annotation files."""

    @abc.abstractmethod
    def sample_mask(self, rec: Record, text: Record, caption: str, size: tuple[int, int]) -> np.ndarray:
        """(H, W) bool edit mask of `rec`'s image of size (W, H); `text` is the record whose caption is used."""

    @abc.abstractmethod
    def instruction(self, text: Record, caption: str, where: str) -> str:
        """The expressive instruction I (one small heuristic per dataset): the caption, what `text`'s annotations
        add (class, attributes), and `where` the edit is ("in the upper left", from the mask)."""

    # -- files ---------------------------------------------------------------------------------
    def path(self, relative: str) -> Path:
        return self.root / relative

    def missing(self, what: Path | str, note: str = "") -> DatasetMissing:
        return DatasetMissing(f"{self.name}: expected {what}{f' ({note})' if note else ''}; layout under "
                              f"{self.root}: {self.LAYOUT}; get it from {self.SOURCE}")

    def require(self, *candidates: str | Path, note: str = "") -> Path:
        """The first candidate (relative to root) that exists; else the missing-data error naming the first."""
        if not self.root.is_dir():
            raise self.missing(self.root, "the dataset folder does not exist")
        for c in candidates:
            p = self.root / c
            if p.exists():
                self.track(p)
                return p
        raise self.missing(self.root / candidates[0], note)

    def optional(self, *candidates: str | Path) -> Path | None:
        for c in candidates:
            p = self.root / c
            if p.exists():
                self.track(p)
                return p
        return None

    def track(self, path: Path) -> Path:
        """Record a file or folder the index was read from: the cache is invalid once any of them changes."""
        self._tracked.append(Path(path))
        return path

    def read_rows(self, path: Path, min_fields: int) -> Iterable[list[str]]:
        """Whitespace-separated rows with at least `min_fields` fields; shorter lines are skipped and counted."""
        self.track(path)
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if not fields:
                    continue
                if len(fields) < min_fields:
                    self.skip_malformed(path)
                    continue
                yield fields

    def fall_back(self, topic: str, what: str) -> None:
        """Record that the index used `what` for `topic` because an optional part is missing (warned once)."""
        self._notes[topic] = what

    @property
    def notes(self) -> dict[str, str]:
        self.records()
        return dict(self._notes)

    def skip_malformed(self, path: Path | str) -> None:
        self.malformed[str(path)] = self.malformed.get(str(path), 0) + 1

    # -- the index, cached -----------------------------------------------------------------------
    def _cache_file(self) -> Path:
        base = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "xmgie") / "index"
        options = {k: getattr(self, k) for k in ("seed", "val_size", *self.INDEX_OPTIONS)}  # all that shapes the index
        key = repr((INDEX_FORMAT, type(self).__qualname__, str(self.root.resolve()), sorted(options.items())))
        return base / f"{self.name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pkl"

    @staticmethod
    def _stamp(paths: Iterable[Path]) -> list[tuple[str, int, int]]:
        out = []
        for p in paths:
            try:
                st = p.stat()
                out.append((str(p), st.st_size, st.st_mtime_ns))
            except OSError:
                out.append((str(p), -1, -1))
        return out

    def records(self) -> dict[str, list[Record]]:
        """The index, from the cache when none of the files it was read from changed."""
        if self._index is not None:
            return self._index
        cache = self._cache_file() if self.cache else None
        if cache is not None and cache.exists():
            try:
                stamp, index, malformed, notes = pickle.loads(cache.read_bytes())
                if stamp == self._stamp(Path(s[0]) for s in stamp):
                    self._index, self.malformed, self._notes = index, malformed, notes
                    self._warn_notes()
                    return index
            except Exception:  # noqa: BLE001  a stale or foreign cache file is rebuilt, never trusted
                pass
        self._tracked, self._notes = [], {}
        index = self.index()
        if not index.get("train") and not index.get("test"):
            raise self.missing(self.root, "no images were found in the annotation files")
        if "val" not in index:
            index = self._carve_val(index)
        for path, count in self.malformed.items():
            warnings.warn(f"{self.name}: skipped {count} malformed line(s) of {path}", stacklevel=2)
        self._warn_notes()
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=cache.parent, delete=False) as tmp:
                tmp.write(pickle.dumps((self._stamp(dict.fromkeys(self._tracked)), index, self.malformed,
                                        self._notes)))
            os.replace(tmp.name, cache)
        self._index = index
        return index

    def _warn_notes(self) -> None:
        for topic, what in self._notes.items():
            warnings.warn(f"{self.name}: {topic}: {what}", stacklevel=3)

    def _carve_val(self, index: dict[str, list[Record]]) -> dict[str, list[Record]]:
        """No official val split: `val_size` seeded training images (at most a tenth, at least one) become val."""
        train = index.get("train", [])
        k = min(self.val_size, max(1, len(train) // 10)) if len(train) >= 2 else 0
        chosen = set(np.random.default_rng(self.seed).choice(len(train), size=k, replace=False).tolist())
        return {**index, "train": [r for i, r in enumerate(train) if i not in chosen],
                "val": [r for i, r in enumerate(train) if i in chosen]}

    # -- EditDataModule ----------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        self.records()  # a missing folder or annotation file fails here, before any training starts

    @property
    def num_attributes(self) -> int:
        recs = next((r for split in self.records().values() for r in split), None)
        return 0 if recs is None or recs.attributes is None else int(recs.attributes.shape[0])

    @property
    def num_identities(self) -> int:
        ids = [r.identity for split in self.records().values() for r in split]
        return max(ids, default=-1) + 1

    def split_identities(self, split: str) -> torch.Tensor:
        return torch.tensor(sorted({r.identity for r in self.records().get(split, []) if r.identity >= 0}),
                            dtype=torch.long)

    def make_split(self, split: str, paired: bool = False) -> Dataset:
        records = self.records().get(split, [])
        partner = pairing(len(records), self.seed) if paired else None
        return RecordDataset(self, records, train=split == "train", partner=partner)


def fallback_test_classes(class_ids: Iterable[int], every: int) -> set[int]:
    """The class-disjoint split used when a caption archive's class lists are missing: the classes whose 1-based
    id is a multiple of `every` are the test classes (CUB: every 4th of 200, 50 test and 150 training classes;
    Flowers: every 5th of 102, 20 and 82), the sizes of the published split, spread over the id range."""
    return {c for c in class_ids if c % every == 0}


def identity_table(keys: Iterable[Any]) -> dict[Any, int]:
    """Contiguous identity labels 0..K-1 for the distinct keys, in sorted order (stable across runs)."""
    return {k: i for i, k in enumerate(sorted(set(keys)))}


def read_captions(path: Path) -> tuple[str, ...]:
    """Non-empty lines of a caption file (text_c10 style: one caption per line)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return tuple(line.strip() for line in f if line.strip())

