"""Shape-aware efficiency: what fraction of peak compute or bandwidth one kernel reaches.

GEMM model (in the spirit of NeuSight's tile/wave view and cuBLAS's tile heuristics): the output is cut
into tiles; tiles run in waves over the SMs, so a partial last wave idles SMs (wave quantisation); tiles
overhanging the matrix edge compute padding; small K cannot amortise the main loop's prologue; smaller
tiles reuse less data. A library picks the best tile, and splits K when too few tiles fill the GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from perfforge.engines.analytical.calibration import Calibration


@dataclass(frozen=True, slots=True)
class GemmEfficiency:
    efficiency: float
    tile: tuple[int, int]
    waves: int
    split_k: int


def gemm_efficiency(m: int, n: int, k: int, batch: int, sms: int, cal: Calibration) -> GemmEfficiency:
    """Best predicted fraction of peak over the calibrated tile shapes (and split-K factors)."""
    tiles = tuple((int(tm), int(tn), float(cal.tile_efficiency.get(f"{tm}x{tn}", 1.0))) for tm, tn in cal.tile_shapes)
    return _gemm_efficiency(m, n, k, batch, sms, tiles, cal.gemm_max_efficiency, cal.k_half)


@lru_cache(maxsize=65536)
def _gemm_efficiency(m: int, n: int, k: int, batch: int, sms: int, tile_shapes: tuple[tuple[int, int, float], ...],
                     max_eff: float, k_half: float) -> GemmEfficiency:
    best = GemmEfficiency(0.0, (0, 0), 0, 1)
    for tm, tn, tile_factor in tile_shapes:
        tiles_m, tiles_n = math.ceil(m / tm), math.ceil(n / tn)
        tiles = batch * tiles_m * tiles_n
        pad = (m * n) / (tiles_m * tm * tiles_n * tn)
        # split K only when the tiles leave most SMs idle and K is long enough to share
        max_split = max(1, min(sms // max(tiles, 1), k // 256)) if tiles < sms else 1
        for split in sorted({1, max_split}):
            work = tiles * split
            waves = math.ceil(work / sms)
            wave = work / (waves * sms)
            k_part = k / split
            k_factor = k_part / (k_part + k_half)
            # partial sums of a split-K GEMM are reduced through memory: charge one extra K-slice's worth
            split_penalty = 1.0 if split == 1 else split / (split + 1)
            eff = max_eff * tile_factor * pad * wave * k_factor * split_penalty
            if eff > best.efficiency:
                best = GemmEfficiency(eff, (tm, tn), waves, split)
    return best


def memory_efficiency(nbytes: float, cal: Calibration) -> float:
    """Streaming efficiency of a kernel that moves ``nbytes``: small transfers cannot fill the memory pipes."""
    if nbytes <= 0:
        return cal.memory_max_efficiency
    return cal.memory_max_efficiency * nbytes / (nbytes + cal.memory_half_bytes)


def attention_efficiency(seq_q: int, seq_kv: int, head_dim: int, group: int, backward: bool, cal: Calibration) -> float:
    """Fused attention reaches its ceiling only for long sequences; short ones behave like small GEMMs.

    ``group`` query heads share one K/V head; decode kernels (flash-decoding) pack them into the rows of
    one tile, so a GQA decode step has ``seq_q * group`` rows per K/V head.
    """
    base = cal.attention_backward_efficiency if backward else cal.attention_efficiency
    rows_n = seq_q * group if seq_q == 1 else seq_q
    rows = rows_n / (rows_n + 128)          # query tiles of 128 rows
    cols = seq_kv / (seq_kv + cal.k_half)   # inner loop over keys
    dim = head_dim / (head_dim + 32)        # narrow heads waste tensor-core width
    # normalised so that head_dim 128 keeps the calibrated ceiling
    return min(base, base * rows * cols * dim / (128 / 160))
