import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.fft import next_fast_len

from xmgie.modules.gaussian_blur import (blur_sigma, blur_whole, brute_force_blur, gaussian_blur_edit,
                                         inside_distance, level_weights, separable_distance, separable_gaussian)


def _mask(h=40, w=44):
    m = np.zeros((h, w), dtype=np.float32)
    m[5:33, 8:30] = 1
    m[12:22, 30:40] = 1
    return torch.from_numpy(m)[None, None]


def test_inside_distance_is_the_exact_euclidean_distance_to_the_outside():
    mask = _mask(20, 22)
    d = inside_distance(mask)[0, 0].numpy()
    inside = np.argwhere(mask[0, 0].numpy() > 0)
    outside = np.argwhere(mask[0, 0].numpy() == 0)
    brute = np.sqrt(((inside[:, None, :] - outside[None, :, :]) ** 2).sum(-1)).min(1)  # every pair
    np.testing.assert_allclose(d[tuple(inside.T)], brute, rtol=0, atol=1e-5)
    assert (d[mask[0, 0].numpy() == 0] == 0).all()


@pytest.mark.parametrize("seed", range(4))
def test_the_device_distance_transform_equals_scipys_on_random_masks(seed):
    rng = np.random.default_rng(seed)
    masks = rng.random((3, 1, 23, 37)) < rng.uniform(0.5, 0.97)  # from scattered holes to a nearly full mask
    masks[2, 0] = True  # all inside: no outside pixel
    got = separable_distance(torch.from_numpy(masks.astype(np.float32))).numpy()
    for b in range(2):
        np.testing.assert_allclose(got[b, 0], ndimage.distance_transform_edt(masks[b, 0]), rtol=0, atol=1e-5)
    assert np.isinf(got[2]).all()


def test_the_device_distance_transform_equals_scipys_on_200_masks_of_1_to_512_px():
    """Sides drawn log-uniformly in [1, 512] (a few large, most small), from scattered holes to solid blobs."""
    rng = np.random.default_rng(0)
    for i in range(200):
        H, W = np.exp(rng.uniform(0, np.log(512), size=2)).round().astype(int).clip(1, 512)
        if i % 2:  # blobs: smoothed noise thresholded
            noise = ndimage.gaussian_filter(rng.random((H, W)), sigma=max(1.0, min(H, W) / 8))
            mask = noise > np.quantile(noise, rng.uniform(0.05, 0.95))
        else:
            mask = rng.random((H, W)) < rng.uniform(0.3, 0.99)
        got = separable_distance(torch.from_numpy(mask.astype(np.float32))[None, None])[0, 0].numpy()
        if mask.all():
            assert np.isinf(got).all()
        else:
            np.testing.assert_allclose(got, ndimage.distance_transform_edt(mask), rtol=0, atol=1e-4,
                                       err_msg=f"mask {i}: {H}x{W}")


def test_the_whole_image_path_of_accelerators_equals_the_cropped_one():
    image, mask = torch.rand(2, 3, 40, 44), _mask().expand(2, 1, 40, 44).clone()
    torch.testing.assert_close(blur_whole(image, mask, 2.0, 4.0), gaussian_blur_edit(image, mask, 2.0, 4.0),
                               atol=1e-5, rtol=0)


def test_all_ones_mask_has_no_seam_and_is_not_blurred():
    image = torch.rand(1, 3, 16, 16)
    out = gaussian_blur_edit(image, torch.ones(1, 1, 16, 16))
    assert torch.equal(out, image)


@pytest.mark.parametrize("sigma,ry,rx,size", [(0.4, 2, 2, (20, 19)), (1.5, 5, 5, (20, 19)), (3.0, 9, 7, (20, 19)),
                                              (6.0, 19, 18, (20, 19)), (1.5, 5, 5, (300, 40)), (12.0, 36, 5, (40, 270)),
                                              (40.0, 120, 120, (260, 300))])
def test_the_separable_gaussian_equals_scipys_with_mirrored_borders(sigma, ry, rx, size):
    """SciPy's 'mirror' border reflects about the edge pixel, as 'reflect' padding does in torch; sides of 256 samples
    or more (padding included) take the FFT path, the others the direct one."""
    x = np.random.default_rng(0).normal(size=(2, 3, *size)).astype(np.float32)
    ours = separable_gaussian(torch.from_numpy(x), sigma, ry, rx).numpy()
    taps = [np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma**2)) for r in (ry, rx)]
    ref = ndimage.correlate1d(x, taps[1] / taps[1].sum(), axis=-1, mode="mirror")
    ref = ndimage.correlate1d(ref, taps[0] / taps[0].sum(), axis=-2, mode="mirror")
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


