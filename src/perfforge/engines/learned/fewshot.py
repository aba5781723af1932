"""Few-shot adaptation to a new GPU: how much do a few measured kernels of that GPU help the learned model?

Leave-one-GPU-out (``evaluate.py``) asks how well the model predicts a GPU it has never seen. Per kernel the
answer is about 20% for GEMMs. For BMMs most of that is how each chip's libraries treat each shape, which does
not carry over from other chips; for linear layers it is mostly how far below its datasheet the chip runs (the
transfer matrix, ``transfer_rows``; ``docs/learned.md``). This experiment asks the
practical follow-up: someone who can run ``perfforge profile`` on the new GPU adds k of its kernels per op
class to the training data, as ``perfforge learn train`` does with their measurements. How close do the
predictions of the rest of that GPU's kernels get?

Protocol, per family and held-out GPU group g:

- each op class's rows of g are put in a fixed random order (seeded by ``seed`` and the group's name); the
  first ``min(max(shots), n // 2)`` form the pool of shots and the rest are scored, the same rows for every k;
- k = 0: trees trained on the other groups' trainable rows (the leave-one-GPU-out trees);
- k > 0: the same rows plus the first k pool rows of each class of g, weighted by ``train.group_weights`` as
  ``learn train`` weights them (g's few rows weigh as much in total as another GPU's thousands);
- 'rescaled': the k = 0 trees shifted by the median log error on the same k shots, with no retraining: the
  part of the gain that one scale factor per GPU and class would give;
- 'analytical': the analytical engine on the calibration's priors (``Samples.analytical_priors_s``) for k = 0,
  and for k > 0 the same times scaled by their median log error on the k shots: the no-learning alternative,
  one fitted constant per GPU and class (what fitting ``fp32_gemm_scale`` with ``perfforge calibrate`` does for
  FP32 GEMMs).

Only the trees are refitted (the shipped model's main learner), with the shipped settings; the MLP and the
analytical member of the shipped blend are left out to keep the run to minutes. A k larger than a class's
pool is not run for that GPU. Shots may include NeuSight's test-only kernels (L4, the A100 80GB PCIe, part of
H100's): this experiment is not compared with NeuSight's split, and nothing here changes the shipped model.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from perfforge.engines.learned.dataset import OP_CLASSES, Samples, load_records, samples_from_records
from perfforge.engines.learned.evaluate import NEUSIGHT_OOD
from perfforge.engines.learned.train import GBDT_PARAMS, MIN_ROWS, SEED, fit_trees

SHOTS = (0, 10, 30, 100, 300)
SUMMARY_MAX_K = 100  # the summary's common columns; most GPUs have 200+ kernels per class, fewer have 600+
TRANSFER_MIN_ROWS = 200  # kernels of a class a GPU needs to be fitted alone in the transfer matrix
TRANSFER_CLASSES = ("BMM", "FC")


def _order(rows: np.ndarray, seed: int, label: str) -> np.ndarray:
    """``rows`` (indices) in a fixed random order for ``seed`` and ``label``."""
    rng = np.random.default_rng([seed, zlib.crc32(label.encode())])
    return rng.permutation(rows)


def _ape(log_err: np.ndarray) -> np.ndarray:
    return np.abs(np.exp(log_err) - 1.0) * 100.0


def few_shot_rows(s: Samples, *, shots: tuple[int, ...] = SHOTS, params: dict[str, Any] | None = None,
                  seed: int = SEED, groups: list[str] | None = None,
                  progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """One row per (held-out group, op class, k): MAPE and median APE of the scored rows, retrained and
    rescaled (module docstring)."""
    if not shots or shots[0] != 0 or list(shots) != sorted(set(shots)):
        raise ValueError(f"shots must start at 0 and increase, got {shots}")
    rows: list[dict[str, Any]] = []
    y = s.y
    y_analytical = np.log(s.latency_s / s.analytical_priors_s)
    for g in groups or [str(x) for x in np.unique(s.group)]:
        in_g = s.group == g
        others = ~in_g & s.trainable
        if not in_g.any() or not others.any():
            continue
        pools: dict[str, np.ndarray] = {}
        scored = np.zeros(len(s), dtype=bool)
        for c in np.unique(s.op_class[in_g]):
            idx = _order(np.flatnonzero(in_g & (s.op_class == c)), seed, f"{g}/{c}")
            size = min(max(shots), len(idx) // 2)
            pools[str(c)] = idx[:size]
            scored[idx[size:]] = True
        zero, _ = fit_trees(s.subset(others), params=params)
        base = zero.predict(s.x)
        for k in shots:
            take = np.zeros(len(s), dtype=bool)
            for pool in pools.values():
                if k <= len(pool):
                    take[pool[:k]] = True
            pred = base if k == 0 else fit_trees(s.subset(others | take), params=params)[0].predict(s.x)
            for c, pool in pools.items():
                if k > len(pool):
                    continue
                m = scored & (s.op_class == c)
                err = pred[m] - y[m]
                row = {"family": s.family, "gpu": g, "op_class": c, "shots": k, "n_scored": int(m.sum()),
                       "pool": len(pool), "mape": float(np.mean(_ape(err))),
                       "median_ape": float(np.median(_ape(err)))}
                a_shift = float(np.median(y_analytical[pool[:k]])) if k > 0 else 0.0
                row["analytical_mape"] = float(np.mean(_ape(a_shift - y_analytical[m])))
                if k > 0:
                    shift = float(np.median(y[pool[:k]] - base[pool[:k]]))
                    row["rescaled_mape"] = float(np.mean(_ape(base[m] + shift - y[m])))
                rows.append(row)
        if progress:
            progress(f"{s.family}: {g} with {', '.join(map(str, shots))} shots per class")
    return rows


def transfer_rows(s: Samples, op_class: str, *, source: str = "neusight", min_rows: int = TRANSFER_MIN_ROWS,
                  params: dict[str, Any] | None = None, seed: int = SEED) -> list[dict[str, Any]]:
    """Does one chip's shape pattern carry over to another? Trees fitted on one GPU group's ``op_class`` kernels of
    ``source`` alone score every other group's, raw and with the pair's median log error removed ('debiased': a
    perfect per-GPU scale). The diagonal is a within-GPU reference: fitted on a random half, scored on the other."""
    m = (s.op_class == op_class) & (s.source == source)
    groups = [str(g) for g in np.unique(s.group[m]) if (m & (s.group == g)).sum() >= min_rows]
    rows: list[dict[str, Any]] = []
    y = s.y
    for g in groups:
        idx = _order(np.flatnonzero(m & (s.group == g)), seed, f"transfer/{g}/{op_class}")
        half, rest = idx[: len(idx) // 2], idx[len(idx) // 2:]
        own, _ = fit_trees(s.subset(np.isin(np.arange(len(s)), half)), params=params)
        whole, _ = fit_trees(s.subset(m & (s.group == g)), params=params)
        for h in groups:
            score = rest if h == g else np.flatnonzero(m & (s.group == h))
            err = (own if h == g else whole).predict(s.x[score]) - y[score]
            rows.append({"op_class": op_class, "trained_on": g, "scored_on": h, "n": len(score),
                         "mape": float(np.mean(_ape(err))),
                         "mape_debiased": float(np.mean(_ape(err - np.median(err)))),
                         "within_gpu": h == g})
    return rows


def run_few_shot(root: str | Path, *, scale: float = 1.0, shots: tuple[int, ...] = SHOTS,
                 params: dict[str, Any] | None = None, samples: dict[str, Samples] | None = None,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The experiment over every family of the ground-truth folder ``root``."""
    if samples is None:
        samples = samples_from_records(load_records(root, scale=scale))
    rows: list[dict[str, Any]] = []
    for s in samples.values():
        rows += few_shot_rows(s, shots=shots, params=params, progress=progress)
    transfer: list[dict[str, Any]] = []
    if "gemm" in samples:
        for c in TRANSFER_CLASSES:
            transfer += transfer_rows(samples["gemm"], c, params=params)
    return {"rows": rows, "shots": list(shots), "params": params or GBDT_PARAMS, "transfer": transfer}


