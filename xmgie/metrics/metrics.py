"""The evaluation suite (docs/evaluation.md) as torchmetrics state: every metric streams sums (nothing keeps every
image), and every state has a sum reduction, so DDP ranks sync exactly.

    EditQuality       PSNR / SSIM vs the reference, and on shapes-like data the copy-the-source baseline,
                      PSNR inside / outside the edit mask, edit leakage and the boundary seam score
    InceptionMetrics  IS of the edits and FID of edits vs real images (one Inception pass per image)
    MeanLPIPS         LPIPS (AlexNet) vs the reference
    AttributeAccuracy AA: multi-label accuracy of the project's attribute classifier on the edits
    IdentityScore     IPS: cosine of identity embeddings of edit and reference
    EditingMetrics    the collection, built from the weights folder, with each metric's backbone record

Inputs are (B, 3, H, W) float in [-1, 1]; conversions happen in xmgie.metrics.convert only.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchmetrics import Metric

from xmgie.metrics import networks
from xmgie.metrics.convert import to_lpips, to_signed, to_uint8
from xmgie.metrics.functional import (attribute_agreement, frechet_distance, inception_score, mean_abs_change,
                                      mean_and_cov, psnr_per_image, seam_score, ssim_per_image)
from xmgie.metrics.networks import MetricNetwork

# Direction of every reported metric: the table writer takes its arrows and bold from here.
HIGHER_IS_BETTER: dict[str, bool] = {
    "is": True, "fid": False, "lpips": False, "ssim": True, "psnr": True, "aa": True, "ips": True,
    "psnr_gain": True, "psnr_outside_mask": True, "psnr_inside_mask": True, "psnr_source": True,
    "ips_source": True, "lpips_outside_mask": False, "leakage": False, "seam": False,
    "psnr_kept_in_mask": True, "psnr_missed_by_mask": True, "ips_kept": True,
}
PROTOCOLS = ("targets", "captions")


class _SumMetric(Metric):
    """Base: named (sum, count) pairs in float64, reduced by sum across ranks; compute() gives the means of
    pairs that saw at least one value (others are left out, never reported as 0)."""

    full_state_update = False
    KEYS: tuple[str, ...] = ()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for key in self.KEYS:
            self.add_state(f"{key}_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{key}_n", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _add(self, key: str, values: torch.Tensor) -> None:
        """Accumulate the non-NaN entries of `values` (any shape)."""
        ok = ~torch.isnan(values)
        setattr(self, f"{key}_sum", getattr(self, f"{key}_sum") + values[ok].double().sum())
        setattr(self, f"{key}_n", getattr(self, f"{key}_n") + ok.sum())

    def compute(self) -> dict[str, torch.Tensor]:
        return {key: getattr(self, f"{key}_sum") / getattr(self, f"{key}_n")
                for key in self.KEYS if getattr(self, f"{key}_n") > 0}


class EditQuality(_SumMetric):
    """Means over images of psnr and ssim (edit vs reference); with `source`, also psnr_source (source vs
    reference: the do-nothing baseline) and psnr_gain = psnr − psnr_source; with `mask`, psnr_outside_mask /
    psnr_inside_mask and seam (the boundary seam score, `seam_score`); with both, leakage = mean |edit − source|
    outside the mask / the same inside (the ratio of the two means over images: what CAM restricts). With the mask
    the editor was `given` (a painted, dilated, eroded or predicted one) besides the dataset's: psnr_kept_in_mask
    over the given mask's pixels the edit should have left alone (given, not the dataset's: what CAM and PFB's
    feature blending are for) and psnr_missed_by_mask over the dataset mask's pixels the given one left out (where a
    paste cuts the edit). Images whose mask has no inside (or outside, or edge, or such) pixel are left out of that
    mean only."""

    higher_is_better = True
    KEYS = ("psnr", "ssim", "psnr_source", "psnr_outside_mask", "psnr_inside_mask", "change_outside",
            "change_inside", "seam", "psnr_kept_in_mask", "psnr_missed_by_mask")
    SEAM_BAND = 1 / 16  # band half-width across the mask's edge, as a share of the image's shorter side (2 px at 32)

    def update(self, edit: torch.Tensor, reference: torch.Tensor, source: torch.Tensor | None = None,
               mask: torch.Tensor | None = None, given: torch.Tensor | None = None) -> None:
        """edit/reference/source (B, 3, H, W) in [-1, 1]; mask, given (B, 1, H, W) in {0, 1}."""
        self._add("psnr", psnr_per_image(edit, reference))
        self._add("ssim", ssim_per_image(edit, reference))
        if source is not None:
            self._add("psnr_source", psnr_per_image(source, reference))
        if mask is not None:
            self._add("psnr_outside_mask", psnr_per_image(edit, reference, 1 - mask))
            self._add("psnr_inside_mask", psnr_per_image(edit, reference, mask))
            radius = max(1, round(self.SEAM_BAND * min(edit.shape[-2:])))
            self._add("seam", seam_score(edit, reference, mask, radius))
        if mask is not None and source is not None:
            self._add("change_outside", mean_abs_change(edit, source, 1 - mask))
            self._add("change_inside", mean_abs_change(edit, source, mask))
        if mask is not None and given is not None:
            self._add("psnr_kept_in_mask", psnr_per_image(edit, reference, given * (1 - mask)))
            self._add("psnr_missed_by_mask", psnr_per_image(edit, reference, mask * (1 - given)))

    def compute(self) -> dict[str, torch.Tensor]:
        out = super().compute()
        if "psnr_source" in out:
            out["psnr_gain"] = out["psnr"] - out["psnr_source"]
        if "change_outside" in out and "change_inside" in out:
            out["leakage"] = out["change_outside"] / out["change_inside"].clamp(min=1e-12)
        out["n_images"] = self.psnr_n.clone()
        return out


class InceptionMetrics(Metric):
    """IS of the edited images and FID between edited and real images, streamed.

    States: Σf, Σffᵀ, n of the 2048-d pool features of each set (float64) and, per IS split, Σ p(y|x),
    Σ Σ_y p log p and n. An image's IS split is its dataset index mod `splits`, so the result does not depend
    on batch order or on how DDP shards the data.
    """

    higher_is_better = None  # IS up, FID down: see HIGHER_IS_BETTER
    full_state_update = False

    def __init__(self, net: nn.Module, splits: int = 10, dim: int = 2048, classes: int = 1008, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        self.splits = splits
        for side in ("fake", "real"):
            self.add_state(f"{side}_sum", torch.zeros(dim, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(dim, dim, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_n", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("prob_sum", torch.zeros(splits, classes, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("plogp_sum", torch.zeros(splits, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("split_n", torch.zeros(splits, dtype=torch.long), dist_reduce_fx="sum")

    def _accumulate(self, side: str, features: torch.Tensor) -> None:
        f = features.double()                                                   # (B, D)
        setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + f.sum(0))
        setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + f.T @ f)
        setattr(self, f"{side}_n", getattr(self, f"{side}_n") + f.shape[0])

    def update_features(self, pool: torch.Tensor, logits: torch.Tensor | None, index: torch.Tensor,
                        real: bool = False) -> None:
        """pool (B, 2048), logits (B, 1008) of fake images (None for real ones), index (B,) dataset indices."""
        if real:
            self._accumulate("real", pool)
            return
        self._accumulate("fake", pool)
        p = logits.double().softmax(-1)                                         # (B, C)
        split = index.long() % self.splits                                      # (B,)
        self.prob_sum.index_add_(0, split, p)
        self.plogp_sum.index_add_(0, split, torch.xlogy(p, p).sum(-1))
        self.split_n.index_add_(0, split, torch.ones_like(split))

    def update(self, images: torch.Tensor, index: torch.Tensor, real: bool = False) -> None:
        """images (B, 3, H, W) in [-1, 1]; index (B,) dataset indices; real=True for the reference set."""
        pool, logits = self.net(to_uint8(images))
        self.update_features(pool, None if real else logits, index, real)

    def compute(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if self.fake_n > 0:
            out["is"], out["is_std"] = inception_score(self.prob_sum, self.plogp_sum, self.split_n)
        if self.fake_n > 1 and self.real_n > 1:
            fake = mean_and_cov(self.fake_sum, self.fake_outer, self.fake_n)
            real = mean_and_cov(self.real_sum, self.real_outer, self.real_n)
            out["fid"] = frechet_distance(*fake, *real)
        return out


class MeanLPIPS(_SumMetric):
    """Mean LPIPS (AlexNet + the package's linear heads) of edit vs reference; with a mask, also
    lpips_outside_mask: LPIPS of the edit with its inside replaced by the reference's, so only what changed outside
    the mask counts (images with an all-ones mask are left out)."""

    higher_is_better = False
    KEYS = ("lpips", "lpips_outside_mask")

    def __init__(self, net: nn.Module, **kwargs):
        super().__init__(**kwargs)
        self.net = net

    def update(self, edit: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """(B, 3, H, W) twice in [-1, 1]; mask (B, 1, H, W) in {0, 1}."""
        self._add("lpips", self.net(to_lpips(edit), to_lpips(reference)).flatten())
        if mask is not None:
            outside = torch.where(mask.bool(), reference, edit)
            score = self.net(to_lpips(outside), to_lpips(reference)).flatten()
            has_outside = (mask < 0.5).flatten(1).any(1)
            self._add("lpips_outside_mask", torch.where(has_outside, score, torch.full_like(score, float("nan"))))


class AttributeAccuracy(_SumMetric):
    """AA: the fraction of (image, attribute) pairs where the classifier's decision on the edit (logit > 0)
    agrees with the target attributes; images without attribute labels (A = 0) are skipped."""

    higher_is_better = True
    KEYS = ("aa",)

    def __init__(self, classifier: nn.Module, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier

    def update(self, edit: torch.Tensor, attributes: torch.Tensor) -> None:
        """edit (B, 3, H, W) in [-1, 1]; attributes (B, A) in {0, 1}."""
        if attributes.numel() == 0:
            return
        self._add("aa", attribute_agreement(self.classifier(to_signed(edit)), attributes).double())


class IdentityScore(_SumMetric):
    """IPS: mean cosine of E_id(edit) and E_id(reference) (embeddings are L2-normalised by `embed`); with
    `source`, also ips_source = cosine of E_id(source) and E_id(reference), the do-nothing baseline; with `keeps`
    (B,) bool, ips_kept = IPS over the rows whose edit keeps the subject's identity (a recolour, a new background,
    a hat), where keeping it is the edit's job rather than resisting it."""

    higher_is_better = True
    KEYS = ("ips", "ips_source", "ips_kept")

    def __init__(self, encoder: nn.Module, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder

    def update(self, edit: torch.Tensor, reference: torch.Tensor, source: torch.Tensor | None = None,
               keeps: torch.Tensor | None = None) -> None:
        e_ref = self.encoder.embed(to_signed(reference))                      # (B, D)
        cosine = (self.encoder.embed(to_signed(edit)) * e_ref).sum(-1)        # (B,)
        self._add("ips", cosine)
        if keeps is not None:
            self._add("ips_kept", cosine[keeps.bool()])
        if source is not None:
            self._add("ips_source", (self.encoder.embed(to_signed(source)) * e_ref).sum(-1))


class EditingMetrics(nn.Module):
    """The whole suite for one evaluation protocol.

    protocol "targets" (shapes, instruction triplets): pixel metrics vs the ground-truth target, FID vs the
    real targets. "captions" (CUB, Flowers, …, edited with another image's caption): pixel metrics vs the
    source (faithfulness), FID vs the real test images.

    Args:
        inception / lpips: include IS+FID / LPIPS (their backbones come from the weights folder or are
            random and uncalibrated; `strict` makes a missing file an error).
        attribute_classifier: a trained classifier (nn.Module (B,3,H,W) -> (B, A) logits) and its record.
        identity_encoder: an IdentityEncoder and its record.
    """

    def __init__(self, protocol: str = "targets", inception: bool = True, lpips: bool = True, strict: bool = False,
                 seed: int = 0, splits: int = 10,
                 attribute_classifier: tuple[nn.Module, MetricNetwork] | None = None,
                 identity_encoder: tuple[nn.Module, MetricNetwork] | None = None):
        super().__init__()
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self.protocol = protocol
        self.metrics = nn.ModuleDict({"quality": EditQuality()})
        self.backbones: dict[str, MetricNetwork] = {}
        if inception:
            net, self.backbones["is"] = networks.inception(strict, seed)
            self.backbones["fid"] = self.backbones["is"]
            self.metrics["inception"] = InceptionMetrics(net, splits)
        if lpips:
            net, self.backbones["lpips"] = networks.alexnet_lpips(strict, seed)
            self.metrics["lpips"] = MeanLPIPS(net)
            if protocol == "targets":
                self.backbones["lpips_outside_mask"] = self.backbones["lpips"]
        if attribute_classifier is not None:
            self.metrics["aa"] = AttributeAccuracy(attribute_classifier[0])
            self.backbones["aa"] = attribute_classifier[1]
        if identity_encoder is not None:
            self.metrics["ips"] = IdentityScore(identity_encoder[0])
            self.backbones["ips"] = identity_encoder[1]

    @torch.no_grad()
    def update(self, edit: torch.Tensor, batch: dict[str, Any]) -> None:
        """edit (B, 3, H, W) in [-1, 1] for the batch's sources; batch as in data_modules.base (with `index`; with
        `given_mask`, the mask the editor was given where it differs from the dataset's)."""
        targets = self.protocol == "targets"
        reference = batch["target"] if targets else batch["source"]
        index = batch["index"]
        m = self.metrics
        m["quality"].update(edit, reference, batch["source"] if targets else None, batch["mask"] if targets else None,
                            batch.get("given_mask") if targets else None)
        if "inception" in m:
            m["inception"].update(edit, index)
            m["inception"].update(reference, index, real=True)
        if "lpips" in m:
            m["lpips"].update(edit, reference, batch["mask"] if targets else None)
        if "aa" in m:
            m["aa"].update(edit, batch["attributes"])
        if "ips" in m:
            # IPS compares with the ground truth where one exists, else with the source the edit started from.
            m["ips"].update(edit, reference, batch["source"] if targets else None,
                            batch.get("keeps_identity") if targets else None)

    def compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for metric in self.metrics.values():
            out |= {k: float(v) for k, v in metric.compute().items()}
        out["n_images"] = int(out["n_images"])
        return out

    def reset(self) -> None:
        for metric in self.metrics.values():
            metric.reset()

    def record(self, values: dict[str, float]) -> dict[str, Any]:
        """The part of a result file the suite knows: protocol, computed values (4 decimals), each metric's
        backbone, which of them are uncalibrated, image count."""
        return {"protocol": self.protocol,
                "metrics": {k: round(v, 4) if isinstance(v, float) else v for k, v in values.items()},
                "backbones": self.describe(), "uncalibrated": self.uncalibrated, "n_images": values["n_images"]}

    def describe(self) -> dict[str, dict]:
        """metric name -> its backbone record (what the table footnote prints)."""
        return {name: b.as_dict() for name, b in self.backbones.items()}

    @property
    def uncalibrated(self) -> list[str]:
        return sorted(name for name, b in self.backbones.items() if not b.calibrated)
