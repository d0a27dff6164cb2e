"""The identity-encoder stage (IE, §3.5): train the small E_id CNN on a dataset's identity labels, then freeze it.

Loss: "softmax" (a linear classifier on the features; the default: it starts learning the `shapes` textures
within ~200 steps) or "arcface" (additive angular margin on the L2-normalised embeddings, cos(θ_y + m) at scale s,
which clusters each identity on the sphere as Eq. 16 assumes, but starts later from scratch).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from xmgie.errors import UserError
from xmgie.modules.identity import SmallIdentityCNN, save_identity_encoder
from xmgie.training.stage_trainer import fit_stage, stage_datamodule

LOSSES = ("softmax", "arcface")


def arcface_logits(embeddings: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor | None, scale: float = 16.0,
                   margin: float = 0.2) -> torch.Tensor:
    """(B, D) normalised embeddings, (N, D) class weights, (B,) labels -> (B, N) logits s·cos θ, with
    cos(θ_y + m) for each sample's own class (no margin when labels is None: inference)."""
    cos = embeddings @ F.normalize(weight, dim=-1).T                          # (B, N)
    if labels is None or margin == 0:
        return scale * cos
    theta = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))
    own = F.one_hot(labels, cos.shape[1]).bool()
    return scale * torch.where(own, torch.cos(theta + margin), cos)


class IdentityModule(L.LightningModule):
    """SmallIdentityCNN + class weights; batches are EditSample dicts (source and target share an identity)."""

    def __init__(self, num_identities: int, dim: int = 64, lr: float = 2e-3, loss: str = "softmax",
                 margin: float = 0.2):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.save_hyperparameters()
        self.encoder = SmallIdentityCNN(dim)
        self.classes = nn.Parameter(torch.randn(num_identities, dim) / math.sqrt(dim))  # (N, D)
        self.bias = nn.Parameter(torch.zeros(num_identities))

    def logits(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) -> (B, N) class logits (margin applied to `labels` for arcface in training)."""
        if self.hparams.loss == "softmax":
            return self.encoder.features(images) @ self.classes.T + self.bias
        return arcface_logits(self.encoder.embed(images), self.classes, labels, margin=self.hparams.margin)

    @staticmethod
    def labelled(batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Source and target images with a known identity -> (N, 3, H, W), (N,)."""
        keep = batch["identity"] >= 0
        images = torch.cat([batch["source"][keep], batch["target"][keep]])
        return images, batch["identity"][keep].repeat(2)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if "source" not in batch:
            return None
        images, labels = self.labelled(batch)
        if not len(labels):
            return None
        loss = F.cross_entropy(self.logits(images, labels), labels)
        self.log("train/id_loss", loss, prog_bar=True)
        return loss

    @torch.no_grad()
    def predict_identity(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits(images).argmax(-1)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def nearest_neighbour_accuracy(embeddings: torch.Tensor, identities: torch.Tensor) -> float | None:
    """Leave-one-out 1-NN identification: how often an image's most cosine-similar other image shows the same
    identity, over images whose identity occurs at least twice. Works for identities never seen in training
    (identity-disjoint splits: CUB, Flowers, CelebA, DeepFashion). embeddings (N, D) unit rows; None if no pairs."""
    if len(identities) < 2:
        return None
    query = torch.bincount(identities)[identities] >= 2  # (N,) the identity occurs at least twice
    if not query.any():
        return None
    sim = embeddings @ embeddings.T
    sim.fill_diagonal_(float("-inf"))
    return float((identities[sim.argmax(-1)] == identities)[query].float().mean())


def train_identity_encoder(dataset: str, out: str | Path, steps: int = 1000, batch_size: int = 32,
                           resolution: int | None = None, dim: int = 64, lr: float = 2e-3, loss: str = "softmax",
                           seed: int = 0, root: str | None = None) -> dict[str, Any]:
    """Train E_id on `dataset`'s train split and save it. On the test split: identification accuracy over the
    images whose identity the classifier head saw in training, and 1-NN accuracy of the embeddings (which also
    holds for identity-disjoint splits)."""
    dm = stage_datamodule(dataset, batch_size, resolution, seed, root)
    num = getattr(dm, "num_identities", 0)
    if num <= 0:
        raise UserError(f"dataset {dataset!r} has no identity labels to train an identity encoder on")
    module = IdentityModule(num, dim, lr, loss)
    fit_stage(module, dm, steps)
    module.eval()
    correct, seen_total, embeddings, labels = 0, 0, [], []
    seen_ids = dm.split_identities("train")
    with torch.no_grad():
        for batch in dm.loader("test", shuffle=False):
            if "source" not in batch:
                continue
            images, ids = IdentityModule.labelled(batch)
            seen = torch.ones_like(ids, dtype=torch.bool) if seen_ids is None else torch.isin(ids, seen_ids)
            predicted = module.predict_identity(images.to(module.device)).cpu()
            correct += int((predicted == ids)[seen].sum())
            seen_total += int(seen.sum())
            keep = batch["identity"] >= 0  # sources only: a caption dataset's target is the same image
            embeddings.append(module.encoder.embed(batch["source"][keep].to(module.device)).cpu())
            labels.append(batch["identity"][keep])
    nn_accuracy = nearest_neighbour_accuracy(torch.cat(embeddings), torch.cat(labels)) if labels else None
    result = {"dataset": dataset, "resolution": dm.resolution, "identities": num, "steps": steps,
              "test_images": seen_total, "test_accuracy": round(correct / seen_total, 4) if seen_total else None,
              "test_nn_accuracy": None if nn_accuracy is None else round(nn_accuracy, 4)}
    result["written_to"] = str(save_identity_encoder(module.encoder.cpu(), out, **result))
    Path(out).with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def train_missing_identity(module, dm) -> dict[str, Any] | None:
    """`xmgie fit --train_missing=true`: when the run turns IE on with the project E_id (encoder "cnn") and its
    weights file does not exist yet, train it first on the run's dataset (`xmgie identity train`'s defaults, the
    run's D_id). The stage's result, or None when nothing was missing."""
    ie = module.modules_cfg.ie
    if not ie.enabled or ie.encoder != "cnn" or ie.weights is None or Path(ie.weights).exists():
        return None
    print(f"training the identity encoder first: {ie.weights}", file=sys.stderr)
    return train_identity_encoder(dm.name, ie.weights, dim=ie.dim, root=getattr(dm, "root", None))
