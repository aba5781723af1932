"""Accuracy metrics over (predicted, measured) pairs. Errors are signed relative errors pred/meas - 1."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Accuracy:
    n: int
    mape: float          # mean |pred/meas - 1|
    median_ape: float
    p90_ape: float
    max_ape: float
    bias: float          # mean signed error: < 0 means predictions are too fast
    within_10pct: float  # share of cases with |error| <= 10%
    spearman: float      # rank correlation of predicted vs measured (nan when n < 3)
    kendall: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _rank(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank), as scipy.stats.rankdata(method='average')."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=float)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3:
        return math.nan
    ra, rb = _rank(a), _rank(b)
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def kendall(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b."""
    n = len(a)
    if n < 3:
        return math.nan
    da = np.sign(a[:, None] - a[None, :])
    db = np.sign(b[:, None] - b[None, :])
    iu = np.triu_indices(n, k=1)
    s = float((da[iu] * db[iu]).sum())
    ta = float((da[iu] != 0).sum())
    tb = float((db[iu] != 0).sum())
    return s / math.sqrt(ta * tb) if ta and tb else math.nan


def accuracy(predicted: list[float], measured: list[float]) -> Accuracy:
    if len(predicted) != len(measured):
        raise ValueError("predicted and measured differ in length")
    if not predicted:
        raise ValueError("no cases")
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    if (m <= 0).any() or (p <= 0).any():
        raise ValueError("times must be positive")
    err = p / m - 1
    ape = np.abs(err)
    return Accuracy(
        n=len(p), mape=float(ape.mean()), median_ape=float(np.median(ape)), p90_ape=float(np.quantile(ape, 0.9)),
        max_ape=float(ape.max()), bias=float(err.mean()), within_10pct=float((ape <= 0.10 + 1e-9).mean()),
        spearman=spearman(p, m), kendall=kendall(p, m),
    )


def bootstrap_mean_interval(values: "np.ndarray | list[float]", *, level: float = 0.95, resamples: int = 10000,
                            seed: int = 0) -> tuple[float, float]:
    """The ``level`` interval of the mean of ``values`` under resampling with replacement (a percentile bootstrap
    with a fixed seed, so reports regenerate identically). For paired comparisons pass the per-item differences."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("bootstrap_mean_interval needs at least one value")
    idx = np.random.default_rng(seed).integers(0, x.size, size=(resamples, x.size))
    means = x[idx].mean(axis=1)
    tail = (1.0 - level) / 2.0
    return float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))
