"""Memory-bound kernels: pointwise ops stream at ``memory_max_efficiency``; norms, softmax and training batch norm at
``normalization_memory_efficiency`` of that. The shipped constants are what the fits give on the measured kernels,
and the roofline applies the second one to exactly the normalisation-class kernels."""

from pathlib import Path

import pytest

from perfforge import api
from perfforge.core.dtypes import DType
from perfforge.engines.analytical.calibration import load_calibration
from perfforge.engines.analytical.roofline import is_normalization, op_time
from perfforge.evaluation.calibrate import (
    MEMORY_FIT_MIN_BYTES,
    calibrate,
    fit_memory_efficiencies,
    neusight_fit_cases,
)
from perfforge.system.catalog import get_device
from perfforge.workload import layers as L
from perfforge.workload.backward import backward_ops
from perfforge.workload.op import Phase

ROOT = Path(__file__).resolve().parents[2]
NEUSIGHT = ROOT / "data/ground_truth/neusight"
H100_RUN = ROOT / "data/ground_truth/measured/h100-sxm-20261126-run1/measurements.jsonl.gz"
VECTOR_OPS = ["add", "addu", "mul", "mulu", "div", "divu", "pow", "powu", "relu", "gelu", "tanh", "softmax", "ln"]


@pytest.fixture(scope="module")
def vector_groups():
    return neusight_fit_cases(str(NEUSIGHT), VECTOR_OPS)


@pytest.mark.parametrize("arch", ["pascal", "volta", "turing", "ampere"])
def test_shipped_constants_refit_from_neusight(arch, vector_groups):
    shipped = load_calibration(arch)
    fit = fit_memory_efficiencies(vector_groups[arch], shipped)
    for key in ("memory_max_efficiency", "normalization_memory_efficiency"):
        assert fit[key]["value"] == pytest.approx(getattr(shipped, key)), key
        assert fit[key]["after"] < fit[key]["before"]
    # the split is real on every GPU: norms and softmax stream well below pointwise kernels of the same size
    assert shipped.normalization_memory_efficiency < 0.8


def test_hopper_block_is_what_perfforge_calibrate_fits():
    block, summary = calibrate(str(H100_RUN))
    shipped = load_calibration("hopper")
    for key in ("memory_max_efficiency", "normalization_memory_efficiency", "memory_half_bytes", "kernel_overhead_s",
                "k_half", "attention_efficiency"):
        assert block[key] == pytest.approx(getattr(shipped, key), rel=1e-3), key
    assert summary["mean_abs_log_error_after"] < summary["mean_abs_log_error_before"]


def test_fit_recovers_a_known_split():
    """Kernels timed by a calibration with known efficiencies: the fit returns those efficiencies."""
    from perfforge.evaluation.measured import KernelCase

    device = get_device("a100-sxm4-80gb")
    truth = load_calibration("ampere").model_copy(update={"memory_max_efficiency": 0.7,
                                                          "normalization_memory_efficiency": 0.55})
    cases = []
    for rows in (4096, 16384, 65536):
        for op in (L.elementwise("add", (rows, 4096), DType.FP32, fn="add", n_inputs=2),
                   L.elementwise("relu", (rows, 4096), DType.FP32, fn="relu"),
                   L.layer_norm("ln", (rows, 4096), DType.FP32), L.softmax("sm", (rows, 4096), DType.FP32)):
            assert op.bytes >= MEMORY_FIT_MIN_BYTES
            cases.append(KernelCase({"latency_s": op_time(op, device, truth).time_s}, op, DType.FP32))
    fit = fit_memory_efficiencies([(cases, device)], load_calibration("ampere"))
    assert fit["memory_max_efficiency"]["value"] == pytest.approx(0.7)
    assert fit["normalization_memory_efficiency"]["value"] == pytest.approx(0.55)


def test_which_kernels_are_normalisation_class():
    shape = (64, 256, 14, 14)
    bn = L.batch_norm("bn", shape, DType.FP16)
    assert not is_normalization(bn)                                # inference: a per-channel scale and shift
    assert is_normalization(bn.with_(attrs={**bn.attrs, "batch_stats": True}))
    assert all(is_normalization(b) for b in backward_ops(bn))
    assert is_normalization(L.layer_norm("ln", (512, 1024), DType.FP16))
    assert is_normalization(L.softmax("sm", (512, 1024), DType.FP16))
    assert not is_normalization(L.elementwise("relu", shape, DType.FP16, fn="relu"))


def test_efficiency_slows_only_normalisation_kernels():
    device = get_device("h100-sxm5-80gb")
    cal = load_calibration("hopper")
    slower = cal.model_copy(update={"normalization_memory_efficiency": cal.normalization_memory_efficiency / 2})
    ln = L.layer_norm("ln", (8192, 4096), DType.FP16)
    add = L.elementwise("add", (8192, 4096), DType.FP16, fn="add", n_inputs=2)
    assert op_time(ln, device, slower).memory_s == pytest.approx(2 * op_time(ln, device, cal).memory_s)
    assert op_time(add, device, slower).time_s == op_time(add, device, cal).time_s


def test_training_batch_norm_computes_batch_statistics():
    train = api.resolve_workload("resnet50", mode="train", batch=32, dtype="fp16")
    bns = [op for op in train.training_forward if op.kind.value == "batch_norm"]
    assert len(bns) == 53 and all(op.attrs["batch_stats"] for op in bns)
    assert not any(op.attrs.get("batch_stats") for op in train.ops)   # the inference graph is unchanged
    # so a training step's forward batch norms cost more than the same layers in inference
    r_train = api.predict("resnet50", "a100-sxm4-80gb", mode="train", batch=32, dtype="fp16", optimizer="sgd")
    r_inf = api.predict("resnet50", "a100-sxm4-80gb", mode="inference", batch=32, dtype="fp16")
    fwd_bn = sum(r.time_s for r in r_train.breakdown if r.kind == "batch_norm" and r.phase == Phase.FORWARD.value)
    inf_bn = sum(r.time_s for r in r_inf.breakdown if r.kind == "batch_norm")
    assert fwd_bn > 1.3 * inf_bn
