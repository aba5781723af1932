"""FP32 3x3 stride-1 convolutions (cuDNN's Winograd): the shipped per-architecture speed-up is what the fit
gives on NeuSight's held-out-excluded kernels, and the roofline applies it to exactly those convolutions."""

from pathlib import Path

import pytest

from perfforge.core.dtypes import DType
from perfforge.engines.analytical.calibration import load_calibration
from perfforge.engines.analytical.roofline import op_time
from perfforge.evaluation.calibrate import fit_conv3x3_fp32_speedup, neusight_conv_fit_cases
from perfforge.system.catalog import get_device
from perfforge.workload import layers as L
from perfforge.workload.backward import backward_ops

NEUSIGHT = Path(__file__).resolve().parents[2] / "data/ground_truth/neusight"


@pytest.mark.parametrize("arch", ["pascal", "volta", "turing", "ampere"])
def test_shipped_speedups_refit_from_neusight(arch):
    groups = neusight_conv_fit_cases(str(NEUSIGHT))[arch]
    fit = fit_conv3x3_fp32_speedup(groups, load_calibration(arch))
    assert fit["speedup"] == pytest.approx(load_calibration(arch).conv3x3_fp32_speedup)
    assert fit["after"] < fit["before"]


def test_hopper_keeps_the_prior():
    assert load_calibration("hopper").conv3x3_fp32_speedup == 1.0


def _conv(kernel: int, stride: int, dtype: DType = DType.FP32):
    conv, _ = L.conv2d("c", 128, 256, (28, 28), 256, kernel, dtype, stride=stride, padding=kernel // 2)
    return conv


def test_roofline_applies_it_to_fp32_3x3_stride1_convs_forward_and_backward_only():
    v100 = get_device("v100-sxm2-16gb")
    cal = load_calibration("volta")
    off = cal.model_copy(update={"conv3x3_fp32_speedup": 1.0})
    s = cal.conv3x3_fp32_speedup
    conv = _conv(3, 1)
    for op in (conv, *backward_ops(conv)):  # compute-bound at this size: compute time divides by s (by hand)
        on_t, off_t = op_time(op, v100, cal, DType.FP32), op_time(op, v100, off, DType.FP32)
        assert on_t.compute_s == pytest.approx(off_t.compute_s / s)
    for op, dt in ((_conv(1, 1), DType.FP32), (_conv(3, 2), DType.FP32), (_conv(3, 1, DType.FP16), DType.FP16),
                   (_conv(3, 1), DType.TF32)):
        assert op_time(op, v100, cal, dt).time_s == pytest.approx(op_time(op, v100, off, dt).time_s)
