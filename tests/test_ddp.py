import subprocess
import sys

import torch

from tests.conftest import REPO, SMOKE


def test_fit_with_ddp_on_two_cpu_processes(tmp_path):
    """`--trainer.strategy=ddp` with two gloo processes (run as a subprocess: DDP re-launches argv)."""
    root = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "xmgie.cli", "fit", "--config", str(SMOKE), f"--trainer.default_root_dir={root}",
           "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu", "--trainer.max_steps=2",
           "--trainer.enable_progress_bar=false"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distributed_backend=gloo" in proc.stderr + proc.stdout
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2
