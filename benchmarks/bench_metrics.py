"""Throughput and memory of the evaluation suite on this machine; writes benchmarks/results/metrics_cpu.json.

    python benchmarks/bench_metrics.py [--images 1000] [--resolution 64] [--batch 50]

Feeds `--images` synthetic edits (with targets, masks, attributes) through the whole EditingMetrics suite
(IS + FID on Inception-v3 at 299 px, LPIPS, SSIM, PSNR, AA, IPS; random-weight backbones, which cost the same
as pretrained ones) and reports images/s, the time share of each metric, and resident memory after each tenth
of the images: a flat curve shows that the suite streams (its state is a few sums, not the images).
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def rss_mb() -> float:
    """Current resident set size (Linux /proc), MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    from xmgie.metrics.networks import MetricNetwork, seeded
    from xmgie.metrics.metrics import EditingMetrics
    from xmgie.models.classifier import build_attribute_classifier
    from xmgie.modules.identity import SmallIdentityCNN

    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "metrics_cpu.json"))
    args = p.parse_args()

    record = MetricNetwork("bench", True, None, "random")
    with seeded(0):
        suite = EditingMetrics("targets", attribute_classifier=(build_attribute_classifier("cnn", 13).eval(), record),
                               identity_encoder=(SmallIdentityCNN(64).eval(), record))
    seconds = {name: 0.0 for name in suite.metrics}
    for name, metric in suite.metrics.items():  # time each metric's update inside the suite's own loop
        def timed(*a, _update=metric.update, _name=name, **k):
            t = time.perf_counter()
            _update(*a, **k)
            seconds[_name] += time.perf_counter() - t
        metric.update = timed

    g = torch.Generator().manual_seed(0)
    res, B = args.resolution, args.batch
    rss = [{"images": 0, "rss_mb": round(rss_mb(), 1)}]
    start = time.perf_counter()
    done = 0
    while done < args.images:
        b = min(B, args.images - done)
        target = torch.rand(b, 3, res, res, generator=g) * 2 - 1
        batch = {"source": (target + 0.3 * torch.randn(b, 3, res, res, generator=g)).clamp(-1, 1), "target": target,
                 "mask": (torch.rand(b, 1, res, res, generator=g) > 0.5).float(),
                 "attributes": (torch.rand(b, 13, generator=g) > 0.7).float(),
                 "index": torch.arange(done, done + b)}
        edit = (target + 0.1 * torch.randn(b, 3, res, res, generator=g)).clamp(-1, 1)
        suite.update(edit, batch)
        done += b
        if done % max(args.images // 10, 1) < b:
            rss.append({"images": done, "rss_mb": round(rss_mb(), 1)})
    t_update = time.perf_counter() - start
    t = time.perf_counter()
    values = suite.compute()
    t_compute = time.perf_counter() - t
    total = t_update + t_compute
    result = {
        "images": args.images, "resolution": res, "batch": B, "threads": torch.get_num_threads(),
        "seconds": round(total, 1), "images_per_s": round(args.images / total, 2),
        "update_seconds_by_metric": {k: round(v, 1) for k, v in seconds.items()},
        "compute_seconds": round(t_compute, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_curve": rss, "n_images": values["n_images"],
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