def summary(rows: list[dict[str, Any]], shots: tuple[int, ...] | list[int],
            max_common: int = SUMMARY_MAX_K) -> dict[str, dict[str, Any]]:
    """Per op class: the mean MAPE (and rescaled MAPE) for each k <= ``max_common`` over the GPU groups that have
    all of them (>= MIN_ROWS scored rows); groups short of some k are named, not averaged. Each larger k is
    averaged over the groups that have it, beside those groups' own k = 0 mean (``larger``)."""
    out: dict[str, dict[str, Any]] = {}
    common = [k for k in shots if k <= max_common]
    for c in OP_CLASSES:
        by_gpu: dict[str, dict[int, dict[str, Any]]] = {}
        for r in rows:
            if r["op_class"] == c and r["n_scored"] >= MIN_ROWS:
                by_gpu.setdefault(r["gpu"], {})[r["shots"]] = r
        full = sorted(g for g, per in by_gpu.items() if all(k in per for k in common))
        if not full:
            continue
        larger = {}
        for k in shots:
            have = [g for g in full if k > max_common and k in by_gpu[g]]
            if have:
                larger[k] = {"gpus": have, "mape": float(np.mean([by_gpu[g][k]["mape"] for g in have])),
                             "mape_k0": float(np.mean([by_gpu[g][0]["mape"] for g in have])),
                             "rescaled_mape": float(np.mean([by_gpu[g][k]["rescaled_mape"] for g in have]))}
        out[c] = {"gpus": full, "short": sorted(set(by_gpu) - set(full)),
                  "mape": {k: float(np.mean([by_gpu[g][k]["mape"] for g in full])) for k in common},
                  "median_ape": {k: float(np.mean([by_gpu[g][k]["median_ape"] for g in full])) for k in common},
                  "rescaled_mape": {k: float(np.mean([by_gpu[g][k]["rescaled_mape"] for g in full]))
                                    for k in common if k > 0},
                  "analytical_mape": {k: float(np.mean([by_gpu[g][k]["analytical_mape"] for g in full]))
                                      for k in common if all("analytical_mape" in by_gpu[g][k] for g in full)},
                  "larger": larger}
    return out


