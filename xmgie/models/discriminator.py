"""PatchGAN discriminator (pix2pix): a grid of real/fake logits, one per receptive-field patch."""
from __future__ import annotations

from torch import Tensor, nn


class PatchDiscriminator(nn.Module):
    """(B, 3, H, W) in [-1, 1] -> (B, 1, H', W') logits; `layers` stride-2 convs set the patch size.

    Spectral-norm convolutions keep the non-saturating game stable at small batch sizes without BatchNorm,
    whose batch statistics would mix real and fake samples.
    """

    def __init__(self, channels: int = 32, layers: int = 2):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        blocks: list[nn.Module] = [sn(nn.Conv2d(3, channels, 4, 2, 1)), nn.LeakyReLU(0.2)]
        ch = channels
        for _ in range(layers - 1):
            blocks += [sn(nn.Conv2d(ch, ch * 2, 4, 2, 1)), nn.LeakyReLU(0.2)]
            ch *= 2
        blocks += [sn(nn.Conv2d(ch, ch, 3, 1, 1)), nn.LeakyReLU(0.2), sn(nn.Conv2d(ch, 1, 3, 1, 1))]
        self.net = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
