"""The metrics' maths as pure functions of tensors (the Metric classes in metrics.py only accumulate).

Images are (B, 3, H, W) in [-1, 1]; statistics are float64 so that sums over thousands of images stay exact.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import structural_similarity_index_measure

from xmgie.metrics.convert import to_unit

DATA_RANGE = 2.0  # images live in [-1, 1]
MIN_MSE = 1e-12  # an MSE below it (float32 round-off) is an exact copy: PSNR_EXACT dB
PSNR_EXACT = 10 * math.log10(DATA_RANGE**2 / MIN_MSE)


def psnr_per_image(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None,
                   data_range: float = DATA_RANGE) -> torch.Tensor:
    """(B, C, H, W) twice -> (B,) PSNR in dB = 10 log10(range² / MSE), the MSE taken over the pixels where
    `weight` (B, 1, H, W) in {0, 1} is 1 (all pixels when None). An image with no such pixel gets NaN; an exact
    copy gets PSNR_EXACT (the MSE clamped at MIN_MSE), the table's ∞."""
    se = (x.float() - y.float()).pow(2)
    if weight is None:
        mse = se.flatten(1).mean(1)
    else:
        w = weight.float().expand_as(se)
        n = w.flatten(1).sum(1)
        mse = (se * w).flatten(1).sum(1) / n
        mse = torch.where(n > 0, mse, torch.full_like(mse, float("nan")))
    return 10 * torch.log10(data_range**2 / mse.clamp(min=MIN_MSE))


def mean_abs_change(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) twice and weight (B, 1, H, W) in {0, 1} -> (B,) mean |x − y| over channels and the weighted
    pixels; NaN for an image with no such pixel."""
    w = weight.float().expand_as(x)
    n = w.flatten(1).sum(1)
    total = ((x.float() - y.float()).abs() * w).flatten(1).sum(1)
    return torch.where(n > 0, total / n.clamp(min=1), torch.full_like(n, float("nan")))


def boundary_band(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, 1, H, W) {0, 1} mask -> (B, 1, H, W) {0, 1}: the pixels within `radius` (chessboard distance) of the
    mask's edge on either side, i.e. dilation minus erosion by a (2r+1)² square (the image border is not an edge)."""
    m = mask.float()
    k = 2 * radius + 1
    dilated = F.max_pool2d(m, k, stride=1, padding=radius)
    eroded = -F.max_pool2d(F.pad(-m, (radius,) * 4, value=-1.0), k, stride=1)
    return dilated - eroded


