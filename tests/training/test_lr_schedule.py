import math

import pytest

from xmgie.training.lr_schedule import learning_rate


def test_warmup_then_constant():
    assert learning_rate(0, 100, 1.0, warmup=10) == pytest.approx(0.1)
    assert learning_rate(9, 100, 1.0, warmup=10) == pytest.approx(1.0)
    assert learning_rate(99, 100, 1.0, warmup=10) == 1.0


def test_cosine_falls_from_lr_to_the_final_ratio_at_the_last_step():
    lrs = [learning_rate(s, 110, 1.0, warmup=10, schedule="cosine", final_ratio=0.1) for s in range(10, 111)]
    assert lrs[0] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert lrs[50] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))  # half-way: the mean
    assert learning_rate(500, 110, 1.0, warmup=10, schedule="cosine") == pytest.approx(0.1)  # past the end


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="schedule"):
        learning_rate(0, 10, 1.0, schedule="step")
