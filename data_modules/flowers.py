"""`flowers`: Oxford-102 Flowers with the captions of Reed et al. (2016).

Identity: the class. No attributes. Mask: the foreground of segmim/ (background painted blue), else the image.
Without the caption archive, each prompt names the image's class ("a flower of class 17": the image archive has
no class names), a fallback recorded in the run's notes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.io import loadmat

from data_modules.base import register
from data_modules.images import fit_mask, read_rgb
from data_modules.masks import not_background_colour
from data_modules.records import FileDataModule, Record, check_choice, fallback_test_classes, read_captions


def mat_vector(path: Path, key: str) -> np.ndarray:
    """A 1-D integer vector stored under `key` of a .mat file."""
    return np.atleast_1d(loadmat(path, squeeze_me=True)[key]).astype(np.int64)


@register
class FlowersDataModule(FileDataModule):
    """Oxford-102 Flowers.

    Args:
        split: "classes" — the class-disjoint split of text-guided editing work (trainvalclasses.txt /
            testclasses.txt of the caption archive); "official" — setid.mat's trnid / valid / tstid.
    """

    name = "flowers"
    LAYOUT = ("jpg/image_NNNNN.jpg, imagelabels.mat, setid.mat, segmim/segmim_NNNNN.jpg, "
              "text_c10/class_NNNNN/image_NNNNN.txt, trainvalclasses.txt, testclasses.txt")
    SOURCE = ("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ (images, labels, segmentations) and the flower "
              "captions of Reed et al. 2016 (github.com/reedscot/cvpr2016)")
    INDEX_OPTIONS = ("split",)

    def __init__(self, root: str | None = None, split: str = "classes", **kwargs):
        super().__init__(root, **kwargs)
        self.split = check_choice("split", split, ("classes", "official"))

    def index(self) -> dict[str, list[Record]]:
        labels = mat_vector(self.require("imagelabels.mat"), "labels")  # (N,) 1..102
        self.require("jpg")
        text_root = self.optional("text_c10")
        if text_root is None:
            self.fall_back("captions", f"no captions under {self.root / 'text_c10'} (the caption archive): each "
                           "prompt names the image's class, 'a flower of class N'")
        by_id = {}
        for i, label in enumerate(labels, start=1):
            name = f"image_{i:05d}"
            cls = f"class_{label:05d}"
            path = text_root / cls / f"{name}.txt" if text_root is not None else None
            captions = read_captions(path) if path is not None and path.exists() else ()
            if text_root is None:
                captions = (f"a flower of class {label}",)
            if not captions:
                self.skip_malformed(f"{text_root} (no captions for {name})")
                continue
            by_id[i] = Record(key=name, image=f"jpg/{name}.jpg", captions=captions, identity=int(label) - 1,
                              facts=(), mask=f"segmim/segmim_{i:05d}.jpg")
        if self.split == "official":
            setid = self.require("setid.mat")
            ids = {s: mat_vector(setid, k) for s, k in (("train", "trnid"), ("val", "valid"), ("test", "tstid"))}
            return {s: [by_id[i] for i in v if i in by_id] for s, v in ids.items()}
        lists = {s: self.optional(f, f"text_c10/{f}") for s, f in (("train", "trainvalclasses.txt"),
                                                                   ("test", "testclasses.txt"))}
        if None in lists.values():  # a documented split of the published sizes
            ids = {int(label) for label in labels}
            test = fallback_test_classes(ids, every=5)
            self.fall_back("split", "no trainvalclasses.txt / testclasses.txt (the caption archive's class lists): "
                           f"the class-disjoint split tests on the classes whose id is a multiple of 5 ({len(test)} "
                           f"of {len(ids)}) and trains on the others")
            classes = {"test": {f"class_{c:05d}" for c in test}, "train": {f"class_{c:05d}" for c in ids - test}}
        else:
            classes = {s: {f[0] for f in self.read_rows(p, 1)} for s, p in lists.items()}
        return {s: [r for i, r in sorted(by_id.items()) if f"class_{r.identity + 1:05d}" in classes[s]]
                for s in ("train", "test")}

    def sample_mask(self, rec: Record, text: Record, caption: str, size: tuple[int, int]) -> np.ndarray:
        seg = self.path(rec.mask)
        if not seg.exists():
            return np.ones((size[1], size[0]), dtype=bool)
        return fit_mask(not_background_colour(read_rgb(seg)), size, seg)

    def instruction(self, text: Record, caption: str, where: str) -> str:
        place = f" {where}" if where else ""
        return f"make the flower{place} look like {caption.rstrip('.')}; keep the leaves and background unchanged"