def grow_mask(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """(B, 1, H, W) {0, 1} mask grown by `pixels` (a mask painted generously) or, for pixels < 0, shrunk by
    -pixels (one painted tightly): binary dilation / erosion by a Euclidean disk of that radius (offsets with
    dy² + dx² ≤ r²). Outside the image counts as outside the mask when growing and as inside when shrinking, so the
    image border never erodes a mask that touches it."""
    if pixels == 0:
        return mask.clone()
    r = abs(pixels)
    offsets = torch.arange(-r, r + 1, dtype=torch.float32, device=mask.device)
    disk = ((offsets[:, None] ** 2 + offsets[None, :] ** 2) <= r * r).float()[None, None]  # (1, 1, 2r+1, 2r+1)
    m = mask.float() if pixels > 0 else 1 - mask.float()
    grown = (F.conv2d(F.pad(m, (r,) * 4), disk) > 0.5).to(mask.dtype)                      # (B, 1, H, W)
    return grown if pixels > 0 else 1 - grown


def seam_score(edit: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """Boundary seam: (B,) mean over the mask-edge band of |∇(edit − target)|, the gradient taken by forward
    differences ((H−1)×(W−1) grid), its magnitude sqrt(∂x² + ∂y²) averaged over channels. A sharp seam that
    the target does not have raises it; NaN for an image whose mask has no edge. edit/target (B, C, H, W),
    mask (B, 1, H, W)."""
    d = edit.float() - target.float()
    gx = d[..., :-1, 1:] - d[..., :-1, :-1]                                      # (B, C, H-1, W-1)
    gy = d[..., 1:, :-1] - d[..., :-1, :-1]
    magnitude = (gx.square() + gy.square()).sqrt().mean(1, keepdim=True)        # (B, 1, H-1, W-1)
    band = boundary_band(mask, radius)[..., :-1, :-1]
    n = band.flatten(1).sum(1)
    total = (magnitude * band).flatten(1).sum(1)
    return torch.where(n > 0, total / n.clamp(min=1), torch.full_like(n, float("nan")))


def mask_iou(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) {0, 1} masks -> (B,) intersection over union (1 where both are empty), on the CPU."""
    inter = (pred * true).flatten(1).sum(1)
    union = ((pred + true) > 0).flatten(1).sum(1)
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter)).float().cpu()


def mask_scores(pred: torch.Tensor, true: torch.Tensor) -> dict[str, float]:
    """(B, 1, H, W) {0, 1} predicted and true masks -> means over images of IoU, precision (the share of the
    prediction that is true), recall (the share of the truth predicted) and the share of the image predicted."""
    inter = (pred * true).flatten(1).sum(1)
    return {"iou": float(mask_iou(pred, true).mean()),
            "precision": float((inter / pred.flatten(1).sum(1).clamp(min=1)).mean()),
            "recall": float((inter / true.flatten(1).sum(1).clamp(min=1)).mean()),
            "share": float(pred.float().mean())}


def ssim_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) twice in [-1, 1] -> (B,) SSIM (Gaussian window σ = 1.5, 11 px).

    SSIM is not shift-invariant (its luminance term uses absolute means), so images are mapped to the
    conventional [0, 1] with data_range 1 rather than scored in [-1, 1]."""
    return structural_similarity_index_measure(to_unit(x), to_unit(y), data_range=1.0, reduction="none")


def attribute_agreement(logits: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
    """AA's unit: (B, A) logits and (B, A) {0, 1} target attributes -> (B, A) bool, True where the classifier's
    decision (present when logit > 0) agrees with the target."""
    return (logits > 0) == attributes.bool()


def mean_and_cov(total: torch.Tensor, outer: torch.Tensor, n: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
    """Streamed sums -> mean (D,) and unbiased covariance (D, D): Σx (D,), Σxxᵀ (D, D), count n ≥ 2."""
    n = float(n)
    mu = total / n
    return mu, (outer - n * torch.outer(mu, mu)) / (n - 1)


def _sqrt_psd(a: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric positive semi-definite (D, D) matrix."""
    vals, vecs = torch.linalg.eigh((a + a.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> torch.Tensor:
    """d² = |μ1 − μ2|² + tr Σ1 + tr Σ2 − 2 tr (Σ1 Σ2)^½ (Heusel et al.), in float64.

    tr (Σ1 Σ2)^½ is computed as Σ √λ of the symmetric PSD matrix Σ1^½ Σ2 Σ1^½, which has the same eigenvalues
    as Σ1 Σ2 but no complex round-off."""
    mu1, cov1, mu2, cov2 = (t.double() for t in (mu1, cov1, mu2, cov2))
    s1 = _sqrt_psd(cov1)
    middle = torch.linalg.eigvalsh(s1 @ cov2 @ s1).clamp(min=0).sqrt().sum()
    return (mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * middle


def inception_score(prob_sum: torch.Tensor, plogp_sum: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IS = exp E_x KL(p(y|x) ‖ p(y)) per split, from streamed sums (Salimans et al.).

    Args: prob_sum (S, C) Σ_x p(y|x) per split; plogp_sum (S,) Σ_x Σ_y p log p per split; n (S,) images per split.
    Since KL(p(y|x) ‖ p(y)) = Σ_y p log p − Σ_y p log p(y) and p(y) = mean_x p(y|x), the split mean is
    mean_x Σ p log p − Σ_y p(y) log p(y). Returns the mean over non-empty splits and their (population) std.
    """
    keep = n > 0
    prob_sum, plogp_sum, n = prob_sum[keep].double(), plogp_sum[keep].double(), n[keep].double()
    marginal = prob_sum / n[:, None]                                           # (S, C) p(y)
    marginal_entropy_term = torch.xlogy(marginal, marginal).sum(1)              # (S,) Σ p(y) log p(y)
    scores = torch.exp(plogp_sum / n - marginal_entropy_term)                   # (S,)
    return scores.mean(), scores.std(unbiased=False) if len(scores) > 1 else torch.zeros((), dtype=scores.dtype)
