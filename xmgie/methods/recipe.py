"""How a Table 1 method is built (the registry in `xmgie/methods/__init__.py` maps names to recipes)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class Recipe:
    """kind "fit": `xmgie fit` with `configs` on top of experiments/train.yaml (the framework's generator);
    "gan": `xmgie baseline train --method <name>` (a GANBaseline subclass, `module`);
    "derive": `xmgie baseline derive --method <name>` from the checkpoint of method `source`, no training:
    `derive(source_checkpoint, out)` writes the derived checkpoint and returns its path.
    finetune (fit only): the method fine-tunes the pipeline's trained base editor (experiments/finetune.yaml,
    `--model.init_from`) instead of training from scratch for the base's plus the fine-tuning steps."""

    kind: str
    configs: tuple[str, ...] = ()
    module: type | None = None
    source: str | None = None
    finetune: bool = False
    derive: Callable[[str | Path, str | Path], Path] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("fit", "gan", "derive"):
            raise ValueError(f"recipe kind must be fit, gan or derive, got {self.kind!r}")
        if self.finetune and self.kind != "fit":
            raise ValueError("only a fit recipe can fine-tune the base editor")
        if (self.kind == "gan") != (self.module is not None):
            raise ValueError("a gan recipe, and only a gan recipe, names its module")
        if (self.kind == "derive") != (self.derive is not None and self.source is not None):
            raise ValueError("a derive recipe, and only a derive recipe, names its source method and derive function")
