"""The serving and accelerators suites: their sources expand into rows that run against the real tools'
recorded outputs and Vidur's measured operator profiles."""

from pathlib import Path

import pytest

from perfforge.evaluation.harness import _run, plan, run_suite
from perfforge.evaluation.suite import Suite, load_suite

ROOT = Path(__file__).resolve().parents[2]


def test_accelerators_suite_reproduces_the_real_tools():
    result = run_suite(load_suite("accelerators"), ROOT)
    rows = result["rows"]
    scalesim = [r for r in rows if r["engine"] == "systolic"]
    assert len(scalesim) >= 36 and all(r["predicted_s"] == r["measured_s"] for r in scalesim)
    timeloop = {r["mode"]: r for r in rows if r["engine"] == "loop-nest"}
    assert timeloop["cycles"]["predicted_s"] == timeloop["cycles"]["measured_s"] == 5505024
    assert timeloop["energy_pj"]["predicted_s"] == pytest.approx(timeloop["energy_pj"]["measured_s"], rel=0.05)
    assert all(r["in_sample"] for r in timeloop.values())   # the counting rules were fitted to this reference


def test_serving_suite_rows():
    suite = load_suite("serving")
    tasks = plan(suite, ROOT)
    ops = [t for t in tasks if t.row.kind == "serving-ops"]
    sims = [t for t in tasks if t.row.kind == "serving-sim"]
    assert len(ops) > 100 and len(sims) >= 24
    assert len({t.row.case_id for t in ops}) == len(ops)          # no duplicate cases
    # A100 Llama-2-7B, TP1, 512 tokens: Vidur measured the layer's non-attention ops at ~1.04 ms
    row = _run(next(t for t in ops if t.row.case_id == "vidur/a100/llama-2-7b/tp1/512")).error
    assert abs(row) < 0.25
    sim = next(t for t in sims if t.row.variant == "vidur-lookups" and t.row.mode == "ttft_p99_s")
    assert _run(sim).error == pytest.approx(0.0, abs=1e-3)


def test_unknown_reference_tool_is_rejected():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Suite(name="x", description="y", sources=[{"accelerator_reference": "f", "tool": "maestro"}])


def test_backends_multiply_whole_model_rows_and_claims_keep_the_roofline():
    suite = load_suite("seed")
    assert suite.backends == ["analytical", "learned"]
    tasks = [t for t in plan(suite, ROOT) if t.row.case_id == "dle-paddle-rn50-a100-80gb-amp-1gpu"
             and t.row.engine == "analytical"]
    assert sorted(t.row.backend for t in tasks) == ["analytical", "learned"]
    rows = {t.row.backend: _run(t) for t in tasks}
    assert rows["learned"].predicted_s != rows["analytical"].predicted_s
    # a tensor-parallel Megatron row runs on the learned backend too, and says which ops it left to the roofline
    mega = next(t for t in plan(suite, ROOT) if t.row.backend == "learned" and t.row.subject.startswith("megatron")
                and t.row.engine == "distributed")
    twin = next(t for t in plan(suite, ROOT) if t.row.backend == "analytical" and t.row.case_id == mega.row.case_id
                and t.row.engine == "distributed")
    row, ana = _run(mega), _run(twin)
    assert row.status == ana.status == "ok" and row.predicted_s != ana.predicted_s
    # claims compare the roofline's rows unless they name a backend
    from perfforge.evaluation.harness import check_claims

    base = {"kind": "model", "mode": "train", "hardware": "h100-sxm5-80gb", "engine": "analytical",
            "variant": "zoo", "measured_s": 1.0}
    rows = [{**base, "backend": "analytical", "predicted_s": 1.1}, {**base, "backend": "learned", "predicted_s": 3.0}]
    claims = {c["id"]: c for c in check_claims(suite, ROOT, rows)}
    ours = claims["habitat-iteration-time-average-error"]["perfforge_on_scope"]
    assert ours["n"] == 1 and ours["mape"] == pytest.approx(0.1)


def test_claim_compare_accepts_a_list_of_values():
    """NeuSight's H100 GPT-3 claim is compared on its two GPT-3 models' H100 labels, nothing else."""
    from perfforge.evaluation.harness import check_claims

    suite = load_suite("training")
    base = {"kind": "model", "hardware": "h100-sxm5-80gb", "source": "data/ground_truth/neusight",
            "engine": "analytical", "variant": "zoo-unfused", "backend": "analytical", "measured_s": 1.0}
    rows = [{**base, "subject": "gpt3-2.7b", "predicted_s": 1.2}, {**base, "subject": "gpt3-xl-neusight", "predicted_s": 0.9},
            {**base, "subject": "bert-large", "predicted_s": 5.0}, {**base, "subject": "gpt3-2.7b", "hardware": "l4",
                                                                     "predicted_s": 5.0}]
    claim = {c["id"]: c for c in check_claims(suite, ROOT, rows)}["neusight-gpt3-h100-latency-error"]
    assert claim["perfforge_on_scope"]["n"] == 2
    assert claim["perfforge_on_scope"]["mape"] == pytest.approx(0.15)
    assert claim["verdict"] == "not_testable"                  # NeuSight itself did not run
