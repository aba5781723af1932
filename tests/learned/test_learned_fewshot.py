"""Few-shot adaptation (``perfforge learn evaluate --split few-shot``): shots come from the held-out GPU only and
are never scored, k = 0 is the leave-one-GPU-out trees, and a GPU that differs from the others by a pure scale
is fixed exactly by rescaling (checked against the scale put in by hand)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from perfforge.engines.learned.dataset import Samples

TINY = {"max_iter": 40, "learning_rate": 0.3, "max_leaf_nodes": 15, "max_depth": 6, "min_samples_leaf": 5,
        "l2_regularization": 0.0}
SHIFT = 0.4  # the held-out GPU runs every kernel exp(0.4) = 1.49x slower than the shape rule of the others


def _samples(n_per_gpu: int = 400, small_class_rows: int = 30) -> Samples:
    """Three training GPUs whose log(latency / bound) is a rule of one shape feature, and a held-out GPU 'D'
    that follows the same rule times exp(SHIFT). 'D' also has a small FC class (too few rows for k = 30)."""
    rng = np.random.default_rng(1)
    xs, ys, groups, classes = [], [], [], []
    for i, g in enumerate(("A", "B", "C", "D")):
        shape = rng.uniform(0.0, 4.0, n_per_gpu)
        xs.append(np.column_stack([np.full(n_per_gpu, float(i)), shape]))
        ys.append(0.5 * shape + (SHIFT if g == "D" else 0.0))
        groups += [g] * n_per_gpu
        classes += ["BMM"] * (n_per_gpu - small_class_rows) + ["FC"] * small_class_rows
    x, y = np.vstack(xs), np.concatenate(ys)
    n = len(y)
    bound = np.full(n, 1e-4)
    return Samples("gemm", x, bound, bound * np.exp(y), np.array(groups), np.array(["dev"] * n),
                   np.array(classes), np.array(["measured"] * n), np.array(["fp32"] * n), bound, bound)


@pytest.fixture(scope="module")
def rows():
    pytest.importorskip("sklearn")
    from perfforge.engines.learned.fewshot import few_shot_rows

    return few_shot_rows(_samples(), shots=(0, 10, 30), params=TINY, groups=["D"])


def _row(rows, cls, k):
    return next(r for r in rows if r["op_class"] == cls and r["shots"] == k)


def test_zero_shots_are_the_leave_one_gpu_out_trees_and_miss_by_the_scale(rows):
    from perfforge.engines.learned.train import fit_trees

    s = _samples()
    trees, _ = fit_trees(s.subset(s.group != "D"), params=TINY)
    r0 = _row(rows, "BMM", 0)
    # the other GPUs' rule predicts D exp(SHIFT) too fast: APE = 1 - exp(-SHIFT) = 33.0%, up to the trees' fit
    assert r0["mape"] == pytest.approx(100 * (1 - np.exp(-SHIFT)), abs=2.0)
    d = s.subset((s.group == "D") & (s.op_class == "BMM"))
    all_rows = np.mean(np.abs(np.exp(trees.predict(d.x) - d.y) - 1)) * 100
    assert r0["mape"] == pytest.approx(all_rows, abs=1.5)  # the scored rows are a random share of the same rows


def test_a_pure_scale_is_recovered_by_rescaling_and_by_retraining(rows):
    for k in (10, 30):
        r = _row(rows, "BMM", k)
        assert r["rescaled_mape"] < 3.0          # the median shift over k shots is SHIFT, up to the trees' fit
        assert r["mape"] < _row(rows, "BMM", 0)["mape"] / 2


def test_shots_are_never_scored_and_small_classes_skip_large_k(rows):
    bmm = [r for r in rows if r["op_class"] == "BMM"]
    assert {r["n_scored"] for r in bmm} == {370 - 30}       # 370 BMM rows of D, a pool of max(k) = 30
    fc = {r["shots"]: r for r in rows if r["op_class"] == "FC"}
    assert fc[0]["pool"] == 15 and fc[0]["n_scored"] == 15  # 30 rows: half are the pool
    assert 10 in fc and 30 not in fc                         # k = 30 exceeds the pool: not run


def test_summary_averages_only_gpus_with_every_k_and_renders(rows, tmp_path):
    from perfforge.engines.learned.fewshot import render, summary, write_few_shot

    summ = summary(rows, (0, 10, 30))
    assert summ["BMM"]["gpus"] == ["D"] and summ["BMM"]["mape"][0] == pytest.approx(_row(rows, "BMM", 0)["mape"])
    assert "FC" not in summ  # D's FC has only 15 scored rows (< MIN_ROWS) and lacks k = 30
    assert summ["BMM"]["larger"] == {}
    # a k above the common columns is averaged over the groups that have it, beside their own k = 0
    narrow = summary(rows, (0, 10, 30), max_common=10)["BMM"]
    assert set(narrow["mape"]) == {0, 10} and narrow["larger"][30]["gpus"] == ["D"]
    assert narrow["larger"][30]["mape"] == pytest.approx(_row(rows, "BMM", 30)["mape"])
    assert narrow["larger"][30]["mape_k0"] == pytest.approx(_row(rows, "BMM", 0)["mape"])
    result = {"rows": rows, "shots": [0, 10, 30], "params": TINY}
    md = render(result, command="cmd")
    assert "| BMM | 1 |" in md and "| D | FC | 15 |" in md
    md_path, js_path = write_few_shot(result, tmp_path, command="cmd")
    assert json.loads(js_path.read_text())["summary"]["BMM"]["gpus"] == ["D"] and md_path.exists()


def test_bad_shots_are_refused():
    from perfforge.engines.learned.fewshot import few_shot_rows

    with pytest.raises(ValueError, match="shots must start at 0"):
        few_shot_rows(_samples(), shots=(10, 30))


def test_cli_writes_the_report(monkeypatch, tmp_path, capsys):
    import perfforge.engines.learned.fewshot as fewshot
    from perfforge.cli.main import main

    fake = {"rows": [{"family": "gemm", "gpu": "D", "op_class": "BMM", "shots": k, "n_scored": 50, "pool": 30,
                      "mape": 30.0 - k, "median_ape": 20.0, **({"rescaled_mape": 25.0} if k else {})}
                     for k in (0, 10, 30)], "shots": [0, 10, 30], "params": TINY}
    monkeypatch.setattr(fewshot, "run_few_shot", lambda *a, **k: fake)
    assert main(["learn", "evaluate", "--split", "few-shot", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "BMM" in out and "k=10  20.0%" in out and "few-shot.md" in out
    assert (tmp_path / "few-shot.md").exists() and (tmp_path / "few-shot.json").exists()


def test_transfer_matrix_separates_a_scale_from_a_shape_pattern():
    pytest.importorskip("sklearn")
    from perfforge.engines.learned.fewshot import _render_transfer, transfer_rows

    rows = transfer_rows(_samples(), "BMM", source="measured", params=TINY)
    cell = {(r["trained_on"], r["scored_on"]): r for r in rows}
    assert len(rows) == 16  # 4 GPUs with 370 BMM rows each (>= 200), every pair
    # D is A's shape rule times exp(SHIFT): raw error is the scale, debiased it is only the trees' fit
    assert cell[("A", "D")]["mape"] == pytest.approx(100 * (1 - np.exp(-SHIFT)), abs=2.5)
    assert cell[("A", "D")]["mape_debiased"] < 3.0
    assert cell[("A", "B")]["mape"] < 3.0
    own = cell[("D", "D")]
    assert own["within_gpu"] and own["n"] == 370 - 370 // 2 and own["mape"] < 3.0  # fitted on one half, scored on the other
    md = "\n".join(_render_transfer(rows))
    assert "| D |" in md and "(own half)" in md


def test_analytical_baseline_is_scaled_by_its_own_median_error(rows):
    # _samples() prices the analytical member at the roofline bound, so its log error is y itself: 0.5 * shape
    # (+ SHIFT on D); the k = 0 row is that error unscaled, a k > 0 row removes its median over the k shots
    s = _samples()
    d = (s.group == "D") & (s.op_class == "BMM")
    unscaled = np.mean(np.abs(np.exp(-s.y[d]) - 1)) * 100
    assert _row(rows, "BMM", 0)["analytical_mape"] == pytest.approx(unscaled, rel=0.1)
    assert _row(rows, "BMM", 30)["analytical_mape"] < _row(rows, "BMM", 0)["analytical_mape"]
