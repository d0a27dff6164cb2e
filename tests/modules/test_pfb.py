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


@pytest.mark.parametrize("prediction_type,residual", [("sample", True), ("epsilon", False), ("v_prediction", False)])
def test_out_layer_predicts_the_source_outside_the_mask(prediction_type, residual):
    """'out' with α = 1: outside the mask the prediction is the source's own target (so x̂0 is the source),
    inside it is the U-Net's prediction untouched; no reference branch runs."""
    plain = micro_generator(prediction_type=prediction_type, residual=residual)
    g = micro_generator([ProgressiveFeatureBlending(("out",), fixed_alpha=1.0)], prediction_type=prediction_type,
                        residual=residual)
    assert not g.plugins[0].needs_reference
    src, mask, noise, t = edit_inputs()
    cond = g.make_condition(src, mask, ["make the circle red"] * 2)
    x_t = torch.randn_like(src)
    with torch.no_grad():
        own = plain(x_t, t, plain.make_condition(src, mask, ["make the circle red"] * 2))
        pred = g(x_t, t, cond, noise=noise)
    x_src = g.to_diffusion_space(src, cond)
    outside = mask.expand_as(src) == 0
    torch.testing.assert_close(pred[~outside], own[~outside])
    torch.testing.assert_close(pred[outside], g.prediction_target(x_src, noise, t)[outside])
    x0 = g.predict_x0(g.add_noise(x_src, noise, t), t, pred)
    torch.testing.assert_close(g.to_image_space(x0, cond)[outside], src[outside], atol=1e-4, rtol=0)


def test_out_layer_is_exact_latent_blending_at_every_step():
    """A DDIM edit with PFB at 'out' (α = 1) equals the plain generator's edit with the sample replaced by the
    noised source outside the mask after every step (`source_blend=1`), and keeps the source there exactly."""
    from xmgie.models.sampling import ddim_edit

    plain = micro_generator()
    g = micro_generator([ProgressiveFeatureBlending(("out",), fixed_alpha=1.0)])
    src, mask, _, _ = edit_inputs()
    blended = ddim_edit(plain, src, mask, ["make the circle red"] * 2, steps=4, source_blend=1.0)
    out = ddim_edit(g, src, mask, ["make the circle red"] * 2, steps=4)
    torch.testing.assert_close(out, blended, atol=1e-5, rtol=0)
    outside = mask.expand_as(src) == 0
    torch.testing.assert_close(out[outside], src[outside], atol=1e-5, rtol=0)
    assert not torch.allclose(out[~outside], src[~outside], atol=1e-2)


def test_out_layer_with_feature_layers_keeps_one_alpha_per_layer():
    g = micro_generator([ProgressiveFeatureBlending(("mid", "up0", "out"), alpha_init=0.9)]).train()
    pfb = g.plugins[0]
    assert pfb.needs_reference and pfb.blends_prediction
    src, mask, noise, t = edit_inputs()
    cond = g.make_condition(src, mask, ["make the circle red"] * 2)
    x_t = g.add_noise(g.to_diffusion_space(src, cond), noise, t)
    g(x_t, t, cond, noise=noise).square().mean().backward()
    assert pfb.alpha_logit.grad.shape == (3,) and (pfb.alpha_logit.grad != 0).all()
    with pytest.raises(ValueError, match="noise"):
        g(x_t, t, cond)


def test_guidance_branches_that_show_the_same_image_share_one_reference_row():
    """Guided editing stacks [text+image, image only, neither]: the first two show the same image, so their
    reference rows are equal and run once (5B U-Net rows instead of 6B), with the same prediction."""
    from xmgie.models.generator import SharedReference
    from xmgie.models.sampling import ddim_edit

    g = micro_generator([ProgressiveFeatureBlending(("mid", "up0"), alpha_init=0.7)])
    src, mask, noise, t = edit_inputs()
    B = src.shape[0]
    no, yes = torch.zeros(B, dtype=torch.bool), torch.ones(B, dtype=torch.bool)
    cond = g.make_condition(src, mask, ["make the circle red", "move the square up"] * 3, copies=3,
                            text_dropped=torch.cat([no, yes, yes]), image_dropped=torch.cat([no, no, yes]))
    x_t, i = torch.randn(3 * B, 3, 16, 16), torch.arange(B)
    shared = SharedReference(rows=torch.arange(B, 3 * B), index=torch.cat([i, i, i + B]))
    rows = []
    g.unet.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    with torch.no_grad():
        every = g(x_t, t.repeat(3), cond, noise=noise.repeat(3, 1, 1, 1))
        once = g(x_t, t.repeat(3), cond, noise=noise.repeat(3, 1, 1, 1), shared=shared)
    assert rows == [6 * B, 5 * B]
    torch.testing.assert_close(once, every, atol=1e-5, rtol=1e-5)
    rows.clear()
    ddim_edit(g, src, mask, ["make the circle red"] * B, steps=2, guidance_text=3.0, guidance_image=1.5)
    assert rows == [5 * B, 5 * B]


def test_modules_off_edits_as_the_generator_without_them():
    """Inside `modules_off` a generator with PFB, CAM, IE and GB edits exactly as the same weights without any
    module; outside it the modules act again; a module it lacks is refused."""
    from xmgie.models.sampling import ddim_edit
    from xmgie.modules.cam import CrossAttentionMasking
    from xmgie.modules.gaussian_blur import GaussianBlur
    from xmgie.modules.identity import IdentityEmbedding, SmallIdentityCNN

    plain = micro_generator()
    full = micro_generator([ProgressiveFeatureBlending(("mid", "up0", "out"), alpha_init=0.7),
                            CrossAttentionMasking(), IdentityEmbedding(SmallIdentityCNN(16), text_width=32),
                            GaussianBlur(1.0, 2.0)])
    full.load_state_dict(plain.state_dict(), strict=False)
    src, mask, _, _ = edit_inputs()
    texts = ["make the circle red"] * 2
    with_modules = ddim_edit(full, src, mask, texts, steps=3, guidance_text=2.0)  # leaves CAM's and IE's state set
    with full.modules_off({"pfb", "cam", "ie", "gb"}):
        off = ddim_edit(full, src, mask, texts, steps=3, guidance_text=2.0)
    torch.testing.assert_close(off, ddim_edit(plain, src, mask, texts, steps=3, guidance_text=2.0))
    assert not torch.allclose(off, with_modules, atol=1e-3)
    torch.testing.assert_close(ddim_edit(full, src, mask, texts, steps=3, guidance_text=2.0), with_modules)
    with pytest.raises(ValueError, match="no module gb"):
        with plain.modules_off({"gb"}):
            pass
