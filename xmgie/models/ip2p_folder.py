"""Writing a randomly initialised folder in the exact `timbrooks/instruct-pix2pix` layout, so the latent path
(loading, training, sampling, `xmgie edit`) can be tried and tested with no download:

    model_index.json  unet/  vae/  text_encoder/  tokenizer/  scheduler/

Each part is written in its library's format (the U-Net by `save_unet_folder`, the others by `save_pretrained`, so
that diffusers and transformers read the folder too); the tokenizer's vocabulary is built from the BPE file
that ships with open_clip. The weights are random: edits from such a folder are noise.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import EulerAncestralDiscreteScheduler

from xmgie.conditioning.clip_text import random_clip_text, write_clip_tokenizer_files
from xmgie.models.backbone import LATENT_SIZES, random_vae
from xmgie.models.unet_sizes import build_unet
from xmgie.models.unet_folder import save_unet_folder

# InstructPix2Pix's noise schedule (Stable Diffusion 1.5's) and its pipeline's index
SD_SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
               "beta_schedule": "scaled_linear", "prediction_type": "epsilon"}
MODEL_INDEX = {
    "_class_name": "StableDiffusionInstructPix2PixPipeline",
    "feature_extractor": [None, None], "safety_checker": [None, None], "requires_safety_checker": False,
    "scheduler": ["diffusers", "EulerAncestralDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
}


def write_ip2p_folder(folder: str | Path, size: str = "ip2p-mini", seed: int = 0, unet_in_channels: int = 8) -> Path:
    """Write random weights of a latent `size` in the InstructPix2Pix layout under `folder`.

    unet_in_channels: 8 as InstructPix2Pix (noisy + source latent); 4 gives a plain Stable Diffusion U-Net,
    which loading widens with zero weights.
    """
    if size not in LATENT_SIZES:
        raise ValueError(f"unknown latent size {size!r}; available: {', '.join(LATENT_SIZES)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    s = LATENT_SIZES[size]
    torch.manual_seed(seed)
    save_unet_folder(build_unet(size, in_channels=unet_in_channels, out_channels=s.latent_channels,
                                cross_attention_dim=s.text_width), folder / "unet")
    random_vae(s).save_pretrained(folder / "vae")
    random_clip_text(s.text_width, s.text_layers, s.text_heads, s.text_intermediate).save_pretrained(
        folder / "text_encoder")
    write_clip_tokenizer_files(folder / "tokenizer")
    EulerAncestralDiscreteScheduler(**SD_SCHEDULE).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps(MODEL_INDEX, indent=2))
    return folder
