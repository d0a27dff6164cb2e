"""How a Table 1 method is built (the registry in `xmgie/baselines/__init__.py` maps names to recipes)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """kind "fit": `xmgie fit` with `configs` on top of experiments/train.yaml (the framework's generator);
    "gan": `xmgie baseline train --method <name>` (a GANBaseline subclass, `module`);
    "derive": `xmgie baseline derive --method <name>` from the checkpoint of method `source`, no training."""

    kind: str
    configs: tuple[str, ...] = ()
    module: type | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("fit", "gan", "derive"):
            raise ValueError(f"recipe kind must be fit, gan or derive, got {self.kind!r}")
