"""`celebahq`: CelebA-HQ faces from CelebAMask-HQ, with the Multi-Modal-CelebA-HQ captions when present.

Identity: the CelebA identity (via the HQ-to-CelebA mapping). Attributes: the 40 CelebA attributes. Split: CelebA's
list_eval_partition (0 train, 1 val, 2 test). Mask: the face parts the edited attributes touch; face and hair when
nothing is edited (training reconstructs the face from its own caption).
"""
from __future__ import annotations

import warnings

import numpy as np
from PIL import Image

from data_modules.base import register
from data_modules.images import read_gray
from data_modules.records import FileDataModule, Record, identity_table, read_captions

BASE = "CelebAMask-HQ"
FACE_AND_HAIR = ("skin", "nose", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth", "u_lip", "l_lip",
                 "hair")
MOUTH = ("mouth", "u_lip", "l_lip")
# which CelebAMask-HQ parts each attribute changes; attributes not listed change the face and hair
ATTRIBUTE_PARTS = {
    "Bald": ("hair", "skin"), "Bangs": ("hair",), "Black_Hair": ("hair",), "Blond_Hair": ("hair",),
    "Brown_Hair": ("hair",), "Gray_Hair": ("hair",), "Straight_Hair": ("hair",), "Wavy_Hair": ("hair",),
    "Receding_Hairline": ("hair", "skin"), "Smiling": MOUTH + ("skin",), "Mouth_Slightly_Open": MOUTH,
    "Big_Lips": MOUTH, "Wearing_Lipstick": MOUTH, "Eyeglasses": ("eye_g", "l_eye", "r_eye"),
    "Narrow_Eyes": ("l_eye", "r_eye"), "Bags_Under_Eyes": ("l_eye", "r_eye", "skin"),
    "Arched_Eyebrows": ("l_brow", "r_brow"), "Bushy_Eyebrows": ("l_brow", "r_brow"), "Big_Nose": ("nose",),
    "Pointy_Nose": ("nose",), "Mustache": ("skin",) + MOUTH, "Goatee": ("skin",) + MOUTH, "No_Beard": ("skin",),
    "Sideburns": ("skin", "hair"), "5_o_Clock_Shadow": ("skin",), "Wearing_Hat": ("hat", "hair"),
    "Wearing_Earrings": ("ear_r", "l_ear", "r_ear"), "Wearing_Necklace": ("neck_l", "neck"),
    "Wearing_Necktie": ("neck", "cloth"), "Pale_Skin": ("skin",), "Rosy_Cheeks": ("skin",),
    "Heavy_Makeup": ("skin",) + MOUTH + ("l_eye", "r_eye"), "Double_Chin": ("skin", "neck"),
}


def attribute_words(names: list[str], present: np.ndarray, limit: int = 5) -> tuple[str, ...]:
    """Present attributes as words ("blond hair", "smiling"); "Male" and "Young" become the subject instead."""
    skip = {"Male", "Young", "Attractive"}
    return tuple(names[i].replace("_", " ").lower() for i in np.flatnonzero(present) if names[i] not in skip)[:limit]


def edited_parts(names: list[str], before: np.ndarray, after: np.ndarray) -> tuple[str, ...]:
    """The parts the attributes that differ between `before` and `after` touch (FACE_AND_HAIR when none differ
    or one differs that is not tied to parts)."""
    parts: list[str] = []
    for i in np.flatnonzero(before != after):
        parts += ATTRIBUTE_PARTS.get(names[i], FACE_AND_HAIR)
    return tuple(dict.fromkeys(parts)) or FACE_AND_HAIR


