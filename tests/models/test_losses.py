import math

import torch

from xmgie.models import PatchDiscriminator
from xmgie.models.losses import (diffusion_loss, discriminator_loss, generator_adversarial_loss,
                                 reconstruction_loss)


def test_adversarial_losses_match_the_log_formula():
    real, fake = torch.randn(2, 1, 3, 3), torch.randn(2, 1, 3, 3)
    sig = torch.sigmoid
    expected_d = -(torch.log(sig(real)).mean() + torch.log(1 - sig(fake)).mean())
    assert torch.allclose(discriminator_loss(real, fake), expected_d, atol=1e-5)
    assert torch.allclose(generator_adversarial_loss(fake), -torch.log(sig(fake)).mean(), atol=1e-5)
    # at D = 1/2 everywhere the discriminator loss is 2 log 2
    assert math.isclose(discriminator_loss(torch.zeros(4), torch.zeros(4)).item(), 2 * math.log(2), rel_tol=1e-6)


def test_reconstruction_and_diffusion_losses():
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    assert torch.isclose(reconstruction_loss(a, b), (a - b).abs().sum() / a.numel())
    assert torch.isclose(diffusion_loss(a, b), ((a - b) ** 2).sum() / a.numel())


def test_patch_discriminator_grid():
    d = PatchDiscriminator(channels=8, layers=2)
    assert d(torch.randn(3, 3, 32, 32)).shape == (3, 1, 8, 8)


def test_mask_balanced_mse_against_a_loop():
    from xmgie.models.losses import mask_balanced_mse

    g = torch.Generator().manual_seed(0)
    p, t = torch.randn(3, 2, 5, 5, generator=g), torch.randn(3, 2, 5, 5, generator=g)
    mask = torch.zeros(3, 1, 5, 5)
    mask[0, :, :2] = 1          # a partial mask
    mask[1] = 1                 # all ones: only the inside counts
    expected = []
    for b in range(3):
        inside, outside = [], []
        for y in range(5):
            for x in range(5):
                err = sum((p[b, c, y, x] - t[b, c, y, x]).item() ** 2 for c in range(2)) / 2
                (inside if mask[b, 0, y, x] else outside).append(err)
        parts = [sum(v) / len(v) for v in (inside, outside) if v]
        expected.append(sum(parts) / len(parts))
    assert abs(mask_balanced_mse(p, t, mask).item() - sum(expected) / 3) < 1e-5
