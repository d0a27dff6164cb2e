"""The evaluation suite inside Lightning runs: logged at validation, written as a result file at test."""
import json

import torch

from tests.conftest import REPO, SMOKE, fit
from xmgie.cli import main

EVALUATION = REPO / "experiments" / "evaluation.yaml"


def test_validation_logs_the_suite_and_test_writes_a_result(tmp_path):
    root = fit(tmp_path / "run", "--config", str(EVALUATION))
    rows = (root / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert {"val/is", "val/fid", "val/lpips"} <= set(header)
    main(["test", "--config", str(SMOKE), "--config", str(EVALUATION), f"--trainer.default_root_dir={root}",
          "--trainer.enable_progress_bar=false", f"--ckpt_path={root / 'checkpoints' / 'last.ckpt'}"])
    (result,) = (root / "results").glob("test_step*.json")
    record = json.loads(result.read_text())
    assert record["n_images"] == 8 and record["dataset"] == "shapes"  # the whole 8-image test split
    assert {"is", "fid", "lpips", "psnr", "psnr_gain"} <= set(record["metrics"])
    assert record["uncalibrated"] == ["fid", "is", "lpips", "lpips_outside_mask"]
    # the checkpoint holds no backbone weights: the suite lives in the callback
    state = torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert not any("inception" in k or "lpips" in k for k in state)
