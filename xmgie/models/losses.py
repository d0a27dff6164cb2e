"""Losses of the generator and discriminator (DESIGN §4; paper Eq. 7–9). Pure functions of tensors."""
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
