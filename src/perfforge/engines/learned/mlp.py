"""A small multi-layer perceptron as plain numpy arrays: trained with scikit-learn, evaluated with numpy alone.

This is the NeuSight-style learner (Lee et al., ASPLOS 2025: an MLP from tile/wave and GPU features to the
fraction of the roofline a kernel attains): it reads the same feature vector as the trees and predicts
``log(latency / roofline bound)``, i.e. minus the log of the attained utilisation. Inputs are standardised
with the training rows' mean and standard deviation and clipped to ``+-clip`` standard deviations, so a GPU
whose figures lie outside the training range (the smallest or the newest card) cannot drive the ReLU
network into linear extrapolation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class NumpyMLP:
    mean: np.ndarray             # (features,)
    scale: np.ndarray            # (features,)
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    clip: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"expected a (rows, {self.mean.shape[0]}) feature matrix, got shape {x.shape}")
        h = np.clip((x - self.mean) / self.scale, -self.clip, self.clip)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w + b
            if i < last:
                h = np.maximum(h, 0.0)
        return h[:, 0]

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}.mlp.mean": self.mean, f"{prefix}.mlp.scale": self.scale,
               f"{prefix}.mlp.meta": np.asarray([float(len(self.weights)), self.clip])}
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            out[f"{prefix}.mlp.w{i}"] = w
            out[f"{prefix}.mlp.b{i}"] = b
        return out

    @classmethod
    def from_arrays(cls, data: Any, prefix: str) -> "NumpyMLP":
        meta = np.asarray(data[f"{prefix}.mlp.meta"], dtype=np.float64)
        n = int(meta[0])
        return cls(np.asarray(data[f"{prefix}.mlp.mean"]), np.asarray(data[f"{prefix}.mlp.scale"]),
                   tuple(np.asarray(data[f"{prefix}.mlp.w{i}"]) for i in range(n)),
                   tuple(np.asarray(data[f"{prefix}.mlp.b{i}"]) for i in range(n)), float(meta[1]))

    @staticmethod
    def has_arrays(data: Any, prefix: str) -> bool:
        return f"{prefix}.mlp.meta" in getattr(data, "files", data)


def standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and standard deviation (constant columns get scale 1)."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    return mean, np.where(scale > 1e-9, scale, 1.0)


def from_sklearn(model: Any, mean: np.ndarray, scale: np.ndarray, clip: float) -> NumpyMLP:
    """Export a fitted ``MLPRegressor`` (ReLU hidden layers, identity output) trained on clipped z-scores."""
    if getattr(model, "activation", "relu") != "relu":
        raise ValueError("only ReLU networks are supported by the numpy predictor")
    return NumpyMLP(np.asarray(mean, dtype=np.float64), np.asarray(scale, dtype=np.float64),
                    tuple(np.asarray(w, dtype=np.float64) for w in model.coefs_),
                    tuple(np.asarray(b, dtype=np.float64) for b in model.intercepts_), float(clip))
