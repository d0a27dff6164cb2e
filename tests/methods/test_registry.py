"""The method registry is the one list: a method added as one file plus one entry in `xmgie/methods/registry.py`
reaches the commands' choices, the pipeline's plan and the table renderer; the training-free blends derive from a
generator without touching its weights."""
import json

import pytest
import torch
import yaml

from data_modules.base import collate
from data_modules.registry import build_datamodule
from tests.conftest import REPO
from xmgie.cli import main
from xmgie.editor import load_generator_module
from xmgie.errors import UserError
from xmgie.evaluation.tables import render
from xmgie.methods.recipe import Recipe
from xmgie.methods.registry import METHODS
from xmgie.methods.sisgan import SISGAN
from xmgie.pipeline.budgets import load_budget
from xmgie.pipeline.plan import plan


class ToyGAN(SISGAN):
    """A new GAN method as CONTRIBUTING.md adds one: a class in its own file and one registry entry."""

    METHOD = "toy"


def _help(capsys, *words: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*words, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_a_method_in_one_file_and_one_entry_reaches_the_commands_the_pipeline_and_the_table(
        monkeypatch, capsys, tmp_path):
    assert "--method METHOD" in _help(capsys, "baseline", "train")
    monkeypatch.setitem(METHODS, "toy", Recipe("gan", module=ToyGAN))
    with pytest.raises(SystemExit):  # the command's choices are the registry's
        main(["baseline", "train", "--method", "nope", "--out", "x.ckpt"])
    assert "'toy'" in capsys.readouterr().err
    spec = tmp_path / "spec.yaml"  # a table with the new row, read by the pipeline and the renderer
    spec.write_text(yaml.safe_dump({"name": "toy", "layout": "rows", "columns": ["psnr", "ssim"],
                                    "results": "results/{dataset}/{method}.json",
                                    "datasets": [{"name": "shapes"}], "methods": [{"name": "toy", "label": "Toy"}]}))
    stages, _, _ = plan(spec, load_budget("smoke", REPO), work=tmp_path / "pipe", repo=REPO)
    train = next(s for s in stages if s.kind == "baseline")
    assert train.argv[:4] == ["baseline", "train", "--method", "toy"]
    ckpt = tmp_path / "toy.ckpt"  # the stage's command itself, then its evaluation
    main(["baseline", "train", "--method", "toy", "--dataset", "shapes", "--steps", "2", "--batch-size", "4",
          "--resolution", "16", "--channels", "8", "--out", str(ckpt)])
    result = tmp_path / "results" / "shapes" / "toy.json"
    main(["evaluate", "--ckpt", str(ckpt), "--limit", "4", "--batch-size", "4", "--no-inception", "--no-lpips",
          "--name", "toy", "--out", str(result)])
    md = render(spec, tmp_path / "toy", root=tmp_path)["md"].read_text()
    row = next(line for line in md.splitlines() if "| Toy |" in line)
    assert f"{json.loads(result.read_text())['metrics']['psnr']:.2f}" in row


def test_an_unregistered_method_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["baseline", "derive", "--method", "nope", "--from", "a.ckpt", "--out", "b.ckpt"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and "invalid choice: 'nope'" in err[-1] and "mgie_blend" in err[-1]


@pytest.mark.parametrize("method,modules", [("mgie_blend", []), ("mgie_blend_gb", ["gb"])])
def test_latent_blending_derives_from_mgie_and_keeps_the_source_outside_the_mask(smoke_run, tmp_path, capsys,
                                                                                 method, modules):
    source = smoke_run / "checkpoints" / "last.ckpt"
    out = tmp_path / f"{method}.ckpt"
    main(["baseline", "derive", "--method", method, "--from", str(source), "--out", str(out)])
    assert capsys.readouterr().out.strip() == str(out)
    module, base = load_generator_module(out), load_generator_module(source)
    assert module.modules_cfg.enabled == modules and module.sampling_cfg.source_blend == 1.0
    assert module.state_dict().keys() == base.state_dict().keys()
    assert all(torch.equal(a, module.state_dict()[k]) for k, a in base.state_dict().items())
    if modules:  # GB keeps the σ the source run was trained with
        assert module.modules_cfg.gb.sigma_max == base.modules_cfg.gb.sigma_max
    batch = collate([build_datamodule("shapes", resolution=16).dataset("test")[i] for i in range(2)])
    edit = module.edit(batch, steps=3, seed=0)
    outside = batch["mask"].expand_as(edit) == 0
    assert torch.allclose(edit[outside], batch["source"][outside].clamp(-1, 1), atol=1e-5)
    plain = base.edit(batch, steps=3, seed=0)
    assert not torch.allclose(plain[outside], batch["source"][outside], atol=1e-3)


def test_a_derived_method_refuses_a_source_with_modules(smoke_run, tmp_path):
    from xmgie.methods.mgie_blend import derive_mgie_blend

    ckpt = torch.load(smoke_run / "checkpoints" / "last.ckpt", weights_only=False)
    ckpt["hyper_parameters"]["modules"]["cam"]["enabled"] = True
    torch.save(ckpt, tmp_path / "with_cam.ckpt")
    with pytest.raises(UserError, match="mgie_blend is derived from a generator without modules"):
        derive_mgie_blend(tmp_path / "with_cam.ckpt", tmp_path / "no.ckpt")


def test_every_registered_recipe_is_well_formed():
    for name, recipe in METHODS.items():
        assert (recipe.kind == "gan") == (recipe.module is not None), name
        assert (recipe.kind == "derive") == callable(recipe.derive), name
        assert recipe.source is None or recipe.source in METHODS, name
    with pytest.raises(ValueError, match="only a derive recipe"):
        Recipe("derive", source="mgie")
