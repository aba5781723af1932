"""NCHW convolutions: the shipped conv_nchw_efficiency refits from the committed H100 measurements, slows only
convolutions in tensor-core dtypes, and reaches published rows through their memory_format."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfforge import api
from perfforge.engines.analytical.calibration import load_calibration
from perfforge.evaluation.calibrate import fit_conv_nchw_efficiency
from perfforge.evaluation.measured import read_measurements
from perfforge.evaluation.published import load_published

ROOT = Path(__file__).resolve().parents[2]
LAYOUTS = ROOT / "data/ground_truth/measured/h100-resnet-layouts-20261126/measurements.jsonl.gz"


def test_shipped_efficiency_refits_from_the_measurements():
    fit = fit_conv_nchw_efficiency(read_measurements(LAYOUTS), "h100-sxm5-80gb")
    shipped = load_calibration("hopper").conv_nchw_efficiency
    assert set(fit) == {"tf32", "fp16", "bf16"}          # fp32 runs on CUDA cores: NCHW is no slower there
    for dtype, f in fit.items():
        assert f["efficiency"] == pytest.approx(shipped[dtype], abs=5e-4)
        assert f["measured_ratio"] > 1.3


def _step(dtype: str, fmt: str, **kw) -> object:
    return api.predict("resnet50", "h100-sxm5-80gb", mode="train", dtype=dtype, batch=256,
                       optimizer="sgd_momentum", memory_format=fmt, **kw)


def test_nchw_reproduces_the_measured_ratio_it_was_fitted_to():
    fit = fit_conv_nchw_efficiency(read_measurements(LAYOUTS), "h100-sxm5-80gb")
    for dtype in ("tf32", "fp16"):
        ratio = _step(dtype, "nchw").step_time_s / _step(dtype, "nhwc").step_time_s
        assert ratio == pytest.approx(fit[dtype]["measured_ratio"], rel=2e-3)


def test_only_convolutions_in_tensor_core_dtypes_slow_down():
    nhwc, nchw = _step("fp16", "nhwc"), _step("fp16", "nchw")
    by_kind = lambda r: {g["kind"]: g["time_s"] for g in r.group_by("kind")}  # noqa: E731
    a, b = by_kind(nhwc), by_kind(nchw)
    assert b["conv2d"] > a["conv2d"]
    assert all(b[k] == pytest.approx(v) for k, v in a.items() if k != "conv2d")
    assert _step("fp32", "nchw").step_time_s == pytest.approx(_step("fp32", "nhwc").step_time_s)
    # the learned backend gets the same layout factor on its convolution times
    assert _step("tf32", "nchw", backend="learned").step_time_s > _step("tf32", "nhwc", backend="learned").step_time_s


def test_published_rows_carry_their_recipes_layout():
    rows = {r.id: r for r in load_published(ROOT / "data/ground_truth/published.yaml")}
    assert rows["dle-pyt-rn50-a100-80gb-tf32-1gpu"].memory_format == "nchw"
    assert rows["dle-pyt-rn50-a100-80gb-amp-1gpu"].memory_format == "nhwc"


def test_bad_memory_format_names_the_field():
    from perfforge.core.errors import PerfforgeError

    with pytest.raises(PerfforgeError, match="memory_format"):
        _step("tf32", "ncwh")


def test_core_suite_predicts_a_second_boards_nchw_runs_as_nchw():
    """The layout run on another H100 (2026-11-27) is out of sample: its NCHW rows are predicted in NCHW, and the
    predicted NCHW/NHWC ratio matches the ratio measured there (the fit saw only the 2026-11-26 board)."""
    from perfforge.evaluation.harness import _run, plan
    from perfforge.evaluation.suite import load_suite

    tasks = [t for t in plan(load_suite("core"), ROOT) if "h100-resnet-layouts-20261127" in t.row.source
             and t.row.variant == "zoo"]
    assert len(tasks) == 8
    rows = [_run(t) for t in tasks]
    by = {(r.dtype, r.extra.get("memory_format", "nhwc")): r for r in rows}
    assert sum(fmt == "nchw" for _, fmt in by) == 4
    for dtype in ("tf32", "fp16", "bf16"):
        measured = by[dtype, "nchw"].measured_s / by[dtype, "nhwc"].measured_s
        predicted = by[dtype, "nchw"].predicted_s / by[dtype, "nhwc"].predicted_s
        assert measured > 1.3 and predicted == pytest.approx(measured, rel=0.03)
