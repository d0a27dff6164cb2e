import json

import numpy as np
import pytest
import torch
from PIL import Image

from data_modules import build_datamodule
from data_modules.fixtures import write_fixture
from data_modules.images import centre_crop, crop_resize
from xmgie.cli import main
from xmgie.errors import UserError


def test_predicted_masks_are_written_per_triplet_and_read_back_by_the_loader(smoke_run, tmp_path, capsys):
    root = write_fixture("triplets", tmp_path / "p2p", layout="pix2pix")
    out = tmp_path / "masks"
    main(["data", "masks", "--root", str(root), "--ckpt", str(smoke_run / "checkpoints" / "last.ckpt"),
          "--out", str(out), "--batch-size", "3", "--mask-smooth", "1"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    dm = build_datamodule("triplets", root=str(root), resolution=16, masks=str(out))
    dm.setup("fit")
    records = [r for split in ("train", "test") for r in dm.records()[split]]
    assert summary["written"] == len(records) and json.loads((out / "masks.json").read_text())["written"] == len(records)
    sample_masks = []
    for split in ("train", "test"):
        data = dm.make_split(split)
        for i, rec in enumerate(dm.records()[split]):
            written = np.asarray(Image.open(out / f"{rec.key}.png"))
            photo = Image.open(dm.path(rec.image))
            assert written.shape == (photo.height, photo.width) and set(np.unique(written)) <= {0, 255}
            crop = centre_crop(photo.size)
            _, expected = crop_resize(np.zeros((photo.height, photo.width, 3), np.uint8), written > 127, crop, 16)
            mask = data[i].mask
            assert torch.equal(mask, expected)  # the loader reads the prediction, not "anywhere"
            sample_masks.append(mask)
    assert not all(m.all() for m in sample_masks)


def test_a_missing_masks_folder_is_a_clear_error(tmp_path):
    root = write_fixture("triplets", tmp_path / "p2p", layout="pix2pix")
    dm = build_datamodule("triplets", root=str(root), resolution=16, masks=str(tmp_path / "none"))
    with pytest.raises(UserError, match="predicted masks folder not found: .*xmgie data masks"):
        dm.setup("fit")
