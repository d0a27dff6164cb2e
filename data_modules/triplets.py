"""`triplets`: (before, instruction, after) editing triplets with real targets, in MagicBrush's layout
(images/<id>/<id>-input.png, <id>-output<k>.png, optional <id>-mask<k>.png, edit_sessions.json), as MagicBrush's
parquet shards (the hub's distribution, unpacked once into that layout under <root>/.unpacked) or in
InstructPix2Pix's (seeds.json, <name>/prompt.json, <name>/<seed>_0.jpg before, <name>/<seed>_1.jpg after).

Metrics compare edits with the real targets (docs/evaluation.md). Split: ids hashed 90/10 into train/test, or
`split="test"` to evaluate on every triplet (a benchmark's test set). Triplets without a mask (all of the
InstructPix2Pix layout) edit anywhere, or read the masks a trained editor predicted for them (`masks`, written by
`xmgie data masks`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from data_modules.base import BadSample, register
from data_modules.images import fit_mask, read_alpha, read_gray
from data_modules.parquet import shards, unpack_magicbrush
from data_modules.records import FileDataModule, Record, check_choice, hash_fraction
from xmgie.errors import UserError


@register
class TripletsDataModule(FileDataModule):
    """Instruction triplets.

    Args:
        split: "hash" — ids hashed into train (90 %) and test; "test" — every triplet is a test example.
        masks: a folder of predicted masks, <masks>/<key>.png (`xmgie data masks`), for triplets without their own.
    """

    name = "triplets"
    LAYOUT = ("MagicBrush: edit_sessions.json + images/<id>/<id>-{input,output<k>,mask<k>}.png, or its parquet "
              "shards (data/*.parquet); or InstructPix2Pix: seeds.json + <name>/prompt.json + <name>/<seed>_{0,1}.jpg")
    SOURCE = ("MagicBrush (osu-nlp-group.github.io/MagicBrush) or InstructPix2Pix "
              "(github.com/timothybrooks/instruct-pix2pix)")
    INDEX_OPTIONS = ("split", "test_fraction")
    hide_masked_source = False
    protocol = "targets"

    def __init__(self, root: str | None = None, split: str = "hash", test_fraction: float = 0.1,
                 masks: str | None = None, **kwargs):
        super().__init__(root, **kwargs)
        self.split, self.test_fraction = check_choice("split", split, ("hash", "test")), test_fraction
        self.masks = Path(masks) if masks else None

    def setup(self, stage: str) -> None:
        if self.masks is not None and not self.masks.is_dir():
            raise UserError(f"predicted masks folder not found: {self.masks} (write it with `xmgie data masks "
                            f"--dataset triplets --root {self.root} --ckpt <editor> --out {self.masks}`)")
        super().setup(stage)

    def index(self) -> dict[str, list[Record]]:
        if (self.root / "edit_sessions.json").exists():
            records = self._magicbrush()
        elif parquet := shards(self.root):
            for shard in parquet:
                self.track(shard)
            unpack_magicbrush(parquet, self.root / ".unpacked")
            records = self._magicbrush(".unpacked/")
        else:
            records = self._pix2pix()
        out: dict[str, list[Record]] = {"train": [], "test": []}
        for r in records:
            group = r.key.split("/")[0]  # every turn of a session, every seed of a prompt: one split
            test = self.split == "test" or hash_fraction(group) < self.test_fraction
            out["test" if test else "train"].append(r)
        if self.split == "test":
            out["val"] = out["test"][: self.val_size]
        return out

    def _magicbrush(self, base: str = "") -> list[Record]:
        """The sessions of <root>/<base>edit_sessions.json, image paths relative to the root."""
        sessions_file = self.require(f"{base}edit_sessions.json")
        with open(sessions_file) as f:
            sessions = json.load(f)
        records = []
        for sid, turns in sorted(sessions.items()):
            for k, turn in enumerate(turns if isinstance(turns, list) else []):
                if not (isinstance(turn, dict) and isinstance(turn.get("instruction"), str)
                        and turn.get("input") and turn.get("output")):
                    self.skip_malformed(sessions_file)
                    continue
                folder = f"{base}images/{sid}"
                mask = f"{folder}/{turn['mask']}" if turn.get("mask") else None
                records.append(Record(key=f"{sid}/{k}", image=f"{folder}/{turn['input']}",
                                      captions=(turn["instruction"].strip(),), mask=mask,
                                      target=f"{folder}/{turn['output']}"))
        return records

    def _pix2pix(self) -> list[Record]:
        seeds_file = self.require("seeds.json", note="MagicBrush's edit_sessions.json or InstructPix2Pix's seeds.json")
        with open(seeds_file) as f:
            seeds = json.load(f)
        records = []
        for entry in seeds:
            try:
                name, name_seeds = entry
                with open(self.track(self.root / name / "prompt.json")) as f:
                    prompt = json.load(f)
                edit, before, after = prompt["edit"], prompt["input"], prompt["output"]
            except (ValueError, TypeError, KeyError, OSError):
                self.skip_malformed(seeds_file)
                continue
            for seed in name_seeds:
                records.append(Record(key=f"{name}/{seed}", image=f"{name}/{seed}_0.jpg", captions=(edit.strip(),),
                                      facts=(before, after), target=f"{name}/{seed}_1.jpg"))
        return records

    def sample_mask(self, rec: Record, text: Record, caption: str, size: tuple[int, int]) -> np.ndarray:
        """MagicBrush masks: the transparent region of an RGBA mask (DALL-E 2 style), else white pixels; none
        given: the predicted mask (`masks`), else all ones (edit anywhere)."""
        if rec.mask is None and self.masks is not None:
            path = self.masks / f"{rec.key}.png"
            if not path.is_file():
                raise BadSample(f"no predicted mask {path}")
            return fit_mask(read_gray(path) > 127, size, path)
        if rec.mask is None:
            return np.ones((size[1], size[0]), dtype=bool)
        path = self.path(rec.mask)
        alpha = read_alpha(path)
        mask = alpha < 128 if alpha is not None and alpha.min() < 128 else read_gray(path) > 127
        return fit_mask(mask, size, path)

    def instruction(self, text: Record, caption: str, where: str) -> str:
        if len(text.facts) == 2:  # InstructPix2Pix: the captions before and after
            return f"{caption} — from \"{text.facts[0]}\" to \"{text.facts[1]}\"; keep everything else unchanged"
        place = f" {where}" if where else ""
        return f"{caption.rstrip('.')}{place}; keep everything else unchanged"
