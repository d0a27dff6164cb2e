"""Full xMGIE (all four modules) through the real entry points: fit, checkpoint, evaluate, edit."""
import json
from types import SimpleNamespace

import pytest
import torch

from tests.conftest import SMOKE, fit
from tests.test_cli import run_cli
from xmgie.cli import main
from xmgie.editor import load_generator_module
from xmgie.modules.cam import CrossAttentionMasking
from xmgie.modules.gaussian_blur import GaussianBlur
from xmgie.modules.identity import IdentityEmbedding, SmallIdentityCNN, save_identity_encoder
from xmgie.modules.pfb import ProgressiveFeatureBlending

ALL_ON = ["--model.modules.pfb.enabled=true", "--model.modules.pfb.layers=[mid,up0]",
          "--model.modules.cam.enabled=true", "--model.modules.ie.enabled=true", "--model.modules.ie.dim=16",
          "--model.modules.gb.enabled=true", "--model.modules.gb.sigma_max=0.5", "--model.modules.gb.sigma_s=1.0"]


@pytest.fixture(scope="module")
def full_run(module_tmp):
    root = module_tmp
    weights = save_identity_encoder(SmallIdentityCNN(16), root / "identity.pt")
    fit(root / "run", *ALL_ON, f"--model.modules.ie.weights={weights}")
    return root / "run", weights


def test_full_xmgie_trains_and_its_checkpoint_carries_every_module(full_run, tmp_path):
    run, weights = full_run
    module = load_generator_module(run / "checkpoints" / "last.ckpt")
    kinds = [type(p) for p in module.generator.plugins]
    assert kinds == [IdentityEmbedding, CrossAttentionMasking, ProgressiveFeatureBlending, GaussianBlur]
    assert module.modules_cfg.enabled == ["ie", "cam", "pfb", "gb"]
    # E_id's frozen weights come from the file, not from training
    trained = module.generator.plugins[0].encoder.state_dict()
    source = torch.load(weights, weights_only=True)["state_dict"]
    assert all(torch.equal(trained[k], source[k]) for k in source)
    alpha = module.generator.plugins[2].alpha
    assert not torch.allclose(alpha, torch.full_like(alpha, 0.5))  # α trained


def test_evaluate_reports_the_identity_score(full_run, tmp_path, capsys):
    run, weights = full_run
    main(["evaluate", "--ckpt", str(run / "checkpoints" / "last.ckpt"), "--limit", "4", "--steps", "2",
          "--batch-size", "4", "--identity", str(weights), "--no-inception", "--no-lpips",
          "--out", str(tmp_path / "r.json")])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    metrics = printed["metrics"]
    assert -1 <= metrics["ips"] <= 1 and -1 <= metrics["ips_source"] <= 1 and "is" not in metrics
    assert printed["backbones"]["ips"]["calibrated"] and printed["backbones"]["ips"]["source"] == str(weights)
    assert printed["n_images"] == 4


def test_missing_identity_weights_is_a_one_line_error(tmp_path):
    proc = run_cli("fit", "--config", str(SMOKE), f"--trainer.default_root_dir={tmp_path}",
                   "--model.modules.ie.enabled=true", f"--model.modules.ie.weights={tmp_path}/none.pt")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "identity encoder weights not found" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()  # nothing trained, nothing to resume from


def test_fit_with_train_missing_trains_the_identity_encoder_first_when_ie_is_on(tmp_path, monkeypatch):
    from xmgie.training import lit_identity

    calls = []

    def stand_in(dataset, out, dim=64, root=None, **_):  # the real stage takes minutes: a saved random E_id
        calls.append((dataset, str(out), dim, root))
        save_identity_encoder(SmallIdentityCNN(dim), out)
        return {}

    monkeypatch.setattr(lit_identity, "train_identity_encoder", stand_in)
    weights = tmp_path / "ids" / "encoder.pt"
    proc = run_cli("fit", "--config", str(SMOKE), f"--trainer.default_root_dir={tmp_path}/run",
                   "--model.modules.ie.enabled=true", "--model.modules.ie.dim=16",
                   f"--model.modules.ie.weights={weights}", "--train_missing=true")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert calls == [("shapes", str(weights), 16, None)] and weights.is_file()
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    calls.clear()  # the file exists now: nothing is trained again
    proc = run_cli("fit", "--config", str(SMOKE), f"--trainer.default_root_dir={tmp_path}/again",
                   "--model.modules.ie.enabled=true", "--model.modules.ie.dim=16",
                   f"--model.modules.ie.weights={weights}", "--train_missing=true")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert calls == []
    for ie in ({"enabled": False, "encoder": "cnn"}, {"enabled": True, "encoder": "facenet"}):  # no project E_id
        module = SimpleNamespace(modules_cfg=SimpleNamespace(ie=SimpleNamespace(**ie, weights=str(tmp_path / "n.pt"),
                                                                                dim=16)))
        assert lit_identity.train_missing_identity(module, SimpleNamespace(name="shapes")) is None
    assert calls == []
