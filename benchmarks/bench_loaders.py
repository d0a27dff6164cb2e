"""Loader throughput of every file-backed dataset; writes benchmarks/results/loaders_cpu.json.

    python benchmarks/bench_loaders.py [--images 160] [--scale 4] [--resolution 64] [--workers 2] [--epochs 3]

Writes each dataset's fixture tree with images `scale` times the fixture size (scale 4: 320–560 px a side, about
CUB's and COCO's 500×375; CelebA-HQ 512², DeepFashion 300×440), then times (1) building the index from the
annotation files, (2) loading it from the cache, (3) samples/s of the training loader (decode, mask, crop, resize,
collate) with `--workers` workers and with none, over `--epochs` epochs after one warm-up epoch, and (4) with no
workers and every JPEG decoded at full size (no draft mode), side by side with (3).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def samples_per_second(dm, epochs: int) -> float:
    loader = dm.train_dataloader()
    for _ in loader:  # warm-up: workers start, files enter the page cache
        pass
    rates = []
    for _ in range(epochs):
        start, n = time.perf_counter(), 0
        for batch in loader:
            n += batch["source"].shape[0]
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    from data_modules import build_datamodule, images
    from data_modules.fixtures import WRITERS, write_fixture

    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=160)
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "loaders_cpu.json"))
    args = p.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XMGIE_CACHE"] = str(Path(tmp) / "cache")
        for name in WRITERS:
            root = write_fixture(name, Path(tmp) / name, n_images=args.images, scale=args.scale)

            def dm(workers: int):
                return build_datamodule(name, root=str(root), resolution=args.resolution, batch_size=args.batch,
                                        num_workers=workers)

            start = time.perf_counter()
            first = dm(args.workers)
            first.records()
            built = time.perf_counter() - start
            start = time.perf_counter()
            dm(args.workers).records()
            cached = time.perf_counter() - start
            parallel = samples_per_second(first, args.epochs)
            serial = samples_per_second(dm(0), args.epochs)
            images.DRAFT = False  # the same loader decoding every JPEG at full size
            full = samples_per_second(dm(0), args.epochs)
            images.DRAFT = True
            sample = first.dataset("train")[0]
            results[name] = {
                "train_images": len(first.dataset("train")), "index_build_s": round(built, 4),
                "index_cached_s": round(cached, 4), f"samples_per_s_{args.workers}_workers": round(parallel, 1),
                "samples_per_s_0_workers": round(serial, 1), "speedup": round(parallel / serial, 2),
                "samples_per_s_0_workers_full_decode": round(full, 1), "draft_speedup": round(serial / full, 2),
                "sample_shape": list(sample.source.shape),
            }
            print(name, results[name], flush=True)
    out = {"benchmark": "loaders", "args": vars(args), "machine": {"cpus": os.cpu_count(), "python":
           platform.python_version(), "platform": platform.platform()}, "results": results,
           "note": "medians over epochs; fixture images (a coloured object on a gradient) decode faster than photos"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
