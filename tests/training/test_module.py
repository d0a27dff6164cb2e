import csv
from pathlib import Path

import pytest
import torch

from data_modules.base import collate
from data_modules.synthetic import ShapesDataModule
from tests.conftest import fit
from xmgie.conditioning import TextEncoderConfig
from xmgie.models import GeneratorConfig
from xmgie.training.config import LossConfig, OptimConfig, SamplingConfig, coerce
from xmgie.training.ema import ema_update
from xmgie.training.lit_generator import XMGIEModule

MICRO = GeneratorConfig(size="micro", text=TextEncoderConfig(width=32, layers=1, heads=2))


def _batch(n=4, res=16):
    ds = ShapesDataModule(resolution=res).dataset("train")
    return collate([ds[i] for i in range(n)])


def _module(**loss):
    torch.manual_seed(0)
    return XMGIEModule(generator=MICRO, loss=LossConfig(**loss), discriminator_channels=8,
                       sampling=SamplingConfig(steps=2, val_steps=2))


@pytest.mark.parametrize("term", ["diff", "recon", "adv"])
def test_each_generator_loss_term_trains_the_generator(term):
    """With only one λ non-zero, that term alone gives the U-Net a finite, non-zero gradient."""
    weights = {"diff": 0.0, "recon": 0.0, "adv": 0.0, term: 1.0}
    m = _module(**weights)
    out = m.generator_forward(_batch())
    from xmgie.models import losses

    value = {"diff": lambda: losses.diffusion_loss(out["pred"], out["pred_target"]),
             "recon": lambda: losses.reconstruction_loss(out["x_edit"], _batch()["target"]),
             "adv": lambda: losses.generator_adversarial_loss(m.discriminator(out["x_edit"]))}[term]()
    value.backward()
    grads = [p.grad for p in m.generator.unet.parameters() if p.grad is not None]
    assert torch.isfinite(value) and grads and sum(g.abs().sum() for g in grads) > 0


def test_discriminator_loss_trains_only_the_discriminator():
    m = _module()
    out = m.generator_forward(_batch())
    from xmgie.models import losses

    d_loss = losses.discriminator_loss(m.discriminator(_batch()["target"]), m.discriminator(out["x_edit"].detach()))
    d_loss.backward()
    assert all(p.grad is None for p in m.generator.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.discriminator.parameters())


def test_ema_update_formula():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = a.weight.detach().clone()
    d = ema_update(a, b, decay=0.99, step=1000)
    assert d == 0.99
    assert torch.allclose(a.weight, 0.99 * before + 0.01 * b.weight.detach())
    assert ema_update(a, b, decay=0.99, step=0) == pytest.approx(0.1)  # warm-up: (1+0)/(10+0)


def test_configs_reject_bad_values_and_coerce_dicts():
    with pytest.raises(ValueError, match="prediction_type"):
        GeneratorConfig(prediction_type="noise")
    with pytest.raises(ValueError, match="non-negative"):
        LossConfig(adv=-1)
    with pytest.raises(ValueError, match="ema_decay"):
        OptimConfig(ema_decay=1.0)
    cfg = coerce(GeneratorConfig, {"size": "micro", "text": {"width": 32, "layers": 1, "heads": 2}})
    assert isinstance(cfg.text, TextEncoderConfig) and cfg.text.width == 32


def _losses(run: Path) -> list[float]:
    with open(run / "metrics.csv") as f:
        return [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]