@register
class CelebAHQDataModule(FileDataModule):
    """CelebA-HQ (CelebAMask-HQ)."""

    name = "celebahq"
    LAYOUT = (f"{BASE}/{{CelebA-HQ-img/<i>.jpg, CelebAMask-HQ-mask-anno/<i//2000>/<i:05d>_<part>.png, "
              "CelebAMask-HQ-attribute-anno.txt, CelebA-HQ-to-CelebA-mapping.txt}, identity_CelebA.txt and "
              "list_eval_partition.txt (CelebA Anno/ and Eval/), text/<i>.txt (Multi-Modal-CelebA-HQ)")
    SOURCE = ("https://github.com/switchablenorms/CelebAMask-HQ, CelebA's Anno/ and Eval/ "
              "(mmlab.ie.cuhk.edu.hk/projects/CelebA.html), captions from Multi-Modal-CelebA-HQ")

    def index(self) -> dict[str, list[Record]]:
        rows = self.read_rows(self.require(f"{BASE}/CelebAMask-HQ-attribute-anno.txt"), 1)
        next(rows, None)  # line 1: the image count
        self.attribute_names = next(rows, [])
        n_attr = len(self.attribute_names)
        attributes = {}
        for f in rows:
            if len(f) != n_attr + 1 or any(v not in ("1", "-1", "0") for v in f[1:]):
                self.skip_malformed(f"{BASE}/CelebAMask-HQ-attribute-anno.txt")
                continue
            attributes[f[0]] = (np.array([int(v) for v in f[1:]]) > 0).astype(np.float32)
        mapping_file = self.require(f"{BASE}/CelebA-HQ-to-CelebA-mapping.txt")
        mapping = {f"{f[0]}.jpg": f[2] for f in self.read_rows(mapping_file, 3) if f[0].isdigit()}
        identity_file = self.require("identity_CelebA.txt", "Anno/identity_CelebA.txt", f"{BASE}/identity_CelebA.txt")
        partition_file = self.require("list_eval_partition.txt", "Eval/list_eval_partition.txt",
                                      f"{BASE}/list_eval_partition.txt")
        celeb_identity = {f[0]: f[1] for f in self.read_rows(identity_file, 2)}
        partition = {f[0]: f[1] for f in self.read_rows(partition_file, 2)}
        text_root = self.optional("text", f"{BASE}/text")
        if text_root is None:
            warnings.warn(f"celebahq: no captions under {self.root / 'text'}; prompts are templated from the "
                          "attributes", stacklevel=2)
        ids = identity_table(celeb_identity[mapping[k]] for k in attributes if mapping.get(k) in celeb_identity)
        split: dict[str, list[Record]] = {"train": [], "val": [], "test": []}
        names = {"0": "train", "1": "val", "2": "test"}
        for key in sorted(attributes, key=lambda k: int(k.split(".")[0]) if k.split(".")[0].isdigit() else -1):
            orig = mapping.get(key)
            if orig not in partition:
                self.skip_malformed(f"{BASE}/CelebA-HQ-to-CelebA-mapping.txt ({key} not mapped to a partition)")
                continue
            i = int(key.split(".")[0])
            words = attribute_words(self.attribute_names, attributes[key])
            captions = read_captions(text_root / f"{i}.txt") if text_root and (text_root / f"{i}.txt").exists() else ()
            subject = self._subject(attributes[key])
            if not captions:
                captions = (f"the {subject} has {', '.join(words)}." if words else f"a photo of a {subject}.",)
            split[names.get(partition[orig], "train")].append(Record(
                key=key, image=f"{BASE}/CelebA-HQ-img/{key}", captions=captions,
                identity=ids.get(celeb_identity.get(orig), -1), attributes=attributes[key], facts=(subject, *words),
                mask=f"{BASE}/CelebAMask-HQ-mask-anno/{i // 2000}/{i:05d}"))
        return split

    def _subject(self, present: np.ndarray) -> str:
        if "Male" not in self.attribute_names:
            return "person"
        return "man" if present[self.attribute_names.index("Male")] else "woman"

    def _names(self) -> list[str]:
        if not hasattr(self, "attribute_names"):
            rows = self.read_rows(self.require(f"{BASE}/CelebAMask-HQ-attribute-anno.txt"), 1)
            next(rows, None)
            self.attribute_names = next(rows, [])
        return self.attribute_names

    def sample_mask(self, rec: Record, text: Record, caption: str, size: tuple[int, int]) -> np.ndarray:
        parts = edited_parts(self._names(), rec.attributes, text.attributes) if text is not rec else FACE_AND_HAIR
        mask = None
        for part in parts:
            path = self.path(f"{rec.mask}_{part}.png")
            if path.exists():  # a missing part file means the part is absent
                m = read_gray(path) > 0
                mask = m if mask is None else mask | m
        if mask is None:
            return np.ones((size[1], size[0]), dtype=bool)
        # part masks are 512² for 1024² images: resized without a warning, that is the layout
        return np.array(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 127

    def instruction(self, text: Record, caption: str, where: str) -> str:
        subject = text.facts[0] if text.facts else "person"
        details = f" ({', '.join(text.facts[1:])})" if len(text.facts) > 1 else ""
        return (f"edit the {subject}'s face so that {caption.rstrip('.')}{details}; "
                "keep the identity, pose and background")
