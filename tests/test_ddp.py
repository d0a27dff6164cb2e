import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO, SMOKE

MODULES = ["--model.modules.pfb.enabled=true", "--model.modules.pfb.layers=[mid,up0,out]",
           "--model.modules.cam.enabled=true", "--model.modules.gb.enabled=true"]


@pytest.fixture(scope="module")
def two_ranks(module_tmp):
    """Two gloo processes with Lightning's default strategy (no unused-parameter search), the GAN step and
    PFB/CAM/GB on, 3 steps; each rank writes its weights (run as a subprocess: DDP re-launches argv)."""
    root = module_tmp
    cmd = [sys.executable, "-m", "xmgie.cli", "fit", "--config", str(SMOKE), f"--trainer.default_root_dir={root}",
           "--trainer.devices=2", "--trainer.accelerator=cpu", "--trainer.max_steps=3",
           "--trainer.enable_progress_bar=false", "--trainer.callbacks+=tests.ddp_probe.SaveRankState", *MODULES]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distributed_backend=gloo" in proc.stderr + proc.stdout
    return root, [torch.load(root / f"rank{r}.pt", map_location="cpu", weights_only=False) for r in (0, 1)]


def test_default_strategy_trains_on_two_cpu_processes(two_ranks):
    root, _ = two_ranks
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 3


def test_ranks_keep_identical_weights_discriminator_included(two_ranks):
    """The generator is averaged by DDP's reducer, the discriminator (outside it) by its own all-reduce: a rank
    whose discriminator stepped on its own gradient would drift from the other."""
    _, (r0, r1) = two_ranks
    assert any(k.startswith("discriminator.") for k in r0["state_dict"])
    for key, value in r0["state_dict"].items():
        torch.testing.assert_close(r1["state_dict"][key], value, msg=key)


def test_each_rank_draws_its_own_noise(two_ranks):
    _, (r0, r1) = two_ranks
    assert not torch.equal(r0["draw"], r1["draw"])
