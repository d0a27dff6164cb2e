"""EditingMetrics as a whole: which images each protocol compares (the pairing itself: tests/data_modules)."""
import torch

from xmgie.evaluation.backbones import Backbone
from xmgie.evaluation.functional import psnr_per_image
from xmgie.evaluation.metrics import EditingMetrics


def _batch(b: int = 4) -> dict:
    g = torch.Generator().manual_seed(0)
    source = torch.rand(b, 3, 16, 16, generator=g) * 2 - 1
    return {"source": source, "target": (source + 0.2).clamp(-1, 1), "mask": torch.ones(b, 1, 16, 16),
            "prompt": [f"p{i}" for i in range(b)], "instruction": [f"i{i}" for i in range(b)],
            "attributes": torch.eye(b), "index": torch.arange(b)}


def test_targets_protocol_scores_against_the_target_and_reports_the_copy_baseline():
    batch = _batch()
    suite = EditingMetrics("targets", inception=False, lpips=False)
    suite.update(batch["source"], batch)  # an "edit" that copies the source
    out = suite.compute()
    assert abs(out["psnr"] - out["psnr_source"]) < 1e-6 and abs(out["psnr_gain"]) < 1e-6
    assert abs(out["psnr"] - float(psnr_per_image(batch["source"], batch["target"]).mean())) < 1e-4


def test_captions_protocol_scores_faithfulness_to_the_source():
    batch = _batch()
    suite = EditingMetrics("captions", inception=False, lpips=False)
    edit = (batch["source"] + 0.1).clamp(-1, 1)
    suite.update(edit, batch)
    out = suite.compute()
    assert abs(out["psnr"] - float(psnr_per_image(edit, batch["source"]).mean())) < 1e-4
    assert "psnr_source" not in out and "psnr_outside_mask" not in out  # no ground truth: no baseline


def test_uncalibrated_backbones_are_listed():
    record = Backbone("x", True, None, "trained")
    suite = EditingMetrics("targets", inception=False, lpips=True,
                           identity_encoder=(torch.nn.Identity(), record))
    assert suite.uncalibrated == ["lpips", "lpips_outside_mask"]  # the targets protocol adds LPIPS out
    assert suite.describe()["ips"]["source"] == "trained"
