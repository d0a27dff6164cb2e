import pytest
import torch

from tests.modules.conftest import edit_inputs, micro_generator
from xmgie.modules.identity import (FaceNetIdentity, IdentityEmbedding, SmallIdentityCNN, fuse_identity,
                                    identity_loss, init_fusion, load_identity_weights, save_identity_encoder)


def test_fusion_is_a_1x1_conv_over_features_and_embedding():
    conv = torch.nn.Conv2d(6 + 4, 6, 1)
    f, e = torch.randn(2, 6, 5, 5), torch.randn(2, 4)
    w = conv.weight[:, :, 0, 0]
    expected = torch.einsum("oc,bchw->bohw", w[:, :6], f) + torch.einsum("od,bd->bo", w[:, 6:], e)[..., None, None]
    torch.testing.assert_close(fuse_identity(f, e, conv), expected + conv.bias[:, None, None])
    torch.testing.assert_close(fuse_identity(f, e, init_fusion(conv)), f)


def test_identity_loss_is_eq_16():
    a, b = torch.randn(3, 8), torch.randn(3, 8)
    assert identity_loss(a, b).item() == pytest.approx(sum(((a[i] - b[i]) ** 2).sum().item() for i in range(3)) / 3)
    w = torch.tensor([0.9, 0.1, 0.0])  # `loss.id_weighting: signal`: rows weighted by ᾱ_t, normalised
    loop = sum(w[i].item() * ((a[i] - b[i]) ** 2).sum().item() for i in range(3)) / w.sum().item()
    assert identity_loss(a, b, w).item() == pytest.approx(loop)
    assert identity_loss(a, b, torch.ones(3)).item() == pytest.approx(identity_loss(a, b).item())


def test_initialised_fusion_leaves_the_unet_unchanged_and_then_learns():
    base = micro_generator()
    ie = micro_generator([IdentityEmbedding(SmallIdentityCNN(16), text_width=32, tokens=0)])
    ie.load_state_dict(base.state_dict(), strict=False)
    src, mask, x_t, t = edit_inputs()
    with torch.no_grad():
        a = base(x_t, t, base.make_condition(src, mask, ["make it red"] * 2))
        b = ie(x_t, t, ie.make_condition(src, mask, ["make it red"] * 2))
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    ie.train()
    ie(x_t, t, ie.make_condition(src, mask, ["make it red"] * 2)).square().mean().backward()
    fusions = ie.plugins[0].fusions
    assert len(fusions) == len(ie.unet.down_blocks) + 1 + len(ie.unet.up_blocks)
    assert all(c.weight.grad is not None and c.weight.grad[:, -16:].abs().sum() > 0 for c in fusions)
    assert all(p.grad is None for p in ie.plugins[0].encoder.parameters())  # E_id is frozen


def test_identity_tokens_are_appended_and_receive_gradient():
    g = micro_generator([IdentityEmbedding(SmallIdentityCNN(16), text_width=32, tokens=3)]).train()
    src, mask, x_t, t = edit_inputs()
    cond = g.make_condition(src, mask, ["make it red"] * 2)
    assert g.context(cond).tokens.shape == (2, 48 + 3, 32)
    g(x_t, t, cond).square().mean().backward()
    assert g.plugins[0].to_tokens.weight.grad.abs().sum() > 0


def test_dropped_image_condition_drops_the_identity_and_loss_reaches_the_edit():
    plugin = IdentityEmbedding(SmallIdentityCNN(16), text_width=32, tokens=2)
    g = micro_generator([plugin])
    src, mask, _, _ = edit_inputs()
    cond = g.make_condition(src, mask, ["a", "b"], image_dropped=torch.tensor([False, True]))
    e = plugin.embedding(cond)
    assert e[1].abs().sum() == 0 and e[0].norm().item() == pytest.approx(1.0, abs=1e-5)
    x_edit = torch.randn_like(src, requires_grad=True)
    plugin.losses(x_edit, src, cond)["id"].backward()
    assert x_edit.grad.abs().sum() > 0
    plugin.train()
    assert not plugin.encoder.training


def test_weights_round_trip_and_clear_errors(tmp_path):
    enc = SmallIdentityCNN(16)
    path = save_identity_encoder(enc, tmp_path / "e.pt", dataset="shapes")
    other = SmallIdentityCNN(16)
    load_identity_weights(other, path)
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(other.embed(x), enc.embed(x))
    with pytest.raises(FileNotFoundError, match="make train-identity"):
        load_identity_weights(other, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="dim"):
        load_identity_weights(SmallIdentityCNN(32), path)


