"""Data-parallel training of a GAN step under DDP with the default strategy (no unused-parameter search).

DDP's reducer expects a gradient for every parameter it manages in every backward, and all-reduces whole
buckets. The discriminator's backward gives the generator no gradient, and the generator's gives the (toggled)
discriminator none, so with both in the reducer the first backward would leave buckets waiting. The
discriminator is therefore kept out of the reducer: its backward runs without gradient sync, and its gradient,
a few hundred kilobytes, is averaged over the ranks by one all-reduce.
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def ddp_ignore_discriminator(module: nn.Module, name: str = "discriminator") -> list[str]:
    """Mark `module.<name>`'s parameters and buffers as ignored by a DDP wrapper built afterwards; returns the
    names (fully qualified, as DDP expects)."""
    sub = getattr(module, name)
    names = [f"{name}.{n}" for n, _ in sub.named_parameters()] + [f"{name}.{n}" for n, _ in sub.named_buffers()]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, names)
    return names


@contextlib.contextmanager
def no_gradient_sync(strategy) -> Iterator[None]:
    """Within the block, a backward through the strategy's DDP wrapper does not touch its reducer."""
    model = getattr(strategy, "model", None)
    with model.no_sync() if isinstance(model, DistributedDataParallel) else contextlib.nullcontext():
        yield


def average_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Average the parameters' gradients over the ranks in one all-reduce (nothing outside a process group)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= torch.distributed.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