def test_training_step_counting_artifacts_and_reproducibility(tmp_path):
    a = fit(tmp_path / "a")
    b = fit(tmp_path / "b")
    ckpt = torch.load(a / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 4  # generator updates = batches; D steps are not counted
    assert ckpt["xmgie"] == {"kind": "xmgie-generator", "dataset": "shapes", "resolution": 16,
                             "hide_masked_source": False}  # a generated dataset: no root
    assert (a / "checkpoints" / "best.ckpt").is_file() and (a / "metrics.json").is_file()
    assert sorted(p.name for p in (a / "samples").iterdir()) == ["step_000002.png", "step_000004.png"]
    la, lb = _losses(a), _losses(b)
    assert len(la) == 4 and la == lb  # same seed, same loss curve on CPU


def test_resume_continues_from_last_checkpoint(tmp_path):
    run = fit(tmp_path / "r", "--trainer.max_steps=2")
    first = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert first["global_step"] == 2
    fit(run, "--trainer.max_steps=4", f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}")
    second = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert second["global_step"] == 4
    assert len(second["callbacks"]) and any("history" in v for v in second["callbacks"].values())
    # the resumed run started from the saved weights: its optimiser state has 4 steps of Adam, not 2
    state = second["optimizer_states"][0]["state"]
    assert int(next(iter(state.values()))["step"]) == 4


def test_interrupt_saves_last_checkpoint(tmp_path, monkeypatch):
    """Ctrl-C mid-run: Lightning stops gracefully and the exception checkpoint is the resume point."""
    calls = {"n": 0}
    original = XMGIEModule.training_step

    def interrupted(self, batch, batch_idx):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, batch, batch_idx)

    monkeypatch.setattr(XMGIEModule, "training_step", interrupted)
    run = tmp_path / "i"
    with pytest.raises(SystemExit):  # Lightning exits after a KeyboardInterrupt with status 1
        fit(run, "--trainer.max_steps=10", "--checkpoint_every=100")
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2


def test_text_source_selects_prompt_or_instruction(monkeypatch):
    seen = {}
    m = XMGIEModule(generator=MICRO, text_source="prompt", discriminator_channels=8)
    original = m.generator.make_condition

    def spy(source, mask, texts, *args, **kwargs):
        seen["texts"] = list(texts)
        return original(source, mask, texts, *args, **kwargs)

    monkeypatch.setattr(m.generator, "make_condition", spy)
    batch = _batch()
    m.generator_forward(batch)
    assert seen["texts"] == batch["prompt"]
    with pytest.raises(ValueError, match="text_source"):
        XMGIEModule(generator=MICRO, text_source="caption")


def test_mask_dropout_shows_the_unknown_mask(monkeypatch):
    gen = GeneratorConfig(size="micro", mask_channel=True, text=TextEncoderConfig(width=32, layers=1, heads=2))
    m = XMGIEModule(generator=gen, sampling=SamplingConfig(mask_dropout=0.5), discriminator_channels=8)
    masks = []
    original = m.generator.make_condition
    monkeypatch.setattr(m.generator, "make_condition",
                        lambda s, mask, *a, **k: masks.append(mask) or original(s, mask, *a, **k))
    torch.manual_seed(1)
    batch = _batch(n=16)
    m.generator_forward(batch)
    replaced = [bool((masks[0][i] == 1).all()) and not bool((batch["mask"][i] == 1).all()) for i in range(16)]
    kept = [torch.equal(masks[0][i], batch["mask"][i]) for i in range(16)]
    assert any(replaced) and any(kept) and all(r or k for r, k in zip(replaced, kept))


def test_timestep_power_shifts_training_towards_high_noise(monkeypatch):
    """p = 0.5 draws t = T·u^0.5: mean 2T/3 instead of T/2 (checked on the t the U-Net receives)."""
    seen = []
    m = XMGIEModule(generator=MICRO, loss=LossConfig(timestep_power=0.5), discriminator_channels=8)
    original = m.generator.forward
    monkeypatch.setattr(m.generator, "forward", lambda x, t, *a, **k: seen.append(t) or original(x, t, *a, **k))
    torch.manual_seed(0)
    for _ in range(8):
        m.generator_forward(_batch(n=16))
    t = torch.cat(seen).float()
    assert abs(t.mean().item() - 2 * 1000 / 3) < 60 and t.min() >= 0 and t.max() <= 999
    with pytest.raises(ValueError, match="timestep_power"):
        LossConfig(timestep_power=0)


