"""A table of named U-Net sizes (docs/model.md). Pixel sizes denoise images; latent sizes (`ip2p`) denoise VAE latents
and have their VAE and text tower in `backbone.LATENT_SIZES`."""
from __future__ import annotations

from dataclasses import dataclass

from xmgie.models.unet2d import ConditionalUNet, UNetConfig


@dataclass(frozen=True)
class UNetSize:
    """Architecture of one named size; input/output channels and text width are given at build time."""

    block_out_channels: tuple[int, ...]
    down_block_types: tuple[str, ...]
    up_block_types: tuple[str, ...]
    layers_per_block: int
    heads: int             # the config key is `attention_head_dim`, but it is the number of heads
    norm_num_groups: int   # must divide every channel count
    latent: bool = False   # True: works on VAE latents (ip2p); False: on pixels


UNET_SIZES: dict[str, UNetSize] = {
    # ~4.1M parameters; self-attention only at 1/2 and 1/4 resolution (16 and 8 px at 32 px), which is
    # where a CPU can afford it.
    "tiny": UNetSize(
        block_out_channels=(32, 64, 128),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1, heads=4, norm_num_groups=8),
    # Stable Diffusion 1.5's U-Net (859.5M parameters at 4 input channels), which InstructPix2Pix fine-tunes;
    # `pretrained` loads its weights (and exact config) from a local folder instead
    "ip2p": UNetSize(
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=2, heads=8, norm_num_groups=32, latent=True),
    # the same block structure, small: latent-path tests and `benchmarks/gpu.sh --smoke` on a CPU
    "ip2p-mini": UNetSize(
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1, heads=2, norm_num_groups=8, latent=True),
    # the smallest thing that runs: unit tests
    "micro": UNetSize(
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1, heads=2, norm_num_groups=8),
}


def build_unet(size: str, in_channels: int, out_channels: int, cross_attention_dim: int,
               pooled_text: bool = False, film: bool = False) -> ConditionalUNet:
    """Random-initialised U-Net of the named size; `pooled_text` adds a linear projection of a pooled text
    feature (B, cross_attention_dim), passed as `class_labels`, to the timestep embedding; `film` lets that
    embedding scale and shift every ResNet block's features instead of only shifting them."""
    if size not in UNET_SIZES:
        raise KeyError(f"unknown U-Net size {size!r}; available: {', '.join(UNET_SIZES)}")
    s = UNET_SIZES[size]
    return ConditionalUNet(UNetConfig(
        in_channels=in_channels, out_channels=out_channels, cross_attention_dim=cross_attention_dim,
        block_out_channels=s.block_out_channels, down_block_types=s.down_block_types,
        up_block_types=s.up_block_types, layers_per_block=s.layers_per_block, attention_head_dim=s.heads,
        norm_num_groups=s.norm_num_groups,
        class_embed_type="projection" if pooled_text else None,
        resnet_time_scale_shift="scale_shift" if film else "default",
        projection_class_embeddings_input_dim=cross_attention_dim if pooled_text else None))
