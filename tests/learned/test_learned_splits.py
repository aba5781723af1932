"""Fixed GPU splits (``perfforge learn evaluate --split neusight``): the split is NeuSight's, test GPUs never
influence training, rows add up, and the report states plainly when ours is worse than NeuSight's figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perfforge.core.errors import ConfigError
from perfforge.engines.learned.splits import NEUSIGHT_PEROP, SPLITS, Split, get_split, render

ROOT = Path(__file__).resolve().parents[2] / "data/ground_truth"
TINY = {"max_iter": 15, "learning_rate": 0.2, "max_leaf_nodes": 15, "max_depth": 6, "min_samples_leaf": 5,
        "l2_regularization": 1.0}
TINY_MLP = {"hidden_layer_sizes": (16,), "alpha": 1e-4, "batch_size": 64, "learning_rate_init": 5e-3, "max_iter": 15,
            "clip": 5.0}


def test_neusight_split_is_neusights():
    sp = get_split("neusight")
    # NeuSight's training kernels: P4, T4, P100, V100 and A100-PCIE-40GB; H100 and L4 are two of its OOD GPUs
    assert sp.train == ("P4", "T4", "P100", "V100", "A100")
    assert {"H100", "L4", "A100-80"} <= set(sp.test) and sp.comparable == ("H100", "L4", "A100-80")
    for s in SPLITS.values():
        assert not set(s.train) & set(s.test)
        assert set(s.comparable) <= set(s.test)
    assert "A100" in get_split("pre-ampere").test
    # perop.csv, row NeuSight, OOD columns
    assert round(NEUSIGHT_PEROP["ood"]["BMM"], 1) == 13.8 and round(NEUSIGHT_PEROP["ood"]["FC"], 1) == 13.9


def test_unknown_split_is_a_one_line_error(capsys):
    with pytest.raises(ConfigError, match="unknown split 'newer'"):
        get_split("newer")
    from perfforge.cli.main import main

    assert main(["learn", "evaluate", "--split", "newer"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown split 'newer' (allowed: logo, neusight, pre-ampere, few-shot)" in err and "\n" not in err


@pytest.fixture(scope="module")
def tiny():
    pytest.importorskip("sklearn")
    from perfforge.engines.learned.dataset import load_records, samples_from_records
    from perfforge.engines.learned.splits import run_split

    samples = samples_from_records(load_records(ROOT, scale=0.01))
    return samples, run_split(ROOT, "neusight", params=TINY, mlp_params=TINY_MLP, samples=samples)


def test_test_gpus_do_not_influence_predictions(tiny):
    from perfforge.engines.learned.splits import run_split

    samples, result = tiny
    s = samples["gemm"]
    test = np.isin(s.group, SPLITS["neusight"].test)
    assert test.any() and (~test).any()
    # scale every test GPU's measured latency by 7: a model that saw them would predict differently
    lat = np.where(test, s.latency_s * 7.0, s.latency_s)
    changed = type(s)(s.family, s.x, s.bound_s, lat, s.group, s.device, s.op_class, s.source, s.dtype, s.analytical_s,
                      s.analytical_priors_s)
    other = run_split(ROOT, "neusight", params=TINY, mlp_params=TINY_MLP, samples={"gemm": changed}, with_e2e=False)
    a, b = result["families"]["gemm"], other["families"]["gemm"]
    np.testing.assert_array_equal(a.shipped, b.shipped)
    assert a.model.interval == b.model.interval and a.model.blend == b.model.blend
    assert a.model.analytical_weight == b.model.analytical_weight
    assert not np.array_equal(a.test.latency_s, b.test.latency_s)


def test_rows_cover_the_test_gpus_and_add_up(tiny):
    _, result = tiny
    rows = result["rows"]
    assert {r["gpu"] for r in rows} <= set(SPLITS["neusight"].test)
    assert not any(r["gpu"] in SPLITS["neusight"].train for r in rows)
    for r in (r for r in rows if r["subset"] == "all"):
        parts = [p for p in rows if p["gpu"] == r["gpu"] and p["op_class"] == r["op_class"] and p["subset"] != "all"]
        assert sum(p["n"] for p in parts) == r["n"]
        assert 0.0 <= r["coverage"] <= 1.0 and np.isfinite(r["mape"]) and r["median_ape"] >= 0.0
    fc = next(r for r in rows if r["gpu"] == "H100" and r["op_class"] == "FC" and r["subset"] == "all")
    assert fc["sources"] == "measured,neusight,vidur"  # perfforge's runs, NeuSight's test kernels, Vidur
    assert set(result["train_data"]["gemm"]["by_group"]) == set(SPLITS["neusight"].train)
    assert "H100" not in result["train_data"]["gemm"]["by_group"]


def _row(gpu: str, c: str, mape: float, n: int, subset: str = "all") -> dict:
    return {"gpu": gpu, "op_class": c, "subset": subset, "n": n, "sources": "measured", "dtypes": "fp32",
            "blend_mlp_weight": 0.0, "mape": mape, "median_ape": mape / 2, "mape_trees": mape, "mape_mlp": mape,
            "coverage": 0.8, "interval": [-0.3, 0.3], "bias": 0.0, "roofline_mape": 50.0, "analytical_mape": 20.0}


def test_report_says_worse_with_the_numbers():
    sp = SPLITS["neusight"]
    rows = [_row("H100", "FC", 30.0, 50), _row("H100", "FC", 25.0, 26, "measured fp32"), _row("H100", "BMM", 5.0, 8),
            _row("H100", "SOFTMAX", 10.0, 40), _row("H200", "FC", 12.0, 30)]
    text = render({"split": sp, "rows": rows, "train_data": {}, "unused": {}}, command="test")
    assert "FC on H100: ours worse, 30.0% vs NeuSight 13.9% (n=50; its FP32 kernels alone 25.0% (n=26))" in text
    assert "SOFTMAX on H100: ours better, 10.0% vs NeuSight 13.9% (n=40)" in text
    assert "BMM on H100: only 8 kernels, not compared" in text
    assert "25.0% (n=26)" in text                      # the FP32-only column on H100
    assert "OOD_DEVICES" in text and "not per-kernel errors" in text
    other = render({"split": Split("x", ("P4",), ("H100",), (), "note"), "rows": rows[:1], "train_data": {},
                    "unused": {}}, command="test")
    assert "NeuSight OOD" not in other


def test_split_end_to_end_prices_every_label_with_the_split_model(tiny):
    from perfforge.api import predict, resolve_workload
    from perfforge.engines.learned.backend import using_model
    from perfforge.engines.learned.splits import _split_model
    from perfforge.evaluation.neusight import read_labels

    _, result = tiny
    e2e = result["e2e_rows"]
    assert len(e2e) == len([r for r in read_labels(ROOT / "neusight") if r["params"]["model"]])
    assert all(r["learned_s"] > 0 and r["analytical_s"] > 0 for r in e2e)
    row = next(r for r in e2e if r["gpu"] == "h100-sxm5-80gb" and r["label"] == "bert_large-inf-512-8")
    assert row["neusight_ood"]
    w = resolve_workload("bert-large", mode="inference", batch=8, seq=512, dtype="fp32", attention_impl="unfused")
    from perfforge.engines.analytical.calibration import priors_calibration_file
    from perfforge.engines.learned.splits import untrained_architectures

    # the split's model, its analytical member and fallback with Hopper's constants on the priors
    with using_model(_split_model(result["families"])), \
            priors_calibration_file(untrained_architectures(SPLITS["neusight"])) as priors:
        split_s = predict(w, "h100-sxm5-80gb", mode="inference", backend="learned", calibration=priors).step_time_s
    shipped_s = predict(w, "h100-sxm5-80gb", mode="inference", backend="learned").step_time_s
    assert row["learned_s"] == pytest.approx(split_s, rel=1e-9)
    assert abs(split_s / shipped_s - 1) > 1e-3        # not the shipped model (which trained on H100)


def test_split_per_op_rows_mark_neusights_ood_rows(tiny):
    _, result = tiny
    rows = [r for r in result["breakdown"] if r["backend"] == "learned"]
    by_source = {r["source"] for r in rows}
    assert by_source == {"NeuSight label trace", "perfforge"}
    for r in rows:
        model = str(r["label"]).split("-")[0]
        ood_gpu = r["hardware"] in ("h100-sxm5-80gb", "l4", "a100-pcie-80gb")  # the A100 80GB is in the A100 group
        assert r["neusight_ood"] == (ood_gpu or model in ("gpt3_27", "opt_13", "gpt3_xl"))
        assert r["split_role"] == ("test" if r["gpu"] in SPLITS["neusight"].test else "train")
    # training GPUs contribute NeuSight's traces only: perfforge's own runs there would be in-sample kernels
    assert all(r["source"] == "NeuSight label trace" for r in rows if r["split_role"] == "train")


def _perop(gpu: str, hw: str, label: str, ood: bool, fc: float, backend: str = "learned") -> dict:
    return {"gpu": gpu, "hardware": hw, "label": label, "backend": backend, "neusight_ood": ood,
            "ape": {"FC": fc, "BMM": 2 * fc}}


def test_neusight_row_means_score_a_label_on_neusights_trace_when_there_is_one():
    from perfforge.engines.learned.splits import neusight_row_means

    trace = {**_perop("H100", "h100-sxm5-80gb", "opt_13-inf-2048-2", True, 40.0), "run_id": "neusight:NVIDIA_H100"}
    rows = [_perop("H100", "h100-sxm5-80gb", "opt_13-inf-2048-2", True, 10.0),   # perfforge's runs: not used
            _perop("H100", "h100-sxm5-80gb", "opt_13-inf-2048-2", True, 20.0), trace,
            _perop("H100", "h100-sxm5-80gb", "gpt2_large-inf-1024-4", True, 4.0)]  # no trace: perfforge's run
    d = neusight_row_means(rows)["ood"]["learned"]
    assert d["FC"] == pytest.approx((40.0 + 4.0) / 2) and d["rows"] == 2 and d["trace_rows"] == 1
    own = neusight_row_means(rows, prefer="perfforge")["ood"]["learned"]
    assert own["FC"] == pytest.approx((15.0 + 4.0) / 2) and own["trace_rows"] == 0


def test_neusight_row_means_average_over_runs_and_leave_out_other_gpus():
    from perfforge.engines.learned.splits import neusight_row_means, render_neusight_rows

    rows = [_perop("H100", "h100-sxm5-80gb", "bert_large-inf-512-8", True, 10.0),
            _perop("H100", "h100-sxm5-80gb", "bert_large-inf-512-16", True, 20.0),
            _perop("H100", "h100-sxm5-80gb", "bert_large-inf-512-16", True, 30.0),   # a second run: averaged first
            _perop("V100", "v100-pcie-32gb", "opt_13-inf-2048-2", True, 60.0),
            _perop("V100", "v100-pcie-32gb", "bert_large-inf-512-8", False, 5.0),
            _perop("H200", "h200-sxm-141gb", "opt_13-inf-2048-2", True, 99.0)]     # not NeuSight's GPU
    means = neusight_row_means(rows)
    assert means["ood"]["learned"]["FC"] == pytest.approx(95 / 3)   # (10 + 25 + 60) / 3 rows; per run: 30.0
    assert means["ood"]["learned"]["rows"] == 3 and means["ood"]["learned"]["gpus"] == "H100, V100"
    assert means["id"]["learned"]["BMM"] == pytest.approx(10.0)
    text = "\n".join(render_neusight_rows(rows, SPLITS["neusight"]))
    assert "no runs on NeuSight's OOD GPUs L4, A100 80GB PCIe" in text
    assert "BMM 63.3% (95% interval over the rows" in text and "not below NeuSight's 13.8%" in text
    assert "FC 31.7% (95% interval over the rows" in text and "not below NeuSight's 13.9%" in text


def test_split_end_to_end_verdict_states_the_numbers():
    from perfforge.engines.learned.e2e import render_split_e2e

    rows = [{"gpu": "h100-sxm5-80gb", "label": f"x-{i}", "neusight_ood": i % 2 == 0, "measured_s": 1.0,
             "learned_s": 1.0 + d, "analytical_s": 1.05} for i, d in enumerate((0.05, -0.15, 0.10))]
    text = "\n".join(render_split_e2e(rows, train_gpus=("P4", "T4"), neusight_split=True))
    assert "Target missed: the split's learned model has mean APE 10.0% over 3 labels against NeuSight's 8.9%" in text
    rows[1]["learned_s"] = 0.95
    text = "\n".join(render_split_e2e(rows, train_gpus=("P4", "T4"), neusight_split=True))
    assert "Target met" in text and "6.7%" in text
    assert "Target" not in "\n".join(render_split_e2e(rows, train_gpus=("P4",), neusight_split=False))
    for r, ape in zip(rows, (4.0, 20.0, None)):        # NeuSight's own errors on two of the three labels
        r["neusight_ape"] = ape
    text = "\n".join(render_split_e2e(rows, train_gpus=("P4", "T4"), neusight_split=True))
    assert ("Target met: on the 2 labels NeuSight published its own error for (the labels its 8.9% averages), the "
            "split's learned model has mean APE 5.0% against NeuSight's 12.0%, lower on 1 of them") in text
    assert "| 20.0% |" in text
    assert "| h100-sxm5-80gb | 2 | 5.0% | 12.0% | 1 |" in text       # the per-GPU comparison


def test_like_for_like_analytical_column_uses_no_test_architecture_fit(tiny):
    """'analytical, priors' resets exactly the architectures no training GPU has, and on a GPU of a trained
    architecture it equals the shipped analytical prediction."""
    from perfforge.engines.learned.splits import untrained_architectures

    assert untrained_architectures(SPLITS["neusight"]) == ("ada", "hopper")
    assert untrained_architectures(SPLITS["pre-ampere"]) == ("ada", "ampere", "hopper")
    _, result = tiny
    e2e = result["e2e_rows"]
    v100 = [r for r in e2e if r["gpu"] == "v100-pcie-32gb"]
    assert v100 and all(r["analytical_priors_s"] == pytest.approx(r["analytical_s"], rel=1e-12) for r in v100)
    h100 = [r for r in e2e if r["gpu"] == "h100-sxm5-80gb"]
    # Hopper's fitted constants (attention, memory, vector efficiency...) move some H100 labels by percents
    assert h100 and max(abs(r["analytical_priors_s"] / r["analytical_s"] - 1) for r in h100) > 1e-2


def test_per_op_rows_carry_the_like_for_like_analytical_engine(tiny):
    _, result = tiny
    rows = result["breakdown"]
    assert {"learned", "analytical", "analytical, priors"} <= {r["backend"] for r in rows}
    key = lambda r: (r["run_id"], r["label"], r["hardware"])  # noqa: E731
    shipped = {key(r): r for r in rows if r["backend"] == "analytical" and "predicted" in r}
    priors = [r for r in rows if r["backend"] == "analytical, priors" and "predicted" in r]
    v100 = [r for r in priors if r["hardware"] == "v100-pcie-32gb"]
    assert v100 and all(r["predicted"] == shipped[key(r)]["predicted"] for r in v100)   # volta stays as shipped
    h100 = [r for r in priors if r["hardware"] == "h100-sxm5-80gb"]
    assert h100 and any(r["predicted"] != shipped[key(r)]["predicted"] for r in h100)


def test_analytical_member_of_test_rows_is_on_the_priors_for_untrained_architectures():
    """A test row of an architecture no training GPU has (Hopper in NeuSight's split) is blended with the
    analytical engine on the priors; other rows with the shipped calibration. The analytical member is exact on
    every training GPU here, so the folds choose its largest weight."""
    pytest.importorskip("sklearn")
    from perfforge.engines.learned.dataset import Samples
    from perfforge.engines.learned.splits import fit_split_family
    from perfforge.engines.learned.train import ANALYTICAL_WEIGHTS

    rng = np.random.default_rng(1)
    k = 40
    groups = np.repeat(["A100", "V100", "T4"], k)
    devices = np.repeat(["a100-pcie-40gb", "v100-pcie-32gb", "t4"], k)
    x = rng.normal(size=(3 * k, 2))
    latency = np.exp(rng.normal(size=3 * k))  # the learners cannot predict it from x: the analytical member can
    train = Samples("gemm", x, np.full(3 * k, 0.5), latency, groups, devices, np.full(3 * k, "FC"),
                    np.full(3 * k, "neusight"), np.full(3 * k, "fp32"), latency * 3.0, latency)
    test = Samples("gemm", x[:2], np.full(2, 0.5), np.ones(2), np.array(["H100", "A100-80"]),
                   np.array(["h100-sxm5-80gb", "a100-pcie-80gb"]), np.full(2, "FC"), np.full(2, "neusight"),
                   np.full(2, "fp32"), np.array([2.0, 2.0]), np.array([4.0, 4.0]))
    sf = fit_split_family(train, test, params=TINY, mlp_params=TINY_MLP, prior_archs=("hopper",))
    a = sf.model.analytical_weight["FC"]
    assert a == max(ANALYTICAL_WEIGHTS)
    expected = (1 - a) * sf.learned + a * np.log(np.array([4.0, 2.0]) / 0.5)  # H100: priors; A100 80GB: shipped
    np.testing.assert_allclose(sf.shipped, expected, rtol=1e-12)
