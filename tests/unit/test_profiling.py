"""perfforge.profiling on CPU: record schema, resume, torn lines, failures, lazy torch import."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from perfforge.profiling import (
    SCHEMA,
    SOURCE,
    Measurement,
    append_jsonl,
    build_cases,
    make_key,
    read_jsonl,
    run_profile,
    time_callable,
)
from perfforge.profiling.runner import ProfileSummary
from perfforge.profiling.timing import Case, percentile

SRC = Path(__file__).resolve().parents[2] / "src"
HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
Run = tuple[Path, ProfileSummary, list[Case]]
REQUIRED = {"schema", "key", "kind", "op", "params", "dtype", "repeats", "warmup", "timer",
            "l2_flush", "device", "software", "date", "run_id", "source"}


def quiet(_: str) -> None:
    pass


def _rec(key: str, latency: float | None = 1e-3, error: str | None = None) -> Measurement:
    return Measurement(key=key, kind="kernel", op="add", params={"numel": 1}, dtype="fp32",
                       latency_s=latency, error=error, device={"name": "test"})


# ---- standard library only ----------------------------------------------------------------
def test_import_does_not_import_torch() -> None:
    code = ("import sys, perfforge.profiling, perfforge.profiling.__main__; "
            "bad = [m for m in ('torch', 'torchvision', 'transformers') if m in sys.modules]; "
            "print(','.join(bad))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.strip() == ""


def test_key_is_stable_and_sorted() -> None:
    a = make_key("kernel", "matmul", "fp16", {"n": 2, "m": 1, "k": 3})
    b = make_key("kernel", "matmul", "fp16", {"k": 3, "m": 1, "n": 2})
    assert a == b == "kernel/matmul/fp16/k=3,m=1,n=2"
    assert make_key("model", "x", "bf16", {"model": "gpt2", "causal": True}) == \
        "model/x/bf16/causal=true,model=gpt2"


def test_jsonl_roundtrip_and_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    append_jsonl(path, [_rec("a"), _rec("b", latency=None, error="OutOfMemoryError: boom")])
    with path.open("a") as fh:
        fh.write('{"schema": "perfforge.measurement/1", "key": "c", "ki')  # crash mid-write
    recs = read_jsonl(path)
    assert [r.key for r in recs] == ["a", "b"]
    assert recs[0].ok and not recs[1].ok
    failed = json.loads(path.read_text().splitlines()[1])
    assert failed["error"].startswith("OutOfMemoryError") and "latency_s" not in failed
    append_jsonl(path, [_rec("d")])  # the next record must not be glued to the fragment
    with pytest.warns(UserWarning):
        keys = [r.key for r in read_jsonl(path)]
    assert keys == ["a", "b", "d"]
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def test_percentiles_and_wall_timer() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([1.0, 2.0], 10) == pytest.approx(1.1)
    calls = []
    res = time_callable(lambda: calls.append(1), device="cpu", warmup=2, repeats=7)
    assert res.timer == "wall" and res.repeats == 7 and not res.l2_flush
    assert len(calls) == 2 + 7
    assert res.p10_s <= res.median_s <= res.p90_s


def test_wall_timer_caps_repeats_by_time() -> None:
    import time

    res = time_callable(lambda: time.sleep(0.02), device="cpu", warmup=2, repeats=100,
                        max_time_s=0.1, min_repeats=3)
    assert 3 <= res.repeats <= 6


def test_build_cases_rejects_unknown() -> None:
    with pytest.raises(ValueError):
        build_cases("huge")
    with pytest.raises(ValueError):
        build_cases("tiny", only=["nope"])


def test_standard_suite_shape() -> None:
    cases = build_cases("standard")
    keys = [c.key for c in cases]
    assert len(keys) == len(set(keys)), "duplicate case keys"
    assert cases[0].group == "ceilings"
    first_model = next(c for c in cases if c.kind == "model")
    assert first_model.params["model"] == "resnet50" and first_model.params["mode"] == "train"
    assert first_model.dtype == "fp16" and first_model.params["batch"] == 256
    model_ids = {c.params["model"] for c in cases if c.kind == "model"}
    assert model_ids == {"resnet50", "gpt2", "gpt2-medium", "gpt2-large", "bert-base", "bert-large"}
    convs = [c for c in cases if c.op == "conv2d"]
    assert len({(c.params["in_ch"], c.params["out_ch"], c.params["kernel"], c.params["stride"],
                 c.params["h"]) for c in convs}) == 23
    for which in ("conv2d_dgrad", "conv2d_wgrad"):  # every ResNet-50 conv at batch 128 and 256, fp16 and fp32
        assert sum(c.op == which for c in cases) == 23 * 2 * 2


# ---- with torch, on CPU -------------------------------------------------------------------
def _fast_tiny_cases() -> list[Case]:
    """The tiny suite minus real models whose library is installed (slow to build on CPU)."""
    slow = {"resnet50": "torchvision", "gpt2": "transformers"}
    return [c for c in build_cases("tiny", device_type="cpu")
            if c.kind != "model" or c.params["model"] not in slow
            or importlib.util.find_spec(slow[c.params["model"]]) is None]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    if not HAS_TORCH:
        pytest.skip("PyTorch is not installed")
    out = tmp_path_factory.mktemp("profile")
    cases = _fast_tiny_cases()
    summary = run_profile("tiny", out, device="cpu", cases=cases, log=quiet)
    return out, summary, cases


@needs_torch
def test_tiny_suite_schema(tiny_run: Run) -> None:
    out, summary, cases = tiny_run
    lines = (out / "measurements.jsonl").read_text().splitlines()
    assert len(lines) == len(cases)
    recs = [json.loads(line) for line in lines]
    for r in recs:
        assert REQUIRED <= set(r), r["key"]
        assert r["schema"] == SCHEMA and r["source"] == SOURCE and r["timer"] == "wall"
        assert r["kind"] in ("kernel", "model")
        assert r["device"]["type"] == "cpu" and r["software"]["torch"]
        assert r["run_id"] == summary.run_id
        assert ("error" in r) != ("latency_s" in r)
        if "latency_s" in r:
            assert r["latency_p10_s"] <= r["latency_s"] <= r["latency_p90_s"]
            assert r["repeats"] >= 1
    ok_kernels = {r["op"] for r in recs if r["kind"] == "kernel" and "latency_s" in r}
    assert {"matmul", "gemm_peak", "memcpy_d2d", "conv2d", "conv2d_dgrad", "conv2d_wgrad", "sdpa", "layer_norm",
            "rms_norm", "softmax", "gelu", "add", "mul", "embedding", "bmm", "linear"} <= ok_kernels
    device = json.loads((out / "device.json").read_text())
    assert device["device"]["type"] == "cpu" and device["software"]["python"]


@needs_torch
def test_matmul_records_flop_count(tiny_run: Run) -> None:
    out, _, _ = tiny_run
    recs = [r for r in read_jsonl(out / "measurements.jsonl") if r.op == "matmul"]
    assert recs
    for r in recs:
        m, n, k = r.params["m"], r.params["n"], r.params["k"]
        assert r.flop == 2 * m * n * k
        assert r.latency_s is not None
        assert r.achieved_flop_per_s == pytest.approx(2 * m * n * k / r.latency_s)
        assert r.bytes == (m * k + k * n + m * n) * 4


@needs_torch
def test_model_records(tiny_run: Run) -> None:
    out, _, _ = tiny_run
    recs = [r for r in read_jsonl(out / "measurements.jsonl") if r.kind == "model"]
    mlp = {r.params["mode"]: r for r in recs if r.params["model"] == "tiny-mlp"}
    assert set(mlp) == {"train", "inference"}
    for r in mlp.values():
        assert r.ok and r.throughput_per_s == pytest.approx(r.params["batch"] / r.latency_s)
    for r in recs:
        lib = {"resnet50": "torchvision", "gpt2": "transformers"}.get(r.params["model"])
        if lib and importlib.util.find_spec(lib) is None:
            assert r.error == f"{lib} not installed"


@needs_torch
def test_second_run_resumes_without_duplicates(tiny_run: Run) -> None:
    out, first, cases = tiny_run
    path = out / "measurements.jsonl"
    before = read_jsonl(path)
    summary = run_profile("tiny", out, device="cpu", cases=cases, log=quiet)
    after = read_jsonl(path)
    ok_before = [r.key for r in before if r.ok]
    assert summary.resumed == len(ok_before) and summary.measured == 0
    assert after[: len(before)] == before, "earlier records must never be rewritten"
    ok_keys = [r.key for r in after if r.ok]
    assert len(ok_keys) == len(set(ok_keys))
    assert all(not r.ok for r in after[len(before):])  # only failed cases are retried


@needs_torch
def test_torn_line_then_resume(tmp_path: Path) -> None:
    from perfforge.profiling.kernels import matmul_case

    cases = [matmul_case(8, 8, 8, "fp32", suite="tiny"), matmul_case(9, 9, 9, "fp32", suite="tiny")]
    run_profile("tiny", tmp_path, device="cpu", cases=cases[:1], log=quiet)
    with (tmp_path / "measurements.jsonl").open("a") as fh:
        fh.write('{"schema": "perfforge.measu')
    summary = run_profile("tiny", tmp_path, device="cpu", cases=cases, log=quiet)
    assert summary.resumed == 1 and summary.measured == 1
    with pytest.warns(UserWarning):
        assert [r.key for r in read_jsonl(tmp_path / "measurements.jsonl")] == [c.key for c in cases]


@needs_torch
def test_impossible_case_is_recorded_with_error(tmp_path: Path) -> None:
    from perfforge.profiling.kernels import matmul_case

    huge = matmul_case(1 << 24, 1 << 24, 1 << 24, "fp32", suite="tiny")  # ~1 PiB per operand
    summary = run_profile("tiny", tmp_path, device="cpu", cases=[huge], log=quiet)
    assert summary.failed == 1 and summary.measured == 0
    (rec,) = [json.loads(x) for x in (tmp_path / "measurements.jsonl").read_text().splitlines()]
    assert rec["key"] == huge.key and rec["error"] and "latency_s" not in rec
    assert rec["flop"] == 2.0 * (1 << 24) ** 3


@needs_torch
def test_budget_skips_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from perfforge.profiling.__main__ import main

    summary = run_profile("tiny", tmp_path / "a", device="cpu", max_seconds=0, log=quiet,
                          only=["ceilings"])
    assert summary.measured == 0 and len(summary.skipped_budget) == len(
        build_cases("tiny", ["ceilings"], "cpu"))
    assert main(["--suite", "tiny", "--out", str(tmp_path / "b"), "--device", "cpu",
                 "--only", "ceilings", "--repeats", "2"]) == 0
    recs = read_jsonl(tmp_path / "b" / "measurements.jsonl")
    assert recs and all(r.ok and r.group == "ceilings" and r.repeats == 2 for r in recs)
    assert "done:" in capsys.readouterr().out


def test_op_breakdown_table_on_cpu():
    torch = pytest.importorskip("torch")
    from perfforge.profiling.op_breakdown import case_key, op_table

    a, b = torch.randn(64, 32), torch.randn(32, 16)
    rows, total = op_table(lambda: torch.relu(a @ b), cuda=False)
    ops = {r["op"]: r for r in rows}
    assert "aten::mm" in ops and ops["aten::mm"]["shapes"] == [[64, 32], [32, 16]] and ops["aten::mm"]["calls"] == 1
    assert total == pytest.approx(sum(r["self_device_s"] for r in rows))
    key, params = case_key("gpt3-xl-neusight", "train", 1, 2048)
    assert params["neusight_label"] == "gpt3_xl-train-2048-1" and params["exclude_optimizer"]
    assert key.startswith("model/gpt3-xl-neusight_train_ops/fp32/")


def test_op_breakdown_refuses_big_models_on_a_cpu():
    torch = pytest.importorskip("torch")
    from perfforge.core.errors import ConfigError
    from perfforge.profiling.op_breakdown import measure_records

    with pytest.raises(ConfigError, match="run it on a GPU"):
        measure_records("standard", torch.device("cpu"), None, set(), lambda r: None, lambda s: None)


def test_op_breakdown_tiny_models_end_to_end(tmp_path):
    """The tiny breakdown suite on a CPU: one record per case, each with its per-op table (needs transformers)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from perfforge.profiling.runner import run_profile

    summary = run_profile("tiny", tmp_path, device="cpu", only=["breakdown"], log=lambda s: None)
    recs = [json.loads(line) for line in (tmp_path / "measurements.jsonl").read_text().splitlines()]
    assert summary.measured == 4 and len(recs) == 4 and not summary.failed
    train = next(r for r in recs if r["params"]["model"] == "tiny-gpt2" and r["params"]["mode"] == "train")
    ops = {o["op"] for o in train["extra"]["ops"]}
    assert {"aten::mm", "aten::bmm", "aten::_softmax", "aten::native_layer_norm_backward"} <= ops
    assert train["group"] == "breakdown" and train["params"]["exclude_optimizer"]
    # resumable: a second run measures nothing new
    again = run_profile("tiny", tmp_path, device="cpu", only=["breakdown"], log=lambda s: None)
    assert again.measured == 0


