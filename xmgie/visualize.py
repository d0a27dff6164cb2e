"""Image grids for people to look at: data previews and validation samples."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] or (1, H, W) in [0, 1] -> (H, W, 3) uint8."""
    x = x.detach().float().cpu()
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1) * 2 - 1
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def save_grid(rows: Sequence[Sequence[torch.Tensor]], path: str | Path, captions: Sequence[str] = (),
              header: Sequence[str] = (), scale: int = 4) -> Path:
    """Write a grid: one row per example (tensors as in `to_uint8`), an optional caption under each row."""
    cell = rows[0][0].shape[-1] * scale
    text_h = 12
    width = max(cell * len(rows[0]), 6 * max((len(c) for c in captions), default=0))
    height = text_h * bool(header) + len(rows) * (cell + text_h * bool(captions))
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    y = 0
    for i, name in enumerate(header):
        draw.text((i * cell + 2, 0), name, fill="black")
    y += text_h * bool(header)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            tile = Image.fromarray(to_uint8(img)).resize((cell, cell), Image.NEAREST)
            canvas.paste(tile, (c * cell, y))
        y += cell
        if captions:
            draw.text((2, y), captions[r], fill="black")
            y += text_h
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
