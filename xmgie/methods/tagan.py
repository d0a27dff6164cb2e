"""TAGAN — Nam, Kim, Kim: "Text-Adaptive Generative Adversarial Networks: Manipulating Images with Natural
Language", NeurIPS 2018.

Reproduced: the text-adaptive discriminator. Per word w_i and image-feature level j (global average of the
features after each of 3 stride-2 convs, v_j), a word-conditioned local discriminator
s_ij = σ(W_j(w_i)·v_j + b_j(w_i)); level weights β_ij = softmax_j(w_i) and word weights α_i = softmax_i(u·w_i)
(attention over the real words); D(x, t) = Π_i (Σ_j β_ij s_ij)^α_i, next to an unconditional realism head.
D: real+matching text → 1, real+mismatching → 0, generated → unconditionally fake; G: fool both heads.
Scaled down / changed: the generator is SISGAN's (`sisgan.py`, as the issue and TAGAN's own encoder–residual–
decoder design allow), at 32–64 px; words come from the framework's text tower instead of a pretrained fastText
+ GRU; the mask is an input channel; the framework's L1 term to the target replaces TAGAN's reconstruction with
the original text (same role).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xmgie.methods.gan import GANConfig, Text
from xmgie.methods.recipe import Recipe
from xmgie.methods.sisgan import SISGAN, SISGANGenerator
from xmgie.models import losses


def text_adaptive_log_score(local_logits: torch.Tensor, level_logits: torch.Tensor, word_logits: torch.Tensor,
                            valid: torch.Tensor) -> torch.Tensor:
    """log D(x, t) = Σ_i α_i · log Σ_j β_ij σ(local_ij).

    local_logits, level_logits (B, T, J); word_logits (B, T); valid (B, T) bool -> (B,). A text without words
    scores log 1 = 0 (nothing to disagree with).
    """
    log_local = torch.logsumexp(F.log_softmax(level_logits, -1) + F.logsigmoid(local_logits), -1)  # (B, T)
    has_words = valid.any(-1, keepdim=True)
    alpha = torch.softmax(word_logits.masked_fill(~valid, float("-inf")), -1)                     # (B, T)
    alpha = torch.where(has_words, alpha, torch.zeros_like(alpha))
    return (alpha * log_local).sum(-1)


class TextAdaptiveDiscriminator(nn.Module):
    """(B, 3, H, W) image, Text -> unconditional logits (B, 1, h, w) and log D(x, t) (B,)."""

    def __init__(self, channels: int, text_dim: int, levels: int = 3):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        widths = [channels * 2 ** j for j in range(levels)]
        self.blocks = nn.ModuleList(sn(nn.Conv2d(c_in, c_out, 4, 2, 1)) for c_in, c_out in zip([3, *widths], widths))
        self.uncond = sn(nn.Conv2d(widths[-1], 1, 3, 1, 1))
        self.word_weight = nn.ModuleList(nn.Linear(text_dim, c) for c in widths)  # W_j(w)
        self.word_bias = nn.ModuleList(nn.Linear(text_dim, 1) for _ in widths)    # b_j(w)
        self.level = nn.Linear(text_dim, levels)                                  # β
        self.word = nn.Linear(text_dim, 1)                                        # α

    def forward(self, image: torch.Tensor, text: Text) -> tuple[torch.Tensor, torch.Tensor]:
        x, pooled = image, []
        for block in self.blocks:
            x = F.leaky_relu(block(x), 0.2)
            pooled.append(x.mean((2, 3)))                                           # v_j: (B, C_j)
        w = text.words                                                              # (B, T, D)
        local = torch.stack([(W(w) * v[:, None]).sum(-1) + b(w).squeeze(-1)         # (B, T, J)
                             for W, b, v in zip(self.word_weight, self.word_bias, pooled)], -1)
        score = text_adaptive_log_score(local, self.level(w), self.word(w).squeeze(-1), text.valid)
        return self.uncond(x), score


def log_one_minus(log_p: torch.Tensor) -> torch.Tensor:
    """log(1 − p) from log p (p < 1), stable."""
    return torch.log1p(-log_p.exp().clamp(max=1 - 1e-6))


class TAGAN(SISGAN):
    """SISGAN's generator (and `generate`) with the text-adaptive discriminator and its losses."""

    METHOD = "tagan"

    def build(self, cfg: GANConfig) -> None:
        self.G = SISGANGenerator(cfg.channels, cfg.text.width)
        self.D = TextAdaptiveDiscriminator(cfg.channels, cfg.text.width)

    def discriminator_loss(self, batch, out, text: Text) -> torch.Tensor:
        real_u, real_match = self.D(batch["target"], text)
        _, real_mismatch = self.D(batch["target"], text.roll())
        fake_u, _ = self.D(out["edit"].detach(), text)
        return (losses.discriminator_loss(real_u, fake_u)
                - real_match.mean() - log_one_minus(real_mismatch).mean())

    def generator_losses(self, batch, out, text: Text) -> dict[str, torch.Tensor]:
        fake_u, fake_match = self.D(out["edit"], text.detach())
        return {"recon": self.cfg.recon * losses.reconstruction_loss(out["edit"], batch["target"]),
                "adv": self.cfg.adv * (losses.generator_adversarial_loss(fake_u) - fake_match.mean())}


RECIPE = Recipe("gan", module=TAGAN)
