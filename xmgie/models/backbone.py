"""The parts a generator is made of — U-Net, text tower, latent codec (VAE) and noise schedule — for each named
size (docs/model.md): built at random init from the size tables, or, for a latent size, loaded from a local diffusers
folder in the `timbrooks/instruct-pix2pix` layout (`pretrained`). Nothing is fetched from a hub here.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from xmgie.conditioning.clip_text import CLIPText, hf_tokenize, open_clip_tokenize, random_clip_text
from xmgie.conditioning.text_encoder import END_TOKEN, START_TOKEN, TextEncoder
from xmgie.errors import UserError
from xmgie.models.config import GeneratorConfig
from xmgie.models.latent import LatentCodec, widen_conv_in
from xmgie.models.noise_schedule import SCHEDULE_FIELDS, NoiseSchedule
from xmgie.models.unet_sizes import UNET_SIZES, build_unet
from xmgie.models.unet2d import ConditionalUNet
from xmgie.models.unet_folder import load_unet_folder

if TYPE_CHECKING:
    from diffusers import AutoencoderKL


IP2P_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


@dataclass(frozen=True)
class LatentSize:
    """The VAE and text tower of a latent size (its U-Net is in UNET_SIZES), for random initialisation."""

    vae_channels: tuple[int, ...]
    vae_layers: int
    vae_groups: int
    latent_channels: int
    text_width: int
    text_layers: int
    text_heads: int
    text_intermediate: int


LATENT_SIZES: dict[str, LatentSize] = {
    # Stable Diffusion 1.5 / InstructPix2Pix: VAE f = 8 (83.7M), CLIP ViT-L/14 text tower (123M)
    "ip2p": LatentSize((128, 256, 512, 512), 2, 32, 4, 768, 12, 12, 3072),
    # the same structure at a size a CPU runs in a test: VAE f = 2, 2-layer text tower
    "ip2p-mini": LatentSize((16, 32), 1, 8, 4, 32, 2, 2, 64),
}


@dataclass
class Backbone:
    """unet: the denoiser; text_encoder: TextEncoder or CLIPText; codec: the VAE (None in pixel space);
    schedule: the training noise schedule."""

    unet: ConditionalUNet
    text_encoder: nn.Module
    codec: LatentCodec | None
    schedule: NoiseSchedule

    @property
    def special_tokens(self) -> tuple[int, int]:
        return getattr(self.text_encoder, "special_tokens", (START_TOKEN, END_TOKEN))


def unet_in_channels(cfg: GeneratorConfig, channels: int) -> int:
    """Noisy image + source (+ the mask channel), all in the diffusion's space (Eq. 4)."""
    return 2 * channels + int(cfg.hide_masked_source or cfg.mask_channel)


def config_schedule(cfg: GeneratorConfig) -> NoiseSchedule:
    return NoiseSchedule(**{k: getattr(cfg, k) for k in SCHEDULE_FIELDS})


def build_backbone(cfg: GeneratorConfig, share: Backbone | None = None) -> Backbone:
    """The parts of a generator of `cfg`.

    `share`: another generator's backbone (the EMA copy's source). Its frozen parts (VAE, a frozen text tower)
    and schedule are reused, not copied; its U-Net's architecture is rebuilt without loading weights (the
    caller copies the state)."""
    if share is not None:
        text = share.text_encoder
        if any(p.requires_grad for p in text.parameters()):
            text = copy.deepcopy(text)
        return Backbone(ConditionalUNet(share.unet.config), text, share.codec, share.schedule)
    if not UNET_SIZES[cfg.size].latent:
        text = TextEncoder(cfg.text)
        unet = build_unet(cfg.size, in_channels=unet_in_channels(cfg, 3), out_channels=3,
                          cross_attention_dim=cfg.text.width, pooled_text=cfg.pooled_text, film=cfg.film)
        return Backbone(unet, text, None, config_schedule(cfg))
    if cfg.pretrained:
        return load_pretrained_backbone(cfg)
    s = LATENT_SIZES[cfg.size]
    text = CLIPText(random_clip_text(s.text_width, s.text_layers, s.text_heads, s.text_intermediate),
                    open_clip_tokenize(77), (START_TOKEN, END_TOKEN), trainable=cfg.train_text_encoder)
    codec = LatentCodec(random_vae(s))
    unet = build_unet(cfg.size, in_channels=unet_in_channels(cfg, s.latent_channels), out_channels=s.latent_channels,
                      cross_attention_dim=s.text_width, pooled_text=cfg.pooled_text, film=cfg.film)
    return Backbone(unet, text, codec, config_schedule(cfg))


