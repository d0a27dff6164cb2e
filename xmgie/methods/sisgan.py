"""SISGAN — Dong, Yu, Wu, Guo: "Semantic Image Synthesis via Adversarial Learning", ICCV 2017.

Reproduced: the encoder–residual–decoder generator that fuses a sentence embedding tiled over the image code, and
the matching-aware discriminator trained on three pairs (real image + matching text → real; real image +
mismatching text → fake; generated image + its text → fake).
Scaled down / changed: 2 stride-2 stages and 2 residual blocks at 32–64 px (the original: 3 stages, 4 blocks at
64 px); the sentence comes from the framework's text tower trained with G instead of a pretrained
visual-semantic embedding (none available offline); the edit mask is a 4th input channel, as every method here
gets it; the framework's L1 term to the target is added (see `gan.py`). The mismatching text is the next
sample's in the batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xmgie.methods.gan import GANBaseline, GANConfig, ResBlock, Text, down, tile, up
from xmgie.methods.recipe import Recipe


class SISGANGenerator(nn.Module):
    """(B, 3, H, W) source, (B, 1, H, W) mask, sentence (B, D) -> (B, 3, H, W) in [-1, 1]."""

    def __init__(self, channels: int, text_dim: int, blocks: int = 2):
        super().__init__()
        c = channels
        self.encode = nn.Sequential(nn.Conv2d(4, c, 3, 1, 1), nn.ReLU(), down(c, 2 * c), down(2 * c, 4 * c))
        self.text = nn.Sequential(nn.Linear(text_dim, c), nn.LeakyReLU(0.2))
        self.fuse = nn.Sequential(nn.Conv2d(5 * c, 4 * c, 3, 1, 1), nn.GroupNorm(8, 4 * c), nn.ReLU(),
                                  *[ResBlock(4 * c) for _ in range(blocks)])
        self.decode = nn.Sequential(up(4 * c, 2 * c), up(2 * c, c), nn.Conv2d(c, 3, 3, 1, 1), nn.Tanh())

    def forward(self, source: torch.Tensor, mask: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        code = self.encode(torch.cat([source, mask], 1))                        # (B, 4c, H/4, W/4)
        fused = self.fuse(torch.cat([code, tile(self.text(sentence), code)], 1))
        return self.decode(fused)


class MatchingDiscriminator(nn.Module):
    """(B, 3, H, W) image, sentence (B, D) -> (B, 1, h, w) logits of "real image that matches the text"."""

    def __init__(self, channels: int, text_dim: int):
        super().__init__()
        c = channels
        sn = nn.utils.parametrizations.spectral_norm
        self.image = nn.Sequential(sn(nn.Conv2d(3, c, 4, 2, 1)), nn.LeakyReLU(0.2),
                                   sn(nn.Conv2d(c, 2 * c, 4, 2, 1)), nn.LeakyReLU(0.2))
        self.text = nn.Linear(text_dim, c)
        self.head = nn.Sequential(sn(nn.Conv2d(3 * c, 2 * c, 3, 1, 1)), nn.LeakyReLU(0.2),
                                  sn(nn.Conv2d(2 * c, 1, 3, 1, 1)))

    def forward(self, image: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        f = self.image(image)                                                   # (B, 2c, H/4, W/4)
        return self.head(torch.cat([f, tile(self.text(sentence), f)], 1))


def matching_aware_d_loss(real_match: torch.Tensor, real_mismatch: torch.Tensor,
                          fake_match: torch.Tensor) -> torch.Tensor:
    """GAN-INT-CLS: −log D(x, t) − ½[log(1 − D(x, t̂)) + log(1 − D(G, t))], D = sigmoid(logits)."""
    return F.softplus(-real_match).mean() + 0.5 * (F.softplus(real_mismatch).mean() + F.softplus(fake_match).mean())


class SISGAN(GANBaseline):
    METHOD = "sisgan"

    def build(self, cfg: GANConfig) -> None:
        self.G = SISGANGenerator(cfg.channels, cfg.text.width)
        self.D = MatchingDiscriminator(cfg.channels, cfg.text.width)

    def generate(self, source, mask, text: Text):
        return {"edit": self.G(source, mask, text.sentence)}

    def discriminator_loss(self, batch, out, text: Text) -> torch.Tensor:
        real = batch["target"]
        return matching_aware_d_loss(self.D(real, text.sentence), self.D(real, text.roll().sentence),
                                     self.D(out["edit"].detach(), text.sentence))

    def fake_logits(self, edit, text: Text) -> torch.Tensor:
        return self.D(edit, text.sentence)


RECIPE = Recipe("gan", module=SISGAN)
