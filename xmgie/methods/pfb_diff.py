"""PFB-Diff — Huang et al.: "PFB-Diff: Progressive Feature Blending Diffusion for Text-driven Image Editing",
Neural Networks 2025 (arXiv 2306.16894).

Reproduced, training-free on the trained `mgie` generator (its weights unchanged), at inference only:
(1) spatial-mask feature blending at the deep decoder layers on every step, F = M ⊙ F_edit + (1 − M) ⊙ F_source
with α = 1 (the framework's PFB with `pfb.alpha: 1.0`; the source branch is the source noised with the same ε
under the null text); (2) attention masking of the edit words before the softmax (CAM `pre_softmax`);
(3) latent blending: for the first half of the DDIM steps the sample outside the mask is replaced by the source
noised to the same level (`sampling.source_blend: 0.5`).
Scaled down / changed: on the framework's `tiny` pixel-space U-Net instead of Stable Diffusion; blended layers
mid, up0, up1 (its deepest decoder blocks); the words masked are all instruction words (PFB-Diff masks the words
of the edited object, which needs a word-to-object parser).
`derive_pfb_diff` writes an ordinary generator checkpoint with these settings, so `xmgie evaluate` and
`xmgie edit` read it like any other.
"""
from __future__ import annotations

from pathlib import Path

from xmgie.methods.derived import derive_generator
from xmgie.methods.recipe import Recipe

LAYERS = ("mid", "up0", "up1")
SOURCE_BLEND = 0.5


def derive_pfb_diff(source_ckpt: str | Path, out: str | Path) -> Path:
    """PFB-Diff on a trained generator checkpoint (modules off): write `out`, a generator checkpoint whose
    hyperparameters switch on fixed-α PFB, pre-softmax CAM and latent blending, with the same weights (the plugins
    add no parameters: α is fixed)."""
    return derive_generator(source_ckpt, out, "pfb_diff",
                            {"pfb": {"enabled": True, "layers": list(LAYERS), "alpha": 1.0},
                             "cam": {"enabled": True, "mode": "pre_softmax"}},
                            {"source_blend": SOURCE_BLEND})


RECIPE = Recipe("derive", source="mgie", derive=derive_pfb_diff)
