import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from xmgie.metrics.functional import psnr_per_image, ssim_per_image
from xmgie.metrics.metrics import EditQuality


def _pair(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 3, 24, 24, generator=g) * 2 - 1
    y = (x + 0.2 * torch.randn(3, 3, 24, 24, generator=g)).clamp(-1, 1)
    return x, y


def test_psnr_matches_scikit_image_per_image():
    x, y = _pair()
    ours = psnr_per_image(x, y)
    for i in range(3):
        ref = peak_signal_noise_ratio(y[i].numpy(), x[i].numpy(), data_range=2.0)
        assert abs(ours[i].item() - ref) < 1e-3


def test_masked_psnr_matches_a_brute_force_loop():
    x, y = _pair(1)
    mask = (torch.rand(3, 1, 24, 24) > 0.6).float()
    ours = psnr_per_image(x, y, mask)
    for i in range(3):
        se = [((x[i, c, h, w] - y[i, c, h, w]) ** 2).item() for c in range(3) for h in range(24) for w in range(24)
              if mask[i, 0, h, w] == 1]
        ref = 10 * np.log10(4.0 / np.mean(se))
        assert abs(ours[i].item() - ref) < 1e-3
    empty = psnr_per_image(x, y, torch.zeros(3, 1, 24, 24))
    assert torch.isnan(empty).all()


def test_ssim_matches_scikit_image_gaussian_window():
    """Against scikit-image on the [0, 1] images; the two differ only in border handling (< 1e-3 at 64 px)."""
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    y = (x + 0.2 * torch.randn(2, 3, 64, 64, generator=g)).clamp(-1, 1)
    ours = ssim_per_image(x, y)
    for i in range(2):
        a, b = ((x[i] + 1) / 2).double().numpy(), ((y[i] + 1) / 2).double().numpy()
        ref = structural_similarity(a, b, data_range=1.0, channel_axis=0, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False)
        assert abs(ours[i].item() - ref) < 1e-3
    assert torch.allclose(ssim_per_image(x, x), torch.ones(2))


def test_edit_quality_means_and_source_baseline():
    x, y = _pair(3)
    mask = torch.zeros(3, 1, 24, 24)
    mask[..., 8:16, 8:16] = 1
    m = EditQuality()
    m.update(x[:2], y[:2], y[:2], mask[:2])  # source == target: copy-the-source PSNR is infinite-capped
    m.update(x[2:], y[2:], x[2:], mask[2:])
    out = m.compute()
    assert out["n_images"] == 3
    assert torch.isclose(out["psnr"].float(), psnr_per_image(x, y).mean(), atol=1e-4)
    per = psnr_per_image(x, y, 1 - mask)
    assert torch.isclose(out["psnr_outside_mask"].float(), per.mean(), atol=1e-4)
    assert torch.isclose(out["psnr_gain"], out["psnr"] - out["psnr_source"])


def test_edit_quality_without_source_or_mask_reports_no_baseline():
    x, y = _pair(4)
    m = EditQuality()
    m.update(x, y)
    out = m.compute()
    assert set(out) == {"psnr", "ssim", "n_images"}  # nothing unmeasured is reported as 0


def _masked_triplet(seed=2, size=20):
    g = torch.Generator().manual_seed(seed)
    src = torch.rand(4, 3, size, size, generator=g) * 2 - 1
    tgt = (src + 0.5 * torch.randn(4, 3, size, size, generator=g)).clamp(-1, 1)
    edit = (tgt + 0.3 * torch.randn(4, 3, size, size, generator=g)).clamp(-1, 1)
    mask = torch.zeros(4, 1, size, size)
    mask[0, :, 5:12, 4:15] = 1
    mask[1, :, :10] = 1            # touches the image border
    mask[2] = 1                    # no outside, no edge
    mask[3, :, 8:9, 8:9] = 1       # one pixel
    return src, tgt, edit, mask


