import numpy as np
import pytest
import torch
from scipy import ndimage

from tests.modules.conftest import micro_generator
from xmgie.modules.cam import CrossAttentionMasking
from xmgie.modules.mask_predictor import (MaskPredictor, MaskPredictorConfig, clip_outliers, normalise, relevance,
                                          relevance_map)
from xmgie.modules.pfb import ProgressiveFeatureBlending


def numpy_map(diff: np.ndarray) -> np.ndarray:
    """The relevance pipeline of one image written directly: (C, h, w) difference at full size -> (h, w)."""
    rel = np.abs(diff).sum(0)
    q1, q3 = np.percentile(rel, [25, 75])
    rel = np.minimum(rel, q3 + 1.5 * (q3 - q1))
    return (rel - rel.min()) / (rel.max() - rel.min())


def test_relevance_map_matches_a_direct_numpy_computation():
    torch.manual_seed(0)
    text, null = torch.randn(3, 4, 12, 12), torch.randn(3, 4, 12, 12)
    text[:, :, 0, 0] += 50  # an outlier that the fence must clip
    got = relevance_map(relevance(text, null), (12, 12))
    for b in range(3):
        np.testing.assert_allclose(got[b, 0].numpy(), numpy_map((text - null)[b].numpy()), atol=1e-5)
    assert got[:, 0, 0, 0].eq(1).all() and got.amin(dim=(1, 2, 3)).eq(0).all()


def test_clipping_bounds_each_image_by_its_own_fence():
    rel = torch.arange(2 * 100, dtype=torch.float32).reshape(2, 1, 10, 10)
    rel[1] *= 10
    rel[:, 0, 9, 9] = 1e6
    clipped = clip_outliers(rel)
    for b in range(2):
        q1, q3 = np.percentile(rel[b].numpy(), [25, 75])
        assert float(clipped[b].max()) == pytest.approx(min(1e6, q3 + 1.5 * (q3 - q1)), rel=1e-6)
    assert torch.equal(clipped[rel < 150], rel[rel < 150])


def test_a_fence_at_the_minimum_does_not_flatten_a_small_change():
    rel = torch.zeros(1, 1, 10, 10)
    rel[..., 2:4, 2:6] = 5.0  # 8 % of the image: Q1 = Q3 = 0
    assert torch.equal(clip_outliers(rel), rel)


def test_draws_are_averaged_and_a_flat_map_means_nothing_to_edit():
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(relevance(torch.cat([a, b]), torch.zeros(4, 3, 4, 4), draws=2),
                               (a.abs().sum(1, keepdim=True) + b.abs().sum(1, keepdim=True)) / 2)
    assert normalise(torch.full((1, 1, 4, 4), 3.0)).eq(0).all()


def test_smoothing_is_a_gaussian_of_the_map():
    torch.manual_seed(1)
    rel = torch.rand(1, 1, 16, 16)
    smoothed = relevance_map(rel, (16, 16), smooth=1.5)
    # kornia's 'reflect' border mirrors about the edge pixel: SciPy's 'mirror'; radius ⌈3σ⌉ = truncate 5 / 1.5
    ref = ndimage.gaussian_filter(relevance_map(rel, (16, 16))[0, 0].double().numpy(), 1.5, mode="mirror",
                                  truncate=5 / 1.5)
    ref = (ref - ref.min()) / (ref.max() - ref.min())
    np.testing.assert_allclose(smoothed[0, 0].numpy(), ref, atol=1e-5)


