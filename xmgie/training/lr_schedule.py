"""The generator's learning-rate schedule: linear warm-up, then constant or a cosine decay to the run's end."""
from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine")


def learning_rate(step: int, total: int, lr: float, warmup: int = 0, schedule: str = "constant",
                  final_ratio: float = 0.1) -> float:
    """Learning rate of generator update `step` (0-based) in a run of `total` updates.

    warm-up: lr·(step + 1)/warmup for the first `warmup` updates; then "constant" keeps lr, "cosine" falls
    from lr to lr·final_ratio along half a cosine, reaching it at `total` (and staying there after it).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return lr
    progress = min(1.0, (step - warmup) / (total - warmup))
    return lr * (final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
