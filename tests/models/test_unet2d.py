"""The package's U-Net against diffusers' UNet2DConditionModel (the reference it must equal, weight for weight), its
diffusers folders in both directions, and its config's refusals."""
import json

import pytest
import torch
from diffusers import UNet2DConditionModel

from xmgie.models.unet_sizes import UNET_SIZES, build_unet
from xmgie.models.unet2d import ConditionalUNet, UNetConfig
from xmgie.models.unet_folder import HALF, PICKLED, WEIGHTS, load_unet_folder, save_unet_folder


def reference(size: str, pooled: bool = False, film: bool = False, **extra) -> UNet2DConditionModel:
    """diffusers' U-Net of a size-table entry, every weight drawn (the output convolutions start at zero)."""
    s = UNET_SIZES[size]
    kw = dict(in_channels=7, out_channels=3, cross_attention_dim=24, block_out_channels=s.block_out_channels,
              down_block_types=s.down_block_types, up_block_types=s.up_block_types,
              layers_per_block=s.layers_per_block, attention_head_dim=s.heads, norm_num_groups=s.norm_num_groups,
              class_embed_type="projection" if pooled else None,
              projection_class_embeddings_input_dim=24 if pooled else None,
              resnet_time_scale_shift="scale_shift" if film else "default")
    unet = UNet2DConditionModel(**{**kw, **extra}).eval()
    with torch.no_grad():
        for p in unet.parameters():
            p.normal_(0, 0.05)
    return unet


def same_weights(ref: UNet2DConditionModel) -> ConditionalUNet:
    ours = ConditionalUNet(UNetConfig.from_dict(dict(ref.config))).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)  # the same parameter names and shapes
    return ours


def outputs(a: torch.nn.Module, b: torch.nn.Module, size=(20, 28), pooled=False, channels=7, width=24):
    torch.manual_seed(1)
    x, t, ctx = torch.randn(2, channels, *size), torch.tensor([3, 700]), torch.randn(2, 5, width)
    pool = torch.randn(2, width) if pooled else None
    with torch.no_grad():
        return a(x, t, encoder_hidden_states=ctx, class_labels=pool).sample, b(x, t, ctx, class_labels=pool)


@pytest.mark.parametrize("size,pooled,film", [("micro", False, False), ("tiny", False, False), ("tiny", True, True),
                                              ("ip2p-mini", False, False)])
def test_the_unet_equals_diffusers_with_the_same_weights(size, pooled, film):
    ref = reference(size, pooled, film)
    ours = same_weights(ref)
    for shape in [(32, 32), (18, 30)]:  # 18 x 30: sizes the down-sampling does not divide (upsampled to the skips')
        a, b = outputs(ref, ours, shape, pooled)
        torch.testing.assert_close(b, a, atol=1e-6, rtol=0)


@pytest.mark.parametrize("size", ["micro", "tiny", "ip2p-mini"])
def test_a_seed_gives_diffusers_initial_weights(size):
    """Layers are made and registered in the reference's order, so training from scratch starts where it did with
    diffusers and takes the same steps."""
    s = UNET_SIZES[size]
    torch.manual_seed(3)
    ours = build_unet(size, in_channels=7, out_channels=3, cross_attention_dim=24, pooled_text=True)
    torch.manual_seed(3)
    ref = UNet2DConditionModel(in_channels=7, out_channels=3, cross_attention_dim=24,
                               block_out_channels=s.block_out_channels, down_block_types=s.down_block_types,
                               up_block_types=s.up_block_types, layers_per_block=s.layers_per_block,
                               attention_head_dim=s.heads, norm_num_groups=s.norm_num_groups,
                               class_embed_type="projection", projection_class_embeddings_input_dim=24)
    theirs = dict(ref.named_parameters())
    assert list(theirs) == [name for name, _ in ours.named_parameters()]  # one order: gradient norms sum alike
    assert all(torch.equal(p, theirs[name]) for name, p in ours.named_parameters())


