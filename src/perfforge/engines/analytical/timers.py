"""Per-op timers (``backend``) the analytical engine asks for each op's time.

``analytical`` is the roofline of ``roofline.py``; other backends (the learned kernel model in
``perfforge.engines.learned``) register here and fall back to the roofline for op kinds they do not cover,
saying so in ``info``. A timer returns one ``OpTiming`` per op, or None for an op no rule covers (the engine
reports it as unmodelled, never as zero).
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from perfforge.core.dtypes import DType
from perfforge.core.errors import UnmodelledOpError
from perfforge.core.registry import Registry
from perfforge.engines.analytical.calibration import Calibration
from perfforge.engines.analytical.roofline import OpTiming, op_time
from perfforge.system.device import DeviceSpec
from perfforge.workload.op import Op


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
