"""`xmgie data masks`: predicted edit masks for a dataset whose triplets have none (InstructPix2Pix's layout),
written once so that training reads them like annotated masks (`--data.init_args.masks=<out>`).

Each triplet is shown to the editor as the loader shows it (cropped, at the editor's resolution, with the
loader's instruction); its relevance map is upsampled onto the crop, thresholded and written at the photo's own
size as <out>/<key>.png (255 = may change; outside the crop, which training never sees, 0).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from xmgie.errors import UserError
from xmgie.models.mask_net import mask_predictor
from xmgie.modules.mask_predictor import MaskPredictorConfig, threshold


def write_predicted_masks(dataset: str, root: str | None, ckpt: str | Path, out: str | Path,
                          settings: MaskPredictorConfig | None = None, batch_size: int = 16,
                          device: str = "cpu", seed: int = 0) -> dict[str, Any]:
    """Predict and write a mask for every record without one; returns a summary (also written as masks.json)."""
    from data_modules.registry import build_datamodule
    from data_modules.images import centre_crop
    from xmgie.editor import DiffusionEditor, load_editor

    editor = load_editor(ckpt, device)
    if not isinstance(editor, DiffusionEditor):
        raise UserError(f"{ckpt}: masks are predicted with a diffusion editor's U-Net, not a one-pass GAN")
    dm = build_datamodule(dataset, root=root, resolution=int(editor.data_info.get("resolution", 32)))
    if not hasattr(dm, "masks"):
        raise UserError(f"dataset {dataset!r} has its own masks; predicted ones are for `triplets`")
    dm.setup("fit")
    predictor = mask_predictor(settings)
    out = Path(out)
    written, shares = 0, []
    for split, records in dm.records().items():
        if split == "val":  # a carve-out of another split's records
            continue
        data = dm.make_split(split)
        todo = [i for i, r in enumerate(records) if r.mask is None]
        for b in range(0, len(todo), batch_size):
            idx = todo[b:b + batch_size]
            samples = [data[i] for i in idx]  # cropped and resized as the loader shows them
            source = torch.stack([s.source for s in samples]).to(editor.device)
            soft = predictor.soft(editor.sampler, source, [s.instruction for s in samples], seed)
            for i, m in zip(idx, soft.cpu()):
                rec = records[i]
                with Image.open(dm.path(rec.image)) as img:
                    W, H = img.size
                x0, y0, x1, y1 = (int(round(v)) for v in centre_crop((W, H)))
                crop = threshold(F.interpolate(m[None], size=(y1 - y0, x1 - x0), mode="bilinear",
                                               align_corners=False), predictor.cfg.threshold)[0, 0]
                full = np.zeros((H, W), np.uint8)
                full[y0:y1, x0:x1] = (crop.numpy() * 255).astype(np.uint8)
                path = out / f"{rec.key}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(full, mode="L").save(path)
                written += 1
                shares.append(float(crop.mean()))
    if not written:
        raise UserError(f"every record of {dataset!r} under {dm.root} has its own mask: nothing to predict")
    summary = {"dataset": dataset, "root": str(dm.root), "ckpt": str(ckpt), "written": written,
               "mean_share": float(np.mean(shares)), "settings": vars(predictor.cfg)}
    (out / "masks.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
