"""FID and IS against independent NumPy/SciPy implementations, on fixed features and logits."""
import numpy as np
import pytest
import scipy.linalg
import torch

from xmgie.metrics.metrics import InceptionMetrics


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(c1 @ c2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * np.trace(covmean))


def hand_is(logits: np.ndarray, index: np.ndarray, splits: int) -> tuple[float, float]:
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    scores = []
    for k in range(splits):
        part = p[index % splits == k]
        py = part.mean(0)
        kl = (part * (np.log(part) - np.log(py))).sum(1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def _metric(dim: int, classes: int, splits: int) -> InceptionMetrics:
    return InceptionMetrics(torch.nn.Identity(), splits=splits, dim=dim, classes=classes)


def test_streamed_fid_equals_scipy_on_fixed_features():
    rng = np.random.default_rng(0)
    fake = rng.normal(size=(60, 6)) @ rng.normal(size=(6, 6))
    real = rng.normal(loc=0.5, size=(50, 6))
    m = _metric(6, 4, 2)
    for chunk in np.array_split(fake, 4):  # streamed in uneven batches
        m.update_features(torch.tensor(chunk), torch.zeros(len(chunk), 4), torch.arange(len(chunk)))
    for chunk in np.array_split(real, 3):
        m.update_features(torch.tensor(chunk), None, torch.arange(len(chunk)), real=True)
    assert float(m.compute()["fid"]) == pytest.approx(scipy_fid(fake, real), rel=1e-6)


def test_fid_of_a_set_with_itself_is_zero():
    feats = torch.randn(40, 5, generator=torch.Generator().manual_seed(1)).double()
    m = _metric(5, 3, 1)
    m.update_features(feats, torch.zeros(40, 3), torch.arange(40))
    m.update_features(feats, None, torch.arange(40), real=True)
    assert abs(float(m.compute()["fid"])) < 1e-8


def test_streamed_is_equals_the_formula_by_hand_on_fixed_logits():
    rng = np.random.default_rng(2)
    logits = rng.normal(scale=3.0, size=(47, 10))
    index = rng.permutation(47)  # split membership follows dataset indices, not arrival order
    m = _metric(2, 10, 3)
    for sl in (slice(0, 20), slice(20, 21), slice(21, 47)):
        m.update_features(torch.zeros(len(logits[sl]), 2), torch.tensor(logits[sl]), torch.tensor(index[sl]))
    out = m.compute()
    mean, std = hand_is(logits, index, 3)
    assert float(out["is"]) == pytest.approx(mean, rel=1e-9)
    assert float(out["is_std"]) == pytest.approx(std, rel=1e-6)


def test_is_bounds_confident_distinct_classes_score_the_class_count():
    logits = torch.full((8, 4), -30.0)
    logits[torch.arange(8), torch.arange(8) % 4] = 30.0
    m = _metric(2, 4, 1)
    m.update_features(torch.zeros(8, 2), logits, torch.arange(8))
    assert float(m.compute()["is"]) == pytest.approx(4.0, rel=1e-6)
