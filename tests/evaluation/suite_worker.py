"""Computes the evaluation suite on a fixed set of 8 edits, alone or as one of two gloo ranks (test_ddp_suite)."""
import json
import os
import sys

import torch
import torch.distributed as dist

from xmgie.metrics.metrics import EditingMetrics
from xmgie.metrics.networks import MetricNetwork, seeded
from xmgie.models.classifier import build_attribute_classifier
from xmgie.modules.identity import SmallIdentityCNN


def fixed_batch() -> tuple[torch.Tensor, dict]:
    g = torch.Generator().manual_seed(0)
    source = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1
    target = (source + 0.3 * torch.randn(8, 3, 32, 32, generator=g)).clamp(-1, 1)
    edit = (target + 0.2 * torch.randn(8, 3, 32, 32, generator=g)).clamp(-1, 1)
    mask = (torch.rand(8, 1, 32, 32, generator=g) > 0.5).float()
    batch = {"source": source, "target": target, "mask": mask, "index": torch.arange(8),
             "attributes": (torch.rand(8, 5, generator=g) > 0.5).float()}
    return edit, batch


def suite() -> EditingMetrics:
    with seeded(1):
        classifier = build_attribute_classifier("cnn", 5).eval()
        encoder = SmallIdentityCNN(16).eval()
    record = MetricNetwork("test", True, None, "seeded")
    return EditingMetrics("targets", splits=2, attribute_classifier=(classifier, record),
                          identity_encoder=(encoder, record))


def main(out: str, rank: int, world: int) -> None:
    if world > 1:
        dist.init_process_group("gloo", rank=rank, world_size=world)
    edit, batch = fixed_batch()
    mine = slice(rank * 8 // world, (rank + 1) * 8 // world)
    metrics = suite()
    half = {k: v[mine] for k, v in batch.items()}
    for i in range(0, half["index"].shape[0], 2):  # two images per update
        metrics.update(edit[mine][i:i + 2], {k: v[i:i + 2] for k, v in half.items()})
    values = metrics.compute()
    if rank == 0:
        with open(out, "w") as f:
            json.dump(values, f)
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