def test_stable_diffusion_2_options_linear_projections_and_heads_per_level():
    ref = reference("ip2p-mini", use_linear_projection=True, attention_head_dim=(2, 4), layers_per_block=2,
                    transformer_layers_per_block=1)
    a, b = outputs(ref, same_weights(ref), (16, 24))
    torch.testing.assert_close(b, a, atol=1e-6, rtol=0)


def test_the_full_size_unet_has_stable_diffusions_parameters():
    with torch.device("meta"):
        ref = UNet2DConditionModel(in_channels=8, cross_attention_dim=768)
        ours = build_unet("ip2p", in_channels=8, out_channels=4, cross_attention_dim=768)
    shapes = {k: v.shape for k, v in ours.state_dict().items()}
    assert shapes == {k: v.shape for k, v in ref.state_dict().items()}
    # Stable Diffusion 1.5's 859,520,964 parameters, plus conv_in's 4 extra input channels (InstructPix2Pix)
    assert sum(v.numel() for v in ours.state_dict().values()) == 859_520_964 + 4 * 320 * 9


SD_BLOCKS = {"down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
             "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3, "block_out_channels": [320, 640, 1280, 1280]}
# the keys of three public U-Net folders' config.json, as their authors' diffusers versions wrote them
REAL_CONFIGS = {
    "instruct-pix2pix (0.12)": {
        **SD_BLOCKS, "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.12.0.dev0", "act_fn": "silu",
        "attention_head_dim": 8, "center_input_sample": False, "class_embed_type": None, "cross_attention_dim": 768,
        "downsample_padding": 1, "dual_cross_attention": False, "flip_sin_to_cos": True, "freq_shift": 0,
        "in_channels": 8, "layers_per_block": 2, "mid_block_scale_factor": 1,
        "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-05, "norm_num_groups": 32, "num_class_embeds": None, "only_cross_attention": False,
        "out_channels": 4, "resnet_time_scale_shift": "default", "sample_size": 64, "upcast_attention": False,
        "use_linear_projection": False},
    "stable-diffusion-v1-5 (0.17)": {
        **SD_BLOCKS, "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.17.0.dev0", "act_fn": "silu",
        "addition_embed_type": None, "addition_embed_type_num_heads": 64, "attention_head_dim": 8,
        "center_input_sample": False, "class_embed_type": None, "class_embeddings_concat": False, "conv_in_kernel": 3,
        "conv_out_kernel": 3, "cross_attention_dim": 768, "cross_attention_norm": None, "downsample_padding": 1,
        "dual_cross_attention": False, "encoder_hid_dim": None, "flip_sin_to_cos": True, "freq_shift": 0,
        "in_channels": 4, "layers_per_block": 2, "mid_block_only_cross_attention": None, "mid_block_scale_factor": 1,
        "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-05, "norm_num_groups": 32, "num_class_embeds": None,
        "only_cross_attention": False, "out_channels": 4, "projection_class_embeddings_input_dim": None,
        "resnet_out_scale_factor": 1.0, "resnet_skip_time_act": False, "resnet_time_scale_shift": "default",
        "sample_size": 64, "time_cond_proj_dim": None, "time_embedding_act_fn": None, "time_embedding_dim": None,
        "time_embedding_type": "positional", "timestep_post_act": None, "upcast_attention": None,
        "use_linear_projection": False},
    "stable-diffusion-2-1-base (0.10)": {
        **SD_BLOCKS, "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.10.0.dev0", "act_fn": "silu",
        "attention_head_dim": [5, 10, 20, 20], "center_input_sample": False, "cross_attention_dim": 1024,
        "downsample_padding": 1, "dual_cross_attention": False, "flip_sin_to_cos": True, "freq_shift": 0,
        "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32,
        "num_class_embeds": None, "only_cross_attention": False, "out_channels": 4, "sample_size": 64,
        "use_linear_projection": True},
}


@pytest.mark.parametrize("name", REAL_CONFIGS)
def test_public_folders_configs_are_read_as_diffusers_reads_them(name):
    config = REAL_CONFIGS[name]
    with torch.device("meta"):
        ours = ConditionalUNet(UNetConfig.from_dict(config))
        ref = UNet2DConditionModel.from_config(config)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert [m.heads for n, m in ours.named_modules() if n.endswith("attn1")] == \
        [m.heads for n, m in ref.named_modules() if n.endswith("attn1")]


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    a = build_unet("micro", in_channels=6, out_channels=3, cross_attention_dim=8)
    b = build_unet("micro", in_channels=6, out_channels=3, cross_attention_dim=8)
    b.load_state_dict(a.state_dict())
    b.enable_gradient_checkpointing()
    x, t, ctx = torch.randn(2, 6, 16, 16), torch.tensor([1, 500]), torch.randn(2, 3, 8)
    for unet in (a, b):
        unet(x, t, ctx).square().mean().backward()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=name)