def test_text_lr_scale_gives_the_text_tower_its_own_learning_rate(tmp_path):
    """text_lr_scale puts the text tower in a second Adam group at that multiple of the scheduled rate; at 1 there
    is one group (older runs' optimiser states keep loading)."""
    m = XMGIEModule(generator=MICRO, optim=OptimConfig(lr=1e-3, text_lr_scale=0.25))
    text = {id(p) for p in m.generator.text_encoder.parameters()}
    groups = m.configure_optimizers()[0].param_groups
    assert [g["lr_scale"] for g in groups] == [1.0, 0.25]
    assert {id(p) for p in groups[1]["params"]} == text and not text & {id(p) for p in groups[0]["params"]}
    assert len(XMGIEModule(generator=MICRO).configure_optimizers()[0].param_groups) == 1
    run = fit(tmp_path, "--model.optim.text_lr_scale=0.25", "--model.optim.warmup_steps=8")
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    unet_lr, text_lr = (g["lr"] for g in state["optimizer_states"][0]["param_groups"])
    assert unet_lr == pytest.approx(1e-3 * 4 / 8)  # the smoke config's lr, at warm-up step 4 of 8
    assert text_lr == pytest.approx(0.25 * unet_lr)


def test_pixel_rows_decode_only_the_least_noisy_rows():
    """loss.pixel_rows = k: X_edit (and the targets it is compared with) are the k rows with the lowest t,
    equal to those rows of the every-row forward under the same draws."""
    from xmgie.models import losses

    t = torch.tensor([900, 10, 500, 10, 3])
    assert sorted(losses.lowest_noise_rows(t, 3).tolist()) == [1, 3, 4]
    assert losses.lowest_noise_rows(t, 0) is None and losses.lowest_noise_rows(t, 5) is None
    batch = _batch(n=6)
    every, some = _module(), _module(pixel_rows=2)
    torch.manual_seed(3)
    full = every.generator_forward(batch)
    torch.manual_seed(3)
    part = some.generator_forward(batch)
    T = every.gen_cfg.num_train_timesteps
    torch.manual_seed(3)
    torch.rand(6), torch.rand(6)  # the two dropout draws come first
    drawn = (torch.rand(6) ** every.loss_cfg.timestep_power * T).long().clamp(max=T - 1)
    rows = losses.lowest_noise_rows(drawn, 2)
    assert part["x_edit"].shape[0] == 2 and part["pixel_cond"].mask.shape[0] == 2
    torch.testing.assert_close(part["x_edit"], full["x_edit"][rows])
    torch.testing.assert_close(part["target"], batch["target"][rows])
    torch.testing.assert_close(part["pred"], full["pred"])  # the denoising term still sees every row
    with pytest.raises(ValueError, match="pixel_rows"):
        LossConfig(pixel_rows=-1)


def test_a_training_step_with_pixel_rows_runs(tmp_path):
    fit(tmp_path, "--model.loss.pixel_rows=2", "--trainer.max_steps=2")
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("weighting", ["uniform", "signal"])
def test_the_identity_losss_row_weights_follow_loss_id_weighting(weighting):
    from xmgie.modules.plugin import EditPlugin

    seen = []

    class Recorder(EditPlugin):
        def losses(self, x_edit, target, cond, weights=None):
            seen.append(weights)
            return {}

    module = XMGIEModule(generator=MICRO, loss=LossConfig(id_weighting=weighting), discriminator_channels=8)
    module.generator.plugins.append(Recorder())
    dm = ShapesDataModule(resolution=16, batch_size=4, num_workers=0)
    batch = collate([dm.dataset("train")[i] for i in range(4)])
    out = module.generator_forward(batch)
    module.generator_terms(out, adversarial=False)
    want = module.generator.alphas_cumprod[out["pixel_t"]] if weighting == "signal" else None
    assert (seen[-1] is None) if want is None else torch.equal(seen[-1], want)
