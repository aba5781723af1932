"""Einsum-style problems: loop dimensions, data spaces as affine projections of those dimensions.

A data space dimension is a sum of ``coefficient * loop_index`` terms (Timeloop's ``projection``): a
convolution input row is ``Wstride*P + Wdilation*R``. The extent of a tile whose loop extents are ``t_d`` is
``sum(coef * (t_d - 1)) + 1`` along each data-space dimension, which handles stride and dilation exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from perfforge.core.errors import ConfigError
from perfforge.workload.op import Op, OpKind


@dataclass(frozen=True, slots=True)
class DataSpace:
    name: str
    projection: tuple[tuple[tuple[str, int], ...], ...]  # per data-space dim: ((loop dim, coefficient), ...)
    read_write: bool = False  # outputs (partial sums) are read-write

    def extent(self, tile: Mapping[str, int]) -> int:
        """Number of distinct elements touched by a box of loop extents ``tile``."""
        n = 1
        for terms in self.projection:
            n *= sum(c * (tile.get(d, 1) - 1) for d, c in terms) + 1
        return n

    def relevant(self, dim: str) -> bool:
        return any(d == dim for terms in self.projection for d, _ in terms)


@dataclass(frozen=True, slots=True)
class Problem:
    name: str
    dims: Mapping[str, int]
    data_spaces: tuple[DataSpace, ...]

    def __post_init__(self) -> None:
        for d, v in self.dims.items():
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"problem '{self.name}': dimension {d} must be a positive integer, got {v!r}")
        for ds in self.data_spaces:
            for terms in ds.projection:
                for d, _ in terms:
                    if d not in self.dims:
                        raise ConfigError(f"problem '{self.name}': data space {ds.name} uses unknown dimension {d} "
                                          f"(dimensions: {', '.join(self.dims)})")

    @property
    def macs(self) -> int:
        return math.prod(self.dims.values())

    def data_space(self, name: str) -> DataSpace:
        for ds in self.data_spaces:
            if ds.name == name:
                return ds
        raise ConfigError(f"unknown data space '{name}' (known: {', '.join(d.name for d in self.data_spaces)})")


def conv(*, C: int, M: int, R: int, S: int, P: int, Q: int, N: int = 1, Wstride: int = 1, Hstride: int = 1,
         Wdilation: int = 1, Hdilation: int = 1, name: str = "conv") -> Problem:
    """Timeloop's CNN_Layer: Weights[C,M,R,S], Inputs[N,C,W=Wstride*P+Wdilation*R,H=Hstride*Q+Hdilation*S],
    Outputs[N,M,Q,P]."""
    return Problem(name, {"C": C, "M": M, "R": R, "S": S, "N": N, "P": P, "Q": Q}, (
        DataSpace("Weights", ((("C", 1),), (("M", 1),), (("R", 1),), (("S", 1),))),
        DataSpace("Inputs", ((("N", 1),), (("C", 1),), (("R", Wdilation), ("P", Wstride)),
                             (("S", Hdilation), ("Q", Hstride)))),
        DataSpace("Outputs", ((("N", 1),), (("M", 1),), (("Q", 1),), (("P", 1),)), read_write=True),
    ))


def gemm(*, M: int, N: int, K: int, batch: int = 1, name: str = "gemm") -> Problem:
    """``Z[b,m,n] += A[b,m,k] * B[b,k,n]`` (batched when ``batch > 1``; attention's QK^T and PV are BMMs)."""
    dims = {"M": M, "N": N, "K": K}
    bterm: tuple[tuple[tuple[str, int], ...], ...] = ()
    if batch > 1:
        dims = {"B": batch, **dims}
        bterm = ((("B", 1),),)
    return Problem(name, dims, (
        DataSpace("A", bterm + ((("M", 1),), (("K", 1),))),
        DataSpace("B", bterm + ((("K", 1),), (("N", 1),))),
        DataSpace("Z", bterm + ((("M", 1),), (("N", 1),)), read_write=True),
    ))


def from_op(op: Op) -> Problem:
    """A problem for one layer of perfforge's workload graph (conv2d, matmul, bmm, attention pieces)."""
    a = op.attrs
    if op.kind == OpKind.CONV2D:
        if a.get("groups", 1) != 1:
            raise ConfigError(f"{op.name}: grouped convolution is not supported by the loop-nest model")
        n, _, _, _ = op.inputs[0]
        _, m, p, q = op.outputs[0]
        k = a["kernel"]
        return conv(C=a["in_ch"], M=m, R=k, S=k, P=p, Q=q, N=n, Wstride=a["stride"], Hstride=a["stride"], name=op.name)
    if op.kind in (OpKind.MATMUL, OpKind.BMM):
        return gemm(M=a["m"], N=a["n"], K=a["k"], batch=a.get("batch", 1), name=op.name)
    if op.kind == OpKind.ATTENTION:
        # QK^T piece: [B*H, Sq, D] x [B*H, D, Skv] (the PV piece has the same MAC count with K and N swapped)
        return gemm(M=a["seq_q"], N=a["seq_kv"], K=a["head_dim"], batch=a["batch"] * a["heads"], name=op.name + ".qk")
    raise ConfigError(f"{op.name}: op kind '{op.kind.value}' has no loop-nest problem (conv2d, matmul, bmm, attention)")
