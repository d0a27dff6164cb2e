"""Masks as users give them: `grow_mask` against SciPy's binary morphology, the kept / missed scores against a
per-pixel loop, and `xmgie evaluate --mask-dilate` end to end."""
import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from xmgie.cli import main
from xmgie.metrics.functional import DATA_RANGE, grow_mask
from xmgie.metrics.metrics import EditQuality


def _disk(r: int) -> np.ndarray:
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return y**2 + x**2 <= r * r


@pytest.mark.parametrize("pixels", [1, 2, 3, -1, -2])
def test_grow_mask_is_scipys_dilation_and_erosion_by_a_disk(pixels):
    rng = np.random.default_rng(pixels + 10)
    masks = ndimage.binary_opening(rng.random((3, 20, 24)) < 0.45, np.ones((1, 2, 2)))
    masks[0, :6, :5] = True  # an object touching the image's corner
    out = grow_mask(torch.from_numpy(masks).float()[:, None], pixels)[:, 0].numpy() > 0.5
    for m, got in zip(masks, out):
        if pixels > 0:
            want = ndimage.binary_dilation(m, _disk(pixels))
        else:  # the border counts as inside: scipy's border_value=1
            want = ndimage.binary_erosion(m, _disk(-pixels), border_value=1)
        assert np.array_equal(got, want)


def test_kept_and_missed_scores_are_psnrs_over_the_right_pixels():
    torch.manual_seed(0)
    edit, target, source = (torch.rand(2, 3, 8, 8) * 2 - 1 for _ in range(3))
    true = torch.zeros(2, 1, 8, 8)
    true[:, :, 2:5, 2:5] = 1
    given = torch.zeros_like(true)
    given[0, :, 1:6, 1:6] = 1  # generous: keeps nothing out
    given[1, :, 3:7, 3:7] = 1  # shifted: misses part, covers more
    q = EditQuality()
    q.update(edit, target, source, true, given)
    out = q.compute()

    def psnr(where):
        sq = [float((edit[b, c, y, x] - target[b, c, y, x]) ** 2) for b, c, y, x in where]
        return 10 * np.log10(DATA_RANGE**2 / np.mean(sq))

    def pixels(b, inside_given, inside_true):
        return [(b, c, y, x) for c in range(3) for y in range(8) for x in range(8)
                if bool(given[b, 0, y, x]) == inside_given and bool(true[b, 0, y, x]) == inside_true]

    kept = [psnr(pixels(b, True, False)) for b in (0, 1)]
    assert float(out["psnr_kept_in_mask"]) == pytest.approx(np.mean(kept), abs=1e-4)
    assert float(out["psnr_missed_by_mask"]) == pytest.approx(psnr(pixels(1, False, True)), abs=1e-4)  # image 0: none


def test_evaluate_with_dilated_masks_records_them_and_scores_against_the_datasets(smoke_run, tmp_path, capsys):
    ckpt = str(smoke_run / "checkpoints" / "last.ckpt")
    common = ["evaluate", "--ckpt", ckpt, "--limit", "4", "--batch-size", "4", "--steps", "2", "--no-inception",
              "--no-lpips"]
    main([*common, "--mask-dilate", "2", "--out", str(tmp_path / "d.json")])
    main([*common, "--out", str(tmp_path / "p.json")])
    dilated, plain = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "dp")
    assert dilated["masks"] == {"source": "dataset", "dilate": 2} and plain["masks"] == {"source": "dataset"}
    assert "psnr_kept_in_mask" in dilated["metrics"] and "psnr_kept_in_mask" not in plain["metrics"]
    assert dilated["metrics"]["psnr_source"] == plain["metrics"]["psnr_source"]  # the same dataset masks scored
    with pytest.raises(SystemExit) as exit_:
        main([*common, "--mask", "anywhere", "--mask-dilate", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and "--mask-dilate grows the dataset's masks" in err[-1]


def test_ips_kept_is_the_cosine_over_the_rows_whose_edit_keeps_identity():
    from xmgie.metrics.metrics import IdentityScore

    class Flat(torch.nn.Module):  # an "encoder": the flattened image, L2-normalised
        def embed(self, x):
            return torch.nn.functional.normalize(x.flatten(1), dim=-1)

    torch.manual_seed(1)
    edit, target = torch.rand(4, 3, 4, 4) * 2 - 1, torch.rand(4, 3, 4, 4) * 2 - 1
    keeps = torch.tensor([True, False, True, False])
    m = IdentityScore(Flat())
    m.update(edit, target, keeps=keeps)
    out = m.compute()
    cos = [float(torch.nn.functional.cosine_similarity(edit[i].flatten(), target[i].flatten(), dim=0)) for i in range(4)]
    assert float(out["ips"]) == pytest.approx(np.mean(cos), abs=1e-6)
    assert float(out["ips_kept"]) == pytest.approx(np.mean([cos[0], cos[2]]), abs=1e-6)


@pytest.mark.parametrize("size,radius", [(32, 2), (64, 4), (16, 1)])
def test_the_seam_band_is_a_share_of_the_image_size(size, radius):
    from xmgie.metrics.functional import seam_score

    torch.manual_seed(size)
    edit, target = torch.rand(2, 3, size, size) * 2 - 1, torch.rand(2, 3, size, size) * 2 - 1
    mask = torch.zeros(2, 1, size, size)
    mask[..., size // 4: size // 2, size // 4: 3 * size // 4] = 1
    q = EditQuality()
    q.update(edit, target, mask=mask)
    assert float(q.compute()["seam"]) == pytest.approx(float(seam_score(edit, target, mask, radius).mean()), rel=1e-6)
