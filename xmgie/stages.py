"""The stage commands, each declared once: the words that call it, its typed config (the command's options, help
and YAML, xmgie/stage_config.py), what runs it, and for the pipeline's stages their kind and the file they write in
their stage folder. `xmgie` builds its commands from this table; the pipeline checks its budgets against the same
configs and finds each stage's output here."""
from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from xmgie.errors import UserError
from xmgie.evaluation.config import EvaluateStageConfig
from xmgie.methods.config import BaselineStageConfig, DeriveStageConfig
from xmgie.training.config import AttributeStageConfig, ExpanderStageConfig, IdentityStageConfig, MaskStageConfig


def trust_files(args) -> None:
    """--trust-checkpoint: unpickle the given --ckpt (and --expander) fully; only for files the user made.
    `args`: parsed options or a stage config with those fields."""
    from xmgie.checkpoints import trust_file

    if getattr(args, "trust_checkpoint", False):
        for path in (args.ckpt, getattr(args, "expander", None)):
            if path:
                trust_file(path)


def mask_settings(args):
    """The --mask-* options (parsed, or a stage config's fields) as the predictor's settings."""
    from xmgie.modules.mask_predictor import MaskPredictorConfig

    try:
        return MaskPredictorConfig(args.mask_timestep, args.mask_draws, args.mask_threshold, args.mask_smooth,
                                   args.mask_net)
    except ValueError as err:
        raise UserError(str(err)) from None


def _evaluate(cfg: EvaluateStageConfig) -> None:
    from xmgie.evaluation.evaluate import evaluate_checkpoint, write_result

    trust_files(cfg)
    options = {k: v for k, v in dataclasses.asdict(cfg).items()
               if k not in ("out", "trust_checkpoint") and not k.startswith("mask_")}
    result = evaluate_checkpoint(**options, mask_settings=mask_settings(cfg))
    out = cfg.out or Path("results") / result["dataset"] / f"{cfg.method}.json"
    result["written_to"] = str(write_result(result, out))
    for metric in result["uncalibrated"]:
        print(f"warning: {metric} uses an UNCALIBRATED backbone ({result['backbones'][metric]['source']}); "
              f"see `xmgie weights status`", file=sys.stderr)
    print(json.dumps(result))


def _identity_train(cfg) -> None:
    from xmgie.training.lit_identity import train_identity_encoder

    print(json.dumps(train_identity_encoder(**dataclasses.asdict(cfg))))


def _attributes_train(cfg) -> None:
    from xmgie.training.lit_attributes import train_attribute_classifier

    print(json.dumps(train_attribute_classifier(**dataclasses.asdict(cfg))))


def _expander_train(cfg) -> None:
    from xmgie.training.lit_expander import train_instruction_expander

    try:
        result = train_instruction_expander(**dataclasses.asdict(cfg))
    except (FileNotFoundError, ValueError) as err:
        raise UserError(str(err)) from None
    print(json.dumps(result))


def _mask_train(cfg) -> None:
    from xmgie.training.lit_mask import train_mask_predictor

    print(json.dumps(train_mask_predictor(**dataclasses.asdict(cfg))))


def _baseline_train(cfg) -> None:
    from xmgie.methods.train import train_baseline

    print(json.dumps(train_baseline(**dataclasses.asdict(cfg))))


def _baseline_derive(cfg) -> None:
    from xmgie.methods.registry import METHODS

    print(METHODS[cfg.method].derive(cfg.source, cfg.out))


@dataclass(frozen=True)
class StageCommand:
    """words: what follows `xmgie` (the config's fields are its options); config: the typed config class; run:
    what runs it, given a config; kind: the pipeline's stage kind (None: not a pipeline stage); output: the file the
    stage writes in its folder."""

    words: tuple[str, ...]
    config: type
    run: Callable[[Any], None]
    kind: str | None = None
    output: str | None = None


STAGE_COMMANDS = (
    StageCommand(("identity", "train"), IdentityStageConfig, _identity_train, "identity", "encoder.pt"),
    StageCommand(("attributes", "train"), AttributeStageConfig, _attributes_train, "attributes", "classifier.pt"),
    StageCommand(("expander", "train"), ExpanderStageConfig, _expander_train, "expander", "expander.pt"),
    StageCommand(("mask", "train"), MaskStageConfig, _mask_train, "mask", "mask_net.pt"),
    StageCommand(("baseline", "train"), BaselineStageConfig, _baseline_train, "baseline", "baseline.ckpt"),
    StageCommand(("baseline", "derive"), DeriveStageConfig, _baseline_derive, "derive", "baseline.ckpt"),
    StageCommand(("evaluate",), EvaluateStageConfig, _evaluate, "evaluate", "result.json"),
)
PIPELINE_STAGES = {c.kind: c for c in STAGE_COMMANDS if c.kind}  # the generator's `xmgie fit` is LightningCLI's
