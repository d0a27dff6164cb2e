"""DDIM editing with InstructPix2Pix's two guidance scales (text s_T, image s_I).

    pred = pred(∅, ∅) + s_I · (pred(X, ∅) − pred(∅, ∅)) + s_T · (pred(X, I) − pred(X, ∅))

With s_T = s_I = 1 this is the plain conditional prediction, and only that one U-Net pass is run.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from xmgie.models.generator import EditGenerator, SharedReference
from xmgie.models.noise_schedule import ddim_step, ddim_timesteps


@torch.no_grad()
def ddim_edit(generator: EditGenerator, source: torch.Tensor, mask: torch.Tensor, instructions: Sequence[str],
              steps: int = 32, guidance_text: float = 1.0, guidance_image: float = 1.0,
              seed: int | None = 0, source_blend: float = 0.0,
              initial_noise: torch.Tensor | None = None,
              on_step: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Edit `source` (B, 3, H, W) in [-1, 1] under `mask` (B, 1, H, W) -> X_edit (B, 3, H, W) in [-1, 1].
    `initial_noise`: x_T (the diffusion's shape) instead of a draw from `seed` (per-image noise for batches);
    `on_step(done, total)` is called after each DDIM step (progress displays).

    Steps: 1. start from x_T ~ N(0, I) (seeded); 2. per DDIM step, predict with 1 or 3 guidance branches
    and combine them as above; 3. DDIM update; for the first `source_blend` fraction of the steps, outside the
    mask the sample becomes the source noised (with x_T's ε) to the new step's level (PFB-Diff's latent
    blending); 4. back to image space (the VAE decodes a latent), post-process (GB, Eq. 19) and clamp.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    B = source.shape[0]
    device = source.device
    alphas_cumprod, prediction_type = generator.alphas_cumprod, generator.cfg.prediction_type
    guided = guidance_text != 1.0 or guidance_image != 1.0
    if guided:  # branch order [text+image, image only, neither], as InstructPix2Pix
        no, yes = torch.zeros(B, dtype=torch.bool), torch.ones(B, dtype=torch.bool)
        cond = generator.make_condition(source, mask, list(instructions) * 3, text_dropped=torch.cat([no, yes, yes]),
                                        image_dropped=torch.cat([no, no, yes]), copies=3)
        edit_cond = cond.rows(slice(0, B))
        # the text+image and image-only branches show the same image: one reference branch (PFB) for both
        i = torch.arange(B, device=device)
        shared = SharedReference(rows=torch.arange(B, 3 * B, device=device), index=torch.cat([i, i, i + B]))
    else:
        cond = edit_cond = generator.make_condition(source, mask, instructions)
        shared = None
    context = generator.context(cond)  # text features are the same at every step: encode once
    rng = torch.Generator(device="cpu").manual_seed(seed) if seed is not None else None
    x = (torch.randn(generator.diffusion_shape(source), generator=rng) if initial_noise is None
         else initial_noise).to(device)  # 1. x_T (pixels or latents)
    noise = x.repeat(3, 1, 1, 1) if guided else x  # the reference branch (PFB) is noised with x_T's ε
    x_T, timesteps = x, ddim_timesteps(len(alphas_cumprod), steps)  # from T - 1 (pure noise) down
    blended = round(source_blend * len(timesteps))
    if blended:  # PFB-Diff's latent blending: the source and the mask on the diffusion's grid, fixed per edit
        known_0, m = generator.reference_in_diffusion_space(edit_cond), generator.diffusion_mask(edit_cond)
    for i, t in enumerate(timesteps):
        tt = torch.full((cond.source.shape[0],), t, device=device, dtype=torch.long)
        pred = generator(x.repeat(3, 1, 1, 1) if guided else x, tt, cond, context, noise=noise, shared=shared)  # 2.
        if guided:  # in float32: under bf16 autocast the guidance differences would lose their low bits
            full, image_only, uncond = pred.float().chunk(3)
            pred = uncond + guidance_image * (image_only - uncond) + guidance_text * (full - image_only)
        x = ddim_step(x, pred, t, steps, alphas_cumprod, prediction_type)  # 3.
        if i < blended:
            known = known_0  # after the last step the sample is clean: the source itself
            if i + 1 < len(timesteps):
                known = generator.add_noise(known_0, x_T, torch.full((B,), timesteps[i + 1], device=device))
            x = m * x + (1 - m) * known
        if on_step is not None:
            on_step(i + 1, len(timesteps))
    return generator.postprocess(x, edit_cond).float().clamp(-1, 1)  # 4. with the full-condition branch (fp32)
