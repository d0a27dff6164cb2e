"""The learned mask predictor's parts: hashed word buckets, the soft Dice loss (against NumPy), conditioning on
the instruction, the file format (weights-only, named errors)."""
import zlib

import numpy as np
import pytest
import torch

from xmgie.models.mask_net import (MaskNet, load_mask_net, mask_loss, save_mask_net, soft_dice_loss,
                                   word_buckets)


def test_word_buckets_are_crc32_of_lowercased_words_with_offsets_per_text():
    ids, offsets = word_buckets(["Make the circle RED!", "", "hat"], 97)
    words = ["make", "the", "circle", "red", "", "hat"]
    assert ids.tolist() == [zlib.crc32(w.encode()) % 97 for w in words] and offsets.tolist() == [0, 4, 5]


def test_soft_dice_loss_matches_numpy():
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(3, 1, 5, 6, generator=g), (torch.rand(3, 1, 5, 6, generator=g) > 0.6).float()
    p, y = 1 / (1 + np.exp(-logits.numpy().reshape(3, -1))), target.numpy().reshape(3, -1)
    expected = 1 - np.mean((2 * (p * y).sum(1) + 1) / (p.sum(1) + y.sum(1) + 1))
    assert float(soft_dice_loss(logits, target)) == pytest.approx(expected, rel=1e-5)
    bce = np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)))
    assert float(mask_loss(logits, target)) == pytest.approx(bce + expected, rel=1e-5)


def test_the_net_maps_a_photo_and_an_instruction_to_a_mask_of_its_size():
    torch.manual_seed(0)
    net = MaskNet(channels=(8, 16), text_dim=16, buckets=64, resolution=16)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    logits = net(x, ["make the circle red", "make the circle red"])
    assert logits.shape == (2, 1, 16, 16)
    other = net(x, ["give the square a hat", "make the circle red"])
    assert not torch.allclose(logits[0], other[0]) and torch.allclose(logits[1], other[1])  # per-row instruction
    mask_loss(logits, torch.ones_like(logits)).backward()
    assert net.words.weight.grad.abs().sum() > 0  # the instruction's words are trained too
    p = net.predict(torch.rand(1, 3, 40, 24) * 2 - 1, ["x"])  # any photo size: run at 16 px, resized back
    assert p.shape == (1, 1, 40, 24) and 0 <= float(p.min()) and float(p.max()) <= 1


def test_a_saved_net_loads_weights_only_and_predicts_the_same(tmp_path):
    net = MaskNet(channels=(8, 16), text_dim=16, buckets=64, resolution=16).eval()
    path = save_mask_net(net, tmp_path / "m.pt", test_iou=0.5)
    blob = torch.load(path, weights_only=True)  # plain data and tensors: nothing in it runs
    assert blob["test_iou"] == 0.5 and blob["config"]["resolution"] == 16
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(load_mask_net(path).predict(x, ["a", "b"]), net.predict(x, ["a", "b"]))
    with pytest.raises(FileNotFoundError, match="make train-mask"):
        load_mask_net(tmp_path / "none.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a mask-predictor file"):
        load_mask_net(tmp_path / "other.pt")
