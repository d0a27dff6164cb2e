"""Edit masks from the annotation formats of the real datasets, all as (H, W) bool arrays (True = may change).

Pure functions of arrays and annotation values; reading the files is the caller's business.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw


def box_mask(box: Sequence[float], size: tuple[int, int]) -> np.ndarray:
    """(H, W) True inside the box (x, y, w, h) in pixels, for an image of `size` = (W, H)."""
    W, H = size
    x, y, w, h = box
    mask = np.zeros((H, W), dtype=bool)
    x0, y0 = max(0, int(np.floor(x))), max(0, int(np.floor(y)))
    x1, y1 = min(W, int(np.ceil(x + w))), min(H, int(np.ceil(y + h)))
    mask[y0:y1, x0:x1] = True
    return mask


def polygons_mask(polygons: Sequence[Sequence[float]], size: tuple[int, int]) -> np.ndarray:
    """COCO polygons [[x1, y1, x2, y2, …], …] rasterised (union) into an (H, W) mask of an image of size (W, H)."""
    canvas = Image.new("1", size, 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        points = [(float(poly[i]), float(poly[i + 1])) for i in range(0, len(poly) - 1, 2)]
        if len(points) >= 3:
            draw.polygon(points, fill=1, outline=1)
    return np.array(canvas, dtype=bool)


def rle_mask(counts: Sequence[int], height: int, width: int) -> np.ndarray:
    """COCO uncompressed RLE: alternating run lengths over the pixels in column-major (Fortran) order, the
    first run being background. Returns (H, W) bool."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() != height * width or (counts < 0).any():
        raise ValueError(f"RLE runs sum to {counts.sum()}, expected {height}×{width} = {height * width}")
    values = np.arange(len(counts)) % 2 == 1  # runs alternate background, foreground, …
    flat = np.repeat(values, counts)           # (H·W,) column-major
    return flat.reshape(width, height).T


def coco_segmentation_mask(segmentation, size: tuple[int, int]) -> np.ndarray:
    """A COCO `segmentation` value: polygons (list), uncompressed RLE (dict with a list of counts) or, only when
    pycocotools is installed, compressed RLE (dict with a string of counts). Raises ValueError otherwise."""
    W, H = size
    if isinstance(segmentation, list):
        return polygons_mask(segmentation, size)
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        h, w = segmentation["size"]
        return rle_mask(segmentation["counts"], h, w)
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), (str, bytes)):
        try:
            from pycocotools import mask as coco_mask  # optional: compressed RLE appears only in result files
        except ImportError:
            raise ValueError("compressed RLE needs pycocotools (pip install pycocotools)") from None
        rle = dict(segmentation)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode()
        return coco_mask.decode(rle).astype(bool)
    raise ValueError(f"unknown COCO segmentation of type {type(segmentation).__name__} for a {W}×{H} image")


def threshold_mask(gray: np.ndarray, level: float = 0.5) -> np.ndarray:
    """A soft grayscale mask (H, W) uint8 or float in [0, 1] → bool at `level` of full scale."""
    scale = 255.0 if gray.dtype == np.uint8 else 1.0
    return gray.astype(np.float32) >= level * scale


def not_background_colour(rgb: np.ndarray, colour: Sequence[int] = (0, 0, 254), tolerance: float = 80.0) -> np.ndarray:
    """(H, W, 3) uint8 image with the background painted one colour (Flowers' segmim: blue) → (H, W) foreground.

    JPEG blurs the painted colour, hence a Euclidean tolerance in RGB rather than equality."""
    distance = np.linalg.norm(rgb.astype(np.float32) - np.asarray(colour, np.float32), axis=-1)
    return distance > tolerance


def label_mask(labels: np.ndarray, keep: Sequence[int]) -> np.ndarray:
    """(H, W) integer label map (a palette PNG's indices) → True where the label is one of `keep`."""
    return np.isin(labels, np.asarray(keep))


def location_phrase(mask: np.ndarray) -> str:
    """Where the mask's centre of mass lies, in words ("in the upper left", "in the centre", …); "" when empty
    or when the mask covers nearly everything (no useful location)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any() or mask.mean() > 0.9:
        return ""
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean() / mask.shape[0], xs.mean() / mask.shape[1]
    row = "upper" if cy < 1 / 3 else "lower" if cy > 2 / 3 else ""
    col = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
    if not row and not col:
        return "in the centre"
    if row and col:
        return f"in the {row} {col}"
    return f"at the {'top' if row == 'upper' else 'bottom'}" if row else f"on the {col}"
