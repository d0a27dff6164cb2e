"""Wall time of `xmgie edit` as a user sees it: a fresh process per call, imports included.

    python benchmarks/edit_startup.py --ckpt runs/shapes/default/checkpoints/last.ckpt [--repeats 5]

Measured side by side, round-robin (each repeat runs every command once, so load on the machine hits them alike):
1. `import torch` alone (the floor of any PyTorch command);
2. the editing path's imports (`xmgie.inference`, `xmgie.cli`);
3. what the editing path no longer imports, alone: open_clip's package (the text tower and tokenizer are the
   package's own) and diffusers' U-Net module (the U-Net, schedule and DDIM are the package's own);
4. `xmgie edit` on one 128-px photo, and on 16 photos in one call.
Writes medians and ranges to benchmarks/results/edit_startup.json.
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

REPO = Path(__file__).resolve().parents[1]


def commands(ckpt: str, folder: Path) -> dict[str, list[str]]:
    from PIL import Image

    photos = []
    for i in range(16):
        path = folder / f"photo{i:02d}.png"
        Image.new("RGB", (128, 128), (40 + 10 * i, 120, 200)).save(path)
        photos.append(str(path))
    py = [sys.executable, "-c"]
    edit = [sys.executable, "-m", "xmgie.cli", "edit", "--ckpt", ckpt, "--prompt", "make the circle red",
            "--mask", "anywhere"]
    return {
        "import torch": [*py, "import torch"],
        "editing imports": [*py, "import xmgie.cli, xmgie.inference"],
        "import open_clip": [*py, "import open_clip"],
        "import diffusers' U-Net": [*py, "from diffusers import UNet2DConditionModel"],
        "xmgie edit, 1 photo": [*edit, "--image", photos[0], "--out", str(folder / "out.png")],
        "xmgie edit, 16 photos": [*edit, "--image", *photos, "--out", str(folder / "out")],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/edit_startup.json"))
    args = ap.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        cmds = commands(args.ckpt, Path(tmp))
        times: dict[str, list[float]] = {name: [] for name in cmds}
        for _ in range(args.repeats):
            for name, cmd in cmds.items():
                start = time.perf_counter()
                subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True)
                times[name].append(time.perf_counter() - start)
    result = {"ckpt": args.ckpt, "repeats": args.repeats, "cpus": os.cpu_count(),
              "seconds": {name: {"median": statistics.median(t), "min": min(t), "max": max(t)}
                          for name, t in times.items()}}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for name, t in result["seconds"].items():
        print(f"{name:<24} {t['median']:.2f} s  ({t['min']:.2f}–{t['max']:.2f})")


if __name__ == "__main__":
    main()
