"""How the four modules (PFB, CAM, IE, GB) plug into the generator: one small interface, no flags.

A plugin is an nn.Module (so its parameters train and checkpoint with the generator). The generator calls
`attach(unet)` once (install forward hooks or attention processors), `condition(cond)` before every U-Net
call, `extend_context(features, cond)` to add conditioning tokens, and `postprocess(x0, cond)` on the
generator's image-space output (X_edit).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class EditCondition:
    """What one U-Net call is conditioned on (all on the U-Net's device).

    source: (B, 3, H, W) in [-1, 1]; mask: (B, 1, H, W) in {0, 1}; tokens: (B, T) int64 instruction ids;
    text_dropped / image_dropped: (B,) bool, samples whose text / image condition is the null one.
    """

    source: torch.Tensor
    mask: torch.Tensor
    tokens: torch.Tensor
    text_dropped: torch.Tensor
    image_dropped: torch.Tensor


class EditPlugin(nn.Module):
    """Base class: every hook is the identity, so a plugin overrides only what it changes."""

    def attach(self, unet: nn.Module) -> None:
        """Install hooks / attention processors on `unet` (called once, on construction)."""

    def condition(self, cond: EditCondition) -> None:
        """Receive the condition of the U-Net call that follows."""

    def extend_context(self, features: torch.Tensor, cond: EditCondition) -> torch.Tensor:
        """(B, T, D) text features -> (B, T', D) features the cross-attention reads."""
        return features

    def postprocess(self, x0: torch.Tensor, cond: EditCondition) -> torch.Tensor:
        """(B, 3, H, W) predicted clean image -> X_edit."""
        return x0
