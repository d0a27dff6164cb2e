"""The full-scale (`ip2p`) path on a tiny folder in the exact timbrooks/instruct-pix2pix layout, written here with
random weights: loading, latent space, frozen parts, conv_in widening, GPU switches, training, sampling, the CLI."""
import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from diffusers import AutoencoderKL, UNet2DConditionModel
from open_clip.tokenizer import SimpleTokenizer
from PIL import Image
from transformers import CLIPTextModel, CLIPTokenizer

from tests.conftest import fit
from xmgie.cli import main
from xmgie.conditioning.clip_text import hf_tokenize, write_clip_tokenizer_files
from xmgie.editor import load_generator_module
from xmgie.errors import UserError
from xmgie.models import EditGenerator, GeneratorConfig
from xmgie.models.ip2p_folder import write_ip2p_folder
from xmgie.models.latent import widen_conv_in
from xmgie.models.sampling import ddim_edit
from xmgie.models.unet_folder import load_unet_folder
from xmgie.modules.identity import build_identity_encoder, save_identity_encoder

IP2P = dict(size="ip2p", prediction_type="epsilon", beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_ip2p_folder(tmp_path_factory.mktemp("weights") / "instruct-pix2pix", "ip2p-mini", seed=0)


def generator(folder, seed: int = 0, **overrides) -> EditGenerator:
    torch.manual_seed(seed)
    return EditGenerator(GeneratorConfig(pretrained=str(folder), **{**IP2P, **overrides}))


def images(B: int = 2, res: int = 16, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    source, target = torch.rand(B, 3, res, res, generator=g) * 2 - 1, torch.rand(B, 3, res, res, generator=g) * 2 - 1
    mask = torch.zeros(B, 1, res, res)
    mask[..., 4:12, 2:10] = 1
    return source, target, mask


def test_tokenizer_built_from_open_clips_bpe_gives_its_ids(tmp_path):
    tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer_files(tmp_path))
    texts = ["make the striped circle in the upper left red", "Turn the sky into a SUNSET!", "a", ""]
    ours, ref = hf_tokenize(tokenizer)(texts), SimpleTokenizer(context_length=77)(texts)
    assert len(tokenizer) == 49408 and ours.shape == ref.shape == (4, 77)
    for a, b in zip(ours, ref):
        n = int((b != 0).sum())  # open_clip pads with 0, CLIP's tokenizer with <|endoftext|>
        assert torch.equal(a[:n], b[:n]) and bool((a[n:] == 49407).all())


def test_folder_loads_its_weights_and_the_latent_space_is_instructpix2pixs(folder):
    g = generator(folder, mask_channel=True)
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae")
    text = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder")
    ours = dict(g.unet.named_parameters())
    for name, p in unet.named_parameters():
        if name != "conv_in.weight":
            assert torch.equal(ours[name], p), name
    # conv_in widened 8 -> 9 for the mask channel: the file's weights, then a zero column
    assert torch.equal(ours["conv_in.weight"][:, :8], unet.conv_in.weight)
    assert not ours["conv_in.weight"][:, 8:].any() and g.unet.config.in_channels == 9

    source, target, mask = images()
    cond = g.make_condition(source, mask, ["make it red", "x"])
    mode = vae.encode(source).latent_dist.mode()
    assert torch.allclose(g.to_diffusion_space(target, cond), vae.encode(target).latent_dist.mode() * 0.18215,
                          atol=1e-6)
    shown = g.image_condition(cond)  # unscaled source latent + the mask resized to the latent grid (f = 2)
    assert torch.allclose(shown[:, :4], mode, atol=1e-6)
    assert torch.allclose(shown[:, 4:], torch.nn.functional.avg_pool2d(mask, 2))
    z = torch.randn(2, 4, 8, 8)
    assert torch.allclose(g.to_image_space(z, cond), vae.decode(z / 0.18215).sample, atol=1e-5)
    ids = g.tokenize(["make it red"])
    assert torch.allclose(g.text_encoder(ids)[0], text(input_ids=ids).last_hidden_state, atol=1e-6)
    assert g.diffusion_shape(source) == (2, 4, 8, 8)
    assert not any(p.requires_grad for p in [*g.codec.parameters(), *g.text_encoder.parameters()])


def test_widening_conv_in_leaves_the_output_unchanged(folder):
    unet = load_unet_folder(folder / "unet").eval()
    x, t, ctx = torch.randn(2, 8, 8, 8), torch.tensor([10, 900]), torch.randn(2, 5, 32)
    before = unet(x, t, ctx)
    widen_conv_in(unet, 9)
    after = unet(torch.cat([x, torch.randn(2, 1, 8, 8) * 5], 1), t, ctx)
    assert torch.allclose(before, after, atol=1e-6)
    with pytest.raises(ValueError, match="cannot narrow"):
        widen_conv_in(unet, 4)


def test_a_plain_stable_diffusion_unet_is_widened_from_4_inputs(tmp_path):
    g = generator(write_ip2p_folder(tmp_path / "sd", unet_in_channels=4))
    w = g.unet.conv_in.weight
    assert w.shape[1] == 8 and not w[:, 4:].any() and w[:, :4].any()


def test_folder_errors_are_one_line(folder, tmp_path):
    with pytest.raises(UserError, match="pretrained folder not found"):
        generator(tmp_path / "nowhere")
    partial = tmp_path / "partial"
    shutil.copytree(folder, partial, ignore=shutil.ignore_patterns("vae", "scheduler"))
    with pytest.raises(UserError, match="missing vae, scheduler"):
        generator(partial)
    with pytest.raises(UserError, match=r"--model.generator.prediction_type=epsilon .*beta_end=0.012"):
        generator(folder, prediction_type="v_prediction", beta_end=0.02)
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "vae" / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot load the pretrained folder") as err:
        generator(broken)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="pixel space"):
        GeneratorConfig(size="tiny", pretrained=str(folder))


