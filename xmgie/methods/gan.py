"""What the one-pass GAN baselines (SISGAN, TAGAN, ManiGAN, HiFill) share: a LightningModule that trains a
generator G(source, mask, text) against a discriminator, and edits with one forward pass.

Every baseline sees what xMGIE sees — the source, the edit mask and the user's prompt P (`text_source`) — and is
trained on the same data, resolution, batch size and number of steps, with the framework's supervised term
λ_recon·|G(x) − X_gt|₁ (paper weight 1.0; the originals get the same role from reconstructing the image under its
own caption) and the framework's non-saturating adversarial loss. The text tower is the framework's CLIP-style
`TextEncoder`, trained from scratch with G (the originals load a pretrained sentence/word encoder, which this
machine does not have); discriminators read its features detached.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import lightning as L
import torch
from torch import nn

from xmgie.checkpoints import BASELINE_KIND as CHECKPOINT_KIND
from xmgie.conditioning.text_encoder import TextEncoder, TextEncoderConfig, word_tokens
from xmgie.metrics.metrics import EditQuality
from xmgie.models import losses
from xmgie.training.config import coerce
from xmgie.training.ema import clip_gradients


class Text(NamedTuple):
    """words (B, T, D) token features; valid (B, T) bool: real words (not start/end/padding); sentence (B, D)."""

    words: torch.Tensor
    valid: torch.Tensor
    sentence: torch.Tensor

    def detach(self) -> "Text":
        return Text(self.words.detach(), self.valid, self.sentence.detach())

    def roll(self) -> "Text":
        """Each sample gets the next sample's text: the mismatching text of a matching-aware discriminator."""
        return Text(*(t.roll(1, dims=0) for t in self))


@dataclass
class GANConfig:
    """Sizes and weights shared by the GAN baselines.

    Attributes:
        channels: base width of the generator and discriminator.
        text: the text tower.
        recon / adv: λ_recon and λ_adv (the framework's paper weights 1.0 and 0.1).
        lr / betas: Adam for G (+ text tower) and D.
        grad_clip: max gradient norm of each update (0 = off).
    """

    channels: int = 32
    text: TextEncoderConfig = dataclasses.field(default_factory=lambda: TextEncoderConfig(width=64, layers=2))
    recon: float = 1.0
    adv: float = 0.1
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)


