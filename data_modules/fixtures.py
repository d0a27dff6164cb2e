"""Miniature dataset trees in the official on-disk layouts (../DATASETS.md), written from scratch: real image
files and every annotation file in its real format (.txt, .mat, .json, palette PNGs, polygons and RLE).

Every image shows one *object* painted OBJECT_COLOUR at a known place on a green background; whatever the
dataset's mask annotation marks is exactly that object (other labelled parts are painted OTHER_COLOUR), so a test
can check that the mask still covers the object after the loader's crop and resize.

    write_fixture("cub", "cub-fixture", n_images=12)      # then: --data cub --data.init_args.root=cub-fixture
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy.io import savemat

from data_modules.records import hash_fraction

OBJECT_COLOUR = (220, 30, 220)
OTHER_COLOUR = (240, 150, 20)
COLOURS = ("red", "blue", "yellow", "white", "black", "brown")


def _background(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A smooth green gradient with mild noise, far in colour from the object."""
    W, H = size
    ys, xs = np.mgrid[0:H, 0:W] / max(W, H)
    img = np.stack([30 + 40 * xs, 110 + 70 * ys, 40 + 20 * xs * ys], -1) + rng.normal(0, 4, (H, W, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _box(rng: np.random.Generator, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """An object box (x, y, w, h) of 35–60 % of each side, fully inside the image."""
    W, H = size
    w, h = int(W * rng.uniform(0.35, 0.6)), int(H * rng.uniform(0.35, 0.6))
    return int(rng.integers(0, W - w)), int(rng.integers(0, H - h)), w, h


def _size(rng: np.random.Generator, scale: int = 1) -> tuple[int, int]:
    """A random image size, 80–140 px a side times `scale` (scale 4: about CUB's and COCO's 500×375)."""
    return int(rng.integers(80, 140)) * scale, int(rng.integers(80, 140)) * scale


def _ellipse(size: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """(H, W) bool: the ellipse inscribed in box (x, y, w, h)."""
    W, H = size
    x, y, w, h = box
    canvas = Image.new("1", size, 0)
    ImageDraw.Draw(canvas).ellipse([x, y, x + w - 1, y + h - 1], fill=1)
    return np.array(canvas, dtype=bool)


def _rect(size: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """(H, W) bool: the box (x, y, w, h), clipped to the image."""
    W, H = size
    x, y, w, h = box
    out = np.zeros((H, W), dtype=bool)
    out[max(0, y):y + h, max(0, x):x + w] = True
    return out


def _paint(img: Image.Image, mask: np.ndarray, colour: tuple[int, int, int]) -> Image.Image:
    arr = np.array(img)
    arr[mask] = colour
    return Image.fromarray(arr)


def _save_jpeg(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, quality=95)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _captions(rng: np.random.Generator, thing: str, k: int = 10) -> list[str]:
    return [f"a {thing} with a {rng.choice(COLOURS)} head and {rng.choice(COLOURS)} wings" for _ in range(k)]


# -- CUB-200-2011 ----------------------------------------------------------------------------------------
CUB_CLASSES = ("001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross", "004.Groove_billed_Ani")


def cub_attribute_names() -> list[str]:
    parts = ("wing", "upperparts", "underparts", "back", "head", "breast", "throat", "eye", "leg", "bill",
             "forehead", "nape", "belly", "primary", "crown")
    names = [f"has_{p}_color::{c}" for p in parts for c in COLOURS + ("grey", "olive", "orange", "green")]
    names += [f"has_shape::form_{i}" for i in range(312 - len(names))]
    return names


def write_cub(root: Path, n_images: int, rng: np.random.Generator, scale: int = 1) -> None:
    base = root / "CUB_200_2011"
    lines: dict[str, list[str]] = {k: [] for k in ("images", "labels", "split", "boxes", "attrs")}
    for i in range(1, n_images + 1):
        cls = CUB_CLASSES[(i - 1) % len(CUB_CLASSES)]
        rel = f"{cls}/{cls.split('.')[1]}_{i:04d}_{100 + i}.jpg"
        size = _size(rng, scale)
        box = _box(rng, size)
        obj = _ellipse(size, box)
        _save_jpeg(_paint(_background(rng, size), obj, OBJECT_COLOUR), base / "images" / rel)
        soft = Image.fromarray((obj * 255).astype(np.uint8)).filter(ImageFilter.BLUR)
        seg = root / "segmentations" / f"{rel[:-4]}.png"
        seg.parent.mkdir(parents=True, exist_ok=True)
        soft.save(seg)  # soft grayscale, thresholded at 0.5 by the loader
        _write(root / "text_c10" / f"{rel[:-4]}.txt", "\n".join(_captions(rng, "bird")) + "\n")
        lines["images"].append(f"{i} {rel}")
        lines["labels"].append(f"{i} {CUB_CLASSES.index(cls) + 1}")
        lines["split"].append(f"{i} {i % 2}")
        lines["boxes"].append(f"{i} {box[0]:.1f} {box[1]:.1f} {box[2]:.1f} {box[3]:.1f}")
        for a in range(1, 313):
            present = int(rng.random() < 0.1)
            extra = " 0" if a == 7 else ""  # some real rows carry an extra token
            lines["attrs"].append(f"{i} {a} {present} {3 if present else 1} {rng.uniform(1, 20):.3f}{extra}")
    for key, name in (("images", "images.txt"), ("labels", "image_class_labels.txt"),
                      ("split", "train_test_split.txt"), ("boxes", "bounding_boxes.txt"),
                      ("attrs", "attributes/image_attribute_labels.txt")):
        _write(base / name, "\n".join(lines[key]) + "\n")
    _write(base / "classes.txt", "".join(f"{k + 1} {c}\n" for k, c in enumerate(CUB_CLASSES)))
    _write(root / "attributes.txt", "".join(f"{k + 1} {n}\n" for k, n in enumerate(cub_attribute_names())))
    _write(root / "trainvalclasses.txt", "".join(f"{c}\n" for c in CUB_CLASSES[:3]))
    _write(root / "testclasses.txt", f"{CUB_CLASSES[3]}\n")


# -- Oxford-102 Flowers ------------------------------------------------------------------------------------
def write_flowers(root: Path, n_images: int, rng: np.random.Generator, scale: int = 1) -> None:
    labels = np.array([1 + (i % 3) for i in range(n_images)], dtype=np.uint8)  # classes 1..3
    for i in range(1, n_images + 1):
        size = _size(rng, scale)
        obj = _ellipse(size, _box(rng, size))
        img = _paint(_background(rng, size), obj, OBJECT_COLOUR)
        _save_jpeg(img, root / "jpg" / f"image_{i:05d}.jpg")
        segmim = np.array(img)
        segmim[~obj] = (0, 0, 254)  # the background painted blue
        _save_jpeg(Image.fromarray(segmim), root / "segmim" / f"segmim_{i:05d}.jpg")
        cls = f"class_{labels[i - 1]:05d}"
        _write(root / "text_c10" / cls / f"image_{i:05d}.txt",
               "\n".join(f"this flower has {rng.choice(COLOURS)} petals" for _ in range(10)) + "\n")
    savemat(root / "imagelabels.mat", {"labels": labels[None].astype(np.float64)})
    ids = np.arange(1, n_images + 1)
    savemat(root / "setid.mat", {"trnid": ids[ids % 4 < 2][None], "valid": ids[ids % 4 == 2][None],
                                 "tstid": ids[ids % 4 == 3][None]})
    _write(root / "trainvalclasses.txt", "class_00001\nclass_00002\n")
    _write(root / "testclasses.txt", "class_00003\n")


# -- MS-COCO -------------------------------------------------------------------------------------------
def _rle_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE of an (H, W) bool mask: column-major runs, the first one background."""
    flat = mask.T.reshape(-1).astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] else runs


def write_coco(root: Path, n_images: int, rng: np.random.Generator, scale: int = 1) -> None:
    image_id = 1
    for part, count in (("train2017", n_images - n_images // 3), ("val2017", n_images // 3)):
        images, instances, captions = [], [], []
        for _ in range(count):
            size = _size(rng, scale)
            W, H = size
            x, y, w, h = _box(rng, size)
            name = f"{image_id:012d}.jpg"
            crowd = image_id % 3 == 0
            if crowd:  # an iscrowd=1 instance: uncompressed RLE
                obj = _ellipse(size, (x, y, w, h))
                seg = {"counts": _rle_counts(obj), "size": [H, W]}
            else:  # a polygon: a hexagon inside the box
                pts = [(x + w / 2 + w / 2 * np.cos(a), y + h / 2 + h / 2 * np.sin(a)) for a in np.arange(6) * np.pi / 3]
                seg = [[float(v) for p in pts for v in p]]
                canvas = Image.new("1", size, 0)
                ImageDraw.Draw(canvas).polygon(pts, fill=1, outline=1)
                obj = np.array(canvas, dtype=bool)
            small = np.zeros_like(obj)
            sx, sy = (2, 2) if x > 12 or y > 12 else (W - 10, H - 10)
            small[sy:sy + 6, sx:sx + 6] = True  # a small second instance, painted OTHER_COLOUR
            img = _paint(_paint(_background(rng, size), obj, OBJECT_COLOUR), small, OTHER_COLOUR)
            _save_jpeg(img, root / part / name)
            images.append({"id": image_id, "file_name": name, "width": W, "height": H})
            instances.append({"id": 2 * image_id, "image_id": image_id, "category_id": 18, "iscrowd": int(crowd),
                              "area": float(obj.sum()), "bbox": [x, y, w, h], "segmentation": seg})
            instances.append({"id": 2 * image_id + 1, "image_id": image_id, "category_id": 17, "iscrowd": 0,
                              "area": 36.0, "bbox": [sx, sy, 6, 6],
                              "segmentation": [[sx, sy, sx + 6, sy, sx + 6, sy + 6, sx, sy + 6]]})
            for k in range(5):
                text = f"a dog standing on the grass, view {k}" if k % 2 == 0 else f"an animal in a field, view {k}"
                captions.append({"id": 10 * image_id + k, "image_id": image_id, "caption": text})
            image_id += 1
        categories = [{"id": 17, "name": "cat", "supercategory": "animal"},
                      {"id": 18, "name": "dog", "supercategory": "animal"}]
        _write(root / "annotations" / f"instances_{part}.json",
               json.dumps({"images": images, "annotations": instances, "categories": categories}))
        _write(root / "annotations" / f"captions_{part}.json", json.dumps({"images": images, "annotations": captions}))


# -- CelebA-HQ / CelebAMask-HQ --------------------------------------------------------------------------
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair Blond_Hair "
    "Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup High_Cheekbones "
    "Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline "
    "Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace Wearing_Necktie Young").split()


def write_celebahq(root: Path, n_images: int, rng: np.random.Generator, scale: int = 1) -> None:
    base = root / "CelebAMask-HQ"
    side, mask_side = 128 * scale, 64 * scale  # the real files: 1024² images, 512² part masks
    attr_lines, map_lines, id_lines, part_lines = [], ["idx orig_idx orig_file"], [], []
    for i in range(n_images):
        img = _background(rng, (side, side))
        cx, cy = rng.uniform(0.4, 0.6) * side, rng.uniform(0.4, 0.55) * side
        s = rng.uniform(0.18, 0.25) * side
        parts = {"skin": (cx - s, cy - s, 2 * s, 2.4 * s), "hair": (cx - 1.1 * s, cy - 1.4 * s, 2.2 * s, 0.8 * s),
                 "mouth": (cx - 0.4 * s, cy + 0.8 * s, 0.8 * s, 0.3 * s),
                 "neck": (cx - 0.5 * s, cy + 1.4 * s, s, 0.7 * s),
                 "cloth": (cx - 1.5 * s, cy + 2.0 * s, 3 * s, side - cy - 2.0 * s)}
        for part, box in parts.items():
            box = tuple(int(v) for v in box)
            area = _rect((side, side), box) if part == "cloth" else _ellipse((side, side), box)
            img = _paint(img, area, OTHER_COLOUR if part in ("neck", "cloth") else OBJECT_COLOUR)
            small = Image.fromarray(area.astype(np.uint8) * 255).resize((mask_side, mask_side), Image.NEAREST)
            path = base / "CelebAMask-HQ-mask-anno" / str(i // 2000) / f"{i:05d}_{part}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            small.save(path)
        _save_jpeg(img, base / "CelebA-HQ-img" / f"{i}.jpg")
        values = np.where(rng.random(len(CELEBA_ATTRIBUTES)) < 0.3, 1, -1)
        attr_lines.append(f"{i}.jpg  " + " ".join(str(v) for v in values))
        orig = 1000 + i
        map_lines.append(f"{i} {orig - 1} {orig:06d}.jpg")
        id_lines.append(f"{orig:06d}.jpg {2880 + i % 3}")
        part_lines.append(f"{orig:06d}.jpg {0 if i < n_images * 0.6 else 1 if i < n_images * 0.75 else 2}")
        _write(root / "text" / f"{i}.txt", "\n".join(
            f"the person has {rng.choice(COLOURS)} hair and is smiling." for _ in range(10)) + "\n")
    _write(base / "CelebAMask-HQ-attribute-anno.txt",
           f"{n_images}\n{' '.join(CELEBA_ATTRIBUTES)}\n" + "\n".join(attr_lines) + "\n")
    _write(base / "CelebA-HQ-to-CelebA-mapping.txt", "\n".join(map_lines) + "\n")
    _write(root / "Anno" / "identity_CelebA.txt", "\n".join(id_lines) + "\n")
    _write(root / "Eval" / "list_eval_partition.txt", "\n".join(part_lines) + "\n")


# -- Stanford Cars -----------------------------------------------------------------------------------------
CAR_CLASSES = ("AM General Hummer SUV 2000", "Audi TT Hatchback 2011", "Tesla Model S Sedan 2012")


def _car_struct(rows: list[dict]) -> np.ndarray:
    dtype = [("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"), ("class", "O"), ("fname", "O")]
    out = np.zeros((1, len(rows)), dtype=dtype)
    for k, r in enumerate(rows):
        for name, _ in dtype:
            out[0, k][name] = np.array([[r[name]]]) if name != "fname" else r[name]
    return out


def write_cars(root: Path, n_images: int, rng: np.random.Generator, scale: int = 1, nested: bool = False) -> None:
    for split, count in (("train", n_images - n_images // 3), ("test", n_images // 3)):
        folder = root / f"cars_{split}" / (f"cars_{split}" if nested else "")
        rows = []
        for k in range(1, count + 1):
            size = _size(rng, scale)
            x, y, w, h = _box(rng, size)
            obj = _rect(size, (x, y, w, h))  # the car fills its box: the mask is the box
            name = f"{k:05d}.jpg"
            _save_jpeg(_paint(_background(rng, size), obj, OBJECT_COLOUR), folder / name)
            rows.append({"bbox_x1": x + 1, "bbox_y1": y + 1, "bbox_x2": x + w, "bbox_y2": y + h,
                         "class": 1 + k % len(CAR_CLASSES), "fname": name})
        target = root / ("devkit/cars_train_annos.mat" if split == "train" else "cars_test_annos_withlabels.mat")
        target.parent.mkdir(parents=True, exist_ok=True)
        savemat(target, {"annotations": _car_struct(rows)})
    names = np.empty((1, len(CAR_CLASSES)), dtype=object)
    names[0, :] = CAR_CLASSES
    savemat(root / "devkit" / "cars_meta.mat", {"class_names": names})


# -- DeepFashion-MultiModal ------------------------------------------------------------------------------
def _split_keys(n: int, name: Callable[[int], str], test_fraction: float = 0.1) -> list[str]:
    """n keys `name(k)`, a third of them (at least one) hashed into the test split, so the fixture has both."""
    want_test = max(1, n // 3)
    test, train, k = [], [], 0
    while len(test) < want_test or len(train) < n - want_test:
        key = name(k)
        (test if hash_fraction(key) < test_fraction else train).append(key)
        k += 1
    return test[:want_test] + train[: n - want_test]


def write_deepfashion(root: Path, n_images: int, rng: np.random.Generator, scale: int = 1) -> None:
    items = _split_keys(max(2, n_images // 2), lambda k: f"id_{k:08d}")
    captions, shape_lines, fabric_lines, pattern_lines = {}, [], [], []
    palette = [0, 0, 0] * 256
    for label, colour in ((1, OBJECT_COLOUR), (5, OBJECT_COLOUR), (13, OTHER_COLOUR), (14, OTHER_COLOUR)):
        palette[3 * label:3 * label + 3] = colour
    for i in range(n_images):
        name = f"WOMEN-Tees_Tanks-{items[i % len(items)]}-{i // len(items) + 1:02d}_1_front.jpg"
        size = (75 * scale, 110 * scale)  # the real images: 750×1101
        labels = np.zeros((110, 75), np.uint8)
        labels[35:70, 15:60] = 1    # top
        labels[70:105, 20:55] = 5   # pants
        labels[8:20, 28:48] = 13    # hair
        labels[20:35, 30:46] = 14   # face
        labels = labels.repeat(scale, 0).repeat(scale, 1)
        img = _background(rng, size)
        img = _paint(_paint(img, np.isin(labels, (1, 5)), OBJECT_COLOUR), np.isin(labels, (13, 14)), OTHER_COLOUR)
        _save_jpeg(img, root / "images" / name)
        seg = Image.fromarray(labels, mode="P")
        seg.putpalette(palette)
        path = root / "segm" / f"{name[:-4]}_segm.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        seg.save(path)
        captions[name] = f"The lady wears a {rng.choice(COLOURS)} cotton tee and long pants."
        shape_lines.append(name + " " + " ".join(str(int(rng.integers(0, 3))) for _ in range(12)))
        fabric_lines.append(f"{name} 1 0 7")
        pattern_lines.append(f"{name} 3 3 7")
    _write(root / "captions.json", json.dumps(captions, indent=1))
    _write(root / "labels" / "shape" / "shape_anno_all.txt", "\n".join(shape_lines) + "\n")
    _write(root / "labels" / "texture" / "fabric_ann.txt", "\n".join(fabric_lines) + "\n")
    _write(root / "labels" / "texture" / "pattern_ann.txt", "\n".join(pattern_lines) + "\n")


# -- instruction triplets --------------------------------------------------------------------------------
EDITED_COLOUR = (30, 200, 230)


def _triplet(rng: np.random.Generator, scale: int) -> tuple[Image.Image, Image.Image, np.ndarray]:
    size = _size(rng, scale)
    obj = _ellipse(size, _box(rng, size))
    before = _paint(_background(rng, size), obj, OBJECT_COLOUR)
    return before, _paint(before, obj, EDITED_COLOUR), obj


def write_triplets(root: Path, n_images: int, rng: np.random.Generator, scale: int = 1,
                   layout: str = "magicbrush") -> None:
    prefix = "prompt" if layout == "pix2pix" else ""
    groups = _split_keys(max(2, n_images), lambda k: f"{prefix}{k:06d}")
    if layout == "pix2pix":
        seeds = []
        for g in groups:
            before, after, _ = _triplet(rng, scale)
            folder = root / g
            _save_jpeg(before, folder / "1000_0.jpg")
            _save_jpeg(after, folder / "1000_1.jpg")
            _write(folder / "prompt.json", json.dumps({"input": "a pink ball on grass", "edit": "make the ball blue",
                                                       "output": "a blue ball on grass"}))
            seeds.append([g, [1000]])
        _write(root / "seeds.json", json.dumps(seeds))
        return
    sessions = {}
    for g in groups:
        before, after, obj = _triplet(rng, scale)
        folder = root / "images" / g
        folder.mkdir(parents=True, exist_ok=True)
        before.save(folder / f"{g}-input.png")
        after.save(folder / f"{g}-output1.png")
        rgba = np.array(before.convert("RGBA"))
        rgba[obj, 3] = 0  # DALL-E 2 style: the region to edit is transparent
        Image.fromarray(rgba).save(folder / f"{g}-mask1.png")
        sessions[g] = [{"input": f"{g}-input.png", "output": f"{g}-output1.png", "mask": f"{g}-mask1.png",
                        "instruction": "make the ball blue"}]
    _write(root / "edit_sessions.json", json.dumps(sessions))
    if layout == "parquet":
        write_magicbrush_parquet(root, sessions, root / "data" / "train-00000-of-00001.parquet")
        (root / "edit_sessions.json").unlink()
        shutil.rmtree(root / "images")


def write_magicbrush_parquet(root: Path, sessions: dict, out: Path) -> None:
    """The sessions of a MagicBrush JSON tree as one shard in the hub's format: a row per turn, images as
    {bytes, path} structs (the `datasets` Image feature)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("img_id", pa.string()), ("turn_index", pa.int32()), ("source_img", image),
                        ("mask_img", image), ("instruction", pa.string()), ("target_img", image)])
    rows = []
    for sid, turns in sessions.items():
        for k, turn in enumerate(turns, start=1):
            files = {c: root / "images" / sid / turn[key] for c, key in (("source_img", "input"),
                                                                         ("target_img", "output"), ("mask_img", "mask"))}
            rows.append({"img_id": sid, "turn_index": k, "instruction": turn["instruction"],
                         **{c: {"bytes": f.read_bytes(), "path": f.name} for c, f in files.items()}})
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), out)


WRITERS: dict[str, Callable[..., None]] = {
    "cub": write_cub, "flowers": write_flowers, "coco": write_coco, "celebahq": write_celebahq,
    "cars": write_cars, "deepfashion": write_deepfashion, "triplets": write_triplets,
}


def write_fixture(name: str, root: str | Path, n_images: int = 12, seed: int = 0, **options) -> Path:
    """Write a miniature `name` tree under `root` (created) and return it. `options`: `scale` (images `scale`
    times larger, for benchmarks; default 1: 80–140 px), cars `nested=True` (a mirror's nested folders),
    triplets `layout="pix2pix"` or `"parquet"` (MagicBrush's hub shards; needs pyarrow)."""
    if name not in WRITERS:
        raise KeyError(f"no fixture for {name!r}; available: {', '.join(WRITERS)}")
    if n_images < 6:
        raise ValueError(f"a fixture needs at least 6 images (every split non-empty), got {n_images}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    WRITERS[name](root, n_images, np.random.default_rng(seed), **options)
    return root
