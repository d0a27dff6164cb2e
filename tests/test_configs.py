from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from xmgie.training.lightning_cli import XMGIECLI
from xmgie.training.lit_generator import XMGIEModule
from data_modules.base import EditDataModule

YAMLS = sorted((REPO / "experiments").rglob("*.yaml"))
DATA_YAMLS = [p for p in YAMLS if p.parent.name == "data"]
ABLATION_YAMLS = [p for p in YAMLS if p.parent.name == "ablation"]
TABLE_YAMLS = [p for p in YAMLS if p.parent.name == "tables"]  # table specs: parsed in tests/evaluation
EVALUATION = REPO / "experiments" / "evaluation.yaml"             # an overlay: adds the evaluation callback
BUDGETS = REPO / "experiments" / "budgets.yaml"                   # xmgie run's budgets: parsed in tests/pipeline
OVERLAYS = [p for p in YAMLS if p.parent.name in ("baselines", "text")]    # used on top of train.yaml
FINETUNE = REPO / "experiments" / "finetune.yaml"                 # an overlay: the modules' fine-tuning forms
RUN_YAMLS = [p for p in YAMLS if p.parent.name not in ("data", "ablation", "tables", "baselines", "text")
             and p not in (EVALUATION, BUDGETS, FINETUNE)]
TRAIN = REPO / "experiments" / "train.yaml"


def test_there_are_configs():
    assert RUN_YAMLS and DATA_YAMLS


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_yaml_is_valid_yaml(path: Path):
    assert isinstance(yaml.safe_load(path.read_text()), dict)


@pytest.fixture(scope="module")
def ip2p_folder(tmp_path_factory) -> Path:
    from xmgie.models.ip2p_folder import write_ip2p_folder

    return write_ip2p_folder(tmp_path_factory.mktemp("weights") / "instruct-pix2pix")


@pytest.mark.parametrize("run", RUN_YAMLS, ids=lambda p: p.name)
@pytest.mark.parametrize("data", DATA_YAMLS, ids=lambda p: p.name)
def test_every_run_config_parses_and_instantiates(run: Path, data: Path, tmp_path, ip2p_folder):
    # the full-scale config wants a GPU and the InstructPix2Pix folder: here a CPU and a tiny folder of that layout
    gpu_only = ([f"--model.generator.pretrained={ip2p_folder}", "--trainer.accelerator=cpu"] if run.stem == "ip2p"
                else [])
    cli = XMGIECLI(XMGIEModule, EditDataModule, subclass_mode_data=True, run=False,
                   args=["--config", str(run), "--data", str(data), f"--trainer.default_root_dir={tmp_path}",
                         *gpu_only])
    assert isinstance(cli.model, XMGIEModule) and isinstance(cli.datamodule, EditDataModule)
    assert cli.trainer.default_root_dir == str(tmp_path)


@pytest.mark.parametrize("variant", ABLATION_YAMLS, ids=lambda p: p.stem)
def test_each_ablation_variant_switches_off_what_it_names(variant: Path, tmp_path):
    # as the pipeline runs them: fine-tuning forms first, then the variant
    cli = XMGIECLI(XMGIEModule, EditDataModule, subclass_mode_data=True, run=False,
                   args=["--config", str(TRAIN), "--config", str(FINETUNE), "--config", str(variant),
                         "--data", str(DATA_YAMLS[0]), f"--trainer.default_root_dir={tmp_path}"])
    expected = {"full": ["ie", "cam", "pfb", "gb"], "full_literal": ["ie", "cam", "pfb", "gb"], "base": []}.get(
        variant.stem)
    if expected is None:  # wo_<module>
        expected = [m for m in ("ie", "cam", "pfb", "gb") if m != variant.stem.removeprefix("wo_")]
    assert cli.model.modules_cfg.enabled == expected
    assert len(cli.model.generator.plugins) == len(expected)
    m, literal = cli.model.modules_cfg, variant.stem == "full_literal"
    assert (m.pfb.alpha_init, m.ie.attention, cli.model.loss_cfg.id) == (
        (0.5, "appended", 0.5) if literal else (0.95, "decoupled", 0.05))


def test_evaluation_overlay_adds_the_suite_callback(tmp_path):
    from xmgie.evaluation.callback import EvaluationCallback

    cli = XMGIECLI(XMGIEModule, EditDataModule, subclass_mode_data=True, run=False,
                   args=["--config", str(TRAIN), "--config", str(EVALUATION), "--data", str(DATA_YAMLS[0]),
                         f"--trainer.default_root_dir={tmp_path}"])
    assert sum(isinstance(c, EvaluationCallback) for c in cli.trainer.callbacks) == 1


@pytest.mark.parametrize("budget", ["smoke", "cpu", "paper"])
def test_every_budget_is_accepted_by_the_training_cli(budget, tmp_path, ip2p_folder):
    """Each budget's generator commands (its base, a fine-tuned method, and the EarlyStopping callback of "paper",
    whose base is the InstructPix2Pix folder of ip2p.yaml) parse and instantiate."""
    from xmgie.pipeline.budgets import load_budget
    from xmgie.pipeline.plan import dataset_stages

    raw = {"methods": [{"name": "m", "config": str(ABLATION_YAMLS[0])}]}
    stages = [s for s in dataset_stages(raw, "cub", None, load_budget(budget, REPO), 0, 0)
              if s.kind == "generator" and s.seed == 0]
    assert [s.method for s in stages] == (["m"] if budget == "paper" else ["base", "m"])
    gpu_only = [f"--model.generator.pretrained={ip2p_folder}", "--trainer.accelerator=cpu"] if budget == "paper" else []
    for stage in stages:
        cli = XMGIECLI(XMGIEModule, EditDataModule, subclass_mode_data=True, run=False,
                       args=[*stage.argv[1:], f"--trainer.default_root_dir={tmp_path}", *gpu_only])  # the runner's
        assert type(cli.datamodule).__name__ == "CUBDataModule"
        if budget == "smoke":
            assert cli.datamodule.resolution == 16 and cli.datamodule.batch_size == 4
        assert isinstance(cli.model, XMGIEModule)
        if budget == "paper":
            from lightning.pytorch.callbacks import EarlyStopping

            stop = [c for c in cli.trainer.callbacks if isinstance(c, EarlyStopping)]
            assert len(stop) == 1 and stop[0].monitor == "val/psnr" and cli.trainer.max_epochs == 200
            assert cli.model.gen_cfg.size == "ip2p" and "experiments/finetune.yaml" in stage.argv


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.stem)
def test_every_overlay_instantiates_on_top_of_the_training_config(overlay: Path, tmp_path):
    cli = XMGIECLI(XMGIEModule, EditDataModule, subclass_mode_data=True, run=False,
                   args=["--config", str(TRAIN), "--config", str(overlay), "--data", str(DATA_YAMLS[0]),
                         f"--trainer.default_root_dir={tmp_path}", f"--model.expander={tmp_path / 'expander.pt'}"])
    assert isinstance(cli.model, XMGIEModule)
    assert cli.model.text_source == {"expander": "expander", "glide": "prompt"}[overlay.stem]
