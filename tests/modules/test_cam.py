import pytest
import torch

from tests.modules.conftest import micro_generator
from xmgie.models.unet_layers import Attention
from xmgie.modules.cam import CrossAttentionMasking, MaskedCrossAttnProcessor, layer_mask, masked_cross_attention


def naive_cam(q, k, v, spatial, select, heads, mode):
    """Eq. 10–12 written out per batch element, head, position and token."""
    B = spatial.shape[0]
    out = torch.zeros_like(q)
    for b in range(B):
        for h in range(heads):
            i = b * heads + h
            logits = torch.einsum("nd,td->nt", q[i], k[i]) / q.shape[-1] ** 0.5
            m = torch.ones_like(logits)
            for t in range(k.shape[1]):
                if select[b, t]:
                    m[:, t] = spatial[b]
            if mode == "pre_softmax":
                a = torch.softmax(logits.masked_fill(m == 0, torch.finfo(q.dtype).min), dim=-1)
            else:
                a = torch.softmax(logits, dim=-1) * m
            out[i] = torch.einsum("nt,td->nd", a, v[i])
    return out


@pytest.mark.parametrize("mode", ["post_softmax", "pre_softmax"])
def test_matches_naive_einsum(mode):
    torch.manual_seed(0)
    B, heads, N, T, d = 3, 2, 12, 7, 8
    q, k, v = torch.randn(B * heads, N, d), torch.randn(B * heads, T, d), torch.randn(B * heads, T, d)
    spatial = (torch.rand(B, N) > 0.5).float()
    select = torch.rand(B, T) > 0.4
    out = masked_cross_attention(q, k, v, spatial, select, mode)
    torch.testing.assert_close(out, naive_cam(q, k, v, spatial, select, heads, mode), atol=1e-5, rtol=0)


def test_all_ones_mask_is_plain_attention():
    q, k, v = torch.randn(4, 5, 8), torch.randn(4, 3, 8), torch.randn(4, 3, 8)
    out = masked_cross_attention(q, k, v, torch.ones(2, 5), torch.ones(2, 3, dtype=torch.bool))
    plain = torch.softmax(q @ k.transpose(1, 2) / 8**0.5, -1) @ v
    torch.testing.assert_close(out, plain)


def test_layer_mask_resizes_and_rebinarises():
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :3] = 1  # area 2x2 cells: column 1 is half covered -> 0.5 -> kept
    m = layer_mask(mask, 16).view(4, 4)
    assert m.dtype == torch.bool
    assert m[:2, :2].all() and not m[2:].any() and not m[:, 2:].any()


def _generator(cam: bool):
    return micro_generator([CrossAttentionMasking()] if cam else [])


def test_processor_is_installed_on_cross_attention_only_and_masks_words():
    g = _generator(cam=True)
    procs = {n: m.processor for n, m in g.unet.named_modules() if isinstance(m, Attention)}
    assert all(isinstance(p, MaskedCrossAttnProcessor) == n.endswith("attn2") for n, p in procs.items())
    assert any(n.endswith("attn2") for n in procs)
    base = _generator(cam=False)
    base.load_state_dict(g.state_dict())
    src = torch.rand(2, 3, 16, 16) * 2 - 1
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([500, 500])
    ones = torch.ones(2, 1, 16, 16)
    with torch.no_grad():
        # an all-ones mask: CAM changes nothing
        a = g(x, t, g.make_condition(src, ones, ["make the circle red"] * 2))
        b = base(x, t, base.make_condition(src, ones, ["make the circle red"] * 2))
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        # a real mask: the output changes
        mask = torch.zeros(2, 1, 16, 16)
        mask[..., 4:12, 4:12] = 1
        c = g(x, t, g.make_condition(src, mask, ["make the circle red"] * 2))
        d = base(x, t, base.make_condition(src, mask, ["make the circle red"] * 2))
        assert not torch.allclose(c, d, atol=1e-4)


def test_self_attention_is_untouched():
    g = _generator(cam=True)
    proc = next(m.processor for n, m in g.unet.named_modules() if n.endswith("attn2"))
    attn = next(m for n, m in g.unet.named_modules() if n.endswith("attn1"))
    h = torch.randn(2, 16, attn.to_q.in_features)
    cam = g.plugins[0]  # give it a state: a mask that would matter if it were applied
    cam.condition(g.make_condition(torch.zeros(2, 3, 16, 16), torch.zeros(2, 1, 16, 16), ["a b", "c"]))
    with torch.no_grad():
        torch.testing.assert_close(proc(attn, h), proc.fallback(attn, h))


def test_word_tokens_exclude_start_end_and_padding():
    cam = CrossAttentionMasking()
    tokens = torch.tensor([[49406, 320, 1125, 49407, 0, 0]])
    assert cam.word_tokens(tokens).tolist() == [[False, True, True, False, False, False]]
