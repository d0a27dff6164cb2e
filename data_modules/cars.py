"""`cars`: Stanford Cars (196 models). No captions ship with it: prompts are templated from the class name
("a 2012 Tesla Model S sedan"; the colour is unknown and omitted).

Identity: the model class. No attributes. Mask: the bounding box; crop r = 0.75·max(w, h) around it.
Mirrors nest the image folders (cars_train/cars_train/) and move the .mat files: both are searched.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.io import loadmat

from data_modules.base import register
from data_modules.masks import box_mask
from data_modules.records import FileDataModule, Record

BODY_TYPES = ("sedan", "suv", "coupe", "convertible", "hatchback", "wagon", "minivan", "van", "cab", "cabriolet")


def car_captions(class_name: str) -> tuple[str, ...]:
    """"Tesla Model S Sedan 2012" → ("a 2012 Tesla Model S sedan", …): the year first, the body type lower case."""
    words = class_name.split()
    year = words.pop() if words and words[-1].isdigit() else ""
    words = [w.lower() if w.lower() in BODY_TYPES else w for w in words]
    model = " ".join(words)
    lead = f"{year} {model}".strip()
    return (f"a {lead}", f"a photo of a {lead}", f"a {lead} on the road")


def mat_annotations(path: Path) -> list[dict]:
    """The `annotations` struct array of a Stanford Cars .mat file as dicts."""
    ann = np.atleast_1d(loadmat(path, squeeze_me=True)["annotations"])
    return [{name: ann[name][i] for name in ann.dtype.names} for i in range(len(ann))]


@register
class CarsDataModule(FileDataModule):
    """Stanford Cars: train = cars_train + devkit/cars_train_annos.mat, test = cars_test +
    cars_test_annos_withlabels.mat."""

    name = "cars"
    LAYOUT = ("cars_train/NNNNN.jpg, cars_test/NNNNN.jpg, devkit/{cars_train_annos.mat, cars_meta.mat}, "
              "cars_test_annos_withlabels.mat (root or devkit/)")
    SOURCE = ("Stanford Cars (Krause et al. 2013); the original host is gone — mirrors such as the Kaggle and "
              "torchvision-compatible copies keep this layout")
    crop_ratio = 0.75

    def index(self) -> dict[str, list[Record]]:
        meta = loadmat(self.require("devkit/cars_meta.mat", "cars_meta.mat"), squeeze_me=True)
        class_names = [str(c) for c in np.atleast_1d(meta["class_names"])]
        files = {"train": ("devkit/cars_train_annos.mat", "cars_train_annos.mat"),
                 "test": ("cars_test_annos_withlabels.mat", "devkit/cars_test_annos_withlabels.mat")}
        out = {}
        for split, candidates in files.items():
            annos = self.require(*candidates)
            folder = self._image_folder(f"cars_{split}")
            records = []
            for a in mat_annotations(annos):
                try:
                    x1, y1, x2, y2 = (float(a[k]) for k in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"))
                    cls, fname = int(a["class"]), str(a["fname"])
                    name = class_names[cls - 1]
                except (KeyError, ValueError, IndexError, TypeError):
                    self.skip_malformed(annos)
                    continue
                body = next((w.lower() for w in name.split() if w.lower() in BODY_TYPES), "")
                records.append(Record(key=f"{split}/{fname}", image=f"{folder}/{fname}", captions=car_captions(name),
                                      identity=cls - 1, facts=(name, body) if body else (name,),
                                      bbox=(x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1)))
            out[split] = records
        return out

    def _image_folder(self, name: str) -> str:
        """`name`, or `name/name` when a mirror nested it one level."""
        nested = self.root / name / name
        if nested.is_dir():
            return f"{name}/{name}"
        self.require(name, note="the image folder")
        return name

    def sample_mask(self, rec: Record, text: Record, caption: str, size: tuple[int, int]) -> np.ndarray:
        return box_mask(rec.bbox, size)

    def instruction(self, text: Record, caption: str, where: str) -> str:
        place = f" {where}" if where else ""
        return f"replace the car{place} with {caption}, the {text.facts[0]}; keep the road and background unchanged"
