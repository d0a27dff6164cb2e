"""The one place where images in the project's range, float [-1, 1], become what each backbone expects.

Every metric converts through these functions and a test pins each one, so no backbone ever sees a range it
silently misreads (torch-fidelity's Inception wraps anything that is not uint8 [0, 255]).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LPIPS_MIN_SIZE = 64  # AlexNet (stride-4 stem, two max-pools) leaves 32-px images with 1×1 conv3-5 maps


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> float32 [-1, 1], clamped: LPIPS, the identity encoders, the attribute classifier."""
    return x.float().clamp(-1, 1)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) [-1, 1] -> float32 [0, 1]: SSIM (its luminance term needs the conventional range)."""
    return (to_signed(x) + 1) / 2


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) [-1, 1] -> uint8 [0, 255], rounded as an 8-bit PNG would store it: Inception (IS, FID)."""
    return (to_unit(x) * 255).round().to(torch.uint8)


def to_lpips(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) [-1, 1] -> float32 [-1, 1] with the short side at least LPIPS_MIN_SIZE (bilinear upsampling,
    aspect kept): AlexNet-LPIPS on smaller images would compare 1×1 (or empty) deep feature maps."""
    x = to_signed(x)
    short = min(x.shape[-2:])
    if short >= LPIPS_MIN_SIZE:
        return x
    scale = LPIPS_MIN_SIZE / short
    size = (round(x.shape[-2] * scale), round(x.shape[-1] * scale))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False).clamp(-1, 1)
