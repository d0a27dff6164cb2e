import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from xmgie.evaluation.functional import psnr_per_image, ssim_per_image
from xmgie.evaluation.metrics import EditQuality


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
