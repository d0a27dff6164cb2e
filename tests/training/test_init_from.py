"""Fine-tuning from a trained editor (`--model.init_from`): exact loading, clear refusals, provenance."""
import hashlib
import json

import pytest
import torch

from tests.conftest import fit
from tests.test_cli import run_cli
from xmgie.cli import main
from xmgie.editor import load_generator_module
from xmgie.errors import UserError
from xmgie.modules.identity import SmallIdentityCNN, save_identity_encoder
from xmgie.training.lit_generator import XMGIEModule
from xmgie.training.init_from import is_module_key, load_base

ALL_ON = {"pfb": {"enabled": True, "layers": ["mid", "up0"], "alpha_init": 0.95}, "cam": {"enabled": True},
          "ie": {"enabled": True, "dim": 16, "attention": "decoupled"},
          "gb": {"enabled": True, "sigma_max": 0.5, "sigma_s": 1.0}}


def _base(smoke_run):
    path = smoke_run / "checkpoints" / "last.ckpt"
    return path, torch.load(path, map_location="cpu", weights_only=False)


def _module(hp, **changes):
    torch.manual_seed(1)  # weights unlike the base's
    return XMGIEModule(**{**hp, "init_from": None, **changes})


def test_every_shared_tensor_loads_exactly_and_only_the_modules_start_fresh(smoke_run):
    path, ckpt = _base(smoke_run)
    module = _module(ckpt["hyper_parameters"], modules=ALL_ON)
    fresh = {k: v.clone() for k, v in module.state_dict().items() if is_module_key(k)}
    info = load_base(module, path, module.hparams["generator"])
    state = module.state_dict()
    base = ckpt["state_dict"]
    assert set(base) <= set(state) and all(is_module_key(k) for k in set(state) - set(base))
    for k, v in base.items():
        assert torch.equal(state[k], v), k
    assert any(k.startswith("ema.unet.") for k in base) and any(k.startswith("discriminator.") for k in base)
    for k, v in fresh.items():  # the modules keep their initial values (E_id's come from its own file later)
        assert torch.equal(state[k], v), k
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["loaded_tensors"] == len(base) and info["fresh_module_tensors"] == len(fresh)


def test_a_mismatched_base_is_a_one_line_error_naming_what_differs(smoke_run, tmp_path):
    path, ckpt = _base(smoke_run)
    hp = ckpt["hyper_parameters"]
    other = _module(hp, generator={**hp["generator"], "prediction_type": "epsilon"})
    with pytest.raises(UserError, match="prediction_type='sample'"):
        load_base(other, path, other.hparams["generator"])
    missing = dict(ckpt, state_dict={k: v for k, v in ckpt["state_dict"].items()
                                     if k != "generator.unet.conv_in.weight"})
    torch.save(missing, tmp_path / "missing.ckpt")
    module = _module(hp)
    with pytest.raises(UserError, match="has no generator.unet.conv_in.weight"):
        load_base(module, tmp_path / "missing.ckpt", module.hparams["generator"])
    extra = dict(ckpt, state_dict={**ckpt["state_dict"], "generator.plugins.0.alpha_logit": torch.zeros(2)})
    torch.save(extra, tmp_path / "extra.ckpt")
    with pytest.raises(UserError, match="this run has no generator.plugins.0.alpha_logit"):
        load_base(module, tmp_path / "extra.ckpt", module.hparams["generator"])
    wrong = dict(ckpt, state_dict={**ckpt["state_dict"], "generator.unet.conv_in.bias": torch.zeros(3)})
    torch.save(wrong, tmp_path / "wrong.ckpt")
    with pytest.raises(UserError, match="conv_in.bias has shape"):
        load_base(module, tmp_path / "wrong.ckpt", module.hparams["generator"])


def test_fit_from_a_base_records_it_and_starts_a_new_optimiser(smoke_run, tmp_path):
    path, _ = _base(smoke_run)
    weights = save_identity_encoder(SmallIdentityCNN(16), tmp_path / "identity.pt")
    run = fit(tmp_path / "ft", f"--model.init_from={path}", "--model.modules.pfb.enabled=true",
              "--model.modules.pfb.layers=[mid,up0]", "--model.modules.ie.enabled=true", "--model.modules.ie.dim=16",
              "--model.modules.ie.attention=decoupled", f"--model.modules.ie.weights={weights}",
              "--trainer.max_steps=2", "--trainer.val_check_interval=2")
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["xmgie"]["base"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ckpt["global_step"] == 2
    steps = {int(s["step"]) for s in ckpt["optimizer_states"][0]["state"].values()}
    assert steps == {2}  # Adam's state counts this run's updates only
    main(["evaluate", "--ckpt", str(run / "checkpoints" / "last.ckpt"), "--limit", "4", "--steps", "2",
          "--batch-size", "4", "--no-inception", "--no-lpips", "--out", str(tmp_path / "r.json")])
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["base"]["path"] == str(path) and result["base"]["sha256"] == ckpt["xmgie"]["base"]["sha256"]
    assert {"leakage", "seam", "psnr_outside_mask"} <= set(result["metrics"])
    assert load_generator_module(run / "checkpoints" / "last.ckpt").base_info["path"] == str(path)


def test_a_missing_base_is_a_one_line_error(tmp_path):
    from tests.conftest import SMOKE

    proc = run_cli("fit", "--config", str(SMOKE), f"--trainer.default_root_dir={tmp_path}",
                   f"--model.init_from={tmp_path}/none.ckpt")
    assert proc.returncode == 2 and "checkpoint not found" in proc.stderr and "Traceback" not in proc.stderr


def test_bf16_true_is_refused_before_training(tmp_path, capsys):
    """(16-mixed is refused too, but on a CPU Lightning itself turns it into bf16-mixed.)"""
    from tests.conftest import fit

    with pytest.raises(SystemExit):
        fit(tmp_path / "run", "--trainer.precision=bf16-true")
    assert "EMA" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
