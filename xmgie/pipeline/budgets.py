"""The budgets of `xmgie run` (experiments/budgets.yaml): seeds, and each stage's settings in one syntax."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from xmgie.errors import UserError
from xmgie.stage_config import to_argv
from xmgie.stages import PIPELINE_STAGES

BUDGETS_FILE = "experiments/budgets.yaml"
FIT_SETTINGS = ("generator", "base", "finetune", "scratch")  # budget entries of `xmgie fit` (jsonargparse keys)
BUDGET_KEYS = ("seeds", "scratch_seeds", "jobs", "train_config", "resources")  # the rest of a budget
# budget entries of the stage commands declared by a config (xmgie/stages.py), by stage kind
STAGE_CONFIGS = {kind: command.config for kind, command in PIPELINE_STAGES.items()}


def load_budget(name: str, repo: Path) -> dict[str, Any]:
    """A budget of experiments/budgets.yaml with each stage's settings as its command-line options
    (`budget_argv`); "auto": "paper" with a GPU, else "cpu"."""
    if name == "auto":
        import torch

        name = "paper" if torch.cuda.is_available() else "cpu"
    budgets = yaml.safe_load((repo / BUDGETS_FILE).read_text())
    if name not in budgets:
        raise UserError(f"unknown budget {name!r}; {BUDGETS_FILE} has {', '.join(budgets)}")
    budget = {"name": name, **budgets[name]}
    unknown = sorted(set(budget) - {"name", *BUDGET_KEYS, *FIT_SETTINGS, *STAGE_CONFIGS})
    if unknown:
        raise UserError(f"{BUDGETS_FILE} {name}: unknown entr(ies) {', '.join(unknown)}; known: "
                        f"{', '.join((*BUDGET_KEYS, *FIT_SETTINGS, *STAGE_CONFIGS))}")
    for entry in (*FIT_SETTINGS, *STAGE_CONFIGS):
        if budget.get(entry) is not None:  # `base: null`: no base stage
            budget[entry] = budget_argv(budget, entry)
    return budget


def budget_argv(budget: dict[str, Any], entry: str) -> list[str]:
    """A budget entry's settings (`{field: value}`) as its command's options. Stage commands take their config's
    field names (`steps: 1000` → `--steps 1000`; an unknown field or a wrong type is an error naming the budget);
    `xmgie fit` takes jsonargparse keys (`trainer.max_steps: 200` → `--trainer.max_steps=200`, `config: [a.yaml]`
    → `--config a.yaml`)."""
    settings = budget[entry]
    where = f"{BUDGETS_FILE} {budget['name']}.{entry}"
    if not isinstance(settings, dict):
        raise UserError(f"{where}: expected settings as a mapping (field: value), got {settings!r}")
    if entry in STAGE_CONFIGS:
        return to_argv(STAGE_CONFIGS[entry], settings, where)
    argv: list[str] = []
    for key, value in settings.items():
        if key == "config":
            argv += [a for c in ([value] if isinstance(value, str) else value) for a in ("--config", c)]
        else:
            argv.append(f"--{key}={json.dumps(value) if isinstance(value, bool) else value}")
    return argv


