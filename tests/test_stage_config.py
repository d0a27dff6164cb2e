"""Stage commands declared once by their config class: options, help, YAML --config, round trip."""
import dataclasses
from typing import get_args, get_type_hints

import pytest

from tests.test_cli import run_cli
from xmgie.cli import _file_parser
from xmgie.errors import UserError
from xmgie.stage_config import config_from, field_docs, flag, required, to_argv, to_yaml
from xmgie.stages import PIPELINE_STAGES, STAGE_COMMANDS

REQUIRED = {"out": "x.pt", "source": "m.ckpt", "ckpt": "m.ckpt"}


def _minimal(cls) -> dict:
    """The required fields of `cls`: a path, or the first of its choices."""
    hints = get_type_hints(cls)
    return {f.name: REQUIRED.get(f.name) or next(iter(f.metadata.get("choices", lambda: get_args(hints[f.name]))()))
            for f in dataclasses.fields(cls) if required(f)}


@pytest.mark.parametrize("command", STAGE_COMMANDS, ids=["-".join(c.words) for c in STAGE_COMMANDS])
def test_every_stage_command_has_its_help_and_round_trips_through_yaml(command, tmp_path):
    words, cls = list(command.words), command.config
    proc = run_cli(*words, "--help")
    assert proc.returncode == 0
    docs = field_docs(cls)
    for field in dataclasses.fields(cls):
        assert flag(field) in proc.stdout and docs.get(field.name), field.name  # every option, with its help
    config = config_from(cls, _minimal(cls))
    (tmp_path / "c.yaml").write_text(to_yaml(config))
    args = _file_parser().parse_args([*words, "--config", str(tmp_path / "c.yaml")])
    assert config_from(cls, args) == config
    # a budget's settings by field name become options that parse back to the same values (bools as --no-x)
    settings = {k: v for k, v in dataclasses.asdict(config).items() if v is not None}
    settings.update({f.name: not f.default for f in dataclasses.fields(cls) if isinstance(f.default, bool)})
    args = _file_parser().parse_args([*words, *to_argv(cls, settings, "budget")])
    assert dataclasses.asdict(config_from(cls, args)) == {**dataclasses.asdict(config), **settings}


def test_the_command_line_overrides_the_config_file_and_bad_files_are_one_line_errors(tmp_path):
    from xmgie.training.config import IdentityStageConfig

    path = tmp_path / "c.yaml"
    path.write_text("out: a.pt\nsteps: 7\nloss: arcface\n")
    args = _file_parser().parse_args(["identity", "train", "--config", str(path), "--steps", "9",
                                      "--data-root", "/d"])
    assert config_from(IdentityStageConfig, args) == IdentityStageConfig(out="a.pt", steps=9, loss="arcface",
                                                                         root="/d")
    for text, message in (("out: a.pt\nsteps: many\n", "--steps: expected int"),
                          ("out: a.pt\nepochs: 3\n", r"unknown option\(s\) epochs"),
                          ("steps: 3\n", "--out required"), ("- out\n", "expected a mapping")):
        path.write_text(text)
        with pytest.raises(UserError, match=message):
            config_from(IdentityStageConfig, _file_parser().parse_args(["identity", "train", "--config", str(path)]))
    proc = run_cli("baseline", "train", "--out", str(tmp_path / "b.ckpt"))
    assert proc.returncode == 2 and "--method required" in proc.stderr
    proc = run_cli("baseline", "train", "--method", "stylegan", "--out", "b.ckpt")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_budget_settings_are_checked_against_the_stage_config():
    from xmgie.evaluation.config import EvaluateStageConfig

    assert to_argv(EvaluateStageConfig, {"limit": 8, "inception": False, "masks": "auto"}, "b") == [
        "--limit", "8", "--no-inception", "--mask", "auto"]
    for settings, message in (({"limt": 8}, r"b: unknown setting\(s\) limt; known: ckpt, "),
                              ({"limit": "8"}, "b: --limit: expected int, got '8'"),
                              ({"limit": True}, "b: --limit: expected int, got True"),
                              ({"masks": "painted"}, "b: --mask: expected one of dataset, auto, anywhere")):
        with pytest.raises(UserError, match=message):
            to_argv(EvaluateStageConfig, settings, "b")


def test_every_pipeline_stage_kind_but_the_generator_is_a_declared_command_with_an_output():
    from xmgie.pipeline.stage import STAGE_KINDS

    assert set(PIPELINE_STAGES) == set(STAGE_KINDS) - {"generator"}
    assert all(c.output and c.kind == kind for kind, c in PIPELINE_STAGES.items())
