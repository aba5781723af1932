"""NeuSight's GEMM columns: N is the reduction, K the output width (torch.bmm([B,M,N],[B,N,K]) and
torch.nn.Linear(N, K) in its collect.py). Checked against the launch grids its own CSVs record, then against both
readers of that naming (the kernel-record reader and ``op-latency``'s op builder)."""

from __future__ import annotations

import csv
import gzip
import math
import re
from pathlib import Path

import pytest

from perfforge.engines.learned.ops import build_op
from perfforge.evaluation.measured import kernel_op
from perfforge.evaluation.neusight import _params, read_kernels

KERNELS = Path(__file__).resolve().parents[2] / "data/ground_truth/neusight/kernels"
_TILE = re.compile(r"(?:sgemm_|tilesize)(\d+)x(\d+)")  # cuBLAS sgemm_128x64, Hopper xmma tilesize128x128x8


def _grid_tiles(rows: int, cols: int, tile: tuple[int, int], grid: tuple[int, int]) -> bool:
    """Whether a 2-D launch grid covers a rows x cols output with the kernel's tile, either orientation."""
    a, b = tile
    return any(sorted((math.ceil(rows / t1), math.ceil(cols / t2))) == sorted(grid) for t1, t2 in ((a, b), (b, a)))


@pytest.mark.parametrize("path", [p for op in ("bmm", "linear") for p in sorted((KERNELS / op).glob("*.csv.gz"))], ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_launch_grids_tile_m_by_k(path):
    told = m_by_k = 0
    with gzip.open(path, "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            tile = _TILE.search(row["Kernel Name"])
            if not tile:
                continue
            m, n, k = int(row["M"]), int(row["N"]), int(row["K"])
            grid = (int(row["Grid x"]), int(row["Grid y"]))
            tile_mn = (int(tile.group(1)), int(tile.group(2)))
            by_k, by_n = _grid_tiles(m, k, tile_mn, grid), _grid_tiles(m, n, tile_mn, grid)
            if by_k != by_n:  # rows whose N and K give different grids tell the two apart
                told += 1
                m_by_k += by_k
    assert told >= 50 and m_by_k >= 0.99 * told, (told, m_by_k)


def test_readers_take_n_as_the_reduction():
    row = {"B": "3", "M": "40", "N": "1280", "K": "50257"}
    bmm, _ = build_op("bmm", {"B": 3, "M": 40, "N": 1280, "K": 50257}, "fp32")
    linear, _ = build_op("linear", {"B": 3, "M": 40, "N": 1280, "K": 50257}, "fp32")
    assert (bmm.attrs["m"], bmm.attrs["n"], bmm.attrs["k"]) == (40, 50257, 1280)
    assert bmm.outputs == ((3, 40, 50257),)
    assert (linear.attrs["m"], linear.attrs["n"], linear.attrs["k"]) == (120, 50257, 1280)
    assert linear.params == 1280 * 50257 + 50257  # nn.Linear(N, K): weight K x N, bias K
    assert _params("bmm", row) == {"b": 3, "m": 40, "n": 50257, "k": 1280}
    assert _params("linear", row) == {"m": 120, "n": 50257, "k": 1280, "bias": True}


def test_kernel_records_build_the_same_ops_as_op_latency():
    """The training reader (records -> ``kernel_op``) and ``op-latency``'s CSV reader see one CSV row alike."""
    recs = read_kernels(KERNELS.parent, ops=["bmm", "linear"], per_file=2)
    assert len(recs) >= 20
    for rec in recs:
        _, op_dir, stem, index = rec["key"].split("/")
        with gzip.open(KERNELS / op_dir / f"{stem}.gz", "rt", newline="") as fh:
            row = next(r for i, r in enumerate(csv.DictReader(fh)) if i == int(index))
        built, _ = build_op(op_dir, {c: int(row[c]) for c in "BMNK"}, "fp32")
        op = kernel_op(rec)
        assert (built.attrs["m"], built.attrs["n"], built.attrs["k"]) == (op.attrs["m"], op.attrs["n"], op.attrs["k"])
        assert op.attrs["n"] == int(row["K"]) and op.attrs["k"] == int(row["N"])
        assert built.flops == op.flops
