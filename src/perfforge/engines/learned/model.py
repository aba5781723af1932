"""The shipped learned kernel model: numpy arrays (``kernel_model.npz``) plus a JSON manifest.

Prediction needs numpy only (no scikit-learn, no torch). For each covered op of op class ``c``:

    f(x) = (1 - w[c]) * trees(x) + w[c] * mlp(x)
    learned = bound * exp(max(f(x), floor))
    pred = learned ** (1 - a[c]) * analytical ** a[c]
    low = pred * exp(q_lo[c])      high = pred * exp(q_hi[c])

where ``bound`` is the datasheet roofline, ``trees``/``mlp`` the family's boosted trees and NeuSight-style MLP
(both predict ``log(latency / bound)``), ``w[c]`` the blend weight that gave the lowest leave-one-GPU-out MAPE
for the class (0: trees only, 1: MLP only), ``floor`` 0 for GEMMs (never faster than the roofline) and the
lowest training log-ratio for convolutions (Winograd/FFT kernels do fewer FLOPs than a direct convolution)
and vector ops (L2-resident inputs beat DRAM bandwidth). ``analytical`` is the analytical engine's time for the
op under the calibration in force, and ``a[c]`` its weight, also chosen per class by leave-one-GPU-out MAPE
(there the analytical engine runs on the priors alone, so no constant fitted on the held-out GPU enters): on a
new GPU the two often err in different directions, and where the folds show that their geometric mean errs less
than the learned time alone (GEMMs, in the shipped model), it is used.
``q_lo``/``q_hi`` come from *leave-one-GPU-out* log errors of ``pred`` per op class, widened until held-out GPUs
are covered 80% of the time (see ``train.interval_offsets``): the interval is sized by how wrong the model was
on GPUs it had not seen.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError, PerfforgeError
from perfforge.engines.analytical.calibration import Calibration, load_calibration
from perfforge.engines.analytical.roofline import op_time
from perfforge.engines.learned.dataset import gpu_group
from perfforge.engines.learned.features import FEATURE_NAMES, batch_features
from perfforge.engines.learned.mlp import NumpyMLP
from perfforge.engines.learned.trees import TreeEnsemble
from perfforge.system.device import DeviceSpec
from perfforge.workload.op import Op, OpKind, Phase

SHIPPED_NPZ = "data/kernel_model.npz"
SHIPPED_MANIFEST = "data/kernel_model.json"
SCHEMA = "perfforge.learned-kernel-model/3"
TRAIN_HINT = "retrain with `perfforge learn train` (needs the `learn` extra: pip install -e '.[learn]')"
SUPPORTED_DTYPES = frozenset({DType.FP32, DType.TF32, DType.FP16, DType.BF16})

CLASS_OF_KIND = {OpKind.MATMUL: "FC", OpKind.BMM: "BMM", OpKind.CONV2D: "CONV", OpKind.LAYER_NORM: "NORM",
                 OpKind.RMS_NORM: "NORM", OpKind.SOFTMAX: "SOFTMAX", OpKind.ELEMENTWISE: "ELEMENTWISE"}


class WeightsMissingError(PerfforgeError):
    """The learned model's files are missing or do not match their manifest."""

    def __init__(self, path: str | Path, how_to_train: str = TRAIN_HINT) -> None:
        super().__init__(f"learned kernel model not found or unreadable at {path}; {how_to_train}")
        self.path = str(path)
        self.how_to_train = how_to_train


