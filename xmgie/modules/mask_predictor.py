"""Automatic edit masks (§3.4: the mask is "provided by the user or automatically predicted"): where does the
instruction change the editor's prediction?

Relevance map of "Watch Your Steps" (Mirzaei et al. 2023), with DiffEdit's averaging over noise draws:

    x_t = sqrt(ᾱ_t) x_0(source) + sqrt(1 − ᾱ_t) ε,   t = 0.8·T by default
    R   = mean over draws of  Σ_channels | pred(x_t, X, I) − pred(x_t, X, ∅) |         (one batched U-Net call)
    R   ← min(R, Q3 + 1.5·IQR)  (outliers clipped),  R ← (R − min R) / (max R − min R)  (per image)
    M   = [ G_s ∗ R ≥ τ ]

For a fixed t every prediction type (ε, x_0, v) is an affine function of ε̂ with the same x_t, so the difference
of any of them is proportional to the ε̂ difference and the normalised map is the same. The U-Net is shown the
"edit anywhere" mask, as in training's mask dropout, and no module's mask (PFB, CAM) acts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from xmgie.modules.gaussian_blur import separable_gaussian


def relevance(pred_text: torch.Tensor, pred_null: torch.Tensor, draws: int = 1) -> torch.Tensor:
    """(draws·B, C, h, w) predictions with and without the instruction, draws outermost -> (B, 1, h, w)
    relevance: |difference| summed over channels, averaged over the noise draws."""
    diff = (pred_text.float() - pred_null.float()).abs().sum(dim=1, keepdim=True)      # (draws·B, 1, h, w)
    return diff.unflatten(0, (draws, -1)).mean(dim=0)


def clip_outliers(rel: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) -> same, each image's values above its Q3 + 1.5·IQR set to that bound (Tukey's fence). A fence
    at the image's minimum (a change confined to under a quarter of an otherwise unchanged image) would flatten the
    map: that image is left unclipped."""
    flat = rel.flatten(1)                                                              # (B, N)
    q1, q3 = torch.quantile(flat, torch.tensor([0.25, 0.75], device=rel.device, dtype=flat.dtype), dim=1)  # (B,)
    fence = q3 + 1.5 * (q3 - q1)
    fence = torch.where(fence > flat.amin(dim=1), fence, torch.full_like(fence, float("inf")))
    return torch.minimum(rel, fence[:, None, None, None])


