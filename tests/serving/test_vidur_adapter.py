"""The Vidur adapter without Vidur (job building, parsing, errors), the recorded real-Vidur outputs, and a
live run when PERFFORGE_VIDUR_PYTHON points at an interpreter with vidur==0.0.26."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from perfforge.adapters import vidur as adapter
from perfforge.core.errors import ConfigError
from perfforge.evaluation.serving_cases import predict_serving_sim
from perfforge.serving.optable import model_table
from perfforge.serving.run import request_set, simulate
from perfforge.serving.spec import make_spec

REFERENCE = Path(__file__).resolve().parents[2] / "data" / "ground_truth" / "vidur-sim" / "reference_outputs.json"


def test_predictions_cover_vidurs_lookup_grid_in_ms():
    spec = make_spec(model="llama-2-7b", tp=2, max_tokens=1024, max_tokens_per_batch=1024, prefill=512, decode=64)
    table = adapter.vidur_composition(model_table("llama-2-7b", "a100-sxm4-80gb", 2))
    assert {"emb", "lm_head"} <= set(table.absent)
    p = adapter.predictions(table, spec)
    up = dict((k[0], v) for k, v in p["mlp_up_proj"])
    assert sorted(up) == list(range(1, 1025))
    assert up[100] == pytest.approx(float(table.token_time("mlp_up_proj", 100)) * 1e3)
    # Vidur adds its own 0.02 ms NCCL launch overhead to the all-reduce it looks up
    ar = dict((k[0], v) for k, v in p["all_reduce"])
    assert ar[64] + adapter.NCCL_CPU_LAUNCH_S * 1e3 == pytest.approx(float(table.token_time("all_reduce", 64)) * 1e3)
    pre = {tuple(k): v for k, v in p["attn_prefill"]}
    assert (1024, 1024) in pre and (0, 32) in pre and len(pre) == 5 * 32
    dec = {tuple(k): v for k, v in p["attn_decode"]}
    assert (128, 768) in dec and len(dec) == 128 * 5


def test_job_rejects_what_vidur_cannot_run(tmp_path):
    reqs = request_set(make_spec(requests=5))
    table = model_table("llama-2-7b", "a100-sxm4-80gb")
    with pytest.raises(ConfigError, match="no config for 'gpt2'"):
        adapter.build_job(make_spec(model="gpt2", max_tokens=1024, max_tokens_per_batch=1024), reqs, table, 10, tmp_path)
    with pytest.raises(ConfigError, match="no 'static' scheduler"):
        adapter.build_job(make_spec(scheduler="static"), reqs, table, 10, tmp_path)
    with pytest.raises(ConfigError, match="no device for 'v100-sxm2-16gb'"):
        adapter.build_job(make_spec(hardware="v100-sxm2-16gb"), reqs, table, 10, tmp_path)


def test_missing_vidur_is_reported_plainly(monkeypatch):
    monkeypatch.delenv("PERFFORGE_VIDUR_PYTHON", raising=False)
    monkeypatch.setitem(__import__("sys").modules, "vidur", None)   # make `import vidur` fail
    with pytest.raises(ConfigError, match="Vidur is not installed"):
        adapter.vidur_python()
    with pytest.raises(ConfigError, match="interpreter not found"):
        adapter.vidur_python("/no/such/python")


def test_parse_output_reads_request_metrics(tmp_path):
    run = tmp_path / "2026-01-01_00-00-00"
    run.mkdir()
    (run / "request_metrics.csv").write_text(
        "Request Id,request_e2e_time,prefill_e2e_time,decode_time_execution_plus_preemption_normalized,"
        "request_num_restarts,request_scheduling_delay\n1,2.0,0.2,0.01,0,0.05\n0,1.0,0.1,0.02,1,0.0\n")
    out = adapter.parse_output(tmp_path)
    assert out["e2e"].tolist() == [1.0, 2.0] and out["restarts"].tolist() == [1.0, 0.0]
    (run / "request_metrics.csv").write_text("Request Id,other\n0,1\n")
    with pytest.raises(ConfigError, match="lacks 'prefill_e2e_time'"):
        adapter.parse_output(tmp_path)


def test_recorded_vidur_outputs_are_reproduced_when_lookups_match():
    """The real Vidur's recorded percentiles (benchmarks/compare_vidur.py) against perfforge's simulation of
    the same scenario with Vidur's lookup rounding: the simulations must agree."""
    doc = json.loads(REFERENCE.read_text())
    assert doc["cases"], "no recorded Vidur outputs"
    for case in doc["cases"]:
        for metric in ("ttft_p99_s", "tpot_p50_s", "e2e_p50_s"):
            ours = predict_serving_sim(case, metric, vidur_lookups=True)
            assert ours == pytest.approx(case["vidur"][metric], rel=1e-3), (case["id"], metric)


@pytest.mark.skipif(not os.environ.get("PERFFORGE_VIDUR_PYTHON"), reason="set PERFFORGE_VIDUR_PYTHON to run Vidur")
def test_live_vidur_run_matches(tmp_path):
    spec = make_spec(model="llama-2-7b", scheduler="sarathi", qps=6, requests=60)
    table = adapter.vidur_composition(model_table("llama-2-7b", "a100-sxm4-80gb"))
    reqs = request_set(spec)
    ours = simulate(spec, reqs, table, vidur_lookups=True)
    vid = adapter.run_vidur(spec, reqs, table, ours.kv.num_blocks, workdir=tmp_path)
    s = ours.output.state
    np.testing.assert_allclose(np.sort(s.first_token_at - s.arrival), np.sort(vid["ttft"]), rtol=1e-6)
