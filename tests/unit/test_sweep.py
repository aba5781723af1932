"""Sweeps: grid expansion, resumable store, interruption safety, executors, bad specs."""

import sqlite3

import pytest

from perfforge.core.errors import ConfigError
from perfforge.evaluation.sweep import (
    SweepSpec,
    SweepStore,
    load_sweep,
    point_key,
    run_sweep,
)

SPEC = SweepSpec(name="t", grid={"hardware": ["a100-sxm4-80gb", "h100-sxm5-80gb"], "batch": [8, 16, 32]},
                 fixed={"model": "resnet50", "mode": "train", "optimizer": "sgd_momentum"})


def test_grid_is_cartesian_and_keys_are_stable():
    pts = SPEC.points()
    assert len(pts) == 6 and len({point_key(p) for p in pts}) == 6
    assert point_key({"a": 1, "b": 2}) == point_key({"b": 2, "a": 1})


def test_resume_after_interruption(tmp_path):
    path = tmp_path / "s.sqlite"
    store = SweepStore(path)

    class Stop(Exception):
        pass

    def stop_after_two(done, total):
        if done >= 2:
            raise Stop

    with pytest.raises(Stop):
        run_sweep(SPEC, store, jobs=1, chunk=1, progress=stop_after_two)
    assert len(store.rows("t")) == 2  # what was committed before the interruption is kept whole
    summary = run_sweep(SPEC, store, jobs=1, chunk=1)
    assert (summary.skipped, summary.computed) == (2, 4)
    rows = store.rows("t")
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
    # a faster device is never slower (small batches are host-bound on both, hence <=)
    by = {(r["point"]["hardware"], r["point"]["batch"]): r["step_time_s"] for r in rows}
    assert all(by[("h100-sxm5-80gb", b)] <= by[("a100-sxm4-80gb", b)] for b in (8, 16, 32))
    store.close()
    with sqlite3.connect(path) as db:  # the file is a valid SQLite database that other tools can read
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_process_pool_matches_serial(tmp_path):
    a, b = SweepStore(tmp_path / "a.sqlite"), SweepStore(tmp_path / "b.sqlite")
    run_sweep(SPEC, a, jobs=1)
    run_sweep(SPEC, b, jobs=2, chunk=2)
    ta = {r["key"]: r["step_time_s"] for r in a.rows("t")}
    tb = {r["key"]: r["step_time_s"] for r in b.rows("t")}
    assert ta == tb


def test_bad_points_become_error_rows(tmp_path):
    spec = SweepSpec(name="bad", grid={"hardware": ["a100-sxm4-80gb", "not-a-gpu"]}, fixed={"model": "gpt2"})
    store = SweepStore(tmp_path / "s.sqlite")
    summary = run_sweep(spec, store, jobs=1)
    assert summary.errors == 1
    err = [r for r in store.rows("bad") if r["status"] == "error"][0]
    assert "unknown hardware 'not-a-gpu'" in err["error"]


def test_bad_specs(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("name: x\ngrid: {batchsize: [1, 2]}\n")
    with pytest.raises(ConfigError, match="unknown scenario field"):
        load_sweep(f)
    f.write_text("name: x\ngrid: {batch: []}\n")
    with pytest.raises(ConfigError, match="no values"):
        load_sweep(f)
    with pytest.raises(ConfigError, match="executor"):
        run_sweep(SPEC, SweepStore(tmp_path / "s.sqlite"), executor="slurm")
    junk = tmp_path / "junk.sqlite"
    junk.write_text("this is not a database")
    with pytest.raises(ConfigError, match="not a perfforge sweep store"):
        SweepStore(junk)


def test_ray_executor_matches_local(tmp_path):
    pytest.importorskip("ray", reason="the ray executor needs the ray package")
    local, remote = SweepStore(tmp_path / "l.sqlite"), SweepStore(tmp_path / "r.sqlite")
    run_sweep(SPEC, local, jobs=1)
    summary = run_sweep(SPEC, remote, executor="ray", jobs=2, chunk=2)
    assert summary.computed == 6 and summary.errors == 0
    assert {r["key"]: r["step_time_s"] for r in local.rows("t")} == {r["key"]: r["step_time_s"] for r in remote.rows("t")}


def test_sweep_report_names_the_engine_that_ran(tmp_path):
    """The report says which engine predicted the points: the analytical default unless the spec names one."""
    import subprocess
    import sys

    spec = tmp_path / "sweep.yaml"
    spec.write_text("name: amp-grid\ngrid:\n  amp: [false, true]\nfixed:\n  model: gpt2\n  hardware: h100-sxm5-80gb\n"
                    "  mode: train\n  batch: 2\n  seq: 128\n  dtype: bf16\n")
    report = tmp_path / "report.md"
    out = subprocess.run([sys.executable, "-m", "perfforge", "sweep", str(spec), "--store", str(tmp_path / "s.sqlite"),
                          "--report", str(report)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    text = report.read_text()
    assert "predictions of perfforge's analytical engine" in text
    rows = [line for line in text.splitlines() if line.startswith(("| False", "| True"))]
    assert len(rows) == 2 and float(rows[1].split("|")[2]) > float(rows[0].split("|")[2])  # autocast is slower