class RegionEditor:
    """A stand-in editor whose prediction differs between the instruction and the null one only inside a known
    region: what the predictor must find, whatever the noise."""

    def __init__(self, region: torch.Tensor):
        self.region = region                      # (1, 1, H, W) {0, 1}
        self.alphas_cumprod = torch.linspace(0.99, 0.01, 1000)
        self.calls = []

    def make_condition(self, source, mask, instructions, text_dropped=None, copies=1):
        assert mask.eq(1).all()  # the U-Net is shown "anywhere"
        return {"source": source.repeat(copies, 1, 1, 1), "dropped": text_dropped}

    def reference_in_diffusion_space(self, cond):
        return cond["source"]

    def add_noise(self, x0, noise, t):
        a = self.alphas_cumprod[t][:, None, None, None]
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def denoise(self, x_t, t, cond):
        self.calls.append((x_t.shape[0], int(t[0])))
        text = (~cond["dropped"]).float()[:, None, None, None]
        return x_t + 3 * text * self.region


@pytest.mark.parametrize("draws", [1, 3])
def test_the_predictor_finds_where_the_instruction_acts_in_one_batched_call(draws):
    region = torch.zeros(1, 1, 16, 16)
    region[..., 3:9, 5:14] = 1
    editor = RegionEditor(region)
    source = torch.rand(2, 3, 16, 16) * 2 - 1
    mask = MaskPredictor(MaskPredictorConfig(draws=draws))(editor, source, ["make it red", "move it"])
    assert torch.equal(mask, region.expand(2, 1, 16, 16))
    assert editor.calls == [(2 * draws * 2, 800)]  # one U-Net call: instruction and null, every draw, t = 0.8 T


def test_the_predictor_runs_a_real_generator_once_whatever_its_modules():
    torch.manual_seed(0)
    g = micro_generator([CrossAttentionMasking(), ProgressiveFeatureBlending(("mid",))])
    calls = []
    g.unet.register_forward_hook(lambda m, a, out: calls.append(a[0].shape[0]))
    source = torch.rand(3, 3, 16, 16) * 2 - 1
    predictor = MaskPredictor(MaskPredictorConfig(smooth=1.0))
    soft = predictor.soft(g, source, ["make the circle red", "a hat", "bigger"], seed=3)
    assert calls == [6] and soft.shape == (3, 1, 16, 16)
    assert soft.amin() == 0 and torch.allclose(soft.amax(dim=(1, 2, 3)), torch.ones(3))
    assert torch.equal(soft, predictor.soft(g, source, ["make the circle red", "a hat", "bigger"], seed=3))


def test_the_map_of_a_tiny_unet_is_the_direct_computation_of_its_two_predictions():
    g = micro_generator()
    source = torch.rand(2, 3, 16, 16) * 2 - 1
    texts = ["make the circle red", "move the square left"]
    got = MaskPredictor().soft(g, source, texts, seed=7)
    ones = torch.ones(2, 1, 16, 16)
    with torch.no_grad():  # the two predictions, each its own U-Net call
        text = g.make_condition(source, ones, texts)
        null = g.make_condition(source, ones, texts, text_dropped=torch.ones(2, dtype=torch.bool))
        x0 = g.reference_in_diffusion_space(text)
        eps = torch.cat([torch.randn((1, *x0.shape[1:]), generator=torch.Generator().manual_seed(7))] * 2)
        t = torch.full((2,), 800)
        x_t = g.add_noise(x0, eps, t)
        diff = (g.denoise(x_t, t, text) - g.denoise(x_t, t, null)).numpy()
    for b in range(2):
        np.testing.assert_allclose(got[b, 0].numpy(), numpy_map(diff[b]), atol=1e-4)


def test_an_instruction_that_changes_nothing_gives_the_whole_image():
    g = micro_generator()
    source = torch.rand(2, 3, 16, 16) * 2 - 1
    mask = MaskPredictor()(g, source, ["", "make the circle red"])  # "" is the null instruction itself
    assert mask[0].eq(1).all() and not mask[1].eq(1).all()


@pytest.mark.parametrize("field,value", [("timestep", 0.0), ("draws", 0), ("threshold", 1.5), ("smooth", -1.0)])
def test_bad_settings_are_refused(field, value):
    with pytest.raises(ValueError, match="mask"):
        MaskPredictorConfig(**{field: value})
