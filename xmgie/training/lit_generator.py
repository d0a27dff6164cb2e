"""The LightningModule that trains the editing generator with a GAN discriminator (docs/model.md).

One training step is one batch: a discriminator update, then a generator update. Lightning's `global_step`
counts generator updates only (the discriminator steps through its raw optimiser), so `max_steps`,
`val_check_interval` and checkpoint intervals are all in batches.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from xmgie.checkpoints import GENERATOR_KIND as CHECKPOINT_KIND
from xmgie.errors import UserError
from xmgie.metrics.metrics import EditQuality
from xmgie.models import losses
from xmgie.models.build import build_generator
from xmgie.models.discriminator import PatchDiscriminator
from xmgie.models.config import GeneratorConfig
from xmgie.models.generator import EditGenerator
from xmgie.models.sampling import ddim_edit
from xmgie.modules.config import ModulesConfig
from xmgie.modules.identity import IdentityEmbedding, load_identity_weights
from xmgie.training.config import LossConfig, OptimConfig, SamplingConfig, coerce
from xmgie.training.distributed import average_gradients, ddp_ignore_discriminator, no_gradient_sync
from xmgie.training.ema import clip_gradients, ema_update
from xmgie.training.init_from import load_base
from xmgie.training.lr_schedule import learning_rate
from xmgie.training.stage_trainer import data_facts



class XMGIEModule(L.LightningModule):
    """Generator (+ EMA copy) and PatchGAN discriminator.

    Args:
        generator: architecture and diffusion process of the generator.
        modules: the four xMGIE modules (PFB, CAM, IE, GB), each switchable.
        loss: loss weights.
        optim: optimisers and EMA.
        sampling: conditioning dropout and DDIM editing.
        discriminator_channels / discriminator_layers: PatchGAN width and depth.
        text_source: what the generator is conditioned on: the annotated expressive "instruction" I (the method),
            the short "prompt" P (InstructPix2Pix without an instruction expander), or "expander": the
            instruction the trained expander (`expander`, `make train-expander`) writes from P and the source image
            (MGIE's "expand, then edit", end to end; greedy decoding, frozen).
        expander: the instruction-expander file used when text_source is "expander".
        inpainting: the U-Net never sees the source inside the mask, whatever the dataset's hide_masked_source
            (an inpainting model such as the GLIDE baseline: masked image + mask as its image condition).
        init_from: a trained generator checkpoint to fine-tune: when fitting starts, its U-Net, text tower, EMA
            and discriminator weights are loaded and the configured modules start fresh (`training/init_from.py`).
    """

    def __init__(self, generator: GeneratorConfig = GeneratorConfig(), modules: ModulesConfig = ModulesConfig(),
                 loss: LossConfig = LossConfig(),
                 optim: OptimConfig = OptimConfig(), sampling: SamplingConfig = SamplingConfig(),
                 discriminator_channels: int = 32, discriminator_layers: int = 2, text_source: str = "instruction",
                 expander: str | None = None, inpainting: bool = False, init_from: str | None = None):
        super().__init__()
        if text_source not in ("instruction", "prompt", "expander"):
            raise ValueError(f"text_source must be 'instruction', 'prompt' or 'expander', got {text_source!r}")
        if text_source == "expander" and not expander:
            raise ValueError("text_source 'expander' needs expander=<file> (make train-expander writes one)")
        self.text_source, self.expander_path = text_source, expander
        # frozen, saved in its own file: kept out of the module tree (no optimizer, no checkpoint bloat)
        object.__setattr__(self, "_expander", None)
        self.gen_cfg = coerce(GeneratorConfig, generator)
        self.modules_cfg = coerce(ModulesConfig, modules)
        self.loss_cfg = coerce(LossConfig, loss)
        self.optim_cfg = coerce(OptimConfig, optim)
        self.sampling_cfg = coerce(SamplingConfig, sampling)
        self.save_hyperparameters({
            "generator": dataclasses.asdict(self.gen_cfg), "modules": dataclasses.asdict(self.modules_cfg),
            "loss": dataclasses.asdict(self.loss_cfg),
            "optim": dataclasses.asdict(self.optim_cfg), "sampling": dataclasses.asdict(self.sampling_cfg),
            "discriminator_channels": discriminator_channels, "discriminator_layers": discriminator_layers,
            "text_source": text_source, "expander": expander, "inpainting": inpainting, "init_from": init_from})
        self.inpainting = inpainting
        self.init_from = init_from
        self.base_info: dict[str, Any] | None = None  # provenance of init_from's checkpoint (saved with the run)
        self.automatic_optimization = False
        self.generator = build_generator(self.gen_cfg, self.modules_cfg)
        self.ema = (build_generator(self.gen_cfg, self.modules_cfg, share=self.generator)
                    if self.optim_cfg.ema_decay > 0 else None)
        if self.ema is not None:
            self.ema.load_state_dict(self.generator.state_dict())
            self.ema.requires_grad_(False).eval()
        self.discriminator = PatchDiscriminator(discriminator_channels, discriminator_layers)
        self.val_quality = EditQuality()
        self.data_info: dict[str, Any] = {}
        self.val_examples: dict[str, Any] | None = None  # first validation batch, for the sample grid
        self.skipped: list[str] = []  # why each unreadable sample of this epoch was dropped

    # -- set-up --------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage == "fit" and str(self.trainer.precision).startswith("16"):
            raise UserError("precision 16-mixed (fp16 loss scaling) is not supported: "
                            "use --trainer.precision=bf16-mixed")
        if stage == "fit" and str(self.trainer.precision) == "bf16-true":
            raise UserError("precision bf16-true keeps the weights in bf16, where the EMA's small steps vanish: "
                            "use --trainer.precision=bf16-mixed")
        if stage == "fit":
            ddp_ignore_discriminator(self)
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None:
            return
        hide = self.inpainting or getattr(dm, "hide_masked_source", False)
        if hide != self.gen_cfg.hide_masked_source:
            self.adopt_hide_masked_source(hide, dm.name)
        self.data_info = data_facts(dm, hide)
        if stage == "fit" and self.init_from:  # before a resumed run's own checkpoint is restored over it
            self.base_info = load_base(self, self.init_from, self.hparams["generator"])
        if stage == "fit" and self.modules_cfg.ie.enabled:
            self.load_identity_encoder(self.modules_cfg.ie.weights)

    def adopt_hide_masked_source(self, hide: bool, dataset: str) -> None:
        """Follow the dataset's `hide_masked_source` (caption datasets hide the masked object). With the mask
        channel on, the U-Net's inputs are the same either way, so only the flag changes (it is saved with the
        hyperparameters); without it the architecture would differ and the user has to choose."""
        if not self.gen_cfg.mask_channel:
            raise UserError(f"dataset {dataset!r} has hide_masked_source={hide} but the generator was built with "
                            f"{self.gen_cfg.hide_masked_source} and no mask channel: set "
                            f"--model.generator.hide_masked_source={str(hide).lower()}")
        for cfg in {id(c): c for c in (self.gen_cfg, self.generator.cfg, getattr(self.ema, "cfg", None)) if c}.values():
            cfg.hide_masked_source = hide
        self.hparams["generator"]["hide_masked_source"] = hide

    def load_identity_encoder(self, weights: str | None) -> None:
        """E_id is frozen: its weights come from its own training stage (then they travel in checkpoints)."""
        if weights is None:
            raise UserError("modules.ie.enabled needs modules.ie.weights (run `make train-identity`)")
        generators = [self.generator] + ([self.ema] if self.ema is not None else [])
        for plugin in (p for g in generators for p in g.plugins if isinstance(p, IdentityEmbedding)):
            try:
                load_identity_weights(plugin.encoder, weights)
            except (FileNotFoundError, ValueError) as err:
                raise UserError(str(err)) from None

    @property
    def sampler(self) -> EditGenerator:
        """The weights edits are made with: the EMA when there is one."""
        return self.ema if self.ema is not None else self.generator

    def configure_optimizers(self):
        o = self.optim_cfg
        # fused Adam: one kernel for all parameters (3x faster than the loop on CPU)
        trainable = [p for p in self.generator.parameters() if p.requires_grad]  # not the VAE, E_id, a frozen CLIP
        # the text tower gets its own group only when its scale differs: older runs' one-group states still load
        text = {id(p) for p in self.generator.text_encoder.parameters()} if o.text_lr_scale != 1.0 else set()
        groups = [{"params": [p for p in trainable if id(p) not in text], "lr_scale": 1.0},
                  {"params": [p for p in trainable if id(p) in text], "lr_scale": o.text_lr_scale}]
        opt_g = torch.optim.Adam([g for g in groups if g["params"]], lr=o.lr, betas=o.betas, fused=True)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=o.d_lr, betas=o.betas, fused=True)
        return opt_g, opt_d

    # -- training ------------------------------------------------------------------------------
    def generator_forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Steps 1–4 of a training step: condition, noise the target, predict, and form x̂0 and X_edit."""
        src, tgt, mask = batch["source"], batch["target"], batch["mask"]
        B = src.shape[0]
        s = self.sampling_cfg
        # 1. conditioning dropout, independently for text and image (two-scale classifier-free guidance)
        text_dropped = torch.rand(B, device=src.device) < s.text_dropout
        image_dropped = torch.rand(B, device=src.device) < s.image_dropout
        if self.generator.sees_mask and not self.gen_cfg.hide_masked_source and s.mask_dropout > 0:
            unknown = (torch.rand(B, device=src.device) < s.mask_dropout)[:, None, None, None]
            mask = torch.where(unknown, torch.ones_like(mask), mask)  # "edit anywhere"
        cond = self.generator.make_condition(src, mask, self.conditioning_texts(batch), text_dropped, image_dropped)
        # 2. forward process: x_t = sqrt(ᾱ_t) z0 + sqrt(1 − ᾱ_t) ε, z0 = X_gt (or the edit residual)
        z0 = self.generator.to_diffusion_space(tgt, cond)
        T = self.gen_cfg.num_train_timesteps
        t = (torch.rand(B, device=src.device) ** self.loss_cfg.timestep_power * T).long().clamp(max=T - 1)
        noise = torch.randn_like(z0)
        x_t = self.generator.add_noise(z0, noise, t)
        # 3. the U-Net's prediction (ε, v or x0) conditioned on Z0 = [X; I] (Eq. 4)
        pred = self.generator(x_t, t, cond, noise=noise)
        # 4. x̂0 and X_edit = GB(x̂0, M) in image space (Eq. 19; GB is the identity until the module is on), for
        #    the `loss.pixel_rows` rows with the lowest t (every row by default)
        x0 = self.generator.predict_x0(x_t, t, pred)
        rows = losses.lowest_noise_rows(t, self.loss_cfg.pixel_rows)
        pixel_cond = cond if rows is None else cond.rows(rows)
        x_edit = self.generator.postprocess(x0 if rows is None else x0[rows], pixel_cond)
        return {"pred": pred, "pred_target": self.generator.prediction_target(z0, noise, t), "x_edit": x_edit,
                "target": tgt if rows is None else tgt[rows], "cond": cond, "pixel_cond": pixel_cond,
                "pixel_t": t if rows is None else t[rows]}

    def generator_terms(self, out: dict[str, Any], adversarial: bool) -> dict[str, torch.Tensor]:
        """The generator's loss terms from `generator_forward`'s output, by their weights' LossConfig names."""
        terms = {"diff": losses.mask_balanced_mse(out["pred"], out["pred_target"],
                                                  self.generator.diffusion_mask(out["cond"]))
                 if self.loss_cfg.mask_balanced else losses.diffusion_loss(out["pred"], out["pred_target"]),
                 "recon": losses.reconstruction_loss(out["x_edit"], out["target"])}
        # λ_id·|E_id(X_edit) − E_id(X_gt)|² (Eq. 16); `id_weighting: signal` weighs each row by ᾱ_t, the share of
        # x_t that is signal, so rows whose x̂0 is still a blur barely steer the identity
        weights = self.generator.alphas_cumprod[out["pixel_t"]].float() \
            if self.loss_cfg.id_weighting == "signal" else None
        for plugin in self.generator.plugins:
            terms.update(plugin.losses(out["x_edit"], out["target"], out["pixel_cond"], weights))
        if adversarial:
            terms["adv"] = losses.generator_adversarial_loss(self.discriminator(out["x_edit"]))
        return terms

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.skipped += batch.get("skipped", [])
        if "source" not in batch:  # every sample of the batch was unreadable
            return
        opt_g, opt_d = self.optimizers()
        lc, oc = self.loss_cfg, self.optim_cfg
        out = self.generator_forward(batch)
        adversarial = lc.adv > 0 and self.global_step >= lc.adv_start_step

        # 5. discriminator update on X_gt vs X_edit (Eq. 8); through the raw optimiser: not a counted step. Under
        # DDP the discriminator is outside the reducer: its backward skips the generator's buckets and its own
        # (small) gradient is averaged over the ranks by hand.
        if adversarial:
            with self.toggled_optimizer(opt_d):
                d_loss = losses.discriminator_loss(self.discriminator(out["target"]),
                                                   self.discriminator(out["x_edit"].detach()))
                opt_d.zero_grad(set_to_none=True)
                with no_gradient_sync(self.trainer.strategy):
                    self.manual_backward(d_loss)
                average_gradients(self.discriminator.parameters())
                clip_gradients(opt_d, oc.grad_clip)
                opt_d.optimizer.step()
            self.log("train/d_loss", d_loss, prog_bar=True)

        # 6. generator update: λ_diff·MSE + λ_recon·L1 (Eq. 7) + λ_adv·L_adv (Eq. 8–9) + λ_id·L_id (Eq. 16)
        with self.toggled_optimizer(opt_g):
            terms = self.generator_terms(out, adversarial)
            g_loss = sum(getattr(lc, name) * value for name, value in terms.items())
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            clip_gradients(opt_g, oc.grad_clip)
            total = self.trainer.max_steps if self.trainer.max_steps > 0 else self.global_step + 1
            lr = learning_rate(self.global_step, total, oc.lr, oc.warmup_steps, oc.schedule, oc.final_lr_ratio)
            for group in opt_g.param_groups:
                group["lr"] = group.get("lr_scale", 1.0) * lr
            opt_g.step()
        # 7. EMA of the generator's weights
        if self.ema is not None:
            ema_update(self.ema, self.generator, oc.ema_decay, self.global_step)
        self.log("train/loss", g_loss, prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in terms.items()})

    def on_fit_start(self) -> None:
        # every rank was seeded alike (the same initial weights); its t, ε and dropouts must differ
        if self.trainer.world_size > 1:
            torch.manual_seed(torch.initial_seed() + self.global_rank)

    def on_train_epoch_end(self) -> None:
        if self.skipped:  # reported once per epoch, not per sample
            rank_zero_warn(f"{len(self.skipped)} unreadable samples were skipped this epoch "
                           f"(first: {self.skipped[0]})")
            self.skipped = []

    # -- conditioning text -------------------------------------------------------------------------
    def expander(self):
        """The frozen instruction expander of text_source "expander" (loaded from its file on first use)."""
        if self._expander is None:
            from xmgie.conditioning.expander import load_expander

            try:
                model = load_expander(self.expander_path, self.device)
            except (FileNotFoundError, ValueError) as err:
                raise UserError(str(err)) from None
            object.__setattr__(self, "_expander", model.requires_grad_(False))
        return self._expander

    def conditioning_texts(self, batch: dict[str, Any]) -> list[str]:
        """The text the generator reads for each sample: batch["instruction"] or batch["prompt"], or the
        expander's instruction for (source, prompt)."""
        if self.text_source == "expander":
            return self.expander().generate(batch["source"], batch["prompt"])
        return batch[self.text_source]

    # -- validation / test: DDIM edits with the EMA weights --------------------------------------
    def edit(self, batch: dict[str, Any], steps: int | None = None, seed: int | None = 0,
             guidance_text: float | None = None, guidance_image: float | None = None,
             texts: list[str] | None = None) -> torch.Tensor:
        """DDIM edits of a batch with the sampling weights; None means the configured steps / scale. `texts`
        overrides the conditioning text (an instruction the caller already expanded)."""
        s = self.sampling_cfg
        texts = texts if texts is not None else self.conditioning_texts(batch)
        return ddim_edit(self.sampler, batch["source"], batch["mask"], texts,
                         steps=steps or s.steps,
                         guidance_text=s.guidance_text if guidance_text is None else guidance_text,
                         guidance_image=s.guidance_image if guidance_image is None else guidance_image, seed=seed,
                         source_blend=s.source_blend)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor] | None:
        """DDIM edits of the batch, scored into `val_quality`; returned so callbacks (the evaluation suite)
        can score them too."""
        if "source" not in batch:
            return None
        x_edit = self.edit(batch, steps=self.sampling_cfg.val_steps, seed=batch_idx)
        self.val_quality.update(x_edit, batch["target"], batch["source"], batch["mask"])
        if batch_idx == 0:
            self.val_examples = {"source": batch["source"][:8].cpu(), "mask": batch["mask"][:8].cpu(),
                                 "edit": x_edit[:8].cpu(), "target": batch["target"][:8].cpu(),
                                 "prompt": batch["prompt"][:8]}
        return {"edit": x_edit}

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor] | None:
        return self.validation_step(batch, batch_idx)

    def _log_quality(self, prefix: str) -> None:
        values = self.val_quality.compute()
        gain = values.pop("psnr_gain")
        self.log_dict({f"{prefix}/{k}": v.float() for k, v in values.items()})
        self.log(f"{prefix}/psnr_gain", gain.float(), prog_bar=True)
        self.val_quality.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_quality("val")

    def on_test_epoch_end(self) -> None:
        self._log_quality("test")

    # -- checkpoints ---------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["xmgie"] = {"kind": CHECKPOINT_KIND, **self.data_info}
        if self.base_info is not None:
            checkpoint["xmgie"]["base"] = self.base_info

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.data_info = dict(checkpoint.get("xmgie", {}))
        self.data_info.pop("kind", None)
        self.base_info = self.data_info.pop("base", None)
