"""The U-Net's resolution levels: an encoder block (ResNet blocks, with a spatial transformer after each when it
attends to the text, then a strided convolution), the middle block and a decoder block (each ResNet block reads
one skip connection). Forward hooks on these blocks are where PFB blends and IE fuses (docs/model.md).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from xmgie.models.unet_layers import Downsample, ResnetBlock, SpatialTransformer, Upsample

BLOCK_KINDS = {  # the reference's block names -> does the block attend to the text
    "DownBlock2D": False, "CrossAttnDownBlock2D": True, "UpBlock2D": False, "CrossAttnUpBlock2D": True}


ResnetFactory = Callable[[], ResnetBlock]


class Level(nn.Module):
    """ResNet blocks, each followed by a spatial transformer when `attention` (its keyword arguments). Subclasses
    add the resampling. As in the reference, layers are made in the order they run (a seed gives the same initial
    weights) and the transformers are registered before the ResNet blocks (`parameters()` lists them in the same
    order, so a gradient norm sums them in the same order)."""

    def __init__(self, resnets: Sequence[ResnetFactory], attention: dict | None, transformer_first: bool = False):
        super().__init__()
        self.attentions = None if attention is None else nn.ModuleList()
        self.resnets = nn.ModuleList()
        for i, make in enumerate(resnets):
            if attention is not None and transformer_first and i > 0:  # the middle level: before each but the 1st
                self.attentions.append(SpatialTransformer(self.resnets[-1].out_channels, **attention))
            self.resnets.append(make())
            if attention is not None and not transformer_first:
                self.attentions.append(SpatialTransformer(self.resnets[-1].out_channels, **attention))
        self.gradient_checkpointing = False

    def layer(self, i: int, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """ResNet block i (then its transformer) on (B, C, h, w)."""
        def run(x: torch.Tensor) -> torch.Tensor:
            x = self.resnets[i](x, temb)
            return x if self.attentions is None else self.attentions[i](x, context)
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(run, x, use_reentrant=False)
        return run(x)


class DownLevel(Level):
    """(B, C_in, h, w) -> (B, C, h/2, w/2) and the skip features it leaves for the decoder (one per ResNet block, then
    the downsampled map; none is downsampled at the last level)."""

    def __init__(self, resnets: Sequence[ResnetFactory], attention: dict | None, downsample: bool,
                 padding: int = 1):
        super().__init__(resnets, attention)
        c = self.resnets[-1].out_channels
        self.downsamplers = nn.ModuleList([Downsample(c, padding)]) if downsample else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        skips = []
        for i in range(len(self.resnets)):
            x = self.layer(i, x, temb, context)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, tuple(skips)


class MidLevel(Level):
    """ResNet, then (transformer, ResNet) pairs: (B, C, h, w) -> (B, C, h, w)."""

    def __init__(self, resnets: Sequence[ResnetFactory], attention: dict):
        super().__init__(resnets, attention, transformer_first=True)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x, temb)
        for i in range(len(self.attentions)):
            x = self.layer(i, x, temb, context)
        return x

    def layer(self, i: int, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Transformer i, then ResNet block i + 1."""
        def run(x: torch.Tensor) -> torch.Tensor:
            return self.resnets[i + 1](self.attentions[i](x, context), temb)
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(run, x, use_reentrant=False)
        return run(x)


class UpLevel(Level):
    """Each ResNet block reads [x; the last unread skip]; then x2 upsampling (to the next skip's size) but at the
    last level: (B, C_in, h, w) -> (B, C, 2h, 2w)."""

    def __init__(self, resnets: Sequence[ResnetFactory], attention: dict | None, upsample: bool):
        super().__init__(resnets, attention)
        c = self.resnets[-1].out_channels
        self.upsamplers = nn.ModuleList([Upsample(c)]) if upsample else None

    def forward(self, x: torch.Tensor, skips: tuple[torch.Tensor, ...], temb: torch.Tensor, context: torch.Tensor,
                size: tuple[int, int] | None = None) -> torch.Tensor:
        for i in range(len(self.resnets)):
            x = self.layer(i, torch.cat([x, skips[-1 - i]], dim=1), temb, context)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, size)
        return x
