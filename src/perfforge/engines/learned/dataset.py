"""Training samples for the learned kernel model: NeuSight's FP32 kernels, Vidur's FP16 LLM operators and
the project's own H100/H200 profiles, each mapped to a perfforge ``Op`` on a catalog device.

A sample keeps its GPU *group* (the chip: all A100 boards are one group) so that leave-one-GPU-out never
trains on a sibling board of the held-out GPU, and its *op class* (BMM, FC, CONV, NORM, SOFTMAX, ELEMENTWISE)
for per-class error reports. Sampling is deterministic: evenly spaced rows of each file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError
from perfforge.engines.learned.features import FAMILIES, op_features
from perfforge.evaluation.measured import (
    kernel_op,
    measurement_files,
    read_measurements,
    record_dtypes,
    resolve_device_id,
)
from perfforge.evaluation.neusight import TEST_ONLY_KERNELS, is_test_kernel
from perfforge.evaluation.neusight import read_kernels as read_neusight_kernels
from perfforge.evaluation.vidur import read_mlp_profiles
from perfforge.system.catalog import get_device

# Catalog id -> GPU group (chip) for leave-one-GPU-out. Every board of a chip shares its group, including boards
# with no data yet, so that a user's measurements of one never train the fold that holds out its sibling (the
# A10G is a GA102, the A40's chip). Any other device is a group of its own (``gpu_group``).
GPU_GROUPS = {
    "p4": "P4", "t4": "T4", "p100-pcie-16gb": "P100", "v100-pcie-32gb": "V100", "v100-sxm2-16gb": "V100",
    "v100-pcie-16gb": "V100", "v100-sxm2-32gb": "V100",
    "a100-pcie-40gb": "A100", "a100-pcie-80gb": "A100", "a100-sxm4-80gb": "A100", "a100-sxm4-40gb": "A100",
    "a40": "A40", "a10g": "A40", "h100-sxm5-80gb": "H100", "h100-pcie-80gb": "H100", "h200-sxm-141gb": "H200",
    "l4": "L4",
}
OP_CLASSES = ("BMM", "FC", "CONV", "NORM", "SOFTMAX", "ELEMENTWISE")
_CLASS_OF_OP = {"bmm": "BMM", "linear": "FC", "matmul": "FC", "gemm_peak": "FC", "conv2d": "CONV",
                "conv2d_dgrad": "CONV", "conv2d_wgrad": "CONV", "layer_norm": "NORM", "rms_norm": "NORM",
                "softmax": "SOFTMAX"}
# Backward convolutions measured by `perfforge profile` (input and weight gradients of a conv2d)
CONV_BACKWARD_OPS = ("conv2d_dgrad", "conv2d_wgrad")
# Rows read per (op, GPU) file: GEMM-like files are large and carry the most information.
NEUSIGHT_PER_FILE = {"bmm": 2500, "linear": 2000, "conv": 1500}
NEUSIGHT_VECTOR_PER_FILE = 350
# NeuSight's test-only kernels (``perfforge.evaluation.neusight.TEST_ONLY_KERNELS``) per GPU and op class:
# scored in every evaluation, never fitted
NEUSIGHT_TEST_ONLY: dict[str, frozenset[str] | None] = {
    dev: None if ops is None else frozenset(_CLASS_OF_OP[o] for o in ops) for dev, ops in TEST_ONLY_KERNELS.items()}
# The GPU group of test-only rows whose board shares a group with training data: held out on their own
TEST_ONLY_GROUPS = {"a100-pcie-80gb": "A100-80"}
VIDUR_PER_FILE = 150


def is_test_only(source: np.ndarray, device: np.ndarray, op_class: np.ndarray) -> np.ndarray:
    """Rows of NeuSight's test-set kernels that ``NEUSIGHT_TEST_ONLY`` keeps out of every fit."""
    out = np.zeros(len(source), dtype=bool)
    for dev, classes in NEUSIGHT_TEST_ONLY.items():
        m = (source == "neusight") & (device == dev)
        out |= m if classes is None else m & np.isin(op_class, list(classes))
    return out


def op_class(record_op: str) -> str:
    return _CLASS_OF_OP.get(record_op, "ELEMENTWISE")


