"""Measured serving iterations: the decoder the profiler builds, and the suite rows comparing them."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

from perfforge.evaluation.serving_cases import iteration_cases, predict_iteration

ROOT = Path(__file__).resolve().parents[2]
MEASURED = ROOT / "data/ground_truth/measured/h200-llm-iterations-20261126/measurements.jsonl.gz"


def test_committed_iterations_load_and_predict() -> None:
    cases = iteration_cases(MEASURED, "x")
    assert len(cases) == 24 and {c["hardware"] for c in cases} == {"h200-sxm-141gb"}
    assert {c["model"] for c in cases} == {"llama-2-7b", "llama-3-8b"}
    decode = next(c for c in cases if c["phase"] == "decode" and c["batch"] == 8 and c["length"] == 2048)
    prefill = next(c for c in cases if c["phase"] == "prefill" and c["batch"] == 4)
    # by hand: the stage timer on 8 one-token queries with 2049 cached tokens, and on 4 prompts of 512
    from perfforge.serving.batch_time import StageTimer
    from perfforge.serving.optable import model_table

    timer = StageTimer(model_table(decode["model"], "h200-sxm-141gb", 1, "fp16"), 32, 1, 1,
                       gqa=decode["model"] == "llama-3-8b")
    assert predict_iteration(decode) == pytest.approx(timer.batch_time(np.ones(8, dtype=np.int64),
                                                                       np.full(8, 2049)))
    assert predict_iteration(prefill) > predict_iteration({**prefill, "batch": 1})   # more tokens take longer
    assert all(c["measured_s"] <= c["wall_s"] * 1.05 for c in cases)   # kernels never exceed the eager wall


def test_decoder_decode_step_matches_the_full_forward() -> None:
    torch = pytest.importorskip("torch")
    from perfforge.profiling.llm_steps import build_decoder, measure

    cfg = types.SimpleNamespace(hidden=64, heads=4, n_kv_heads=2, d_head=16, ffn=128, layers=2, vocab=100)
    model = build_decoder(cfg, torch.device("cpu"), torch.float32, 40)
    ids = torch.randint(0, 100, (2, 10))
    with torch.inference_mode():
        model.allocate(2, 11)
        full = model(ids, 0)
        model.allocate(2, 11)
        model(ids[:, :9], 0)
        step = model(ids[:, 9:], 9)   # the cached prefix plus one token gives the same last logits
    assert torch.allclose(full, step, atol=1e-5)
    recs = measure("tiny", "tiny", torch.device("cpu"), "fp32", cfg=cfg, say=lambda _: None)
    assert [r["op"] for r in recs] == ["llm_prefill", "llm_decode"] and all(r["latency_s"] > 0 for r in recs)


def test_profile_llm_group_writes_records_the_serving_suite_reads(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from perfforge.profiling import read_jsonl, run_profile

    first = run_profile("tiny", tmp_path, device="cpu", only=["llm"], log=lambda _: None)
    recs = read_jsonl(tmp_path / "measurements.jsonl")
    assert first.measured == len(recs) == 2 and all(r.group == "llm" and r.ok for r in recs)
    again = run_profile("tiny", tmp_path, device="cpu", only=["llm"], log=lambda _: None)
    assert again.measured == 0 and len(read_jsonl(tmp_path / "measurements.jsonl")) == 2   # resumed
    cases = iteration_cases(tmp_path / "measurements.jsonl", "x")
    assert [c["phase"] for c in cases] == ["prefill", "decode"] and cases[0]["model"] == "tiny-llama"
    assert all("not in the catalog" in c["missing"] for c in cases)   # a CPU: reported, never predicted