def render(result: dict[str, Any], *, command: str) -> str:
    shots = result["shots"]
    summ = summary(result["rows"], shots)
    common = [k for k in shots if k <= SUMMARY_MAX_K]
    ks = [k for k in shots if k > 0]
    big = [k for k in shots if k > SUMMARY_MAX_K]
    lines = [
        "# Learned kernel model: a few kernels of the new GPU", "",
        f"Generated by `{command}` (perfforge.engines.learned.fewshot). Each GPU group is held out in turn, as in "
        "`report.md`; then k of its kernels per op class (a fixed random draw) join the training data, the trees are "
        "refitted with the shipped settings, and the same remaining kernels of that GPU are scored for every k. "
        "k = 0 is the leave-one-GPU-out trees. 'rescaled' keeps the k = 0 trees and only shifts them by the median "
        "log error on the same k kernels: what a single scale factor per GPU and class gives. Only the trees are "
        "refitted (no MLP, no analytical member), so the k = 0 column can differ from the shipped blend's "
        "leave-one-GPU-out figures in `report.md`. This is not leave-one-GPU-out: the held-out GPU contributes k "
        "kernels. It measures what `perfforge learn train --measured RUN` gains from a short `perfforge profile` "
        "run on a new GPU.",
        "",
        "APE = |pred/meas - 1|. A GPU's k is run when the class has at least 2k kernels of it; the scored rows are "
        "the ones outside the largest k's draw, the same for every k. The summary averages, per class, the GPU "
        f"groups that have every k up to {SUMMARY_MAX_K} and at least 20 scored kernels"
        + (f"; k = {', '.join(map(str, big))} is averaged over the groups that have it, beside their own k = 0"
           if big else "") + ". The per-GPU table has every group.", "",
        "## Mean MAPE over held-out GPUs, by kernels of that GPU per op class", "",
        "| op class | GPUs | " + " | ".join(f"k = {k}" for k in common) + " | "
        + " | ".join(f"rescaled, k = {k}" for k in common if k > 0)
        + "".join(f" | k = {k}: GPUs, k = 0 -> {k}" for k in big) + " | NeuSight OOD per-op |",
        "|---|---|" + "---|" * (len(common) + len(common) - 1 + len(big)) + "---|",
    ]
    for c, v in summ.items():
        ref = f"{NEUSIGHT_OOD[c]:.1f}%" if c in NEUSIGHT_OOD else "-"
        cells = [f"{v['mape'][k]:.1f}%" for k in common] + [f"{v['rescaled_mape'][k]:.1f}%" for k in common if k]
        for k in big:
            lg = v["larger"].get(k)
            cells.append(f"{len(lg['gpus'])}: {lg['mape_k0']:.1f}% -> {lg['mape']:.1f}%" if lg else "-")
        lines.append(f"| {c} | {len(v['gpus'])} | " + " | ".join(cells) + f" | {ref} |")
    if any(v["analytical_mape"] for v in summ.values()):
        lines += ["", "The analytical engine on the same rows and GPUs: on the calibration's priors (k = 0), then scaled "
                  "per GPU and class by its median log error on the same k kernels (one fitted constant, no learning):",
                  "", "| op class | " + " | ".join(f"k = {k}" for k in common) + " |", "|---|" + "---|" * len(common)]
        for c, v in summ.items():
            if v["analytical_mape"]:
                lines.append(f"| {c} | " + " | ".join(f"{v['analytical_mape'][k]:.1f}%" for k in common) + " |")
    lines += ["", "GPUs per class: " + "; ".join(
        f"{c}: {', '.join(v['gpus'])}" + (f" (short of kernels for some k: {', '.join(v['short'])})" if v["short"] else "")
        for c, v in summ.items()) + ".", "",
        "NeuSight's figure is its out-of-distribution per-op error with no kernel of the new GPU (another metric: "
        "an op class's time summed over a whole model run); it is shown for scale, not as a like-for-like target."]
    lines += _render_transfer(result.get("transfer", []))
    lines += ["", "## Per held-out GPU and op class", "",
              "| held-out GPU | op class | scored kernels | " + " | ".join(f"k = {k}" for k in shots) + " | "
              + " | ".join(f"rescaled, k = {k}" for k in ks) + " |",
              "|---|---|---|" + "---|" * (len(shots) + len(ks))]
    per: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for r in result["rows"]:
        per.setdefault((r["gpu"], r["op_class"]), {})[r["shots"]] = r

    def cell(byk: dict[int, dict[str, Any]], k: int, key: str) -> str:
        return f"{byk[k][key]:.1f}%" if k in byk and key in byk[k] else "-"

    for (g, c), byk in sorted(per.items(), key=lambda kv: (kv[0][0], OP_CLASSES.index(kv[0][1]))):
        lines.append(f"| {g} | {c} | {byk[0]['n_scored']} | " + " | ".join(cell(byk, k, "mape") for k in shots)
                     + " | " + " | ".join(cell(byk, k, "rescaled_mape") for k in ks) + " |")
    return "\n".join(lines) + "\n"