@dataclass
class Samples:
    """Samples of one family, as parallel arrays."""

    family: str
    x: np.ndarray            # features
    bound_s: np.ndarray      # roofline bound
    latency_s: np.ndarray    # measured
    group: np.ndarray        # GPU group (str)
    device: np.ndarray       # catalog id (str)
    op_class: np.ndarray     # str
    source: np.ndarray       # neusight | vidur | measured
    dtype: np.ndarray        # compute dtype (str)
    analytical_s: np.ndarray  # the analytical engine's roofline with its shipped calibration (a baseline)
    # the same with the default block's priors on every architecture: no constant fitted on any GPU's kernels.
    # The analytical member of the learned blend on a held-out GPU (``train.FoldResult``)
    analytical_priors_s: np.ndarray

    @property
    def trainable(self) -> np.ndarray:
        """Rows a learner may fit: all but NeuSight's test kernels of ``NEUSIGHT_TEST_ONLY`` GPUs, which are
        only ever scored."""
        return ~is_test_only(self.source, self.device, self.op_class)

    @property
    def y(self) -> np.ndarray:
        """Training target: log(latency / roofline bound)."""
        return np.log(self.latency_s / self.bound_s)

    def subset(self, mask: np.ndarray) -> "Samples":
        return Samples(self.family, *(getattr(self, f)[mask] for f in
                                      ("x", "bound_s", "latency_s", "group", "device", "op_class", "source", "dtype",
                                       "analytical_s", "analytical_priors_s")))

    def __len__(self) -> int:
        return len(self.latency_s)


def _source_of(rec: dict[str, Any]) -> str:
    group = rec.get("group", "")
    return group if group in ("neusight", "vidur") else "measured"


def samples_from_records(records: Iterable[dict[str, Any]]) -> dict[str, Samples]:
    """Kernel records (any of the three sources) -> samples per family; unmappable records are skipped."""
    from perfforge.engines.analytical.calibration import load_calibration, priors_calibration
    from perfforge.engines.analytical.roofline import op_time

    cols: dict[str, dict[str, list[Any]]] = {f: {k: [] for k in ("x", "bound_s", "latency_s", "group", "device",
                                                               "op_class", "source", "dtype", "analytical_s",
                                                               "analytical_priors_s")}
                                             for f in FAMILIES}
    devices: dict[str, Any] = {}
    cals: dict[str, Any] = {}
    priors = priors_calibration()
    for rec, _, dev_id in _timed_kernels(records):
        if dev_id is None:
            continue  # reported by ``unresolved_devices``
        op = kernel_op(rec)
        if op is None:
            continue
        compute = record_dtypes(rec)[1]
        if dev_id not in devices:
            devices[dev_id] = get_device(dev_id)
            cals[dev_id] = load_calibration(devices[dev_id].architecture)
        try:
            family, x, bound = op_features(op, devices[dev_id], compute)
        except KeyError:
            continue  # op kind outside the model's families (attention, embedding)
        c = cols[family]
        cls, src = op_class(rec["op"]), _source_of(rec)
        group = gpu_group(dev_id)
        if dev_id in TEST_ONLY_GROUPS and src == "neusight" and is_test_kernel(dev_id, rec["op"]):
            group = TEST_ONLY_GROUPS[dev_id]
        for k, v in (("x", x), ("bound_s", bound), ("latency_s", float(rec["latency_s"])),
                     ("group", group), ("device", dev_id), ("op_class", cls),
                     ("source", src), ("dtype", compute.value),
                     ("analytical_s", op_time(op, devices[dev_id], cals[dev_id], compute).time_s),
                     ("analytical_priors_s", op_time(op, devices[dev_id], priors, compute).time_s)):
            c[k].append(v)
    out = {}
    for f, c in cols.items():
        if not c["x"]:
            continue
        out[f] = Samples(f, np.vstack(c["x"]), *(np.asarray(c[k]) for k in
                                                  ("bound_s", "latency_s", "group", "device", "op_class", "source",
                                                   "dtype", "analytical_s", "analytical_priors_s")))
    return out


def gpu_group(dev_id: str) -> str:
    """The GPU group (chip) of a catalog id; a device outside ``GPU_GROUPS`` (one a user describes and measures)
    is a group of its own."""
    return GPU_GROUPS.get(dev_id, dev_id)


def _timed_kernels(records: Iterable[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], str, str | None]]:
    """(record, device name, catalog id or None) for every kernel record with a latency; each device name is
    resolved once (``measured.resolve_device_id``)."""
    ids: dict[str, str | None] = {}
    for rec in records:
        if rec.get("kind") != "kernel" or not rec.get("latency_s"):
            continue
        name = rec.get("device", {}).get("name", "")
        if name not in ids:
            ids[name] = resolve_device_id(name)
        yield rec, name, ids[name]


