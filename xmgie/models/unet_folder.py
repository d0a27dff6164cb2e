"""A U-Net in a diffusers model folder (`unet/` of Stable Diffusion or InstructPix2Pix): config.json and the
weights, read into and written from `ConditionalUNet` without diffusers.

    unet/config.json                                   the reference's config keys (UNetConfig.from_dict)
    unet/diffusion_pytorch_model.safetensors           weights (or its fp16 variant, shards listed by a
                                                       .safetensors.index.json, or a .bin)
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from xmgie.models.unet2d import ConditionalUNet, UNetConfig

CONFIG = "config.json"
WEIGHTS = "diffusion_pytorch_model.safetensors"
HALF = "diffusion_pytorch_model.fp16.safetensors"  # the variant a `--include "*fp16*"` download leaves
SHARD_INDEX = WEIGHTS + ".index.json"
PICKLED = "diffusion_pytorch_model.bin"


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """The folder's weights: one safetensors file (full or half precision), shards listed by an index, or a pickled
    .bin read weights-only (no code runs). FileNotFoundError naming what was looked for."""
    from safetensors.torch import load_file

    for name in (WEIGHTS, HALF):
        if (folder / name).is_file():
            return load_file(folder / name)
    if (folder / SHARD_INDEX).is_file():
        shards = sorted(set(json.loads((folder / SHARD_INDEX).read_text())["weight_map"].values()))
        return {k: v for shard in shards for k, v in load_file(folder / shard).items()}
    if (folder / PICKLED).is_file():
        return torch.load(folder / PICKLED, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{folder} has no U-Net weights ({WEIGHTS}, {HALF}, {SHARD_INDEX} or {PICKLED})")


def load_unet_folder(folder: str | Path) -> ConditionalUNet:
    """The U-Net of a diffusers folder, in float32. ValueError for an architecture this U-Net does not implement or
    weights that do not fit it; FileNotFoundError for a missing file."""
    folder = Path(folder)
    if not (folder / CONFIG).is_file():
        raise FileNotFoundError(f"{folder / CONFIG} not found")
    unet = ConditionalUNet(UNetConfig.from_dict(json.loads((folder / CONFIG).read_text())))
    try:
        unet.load_state_dict(read_state_dict(folder), strict=True)  # half-precision files load as float32
    except RuntimeError as err:
        raise ValueError(f"{folder}: the weights do not fit the config: {str(err).splitlines()[0]}") from None
    return unet


def save_unet_folder(unet: ConditionalUNet, folder: str | Path) -> Path:
    """Write `unet` as a diffusers folder (config.json + safetensors) that diffusers' UNet2DConditionModel and
    `load_unet_folder` both read."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG).write_text(json.dumps(unet.config.to_dict(), indent=2) + "\n")
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, folder / WEIGHTS, metadata={"format": "pt"})
    return folder
