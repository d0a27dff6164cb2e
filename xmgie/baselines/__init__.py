"""Table 1's other rows as methods of this framework, each trained and evaluated under the same data, protocol,
step budget and metric suite as xMGIE (never numbers copied from a paper). One file per method; each starts
with its paper, what is reproduced and what was scaled down or changed.

    mgie      the generator without the four modules, reading the instruction expander's output   (fit)
    pfb_diff  training-free PFB-Diff on the trained mgie generator                                   (derive)
    glide     text-conditional diffusion inpainting                                                  (fit)
    hifill    contextual residual aggregation inpainting; reads no text                              (gan)
    sisgan    encoder–residual–decoder + matching-aware discriminator                               (gan)
    tagan     SISGAN-like generator + text-adaptive discriminator                                    (gan)
    manigan   two stages with ACM, detail correction, DAMSM-style matching loss                      (gan)
"""
from __future__ import annotations

from xmgie.baselines import glide, hifill, manigan, mgie, pfb_diff, sisgan, tagan
from xmgie.baselines.gan import CHECKPOINT_KIND, GANBaseline
from xmgie.baselines.recipe import Recipe

METHODS: dict[str, Recipe] = {
    "mgie": mgie.RECIPE,
    "pfb_diff": pfb_diff.RECIPE,
    "glide": glide.RECIPE,
    "hifill": Recipe("gan", module=hifill.HiFill),
    "sisgan": Recipe("gan", module=sisgan.SISGAN),
    "tagan": Recipe("gan", module=tagan.TAGAN),
    "manigan": Recipe("gan", module=manigan.ManiGAN),
    # the method itself, as Table 1 runs it: all four modules, reading the expander's output like MGIE
    "xmgie": Recipe("fit", configs=("experiments/ablation/full.yaml", "experiments/text/expander.yaml"),
                    finetune=True),
}
GAN_BASELINES: dict[str, type[GANBaseline]] = {n: r.module for n, r in METHODS.items() if r.kind == "gan"}

__all__ = ["METHODS", "GAN_BASELINES", "CHECKPOINT_KIND", "GANBaseline", "Recipe"]
