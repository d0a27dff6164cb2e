import pytest
import torch

from tests.modules.conftest import edit_inputs, micro_generator
from xmgie.modules.pfb import ProgressiveFeatureBlending, blend, resize_mask


def test_blend_with_alpha_one_keeps_the_source_outside_the_mask():
    f_gen, f_src = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)
    mask = torch.zeros(2, 1, 16, 16)
    mask[..., :8, :8] = 1
    out = blend(f_gen, f_src, 1.0, mask)
    m = resize_mask(mask, (4, 4)).expand_as(f_gen)
    assert torch.equal(out[m == 0], f_src[m == 0])
    torch.testing.assert_close(out[m == 1], f_gen[m == 1])


def test_blend_without_mask_is_eq_5():
    f_gen, f_src = torch.randn(1, 4, 3, 3), torch.randn(1, 4, 3, 3)
    torch.testing.assert_close(blend(f_gen, f_src, 0.3), 0.3 * f_gen + 0.7 * f_src)


def test_alpha_starts_at_one_half_and_is_trained():
    g = micro_generator([ProgressiveFeatureBlending(("mid", "up0"))]).train()
    pfb = g.plugins[0]
    torch.testing.assert_close(pfb.alpha, torch.full((2,), 0.5))
    src, mask, noise, t = edit_inputs()
    cond = g.make_condition(src, mask, ["make the circle red"] * 2)
    x_t = g.add_noise(g.to_diffusion_space(src, cond), noise, t)
    opt = torch.optim.Adam(g.parameters(), lr=1e-2)
    g(x_t, t, cond, noise=noise).square().mean().backward()
    assert pfb.alpha_logit.grad is not None and pfb.alpha_logit.grad.abs().min() > 0
    opt.step()
    assert (pfb.alpha != 0.5).all()


def test_edit_features_outside_the_mask_are_the_reference_features():
    g = micro_generator([ProgressiveFeatureBlending(("mid", "up0"))])
    seen = []
    g.unet.mid_block.register_forward_hook(lambda m, a, out: seen.append(out.detach().clone()))
    src, mask, noise, t = edit_inputs()
    cond = g.make_condition(src, mask, ["make the circle red"] * 2)
    x_t = torch.randn_like(src)
    with torch.enable_grad():  # two passes: reference (recorded), then edit (blended)
        g(x_t, t, cond, noise=noise)
    ref, edit = seen
    outside = resize_mask(mask, tuple(ref.shape[-2:])).expand_as(ref) == 0
    assert outside.any() and (~outside).any()
    assert torch.equal(edit[outside], ref[outside])
    assert not torch.allclose(edit[~outside], ref[~outside])


def test_batched_reference_branch_equals_two_passes():
    g = micro_generator([ProgressiveFeatureBlending(("mid", "up0", "up1"))])
    src, mask, noise, t = edit_inputs()
    cond = g.make_condition(src, mask, ["make the circle red", "move the square up"])
    x_t = torch.randn_like(src)
    with torch.no_grad():
        batched = g(x_t, t, cond, noise=noise)
    with torch.enable_grad():
        two_pass = g(x_t, t, cond, noise=noise).detach()
    torch.testing.assert_close(batched, two_pass, atol=1e-5, rtol=1e-4)


def test_reference_branch_needs_the_noise_and_known_layers():
    g = micro_generator([ProgressiveFeatureBlending()])
    src, mask, noise, t = edit_inputs()
    with pytest.raises(ValueError, match="noise"):
        g(noise, t, g.make_condition(src, mask, ["x", "y"]))
    with pytest.raises(ValueError, match="unknown PFB layer"):
        micro_generator([ProgressiveFeatureBlending(("up7",))])


@pytest.mark.parametrize("alpha_init", [0.1, 0.95])
def test_alpha_init_sets_where_the_learned_alpha_starts(alpha_init):
    pfb = ProgressiveFeatureBlending(("mid", "up0", "up1"), alpha_init=alpha_init)
    torch.testing.assert_close(pfb.alpha, torch.full((3,), alpha_init))
    assert pfb.alpha_logit.requires_grad
    with pytest.raises(ValueError, match="alpha_init"):
        ProgressiveFeatureBlending(("mid",), alpha_init=1.0)
