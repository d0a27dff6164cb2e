"""Cost of the four modules on this machine; writes benchmarks/results/modules_cpu.json.

    python benchmarks/bench_modules.py [--steps 30] [--repeats 5]

1. GB on a 1024x1024 RGB image (a 600x700 px mask, σ_max = 5, σ_s = 10): median time (distance transform
   included), its ratio to one
   fixed-σ_max Kornia Gaussian blur of the same image, and to the brute-force per-pixel reference (timed on
   2,000 inside pixels and extrapolated to the whole mask: the full loop would take minutes).
2. Training step of full xMGIE vs the base generator (default config), each in its own process (so each
   peak RSS is its own), alternating base / full twice; medians of the per-step medians.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from kornia.filters import gaussian_blur2d

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from xmgie.modules.gaussian_blur import (blur_sigma, brute_force_blur, gaussian_blur_edit,  # noqa: E402
                                         inside_distance, kernel_radius)


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_gb(repeats: int, sigma_max: float = 5.0, sigma_s: float = 10.0, device: str = "cpu",
             brute_force: bool = True) -> dict:
    """GB vs one fixed-σ_max Kornia blur on `device` (a GPU takes GB's device path: torch distance transform,
    the whole image); `brute_force` adds the per-pixel reference's extrapolated time (CPU)."""
    torch.manual_seed(0)
    image = (torch.rand(1, 3, 1024, 1024) * 2 - 1).to(device)
    mask = torch.zeros(1, 1, 1024, 1024, device=device)
    mask[..., 200:800, 150:850] = 1
    k = 2 * kernel_radius(sigma_max, 1024) + 1
    wait = torch.cuda.synchronize if image.is_cuda else (lambda: None)
    gb_times, fixed_times = [], []
    for _ in range(repeats):  # interleaved, so both see the same machine load
        gb_times.append(_median_time(lambda: (gaussian_blur_edit(image, mask, sigma_max, sigma_s), wait()), 1))
        fixed_times.append(_median_time(lambda: (gaussian_blur2d(image, (k, k), (sigma_max, sigma_max)), wait()), 1))
    gb, fixed = statistics.median(gb_times), statistics.median(fixed_times)
    result = {"image": "1x3x1024x1024", "device": str(image.device), "sigma_max": sigma_max, "sigma_s": sigma_s,
              "gb_s": round(gb, 4), "fixed_sigma_kornia_blur_s": round(fixed, 4),
              "ratio_to_fixed_blur": round(gb / fixed, 2)}
    if not brute_force:
        return result
    image, mask = image.cpu(), mask.cpu()
    sigma = blur_sigma(inside_distance(mask), sigma_max, sigma_s)[0, 0].numpy()
    inside = np.argwhere(sigma > 0)
    sample = np.zeros_like(sigma)
    pick = inside[np.random.default_rng(0).choice(len(inside), 2000, replace=False)]
    sample[tuple(pick.T)] = sigma[tuple(pick.T)]
    img = image[0].double().numpy()
    t = time.perf_counter()
    brute_force_blur(img, sample)
    brute = (time.perf_counter() - t) / 2000 * len(inside)
    return {**result, "mask_pixels": int(len(inside)), "brute_force_s_extrapolated": round(brute, 1),
            "speedup_over_brute_force": round(brute / gb, 1)}


def bench_step(variant: str, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        subprocess.run([sys.executable, str(REPO / "benchmarks/bench.py"), "--variant", variant, "--skip-edit",
                        "--steps", str(steps), "--out", str(out)], check=True, capture_output=True)
        r = json.loads(out.read_text())
    return {"median_step_s": r["training"]["median_step_s"], "peak_rss_mb": r["peak_rss_mb"]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--out", default=str(REPO / "benchmarks/results/modules_cpu.json"))
    args = p.parse_args()
    result: dict = {"threads": torch.get_num_threads(), "gaussian_blur": bench_gb(args.repeats)}
    runs: dict[str, list[dict]] = {"base": [], "full": []}
    for _ in range(2):
        for variant in ("base", "full"):
            runs[variant].append(bench_step(variant, args.steps))
    step = {v: {"median_step_s": round(statistics.median(r["median_step_s"] for r in rs), 4),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in rs)} for v, rs in runs.items()}
    step["full_over_base"] = round(step["full"]["median_step_s"] / step["base"]["median_step_s"], 2)
    result["training_step"] = step
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
