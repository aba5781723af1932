"""Gradient-boosted trees as plain numpy arrays: exported once from scikit-learn, evaluated with numpy alone.

A ``TreeEnsemble`` holds every tree padded to the same node count, so a batch of rows walks all trees at
once: ``node = where(x[feature[node]] <= threshold[node], left[node], right[node])``, repeated ``depth``
times. Leaves point to themselves, so rows that reach a leaf early stay there. Prediction is
``baseline + sum over trees of value[leaf]`` (scikit-learn stores leaf values with the learning rate applied).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TreeEnsemble:
    feature: np.ndarray    # (trees, nodes) int32; 0 at leaves
    threshold: np.ndarray  # (trees, nodes) float64; go left when x <= threshold
    left: np.ndarray       # (trees, nodes) int32; leaves point to themselves
    right: np.ndarray      # (trees, nodes) int32
    value: np.ndarray      # (trees, nodes) float64; used at leaves
    baseline: float
    depth: int

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"expected a 2-D feature matrix, got shape {x.shape}")
        n_trees = self.feature.shape[0]
        if n_trees == 0 or x.shape[0] == 0:
            return np.full(x.shape[0], self.baseline)
        rows = np.arange(x.shape[0])[:, None]
        trees = np.arange(n_trees)[None, :]
        node = np.zeros((x.shape[0], n_trees), dtype=np.int32)
        for _ in range(self.depth):
            f = self.feature[trees, node]
            go_left = x[rows, f] <= self.threshold[trees, node]
            node = np.where(go_left, self.left[trees, node], self.right[trees, node])
        return self.baseline + self.value[trees, node].sum(axis=1)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.feature": self.feature, f"{prefix}.threshold": self.threshold,
                f"{prefix}.left": self.left, f"{prefix}.right": self.right, f"{prefix}.value": self.value,
                f"{prefix}.meta": np.asarray([self.baseline, float(self.depth)])}

    @classmethod
    def from_arrays(cls, data: Any, prefix: str) -> "TreeEnsemble":
        meta = np.asarray(data[f"{prefix}.meta"], dtype=np.float64)
        return cls(np.asarray(data[f"{prefix}.feature"]), np.asarray(data[f"{prefix}.threshold"]),
                   np.asarray(data[f"{prefix}.left"]), np.asarray(data[f"{prefix}.right"]),
                   np.asarray(data[f"{prefix}.value"]), float(meta[0]), int(meta[1]))


def from_sklearn(model: Any) -> TreeEnsemble:
    """Export a fitted ``HistGradientBoostingRegressor`` (numeric features, no missing values)."""
    predictors = [p[0] for p in model._predictors]  # one tree per boosting iteration for a regressor
    baseline = float(np.ravel(model._baseline_prediction)[0])
    if not predictors:
        empty = np.zeros((0, 1), dtype=np.int32)
        return TreeEnsemble(empty, empty.astype(np.float64), empty, empty, empty.astype(np.float64), baseline, 0)
    width = max(len(p.nodes) for p in predictors)
    n = len(predictors)
    feature = np.zeros((n, width), dtype=np.int32)
    threshold = np.zeros((n, width), dtype=np.float64)
    left = np.tile(np.arange(width, dtype=np.int32), (n, 1))
    right = left.copy()
    value = np.zeros((n, width), dtype=np.float64)
    depth = 0
    for t, pred in enumerate(predictors):
        nodes = pred.nodes
        if np.any(nodes["is_categorical"]):
            raise ValueError("categorical splits are not supported by the numpy predictor")
        k = len(nodes)
        inner = ~nodes["is_leaf"].astype(bool)
        feature[t, :k] = np.where(inner, nodes["feature_idx"], 0)
        threshold[t, :k] = np.where(inner, nodes["num_threshold"], np.inf)
        left[t, :k] = np.where(inner, nodes["left"], np.arange(k))
        right[t, :k] = np.where(inner, nodes["right"], np.arange(k))
        value[t, :k] = nodes["value"]
        depth = max(depth, int(nodes["depth"].max()))
    return TreeEnsemble(feature, threshold, left, right, value, baseline, depth)
