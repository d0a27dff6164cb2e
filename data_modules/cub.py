"""`cub`: CUB-200-2011 birds with the captions of Reed et al. (2016), in the layout of ../DATASETS.md.

Identity: the species. Attributes: the 312 binary attributes. Mask: the segmentation, else the bounding box.
Crop: r = 0.75·max(w, h) around the bounding box, as text-guided editing work does.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data_modules.base import register
from data_modules.images import fit_mask, read_gray
from data_modules.masks import box_mask, threshold_mask
from data_modules.records import FileDataModule, Record, check_choice, fallback_test_classes, read_captions

NUM_ATTRIBUTES = 312


def class_words(folder: str) -> str:
    """"001.Black_footed_Albatross" → "black footed albatross"."""
    return folder.split(".", 1)[-1].replace("_", " ").lower()


def colour_phrases(names: list[str], present: np.ndarray, limit: int = 4) -> tuple[str, ...]:
    """Present "has_<part>_color::<colour>" attributes as "<colour> <part>" ("blue wing"), at most `limit`."""
    out = []
    for i in np.flatnonzero(present):
        part, _, value = names[i].partition("::")
        if part.startswith("has_") and part.endswith("_color") and value:
            out.append(f"{value.replace('_', ' ')} {part[4:-6].replace('_', ' ')}")
    return tuple(out[:limit])


@register
class CUBDataModule(FileDataModule):
    """CUB-200-2011.

    Args:
        split: "classes" — the class-disjoint split of text-guided editing work (150 train / 50 test classes,
            from trainvalclasses.txt / testclasses.txt of the caption archive); "official" — the per-image
            split of train_test_split.txt.
    """

    name = "cub"
    LAYOUT = ("CUB_200_2011/{images/<class>/<name>.jpg, images.txt, image_class_labels.txt, train_test_split.txt, "
              "classes.txt, bounding_boxes.txt, attributes/image_attribute_labels.txt}, attributes.txt, "
              "segmentations/<class>/<name>.png, text_c10/<class>/<name>.txt (+ trainvalclasses.txt, testclasses.txt)")
    SOURCE = ("https://www.vision.caltech.edu/datasets/cub_200_2011/ (images, segmentations) and the CUB captions "
              "of Reed et al. 2016 (github.com/reedscot/cvpr2016)")
    INDEX_OPTIONS = ("split",)
    crop_ratio = 0.75

    def __init__(self, root: str | None = None, split: str = "classes", **kwargs):
        super().__init__(root, **kwargs)
        self.split = check_choice("split", split, ("classes", "official"))

    def index(self) -> dict[str, list[Record]]:
        base = "CUB_200_2011"
        images = {int(f[0]): f[1] for f in self.read_rows(self.require(f"{base}/images.txt"), 2)}
        labels = {int(f[0]): int(f[1]) for f in self.read_rows(self.require(f"{base}/image_class_labels.txt"), 2)}
        boxes = {int(f[0]): tuple(map(float, f[1:5]))
                 for f in self.read_rows(self.require(f"{base}/bounding_boxes.txt"), 5)}
        names_file = self.require("attributes.txt", f"{base}/attributes.txt", f"{base}/attributes/attributes.txt")
        names = [f[1] for f in self.read_rows(names_file, 2)]
        attributes = self._attributes(self.require(f"{base}/attributes/image_attribute_labels.txt"), len(images))
        test = self._test_images(base, images, labels)
        text_root = self.optional("text_c10")
        if text_root is None:
            self.fall_back("captions", f"no captions under {self.root / 'text_c10'} (the caption archive): prompts "
                           "are templated from each image's class and attributes")
        split: dict[str, list[Record]] = {"train": [], "test": []}
        for i, rel in sorted(images.items()):
            if i not in labels or i not in boxes:
                self.skip_malformed(f"{base}/images.txt (image {i} without class or box)")
                continue
            present = attributes[i - 1]
            facts = (class_words(rel.split("/")[0]), *colour_phrases(names, present))
            captions = self._captions(text_root, rel, facts)
            split["test" if i in test else "train"].append(Record(
                key=rel, image=f"{base}/images/{rel}", captions=captions, identity=labels[i] - 1,
                attributes=present.astype(np.float32), facts=facts, bbox=boxes[i],
                mask=f"segmentations/{rel[:-4]}.png"))
        return split

    def _attributes(self, path: Path, n: int) -> np.ndarray:
        """(n, 312) uint8 is_present; rows carry extra tokens sometimes: read the first five, skip malformed."""
        out = np.zeros((n, NUM_ATTRIBUTES), dtype=np.uint8)
        for f in self.read_rows(path, 5):
            try:
                img, attr, present = int(f[0]), int(f[1]), int(f[2])
            except ValueError:
                self.skip_malformed(path)
                continue
            if 1 <= img <= n and 1 <= attr <= NUM_ATTRIBUTES:
                out[img - 1, attr - 1] = present == 1
            else:
                self.skip_malformed(path)
        return out

    def _test_images(self, base: str, images: dict[int, str], labels: dict[int, int]) -> set[int]:
        if self.split == "official":
            return {int(f[0]) for f in self.read_rows(self.require(f"{base}/train_test_split.txt"), 2) if f[1] == "0"}
        test_list = self.optional("testclasses.txt", "text_c10/testclasses.txt", "cvpr2016_cub/testclasses.txt")
        if test_list is None:  # the images' archive alone: a documented split of the same sizes
            test_ids = fallback_test_classes(set(labels.values()), every=4)
            self.fall_back("split", "no testclasses.txt (the class lists of the caption archive): the class-disjoint "
                           f"split tests on the classes whose id is a multiple of 4 ({len(test_ids)} of "
                           f"{len(set(labels.values()))}) and trains on the others")
            return {i for i in images if labels.get(i) in test_ids}
        test_classes = {f[0] for f in self.read_rows(test_list, 1)}
        return {i for i, rel in images.items() if rel.split("/")[0] in test_classes}

    def _captions(self, text_root: Path | None, rel: str, facts: tuple[str, ...]) -> tuple[str, ...]:
        path = text_root / f"{rel[:-4]}.txt" if text_root is not None else None
        captions = read_captions(path) if path is not None and path.exists() else ()
        if captions:
            return captions
        details = f" with {', '.join(facts[1:])}" if len(facts) > 1 else ""
        return (f"a {facts[0]}{details}",)

    def sample_mask(self, rec: Record, text: Record, caption: str, size: tuple[int, int]) -> np.ndarray:
        seg = self.path(rec.mask)
        if seg.exists():
            return fit_mask(threshold_mask(read_gray(seg)), size, seg)
        return box_mask(rec.bbox, size)

    def instruction(self, text: Record, caption: str, where: str) -> str:
        bird = text.facts[0] if text.facts else "bird"
        details = f" with {', '.join(text.facts[1:])}" if len(text.facts) > 1 else ""
        place = f" {where}" if where else ""
        return (f"turn the bird{place} into {caption.rstrip('.')} — a {bird}{details}; keep its pose and "
                f"the background unchanged")