def test_facenet_loads_a_local_state_dict_and_embeds(tmp_path):
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    net = InceptionResnetV1(pretrained=None).eval()
    torch.save(net.state_dict(), tmp_path / "vggface2.pt")  # the format of the released weights
    enc = FaceNetIdentity()
    load_identity_weights(enc, tmp_path / "vggface2.pt")
    enc.eval()
    images = torch.rand(2, 3, 48, 40) * 2 - 1  # no faces: MTCNN finds none, the whole image is used
    enc.mtcnn.device = torch.device("meta")  # stale: detection follows where MTCNN's nets are, not this attribute
    torch.testing.assert_close(enc.boxes(images), torch.tensor([[0.0, 0.0, 40.0, 48.0]] * 2))
    e = enc.embed(images)
    assert e.shape == (2, 512)
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(2))
    crop = torch.nn.functional.interpolate(images, size=(160, 160), mode="bilinear", align_corners=False)
    with torch.no_grad():
        ref = torch.nn.functional.normalize(net(crop * 127.5 / 128), dim=-1)
    torch.testing.assert_close(e, ref, atol=2e-3, rtol=0)


def test_identity_attention_matches_a_naive_einsum():
    from xmgie.models.unet_layers import Attention
    from xmgie.modules.identity import identity_attention

    torch.manual_seed(0)
    attn = Attention(query_dim=12, heads=3, head_dim=5, cross_attention_dim=8)
    to_k, to_v = torch.nn.Linear(8, 15, bias=False), torch.nn.Linear(8, 15, bias=False)
    hidden, tokens = torch.randn(2, 7, 12), torch.randn(2, 4, 8)
    q = (hidden @ attn.to_q.weight.T).view(2, 7, 3, 5)                       # (B, N, h, d)
    k = (tokens @ to_k.weight.T).view(2, 4, 3, 5)
    v = (tokens @ to_v.weight.T).view(2, 4, 3, 5)
    p = torch.einsum("bnhd,bkhd->bhnk", q, k).mul(5 ** -0.5).softmax(-1)
    o = torch.einsum("bhnk,bkhd->bnhd", p, v).reshape(2, 7, 15)
    torch.testing.assert_close(identity_attention(hidden, tokens, attn, to_k, to_v), o @ attn.to_out[0].weight.T,
                               atol=1e-5, rtol=1e-5)


def test_decoupled_identity_attention_is_an_exact_no_op_until_its_gates_open():
    base = micro_generator()
    ie = micro_generator([IdentityEmbedding(SmallIdentityCNN(16), text_width=32, tokens=4, attention="decoupled")])
    ie.load_state_dict(base.state_dict(), strict=False)
    src, mask, x_t, t = edit_inputs()
    cond = ie.make_condition(src, mask, ["make it red"] * 2)
    assert ie.context(cond).tokens.shape == (2, 48, 32)  # the text context is untouched
    with torch.no_grad():
        a = base(x_t, t, base.make_condition(src, mask, ["make it red"] * 2))
        b = ie(x_t, t, cond)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    ie.train()
    ie(x_t, t, cond).square().mean().backward()
    branches = ie.plugins[0].id_attention
    assert len(branches) == sum(n.endswith("attn2") for n, _ in ie.unet.named_modules()) > 0
    assert all(b.gate.grad is not None and b.gate.grad.abs() > 0 for b in branches)  # the gates can open
    with torch.no_grad():
        for b in branches:
            b.gate.fill_(0.5)
        c = ie(x_t, t, cond)
    assert (c - a).abs().max() > 1e-4  # open gates change the output


def test_ie_attention_kind_is_checked():
    with pytest.raises(ValueError, match="attention"):
        IdentityEmbedding(SmallIdentityCNN(16), text_width=32, attention="prepended")


def test_facenet_finds_a_real_face_on_the_device_of_its_nets():
    """scikit-image's astronaut, alone and in a batch where every image has a face (MTCNN then returns an
    object array): the box is the face, float32."""
    from skimage.data import astronaut

    enc = FaceNetIdentity().eval()
    photo = torch.from_numpy(astronaut()).permute(2, 0, 1)[None].float() / 127.5 - 1  # (1, 3, 512, 512)
    for batch in (photo, photo.repeat(2, 1, 1, 1)):
        boxes = enc.boxes(batch)
        assert boxes.dtype == torch.float32 and boxes.shape == (len(batch), 4)
        for x0, y0, x1, y1 in boxes.tolist():  # the face: about x 181–268, y 62–172
            assert 150 < x0 < 200 and 230 < x1 < 300 and 30 < y0 < 90 and 150 < y1 < 200
