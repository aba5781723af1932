"""Training (scikit-learn, the ``learn`` extra) and leave-one-GPU-out validation of the learned kernel model.

Per family, a histogram gradient-boosted regressor learns ``log(latency / roofline bound)`` from the
features in ``features.py``. Rows are weighted so that every GPU group counts the same (A100 has the most
rows: NeuSight's and Vidur's). Training is deterministic (fixed seed, no subsampling, one thread).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from perfforge.engines.learned.dataset import Samples
from perfforge.engines.learned.model import FamilyModel, LearnedKernelModel
from perfforge.engines.learned.trees import TreeEnsemble, from_sklearn

SEED = 0
INTERVAL_QUANTILES = (0.10, 0.90)   # an 80% interval
# Boosting settings: modest, to keep a full retrain to a few minutes on one core.
GBDT_PARAMS: dict[str, Any] = {"max_iter": 300, "learning_rate": 0.08, "max_leaf_nodes": 31, "max_depth": 8,
                               "min_samples_leaf": 20, "l2_regularization": 1.0}
FLOOR_QUANTILE = 0.001  # vector/conv floor: (almost) the lowest log-ratio seen in training


def _require_sklearn() -> Any:
    try:
        from sklearn.ensemble import HistGradientBoostingRegressor
    except ImportError:
        from perfforge.core.errors import ConfigError

        raise ConfigError("training the learned model needs scikit-learn: pip install -e '.[learn]'") from None
    return HistGradientBoostingRegressor


def _one_thread() -> Any:
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        import contextlib

        return contextlib.nullcontext()


def group_weights(s: Samples) -> np.ndarray:
    """Each GPU group gets the same total weight; within a group, each op class too."""
    w = np.ones(len(s))
    groups = np.unique(s.group)
    for g in groups:
        gm = s.group == g
        classes = np.unique(s.op_class[gm])
        for c in classes:
            m = gm & (s.op_class == c)
            w[m] = 1.0 / (m.sum() * len(classes) * len(groups))
    return w * len(s)


def fit_trees(s: Samples, *, params: dict[str, Any] | None = None, seed: int = SEED) -> tuple[TreeEnsemble, Any]:
    """Fit one family's regressor; returns (numpy export, the scikit-learn model)."""
    hgb = _require_sklearn()
    model = hgb(loss="squared_error", random_state=seed, early_stopping=False, **(params or GBDT_PARAMS))
    with _one_thread():
        model.fit(s.x, s.y, sample_weight=group_weights(s))
    return from_sklearn(model), model


def family_floor(s: Samples) -> float:
    return 0.0 if s.family == "gemm" else float(min(0.0, np.quantile(s.y, FLOOR_QUANTILE)))


@dataclass
class FoldResult:
    """Out-of-fold predictions for one family: one entry per sample, each predicted by the model that did
    not see that sample's GPU group."""

    family: str
    samples: Samples
    pred_s: np.ndarray
    baseline_s: dict[str, np.ndarray]


def leave_one_gpu_out(s: Samples, *, groups: list[str] | None = None, params: dict[str, Any] | None = None,
                      baselines: dict[str, Callable[[Samples, Samples], np.ndarray]] | None = None,
                      progress: Callable[[str], None] | None = None) -> FoldResult:
    """Train on every GPU group but one, predict the held-out one; repeat for each group."""
    pred = np.full(len(s), np.nan)
    base = {k: np.full(len(s), np.nan) for k in (baselines or {})}
    for g in groups or sorted(np.unique(s.group)):
        test = s.group == g
        if not test.any() or test.all():
            continue
        train = s.subset(~test)
        held = s.subset(test)
        t0 = time.perf_counter()
        trees, _ = fit_trees(train, params=params)
        ratio = np.maximum(trees.predict(held.x), family_floor(train))
        pred[test] = held.bound_s * np.exp(ratio)
        for name, fn in (baselines or {}).items():
            base[name][test] = fn(train, held)
        if progress:
            progress(f"{s.family}: held out {g} ({test.sum()} rows) in {time.perf_counter() - t0:.1f}s")
    return FoldResult(s.family, s, pred, base)


def interval_offsets(fold: FoldResult, *, exclude_group: str | None = None) -> dict[str, tuple[float, float]]:
    """(q_lo, q_hi) of log(measured / predicted) per op class from out-of-fold errors ("*": all classes).

    ``exclude_group`` leaves that GPU's own errors out, so its coverage is judged with an interval that its
    measurements did not size.
    """
    s = fold.samples
    ok = np.isfinite(fold.pred_s)
    if exclude_group is not None:
        ok &= s.group != exclude_group
    err = np.log(s.latency_s[ok] / fold.pred_s[ok])
    classes = s.op_class[ok]
    lo_q, hi_q = INTERVAL_QUANTILES
    out = {"*": (float(np.quantile(err, lo_q)), float(np.quantile(err, hi_q)))} if err.size else {"*": (0.0, 0.0)}
    for c in np.unique(classes):
        e = err[classes == c]
        if e.size >= 20:
            out[str(c)] = (float(np.quantile(e, lo_q)), float(np.quantile(e, hi_q)))
    return out


def train_model(samples: dict[str, Samples], folds: dict[str, FoldResult], *,
                params: dict[str, Any] | None = None) -> LearnedKernelModel:
    """The shipped model: trees fitted on every GPU, intervals sized by the leave-one-GPU-out errors."""
    families = {}
    for fam, s in samples.items():
        trees, _ = fit_trees(s, params=params)
        interval = interval_offsets(folds[fam]) if fam in folds else {"*": (0.0, 0.0)}
        families[fam] = FamilyModel(fam, trees, family_floor(s), interval)
    return LearnedKernelModel(families)
