"""The options of `xmgie baseline train|derive`, declared once (xmgie/stage_config.py makes them the commands'); their
`--method` choices are the registry's (`registry.py`)."""
from __future__ import annotations

from dataclasses import dataclass, field

from xmgie.training.config import DataStageConfig


@dataclass
class BaselineStageConfig(DataStageConfig):
    """`xmgie baseline train`: a GAN method of the registry with the data settings of the generator run; prints JSON.

    Attributes:
        method: the GAN baseline.
        out: checkpoint to write (a .json summary is written beside it).
        batch_size: images per update (default: the generator run's).
        channels: base width of generator and discriminator.
    """

    method: str = field(default=None, metadata={"required": True, "choices": lambda: _registered("gan")})
    steps: int = 1300
    batch_size: int | None = None
    channels: int = 32


@dataclass
class DeriveStageConfig:
    """`xmgie baseline derive`: a training-free method (PFB-Diff, MGIE + latent blending, …) from a trained generator
    without modules (mgie): no training; prints the checkpoint written.

    Attributes:
        method: the training-free method.
        source: the mgie generator checkpoint.
        out: checkpoint to write.
    """

    method: str = field(metadata={"choices": lambda: _registered("derive")})
    source: str = field(metadata={"flag": "--from"})
    out: str


def _registered(kind: str) -> tuple[str, ...]:
    """The registry's methods of one recipe kind, read only when a command checks or lists them (the registry
    imports every method and Lightning: building the `xmgie` parser must not)."""
    from xmgie.methods.registry import method_names

    return method_names(kind)
