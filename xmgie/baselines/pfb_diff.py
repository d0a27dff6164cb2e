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

import torch

from xmgie.baselines.recipe import Recipe
from xmgie.checkpoints import read_checkpoint
from xmgie.errors import UserError

RECIPE = Recipe("derive", source="mgie")
LAYERS = ("mid", "up0", "up1")
SOURCE_BLEND = 0.5


def derive_pfb_diff(source_ckpt: str | Path, out: str | Path) -> Path:
    """PFB-Diff on a trained generator checkpoint (modules off): write `out`, a generator checkpoint whose
    hyperparameters switch on fixed-α PFB, pre-softmax CAM and latent blending, with the same weights.

    1. read the source; 2. rebuild its module with the inference-only settings; 3. load its weights (the plugins
    add no parameters: α is fixed); 4. save with the source's data facts and where it came from.
    """
    from xmgie.training.generator_module import CHECKPOINT_KIND, XMGIEModule

    ckpt = read_checkpoint(source_ckpt)  # 1.
    marker = ckpt.get("xmgie", {}) if isinstance(ckpt, dict) else {}
    if marker.get("kind") != CHECKPOINT_KIND:
        raise UserError(f"{source_ckpt} is not an xMGIE generator checkpoint: PFB-Diff is derived from one (mgie)")
    hp = dict(ckpt["hyper_parameters"])
    on = [m for m, c in hp["modules"].items() if c.get("enabled")]
    if on:
        raise UserError(f"PFB-Diff is derived from a generator without modules; {source_ckpt} has {', '.join(on)} on")
    hp["modules"] = {**hp["modules"], "pfb": {"enabled": True, "layers": list(LAYERS), "alpha": 1.0},  # 2.
                     "cam": {"enabled": True, "mode": "pre_softmax"}}
    hp["sampling"] = {**hp["sampling"], "source_blend": SOURCE_BLEND}
    module = XMGIEModule(**hp)
    missing, unexpected = module.load_state_dict(ckpt["state_dict"], strict=False)  # 3.
    if missing or unexpected:
        raise UserError(f"{source_ckpt}: weights do not fit PFB-Diff's generator (missing {missing[:3]}, "
                        f"unexpected {unexpected[:3]})")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),  # 4.
                "xmgie": {**marker, "method": "pfb_diff", "derived_from": str(source_ckpt)}}, out)
    return out
