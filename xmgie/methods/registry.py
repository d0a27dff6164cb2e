"""The one list of methods: name → how it is built (`Recipe`). A new method is a file of its own in this package
plus one entry here; the commands' choices (`xmgie baseline train|derive --method`), the pipeline's plan and the
tables read this dict."""
from __future__ import annotations

from xmgie.methods import glide, hifill, manigan, mgie, mgie_blend, pfb_diff, sisgan, tagan
from xmgie.methods.gan import GANBaseline
from xmgie.methods.recipe import Recipe

METHODS: dict[str, Recipe] = {
    "mgie": mgie.RECIPE,
    "pfb_diff": pfb_diff.RECIPE,
    "mgie_blend": mgie_blend.RECIPE,
    "mgie_blend_gb": mgie_blend.RECIPE_GB,
    "glide": glide.RECIPE,
    "hifill": hifill.RECIPE,
    "sisgan": sisgan.RECIPE,
    "tagan": tagan.RECIPE,
    "manigan": manigan.RECIPE,
    # the method itself, as Table 1 runs it: all four modules, reading the expander's output like MGIE
    "xmgie": Recipe("fit", configs=("experiments/ablation/full.yaml", "experiments/text/expander.yaml"),
                    finetune=True),
}


def gan_baselines() -> dict[str, type[GANBaseline]]:
    """{name: GANBaseline subclass} of the registered GAN methods."""
    return {n: r.module for n, r in METHODS.items() if r.kind == "gan"}


def method_names(kind: str) -> tuple[str, ...]:
    """The registered methods of one recipe kind ("fit", "gan", "derive"): the choices of their commands."""
    return tuple(n for n, r in METHODS.items() if r.kind == kind)
