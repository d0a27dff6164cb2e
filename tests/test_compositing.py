import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xmgie.compositing import composite, detail_weight


def photo_and_source(seed: int = 0, size=(40, 56), work: int = 16):
    """A textured photo in [-0.5, 0.5] (no clamping in play), its working-resolution copy and a rectangular mask."""
    g = torch.Generator().manual_seed(seed)
    photo = torch.rand(1, 3, *size, generator=g) - 0.5
    source = F.interpolate(photo, size=(work, work), mode="area")
    mask = torch.zeros(1, 1, *size)
    mask[..., 8:30, 10:40] = 1
    return photo, source, mask


@pytest.mark.parametrize("change", [None, 0.5])
def test_an_edit_that_changes_nothing_returns_the_photo(change):
    photo, source, mask = photo_and_source()
    out = composite(photo, source, source, mask, sigma_max=0.0, sigma_s=1.0, change=change)
    torch.testing.assert_close(out, photo, atol=1e-5, rtol=0)


def test_outside_the_mask_the_photo_is_kept_bit_exactly_even_with_the_seam_blur():
    photo, source, mask = photo_and_source(1)
    edit = torch.rand_like(source) * 2 - 1
    out = composite(photo, edit, source, mask, sigma_max=2.0, sigma_s=4.0)
    outside = mask.expand_as(photo) == 0
    assert torch.equal(out[outside], photo[outside])
    assert not torch.allclose(out[~outside], photo[~outside])


def test_inside_is_the_photo_plus_the_upsampled_change():
    photo, source, mask = photo_and_source(2)
    shift = torch.linspace(-0.3, 0.3, 16).view(1, 1, 1, 16).expand_as(source)  # a smooth change, < the cut-off
    out = composite(photo, source + shift, source, mask, sigma_max=0.0, sigma_s=1.0, change=None)
    up = F.interpolate(shift, size=photo.shape[-2:], mode="bicubic", align_corners=False)
    inside = mask.expand_as(photo) == 1
    np.testing.assert_allclose(out[inside].numpy(), (photo + up)[inside].numpy(), atol=1e-5)


def test_the_photo_detail_is_dropped_where_the_edit_replaced_the_content():
    photo, source, mask = photo_and_source(3)
    edit = torch.full_like(source, 0.9)  # far from every source pixel: new content, e.g. a moved object
    w = detail_weight(edit, source, tuple(photo.shape[-2:]), change=0.5)
    assert w.max() == 0
    out = composite(photo, edit, source, mask, sigma_max=0.0, sigma_s=1.0, change=0.5)
    inside = mask.expand_as(photo) == 1
    np.testing.assert_allclose(out[inside].numpy(), 0.9, atol=1e-5)  # the flat new content, no ghost texture
    kept = composite(photo, edit, source, mask, sigma_max=0.0, sigma_s=1.0)  # the default: all detail
    assert kept[inside].std() > 10 * out[inside].std()  # with all detail, the old texture shows through
