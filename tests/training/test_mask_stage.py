"""`xmgie mask train` end to end (held-out scores, the file), and its masks in `xmgie edit` and `xmgie evaluate`
(`--mask auto --mask-net FILE`); a dataset without masks is refused."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from xmgie.cli import main


@pytest.fixture(scope="module")
def mask_net(tmp_path_factory):
    out = tmp_path_factory.mktemp("mask") / "mask_net.pt"
    main(["mask", "train", "--dataset", "shapes", "--out", str(out), "--steps", "60", "--resolution", "16",
          "--channels", "8", "--batch-size", "32"])
    return out, json.loads(out.with_suffix(".json").read_text())


def test_the_trained_predictor_finds_the_edited_region_far_better_than_the_whole_image(mask_net):
    out, result = mask_net
    assert out.is_file() and result["test_images"] == 256 and result["resolution"] == 16
    assert result["test_iou"] > result["whole_image_iou"] + 0.15  # 60 steps: ≈ 0.59 against 0.26
    assert result["test_precision"] > 0.5 and result["test_recall"] > 0.5


def test_edit_and_evaluate_use_the_learned_masks(mask_net, smoke_run, tmp_path, capsys):
    from data_modules.synthetic import ShapesDataModule
    from xmgie.inference import tensor_to_image
    from xmgie.metrics.functional import mask_iou

    out, _ = mask_net
    ckpt = str(smoke_run / "checkpoints" / "last.ckpt")
    data = ShapesDataModule(resolution=16).dataset("test")
    saved, true = [], []
    for i in range(4):
        tensor_to_image(data[i].source).save(tmp_path / f"s{i}.png")
        main(["edit", "--ckpt", ckpt, "--image", str(tmp_path / f"s{i}.png"), "--prompt", data[i].instruction,
              "--mask-net", str(out), "--out", str(tmp_path / f"o{i}.png"), "--save-mask", str(tmp_path / f"m{i}.png"),
              "--steps", "1"])
        saved.append(torch.from_numpy(np.asarray(Image.open(tmp_path / f"m{i}.png")) > 127).float()[None, None])
        true.append(data[i].mask[None].float())
    assert float(mask_iou(torch.cat(saved), torch.cat(true)).mean()) > 0.3
    capsys.readouterr()
    main(["evaluate", "--ckpt", ckpt, "--limit", "8", "--batch-size", "8", "--no-inception", "--no-lpips",
          "--mask", "auto", "--mask-net", str(out), "--out", str(tmp_path / "r.json")])
    masks = json.loads((tmp_path / "r.json").read_text())["masks"]
    assert masks["source"] == "auto" and masks["net"] == str(out) and 0.3 < masks["iou"] <= 1


def test_a_dataset_without_masks_is_refused(tmp_path, capsys):
    from data_modules.fixtures import write_fixture

    root = write_fixture("triplets", tmp_path / "p2p", layout="pix2pix")
    with pytest.raises(SystemExit) as exit_:
        main(["mask", "train", "--dataset", "triplets", "--data-root", str(root), "--out", str(tmp_path / "m.pt"),
              "--steps", "2", "--resolution", "16"])
    assert exit_.value.code == 2 and "has no edit masks to learn from" in capsys.readouterr().err


def test_random_blur_blurs_about_half_the_images_as_scipy_does_and_leaves_the_rest():
    from scipy.ndimage import gaussian_filter

    from xmgie.training.lit_mask import random_blur

    x = torch.rand(64, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    assert random_blur(x, 0.0) is x
    g = torch.Generator().manual_seed(1)
    out = random_blur(x, 1.0, g)
    u = torch.rand(2, 64, generator=torch.Generator().manual_seed(1))
    sigma = u[0] * (u[1] < 0.5)
    assert 16 < int((sigma > 0).sum()) < 48
    for i in range(64):
        if sigma[i] == 0:
            assert torch.equal(out[i], x[i])
        else:  # a 5×5 kernel (radius 2), mirrored borders
            s = max(float(sigma[i]), 1e-3)
            ref = gaussian_filter(x[i].double().numpy(), sigma=(0, s, s), mode="mirror", truncate=2 / s)
            assert np.allclose(out[i].numpy(), ref, atol=1e-5), i
