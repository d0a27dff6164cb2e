"""The attribute-classifier stage behind AA: trains, saves, reloads, and feeds `xmgie evaluate`."""
import json

import pytest
import torch

from xmgie.cli import main
from xmgie.evaluation.evaluate import attribute_backbone
from xmgie.errors import UserError
from xmgie.models.classifier import build_attribute_classifier, load_attribute_classifier
from xmgie.training.lit_attributes import attribute_accuracy, train_attribute_classifier


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    out = tmp_path_factory.mktemp("attr") / "classifier.pt"
    result = train_attribute_classifier("shapes", out, steps=40, batch_size=16, arch="cnn", resolution=16)
    return out, result


def test_training_writes_a_reloadable_classifier_and_its_held_out_accuracy(classifier):
    out, result = classifier
    assert 0 <= result["test_accuracy"] <= 1 and result["test_images"] == 256
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["test_accuracy"] == result["test_accuracy"]
    net, info = load_attribute_classifier(out)
    assert info["arch"] == "cnn" and info["num_attributes"] == 13 and not any(p.requires_grad for p in net.parameters())
    assert net(torch.zeros(2, 3, 16, 16)).shape == (2, 13)


def test_accuracy_counts_agreeing_attribute_decisions():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(3))
    batch = {"target": torch.zeros(2, 3, 4, 4), "attributes": torch.tensor([[1.0, 0, 0], [0, 0, 1]])}
    net(batch["target"])
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].bias.copy_(torch.tensor([1.0, -1.0, -1.0]))  # always predicts [1, 0, 0]
    out = attribute_accuracy(net, [batch])
    assert out["test_accuracy"] == pytest.approx(4 / 6, abs=1e-4) and out["test_exact_match"] == 0.5
    assert out["test_always_absent_accuracy"] == pytest.approx(4 / 6, abs=1e-4)


def test_resnet18_is_available_without_pretrained_weights():
    net = build_attribute_classifier("resnet18", 5).eval()
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 5)


def test_a_file_of_another_kind_is_refused(tmp_path):
    bad = tmp_path / "x.pt"
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(UserError, match="not an attribute classifier"):
        attribute_backbone(bad)
    with pytest.raises(UserError, match="make train-attr"):
        attribute_backbone(tmp_path / "none.pt")


def test_evaluate_reports_aa_with_the_classifier(smoke_run, classifier, tmp_path, capsys):
    out, result = classifier
    main(["evaluate", "--ckpt", str(smoke_run / "checkpoints" / "last.ckpt"), "--limit", "4", "--steps", "1",
          "--attributes", str(out), "--no-inception", "--no-lpips", "--out", str(tmp_path / "r.json")])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= printed["metrics"]["aa"] <= 1
    assert str(result["test_accuracy"]) in printed["backbones"]["aa"]["source"]