def blend_with_analytical(learned_s: np.ndarray, analytical_s: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``learned ** (1 - a) * analytical ** a`` element by element. Where ``a`` is 0 or either time is not a
    positive number (an uncovered or degenerate op), the learned time is returned as it is."""
    learned, analytical, a = np.broadcast_arrays(np.asarray(learned_s, dtype=np.float64),
                                                 np.asarray(analytical_s, dtype=np.float64),
                                                 np.asarray(weight, dtype=np.float64))
    out = learned.copy()
    use = (a > 0.0) & (learned > 0.0) & (analytical > 0.0)
    out[use] = np.exp((1.0 - a[use]) * np.log(learned[use]) + a[use] * np.log(analytical[use]))
    return out


@dataclass(frozen=True)
class FamilyModel:
    family: str
    trees: TreeEnsemble
    floor: float                                   # lowest allowed log(latency / bound)
    interval: dict[str, tuple[float, float]]       # op class -> (q_lo, q_hi) log offsets ("*": any class)
    mlp: NumpyMLP | None = None
    blend: dict[str, float] = field(default_factory=lambda: {"*": 0.0})  # op class -> weight of the MLP
    # op class -> weight of the analytical engine's time in the geometric blend (``a[c]`` above)
    analytical_weight: dict[str, float] = field(default_factory=lambda: {"*": 0.0})

    def analytical_weights(self, classes: Sequence[str]) -> np.ndarray:
        aw = self.analytical_weight
        return np.array([aw.get(c, aw.get("*", 0.0)) for c in classes], dtype=np.float64)

    def log_ratio(self, x: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        """Blended ``log(latency / bound)`` before the floor, one per row (``classes[i]``: row i's op class)."""
        if self.mlp is None:
            return self.trees.predict(x)
        w = np.array([self.blend.get(c, self.blend.get("*", 0.0)) for c in classes], dtype=np.float64)
        trees = self.trees.predict(x) if np.any(w < 1.0) else 0.0
        mlp = self.mlp.predict(x) if np.any(w > 0.0) else 0.0
        return (1.0 - w) * trees + w * mlp


@dataclass(frozen=True)
class OpPredictions:
    """Per-op arrays in the caller's order; ``covered[i]`` False means the model has no family for op i
    (its entries are NaN and the caller must use another model)."""

    pred_s: np.ndarray
    low_s: np.ndarray
    high_s: np.ndarray
    bound_s: np.ndarray
    covered: np.ndarray


@dataclass(frozen=True)
class LearnedKernelModel:
    """``conv_backward_groups``: the GPU groups (``dataset.GPU_GROUPS``) whose measured backward convolutions
    (``conv2d_dgrad`` / ``conv2d_wgrad`` records) were in the training data. On those GPUs the model times a
    training step's input- and weight-gradient convolutions; elsewhere it leaves them uncovered (the caller falls
    back to the roofline) rather than extrapolate: backward convolutions measured on one GPU say nothing a
    leave-one-GPU-out could check about another, and cuDNN picks other algorithms on other architectures."""

    families: dict[str, FamilyModel]
    manifest: dict[str, Any] = field(default_factory=dict)
    conv_backward_groups: tuple[str, ...] = ()

    @property
    def version(self) -> str:
        return str(self.manifest.get("npz_sha256", "unsaved"))[:12]

    def predict_ops(self, ops: Sequence[Op], device: DeviceSpec,
                    compute_dtypes: Sequence[DType | None] | None = None,
                    calibration: Calibration | None = None) -> OpPredictions:
        """Latency of each op on ``device``; ``compute_dtypes[i]`` lets fp32 storage compute as TF32.
        ``calibration``: the analytical engine's constants for the blend's analytical member (default: the
        shipped ones for the device's architecture)."""
        n = len(ops)
        dts = list(compute_dtypes) if compute_dtypes is not None else [None] * n
        for op, dt in zip(ops, dts):
            d = dt or op.dtype
            if d not in SUPPORTED_DTYPES:
                raise ConfigError(f"learned model: dtype '{d.value}' is not supported "
                                  f"(allowed: {', '.join(sorted(x.value for x in SUPPORTED_DTYPES))})")
        pred, low, high, bound = (np.full(n, np.nan) for _ in range(4))
        covered = np.zeros(n, dtype=bool)
        batches, _ = batch_features(list(ops), device, dts)
        for fam, batch in batches.items():
            fm = self.families.get(fam)
            if fm is None:
                continue
            classes = [CLASS_OF_KIND[k] for k in batch.kinds]
            ratio = np.maximum(fm.log_ratio(batch.x, classes), fm.floor)
            p = (batch.bound_s * np.exp(ratio))[batch.row]
            offsets = np.array([fm.interval.get(c, fm.interval["*"]) for c in classes])[batch.row]
            a = fm.analytical_weights(classes)[batch.row]
            if np.any(a > 0.0):
                if calibration is None:
                    calibration = load_calibration(device.architecture)
                per_row: dict[int, float] = {}  # per distinct row: ops that share a row share a shape
                analytical = np.full(len(p), np.nan)
                for j in np.flatnonzero(a > 0.0):
                    i, r = int(batch.index[j]), int(batch.row[j])
                    if r not in per_row:
                        per_row[r] = op_time(ops[i], device, calibration, dts[i] or ops[i].dtype).time_s
                    analytical[j] = per_row[r]
                p = blend_with_analytical(p, analytical, a)
            pred[batch.index], bound[batch.index] = p, batch.bound_s[batch.row]
            low[batch.index] = p * np.exp(offsets[:, 0])
            high[batch.index] = p * np.exp(offsets[:, 1])
            covered[batch.index] = True
        if gpu_group(device.id) not in self.conv_backward_groups:
            unseen = [i for i, op in enumerate(ops) if op.kind is OpKind.CONV2D and op.phase is not Phase.FORWARD]
            covered[unseen] = False
            for arr in (pred, low, high, bound):
                arr[unseen] = np.nan
        return OpPredictions(pred, low, high, bound, covered)

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, npz_path: str | Path, manifest_path: str | Path, extra_manifest: dict[str, Any]) -> dict[str, Any]:
        """Write the arrays and the manifest (with the arrays' sha256); returns the manifest."""
        import io

        from perfforge.core.files import write_atomic

        arrays: dict[str, np.ndarray] = {}
        for fam, fm in self.families.items():
            arrays.update(fm.trees.arrays(fam))
            if fm.mlp is not None:
                arrays.update(fm.mlp.arrays(fam))
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        data = buf.getvalue()
        manifest = {
            "schema": SCHEMA, "npz": Path(npz_path).name, "npz_sha256": hashlib.sha256(data).hexdigest(),
            "families": {fam: {"features": list(FEATURE_NAMES[fam]), "floor": fm.floor,
                               "interval": {k: list(v) for k, v in fm.interval.items()},
                               "trees": int(fm.trees.feature.shape[0]),
                               "mlp_layers": [int(w.shape[1]) for w in fm.mlp.weights] if fm.mlp else [],
                               "blend_mlp_weight": dict(fm.blend),
                               "blend_analytical_weight": dict(fm.analytical_weight)}
                         for fam, fm in self.families.items()},
            "conv_backward_groups": list(self.conv_backward_groups),
            **extra_manifest,
        }
        write_atomic(npz_path, data)
        write_atomic(manifest_path, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        return manifest


def _from_files(npz_bytes: bytes, manifest: dict[str, Any], where: str) -> LearnedKernelModel:
    import io

    if manifest.get("schema") != SCHEMA:
        raise WeightsMissingError(where, f"manifest schema is {manifest.get('schema')!r}, expected {SCHEMA}; {TRAIN_HINT}")
    if hashlib.sha256(npz_bytes).hexdigest() != manifest.get("npz_sha256"):
        raise WeightsMissingError(where, f"arrays do not match the manifest's sha256; {TRAIN_HINT}")
    data = np.load(io.BytesIO(npz_bytes), allow_pickle=False)
    families = {}
    for fam, meta in manifest["families"].items():
        if list(FEATURE_NAMES[fam]) != meta["features"]:
            raise WeightsMissingError(where, f"family '{fam}' was trained on other features than this perfforge "
                                             f"computes; {TRAIN_HINT}")
        mlp = NumpyMLP.from_arrays(data, fam) if NumpyMLP.has_arrays(data, fam) else None
        families[fam] = FamilyModel(fam, TreeEnsemble.from_arrays(data, fam), float(meta["floor"]),
                                    {k: (float(v[0]), float(v[1])) for k, v in meta["interval"].items()},
                                    mlp, {k: float(v) for k, v in meta.get("blend_mlp_weight", {"*": 0.0}).items()},
                                    {k: float(v) for k, v in meta.get("blend_analytical_weight", {"*": 0.0}).items()})
    return LearnedKernelModel(families, manifest, tuple(manifest.get("conv_backward_groups", ())))


MODEL_ENV = "PERFFORGE_LEARNED_MODEL"


def load_model(path: str | Path | None = None) -> LearnedKernelModel:
    """The model whose manifest JSON (beside its .npz) is at ``path``; without one, the model named by the
    ``PERFFORGE_LEARNED_MODEL`` environment variable (its manifest, or the folder `perfforge learn train --out`
    wrote), else the shipped one. Every command with ``--backend learned`` loads through here."""
    if path is None:
        chosen = os.environ.get(MODEL_ENV, "").strip()
        if not chosen:
            return _shipped()
        target = Path(chosen)
        target = target / Path(SHIPPED_MANIFEST).name if target.is_dir() else target
        try:
            stamp = target.stat().st_mtime_ns
        except OSError:
            raise WeightsMissingError(f"{target} (from {MODEL_ENV})") from None
        return _load_cached(str(target.resolve()), stamp)
    return _load_file(Path(path))


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int) -> LearnedKernelModel:
    """One parse per manifest file and version of it (the modification time keys a retrained model anew)."""
    return _load_file(Path(path))


def _load_file(manifest_path: Path) -> LearnedKernelModel:
    try:
        manifest = json.loads(manifest_path.read_text())
        npz = (manifest_path.parent / manifest["npz"]).read_bytes()
    except (OSError, ValueError, KeyError):
        raise WeightsMissingError(manifest_path) from None
    return _from_files(npz, manifest, str(manifest_path))


@lru_cache(maxsize=1)
def _shipped() -> LearnedKernelModel:
    pkg = resources.files("perfforge.engines.learned")
    where = f"perfforge/engines/learned/{SHIPPED_MANIFEST}"
    try:
        manifest = json.loads(pkg.joinpath(SHIPPED_MANIFEST).read_text())
        npz = pkg.joinpath(SHIPPED_NPZ).read_bytes()
    except (OSError, ValueError):
        raise WeightsMissingError(where) from None
    return _from_files(npz, manifest, where)
