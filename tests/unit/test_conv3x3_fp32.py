"""FP32 on CUDA cores: the shipped per-architecture GEMM scale and 3x3-conv (Winograd) speed-up are what the fits
give on NeuSight's kernels minus the rows the kernels suite scores, and the roofline applies them to exactly the
FP32 GEMMs and FP32 3x3 stride-1 convolutions."""

from pathlib import Path

import pytest

from perfforge.core.dtypes import DType
from perfforge.engines.analytical.calibration import load_calibration
from perfforge.engines.analytical.roofline import op_time
from perfforge.evaluation.calibrate import fit_conv3x3_fp32_speedup, fit_fp32_gemm_scale, neusight_fit_cases
from perfforge.system.catalog import get_device
from perfforge.workload import layers as L
from perfforge.workload.backward import backward_ops

NEUSIGHT = Path(__file__).resolve().parents[2] / "data/ground_truth/neusight"


@pytest.fixture(scope="module")
def neusight_groups():
    return (neusight_fit_cases(str(NEUSIGHT), ["bmm", "linear"]), neusight_fit_cases(str(NEUSIGHT), ["conv"]))


@pytest.mark.parametrize("arch", ["pascal", "volta", "turing", "ampere"])
def test_shipped_constants_refit_from_neusight(arch, neusight_groups):
    gemms, convs = neusight_groups
    shipped = load_calibration(arch)
    neutral = shipped.model_copy(update={"fp32_gemm_scale": 1.0, "conv3x3_fp32_speedup": 1.0})
    gemm = fit_fp32_gemm_scale(gemms[arch], neutral)
    assert gemm["value"] == pytest.approx(shipped.fp32_gemm_scale) and gemm["after"] <= gemm["before"]
    conv = fit_conv3x3_fp32_speedup(convs[arch], neutral.model_copy(update={"fp32_gemm_scale": gemm["value"]}))
    assert conv["value"] == pytest.approx(shipped.conv3x3_fp32_speedup) and conv["after"] < conv["before"]


def test_ada_gemm_scale_refits_from_neusights_l4_kernels(neusight_groups):
    gemms, convs = neusight_groups
    assert "ada" not in convs  # no Ada convolution is measured: the 3x3 speed-up keeps its prior
    shipped = load_calibration("ada")
    gemm = fit_fp32_gemm_scale(gemms["ada"], shipped.model_copy(update={"fp32_gemm_scale": 1.0}))
    assert gemm["value"] == pytest.approx(shipped.fp32_gemm_scale) and gemm["after"] < gemm["before"] / 2
    assert shipped.conv3x3_fp32_speedup == 1.0


def test_hopper_keeps_the_priors():
    cal = load_calibration("hopper")
    assert cal.conv3x3_fp32_speedup == cal.fp32_gemm_scale == 1.0


def _conv(kernel: int, stride: int, dtype: DType = DType.FP32):
    conv, _ = L.conv2d("c", 128, 256, (28, 28), 256, kernel, dtype, stride=stride, padding=kernel // 2)
    return conv


def test_roofline_applies_it_to_fp32_3x3_stride1_convs_forward_and_backward_only():
    v100 = get_device("v100-sxm2-16gb")
    cal = load_calibration("volta")
    off = cal.model_copy(update={"conv3x3_fp32_speedup": 1.0})
    assert cal.conv3x3_fp32_speedup > 1.0
    s = cal.conv3x3_fp32_speedup
    conv = _conv(3, 1)
    for op in (conv, *backward_ops(conv)):  # compute-bound at this size: compute time divides by s (by hand)
        on_t, off_t = op_time(op, v100, cal, DType.FP32), op_time(op, v100, off, DType.FP32)
        assert on_t.compute_s == pytest.approx(off_t.compute_s / s)
    for op, dt in ((_conv(1, 1), DType.FP32), (_conv(3, 2), DType.FP32), (_conv(3, 1, DType.FP16), DType.FP16),
                   (_conv(3, 1), DType.TF32)):
        assert op_time(op, v100, cal, dt).time_s == pytest.approx(op_time(op, v100, off, dt).time_s)


def test_fp32_gemm_scale_applies_to_fp32_only_and_never_beats_the_peak():
    v100 = get_device("v100-sxm2-16gb")
    cal = load_calibration("volta")
    off = cal.model_copy(update={"fp32_gemm_scale": 1.0})
    gemm = L.linear("g", 4096, 4096, 4096, DType.FP32, bias=False)
    on_t, off_t = op_time(gemm, v100, cal, DType.FP32), op_time(gemm, v100, off, DType.FP32)
    assert on_t.compute_efficiency == pytest.approx(min(1.0, off_t.compute_efficiency * cal.fp32_gemm_scale))
    huge = cal.model_copy(update={"fp32_gemm_scale": 4.0})
    assert op_time(gemm, v100, huge, DType.FP32).compute_efficiency == 1.0  # capped at the datasheet peak
    half = L.linear("h", 4096, 4096, 4096, DType.FP16, bias=False)
    assert op_time(half, v100, cal, DType.FP16).time_s == op_time(half, v100, off, DType.FP16).time_s