class GANBaseline(L.LightningModule):
    """Subclasses set METHOD, define `build(cfg)` (it creates `self.G` and `self.D`) and may override `generate`,
    `discriminator_loss`, `fake_logits` and `generator_losses`.

    Args:
        cfg: GANConfig (or its dict, as checkpoints store it).
        text_source: which batch field the text comes from ("prompt": what the user types; "instruction").
    """

    METHOD = ""
    sampling_cfg = None  # a one-pass editor (xmgie.editor.Editor): no DDIM steps, no guidance scales

    def __init__(self, cfg: GANConfig | dict | None = None, text_source: str = "prompt"):
        super().__init__()
        self.cfg = coerce(GANConfig, cfg)
        self.text_source = text_source
        self.save_hyperparameters({"cfg": dataclasses.asdict(self.cfg), "text_source": text_source})
        self.automatic_optimization = False
        self.text_encoder = TextEncoder(self.cfg.text)
        self.build(self.cfg)
        self.val_quality = EditQuality()
        self.data_info: dict[str, Any] = {}

    # -- text ------------------------------------------------------------------------------------
    def encode_text(self, texts: list[str]) -> Text:
        tokens = self.text_encoder.tokenize(texts).to(self.device)                 # (B, T)
        words, sentence = self.text_encoder(tokens)                                  # (B, T, D), (B, D)
        return Text(words, word_tokens(tokens), sentence)

    # -- the three things a baseline defines -----------------------------------------------------------
    def generate(self, source: torch.Tensor, mask: torch.Tensor, text: Text) -> dict[str, torch.Tensor]:
        """{"edit": (B, 3, H, W), optionally intermediate outputs other losses read}."""
        return {"edit": self.G(source, mask, text)}

    def discriminator_loss(self, batch: dict[str, Any], out: dict[str, torch.Tensor], text: Text) -> torch.Tensor:
        """Default: unconditional PatchGAN on X_gt vs the edit (Eq. 8)."""
        return losses.discriminator_loss(self.D(batch["target"]), self.D(out["edit"].detach()))

    def fake_logits(self, edit: torch.Tensor, text: Text) -> torch.Tensor:
        """D's logits for a generated image, as G's adversarial term reads them (text detached)."""
        return self.D(edit)

    def generator_losses(self, batch: dict[str, Any], out: dict[str, torch.Tensor],
                         text: Text) -> dict[str, torch.Tensor]:
        """Weighted terms of G's loss by name; default λ_recon·L1 (Eq. 7) + λ_adv·L_adv (Eq. 8)."""
        return {"recon": self.cfg.recon * losses.reconstruction_loss(out["edit"], batch["target"]),
                "adv": self.cfg.adv * losses.generator_adversarial_loss(self.fake_logits(out["edit"], text.detach()))}

    # -- training ------------------------------------------------------------------------------
    def configure_optimizers(self):
        g_params = [p for n, p in self.named_parameters() if not n.startswith("D.")]
        opt_g = torch.optim.Adam(g_params, lr=self.cfg.lr, betas=self.cfg.betas)
        opt_d = torch.optim.Adam(self.D.parameters(), lr=self.cfg.lr, betas=self.cfg.betas)
        return opt_g, opt_d

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        if "source" not in batch:  # every sample of the batch was unreadable
            return
        opt_g, opt_d = self.optimizers()
        text = self.encode_text(batch[self.text_source])
        out = self.generate(batch["source"], batch["mask"], text)
        # 1. discriminator update (its raw optimiser: Lightning's global_step counts G updates only)
        with self.toggled_optimizer(opt_d):
            d_loss = self.discriminator_loss(batch, out, text.detach())
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            opt_d.optimizer.step()
        # 2. generator update
        with self.toggled_optimizer(opt_g):
            terms = self.generator_losses(batch, out, text)
            g_loss = sum(terms.values())
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            clip_gradients(opt_g, self.cfg.grad_clip)
            opt_g.step()
        self.log_dict({"train/d_loss": d_loss, "train/loss": g_loss, **{f"train/{k}": v for k, v in terms.items()}},
                      prog_bar=False)

    # -- editing: the same interface as XMGIEModule.edit ---------------------------------------------
    @torch.no_grad()
    def edit(self, batch: dict[str, Any], steps: int | None = None, seed: int | None = 0,
             guidance_text: float | None = None, guidance_image: float | None = None,
             texts: list[str] | None = None) -> torch.Tensor:
        """(B, 3, H, W) edits in [-1, 1]; steps and guidance scales do not apply to a one-pass generator."""
        text = self.encode_text(texts if texts is not None else batch[self.text_source])
        return self.generate(batch["source"], batch["mask"], text)["edit"].float().clamp(-1, 1)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        if "source" in batch:
            self.val_quality.update(self.edit(batch), batch["target"], batch["source"], batch["mask"])

    def on_validation_epoch_end(self) -> None:
        self.log_dict({f"val/{k}": v.float() for k, v in self.val_quality.compute().items()})
        self.val_quality.reset()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["xmgie"] = {"kind": CHECKPOINT_KIND, "method": self.METHOD, **self.data_info}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.data_info = {k: v for k, v in checkpoint.get("xmgie", {}).items() if k not in ("kind", "method")}


def down(c_in: int, c_out: int) -> nn.Sequential:
    """Stride-2 conv block: (B, c_in, H, W) -> (B, c_out, H/2, W/2)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 4, 2, 1), nn.GroupNorm(8, c_out), nn.LeakyReLU(0.2))


def up(c_in: int, c_out: int) -> nn.Sequential:
    """Nearest upsampling + conv: (B, c_in, H, W) -> (B, c_out, 2H, 2W)."""
    return nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(c_in, c_out, 3, 1, 1),
                         nn.GroupNorm(8, c_out), nn.ReLU())


class ResBlock(nn.Module):
    """x + conv(relu(norm(conv(x)))), same shape."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.GroupNorm(8, c), nn.ReLU(), nn.Conv2d(c, c, 3, 1, 1),
                                  nn.GroupNorm(8, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def tile(vector: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B, D) -> (B, D, h, w) repeated over the spatial grid of `like` (B, C, h, w)."""
    return vector[:, :, None, None].expand(-1, -1, *like.shape[-2:])
