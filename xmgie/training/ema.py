"""Exponential moving average of weights, used for sampling."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float, step: int) -> float:
    """ema ← d·ema + (1 − d)·model over parameters, with d = min(decay, (1 + step) / (10 + step)) so that the
    average is not dominated by the random initialisation early on. Buffers are copied. Returns d."""
    d = min(decay, (1 + step) / (10 + step))
    ema_p = [p for p in ema.parameters()]
    model_p = [p.detach() for p in model.parameters()]
    torch._foreach_lerp_(ema_p, model_p, 1 - d)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)
    return d
