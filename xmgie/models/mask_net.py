"""A learned edit-mask predictor: where in the photo does the instruction ask for a change?

    words of I ─ crc32 buckets ─ EmbeddingBag (mean) ─ MLP ─ t (B, D)
    X (B, 3, H, W) ─ [conv block, FiLM(t)] ×L, halving the size ─ [upsample, skip, conv block, FiLM(t)] ×(L−1)
                   ─ 1×1 conv ─ logits (B, 1, H, W)

A supervised alternative to the relevance map (xmgie/modules/mask_predictor.py) for the datasets that have
masks: trained with binary cross-entropy + soft Dice against the dataset's masks (`xmgie mask train`). Words, not
BPE tokens: an instruction's nouns and colours decide the region, their order barely does, and hashed buckets
need no vocabulary file.
"""
from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xmgie.errors import UserError
from xmgie.modules.mask_predictor import MaskPredictor, MaskPredictorConfig, or_anywhere, threshold

MASK_NET_KIND = "xmgie-mask-net"


def word_buckets(texts: Sequence[str], buckets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """B texts -> (ids (N,), offsets (B,)) for nn.EmbeddingBag: each lower-cased word's crc32 modulo `buckets`
    (stable across processes, unlike hash()); a text without words gets bucket 0."""
    ids, offsets = [], []
    for text in texts:
        offsets.append(len(ids))
        words = re.findall(r"[a-z0-9]+", text.lower()) or [""]
        ids += [zlib.crc32(w.encode()) % buckets for w in words]
    return torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """(B, 1, H, W) logits and {0, 1} targets -> scalar 1 − mean over images of
    (2·Σ p·y + ε) / (Σ p + Σ y + ε), p = sigmoid(logits)."""
    p = logits.sigmoid().flatten(1)
    y = target.flatten(1)
    return 1 - ((2 * (p * y).sum(1) + eps) / (p.sum(1) + y.sum(1) + eps)).mean()


def mask_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy (per pixel) + soft Dice (per image: small regions count as much as large ones)."""
    return F.binary_cross_entropy_with_logits(logits, target) + soft_dice_loss(logits, target)


class FiLMBlock(nn.Module):
    """conv3×3 → GroupNorm → x·(1 + γ(t)) + β(t) → SiLU → conv3×3 → SiLU, at constant size."""

    def __init__(self, c_in: int, c_out: int, text_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm = nn.GroupNorm(min(8, c_out), c_out)
        self.film = nn.Linear(text_dim, 2 * c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(t)[:, :, None, None].chunk(2, dim=1)                   # (B, C, 1, 1) each
        h = F.silu(self.norm(self.conv1(x)) * (1 + gamma) + beta)
        return F.silu(self.conv2(h))


class MaskNet(nn.Module):
    """(source (B, 3, H, W) in [-1, 1], B instructions) -> (B, 1, H, W) logits of "this pixel changes".

    Args:
        channels: widths per level; the input side must be divisible by 2^(levels − 1).
        text_dim: size D of the instruction embedding.
        buckets: hashed word buckets of the embedding table.
        resolution: the side the net was trained at (`predict` resizes photos to it).
    """

    def __init__(self, channels: Sequence[int] = (32, 64, 128), text_dim: int = 64, buckets: int = 4096,
                 resolution: int = 32):
        super().__init__()
        self.config = {"channels": list(channels), "text_dim": text_dim, "buckets": buckets,
                       "resolution": resolution}
        self.words = nn.EmbeddingBag(buckets, text_dim, mode="mean")
        self.text = nn.Sequential(nn.Linear(text_dim, text_dim), nn.SiLU(), nn.Linear(text_dim, text_dim))
        widths = [3, *channels]
        self.down = nn.ModuleList(FiLMBlock(widths[i], widths[i + 1], text_dim) for i in range(len(channels)))
        self.pool = nn.ModuleList(nn.Conv2d(c, c, 3, stride=2, padding=1) for c in channels[:-1])
        self.up = nn.ModuleList(FiLMBlock(channels[i + 1] + channels[i], channels[i], text_dim)
                                for i in reversed(range(len(channels) - 1)))
        self.out = nn.Conv2d(channels[0], 1, 1)

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """B instructions -> (B, D)."""
        ids, offsets = word_buckets(texts, self.words.num_embeddings)
        return self.text(self.words(ids.to(self.out.weight.device), offsets.to(self.out.weight.device)))

    def forward(self, source: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        t = self.embed(texts)
        skips, h = [], source
        for i, block in enumerate(self.down):
            h = block(h, t)
            if i < len(self.pool):
                skips.append(h)
                h = self.pool[i](h)                                                       # (B, C, H/2^(i+1), ·)
        for block in self.up:
            skip = skips.pop()
            h = block(torch.cat([F.interpolate(h, size=skip.shape[-2:], mode="nearest"), skip], dim=1), t)
        return self.out(h)

    @torch.no_grad()
    def predict(self, source: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """source (B, 3, H, W) in [-1, 1] at any size -> (B, 1, H, W) probabilities: run at the training
        resolution, the probabilities resized back bilinearly."""
        size = source.shape[-2:]
        r = self.config["resolution"]
        x = F.interpolate(source.float(), size=(r, r), mode="bilinear", align_corners=False, antialias=True) \
            if tuple(size) != (r, r) else source.float()
        p = self.forward(x.to(self.out.weight.device), texts).sigmoid()
        return F.interpolate(p, size=size, mode="bilinear", align_corners=False) if tuple(size) != (r, r) else p


def save_mask_net(net: MaskNet, path: str | Path, **info: Any) -> Path:
    """Write {kind, config, state_dict, **info} with torch.save (plain data and tensors: loads weights-only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"kind": MASK_NET_KIND, "config": net.config, "state_dict": net.state_dict(), **info}, path)
    return path


