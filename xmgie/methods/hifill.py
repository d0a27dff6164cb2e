"""HiFill — Yi, Tang, Azizi, Jang, Xu: "Contextual Residual Aggregation for Ultra High-Resolution Image
Inpainting", CVPR 2020.

Reproduced: the coarse-to-fine generator that fills the hole at low resolution (the masked image downsampled ×2
with the mask: a coarse network with dilated convolutions, then a refine network), an attention score between
every hole cell and every context cell of the refine network's bottleneck (cosine similarity, softmax over
context cells only), and contextual residual aggregation: the high-frequency residual of the known image,
R = X − up(down(X)), is aggregated patch-wise by that attention into the hole and added to the upsampled
low-resolution result; outside the mask the source is kept.
Scaled down / changed: ×2 between resolutions at 32–64 px (the original: 512 px inside, up to 8K out); plain
convolutions instead of light-weight gated ones; the framework's PatchGAN with the non-saturating loss instead of
WGAN-GP. HiFill reads no text: like the original it only inpaints the masked region (Table 1's footnote says so).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xmgie.methods.gan import GANBaseline, GANConfig, Text, down, up
from xmgie.methods.recipe import Recipe
from xmgie.models import losses
from xmgie.models.discriminator import PatchDiscriminator

ATTENTION_SCALE = 10.0  # softmax temperature of the cosine scores (the original's)


def context_attention(features: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """Attention of every cell over the context (non-hole) cells.

    features (B, C, h, w); hole (B, 1, h, w) in [0, 1] (a cell is a hole cell when > 0.5) -> (B, hw, hw), rows sum
    to 1 over context cells; a row is all zeros when the image has no context cell.
    """
    f = F.normalize(features.flatten(2), dim=1)                                   # (B, C, hw)
    scores = ATTENTION_SCALE * f.transpose(1, 2) @ f                              # (B, hw, hw)
    context = (hole.flatten(1) <= 0.5)[:, None, :]                                # (B, 1, hw)
    return torch.softmax(scores.masked_fill(~context, float("-inf")), -1).nan_to_num(0.0)


def aggregate_residual(residual: torch.Tensor, attention: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Σ over context cells of attention × that cell's residual patch.

    residual (B, 3, H, W), attention (B, hw, hw) over a grid (h, w) dividing H and W -> (B, 3, H, W).
    """
    H, W = residual.shape[-2:]
    ph, pw = H // grid[0], W // grid[1]
    patches = F.unfold(residual, (ph, pw), stride=(ph, pw))                       # (B, 3·ph·pw, hw)
    mixed = patches @ attention.transpose(1, 2)                                   # (B, 3·ph·pw, hw)
    return F.fold(mixed, (H, W), (ph, pw), stride=(ph, pw))


def high_frequency(image: torch.Tensor) -> torch.Tensor:
    """R = X − up(down(X)) at factor 2: what the low-resolution result lacks."""
    low = F.avg_pool2d(image, 2)
    return image - F.interpolate(low, scale_factor=2.0, mode="bilinear", align_corners=False)


class CRAGenerator(nn.Module):
    """source (B, 3, H, W), mask (B, 1, H, W) -> {"edit", "coarse", "refined" (the last two at H/2)}."""

    def __init__(self, c: int):
        super().__init__()
        def dilated(ch: int, d: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(ch, ch, 3, 1, d, dilation=d), nn.GroupNorm(8, ch), nn.ELU())

        self.coarse = nn.Sequential(nn.Conv2d(4, c, 5, 1, 2), nn.ELU(), down(c, 2 * c), dilated(2 * c, 2),
                                    dilated(2 * c, 4), up(2 * c, c), nn.Conv2d(c, 3, 3, 1, 1), nn.Tanh())
        self.refine_encode = nn.Sequential(nn.Conv2d(4, c, 5, 1, 2), nn.ELU(), down(c, 2 * c), down(2 * c, 2 * c))
        self.refine_decode = nn.Sequential(up(4 * c, 2 * c), up(2 * c, c), nn.Conv2d(c, 3, 3, 1, 1), nn.Tanh())

    def forward(self, source: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        known = source * (1 - mask)
        low, low_mask = F.avg_pool2d(known, 2), F.max_pool2d(mask, 2)            # (B, 3|1, H/2, W/2)
        coarse = self.coarse(torch.cat([low, low_mask], 1))                        # 1. coarse fill at low res
        merged = low * (1 - low_mask) + coarse * low_mask
        feats = self.refine_encode(torch.cat([merged, low_mask], 1))              # (B, 2c, H/8, W/8)
        hole = F.adaptive_max_pool2d(mask, feats.shape[-2:])
        attention = context_attention(feats, hole)                                # 2. hole cells over context
        attended = (feats.flatten(2) @ attention.transpose(1, 2)).reshape(feats.shape)
        refined = self.refine_decode(torch.cat([feats, attended], 1))             # 3. refined low-res result
        refined = low * (1 - low_mask) + refined * low_mask
        residual = aggregate_residual(high_frequency(known), attention, feats.shape[-2:])  # 4. CRA
        sharp = F.interpolate(refined, scale_factor=2.0, mode="bilinear", align_corners=False) + residual
        return {"edit": source * (1 - mask) + sharp.clamp(-1, 1) * mask, "coarse": coarse, "refined": refined}


class HiFill(GANBaseline):
    METHOD = "hifill"

    def build(self, cfg: GANConfig) -> None:
        self.G = CRAGenerator(cfg.channels)
        self.D = PatchDiscriminator(cfg.channels, 2)

    def generate(self, source, mask, text: Text):
        return self.G(source, mask)  # the text is not read

    def generator_losses(self, batch, out, text: Text) -> dict[str, torch.Tensor]:
        terms = super().generator_losses(batch, out, text)
        low = F.avg_pool2d(batch["target"], 2)
        terms["recon"] = terms["recon"] + self.cfg.recon * (losses.reconstruction_loss(out["coarse"], low)
                                                            + losses.reconstruction_loss(out["refined"], low))
        return terms


RECIPE = Recipe("gan", module=HiFill)
