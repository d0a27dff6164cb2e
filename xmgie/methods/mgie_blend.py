"""MGIE + latent blending — the training-free baseline every xMGIE row is read against first.

Blended Latent Diffusion — Avrahami et al.: "Blended Latent Diffusion", SIGGRAPH 2023 (arXiv 2206.02779).
Reproduced, at inference only on the trained `mgie` generator (its weights unchanged): after every DDIM step the
sample outside the mask is replaced by the source noised to the same level (`sampling.source_blend: 1`), so the
last step returns the source exactly outside the mask. PFB's `out` layer is the same operation, learned nowhere.
`mgie_blend_gb` adds GB (Eq. 18–19, with the source run's σ) to the final image, the one module that also needs no
training.
Scaled down / changed: on the framework's pixel-space `tiny` U-Net, where the "latent" is the image itself.
"""
from __future__ import annotations

from pathlib import Path

from xmgie.methods.derived import derive_generator
from xmgie.methods.recipe import Recipe


def derive_mgie_blend(source_ckpt: str | Path, out: str | Path) -> Path:
    """MGIE's generator with latent blending on every DDIM step: `out`, same weights."""
    return derive_generator(source_ckpt, out, "mgie_blend", {}, {"source_blend": 1.0})


def derive_mgie_blend_gb(source_ckpt: str | Path, out: str | Path) -> Path:
    """The same plus GB on the final image (σ_max, σ_s as the source run set them): `out`, same weights."""
    return derive_generator(source_ckpt, out, "mgie_blend_gb", {"gb": {"enabled": True}}, {"source_blend": 1.0})


RECIPE = Recipe("derive", source="mgie", derive=derive_mgie_blend)
RECIPE_GB = Recipe("derive", source="mgie", derive=derive_mgie_blend_gb)