def load_mask_net(path: str | Path) -> MaskNet:
    """A frozen MaskNet from a file of `save_mask_net`; a missing or foreign file is a FileNotFoundError or a
    ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask predictor not found: {path} (train one: make train-mask)")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("kind") != MASK_NET_KIND:
        raise ValueError(f"{path} is not a mask-predictor file (make train-mask writes one)")
    net = MaskNet(**blob["config"])
    net.load_state_dict(blob["state_dict"])
    return net.requires_grad_(False).eval()


class LearnedMaskPredictor:
    """`MaskPredictor`'s interface over a trained MaskNet (`cfg.net`): the editor's U-Net is not used, so any
    editor, a one-pass GAN included, can take its masks."""

    needs_generator = False

    def __init__(self, cfg: MaskPredictorConfig):
        self.cfg = cfg
        self.net = load_mask_net(cfg.net)

    def soft(self, generator, source: torch.Tensor, instructions: Sequence[str], seed: int = 0) -> torch.Tensor:
        """source (B, 3, H, W) in [-1, 1], B instructions -> (B, 1, H, W) probabilities (before τ)."""
        return self.net.to(source.device).predict(source, list(instructions)).to(source.dtype)

    def __call__(self, generator, source: torch.Tensor, instructions: Sequence[str], seed: int = 0) -> torch.Tensor:
        return or_anywhere(threshold(self.soft(generator, source, instructions, seed), self.cfg.threshold))


def mask_predictor(cfg: MaskPredictorConfig | None = None) -> MaskPredictor | LearnedMaskPredictor:
    """The automatic masks `cfg` asks for: a learned net's when `cfg.net` names one, else the relevance map."""
    cfg = cfg or MaskPredictorConfig()
    if not cfg.net:
        return MaskPredictor(cfg)
    try:
        return LearnedMaskPredictor(cfg)
    except (FileNotFoundError, ValueError) as err:
        raise UserError(str(err)) from None
