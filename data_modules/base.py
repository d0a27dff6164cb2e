"""The data contract every dataset honours (docs/data.md) and the base DataModule that owns splits,
transforms and bad-input handling.

A batch is a dict:
    source      (B, 3, H, W) float32 in [-1, 1]   image given to the editor
    target      (B, 3, H, W) float32 in [-1, 1]   ground truth after the edit
    mask        (B, 1, H, W) float32 in {0, 1}    region the edit may change (ones when unknown)
    prompt      list[str]                          the user's short instruction P
    instruction list[str]                          the expressive instruction I
    attributes  (B, A) float32 in {0, 1}           attributes of the target (A = 0 when none)
    identity    (B,) int64                         identity label, -1 when unknown
    index       (B,) int64                         position of each sample in its split (seeds, IS splits)
    n_skipped   int                                samples of this batch dropped as unreadable
    skipped     list[str]                          why each was dropped (file and error)
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

SPLITS = ("train", "val", "test")


@dataclass
class EditSample:
    """One editing example. Tensors are unbatched: source/target (3, H, W) in [-1, 1], mask (1, H, W) in {0, 1}."""

    source: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    prompt: str
    instruction: str
    attributes: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    identity: int = -1
    index: int = -1  # position in its split; set by the DataModule
    keeps_identity: bool = False  # the edit keeps the subject's identity (a recolour, not a swap): IPS is scored there

    def __post_init__(self) -> None:
        if self.source.ndim != 3 or self.source.shape[0] != 3:
            raise ValueError(f"source must be (3, H, W), got {tuple(self.source.shape)}")
        if self.target.shape != self.source.shape:
            raise ValueError(f"target {tuple(self.target.shape)} differs from source {tuple(self.source.shape)}")
        if self.mask.shape != (1, *self.source.shape[1:]):
            raise ValueError(f"mask must be (1, H, W) like source, got {tuple(self.mask.shape)}")


class BadSample(Exception):
    """Raised by a dataset for an input that cannot be used (unreadable or truncated image)."""


@dataclass
class Skipped:
    """Stands in for a sample that could not be read; `collate` drops and counts it."""

    reason: str


def collate(samples: Sequence[EditSample | Skipped | None]) -> dict[str, Any]:
    """Stack samples into a batch dict; skipped bad inputs are dropped, counted and their reasons kept."""
    good = [s for s in samples if isinstance(s, EditSample)]
    reasons = [s.reason if isinstance(s, Skipped) else "unreadable" for s in samples if not isinstance(s, EditSample)]
    if not good:
        return {"n_skipped": len(samples), "skipped": reasons}
    return {
        "source": torch.stack([s.source for s in good]),          # (B, 3, H, W)
        "target": torch.stack([s.target for s in good]),          # (B, 3, H, W)
        "mask": torch.stack([s.mask for s in good]),              # (B, 1, H, W)
        "prompt": [s.prompt for s in good],
        "instruction": [s.instruction for s in good],
        "attributes": torch.stack([s.attributes.float() for s in good]),  # (B, A)
        "identity": torch.tensor([s.identity for s in good], dtype=torch.long),  # (B,)
        "index": torch.tensor([s.index for s in good], dtype=torch.long),        # (B,)
        "keeps_identity": torch.tensor([s.keeps_identity for s in good], dtype=torch.bool),  # (B,)
        "n_skipped": len(samples) - len(good),
        "skipped": reasons,
    }


def resize_sample(sample: EditSample, resolution: int) -> EditSample:
    """Resize a sample to `resolution`² keeping images and mask aligned; the mask is re-binarised at 0.5."""
    if sample.source.shape[-1] == resolution and sample.source.shape[-2] == resolution:
        return sample
    size = (resolution, resolution)

    def img(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0].clamp(-1, 1)

    mask = F.interpolate(sample.mask[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    return EditSample(img(sample.source), img(sample.target), (mask >= 0.5).float(), sample.prompt,
                      sample.instruction, sample.attributes, sample.identity, sample.index, sample.keeps_identity)


class SkipBadSamples(Dataset):
    """Wraps a dataset: a `BadSample` becomes `Skipped` (dropped and counted by `collate`, reported once per
    epoch by the consumer) instead of a crash."""

    def __init__(self, dataset: Dataset, transform: Callable[[EditSample], EditSample] | None = None):
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> EditSample | Skipped:
        try:
            sample = self.dataset[index]
        except BadSample as err:
            return Skipped(str(err))
        sample.index = index
        return self.transform(sample) if self.transform else sample


class EditDataModule(L.LightningDataModule, abc.ABC):
    """Base of every dataset: subclasses implement `make_split(split) -> Dataset[EditSample]`.

    Args:
        resolution: working resolution in pixels; every sample is resized to resolution².
        batch_size: samples per batch on each device.
        num_workers: DataLoader worker processes (0 = load in the main process).
    """

    name: str = "base"
    hide_masked_source: bool = False  # caption datasets: the generator sees source * (1 - mask)
    # how edits are scored (docs/evaluation.md): "targets" against ground-truth targets; "captions" edits each test
    # image with another image's caption and scores faithfulness to the source
    protocol: str = "targets"

    def __init__(self, resolution: int = 32, batch_size: int = 16, num_workers: int = 0):
        super().__init__()
        if resolution < 8 or resolution % 8:
            raise ValueError(f"resolution must be a multiple of 8 and at least 8, got {resolution}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.resolution = resolution
        self.batch_size = batch_size
        self.num_workers = num_workers
        self._splits: dict[str, Dataset] = {}

    # -- subclass API -------------------------------------------------------------------------
    @property
    def notes(self) -> dict[str, str]:
        """What the data fell back on where an optional part was missing ({topic: what is used instead}); it is
        recorded in checkpoints and results and named in the tables' footnotes."""
        return {}

    @abc.abstractmethod
    def make_split(self, split: str) -> Dataset:
        """Return the raw dataset of `split` (one of SPLITS); items are EditSample or raise BadSample.

        Caption-protocol datasets also accept `paired=True`: each image with the text of another (§7)."""

    @property
    def num_attributes(self) -> int:
        return 0

    @property
    def num_identities(self) -> int:
        """Identity labels are 0..num_identities-1 (0: the dataset has none)."""
        return 0

    def split_identities(self, split: str) -> torch.Tensor | None:
        """(K,) the identity labels that occur in `split`; None when every identity can occur in every split."""
        return None

    # -- Lightning hooks ----------------------------------------------------------------------
    def dataset(self, split: str, paired: bool = False) -> Dataset:
        """`paired`: the caption protocol's test pairs (each image with another image's caption and attributes)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        key = f"{split}:paired" if paired else split
        if key not in self._splits:
            raw = self.make_split(split, paired=True) if paired else self.make_split(split)
            self._splits[key] = SkipBadSamples(raw, self._resize)
        return self._splits[key]

    def _resize(self, sample: EditSample) -> EditSample:
        return resize_sample(sample, self.resolution)

    def loader(self, split: str, shuffle: bool, paired: bool = False) -> DataLoader:
        return DataLoader(self.dataset(split, paired), batch_size=self.batch_size, shuffle=shuffle,
                          collate_fn=collate, num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          drop_last=shuffle, pin_memory=torch.cuda.is_available())  # asynchronous uploads

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """The evaluation protocol: caption datasets edit each test image with another image's text (§7)."""
        return self.loader("test", shuffle=False, paired=self.protocol == "captions")


DATASETS: dict[str, type[EditDataModule]] = {}


def register(cls: type[EditDataModule]) -> type[EditDataModule]:
    """Class decorator: make a dataset findable by its `name` (`--data shapes`, `DATASET=shapes`)."""
    DATASETS[cls.name] = cls
    return cls
