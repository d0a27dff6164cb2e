import json
import math

import pytest
import torch

from xmgie.errors import UserError
from xmgie.modules.identity import load_identity_encoder
from xmgie.training.identity_module import arcface_logits, train_identity_encoder


def test_arcface_adds_the_margin_to_the_own_class_angle_only():
    e = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    w = torch.randn(5, 8)
    labels = torch.tensor([0, 3, 1, 4])
    cos = e @ torch.nn.functional.normalize(w, dim=-1).T
    out = arcface_logits(e, w, labels, scale=10.0, margin=0.3)
    for i in range(4):
        for j in range(5):
            expected = math.cos(math.acos(cos[i, j].item()) + 0.3) if j == labels[i] else cos[i, j].item()
            assert out[i, j].item() == pytest.approx(10 * expected, abs=1e-4)
    torch.testing.assert_close(arcface_logits(e, w, None, scale=10.0), 10 * cos)


def test_training_writes_a_loadable_encoder_and_its_held_out_accuracy(tmp_path, monkeypatch):
    import data_modules.synthetic as synthetic

    small = synthetic.ShapesDataModule.__init__

    def tiny(self, resolution=16, batch_size=8, num_workers=0, **kw):  # a fast split: 16 px, 16 test samples
        small(self, resolution=16, batch_size=8, num_workers=0, train_size=64, val_size=4, test_size=16)

    monkeypatch.setattr(synthetic.ShapesDataModule, "__init__", tiny)
    result = train_identity_encoder("shapes", tmp_path / "e.pt", steps=3, dim=16)
    assert result["test_images"] == 32 and 0 <= result["test_accuracy"] <= 1
    assert json.loads((tmp_path / "e.json").read_text())["test_accuracy"] == result["test_accuracy"]
    enc = load_identity_encoder(tmp_path / "e.pt")
    assert enc.embed(torch.randn(2, 3, 16, 16)).shape == (2, 16)
    assert not any(p.requires_grad for p in enc.parameters())


def test_unknown_dataset_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="nope"):
        train_identity_encoder("nope", tmp_path / "e.pt", steps=1)
