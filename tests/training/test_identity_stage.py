import json
import math

import pytest
import torch

from xmgie.errors import UserError
from xmgie.modules.identity import load_identity_encoder
from xmgie.training.lit_identity import arcface_logits, nearest_neighbour_accuracy, train_identity_encoder


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


def test_nearest_neighbour_accuracy_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(30, 8, generator=g), dim=-1)
    ids = torch.randint(0, 12, (30,), generator=g)
    hits = queries = 0
    for i in range(30):
        if (ids == ids[i]).sum() < 2:
            continue  # an identity seen once has no neighbour to find
        best = max((j for j in range(30) if j != i), key=lambda j: float(emb[i] @ emb[j]))
        hits += int(ids[best] == ids[i])
        queries += 1
    assert nearest_neighbour_accuracy(emb, ids) == pytest.approx(hits / queries)
    assert nearest_neighbour_accuracy(emb[:3], torch.tensor([0, 1, 2])) is None


def test_identity_disjoint_split_reports_nearest_neighbour_accuracy_only(tmp_path):
    from data_modules.fixtures import write_fixture

    root = write_fixture("cub", tmp_path / "cub")  # class-disjoint: test species never seen in training
    result = train_identity_encoder("cub", tmp_path / "e.pt", steps=2, batch_size=4, resolution=16, dim=8,
                                    root=str(root))
    assert result["test_accuracy"] is None and result["test_images"] == 0
    assert 0 <= result["test_nn_accuracy"] <= 1
