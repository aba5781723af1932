"""Convolution/GEMM layers in SCALE-Sim's topology semantics, from perfforge's graph or a SCALE-Sim CSV.

SCALE-Sim 3.0.0 (``scalesim/topology_utils.py``) reads one row per layer: name, IFMAP height, IFMAP width,
filter height, filter width, channels, number of filters, stride, each followed by a comma (the field after
the last comma is dropped). It applies no padding and rounds the output size up: ``ofmap = ceil((ifmap - filter + stride) / stride)``
(``topology_utils.py`` ``calc_hyper_params``), which is one more than PyTorch's ``(ifmap - filter) // stride + 1``
whenever ``ifmap - filter`` is not a multiple of the stride (the real tool's behaviour, checked in the tests). A layer whose
name contains ``DP`` is depthwise and is expanded into one single-channel layer per channel.

``from_workload`` turns each convolution of a perfforge workload into a row whose IFMAP is the part of the
padded input the convolution reads, ``(ofmap - 1) * stride + filter`` (``H + 2*padding`` for stride 1), so that
both rounding rules give the real layer's ofmap size and MAC count; fully connected layers become
1x1 convolutions on a 1x1 input (SCALE-Sim's own convention for FC layers).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from perfforge.core.errors import ConfigError
from perfforge.workload.graph import Workload
from perfforge.workload.op import OpKind, Phase

CSV_HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,"


@dataclass(frozen=True, slots=True)
class ConvLayer:
    """One SCALE-Sim topology row (no padding, square stride)."""

    name: str
    ifmap_h: int
    ifmap_w: int
    filter_h: int
    filter_w: int
    channels: int
    filters: int
    stride: int = 1

    def __post_init__(self) -> None:
        for field in ("ifmap_h", "ifmap_w", "filter_h", "filter_w", "channels", "filters", "stride"):
            v = getattr(self, field)
            if not isinstance(v, int) or v <= 0:
                raise ConfigError(f"layer '{self.name}': {field} must be a positive integer, got {v!r}")
        if self.filter_h > self.ifmap_h or self.filter_w > self.ifmap_w:
            raise ConfigError(f"layer '{self.name}': filter {self.filter_h}x{self.filter_w} larger than "
                              f"ifmap {self.ifmap_h}x{self.ifmap_w}")

    @property
    def ofmap_h(self) -> int:
        return -(-(self.ifmap_h - self.filter_h + self.stride) // self.stride)  # SCALE-Sim rounds up

    @property
    def ofmap_w(self) -> int:
        return -(-(self.ifmap_w - self.filter_w + self.stride) // self.stride)

    @property
    def ofmap_px(self) -> int:
        return self.ofmap_h * self.ofmap_w

    @property
    def window(self) -> int:
        """Elements of one convolution window (the GEMM K): filter_h * filter_w * channels."""
        return self.filter_h * self.filter_w * self.channels

    @property
    def macs(self) -> int:
        return self.ofmap_px * self.window * self.filters

    def csv_row(self) -> str:
        return (f"{self.name},{self.ifmap_h},{self.ifmap_w},{self.filter_h},{self.filter_w},"
                f"{self.channels},{self.filters},{self.stride},")


def to_csv(layers: list[ConvLayer]) -> str:
    return "\n".join([CSV_HEADER, *(layer.csv_row() for layer in layers)]) + "\n"


def read_csv_text(text: str, where: str = "topology") -> list[ConvLayer]:
    """Parse a SCALE-Sim conv topology CSV (header row first; trailing commas as SCALE-Sim writes them)."""
    layers: list[ConvLayer] = []
    rows = list(csv.reader(io.StringIO(text)))
    for lineno, row in enumerate(rows[1:], start=2):
        cells = [c.strip() for c in row]
        while cells and cells[-1] == "":
            cells.pop()
        if not cells:
            continue
        if len(cells) < 8:
            raise ConfigError(f"{where}: line {lineno}: expected 8 fields (name, ifmap h, ifmap w, filter h, "
                              f"filter w, channels, filters, stride), got {len(cells)}")
        try:
            nums = [int(c) for c in cells[1:8]]
        except ValueError:
            raise ConfigError(f"{where}: line {lineno}: fields 2-8 must be integers, got {cells[1:8]}") from None
        name = cells[0]
        if "DP" in name:  # SCALE-Sim's depthwise convention: one single-channel layer per channel
            for ch in range(nums[4]):
                layers.append(ConvLayer(f"{name}Channel_{ch}", nums[0], nums[1], nums[2], nums[3], 1, nums[5], nums[6]))
        else:
            layers.append(ConvLayer(name, *nums))
    if not layers:
        raise ConfigError(f"{where}: no layers")
    return layers


def read_csv(path: str | Path) -> list[ConvLayer]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"topology CSV not found: {p}") from None
    return read_csv_text(text, str(p))


def from_workload(workload: Workload) -> list[ConvLayer]:
    """Forward convolutions and linear layers of a workload as SCALE-Sim rows (batch folded into the ofmap).

    Grouped convolutions and batch > 1 have no SCALE-Sim row: they raise ConfigError rather than being
    silently approximated.
    """
    layers: list[ConvLayer] = []
    for op in workload.ops:
        if op.phase != Phase.FORWARD:
            continue
        a = op.attrs
        if op.kind == OpKind.CONV2D:
            if a.get("groups", 1) != 1:
                raise ConfigError(f"{op.name}: grouped convolution has no SCALE-Sim topology row")
            if op.inputs[0][0] != 1:
                raise ConfigError(f"{op.name}: SCALE-Sim topologies describe batch 1; got batch {op.inputs[0][0]}")
            _, _, ho, wo = op.outputs[0]
            k, s = a["kernel"], a["stride"]
            layers.append(ConvLayer(op.name, (ho - 1) * s + k, (wo - 1) * s + k, k, k, a["in_ch"], a["n"], s))
        elif op.kind in (OpKind.MATMUL, OpKind.BMM):
            # GEMM [m,k] x [k,n] as a 1x1 conv: ofmap pixels = m, window = k, filters = n
            m, k, n = a["m"], a["k"], a["n"]
            for b in range(a.get("batch", 1)):
                suffix = f"[{b}]" if a.get("batch", 1) > 1 else ""
                layers.append(ConvLayer(op.name + suffix, m, 1, 1, 1, k, n, 1))
    if not layers:
        raise ConfigError(f"workload '{workload.name}' has no convolution or matmul layers")
    return layers
