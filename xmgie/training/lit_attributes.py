"""The attribute-classifier stage (AA, docs/evaluation.md): a multi-label classifier trained with binary
cross-entropy on the target images of a dataset and their attribute vectors, scored on the held-out test split
with the same definition AA uses (per-attribute accuracy), so a result's AA can be read against the classifier's
own ceiling."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from xmgie.errors import UserError
from xmgie.metrics.functional import attribute_agreement
from xmgie.models.classifier import build_attribute_classifier, save_attribute_classifier
from xmgie.training.stage_trainer import fit_stage, stage_datamodule


class AttributeModule(L.LightningModule):
    def __init__(self, num_attributes: int, arch: str = "cnn", lr: float = 2e-3):
        super().__init__()
        self.save_hyperparameters()
        self.net = build_attribute_classifier(arch, num_attributes)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if "target" not in batch:
            return None
        loss = F.binary_cross_entropy_with_logits(self.net(batch["target"]), batch["attributes"])
        self.log("train/attr_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=1e-4)


@torch.no_grad()
def attribute_accuracy(net: torch.nn.Module, loader) -> dict[str, float]:
    """Per-attribute accuracy (AA's definition), exact-match rate, and the accuracy of always answering
    "absent" (what per-attribute accuracy gives for free on sparse attributes) on a loader's target images."""
    agree = total = exact = images = absent = 0
    for batch in loader:
        if "target" not in batch:
            continue
        hits = attribute_agreement(net(batch["target"]), batch["attributes"])  # (B, A)
        agree, total = agree + int(hits.sum()), total + hits.numel()
        exact, images = exact + int(hits.all(1).sum()), images + hits.shape[0]
        absent += int((batch["attributes"] == 0).sum())
    return {"test_accuracy": round(agree / max(total, 1), 4), "test_exact_match": round(exact / max(images, 1), 4),
            "test_always_absent_accuracy": round(absent / max(total, 1), 4), "test_images": images}


def train_attribute_classifier(dataset: str, out: str | Path, steps: int = 1000, batch_size: int = 64,
                               arch: str = "cnn", lr: float = 2e-3, resolution: int | None = None,
                               seed: int = 0, root: str | None = None) -> dict[str, Any]:
    """Train on `dataset`'s train split, measure held-out accuracy on its test split, save `out` and a .json."""
    dm = stage_datamodule(dataset, batch_size, resolution, seed, root)
    num = dm.num_attributes
    if num <= 0:
        raise UserError(f"dataset {dataset!r} has no attribute labels to train an attribute classifier on")
    module = AttributeModule(num, arch, lr)
    fit_stage(module, dm, steps)
    net = module.net.cpu().eval()
    result = {"dataset": dataset, "resolution": dm.resolution, "attributes": num, "steps": steps,
              "seed": seed, **attribute_accuracy(net, dm.loader("test", shuffle=False))}
    result["written_to"] = str(save_attribute_classifier(net, out, arch, num, **result))
    Path(out).with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    return result