def random_vae(s: LatentSize) -> "AutoencoderKL":
    from diffusers import AutoencoderKL

    n = len(s.vae_channels)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=s.vae_channels,
                         layers_per_block=s.vae_layers, latent_channels=s.latent_channels,
                         norm_num_groups=s.vae_groups)


def resolve_pretrained(name_or_path: str) -> Path:
    """A folder path, or the weights registry's name `ip2p` (`xmgie weights fetch ip2p` puts it there)."""
    if name_or_path == "ip2p":
        from xmgie.weights import path_of

        return path_of("ip2p")
    return Path(name_or_path).expanduser()


def check_ip2p_folder(folder: Path) -> None:
    """One-line UserError unless `folder` has the InstructPix2Pix layout."""
    if not folder.is_dir():
        raise UserError(f"pretrained folder not found: {folder} (a diffusers folder in the timbrooks/instruct-pix2pix "
                        f"layout; `xmgie weights fetch ip2p` downloads it on a networked machine)")
    missing = [p for p in (*IP2P_PARTS, "model_index.json") if not (folder / p).exists()]
    if missing:
        raise UserError(f"{folder} is not an InstructPix2Pix folder: missing {', '.join(missing)} "
                        f"(expected {', '.join(IP2P_PARTS)} and model_index.json)")


def load_pretrained_backbone(cfg: GeneratorConfig) -> Backbone:
    """The parts from a local folder (never a hub).

    1. check the layout; 2. load U-Net, VAE, CLIP text tower + tokenizer and the schedule (local files only);
    3. the config's noise schedule must be the folder's (a silently different schedule would be a different
    model); 4. widen conv_in with zero weights when the config needs more inputs (the mask channel; 4 -> 8 for a
    plain Stable Diffusion folder), so the pretrained behaviour is unchanged at initialisation.
    """
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = resolve_pretrained(cfg.pretrained)
    check_ip2p_folder(folder)  # 1.
    try:  # 2.
        unet = load_unet_folder(folder / "unet")
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", local_files_only=True)
        text_model = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", local_files_only=True)
        tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer", local_files_only=True)
        schedule = read_schedule(folder / "scheduler" / "scheduler_config.json")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"cannot load the pretrained folder {folder}: {type(err).__name__}: "
                        f"{str(err).splitlines()[0]}") from None
    wrong = [f"--model.generator.{k}={getattr(schedule, k)}" for k in SCHEDULE_FIELDS  # 3.
             if getattr(schedule, k) != getattr(cfg, k)]
    if wrong:
        raise UserError(f"the noise schedule of {folder} differs from the config: set {' '.join(wrong)}")
    codec = LatentCodec(vae)
    if unet.config.out_channels != codec.channels or unet.config.cross_attention_dim != text_model.config.hidden_size:
        raise UserError(f"{folder}: the U-Net (out {unet.config.out_channels}, cross-attention "
                        f"{unet.config.cross_attention_dim}) does not fit the VAE ({codec.channels} latent channels) "
                        f"and text encoder (width {text_model.config.hidden_size})")
    if cfg.pooled_text or cfg.film:
        raise UserError("pooled_text and film change the U-Net's architecture: switch them off with a pretrained "
                        "folder")
    try:
        widen_conv_in(unet, unet_in_channels(cfg, codec.channels))  # 4.
    except ValueError as err:
        raise UserError(f"{folder}: {err}") from None
    special = (tokenizer.bos_token_id, tokenizer.eos_token_id)
    text = CLIPText(text_model, hf_tokenize(tokenizer), special, trainable=cfg.train_text_encoder)
    return Backbone(unet, text, codec, schedule)


def read_schedule(path: Path) -> NoiseSchedule:
    """The forward process of a diffusers scheduler_config.json (any scheduler class: only the process is read;
    NoiseSchedule's defaults, diffusers', fill what the file leaves out)."""
    config = json.loads(path.read_text())
    return NoiseSchedule(**{k: config[k] for k in SCHEDULE_FIELDS if k in config})
