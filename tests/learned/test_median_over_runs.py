"""Repeated measurements of one kernel on one GPU model become one training sample (their median)."""

from perfforge.engines.learned.dataset import median_over_runs


def _rec(key: str, latency_s: float, gpu: str = "NVIDIA H100 80GB HBM3", kind: str = "kernel", run: str = "r"):
    return {"key": key, "kind": kind, "latency_s": latency_s, "device": {"name": gpu}, "run_id": run, "extra": {}}


def test_three_runs_become_their_median_and_an_outlier_is_outvoted():
    # a slow host once read a 10 us GEMM as 30 us: two boards that agree outvote it
    recs = [_rec("kernel/matmul/fp16/m=64", 10e-6, run="a"), _rec("kernel/matmul/fp16/m=64", 30e-6, run="b"),
            _rec("kernel/matmul/fp16/m=64", 11e-6, run="c")]
    (out,) = median_over_runs(recs)
    assert out["latency_s"] == 11e-6
    assert out["extra"]["runs"] == 3
    assert out["run_id"] == "a"
    assert recs[1]["latency_s"] == 30e-6   # the input is not modified


def test_two_runs_average_and_single_runs_pass_unchanged():
    recs = [_rec("k1", 10e-6), _rec("k1", 20e-6), _rec("k2", 5e-6)]
    out = {r["key"]: r for r in median_over_runs(recs)}
    assert abs(out["k1"]["latency_s"] - 15e-6) < 1e-15
    assert out["k2"] is recs[2]


def test_gpu_models_and_non_kernel_records_stay_apart():
    recs = [_rec("k", 10e-6), _rec("k", 40e-6, gpu="NVIDIA H200"),
            _rec("model/resnet50_train", 0.05, kind="model"), _rec("model/resnet50_train", 0.06, kind="model")]
    out = median_over_runs(recs)
    assert sorted(r["latency_s"] for r in out if r["kind"] == "kernel") == [10e-6, 40e-6]
    assert len([r for r in out if r["kind"] == "model"]) == 2   # whole-model records are not merged


def test_a_users_own_runs_are_not_outvoted_by_the_repositorys(tmp_path):
    """`learn train --measured RUN` on a GPU the repository also measured: the user's record of a case is kept
    next to the repository's median, not merged into it."""
    import gzip
    import json
    from pathlib import Path

    from perfforge.engines.learned.dataset import load_records

    root = Path(__file__).resolve().parents[2] / "data/ground_truth"
    key = "kernel/matmul/fp16/k=4096,m=4096,n=4096"
    committed = [json.loads(line) for line in
                 gzip.open(root / "measured/h100-sxm-20261126-run1/measurements.jsonl.gz", "rt")]
    mine = {**next(r for r in committed if r["key"] == key), "latency_s": 1.0, "run_id": "mine"}
    (tmp_path / "measurements.jsonl").write_text(json.dumps(mine) + "\n")
    recs = [r for r in load_records(root, scale=1.0, extra=[tmp_path]) if r.get("key") == key]
    h100 = [r for r in recs if r["device"]["name"] == mine["device"]["name"]]
    assert sorted(r.get("run_id") == "mine" for r in h100) == [False, True]   # the repository's median, and mine
    assert next(r for r in recs if r.get("run_id") == "mine")["latency_s"] == 1.0
    # the four committed H100 runs of the kernel grid (three standard runs and one behind the launch guard)
    assert next(r for r in h100 if r.get("run_id") != "mine")["extra"]["runs"] == 4
