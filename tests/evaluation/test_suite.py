"""EditingMetrics as a whole: which images each protocol compares (the pairing itself: tests/data_modules)."""
import torch

from xmgie.metrics.functional import psnr_per_image
from xmgie.metrics.metrics import EditingMetrics
from xmgie.metrics.networks import MetricNetwork


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
    record = MetricNetwork("x", True, None, "trained")
    suite = EditingMetrics("targets", inception=False, lpips=True,
                           identity_encoder=(torch.nn.Identity(), record))
    assert suite.uncalibrated == ["lpips", "lpips_outside_mask"]  # the targets protocol adds LPIPS out
    assert suite.describe()["ips"]["source"] == "trained"


def test_train_missing_trains_only_what_is_missing_and_drops_what_the_dataset_cannot_train(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from xmgie.evaluation.evaluate import train_missing_networks
    from xmgie.training import lit_attributes, lit_identity

    trained = []
    monkeypatch.setattr(lit_identity, "train_identity_encoder",
                        lambda name, out, root=None: trained.append(("identity", name, str(out), root)))
    monkeypatch.setattr(lit_attributes, "train_attribute_classifier",
                        lambda name, out, root=None: trained.append(("attributes", name, str(out), root)))
    notes = []
    kept = tmp_path / "kept.pt"
    kept.write_bytes(b"")
    labelled = SimpleNamespace(name="cub", root="/d/cub", num_identities=200, num_attributes=312)
    assert train_missing_networks(labelled, tmp_path / "e.pt", tmp_path / "a.pt", notes.append) == \
        (tmp_path / "e.pt", tmp_path / "a.pt")
    assert trained == [("identity", "cub", str(tmp_path / "e.pt"), "/d/cub"),
                       ("attributes", "cub", str(tmp_path / "a.pt"), "/d/cub")]
    trained.clear()
    assert train_missing_networks(labelled, kept, "vggface2", notes.append) == (kept, "vggface2")  # nothing missing
    assert train_missing_networks(labelled, None, None, notes.append) == (None, None) and trained == []
    unlabelled = SimpleNamespace(name="coco", root=None, num_identities=0, num_attributes=0)
    notes.clear()
    assert train_missing_networks(unlabelled, tmp_path / "e.pt", tmp_path / "a.pt", notes.append) == (None, None)
    assert trained == [] and [n.split(":")[0] for n in notes] == ["IPS not computed", "AA not computed"]
    assert train_missing_networks(unlabelled, kept, None, notes.append) == (kept, None)  # a given file still scores