def _render_transfer(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = ["", "## Does one chip's shape pattern carry over to another?", "",
             "Trees fitted on one GPU's NeuSight FP32 kernels of a class alone (the shipped trees' settings), scored on "
             "another GPU's: MAPE raw / with that pair's median log error removed (a perfect per-GPU scale). The "
             "diagonal is the within-GPU reference: fitted on a random half of the GPU's kernels, scored on the other "
             "half. If a chip's shape effects carried over, some off-diagonal debiased cell would approach its "
             "row's diagonal."]
    for c in dict.fromkeys(r["op_class"] for r in rows):
        sel = [r for r in rows if r["op_class"] == c]
        trained = list(dict.fromkeys(r["trained_on"] for r in sel))
        lines += ["", f"{c}: rows scored on, columns trained on.", "",
                  "| scored on | " + " | ".join(trained) + " | best other chip, debiased |",
                  "|---|" + "---|" * (len(trained) + 1)]
        for h in dict.fromkeys(r["scored_on"] for r in sel):
            cells = {r["trained_on"]: r for r in sel if r["scored_on"] == h}
            others = [r for r in cells.values() if not r["within_gpu"]]
            best = min(others, key=lambda r: r["mape_debiased"]) if others else None
            lines.append(f"| {h} | " + " | ".join(
                f"{cells[g]['mape']:.1f}% / {cells[g]['mape_debiased']:.1f}%" + (" (own half)" if cells[g]["within_gpu"] else "")
                for g in trained) + " | " + (f"{best['trained_on']}: {best['mape_debiased']:.1f}%" if best else "-") + " |")
    return lines


def write_few_shot(result: dict[str, Any], folder: str | Path, *, command: str) -> tuple[Path, Path]:
    import json

    from perfforge.core.files import write_atomic

    folder = Path(folder)
    md, js = folder / "few-shot.md", folder / "few-shot.json"
    write_atomic(md, render(result, command=command))
    payload = {"command": command, "shots": result["shots"], "trees": result["params"], "rows": result["rows"],
               "summary": summary(result["rows"], result["shots"]), "transfer": result.get("transfer", [])}
    write_atomic(js, json.dumps(payload, indent=2, default=str) + "\n")
    return md, js
