"""The ``learned`` backend of the analytical engine: learned kernel latencies, roofline fallback elsewhere."""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator, Sequence

from perfforge.core.dtypes import DType
from perfforge.engines.analytical.calibration import Calibration
from perfforge.engines.analytical.roofline import OpTiming
from perfforge.engines.analytical.timers import OP_TIMERS, roofline_or_none
from perfforge.engines.learned.model import LearnedKernelModel, load_model
from perfforge.system.device import DeviceSpec
from perfforge.workload.op import Op, OpKind, Phase

_ACTIVE: ContextVar[LearnedKernelModel | None] = ContextVar("learned_kernel_model", default=None)


@contextmanager
def using_model(model: LearnedKernelModel) -> Iterator[None]:
    """Within the block, the ``learned`` backend uses ``model`` instead of the shipped one (evaluation of a
    freshly trained model before it is saved)."""
    token = _ACTIVE.set(model)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


@OP_TIMERS.register("learned")
class LearnedTimer:
    name = "learned"

    def __init__(self, model: LearnedKernelModel | None = None) -> None:
        self._model = model

    def time_ops(self, ops: Sequence[Op], device: DeviceSpec, cal: Calibration,
                 compute_dtype: DType | None) -> tuple[list[OpTiming | None], dict[str, Any]]:
        model = self._model or _ACTIVE.get() or load_model()
        preds = model.predict_ops(ops, device, [compute_dtype] * len(ops), cal)
        out: list[OpTiming | None] = []
        fallback: Counter[str] = Counter()
        covered = preds.covered
        low = float(preds.low_s[covered].sum())
        high = float(preds.high_s[covered].sum())
        bw = device.memory_bytes_per_s
        pred_s, bound_s = preds.pred_s.tolist(), preds.bound_s.tolist()
        for i, op in enumerate(ops):
            if covered[i]:
                t, bound = pred_s[i], bound_s[i]
                memory_s = op.bytes / bw if op.bytes else 0.0
                compute_s = bound if memory_s < bound else 0.0
                out.append(OpTiming(t, compute_s, memory_s, 0.0, bound / t if t else 0.0))
                continue
            timing = roofline_or_none(op, device, cal, compute_dtype)
            out.append(timing)
            if timing is not None:
                backward_conv = op.kind is OpKind.CONV2D and op.phase is not Phase.FORWARD
                fallback[f"{op.kind.value} backward" if backward_conv else op.kind.value] += 1
                low += timing.time_s
                high += timing.time_s
        info = {
            "learned_model": model.version,
            "learned_ops": int(preds.covered.sum()),
            "fallback_ops": dict(sorted(fallback.items())),
            "fallback_note": ("ops the learned model does not cover were timed by the analytical engine: op kinds "
                              "it has no training data for, and backward convolutions on GPUs other than those "
                              "it has measured them on" if fallback else ""),
            # sums of per-op 80% intervals (errors assumed fully correlated); fallback ops add their point time
            "kernel_time_low_s": low, "kernel_time_high_s": high,
        }
        return out, info
