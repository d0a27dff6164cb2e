"""What a photo's size costs `xmgie edit`, and what GB's FFT path saves on large photos.

    python benchmarks/photo_sizes.py --ckpt runs/shapes/default/checkpoints/last.ckpt [--repeats 3]

1. `xmgie edit --mask auto` (wall time, a fresh process each, imports included) of scikit-image's `astronaut` at
   512², 2048² and 4000×3000, round robin over the repeats;
2. in this process, GB's full-resolution seam blur (`gaussian_blur_edit`) of the 4000×3000 photo under a painted
   mask covering a fifth of it, σ_max = 5 and σ_s = 10 px scaled from 256 px (as `xmgie edit` scales them), with
   the FFT path (rows and columns of ≥ FFT_LENGTH samples) and with direct correlation only, side by side, and the
   largest difference between the two.
Writes medians and ranges to benchmarks/results/photo_sizes.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage.data import astronaut

from xmgie.modules import gaussian_blur

REPO = Path(__file__).resolve().parents[1]
SIZES = {"512x512": (512, 512), "2048x2048": (2048, 2048), "4000x3000": (4000, 3000)}


def stats(times: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(times), 3), "min": round(min(times), 3), "max": round(max(times), 3)}


def edit_times(ckpt: str, folder: Path, repeats: int) -> dict[str, dict[str, float]]:
    """1. Wall seconds of `xmgie edit` per photo size."""
    photo = Image.fromarray(astronaut())
    paths = {}
    for name, size in SIZES.items():
        paths[name] = folder / f"astronaut_{name}.png"
        photo.resize(size, Image.LANCZOS).save(paths[name])
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    times: dict[str, list[float]] = {name: [] for name in SIZES}
    for _ in range(repeats):
        for name, path in paths.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "xmgie.cli", "edit", "--ckpt", ckpt, "--image", str(path),
                            "--prompt", "make the circle red", "--out", str(folder / f"out_{name}.png")],
                           cwd=REPO, env=env, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    return {name: stats(t) for name, t in times.items()}


def blur_times(repeats: int) -> dict[str, object]:
    """2. GB on the 4000×3000 photo: the FFT path against direct correlation only."""
    W, H = SIZES["4000x3000"]
    photo = Image.fromarray(astronaut()).resize((W, H), Image.LANCZOS)
    image = torch.from_numpy(np.asarray(photo, dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1
    mask = torch.zeros(1, 1, H, W)
    mask[..., H // 5: H // 5 + H // 2, W // 3: W // 3 + int(0.4 * W)] = 1                      # a fifth of the photo
    scale = max(H, W) / 256
    sigma_max, sigma_s = 5 * scale, 10 * scale
    fft_length = gaussian_blur.FFT_LENGTH
    times: dict[str, list[float]] = {"fft": [], "direct": []}
    outputs = {}
    for _ in range(repeats):
        for name, length in (("fft", fft_length), ("direct", 10 ** 9)):
            gaussian_blur.FFT_LENGTH = length
            start = time.perf_counter()
            outputs[name] = gaussian_blur.gaussian_blur_edit(image, mask, sigma_max, sigma_s)
            times[name].append(time.perf_counter() - start)
    gaussian_blur.FFT_LENGTH = fft_length
    return {"photo": f"{W}x{H}", "sigma_max_px": round(sigma_max, 2), "sigma_s_px": round(sigma_s, 2),
            "seconds": {name: stats(t) for name, t in times.items()},
            "speedup": round(statistics.median(times["direct"]) / statistics.median(times["fft"]), 2),
            "max_abs_difference": float((outputs["fft"] - outputs["direct"]).abs().max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/photo_sizes.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        edits = edit_times(args.ckpt, Path(tmp), args.repeats)
    result = {"ckpt": args.ckpt, "repeats": args.repeats, "threads": torch.get_num_threads(),
              "xmgie_edit_seconds": edits, "gb_seam_blur": blur_times(args.repeats)}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