def unresolved_devices(records: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Kernel records per device name that no catalog device matches (``measured.resolve_device_id``): they
    cannot be trained on, and the commands that load records say so."""
    return dict(Counter(name for _, name, dev_id in _timed_kernels(records) if dev_id is None))


def conv_backward_groups(records: Iterable[dict[str, Any]]) -> tuple[str, ...]:
    """The GPU groups whose measured backward convolutions (``conv2d_dgrad`` / ``conv2d_wgrad``) are in
    ``records``."""
    return tuple(sorted({gpu_group(dev_id) for rec, _, dev_id in _timed_kernels(records)
                         if dev_id and rec.get("op") in CONV_BACKWARD_OPS}))


def load_records(root: str | Path, *, scale: float = 1.0, extra: Iterable[str | Path] = ()) -> list[dict[str, Any]]:
    """Every training record under ``root`` (the repository's ``data/ground_truth``), plus the measurements in
    ``extra`` (files or ``perfforge profile`` output folders: a user's own GPU). ``scale`` < 1 reads
    proportionally fewer rows per file (tests train on a tiny subset)."""
    root = Path(root)
    extra_files = measurement_files(extra)  # a bad path fails before any reading
    if not (root / "neusight").is_dir():
        raise ConfigError(f"ground-truth folder not found or incomplete: {root} (expected neusight/, vidur/, measured/)")
    n = lambda k: max(2, int(k * scale))  # noqa: E731
    records: list[dict[str, Any]] = []
    for op, per in NEUSIGHT_PER_FILE.items():
        records += read_neusight_kernels(root / "neusight", ops=[op], per_file=n(per))
    vector_ops = ["add", "addu", "div", "divu", "gelu", "ln", "mul", "mulu", "pow", "powu", "relu", "softmax", "tanh"]
    records += read_neusight_kernels(root / "neusight", ops=vector_ops, per_file=n(NEUSIGHT_VECTOR_PER_FILE))
    if (root / "vidur").is_dir():
        records += read_mlp_profiles(root / "vidur", per_file=n(VIDUR_PER_FILE))
    paths = sorted((root / "measured").glob("*/measurements.jsonl.gz"))
    step = max(1, round(1 / scale)) if scale < 1 else 1
    committed = [rec for path in paths for rec in read_measurements(path)[::step]]
    # a user's own runs are merged among themselves only: the repository's runs of the same GPU model must not
    # outvote the board the user measured
    repository = {q.resolve() for q in paths}
    own = [rec for path in extra_files if path.resolve() not in repository for rec in read_measurements(path)[::step]]
    return records + median_over_runs(committed) + median_over_runs(own)


def median_over_runs(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per kernel case and GPU model: the median latency of every run that measured it.

    Why: the same case measured on several boards or machines of one GPU model is one fact about that GPU,
    not several samples; and one run's outliers (a host too slow to keep a 10 us kernel's queue fed, a clock
    transient) are outvoted once three runs agree. Records other than kernels pass through unchanged; the
    kept record is the first run's, with ``latency_s`` replaced and ``extra["runs"]`` set to the run count."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    out: list[dict[str, Any]] = []
    for rec in records:
        if rec.get("kind") != "kernel" or not rec.get("key"):
            out.append(rec)
            continue
        name = (rec.get("device") or {}).get("name", "")
        groups.setdefault((name, rec["key"]), []).append(rec)
    for recs in groups.values():
        if len(recs) == 1:
            out.append(recs[0])
            continue
        first = recs[0]
        out.append({**first, "latency_s": float(np.median([r["latency_s"] for r in recs])),
                    "extra": {**(first.get("extra") or {}), "runs": len(recs)}})
    return out


def describe(samples: dict[str, Samples]) -> dict[str, Any]:
    """Counts per family, source and GPU group (written into the model manifest)."""
    out: dict[str, Any] = {}
    for fam, s in samples.items():
        out[fam] = {"rows": len(s),
                    "by_source": {k: int(v) for k, v in zip(*np.unique(s.source, return_counts=True))},
                    "by_group": {k: int(v) for k, v in zip(*np.unique(s.group, return_counts=True))}}
    return out


DTYPES_SUPPORTED = (DType.FP32, DType.TF32, DType.FP16, DType.BF16)
