"""Workloads: operator graphs with shapes, FLOPs and bytes, forward and backward."""

from perfforge.workload.graph import Workload
from perfforge.workload.op import Op, OpKind, Phase

__all__ = ["Op", "OpKind", "Phase", "Workload"]
