"""`deepfashion`: DeepFashion-MultiModal (images, parsing maps, shape/fabric/pattern labels, captions).

Identity: the item id in the file name (id_00007838). Attributes: the shape, fabric and pattern labels one-hot
(a "NA" label sets none). Mask: the clothing labels of the parsing map. No official split: item ids are hashed
90/10 into train/test, so an item never crosses splits.
"""
from __future__ import annotations

import json
import re

import numpy as np

from data_modules.base import register
from data_modules.images import fit_mask, read_labels
from data_modules.masks import label_mask
from data_modules.records import FileDataModule, Record, hash_fraction, identity_table

# (name, category words without the final "NA") of each shape_anno_all.txt column, in order
SHAPE = (
    ("sleeve length", ("sleeveless", "short-sleeve", "medium-sleeve", "long-sleeve", "not long-sleeve")),
    ("lower clothing length", ("three-point", "medium short", "three-quarter", "long")),
    ("socks", ("no socks", "socks", "leggings")),
    ("hat", ("no hat", "hat")),
    ("glasses", ("no glasses", "eyeglasses", "sunglasses", "glasses in hand or on clothes")),
    ("neckwear", ("no neckwear", "neckwear")),
    ("wrist wearing", ("no wrist wearing", "wrist wearing")),
    ("ring", ("no ring", "ring")),
    ("waist accessories", ("no waist accessory", "belt", "clothing around the waist", "hidden waist")),
    ("neckline", ("V-shape neckline", "square neckline", "round neckline", "standing collar", "lapel",
                  "suspenders")),
    ("outer cardigan", ("cardigan", "no cardigan")),
    ("covers navel", ("navel uncovered", "navel covered")),
)
FABRIC = ("denim", "cotton", "leather", "furry", "knitted", "chiffon", "other fabric")
PATTERN = ("floral", "graphic", "striped", "pure colour", "lattice", "other pattern", "colour block")
GARMENTS = ("upper", "lower", "outer")  # the three columns of fabric_ann.txt and pattern_ann.txt
CLOTHING_LABELS = (1, 2, 3, 4, 5, 6, 21)  # top, outer, skirt, dress, pants, leggings, rompers
ITEM = re.compile(r"id_\d+")


def attribute_names() -> tuple[str, ...]:
    shape = tuple(f"{name}: {c}" for name, cats in SHAPE for c in cats)
    texture = tuple(f"{g} {kind}: {c}" for kind, cats in (("fabric", FABRIC), ("pattern", PATTERN))
                    for g in GARMENTS for c in cats)
    return shape + texture


def one_hot(values: list[int], sizes: list[int]) -> np.ndarray:
    """Concatenated one-hot blocks; a value outside 0..size-1 (the "NA" label) leaves its block zero."""
    out = np.zeros(sum(sizes), dtype=np.float32)
    start = 0
    for v, n in zip(values, sizes):
        if 0 <= v < n:
            out[start + v] = 1
        start += n
    return out


NAMES = attribute_names()


@register
class DeepFashionDataModule(FileDataModule):
    """DeepFashion-MultiModal."""

    name = "deepfashion"
    LAYOUT = ("images/<name>.jpg, segm/<name>_segm.png, labels/shape/shape_anno_all.txt, "
              "labels/texture/{fabric_ann.txt, pattern_ann.txt}, captions.json")
    SOURCE = "https://github.com/yumingj/DeepFashion-MultiModal"
    INDEX_OPTIONS = ("test_fraction",)
    SHAPE_SIZES = [len(c) for _, c in SHAPE]
    TEXTURE_SIZES = [len(FABRIC)] * 3 + [len(PATTERN)] * 3

    def __init__(self, root: str | None = None, test_fraction: float = 0.1, **kwargs):
        super().__init__(root, **kwargs)
        self.test_fraction = test_fraction

    def _labels(self, path, columns: int) -> dict[str, list[int]]:
        out = {}
        for f in self.read_rows(path, columns + 1):
            try:
                out[f[0]] = [int(v) for v in f[1:columns + 1]]
            except ValueError:
                self.skip_malformed(path)
        return out

    def index(self) -> dict[str, list[Record]]:
        captions_file = self.require("captions.json")
        self.require("images", note="the image folder")
        with open(captions_file) as f:
            captions = json.load(f)
        shape = self._labels(self.require("labels/shape/shape_anno_all.txt"), len(SHAPE))
        fabric = self._labels(self.require("labels/texture/fabric_ann.txt"), 3)
        pattern = self._labels(self.require("labels/texture/pattern_ann.txt"), 3)
        items = {name: m.group(0) for name in captions if (m := ITEM.search(name))}
        ids = identity_table(items.values())
        split: dict[str, list[Record]] = {"train": [], "test": []}
        for name in sorted(captions):
            if name not in items or not isinstance(captions[name], str):
                self.skip_malformed(captions_file)
                continue
            attrs = np.concatenate([one_hot(shape.get(name, [-1] * len(SHAPE)), self.SHAPE_SIZES),
                                    one_hot(fabric.get(name, [-1] * 3) + pattern.get(name, [-1] * 3),
                                            self.TEXTURE_SIZES)])
            words = tuple(NAMES[i] for i in np.flatnonzero(attrs) if i >= sum(self.SHAPE_SIZES))  # fabric, pattern
            stem = name.rsplit(".", 1)[0]
            part = "test" if hash_fraction(items[name]) < self.test_fraction else "train"
            split[part].append(Record(key=name, image=f"images/{name}", captions=(captions[name].strip(),),
                                      identity=ids[items[name]], attributes=attrs, facts=words[:4],
                                      mask=f"segm/{stem}_segm.png"))
        return split

    def sample_mask(self, rec: Record, text: Record, caption: str, size: tuple[int, int]) -> np.ndarray:
        seg = self.path(rec.mask)
        if not seg.exists():
            return np.ones((size[1], size[0]), dtype=bool)
        return fit_mask(label_mask(read_labels(seg), CLOTHING_LABELS), size, seg)

    def instruction(self, text: Record, caption: str, where: str) -> str:
        details = f" ({', '.join(text.facts)})" if text.facts else ""
        return f"change the clothes so that {caption.rstrip('.')}{details}; keep the person, face and background"
