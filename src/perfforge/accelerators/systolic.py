"""Systolic-array model that reproduces SCALE-Sim 3.0.0's compute cycles in closed form, vectorised over layers.

SCALE-Sim (Samajdar et al., "A Systematic Methodology for Characterizing Scalability of DNN Accelerators
using SCALE-Sim", ISPASS 2020; https://github.com/scalesim-project/scale-sim-v3) lowers a convolution to
three operand matrices -- IFMAP ``[ofmap_px, window]``, filter ``[window, filters]``, OFMAP
``[ofmap_px, filters]`` -- and folds them onto an ``R x C`` array. Each dataflow picks which GEMM dimension
goes on the rows (``Sr``), on the columns (``Sc``) and in time (``T``):

    dataflow  Sr (rows)   Sc (columns)  T (time)     demand lines per fold
    os        ofmap_px    filters       window       T + R + C - 2
    ws        window      filters       ofmap_px     (2R - 1) + T + (C - 1)
    is        window      ofmap_px      filters      (2R - 1) + T + (C - 1)

SCALE-Sim walks its demand matrices one line (cycle) at a time; with ``ceil(Sr/R) * ceil(Sc/C)`` folds
its reported "Compute cycles" equal ``folds * lines_per_fold - 1`` when the memory system does not stall
(the case for its CALC interface-bandwidth mode, which sizes DRAM bandwidth to demand). This module
evaluates those formulas with numpy over every layer at once; ``tests/accelerators`` compare them with the
real tool's output (``data/accelerators/scalesim/reference_outputs.jsonl``).

SRAM accesses follow SCALE-Sim's compute-system counters (what its BANDWIDTH_REPORT divides by cycles),
including its extra ``R + C`` OFMAP writes per fold in the output-stationary dataflow. DRAM traffic is an
analytical estimate (each operand fetched once if it fits the active half of its double-buffered SRAM,
else once per pass that re-reads it); SCALE-Sim's own DRAM counts come from a trace-driven buffer model
and are not reproduced exactly (see docs/accelerators.md for the measured difference).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from perfforge.accelerators.topology import ConvLayer
from perfforge.core.errors import ConfigError

DATAFLOWS = ("ws", "os", "is")
MAX_ARRAY_DIM = 4096
# SCALE-Sim's default double-buffered scratchpads: half of each SRAM is active (``active_buf_frac = 0.5``
# in scalesim/single_layer_sim.py) and one word is one byte (``word_size = 1``).
ACTIVE_BUFFER_FRACTION = 0.5
DEFAULT_SRAM_KIB = 64  # SCALE-Sim's example configs (configs/scale.cfg): 64 KiB per operand SRAM


def check_dataflow(dataflow: str) -> str:
    df = str(dataflow).strip().lower()
    if df not in DATAFLOWS:
        raise ConfigError(f"dataflow must be one of {', '.join(DATAFLOWS)} (weight/output/input stationary), "
                          f"got '{dataflow}'")
    return df


def parse_array(text: str | tuple[int, int]) -> tuple[int, int]:
    """``"128x128"`` (rows x columns) -> ``(128, 128)``; ConfigError naming the allowed form otherwise."""
    if isinstance(text, tuple):
        rows, cols = text
    else:
        m = re.fullmatch(r"\s*(\d+)\s*[xX*]\s*(\d+)\s*", str(text))
        if not m:
            raise ConfigError(f"array must be ROWSxCOLS with positive integers, e.g. 128x128, got '{text}'")
        rows, cols = int(m.group(1)), int(m.group(2))
    if not (1 <= rows <= MAX_ARRAY_DIM and 1 <= cols <= MAX_ARRAY_DIM):
        raise ConfigError(f"array must be ROWSxCOLS with 1..{MAX_ARRAY_DIM} each, got {rows}x{cols}")
    return rows, cols


@dataclass(frozen=True, slots=True, kw_only=True)
class SystolicArraySpec:
    rows: int
    cols: int
    dataflow: str = "os"
    ifmap_sram_bytes: int = DEFAULT_SRAM_KIB * 1024
    filter_sram_bytes: int = DEFAULT_SRAM_KIB * 1024
    ofmap_sram_bytes: int = DEFAULT_SRAM_KIB * 1024
    word_bytes: int = 1

    def __post_init__(self) -> None:
        parse_array((self.rows, self.cols))
        object.__setattr__(self, "dataflow", check_dataflow(self.dataflow))
        for f in ("ifmap_sram_bytes", "filter_sram_bytes", "ofmap_sram_bytes", "word_bytes"):
            if getattr(self, f) <= 0:
                raise ConfigError(f"{f} must be > 0, got {getattr(self, f)}")


@dataclass(frozen=True, slots=True)
class SystolicResult:
    """Per-layer arrays (numpy, one entry per layer) plus network totals."""

    names: tuple[str, ...]
    array: SystolicArraySpec
    compute_cycles: np.ndarray
    macs: np.ndarray
    folds: np.ndarray
    utilization: np.ndarray          # SCALE-Sim "Overall utilization": MACs / (cycles * R * C)
    mapping_efficiency: np.ndarray   # SCALE-Sim "Mapping efficiency": mean occupied PEs per fold / (R * C)
    ifmap_sram_reads: np.ndarray
    filter_sram_reads: np.ndarray
    ofmap_sram_writes: np.ndarray
    ifmap_dram_reads: np.ndarray
    filter_dram_reads: np.ndarray
    ofmap_dram_writes: np.ndarray

    @property
    def total_compute_cycles(self) -> int:
        return int(self.compute_cycles.sum())

    @property
    def total_utilization(self) -> float:
        return float(self.macs.sum() / (self.compute_cycles.sum() * self.array.rows * self.array.cols))

    def layer_dicts(self) -> list[dict[str, Any]]:
        out = []
        cyc = self.compute_cycles
        for i, name in enumerate(self.names):
            c = max(int(cyc[i]), 1)
            out.append({
                "layer": name, "compute_cycles": int(cyc[i]), "macs": int(self.macs[i]), "folds": int(self.folds[i]),
                "utilization": float(self.utilization[i]), "mapping_efficiency": float(self.mapping_efficiency[i]),
                "sram_reads": {"ifmap": int(self.ifmap_sram_reads[i]), "filter": int(self.filter_sram_reads[i])},
                "sram_writes": {"ofmap": int(self.ofmap_sram_writes[i])},
                "dram_words": {"ifmap": int(self.ifmap_dram_reads[i]), "filter": int(self.filter_dram_reads[i]),
                               "ofmap": int(self.ofmap_dram_writes[i])},
                "sram_words_per_cycle": {"ifmap": self.ifmap_sram_reads[i] / c, "filter": self.filter_sram_reads[i] / c,
                                         "ofmap": self.ofmap_sram_writes[i] / c},
                "dram_words_per_cycle": (self.ifmap_dram_reads[i] + self.filter_dram_reads[i]
                                         + self.ofmap_dram_writes[i]) / c,
            })
        return out

    def to_dict(self) -> dict[str, Any]:
        a = self.array
        return {
            "engine": "perfforge systolic (SCALE-Sim 3.0.0 compute-cycle model)",
            "array": f"{a.rows}x{a.cols}", "dataflow": a.dataflow, "layers": len(self.names),
            "compute_cycles": self.total_compute_cycles, "macs": int(self.macs.sum()),
            "utilization": self.total_utilization,
            "sram_reads": {"ifmap": int(self.ifmap_sram_reads.sum()), "filter": int(self.filter_sram_reads.sum())},
            "sram_writes": {"ofmap": int(self.ofmap_sram_writes.sum())},
            "dram_words": {"ifmap": int(self.ifmap_dram_reads.sum()), "filter": int(self.filter_dram_reads.sum()),
                           "ofmap": int(self.ofmap_dram_writes.sum())},
            "per_layer": self.layer_dicts(),
        }


def _ceil_div(a: np.ndarray, b: int) -> np.ndarray:
    return -(-a // b)


def simulate(layers: list[ConvLayer], array: SystolicArraySpec) -> SystolicResult:
    """Evaluate every layer on one array and dataflow (numpy over layers; no per-cycle loop)."""
    if not layers:
        raise ConfigError("no layers to simulate")
    R, C, df = array.rows, array.cols, array.dataflow
    px = np.array([lay.ofmap_px for lay in layers], dtype=np.int64)
    win = np.array([lay.window for lay in layers], dtype=np.int64)
    filt = np.array([lay.filters for lay in layers], dtype=np.int64)
    ifmap_words = np.array([lay.ifmap_h * lay.ifmap_w * lay.channels for lay in layers], dtype=np.int64)
    if df == "os":
        sr, sc, t = px, filt, win
        per_fold = t + R + C - 2
    elif df == "ws":
        sr, sc, t = win, filt, px
        per_fold = (2 * R - 1) + t + (C - 1)
    else:  # "is"
        sr, sc, t = win, px, filt
        per_fold = (2 * R - 1) + t + (C - 1)
    fr, fc = _ceil_div(sr, R), _ceil_div(sc, C)
    folds = fr * fc
    cycles = folds * per_fold - 1
    macs = px * win * filt
    util = macs / (cycles * R * C)
    # mean over folds of (rows used * cols used) / (R*C) = Sr*Sc / (folds * R * C)
    mapping_eff = (sr * sc) / (folds * R * C)

    # SRAM traffic as SCALE-Sim's compute system counts it (words)
    if df == "os":
        ifmap_sram = t * sr * fc                  # every column fold re-streams its rows' windows
        filter_sram = t * sc * fr                 # every row fold re-streams the filters
        ofmap_sram = sr * sc + folds * (R + C)    # SCALE-Sim adds R + C per fold here (as counted by the tool)
    elif df == "ws":
        ifmap_sram = t * sr * fc
        filter_sram = sr * sc
        ofmap_sram = t * sc * fr                  # one partial-sum write per row fold
    else:
        ifmap_sram = sr * sc
        filter_sram = t * sr * fc
        ofmap_sram = t * sc * fr

    # DRAM: an operand that fits the active half of its SRAM is fetched once; otherwise once per re-read pass
    wb = array.word_bytes
    cap_if = array.ifmap_sram_bytes * ACTIVE_BUFFER_FRACTION / wb
    cap_f = array.filter_sram_bytes * ACTIVE_BUFFER_FRACTION / wb
    filter_words = win * filt
    ifmap_dram = np.where(ifmap_words <= cap_if, np.minimum(ifmap_words, ifmap_sram), ifmap_sram)
    filter_dram = np.where(filter_words <= cap_f, filter_words, filter_sram)
    ofmap_dram = px * filt
    return SystolicResult(
        names=tuple(lay.name for lay in layers), array=array, compute_cycles=cycles, macs=macs, folds=folds,
        utilization=util, mapping_efficiency=mapping_eff, ifmap_sram_reads=ifmap_sram, filter_sram_reads=filter_sram,
        ofmap_sram_writes=ofmap_sram, ifmap_dram_reads=ifmap_dram, filter_dram_reads=filter_dram,
        ofmap_dram_writes=ofmap_dram,
    )
