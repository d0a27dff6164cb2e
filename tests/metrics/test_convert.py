"""Each backbone's input conversion, pinned."""
import torch

from xmgie.metrics.convert import LPIPS_MIN_SIZE, to_lpips, to_signed, to_uint8, to_unit


def test_uint8_for_inception_maps_the_ends_and_rounds_like_a_png():
    x = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0]).view(1, 1, 1, 7).expand(1, 3, 1, 7)
    out = to_uint8(x)
    assert out.dtype == torch.uint8
    # (x + 1) / 2 * 255, rounded half to even, clamped: 63.75 -> 64, 127.5 -> 128, 191.25 -> 191
    assert out[0, 0, 0].tolist() == [0, 0, 64, 128, 191, 255, 255]


def test_unit_for_ssim_and_signed_for_lpips_and_encoders():
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 3.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert to_unit(x)[0, 0, 0].tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert to_signed(x)[0, 0, 0].tolist() == [-1.0, -1.0, 0.0, 1.0, 1.0]
    assert to_signed(x.double()).dtype == torch.float32


def test_lpips_input_is_signed_and_small_images_are_upsampled():
    small = torch.rand(2, 3, 16, 24) * 4 - 2
    out = to_lpips(small)
    assert out.shape == (2, 3, LPIPS_MIN_SIZE, 96) and out.min() >= -1 and out.max() <= 1
    big = torch.rand(1, 3, 64, 80) * 2 - 1
    assert torch.equal(to_lpips(big), big)