def x_edit_loss(g: EditGenerator, seed: int = 0) -> torch.Tensor:
    """The pixel-space reconstruction loss of one training-like pass (decoded x̂0 vs the target)."""
    source, target, mask = images()
    cond = g.make_condition(source, mask, ["make it red", "make it blue"])
    z0 = g.to_diffusion_space(target, cond)
    noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(seed))
    t = torch.tensor([100, 700])
    x0 = g.predict_x0(g.add_noise(z0, noise, t), t, g(g.add_noise(z0, noise, t), t, cond, noise=noise))
    return (g.postprocess(x0, cond) - target).abs().mean()


def test_pixel_losses_reach_the_unet_through_the_frozen_decoder(folder):
    g = generator(folder)
    x_edit_loss(g).backward()
    frozen = [*g.codec.parameters(), *g.text_encoder.parameters()]
    assert frozen and all(p.grad is None for p in frozen)
    assert g.unet.conv_in.weight.grad.abs().sum() > 0 and g.unet.conv_out.weight.grad.abs().sum() > 0


def test_gradient_checkpointing_gives_the_same_gradients(folder):
    grads = []
    for checkpointing in (False, True):
        g = generator(folder, gradient_checkpointing=checkpointing).train()
        x_edit_loss(g).backward()
        grads.append(torch.cat([p.grad.flatten() for p in g.unet.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6, rtol=1e-4)


def test_compile_switch_keeps_parameter_names_and_outputs(folder):
    eager, compiled = generator(folder).eval(), generator(folder, compile="eager").eval()
    assert list(eager.state_dict()) == list(compiled.state_dict())
    source, _, mask = images()
    a = ddim_edit(eager, source, mask, ["make it red", "x"], steps=2)
    b = ddim_edit(compiled, source, mask, ["make it red", "x"], steps=2)
    assert torch.allclose(a, b, atol=1e-5)


@pytest.fixture(scope="module")
def ip2p_run(folder, module_tmp):
    """A 4-step fit of the latent generator with all four modules from a copy of the folder."""
    root = module_tmp / "ip2p_run"
    weights = shutil.copytree(folder, root / "instruct-pix2pix")
    identity = save_identity_encoder(build_identity_encoder("cnn", 16), root / "identity.pt")
    overlay = {"model": {"generator": {**IP2P, "pretrained": str(weights), "residual": False, "pooled_text": False,
                                       "mask_channel": True},
                         "modules": {"pfb": {"enabled": True, "layers": ["mid", "up0"]}, "cam": {"enabled": True},
                                     "ie": {"enabled": True, "weights": str(identity), "dim": 16},
                                     "gb": {"enabled": True, "sigma_max": 1.0, "sigma_s": 2.0}},
                         "sampling": {"guidance_text": 2.0, "guidance_image": 1.5}}}
    (root / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    fit(root, "--config", str(root / "overlay.yaml"))
    return root


def test_fit_trains_the_unet_and_keeps_the_frozen_parts(ip2p_run, folder):
    module = load_generator_module(ip2p_run / "checkpoints" / "last.ckpt")
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae")
    assert not torch.equal(module.generator.unet.conv_out.weight, unet.conv_out.weight)
    for name, p in vae.named_parameters():
        assert torch.equal(dict(module.generator.codec.vae.named_parameters())[name], p), name
    assert module.ema.codec is module.generator.codec  # the EMA copy shares the frozen VAE and text tower
    assert module.ema.text_encoder is module.generator.text_encoder
    result = json.loads((ip2p_run / "metrics.json").read_text())
    assert np.isfinite(result["val"]["psnr"]) and (ip2p_run / "samples").is_dir()


def test_edit_and_evaluate_from_the_checkpoint_in_bf16(ip2p_run, tmp_path, capsys):
    ckpt = str(ip2p_run / "checkpoints" / "last.ckpt")
    image = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((20, 28, 3)) * 255).astype(np.uint8)).save(image)
    out = tmp_path / "out.png"
    main(["edit", "--ckpt", ckpt, "--image", str(image), "--prompt", "make it red", "--out", str(out), "--steps", "2",
          "--device", "cpu", "--bf16"])
    assert Image.open(out).size == (28, 20)
    main(["evaluate", "--ckpt", ckpt, "--limit", "4", "--batch-size", "4", "--steps", "2", "--no-inception",
          "--no-lpips", "--bf16", "--out", str(tmp_path / "r.json")])
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["n_images"] == 4 and np.isfinite(result["metrics"]["psnr"]) and result["precision"] == "bf16"


def test_a_checkpoint_whose_folder_is_gone_is_a_one_line_error(ip2p_run, tmp_path, capsys):
    ckpt = torch.load(ip2p_run / "checkpoints" / "last.ckpt", weights_only=False)
    ckpt["hyper_parameters"]["generator"]["pretrained"] = str(tmp_path / "gone")
    torch.save(ckpt, tmp_path / "gone.ckpt")
    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    with pytest.raises(SystemExit) as exit_:
        main(["edit", "--ckpt", str(tmp_path / "gone.ckpt"), "--image", str(image), "--prompt", "x"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "pretrained folder not found" in err and len(err.strip().splitlines()) == 1
