"""Exponential moving average of weights, used for sampling."""
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