def test_folders_round_trip_with_diffusers(tmp_path):
    ref = reference("micro", pooled=True)
    ref.save_pretrained(tmp_path / "theirs")  # diffusers' folder -> ours
    a, b = outputs(ref, load_unet_folder(tmp_path / "theirs").eval(), pooled=True)
    torch.testing.assert_close(b, a, atol=1e-6, rtol=0)
    ours = same_weights(ref)
    save_unet_folder(ours, tmp_path / "ours")  # ours -> diffusers
    back = UNet2DConditionModel.from_pretrained(tmp_path / "ours").eval()
    a, b = outputs(back, ours, pooled=True)
    torch.testing.assert_close(b, a, atol=1e-6, rtol=0)
    assert load_unet_folder(tmp_path / "ours").config == ours.config
    ref.save_pretrained(tmp_path / "pickled", safe_serialization=False)  # a .bin folder: read weights-only
    assert (tmp_path / "pickled" / PICKLED).is_file() and not (tmp_path / "pickled" / WEIGHTS).exists()
    a, b = outputs(ref, load_unet_folder(tmp_path / "pickled").eval(), pooled=True)
    torch.testing.assert_close(b, a, atol=1e-6, rtol=0)
    ref.half().save_pretrained(tmp_path / "half", variant="fp16")  # only the fp16 variant: loads as float32
    assert (tmp_path / "half" / HALF).is_file() and not (tmp_path / "half" / WEIGHTS).exists()
    half = load_unet_folder(tmp_path / "half")
    assert all(p.dtype == torch.float32 for p in half.parameters())
    a, b = outputs(ref.float(), half.eval(), pooled=True)
    torch.testing.assert_close(b, a, atol=1e-3, rtol=0)


def test_what_the_unet_does_not_implement_is_refused_by_name(tmp_path):
    config = dict(reference("micro").config)
    with pytest.raises(ValueError, match=r"unsupported U-Net config: upcast_attention=True, time_cond_proj_dim=8"):
        UNetConfig.from_dict({**config, "upcast_attention": True, "time_cond_proj_dim": 8})
    with pytest.raises(ValueError, match="unsupported U-Net block types"):
        UNetConfig.from_dict({**config, "down_block_types": ["DownBlock2D", "SimpleCrossAttnDownBlock2D"]})
    assert UNetConfig.from_dict({**config, "transformer_layers_per_block": [1, 1], "_diffusers_version": "0"})
    save_unet_folder(build_unet("micro", 6, 3, 8), tmp_path / "u")
    (tmp_path / "u" / WEIGHTS).unlink()
    with pytest.raises(FileNotFoundError, match="no U-Net weights"):
        load_unet_folder(tmp_path / "u")
    other = json.loads((tmp_path / "u" / "config.json").read_text())
    save_unet_folder(build_unet("micro", 7, 3, 8), tmp_path / "u")
    (tmp_path / "u" / "config.json").write_text(json.dumps(other))  # 6 inputs in the config, 7 in the weights
    with pytest.raises(ValueError, match="do not fit the config"):
        load_unet_folder(tmp_path / "u")