def normalise(rel: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) -> same in [0, 1], per image; an image whose map is flat gets zeros (nothing to edit)."""
    lo = rel.amin(dim=(1, 2, 3), keepdim=True)
    span = rel.amax(dim=(1, 2, 3), keepdim=True) - lo
    return torch.where(span > 0, (rel - lo) / span.clamp(min=torch.finfo(rel.dtype).tiny), torch.zeros_like(rel))


def relevance_map(rel: torch.Tensor, size: tuple[int, int], smooth: float = 0.0) -> torch.Tensor:
    """Raw relevance (B, 1, h, w) -> the soft map (B, 1, H, W) in [0, 1]: bilinear upsampling to `size`,
    outliers clipped, normalised, then a Gaussian of σ = `smooth` pixels (0: none) and normalised again."""
    rel = F.interpolate(rel, size=size, mode="bilinear", align_corners=False) if rel.shape[-2:] != size else rel
    soft = normalise(clip_outliers(rel))
    if smooth > 0:
        radius = max(1, int(3 * smooth + 0.5))
        soft = normalise(separable_gaussian(soft, smooth, radius, radius))
    return soft


def threshold(soft: torch.Tensor, tau: float) -> torch.Tensor:
    """Soft map in [0, 1] -> {0, 1} float mask: 1 where soft ≥ τ."""
    return (soft >= tau).to(soft.dtype)


@dataclass
class MaskPredictorConfig:
    """timestep: the noise level as a fraction of T (Watch Your Steps: 0.8); draws: noise draws averaged
    (DiffEdit; 1 = Watch Your Steps); threshold: τ on the normalised map; smooth: σ in working-resolution pixels
    of the Gaussian applied to the map before thresholding (0: none); net: a learned predictor's file (`xmgie mask
    train`, xmgie/models/mask_net.py) that replaces the relevance map (τ then applies to its probabilities and
    the other settings do not)."""

    timestep: float = 0.8
    draws: int = 1
    threshold: float = 0.5
    smooth: float = 0.0
    net: str | None = None

    def __post_init__(self) -> None:
        if not 0 < self.timestep <= 1:
            raise ValueError(f"the mask's timestep must be in (0, 1], got {self.timestep}")
        if self.draws < 1:
            raise ValueError(f"the mask needs at least one noise draw, got {self.draws}")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"the mask's threshold must be in (0, 1], got {self.threshold}")
        if self.smooth < 0:
            raise ValueError(f"the mask's smoothing σ must be >= 0, got {self.smooth}")


class MaskPredictor:
    """Predicts edit masks with an editor's own U-Net: one batched call of 2·draws·B rows (the instruction and the
    null one on the same noised source), i.e. the cost of two plain DDIM steps when draws = 1."""

    needs_generator = True

    def __init__(self, cfg: MaskPredictorConfig | None = None):
        self.cfg = cfg or MaskPredictorConfig()

    @torch.no_grad()
    def soft(self, generator, source: torch.Tensor, instructions: Sequence[str], seed: int = 0) -> torch.Tensor:
        """source (B, 3, H, W) in [-1, 1], B instructions -> (B, 1, H, W) relevance in [0, 1] (before τ).

        Steps: 1. the condition with the instruction and with the null one, each repeated per draw, all shown the
        "anywhere" mask; 2. the source in the diffusion's space noised to t with per-draw ε (seeded per image,
        the same ε for both halves); 3. one U-Net call; 4. relevance, upsampled to the image, clipped and normalised.
        """
        B, n = source.shape[0], self.cfg.draws
        rows = 2 * n * B
        anywhere = torch.ones_like(source[:, :1])
        dropped = torch.arange(rows, device=source.device) >= n * B                      # [text × n; null × n]
        cond = generator.make_condition(source, anywhere, list(instructions) * (2 * n), text_dropped=dropped,
                                        copies=2 * n)                                      # 1.
        x0 = generator.reference_in_diffusion_space(cond)                                # (rows, C, h, w)
        # each image's draws come from `seed` alone, so its mask does not depend on the rest of the batch
        eps = torch.stack([torch.randn((n, *x0.shape[1:]), generator=torch.Generator().manual_seed(seed))
                           for _ in range(B)], dim=1).flatten(0, 1)                      # (n·B, C, h, w)
        eps = eps.to(x0.device, x0.dtype).repeat(2, 1, 1, 1)
        T = len(generator.alphas_cumprod)
        t = torch.full((rows,), min(T - 1, round(self.cfg.timestep * T)), device=source.device, dtype=torch.long)
        pred = generator.denoise(generator.add_noise(x0, eps, t).to(x0.dtype), t, cond)  # 2., 3.
        rel = relevance(*pred.chunk(2), draws=n)                                         # (B, 1, h, w)
        return relevance_map(rel, tuple(source.shape[-2:]), self.cfg.smooth)             # 4.

    def __call__(self, generator, source: torch.Tensor, instructions: Sequence[str], seed: int = 0) -> torch.Tensor:
        """(B, 1, H, W) {0, 1} float masks for `source` (B, 3, H, W) and its instructions; where the map found
        nothing (an instruction the editor ignores: a flat map), the whole image (`or_anywhere`)."""
        return or_anywhere(threshold(self.soft(generator, source, instructions, seed), self.cfg.threshold))


def or_anywhere(mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) masks -> same, an empty mask replaced by ones: an edit then behaves as with no mask instead of
    being forbidden everywhere."""
    empty = mask.flatten(1).amax(dim=1) == 0                                          # (B,)
    return torch.where(empty[:, None, None, None], torch.ones_like(mask), mask)