def test_whole_model_cases_can_record_their_op_breakdown(tmp_path):
    pytest.importorskip("torch")
    from perfforge.profiling.models import model_cases
    from perfforge.profiling.runner import run_profile

    mlp = [c for c in model_cases("tiny") if c.params["model"] == "tiny-mlp"]
    run_profile("tiny", tmp_path, device="cpu", cases=mlp, log=lambda s: None, op_breakdown=True)
    recs = [json.loads(line) for line in (tmp_path / "measurements.jsonl").read_text().splitlines()]
    assert len(recs) == 2
    for r in recs:
        ops = {o["op"] for o in r["extra"]["ops"]}
        assert "aten::addmm" in ops and r["extra"]["kernel_sum_s"] > 0


def test_conv_backward_records_map_to_the_training_steps_backward_ops():
    """A measured dgrad/wgrad record becomes the op perfforge's backward rule derives for that conv: the
    forward's FLOPs (by hand: 2 * N * Cout * Ho * Wo * Cin * k * k) in the gradient's phase."""
    from perfforge.evaluation.measured import kernel_op
    from perfforge.workload.op import OpKind, Phase

    p = {"batch": 8, "in_ch": 64, "out_ch": 128, "h": 28, "w": 28, "kernel": 3, "stride": 2, "padding": 1}
    flops = 2.0 * 8 * 128 * 14 * 14 * 64 * 9
    dgrad = kernel_op({"op": "conv2d_dgrad", "params": p, "dtype": "fp16"})
    wgrad = kernel_op({"op": "conv2d_wgrad", "params": p, "dtype": "fp16"})
    assert dgrad.kind is wgrad.kind is OpKind.CONV2D
    assert dgrad.flops == pytest.approx(flops) and wgrad.flops == pytest.approx(flops)
    assert dgrad.phase is Phase.BACKWARD_INPUT and wgrad.phase is Phase.BACKWARD_WEIGHT
    assert wgrad.bytes_written == 128 * 64 * 9 * 2  # the fp16 weight gradient


