"""Table 1's baselines: their maths against brute-force references, a few training steps and edits on `shapes` and
on a fixture dataset, checkpoints through `xmgie evaluate` / `xmgie edit`, PFB-Diff's derivation and GLIDE's
inpainting condition."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from data_modules.base import collate
from data_modules.registry import build_datamodule
from data_modules.fixtures import write_fixture
from tests.conftest import REPO, fit
from xmgie.methods.registry import METHODS, gan_baselines
from xmgie.methods.hifill import aggregate_residual, context_attention
from xmgie.methods.manigan import matching_scores, word_attention
from xmgie.methods.pfb_diff import derive_pfb_diff
from xmgie.methods.sisgan import matching_aware_d_loss
from xmgie.methods.tagan import text_adaptive_log_score
from xmgie.methods.train import train_baseline
from xmgie.cli import main
from xmgie.editor import Editor
from xmgie.editor import load_generator_module
from xmgie.errors import UserError
from xmgie.models.sampling import ddim_edit

GAN_BASELINES = gan_baselines()
TINY = dict(steps=3, batch_size=4, resolution=16, channels=8, val_batches=1)


# -- maths against brute force ------------------------------------------------------------------------------
def test_text_adaptive_score_is_the_weighted_product_of_word_scores():
    g = torch.Generator().manual_seed(0)
    local, level = torch.randn(2, 5, 3, generator=g), torch.randn(2, 5, 3, generator=g)
    word = torch.randn(2, 5, generator=g)
    valid = torch.tensor([[True, True, False, True, False], [False] * 5])
    ours = text_adaptive_log_score(local, level, word, valid)
    for b in range(2):
        words = [i for i in range(5) if valid[b, i]]
        if not words:
            assert ours[b] == 0
            continue
        alpha = torch.softmax(word[b, words], 0)
        product = 1.0
        for a, i in zip(alpha, words):
            beta = torch.softmax(level[b, i], 0)
            product *= float((beta * torch.sigmoid(local[b, i])).sum()) ** float(a)
        assert float(ours[b].exp()) == pytest.approx(product, rel=1e-5)


def test_damsm_matching_scores_match_a_loop():
    g = torch.Generator().manual_seed(1)
    regions, words = torch.randn(3, 4, 6, generator=g), torch.randn(3, 5, 6, generator=g)
    valid = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 1, 0, 0, 0]], dtype=torch.bool)
    ours = matching_scores(regions, words, valid)
    for a in range(3):
        for b in range(3):
            rel = []
            for t in range(5):
                if not valid[b, t]:
                    continue
                e = F.normalize(words[b, t], dim=0)
                r = F.normalize(regions[a], dim=1)
                c = (torch.softmax(4.0 * (r @ e), 0)[:, None] * r).sum(0)
                rel.append(F.cosine_similarity(c, e, dim=0))
            ref = torch.log(torch.exp(5.0 * torch.stack(rel)).sum()) / 5.0
            assert float(ours[a, b]) == pytest.approx(float(ref), rel=1e-5, abs=1e-6)


def test_word_attention_ignores_padding_words():
    g = torch.Generator().manual_seed(2)
    h, words = torch.randn(1, 4, 2, 3, generator=g), torch.randn(1, 3, 4, generator=g)
    valid = torch.tensor([[True, False, True]])
    out = word_attention(h, words, valid)
    q = h[0].flatten(1).T                                                   # (6, 4)
    w = torch.softmax(q @ words[0, [0, 2]].T / 2.0, -1)                     # only the real words
    assert torch.allclose(out[0].flatten(1).T, w @ words[0, [0, 2]], atol=1e-6)
    assert not word_attention(h, words, torch.zeros(1, 3, dtype=torch.bool)).any()


def test_contextual_residual_aggregation_copies_context_patches():
    g = torch.Generator().manual_seed(3)
    feats, hole = torch.randn(2, 8, 2, 2, generator=g), torch.zeros(2, 1, 2, 2)
    hole[0, 0, 0, 0] = 1
    attn = context_attention(feats, hole)
    assert torch.allclose(attn.sum(-1), torch.ones(2, 4)) and not attn[0, :, 0].any()  # never from the hole
    residual = torch.randn(1, 3, 8, 8, generator=g)
    one_hot = torch.zeros(1, 4, 4)
    one_hot[0, 0, 3] = 1  # cell 0 takes cell 3's patch (bottom right 4x4)
    out = aggregate_residual(residual, one_hot, (2, 2))
    assert torch.equal(out[0, :, :4, :4], residual[0, :, 4:, 4:]) and not out[0, :, 4:].any()
    assert not context_attention(feats, torch.ones(2, 1, 2, 2)).any()  # no context at all: nothing aggregated


def test_matching_aware_loss_is_gan_int_cls():
    rm, rx, fm = torch.tensor([2.0]), torch.tensor([-1.0]), torch.tensor([0.5])
    s = torch.sigmoid
    ref = -torch.log(s(rm)) - 0.5 * (torch.log(1 - s(rx)) + torch.log(1 - s(fm)))
    assert torch.allclose(matching_aware_d_loss(rm, rx, fm), ref)


# -- training and editing ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(module_tmp) -> dict:
    base = module_tmp
    return {m: (base / f"{m}.ckpt", train_baseline(m, "shapes", base / f"{m}.ckpt", **TINY)) for m in GAN_BASELINES}


@pytest.mark.parametrize("method", sorted(GAN_BASELINES))
def test_gan_baseline_trains_and_edits_shapes(method, trained):
    path, summary = trained[method]
    assert summary["steps"] == 3 and summary["resolution"] == 16 and np.isfinite(summary["val"]["psnr"])
    module = load_generator_module(path)
    assert isinstance(module, Editor) and module.sampling_cfg is None  # one pass: no steps, no guidance
    initial = GAN_BASELINES[method](**module.hparams)  # the same architecture at its initialisation
    assert any(not torch.equal(a, b) for a, b in zip(module.G.parameters(), initial.G.parameters()))
    dm = build_datamodule("shapes", resolution=16)
    batch = collate([dm.dataset("test")[i] for i in range(3)])
    edit = module.edit(batch)
    assert edit.shape == (3, 3, 16, 16) and edit.abs().max() <= 1
    assert torch.equal(edit, module.edit(batch))  # deterministic
    if method == "hifill":  # inpainting keeps the known region exactly, whatever the text
        outside = batch["mask"].expand_as(edit) == 0
        assert torch.allclose(edit[outside], batch["source"][outside], atol=1e-6)
        assert torch.equal(edit, module.edit(batch, texts=["something else"] * 3))


@pytest.mark.parametrize("method", sorted(GAN_BASELINES))
def test_gan_baseline_trains_on_a_fixture_dataset(method, tmp_path):
    root = write_fixture("cub", tmp_path / "cub", n_images=8)
    summary = train_baseline(method, "cub", tmp_path / "b.ckpt", root=str(root), **{**TINY, "steps": 2})
    assert summary["dataset"] == "cub" and np.isfinite(summary["val"]["psnr"])
    module = load_generator_module(tmp_path / "b.ckpt")
    assert module.data_info["root"] == str(root) and module.data_info["dataset"] == "cub"


def test_a_baseline_checkpoint_works_with_evaluate_and_edit(trained, tmp_path, capsys):
    path = str(trained["tagan"][0])
    main(["evaluate", "--ckpt", path, "--limit", "4", "--batch-size", "4", "--no-inception", "--no-lpips",
          "--name", "tagan", "--out", str(tmp_path / "r.json")])
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["method"] == "tagan" and result["n_images"] == 4 and np.isfinite(result["metrics"]["psnr"])
    assert result["steps"] is None and result["guidance_text"] is None  # one pass: no DDIM steps recorded
    image = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((20, 24, 3)) * 255).astype(np.uint8)).save(image)
    main(["edit", "--ckpt", path, "--image", str(image), "--prompt", "make the circle red", "--out",
          str(tmp_path / "o.png"), "--mask", "anywhere"])
    assert Image.open(tmp_path / "o.png").size == (24, 20)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:  # a one-pass GAN has no U-Net to predict a mask with
        main(["edit", "--ckpt", path, "--image", str(image), "--prompt", "x", "--out", str(tmp_path / "a.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and "automatic masks need a diffusion editor" in err[0]


def test_unknown_baseline_is_a_one_line_error(tmp_path):
    with pytest.raises(UserError, match="unknown GAN baseline 'nope'"):
        train_baseline("nope", "shapes", tmp_path / "x.ckpt")


# -- PFB-Diff and GLIDE ----------------------------------------------------------------------------------------
def test_pfb_diff_derives_from_a_generator_and_keeps_its_weights(smoke_run, tmp_path, capsys):
    source = smoke_run / "checkpoints" / "last.ckpt"
    out = derive_pfb_diff(source, tmp_path / "pfb_diff.ckpt")
    module, base = load_generator_module(out), load_generator_module(source)
    assert module.modules_cfg.enabled == ["cam", "pfb"] and module.modules_cfg.cam.mode == "pre_softmax"
    pfb = next(p for p in module.sampler.plugins if type(p).__name__ == "ProgressiveFeatureBlending")
    assert torch.equal(pfb.alpha, torch.ones(3)) and not list(pfb.parameters())
    assert all(torch.equal(a, base.state_dict()[k]) for k, a in base.state_dict().items() if k in module.state_dict())
    assert module.sampling_cfg.source_blend == 0.5
    main(["evaluate", "--ckpt", str(out), "--limit", "4", "--batch-size", "4", "--steps", "2", "--no-inception",
          "--no-lpips", "--name", "pfb_diff", "--out", str(tmp_path / "r.json")])
    assert json.loads((tmp_path / "r.json").read_text())["n_images"] == 4
    xmgie_like = torch.load(source, weights_only=False)
    xmgie_like["hyper_parameters"]["modules"]["gb"]["enabled"] = True
    torch.save(xmgie_like, tmp_path / "with_gb.ckpt")
    with pytest.raises(UserError, match="without modules"):
        derive_pfb_diff(tmp_path / "with_gb.ckpt", tmp_path / "no.ckpt")


def test_blending_the_noised_source_on_every_step_keeps_the_outside_of_the_mask(smoke_run):
    module = load_generator_module(smoke_run / "checkpoints" / "last.ckpt")
    dm = build_datamodule("shapes", resolution=16)
    batch = collate([dm.dataset("test")[i] for i in range(2)])
    out = ddim_edit(module.sampler, batch["source"], batch["mask"], batch["instruction"], steps=3, source_blend=1.0)
    outside = batch["mask"].expand_as(out) == 0
    assert torch.allclose(out[outside], batch["source"][outside].clamp(-1, 1), atol=1e-5)
    free = ddim_edit(module.sampler, batch["source"], batch["mask"], batch["instruction"], steps=3)
    assert not torch.allclose(free[outside], batch["source"][outside], atol=1e-3)


def test_glide_never_sees_the_source_inside_the_mask(tmp_path):
    run = fit(tmp_path, "--config", str(REPO / "experiments/baselines/glide.yaml"), "--trainer.max_steps=2",
              "--trainer.val_check_interval=2")
    module = load_generator_module(run / "checkpoints" / "last.ckpt")
    assert module.inpainting and module.gen_cfg.hide_masked_source and module.text_source == "prompt"
    g = module.sampler
    source, mask = torch.rand(1, 3, 16, 16) * 2 - 1, torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    shown = g.image_condition(g.make_condition(source, mask, ["x"]))
    assert not shown[:, :3][mask.expand(1, 3, 16, 16) == 1].any() and torch.equal(shown[:, 3:], mask)


def test_every_table1_method_has_a_recipe():
    import yaml

    spec = yaml.safe_load((REPO / "experiments/tables/table1.yaml").read_text())
    assert {m["name"] for m in spec["methods"]} == set(METHODS)
    for recipe in METHODS.values():
        assert all((REPO / c).is_file() for c in recipe.configs)


def test_glide_and_pfb_diff_on_a_fixture_dataset(tmp_path):
    root = write_fixture("cub", tmp_path / "cub", n_images=8)
    data = ["--data", str(REPO / "experiments/data/cub.yaml"), f"--data.init_args.root={root}",
            "--data.init_args.resolution=16", "--data.init_args.batch_size=4", "--data.init_args.num_workers=0",
            "--trainer.max_steps=2", "--trainer.val_check_interval=2"]
    glide = fit(tmp_path / "glide", "--config", str(REPO / "experiments/baselines/glide.yaml"), *data)
    mgie_like = fit(tmp_path / "base", *data)  # the generator without modules PFB-Diff derives from
    derived = derive_pfb_diff(mgie_like / "checkpoints" / "last.ckpt", tmp_path / "pfb_diff.ckpt")
    for ckpt in (glide / "checkpoints" / "last.ckpt", derived):
        main(["evaluate", "--ckpt", str(ckpt), "--limit", "2", "--batch-size", "2", "--steps", "2", "--no-inception",
              "--no-lpips", "--out", str(tmp_path / "r.json")])
        result = json.loads((tmp_path / "r.json").read_text())
        assert result["dataset"] == "cub" and result["n_images"] == 2 and np.isfinite(result["metrics"]["psnr"])


@pytest.mark.parametrize("method", sorted(GAN_BASELINES))
def test_generator_and_discriminator_optimisers_split_the_parameters(method):
    from xmgie.methods.gan import GANConfig

    module = GAN_BASELINES[method](GANConfig(channels=8))
    opt_g, opt_d = module.configure_optimizers()
    g = {id(p) for group in opt_g.param_groups for p in group["params"]}
    d = {id(p) for group in opt_d.param_groups for p in group["params"]}
    assert not g & d and g | d == {id(p) for p in module.parameters()}
    assert {id(p) for p in module.text_encoder.parameters()} <= g and {id(p) for p in module.G.parameters()} <= g


def test_a_baseline_exports_to_a_folder_that_edits_bit_for_bit_the_same(trained, tmp_path):
    from xmgie.export import export_editor

    path = trained["manigan"][0]
    folder = export_editor(path, tmp_path / "manigan")
    dm = build_datamodule("shapes", resolution=16)
    batch = collate([dm.dataset("test")[i] for i in range(3)])
    assert torch.equal(load_generator_module(path).edit(batch), load_generator_module(folder).edit(batch))
