"""GLIDE — Nichol et al.: "GLIDE: Towards Photorealistic Image Generation and Editing with Text-Guided Diffusion
Models", ICML 2022.

Reproduced: text-conditional diffusion inpainting — the masked image and the mask enter the U-Net as extra input
channels (the source inside the mask is never seen), the model's own transformer text encoder (trained from
scratch, as GLIDE's is), the diffusion loss alone, and classifier-free guidance trained by dropping 20 % of the
texts. It is the framework's generator with `inpainting: true` and no xMGIE module
(`experiments/baselines/glide.yaml`), trained by `xmgie fit` like xMGIE.
Scaled down / changed: the framework's `tiny` pixel-space U-Net at 32–64 px (GLIDE: 3.5B parameters at 64 px +
an upsampler) and its diffusion parametrisation (x0 prediction of the edit residual: ε-prediction trains far
worse on CPU budgets, README); guidance scale 1, the framework's measured best at this size (s_T = 3 cost
1.2 dB on the `shapes` val split), instead of GLIDE's 3; it reads the user's prompt P, as every baseline does.
"""
from xmgie.methods.recipe import Recipe

RECIPE = Recipe("fit", configs=("experiments/baselines/glide.yaml",))
