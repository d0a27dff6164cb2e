"""ManiGAN — Li, Qi, Lukasiewicz, Torr: "ManiGAN: Text-Guided Image Manipulation", CVPR 2020.

Reproduced: the multi-stage generator (a half-resolution stage, then a full-resolution stage), each stage fusing
word-attention context (AttnGAN-style) with the image through the affine combination module,
ACM(h, v) = h ⊙ W(v) + b(v) with v the source image's features; the detail correction module (DCM), which
re-attends to the words from the stage-2 image's features, combines them with the source's full-resolution
features by ACM and corrects the result residually; a DAMSM-style word–region matching loss: words attend over
image regions, R(Q, D) = log(Σ_i exp(γ2·cos(c_i, e_i)))^(1/γ2), and a batch-softmax over matching scores trains
the matching encoders on real (target, text) pairs and scores G's outputs.
Scaled down / changed: 2 stages at 1/2 and 1 (the original: 3 stages at 64–256 px) with 1–2 residual blocks; the
DAMSM encoders are small and trained here with the discriminators (the original pretrains an Inception-v3 +
LSTM DAMSM); PatchGAN discriminators per stage (the framework's) instead of the original's conditional ones;
the mask is an input channel; the framework's L1 term to the target (also on stage 1, downsampled).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from xmgie.methods.gan import GANBaseline, GANConfig, ResBlock, Text, down, tile, up
from xmgie.methods.recipe import Recipe
from xmgie.models import losses
from xmgie.models.discriminator import PatchDiscriminator

GAMMA1, GAMMA2, GAMMA3 = 4.0, 5.0, 10.0  # DAMSM's attention sharpness, word aggregation and batch-softmax scale
DAMSM_WEIGHT = 0.1                      # G's matching term, at the adversarial weight's scale


def word_attention(h: torch.Tensor, words: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Each position attends over the words: (B, C, H, W) queries, (B, T, C) words, (B, T) valid -> (B, C, H, W)."""
    B, C, H, W = h.shape
    q = h.flatten(2).transpose(1, 2)                                              # (B, HW, C)
    scores = q @ words.transpose(1, 2) / math.sqrt(C)                            # (B, HW, T)
    scores = scores.masked_fill(~valid[:, None], float("-inf"))
    attn = torch.softmax(scores, -1).nan_to_num(0.0)                              # no words: no context
    return (attn @ words).transpose(1, 2).reshape(B, C, H, W)


