"""Per-op timers (``backend``) the analytical engine asks for each op's time.

``analytical`` is the roofline of ``roofline.py``; other backends (the learned kernel model in
``perfforge.engines.learned``) register here and fall back to the roofline for op kinds they do not cover,
saying so in ``info``. A timer returns one ``OpTiming`` per op, or None for an op no rule covers (the engine
reports it as unmodelled, never as zero).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol, Sequence

from perfforge.core.dtypes import DType
from perfforge.core.errors import UnmodelledOpError
from perfforge.core.registry import Registry
from perfforge.engines.analytical.calibration import Calibration
from perfforge.engines.analytical.roofline import OpTiming, op_time
from perfforge.system.device import DeviceSpec
from perfforge.workload.op import Op, OpKind


class OpTimer(Protocol):
    name: str

    def time_ops(self, ops: Sequence[Op], device: DeviceSpec, cal: Calibration,
                 compute_dtype: DType | None) -> tuple[list[OpTiming | None], dict[str, Any]]:
        """(one timing or None per op, facts about how they were timed for the result's ``extra``)."""
        ...


OP_TIMERS: Registry[type] = Registry("backend")


def roofline_or_none(op: Op, device: DeviceSpec, cal: Calibration, compute_dtype: DType | None) -> OpTiming | None:
    try:
        return op_time(op, device, cal, compute_dtype)
    except UnmodelledOpError:
        return None


@OP_TIMERS.register("analytical")
class RooflineTimer:
    name = "analytical"

    def time_ops(self, ops: Sequence[Op], device: DeviceSpec, cal: Calibration,
                 compute_dtype: DType | None) -> tuple[list[OpTiming | None], dict[str, Any]]:
        return [roofline_or_none(op, device, cal, compute_dtype) for op in ops], {}


def with_conv_layout(timings: list[OpTiming | None], ops: Sequence[Op], cal: Calibration, memory_format: str,
                     compute_dtype: DType | None) -> list[OpTiming | None]:
    """Convolution times in NCHW: each conv's (forward and backward) time divided by the calibration's
    ``conv_nchw_efficiency`` for the compute dtype, whatever backend timed it. NHWC, or a dtype without an
    entry, leaves the timings as they are."""
    eff = cal.conv_nchw_efficiency.get(DType(compute_dtype).value if compute_dtype else "", 1.0)
    if memory_format != "nchw" or eff == 1.0:
        return timings
    out: list[OpTiming | None] = []
    for op, t in zip(ops, timings):
        if t is not None and op.kind is OpKind.CONV2D:
            t = replace(t, time_s=t.time_s / eff, compute_s=t.compute_s / eff,
                        compute_efficiency=t.compute_efficiency * eff)
        out.append(t)
    return out