def _np_band(m: np.ndarray, r: int) -> np.ndarray:
    """Pixels within chessboard distance r of a pixel of the other label (a direct loop over windows)."""
    H, W = m.shape
    band = np.zeros_like(m)
    for y in range(H):
        for x in range(W):
            win = m[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1]
            band[y, x] = float(win.min() != win.max())
    return band


def test_boundary_band_and_seam_score_match_numpy():
    from xmgie.metrics.functional import boundary_band, seam_score

    src, tgt, edit, mask = _masked_triplet()
    for r in (1, 2):
        ours = boundary_band(mask, r)
        for i in range(4):
            np.testing.assert_array_equal(ours[i, 0].numpy(), _np_band(mask[i, 0].numpy(), r))
    seam = seam_score(edit, tgt, mask, radius=2)
    d = (edit - tgt).numpy().astype(np.float64)
    for i in range(4):
        gx = d[i, :, :-1, 1:] - d[i, :, :-1, :-1]
        gy = d[i, :, 1:, :-1] - d[i, :, :-1, :-1]
        mag = np.sqrt(gx ** 2 + gy ** 2).mean(0)
        band = _np_band(mask[i, 0].numpy(), 2)[:-1, :-1]
        expected = mag[band == 1].mean() if band.any() else np.nan
        np.testing.assert_allclose(seam[i].item(), expected, rtol=1e-5, equal_nan=True)
    assert torch.isnan(seam[2])  # an all-ones mask has no edge


def test_leakage_is_the_ratio_of_mean_changes_outside_and_inside_the_mask():
    src, tgt, edit, mask = _masked_triplet()
    q = EditQuality()
    q.update(edit, tgt, src, mask)
    out = q.compute()
    e, s, m = edit.numpy().astype(np.float64), src.numpy().astype(np.float64), mask.numpy()[:, 0]
    outside = [np.abs(e[i] - s[i])[:, m[i] == 0].mean() for i in range(4) if (m[i] == 0).any()]
    inside = [np.abs(e[i] - s[i])[:, m[i] == 1].mean() for i in range(4) if (m[i] == 1).any()]
    np.testing.assert_allclose(out["change_outside"].item(), np.mean(outside), rtol=1e-5)
    np.testing.assert_allclose(out["change_inside"].item(), np.mean(inside), rtol=1e-5)
    np.testing.assert_allclose(out["leakage"].item(), np.mean(outside) / np.mean(inside), rtol=1e-5)
    pasted = EditQuality()
    pasted.update(torch.where(mask.bool(), edit, src), tgt, src, mask)
    assert pasted.compute()["leakage"].item() == 0.0  # an edit confined to the mask does not leak


def test_lpips_outside_the_mask_ignores_the_inside():
    from xmgie.metrics.convert import LPIPS_MIN_SIZE
    from xmgie.metrics.metrics import MeanLPIPS

    class L1Net(torch.nn.Module):  # stands in for LPIPS: any per-image distance shows what is compared
        def forward(self, a, b):
            return (a - b).abs().flatten(1).mean(1)

    src, tgt, edit, mask = _masked_triplet(size=LPIPS_MIN_SIZE)  # no upsampling before the network
    metric = MeanLPIPS(L1Net())
    metric.update(edit, tgt, mask)
    out = metric.compute()
    e, t, m = edit.numpy().astype(np.float64), tgt.numpy().astype(np.float64), mask.numpy()[:, 0]
    # to_lpips keeps [-1, 1]; the inside counts as zero difference, so the mean is over all pixels
    per_image = [np.abs(e[i] - t[i]) * (m[i] == 0) for i in range(4) if (m[i] == 0).any()]
    np.testing.assert_allclose(out["lpips_outside_mask"].item(), np.mean([p.mean() for p in per_image]), rtol=1e-5)
    np.testing.assert_allclose(out["lpips"].item(), np.abs(e - t).reshape(4, -1).mean(1).mean(), rtol=1e-5)
