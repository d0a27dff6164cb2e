"""How a Table 1 method is built (the registry in `xmgie/baselines/__init__.py` maps names to recipes)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """kind "fit": `xmgie fit` with `configs` on top of experiments/train.yaml (the framework's generator);
    "gan": `xmgie baseline train --method <name>` (a GANBaseline subclass, `module`);
    "derive": `xmgie baseline derive --method <name>` from the checkpoint of method `source`, no training.
    finetune (fit only): the method fine-tunes the pipeline's trained base editor (experiments/finetune.yaml,
    `--model.init_from`) instead of training from scratch for the base's plus the fine-tuning steps."""

    kind: str
    configs: tuple[str, ...] = ()
    module: type | None = None
    source: str | None = None
    finetune: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("fit", "gan", "derive"):
            raise ValueError(f"recipe kind must be fit, gan or derive, got {self.kind!r}")
        if self.finetune and self.kind != "fit":
            raise ValueError("only a fit recipe can fine-tune the base editor")
