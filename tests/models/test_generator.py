import pytest
import torch
from diffusers import DDPMScheduler

from xmgie.conditioning import TextEncoderConfig
from xmgie.models import EditGenerator, GeneratorConfig
from xmgie.models.sampling import ddim_edit

MICRO = dict(size="micro", text=TextEncoderConfig(width=32, layers=1, heads=2))


@pytest.fixture(scope="module")
def gen():
    torch.manual_seed(0)
    return EditGenerator(GeneratorConfig(**MICRO)).eval()


def test_add_noise_matches_diffusers(gen):
    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    x0, eps = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    t = torch.tensor([0, 10, 500, 999])
    assert torch.allclose(gen.add_noise(x0, eps, t), ref.add_noise(x0, eps, t), atol=1e-5)
    v_ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2").get_velocity(x0, eps, t)
    gen.cfg.prediction_type = "v_prediction"
    assert torch.allclose(gen.prediction_target(x0, eps, t), v_ref, atol=1e-5)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_predict_x0_inverts_the_exact_target(kind):
    g = EditGenerator(GeneratorConfig(prediction_type=kind, **MICRO))
    x0, eps = torch.rand(3, 3, 8, 8) * 2 - 1, torch.randn(3, 3, 8, 8)
    t = torch.tensor([5, 300, 900])
    x_t = g.add_noise(x0, eps, t)
    recovered = g.predict_x0(x_t, t, g.prediction_target(x0, eps, t))
    assert torch.allclose(recovered, x0, atol=1e-3)


def test_forward_shape_and_null_conditions(gen):
    src = torch.rand(2, 3, 16, 16) * 2 - 1
    mask = torch.ones(2, 1, 16, 16)
    cond = gen.make_condition(src, mask, ["make it red", "move the square left"],
                              text_dropped=torch.tensor([True, False]), image_dropped=torch.tensor([False, True]))
    empty = gen.text_encoder.tokenize([""])[0]
    assert torch.equal(cond.tokens[0].cpu(), empty)          # dropped text -> the empty instruction
    image = gen.image_condition(cond)
    assert image[1].abs().sum() == 0 and torch.equal(image[0], src[0])
    out = gen(torch.randn(2, 3, 16, 16), torch.tensor([1, 500]), cond)
    assert out.shape == (2, 3, 16, 16)


def test_hidden_source_adds_a_mask_channel():
    g = EditGenerator(GeneratorConfig(hide_masked_source=True, **MICRO))
    src, mask = torch.ones(1, 3, 8, 8), torch.zeros(1, 1, 8, 8)
    mask[..., :4] = 1
    image = g.image_condition(g.make_condition(src, mask, ["x"]))
    assert image.shape == (1, 4, 8, 8) and image[0, :3, :, :4].abs().sum() == 0 and torch.equal(image[0, 3], mask[0, 0])
    assert g.unet.config.in_channels == 7


def test_unit_guidance_equals_the_conditional_pass_and_other_scales_differ(gen):
    src = torch.rand(2, 3, 16, 16) * 2 - 1
    mask = torch.ones(2, 1, 16, 16)
    plain = ddim_edit(gen, src, mask, ["a", "b"], steps=3, seed=1)
    again = ddim_edit(gen, src, mask, ["a", "b"], steps=3, seed=1)
    assert torch.equal(plain, again)  # seeded
    guided = ddim_edit(gen, src, mask, ["a", "b"], steps=3, seed=1, guidance_text=2.0, guidance_image=1.5)
    assert plain.shape == guided.shape and not torch.allclose(plain, guided)
    assert plain.min() >= -1 and plain.max() <= 1