def test_fft_lengths_are_the_smallest_with_factors_2_3_5():
    """What `fft_correlate` relies on SciPy's `next_fast_len(n, real=True)` for."""
    def smooth(m):
        for f in (2, 3, 5):
            while m % f == 0:
                m //= f
        return m == 1
    for n in [1, 2, 7, 11, 97, 257, 1000, 2731, 4099]:
        assert next_fast_len(n, real=True) == next(m for m in range(n, 2 * n + 1) if smooth(m))


def test_sigma_follows_eq_18():
    d = torch.tensor([0.0, 1.0, 5.0, 20.0])
    expected = torch.tensor([0.0, 5 * np.exp(-1 / 200), 5 * np.exp(-25 / 200), 5 * np.exp(-400 / 200)])
    torch.testing.assert_close(blur_sigma(d, 5.0, 10.0), expected.float())


def test_level_weights_sum_to_one_and_interpolate_in_variance():
    levels = torch.tensor([0.0, 1.0, 2.0])
    sigma = torch.tensor([0.0, 1.0, 1.5, 2.0, 3.0]).view(1, 1, 1, 5)
    w = level_weights(sigma, levels)[0, :, 0]  # (L, 5)
    torch.testing.assert_close(w.sum(0), torch.ones(5))
    torch.testing.assert_close(w[:, 2], torch.tensor([0.0, 1 - 1.25 / 3, 1.25 / 3]))  # σ² = 2.25 between 1 and 4
    torch.testing.assert_close(w[:, 4], torch.tensor([0.0, 0.0, 1.0]))  # beyond the last level: clamped


@pytest.mark.parametrize("sigma_max,sigma_s", [(5.0, 10.0), (2.0, 6.0), (0.625, 1.25)])
def test_matches_the_brute_force_per_pixel_gaussian(sigma_max, sigma_s):
    # Tolerance: level interpolation is exact at the levels and errs in between; uniform noise in [-1, 1] (the
    # worst case: all its energy at the highest frequencies) errs by at most 0.071 here (bound 0.08) and 0.01 in
    # mean; smooth images far less (0.035 max measured on `shapes` images).
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (3, 40, 44))
    mask = _mask()
    out = gaussian_blur_edit(torch.from_numpy(image).float()[None], mask, sigma_max, sigma_s)[0].double().numpy()
    sigma = blur_sigma(inside_distance(mask), sigma_max, sigma_s)[0, 0].double().numpy()
    ref = brute_force_blur(image, sigma)
    err = np.abs(out - ref)
    assert err.max() < 0.08 and err.mean() < 0.01


def test_brute_force_matches_scipy_for_a_constant_sigma():
    # the reference itself against an independent Gaussian filter (same truncation and reflect padding)
    rng = np.random.default_rng(1)
    image = rng.uniform(-1, 1, (1, 30, 30))
    sigma = np.full((30, 30), 1.7)
    ref = brute_force_blur(image, sigma)
    scipy_blur = ndimage.gaussian_filter(image[0], 1.7, mode="mirror", truncate=np.ceil(3 * 1.7) / 1.7)
    np.testing.assert_allclose(ref[0], scipy_blur, atol=1e-10)


def test_outside_the_mask_is_exact_and_sigma_zero_is_identity():
    image = torch.randn(2, 3, 40, 44)
    mask = _mask().repeat(2, 1, 1, 1)
    out = gaussian_blur_edit(image, mask)
    outside = (mask == 0).expand_as(image)
    assert torch.equal(out[outside], image[outside])
    assert not torch.allclose(out[~outside], image[~outside])
    assert torch.equal(gaussian_blur_edit(image, mask, sigma_max=0.0), image)


def test_is_differentiable_and_batched():
    image = torch.randn(3, 3, 24, 24, requires_grad=True)
    mask = torch.zeros(3, 1, 24, 24)
    mask[0, :, 4:20, 4:20] = 1
    mask[2, :, 0:10, 0:24] = 1
    out = gaussian_blur_edit(image, mask, 2.0, 4.0)
    out.square().sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    single = gaussian_blur_edit(image[2:3].detach(), mask[2:3], 2.0, 4.0)
    torch.testing.assert_close(out[2:3].detach(), single)


def test_a_mask_at_the_border_or_in_a_corner_matches_the_reference():
    # the crop to the mask's box must meet the image border exactly where the image does
    rng = np.random.default_rng(2)
    image = rng.uniform(-1, 1, (3, 30, 36))
    mask = np.zeros((30, 36), dtype=np.float32)
    mask[0:9, 25:36] = 1
    mask[20:24, 3:6] = 1
    m = torch.from_numpy(mask)[None, None]
    out = gaussian_blur_edit(torch.from_numpy(image).float()[None], m, 2.0, 4.0)[0].double().numpy()
    sigma = blur_sigma(inside_distance(m), 2.0, 4.0)[0, 0].double().numpy()
    assert np.abs(out - brute_force_blur(image, sigma)).max() < 0.08
    assert np.array_equal(out[:, mask == 0], image[:, mask == 0].astype(np.float32).astype(np.float64))
