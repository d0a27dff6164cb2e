"""Edit-quality metrics on images in [-1, 1] (DESIGN §7): per-image PSNR (whole image, inside and outside
the edit mask), SSIM, and the copy-the-source baseline, streamed as torchmetrics state (synced over DDP)."""
from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.functional.image import structural_similarity_index_measure

DATA_RANGE = 2.0  # images live in [-1, 1]


def psnr_per_image(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None,
                   data_range: float = DATA_RANGE) -> torch.Tensor:
    """(B, C, H, W) twice -> (B,) PSNR in dB = 10 log10(range² / MSE), the MSE taken over the pixels where
    `weight` (B, 1, H, W) in {0, 1} is 1 (all pixels when None). An image with no such pixel gets NaN."""
    se = (x.float() - y.float()).pow(2)
    if weight is None:
        mse = se.flatten(1).mean(1)
    else:
        w = weight.float().expand_as(se)
        n = w.flatten(1).sum(1)
        mse = (se * w).flatten(1).sum(1) / n
        mse = torch.where(n > 0, mse, torch.full_like(mse, float("nan")))
    return 10 * torch.log10(data_range**2 / mse.clamp(min=1e-12))


def ssim_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) twice in [-1, 1] -> (B,) SSIM (Gaussian window σ = 1.5, 11 px).

    SSIM is not shift-invariant (its luminance term uses absolute means), so images are mapped to the
    conventional [0, 1] with data_range 1 rather than scored in [-1, 1]."""
    to01 = lambda t: (t.float() + 1) / 2  # noqa: E731
    return structural_similarity_index_measure(to01(x), to01(y), data_range=1.0, reduction="none")


class EditQuality(Metric):
    """Means over images of: psnr, ssim (edit vs target), psnr_source (source vs target: the do-nothing
    baseline), psnr_outside_mask / psnr_inside_mask (edit vs target on either side of the mask), and
    psnr_gain = psnr - psnr_source. Images whose mask has no inside (or no outside) pixel are left out of
    that mean only."""

    higher_is_better = True
    full_state_update = False
    KEYS = ("psnr", "ssim", "psnr_source", "psnr_outside_mask", "psnr_inside_mask")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for key in self.KEYS:
            self.add_state(f"{key}_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{key}_n", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, edit: torch.Tensor, target: torch.Tensor, source: torch.Tensor, mask: torch.Tensor) -> None:
        """edit/target/source (B, 3, H, W) in [-1, 1]; mask (B, 1, H, W) in {0, 1}."""
        values = {
            "psnr": psnr_per_image(edit, target),
            "ssim": ssim_per_image(edit, target),
            "psnr_source": psnr_per_image(source, target),
            "psnr_outside_mask": psnr_per_image(edit, target, 1 - mask),
            "psnr_inside_mask": psnr_per_image(edit, target, mask),
        }
        for key, v in values.items():
            ok = ~torch.isnan(v)
            setattr(self, f"{key}_sum", getattr(self, f"{key}_sum") + v[ok].double().sum())
            setattr(self, f"{key}_n", getattr(self, f"{key}_n") + ok.sum())

    def compute(self) -> dict[str, torch.Tensor]:
        out = {key: getattr(self, f"{key}_sum") / getattr(self, f"{key}_n").clamp(min=1) for key in self.KEYS}
        out["psnr_gain"] = out["psnr"] - out["psnr_source"]
        out["n_images"] = self.psnr_n.clone()
        return out
