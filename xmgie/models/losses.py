"""Losses of the generator and discriminator (docs/model.md; paper Eq. 7–9). Pure functions of tensors."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def reconstruction_loss(x_edit: torch.Tensor, x_gt: torch.Tensor) -> torch.Tensor:
    """Eq. 7: mean |X_edit - X_gt|_1 over all pixels; (B, 3, H, W) each -> scalar."""
    return (x_edit - x_gt).abs().mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 8 maximised by D, as a loss: -log D(X_gt) - log(1 - D(X_edit)), D = sigmoid(logits)."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 8 for G in its non-saturating form: -log D(X_edit) (instead of log(1 - D), which vanishes early)."""
    return F.softplus(-fake_logits).mean()


def diffusion_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The denoising term: MSE between the U-Net's prediction and its target (ε, v or x0)."""
    return F.mse_loss(prediction, target)


def mask_balanced_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE averaged inside and outside the edit mask separately, then the two halves averaged per sample, so a
    small edit weighs as much as the (easily copied) rest of the image.

    prediction/target (B, C, H, W); mask (B, 1, H, W) in {0, 1}. A sample whose mask is all ones (or all
    zeros) uses its one non-empty region. Returns a scalar.
    """
    se = (prediction - target).pow(2).mean(1, keepdim=True).flatten(1)  # (B, HW)
    m = mask.flatten(1).to(se.dtype)                                    # (B, HW)
    n_in, n_out = m.sum(1), (1 - m).sum(1)
    inside = (se * m).sum(1) / n_in.clamp(min=1)
    outside = (se * (1 - m)).sum(1) / n_out.clamp(min=1)
    halves = (n_in > 0).to(se.dtype) + (n_out > 0).to(se.dtype)
    return ((inside + outside) / halves).mean()


def lowest_noise_rows(t: torch.Tensor, k: int) -> torch.Tensor | None:
    """(B,) timesteps -> (k,) int64 indices of the k rows with the lowest t, or None (every row) when k is 0 or
    at least B. The count is fixed, so the shapes after it do not depend on the draw."""
    if k == 0 or k >= t.shape[0]:
        return None
    return torch.topk(t, k, largest=False).indices
