"""Input pipeline: the profiler's JPEG measurements and the step bound the engines apply."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfforge.api import run_scenario
from perfforge.core.errors import ConfigError
from perfforge.evaluation.calibrate import fit_per_worker_rate
from perfforge.profiling import input_pipeline as ip
from perfforge.profiling import jpegs
from perfforge.scenario import make_scenario
from perfforge.system.input_pipeline import DEFAULT_PRESET, apply_input_bound, loader_preset

ROOT = Path(__file__).resolve().parents[2]
MEASURED = ROOT / "data" / "ground_truth" / "measured"


def _records(*runs: str) -> list[dict]:
    out = []
    for run in runs:
        with gzip.open(MEASURED / run / "measurements.jsonl.gz", "rt") as fh:
            out += [json.loads(line) for line in fh if line.strip()]
    return out


def test_preset_rate_is_the_median_of_the_committed_measurements() -> None:
    recs = _records("h200-input-20261126-run1", "h200-input-20261126-run2")
    assert sum(r["op"] == "jpeg_train_pipeline" for r in recs) == 14
    assert fit_per_worker_rate(recs) == pytest.approx(loader_preset().per_worker_samples_per_s, rel=5e-3)
    assert "h200-input-20261126" in loader_preset().source


def test_fit_needs_records() -> None:
    with pytest.raises(ValueError, match="no successful"):
        fit_per_worker_rate([{"op": "matmul"}])


def _resnet(**kw: object):
    base = dict(model="resnet50", hardware="h200-sxm-141gb", mode="train", batch=256, dtype="fp16",
                optimizer="sgd_momentum")
    base.update(kw)
    return run_scenario(make_scenario(**base))


def test_input_bound_by_hand() -> None:
    free = _resnet()
    # 4 workers at 100 samples/s each need 256 / 400 = 0.64 s per step, far above the GPU's step
    fed = _resnet(loader_workers=4, loader_rate=100.0)
    assert fed.step_time_s == pytest.approx(0.64)
    assert fed.extra["input_bound"] and fed.extra["input_wait_s"] == pytest.approx(0.64 - free.step_time_s)
    idle = [r for r in fed.breakdown if r.name == "input-bound idle"]
    assert len(idle) == 1 and idle[0].start_s == pytest.approx(free.step_time_s)
    assert fed.provenance["input_pipeline"] == "--loader-rate 100"
    # a fast loader changes nothing but the reported input time
    fast = _resnet(loader_workers=64, loader_rate=1e6)
    assert fast.step_time_s == free.step_time_s and not fast.extra["input_bound"]
    # the default rate is the measured preset
    default = _resnet(loader_workers=2)
    rate = loader_preset().per_worker_samples_per_s
    assert default.step_time_s == pytest.approx(256 / (2 * rate))
    assert default.provenance["input_pipeline"] == DEFAULT_PRESET


def test_loader_fields_are_checked_together() -> None:
    with pytest.raises(ConfigError, match="loader_workers bounds training steps"):
        make_scenario(model="resnet50", hardware="h200-sxm-141gb", batch=8, loader_workers=1)
    with pytest.raises(ConfigError, match="loader_rate needs loader_workers"):
        make_scenario(model="resnet50", hardware="h200-sxm-141gb", mode="train", loader_rate=100.0)


def test_data_parallel_step_waits_for_each_gpus_loader() -> None:
    res = _resnet(hardware="a100-sxm4-80gb", engine="distributed", gpus=8, loader_workers=16, loader_rate=130.0)
    assert res.step_time_s == pytest.approx(256 / (16 * 130.0))
    assert res.throughput_samples_per_s == pytest.approx(8 * 16 * 130.0)
    assert res.extra["comm_share"] == pytest.approx(res.extra["comm_s"] / res.step_time_s)


@settings(max_examples=30, deadline=None)
@given(step=st.floats(1e-4, 1.0), workers=st.integers(1, 64), rate=st.floats(1.0, 1e4), batch=st.integers(1, 512))
def test_more_workers_are_never_slower(step: float, workers: int, rate: float, batch: int) -> None:
    base = replace(_BASE, step_time_s=step)
    fewer = apply_input_bound(base, workers, rate, batch)
    more = apply_input_bound(base, workers + 1, rate, batch)
    assert more.step_time_s <= fewer.step_time_s
    assert fewer.step_time_s >= step and fewer.step_time_s == pytest.approx(max(step, batch / (workers * rate)))
    assert apply_input_bound(base, None, rate, batch) is base


_BASE = _resnet(hardware="a100-sxm4-80gb", batch=32)


def test_bad_loader_inputs_name_the_field() -> None:
    with pytest.raises(ConfigError, match="loader_workers"):
        make_scenario(model="resnet50", hardware="a100-sxm4-80gb", mode="train", loader_workers=0)
    with pytest.raises(ConfigError, match="loader_rate"):
        make_scenario(model="resnet50", hardware="a100-sxm4-80gb", mode="train", loader_workers=2, loader_rate=-1)
    with pytest.raises(ConfigError, match="loader_workers"):
        run_scenario(make_scenario(model="gpt2", hardware="a100-sxm4-80gb", mode="train", engine="distributed",
                                   gpus=2, tp=2, loader_workers=4))


# ---- the profiler side -----------------------------------------------------------------------
def test_synthetic_jpegs_look_like_imagenet_files(tmp_path: Path) -> None:
    stats = jpegs.synth_jpeg_dataset(tmp_path, 10, processes=1)
    files = jpegs.list_images(tmp_path)
    assert len(files) == 10 and stats.images == 10
    # ImageNet's train archive: 138 GB / 1,281,167 images = 108 kB a file (see the module docstring)
    assert 70e3 < stats.mean_bytes < 160e3
    again = jpegs.synth_jpeg_dataset(tmp_path, 10)  # reused, not rewritten
    assert again == stats


@settings(max_examples=50, deadline=None)
@given(w=st.integers(1, 3000), h=st.integers(1, 3000), seed=st.integers(0, 2**32 - 1))
def test_crop_box_stays_inside_the_image(w: int, h: int, seed: int) -> None:
    x, y, cw, ch = jpegs._crop_box(w, h, np.random.default_rng(seed))
    assert 0 <= x and 0 <= y and 0 < cw and 0 < ch and x + cw <= w and y + ch <= h


def test_pipeline_produces_training_crops(tmp_path: Path) -> None:
    jpegs.synth_jpeg_dataset(tmp_path, 4, processes=1)
    fn, name = jpegs.make_transform("pil")
    assert name == "pil"
    out = fn(jpegs.list_images(tmp_path)[0], np.random.default_rng(0))
    assert out.shape == (jpegs.CROP, jpegs.CROP, 3) and out.dtype == np.uint8
    with pytest.raises(ValueError, match="unknown transform backend"):
        jpegs.make_transform("opencv")
    rate = ip.cpu_pipeline_rate(jpegs.list_images(tmp_path), 1, seconds=0.2, backend="pil")
    assert rate["images"] > 0 and rate["images_per_s"] > 0
    with pytest.raises(ValueError, match="workers"):
        ip.cpu_pipeline_rate(jpegs.list_images(tmp_path), 0)


def test_profile_input_group_writes_and_resumes(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from perfforge.profiling import read_jsonl, run_profile

    logs: list[str] = []
    first = run_profile("tiny", tmp_path, device="cpu", only=["input"], log=logs.append)
    recs = read_jsonl(tmp_path / "measurements.jsonl")
    assert first.measured == len(recs) == len(ip.CPU_WORKERS["tiny"]) and first.failed == 0
    assert all(r.group == "input" and r.ok and r.throughput_per_s for r in recs)
    assert {r.params["workers"] for r in recs} == set(ip.CPU_WORKERS["tiny"])
    second = run_profile("tiny", tmp_path, device="cpu", only=["input"], log=logs.append)
    assert second.measured == 0 and len(read_jsonl(tmp_path / "measurements.jsonl")) == len(recs)
    # the default groups leave the input pipeline out: it writes a JPEG set
    from perfforge.profiling.runner import build_cases

    assert all(c.group != "input" for c in build_cases("tiny", None, "cpu"))


def test_harness_predicts_loader_fed_steps_with_the_hosts_own_rate() -> None:
    from perfforge.evaluation.harness import _run, plan
    from perfforge.evaluation.suite import load_suite

    suite = load_suite("seed")
    tasks = [t for t in plan(suite, ROOT) if t.row.extra.get("loader_workers") and t.row.engine == "analytical"
             and t.row.backend == "analytical"]
    assert len(tasks) == 20   # 5 loader-fed cases on each of four hosts
    rates = {run: fit_per_worker_rate(_records(run)) for run in
             ("h200-input-20261126-run1", "h200-input-20261126-run2", "h100-input-20261126-run1",
              "h100-input-20261127-run1")}
    for t in tasks:
        run = next(r for r in rates if r in t.row.source)
        assert t.row.extra["loader_rate"] == pytest.approx(rates[run])
    row = _run(next(t for t in tasks if t.row.extra["loader_workers"] == 2))
    # two workers are far slower than either GPU: the prediction is the loader's time exactly
    assert row.predicted_s == pytest.approx(256 / (2 * row.extra["loader_rate"]))


def test_calibrate_fits_the_hosts_loader_rate_and_train_uses_it(tmp_path: Path) -> None:
    from perfforge.evaluation.calibrate import calibrate

    path = MEASURED / "h100-input-20261126-run1" / "measurements.jsonl.gz"
    block, summary = calibrate(str(path))
    rate = fit_per_worker_rate(_records("h100-input-20261126-run1"))
    assert summary["kernel_cases"] == 0 and block == {"loader_samples_per_s_per_worker": round(rate, 1)}
    cal = tmp_path / "host.yaml"
    cal.write_text(f"schema: perfforge.calibration/1\narchitectures:\n  hopper:\n"
                   f"    loader_samples_per_s_per_worker: {block['loader_samples_per_s_per_worker']}\n")
    res = _resnet(hardware="h100-sxm5-80gb", loader_workers=2, calibration=str(cal))
    assert res.step_time_s == pytest.approx(256 / (2 * block["loader_samples_per_s_per_worker"]))
    assert res.provenance["input_pipeline"].startswith("calibration")
    # the scenario's own rate wins over the calibration's
    res = _resnet(hardware="h100-sxm5-80gb", loader_workers=2, loader_rate=50.0, calibration=str(cal))
    assert res.step_time_s == pytest.approx(256 / 100.0)
    # `perfforge calibrate --out` files the host's rate under `default`: it applies to any GPU on that host
    from perfforge.cli.main import main

    out = tmp_path / "fitted.yaml"
    assert main(["calibrate", str(path), "--out", str(out)]) == 0
    import yaml

    doc = yaml.safe_load(out.read_text())
    assert doc["architectures"] == {"default": {"loader_samples_per_s_per_worker": block["loader_samples_per_s_per_worker"]}}
    a100 = _resnet(hardware="a100-sxm4-80gb", loader_workers=2, calibration=str(out))
    assert a100.step_time_s == pytest.approx(256 / (2 * block["loader_samples_per_s_per_worker"]))
