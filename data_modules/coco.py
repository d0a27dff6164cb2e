"""`coco`: MS-COCO 2017 (or 2014) with its captions; train from the train split, test from val.

No identities, no attributes. Mask: the largest instance whose category the caption mentions, else the largest
instance (polygons or uncompressed RLE); all ones for an image without instances.
"""
from __future__ import annotations

import json
import re
from collections import defaultdict

import numpy as np

from data_modules.base import BadSample, register
from data_modules.masks import coco_segmentation_mask
from data_modules.records import FileDataModule, Record


def mentioned(category: str, caption: str) -> bool:
    """Whether the caption names the category (whole words, singular or plural)."""
    words = re.escape(category.lower())
    return re.search(rf"\b{words}(s|es)?\b", caption.lower()) is not None


def choose_instance(instances: list[tuple[str, float, object]], caption: str) -> tuple[str, float, object] | None:
    """instances: (category, area, segmentation). The largest one the caption mentions, else the largest."""
    if not instances:
        return None
    named = [inst for inst in instances if mentioned(inst[0], caption)]
    return max(named or instances, key=lambda inst: inst[1])


@register
class COCODataModule(FileDataModule):
    """MS-COCO.

    Args:
        year: "2017" or "2014"; None finds whichever annotation files are present (2017 first).
    """

    name = "coco"
    LAYOUT = ("train2017/*.jpg, val2017/*.jpg, annotations/{instances,captions}_{train,val}2017.json "
              "(or the 2014 names)")
    SOURCE = "https://cocodataset.org/#download (train/val images and the train/val annotations)"
    INDEX_OPTIONS = ("year",)

    def __init__(self, root: str | None = None, year: str | None = None, **kwargs):
        if year not in (None, "2014", "2017"):
            raise ValueError(f"year must be '2014' or '2017', got {year!r}")
        super().__init__(root, **kwargs)
        self.year = year

    def _year(self) -> str:
        if self.year:
            return self.year
        return "2014" if (self.root / "annotations/instances_train2014.json").exists() and not \
            (self.root / "annotations/instances_train2017.json").exists() else "2017"

    def index(self) -> dict[str, list[Record]]:
        year = self._year()
        return {split: self._split(f"{part}{year}") for split, part in (("train", "train"), ("test", "val"))}

    def _split(self, part: str) -> list[Record]:
        instances_file = self.require(f"annotations/instances_{part}.json")
        captions_file = self.require(f"annotations/captions_{part}.json")
        self.require(part, note="the image folder")
        with open(instances_file) as f:
            instances = json.load(f)
        with open(captions_file) as f:
            captions_json = json.load(f)
        names = {c["id"]: c["name"] for c in instances.get("categories", [])}
        captions: dict[int, list[str]] = defaultdict(list)
        for a in captions_json.get("annotations", []):
            if isinstance(a.get("caption"), str) and "image_id" in a:
                captions[a["image_id"]].append(a["caption"].strip())
            else:
                self.skip_malformed(captions_file)
        objects: dict[int, list[tuple[str, float, object]]] = defaultdict(list)
        for a in instances.get("annotations", []):
            try:
                objects[a["image_id"]].append((names[a["category_id"]], float(a["area"]), a["segmentation"]))
            except (KeyError, TypeError, ValueError):
                self.skip_malformed(instances_file)
        records = []
        for img in sorted(instances.get("images", []), key=lambda im: im["id"]):
            if not captions.get(img["id"]):
                continue  # a caption dataset: images without captions cannot be prompts
            insts = sorted(objects.get(img["id"], []), key=lambda inst: -inst[1])
            records.append(Record(key=img["file_name"], image=f"{part}/{img['file_name']}",
                                  captions=tuple(captions[img["id"]]), facts=tuple(dict.fromkeys(i[0] for i in insts)),
                                  mask=insts))
        return records

    def sample_mask(self, rec: Record, text: Record, caption: str, size: tuple[int, int]) -> np.ndarray:
        W, H = size
        chosen = choose_instance(rec.mask, caption)
        if chosen is None:
            return np.ones((H, W), dtype=bool)
        try:
            mask = coco_segmentation_mask(chosen[2], size)
        except ValueError as err:
            raise BadSample(f"{rec.image}: {err}") from None
        if mask.shape != (H, W):
            raise BadSample(f"{rec.image}: its {chosen[0]} mask is {mask.shape[1]}×{mask.shape[0]}, "
                            f"the image {W}×{H}")
        return mask

    def instruction(self, text: Record, caption: str, where: str) -> str:
        chosen = choose_instance([(c, 0.0, None) for c in text.facts], caption)
        thing = chosen[0] if chosen else "scene"
        place = f" {where}" if where else ""
        return (f"redraw the {thing}{place} so that the picture shows {caption.rstrip('.')}; "
                "keep everything else unchanged")