# ---- the `shapes` group: random kernels for adapting the learned model -----------------------
def test_shapes_group_is_seeded_capped_and_asked_for_by_name() -> None:
    from perfforge.profiling.kernels import SHAPES_PER_OP, SHAPES_RANGES

    cases = build_cases("standard", only=["shapes"])
    assert [c.key for c in cases] == [c.key for c in build_cases("standard", only=["shapes"])]  # resumable
    assert len({c.key for c in cases}) == len(cases) == 2 * sum(SHAPES_PER_OP["standard"].values())
    assert {c.group for c in cases} == {"shapes"} and not any(c.group == "shapes" for c in build_cases("standard"))
    caps = SHAPES_RANGES["standard"]
    for c in cases:
        p = c.params
        if c.op == "bmm":
            assert c.flop == 2.0 * p["b"] * p["m"] * p["n"] * p["k"] <= caps["max_flop"]
            assert p["b"] * max(p["m"] * p["k"], p["k"] * p["n"], p["m"] * p["n"]) <= caps["max_elems"]
        elif c.op in ("layer_norm", "softmax"):
            assert p["rows"] * p["cols"] <= caps["max_elems"]


@needs_torch
def test_shapes_records_become_learned_model_samples(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    from perfforge.engines.learned.dataset import samples_from_records
    from perfforge.evaluation.measured import read_measurements

    summary = run_profile("tiny", tmp_path, device="cpu", only=["shapes"], log=quiet)
    assert summary.measured == sum(1 for _ in build_cases("tiny", only=["shapes"])) and summary.failed == 0
    records = read_measurements(tmp_path / "measurements.jsonl")
    for r in records:  # as if measured on a catalog GPU: every record maps to an op the model has a family for
        r["device"] = {**r["device"], "name": "NVIDIA H100 80GB HBM3"}
    samples = samples_from_records(records)
    assert sum(len(s) for s in samples.values()) == len(records)
    assert set(samples["gemm"].op_class) == {"BMM", "FC"}
