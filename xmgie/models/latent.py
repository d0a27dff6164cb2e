"""Latent space of the `ip2p` generator: the frozen VAE of Stable Diffusion 1.5, and the widening of a pretrained
U-Net's input convolution (the InstructPix2Pix recipe)."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from diffusers import AutoencoderKL


class LatentCodec(nn.Module):
    """The VAE, frozen. Images (B, 3, H, W) in [-1, 1] <-> latents (B, C, H/f, W/f).

    Two encodings, as InstructPix2Pix uses them: the diffusion runs on `encode` (the posterior's mode times the
    VAE's scaling factor, unit variance), the source enters the U-Net as `encode_condition` (the mode without
    the scaling factor). Encoding never builds a graph; decoding does when gradients are on, so the pixel-space
    losses (recon, adversarial, identity, GB) reach the U-Net through the frozen decoder.
    """

    def __init__(self, vae: "AutoencoderKL"):
        super().__init__()
        self.vae = vae.requires_grad_(False).eval()

    @property
    def factor(self) -> int:
        """Downsampling factor f (8 for SD's VAE)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def channels(self) -> int:
        return self.vae.config.latent_channels

    @property
    def scaling(self) -> float:
        return float(self.vae.config.scaling_factor)

    def train(self, mode: bool = True) -> "LatentCodec":
        super().train(mode)
        self.vae.eval()  # frozen: never in training mode
        return self

    @torch.no_grad()
    def encode_condition(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C, H/f, W/f): the posterior's mode, unscaled (InstructPix2Pix's image condition)."""
        return self.vae.encode(image.to(self.vae.dtype)).latent_dist.mode()

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C, H/f, W/f) scaled latents, the space the diffusion runs in."""
        return self.encode_condition(image) * self.scaling

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) scaled latents -> (B, 3, h·f, w·f) images (about [-1, 1]; not clamped)."""
        return self.vae.decode(z.to(self.vae.dtype) / self.scaling).sample

    def shape(self, image_shape: torch.Size) -> tuple[int, int, int, int]:
        """The latent shape of images of `image_shape` (B, 3, H, W)."""
        B, _, H, W = image_shape
        f = self.factor
        if H % f or W % f:
            raise ValueError(f"image size {H}x{W} is not a multiple of the VAE's factor {f}")
        return B, self.channels, H // f, W // f

    def mask(self, mask: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) edit mask -> (B, 1, H/f, W/f): the fraction of each latent cell's pixels in the mask."""
        return F.interpolate(mask, scale_factor=1 / self.factor, mode="area")


def widen_conv_in(unet: nn.Module, in_channels: int) -> None:
    """Give `unet.conv_in` `in_channels` inputs; the new input channels get zero weights, so the U-Net computes
    exactly what it did before whatever they carry (InstructPix2Pix: 4 -> 8 for the source latent; here also
    8 -> 9 for the mask channel). The U-Net's config records the new width."""
    old = unet.conv_in
    if in_channels == old.in_channels:
        return
    if in_channels < old.in_channels:
        raise ValueError(f"conv_in has {old.in_channels} inputs; cannot narrow it to {in_channels}")
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                    dtype=old.weight.dtype, device=old.weight.device)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, :old.in_channels] = old.weight
        new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.config = dataclasses.replace(unet.config, in_channels=in_channels)
