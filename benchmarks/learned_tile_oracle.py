"""Does knowing which GEMM kernel a GPU launched fix the learned model's per-kernel error on a GPU it never saw?

An experiment behind `docs/learned.md` ("Why per kernel is hard"), not a timing. NeuSight's FP32 kernel files record
the name of the kernel each shape launched (``ampere_sgemm_128x128_nn``, ``volta_sgemm_64x64_nn``, ...), so its
output tile. Over NeuSight's GEMMs alone (its eight GPU groups), gradient-boosted trees with the shipped settings
are fitted leave-one-GPU-out three ways:

- the shipped features (tile/wave features of candidate library tiles, GPU datasheet figures);
- the same plus wave features of the tile the held-out GPU *actually* launched (an oracle: it reads the held-out
  GPU's own profiles);
- the same plus the tile of the nearest training row (shape and GPU features), NeuSight's own way of choosing a
  tile for a GPU it has not seen (`neusight/Model/meta.py`, `get_tile`, in sitar-lab/NeuSight).

Each prints the mean MAPE over held-out GPUs and, per GPU, MAPE / MAPE with that GPU's own median error removed.

    python benchmarks/learned_tile_oracle.py bmm      # about 20 s on two cores
    python benchmarks/learned_tile_oracle.py linear
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.neighbors import KNeighborsClassifier

from perfforge.engines.learned.dataset import Samples, samples_from_records
from perfforge.engines.learned.features import tile_features
from perfforge.engines.learned.train import GBDT_PARAMS, SEED, group_weights
from perfforge.evaluation.measured import resolve_device_id
from perfforge.evaluation.neusight import read_kernels
from perfforge.system.catalog import get_device

ROOT = Path(__file__).resolve().parents[1] / "data/ground_truth/neusight"
TILE_PATTERNS = (r"tilesize(\d+)x(\d+)x", r"sgemm_(\d+)x(\d+)_", r"sgemm_(\d+)x(\d+)x\d+_", r"_(\d+)x(\d+)_")


def launched_tile(kernel_name: str) -> tuple[int, int, bool]:
    """(tile rows, tile columns, split inside the CTA) from a cuBLAS/CUTLASS kernel name."""
    for pattern in TILE_PATTERNS:
        m = re.search(pattern, kernel_name)
        if m:
            return int(m.group(1)), int(m.group(2)), "sliced" in kernel_name
    raise ValueError(f"no tile in kernel name {kernel_name!r}")


def launched_tile_features(params: dict, tile: tuple[int, int, bool], sms: int) -> list[float]:
    """The model's own tile/wave features (``features.tile_features``) of the launched tile over the output
    (m x n; NeuSight's M x K), in both orientations, plus its area and whether it splits inside the CTA."""
    a, c, sliced = tile
    return [*tile_features(params["m"], params["n"], params.get("b", 1), sms, tiles=((a, c), (c, a))),
            np.log2(a * c), float(sliced)]


def fit_predict(s: Samples, x: np.ndarray, train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    model = HistGradientBoostingRegressor(loss="squared_error", random_state=SEED, early_stopping=False, **GBDT_PARAMS)
    model.fit(x[train], s.y[train], sample_weight=group_weights(s.subset(train)))
    return model.predict(x_test)


def main(op: str) -> None:
    records = read_kernels(ROOT, ops=[op], per_file=2500)
    s = samples_from_records(records)["gemm"]
    assert len(s) == len(records), "every NeuSight GEMM record maps to a sample, in order"
    devices = {r["device"]["name"]: get_device(resolve_device_id(r["device"]["name"])) for r in records}
    tiles = [launched_tile(r["extra"]["kernel_name"]) for r in records]
    actual = np.array([launched_tile_features(r["params"], t, devices[r["device"]["name"]].sms) for r, t in zip(records, tiles)])
    labels = np.array([f"{a}x{c}|{int(sl)}" for a, c, sl in tiles])
    near = np.array([[np.log2(r["params"].get("b", 1)), np.log2(r["params"]["m"]), np.log2(r["params"]["n"]),
                      np.log2(r["params"]["k"]), np.log2(d.sms), np.log2(d.memory_bytes_per_s), np.log2(d.l2_bytes)]
                     for r in records for d in [devices[r["device"]["name"]]]])
    near = (near - near.mean(0)) / np.where(near.std(0) > 0, near.std(0), 1.0)
    with_actual = np.hstack([s.x, actual])
    results: dict[str, dict[str, tuple[float, float]]] = {"shipped features": {}, "+ launched tile (oracle)": {},
                                                           "+ nearest training row's tile": {}}
    for g in sorted(set(s.group)):
        train, test = (s.group != g) & s.trainable, s.group == g
        guess = KNeighborsClassifier(n_neighbors=1).fit(near[train], labels[train]).predict(near[test])
        guessed = np.array([
            launched_tile_features(records[i]["params"], (*map(int, lab.split("|")[0].split("x")), lab.endswith("|1")),
                                   devices[records[i]["device"]["name"]].sms)
            for i, lab in zip(np.where(test)[0], guess)])
        for name, x, x_test in (("shipped features", s.x, s.x[test]),
                                ("+ launched tile (oracle)", with_actual, with_actual[test]),
                                ("+ nearest training row's tile", with_actual, np.hstack([s.x[test], guessed]))):
            pred = s.bound_s[test] * np.exp(fit_predict(s, x, train, x_test))
            meas = s.latency_s[test]
            rescaled = pred * np.exp(np.median(np.log(meas / pred)))
            results[name][g] = (100 * np.mean(np.abs(pred / meas - 1)), 100 * np.mean(np.abs(rescaled / meas - 1)))
        print(f"{g}: the nearest training row's tile is the launched one for {100 * np.mean(guess == labels[test]):.0f}%"
              " of its kernels", flush=True)
    print(f"\n{op}, trees, leave-one-GPU-out over NeuSight's GPU groups: mean MAPE (own median error removed)")
    for name, per_gpu in results.items():
        mean = np.mean([v[0] for v in per_gpu.values()])
        mean_o = np.mean([v[1] for v in per_gpu.values()])
        print(f"  {name:30s} {mean:5.1f}% ({mean_o:4.1f}%) | "
              + " ".join(f"{g} {v[0]:.1f}/{v[1]:.1f}" for g, v in per_gpu.items()))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bmm")