class ACM(nn.Module):
    """Affine combination module: h ⊙ W(v) + b(v); h (B, C, H, W), v (B, C_v, H, W) -> (B, C, H, W)."""

    def __init__(self, c: int, c_v: int):
        super().__init__()
        self.scale = nn.Conv2d(c_v, c, 3, 1, 1)
        self.shift = nn.Conv2d(c_v, c, 3, 1, 1)

    def forward(self, h: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return h * self.scale(v) + self.shift(v)


class Stage(nn.Module):
    """Word context + ACM with the source features + a residual block; (B, c, H, W) -> features, image."""

    def __init__(self, c: int, c_v: int, text_dim: int):
        super().__init__()
        self.words = nn.Linear(text_dim, c)
        self.mix = nn.Sequential(nn.Conv2d(2 * c, c, 3, 1, 1), nn.GroupNorm(8, c), nn.ReLU(), ResBlock(c))
        self.acm = ACM(c, c_v)
        self.to_image = nn.Sequential(nn.Conv2d(c, 3, 3, 1, 1), nn.Tanh())

    def forward(self, h: torch.Tensor, v: torch.Tensor, text: Text) -> tuple[torch.Tensor, torch.Tensor]:
        context = word_attention(h, self.words(text.words), text.valid)
        h = self.acm(self.mix(torch.cat([h, context], 1)), v)
        return h, self.to_image(h)


class ManiGANGenerator(nn.Module):
    """source (B, 3, H, W), mask (B, 1, H, W), Text -> {"edit": (B, 3, H, W), "stage1": (B, 3, H/2, W/2)}."""

    def __init__(self, c: int, text_dim: int):
        super().__init__()
        self.v_full = nn.Sequential(nn.Conv2d(4, c, 3, 1, 1), nn.ReLU())          # source features, full res
        self.v_half = down(c, 2 * c)                                              # and at 1/2
        self.sentence = nn.Linear(text_dim, c)
        self.start = nn.Sequential(nn.Conv2d(3 * c, 2 * c, 3, 1, 1), nn.GroupNorm(8, 2 * c), nn.ReLU())
        self.stage1 = Stage(2 * c, 2 * c, text_dim)
        self.up = up(2 * c, c)
        self.stage2 = Stage(c, c, text_dim)
        self.dcm_image = nn.Sequential(nn.Conv2d(3, c, 3, 1, 1), nn.ReLU())
        self.dcm = Stage(c, c, text_dim)

    def forward(self, source: torch.Tensor, mask: torch.Tensor, text: Text) -> dict[str, torch.Tensor]:
        v1 = self.v_full(torch.cat([source, mask], 1))                            # (B, c, H, W)
        v2 = self.v_half(v1)                                                      # (B, 2c, H/2, W/2)
        h = self.start(torch.cat([v2, tile(self.sentence(text.sentence), v2)], 1))
        h, x1 = self.stage1(h, v2, text)                                          # stage 1 at H/2
        h, x2 = self.stage2(self.up(h), v1, text)                                 # stage 2 at H
        _, correction = self.dcm(self.dcm_image(x2), v1, text)                    # DCM on the stage-2 image
        return {"edit": (x2 + correction).clamp(-1, 1), "stage1": x1}


def matching_scores(regions: torch.Tensor, words: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """DAMSM word–region matching R(Q_a, D_b) for every image a and text b.

    regions (B, R, D), words (B, T, D), valid (B, T) -> (B_images, B_texts).
    """
    r = F.normalize(regions, dim=-1)
    w = F.normalize(words, dim=-1)
    attn = torch.einsum("btd,ard->abtr", w, r) * GAMMA1                           # word b,t over regions of a
    context = torch.einsum("abtr,ard->abtd", torch.softmax(attn, -1), r)          # c_i
    relevance = F.cosine_similarity(context, w[None].expand_as(context), dim=-1)  # (A, B, T)
    relevance = relevance.masked_fill(~valid[None], float("-inf"))
    return torch.logsumexp(GAMMA2 * relevance, -1) / GAMMA2                       # (A, B)


def matching_loss(scores: torch.Tensor) -> torch.Tensor:
    """Batch-softmax cross-entropy of the diagonal (image i with text i), both directions."""
    labels = torch.arange(scores.shape[0], device=scores.device)
    logits = GAMMA3 * scores.nan_to_num(neginf=-1e4)
    return F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)


class DAMSM(nn.Module):
    """Region features of an image (B, 3, H, W) -> (B, R, D) and a word projection (B, T, D_text) -> (B, T, D)."""

    def __init__(self, c: int, text_dim: int, dim: int = 64):
        super().__init__()
        self.image = nn.Sequential(down(3, c), down(c, 2 * c), nn.Conv2d(2 * c, dim, 1))
        self.words = nn.Linear(text_dim, dim)

    def forward(self, image: torch.Tensor, text: Text) -> torch.Tensor:
        regions = self.image(image).flatten(2).transpose(1, 2)                    # (B, R, D)
        return matching_scores(regions, self.words(text.words), text.valid)


class ManiGAN(GANBaseline):
    METHOD = "manigan"

    def build(self, cfg: GANConfig) -> None:
        self.G = ManiGANGenerator(cfg.channels, cfg.text.width)
        self.D = nn.ModuleDict({"stage2": PatchDiscriminator(cfg.channels, 2),
                                "stage1": PatchDiscriminator(cfg.channels, 1),
                                "damsm": DAMSM(cfg.channels, cfg.text.width)})

    def generate(self, source, mask, text: Text):
        return self.G(source, mask, text)

    def discriminator_loss(self, batch, out, text: Text) -> torch.Tensor:
        real, real_half = batch["target"], F.avg_pool2d(batch["target"], 2)
        d = self.D
        return (losses.discriminator_loss(d["stage2"](real), d["stage2"](out["edit"].detach()))
                + losses.discriminator_loss(d["stage1"](real_half), d["stage1"](out["stage1"].detach()))
                + matching_loss(d["damsm"](real, text)))

    def generator_losses(self, batch, out, text: Text) -> dict[str, torch.Tensor]:
        target, d, c = batch["target"], self.D, self.cfg
        adv = (losses.generator_adversarial_loss(d["stage2"](out["edit"]))
               + losses.generator_adversarial_loss(d["stage1"](out["stage1"])))
        return {"recon": c.recon * (losses.reconstruction_loss(out["edit"], target)
                                    + losses.reconstruction_loss(out["stage1"], F.avg_pool2d(target, 2))),
                "adv": c.adv * adv,
                "damsm": DAMSM_WEIGHT * matching_loss(d["damsm"](out["edit"], text.detach()))}


RECIPE = Recipe("gan", module=ManiGAN)
