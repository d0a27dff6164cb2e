"""Weight updates shared by the trainers: the exponential moving average used for sampling, and gradient clipping."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float, step: int) -> float:
    """ema ← d·ema + (1 − d)·model over the model's trainable parameters, with d = min(decay, (1 + step) / (10 +
    step)) so that the average is not dominated by the random initialisation early on. Frozen parameters (a VAE the
    two may share, E_id) are left alone. Buffers are copied. Returns d."""
    d = min(decay, (1 + step) / (10 + step))
    pairs = [(e, p.detach()) for e, p in zip(ema.parameters(), model.parameters()) if p.requires_grad]
    if not pairs:
        return d
    ema_p, model_p = (list(x) for x in zip(*pairs))
    torch._foreach_lerp_(ema_p, model_p, 1 - d)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)
    return d


def clip_gradients(optimizer: torch.optim.Optimizer, max_norm: float) -> None:
    """Clip the global gradient norm of `optimizer`'s parameters to max_norm (0: off). Done directly rather than by
    Lightning's `clip_gradients`, which refuses fused Adam under bf16 autocast although bf16 has no loss scale to
    undo (the trainers refuse fp16 with a scale)."""
    if max_norm > 0:
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, max_norm)