def test_three_branch_guidance_formula(gen, monkeypatch):
    """With s_T = 2, s_I = 3 the combined prediction is u + 3(i − u) + 2(f − i), checked on a fake U-Net."""
    calls = []

    def fake_forward(x, t, cond, context=None, noise=None, shared=None):
        # a prediction that depends on which condition was dropped, so the branches differ
        p = torch.zeros_like(x)
        p += (~cond.text_dropped).float()[:, None, None, None] * 1.0
        p += (~cond.image_dropped).float()[:, None, None, None] * 10.0
        calls.append(p)
        return p

    monkeypatch.setattr(gen, "forward", fake_forward)
    monkeypatch.setattr(type(gen), "__call__", lambda self, *a, **k: self.forward(*a, **k))
    src = torch.zeros(1, 3, 4, 4)
    ddim_edit(gen, src, torch.ones(1, 1, 4, 4), ["x"], steps=1, guidance_text=2.0, guidance_image=3.0)
    full, image_only, uncond = calls[0].chunk(3)
    assert full.mean() == 11 and image_only.mean() == 10 and uncond.mean() == 0


def test_residual_space_round_trip_and_zero_means_copy():
    g = EditGenerator(GeneratorConfig(residual=True, mask_channel=True, **MICRO))
    src, tgt = torch.rand(2, 3, 8, 8) * 2 - 1, torch.rand(2, 3, 8, 8) * 2 - 1
    cond = g.make_condition(src, torch.ones(2, 1, 8, 8), ["a", "b"])
    z = g.to_diffusion_space(tgt, cond)
    assert torch.allclose(z, (tgt - src) / 2) and torch.allclose(g.to_image_space(z, cond), tgt, atol=1e-6)
    assert torch.equal(g.postprocess(torch.zeros_like(z), cond), src)  # the zero edit is the source


def test_mask_channel_and_pooled_text_reach_the_unet():
    g = EditGenerator(GeneratorConfig(mask_channel=True, pooled_text=True, film=True, **MICRO)).eval()
    assert g.unet.config.in_channels == 7 and g.unet.config.class_embed_type == "projection"
    assert g.unet.config.resnet_time_scale_shift == "scale_shift"
    src = torch.rand(1, 3, 16, 16) * 2 - 1
    x, t = torch.randn(1, 3, 16, 16), torch.tensor([500])
    full, half = torch.ones(1, 1, 16, 16), torch.ones(1, 1, 16, 16)
    half[..., 8:] = 0
    with torch.no_grad():
        a = g(x, t, g.make_condition(src, full, ["make it red"]))
        b = g(x, t, g.make_condition(src, half, ["make it red"]))
        # the pooled feature alone changes the output: zero the token features, keep the pooled one
        ctx = g.context(g.make_condition(src, full, ["make it blue"]))
        c = g(x, t, g.make_condition(src, full, ["make it blue"]), ctx._replace(tokens=torch.zeros_like(ctx.tokens)))
        d = g(x, t, g.make_condition(src, full, ["make it blue"]),
              ctx._replace(tokens=torch.zeros_like(ctx.tokens), pooled=torch.zeros_like(ctx.pooled)))
    assert not torch.allclose(a, b) and not torch.allclose(c, d)


def test_guidance_branches_share_one_encoding_of_the_source():
    """make_condition(copies=3) equals building the three branches from repeated sources, with the per-source
    work (here E_id, as the VAE in latent space) done once on B rows."""
    from tests.modules.conftest import edit_inputs, micro_generator
    from xmgie.modules.identity import IdentityEmbedding, SmallIdentityCNN

    g = micro_generator([IdentityEmbedding(SmallIdentityCNN(16), text_width=32, tokens=2)])
    src, mask, _, _ = edit_inputs()
    rows = []
    g.plugins[0].encoder.body.register_forward_hook(lambda m, a, out: rows.append(a[0].shape[0]))
    no, yes = torch.zeros(2, dtype=torch.bool), torch.ones(2, dtype=torch.bool)
    flags = dict(text_dropped=torch.cat([no, yes, yes]), image_dropped=torch.cat([no, no, yes]))
    shared = g.make_condition(src, mask, ["make it red", "move it"] * 3, **flags, copies=3)
    assert rows == [2]
    repeated = g.make_condition(src.repeat(3, 1, 1, 1), mask.repeat(3, 1, 1, 1), ["make it red", "move it"] * 3,
                                **flags)
    x_t, t = torch.randn(6, 3, 16, 16), torch.full((6,), 500)
    assert torch.equal(shared.tokens, repeated.tokens)
    with torch.no_grad():
        torch.testing.assert_close(g(x_t, t, shared), g(x_t, t, repeated))
