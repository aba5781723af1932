"""Analytical engine against hand-computed rooflines, plus bad-input errors."""

import pytest

from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError, UnmodelledOpError
from perfforge.engines.analytical.calibration import Calibration, load_calibration
from perfforge.engines.analytical.efficiency import gemm_efficiency
from perfforge.engines.analytical.roofline import op_time
from perfforge.system.catalog import get_device
from perfforge.workload import layers as L
from perfforge.workload.op import Op, OpKind


def ideal(**overrides) -> Calibration:
    """A calibration with every efficiency at 1 and no overheads: the pure roofline."""
    base = load_calibration("default").model_dump()
    base.update(gemm_max_efficiency=1.0, conv_efficiency=1.0, k_half=0, memory_max_efficiency=1.0,
                memory_half_bytes=0, kernel_overhead_s=0.0, vector_efficiency=1.0,
                tile_shapes=[(128, 128)], tile_efficiency={"128x128": 1.0})
    base.update(overrides)
    return Calibration.model_validate(base)


A100 = "a100-sxm4-80gb"


def test_full_wave_gemm_runs_at_peak():
    dev = get_device(A100)  # 108 SMs, 312 TFLOP/s fp16 dense
    # 54 x 2 tiles of 128x128 fill exactly one wave of 108 SMs; intensity ~233 FLOP/B > ridge 153
    op = L.linear("g", 54 * 128, 4096, 256, DType.FP16, bias=False)
    t = op_time(op, dev, ideal())
    assert t.compute_s == pytest.approx(2 * 54 * 128 * 256 * 4096 / 312e12)
    assert t.bound == "compute"


def test_wave_quantisation_costs_an_extra_wave():
    dev = get_device(A100)
    # 109 tiles: two waves, the second with one tile -> efficiency 109 / 216
    eff = gemm_efficiency(109 * 128, 128, 4096, 1, dev.sms, ideal()).efficiency
    assert eff == pytest.approx(109 / 216)


def test_memory_bound_add_by_hand():
    dev = get_device(A100)
    n = 64 * 2**20
    op = L.elementwise("add", (n,), DType.FP16, fn="add", n_inputs=2)
    t = op_time(op, dev, ideal())
    # reads 2 tensors, writes 1: 3 * n * 2 bytes at 2039 GB/s
    assert t.memory_s == pytest.approx(3 * n * 2 / 2039e9)
    assert t.time_s == pytest.approx(t.memory_s)


def test_launch_overhead_is_added_per_kernel():
    dev = get_device(A100)
    op = L.elementwise("tiny", (8,), DType.FP16)
    assert op_time(op, dev, ideal(kernel_overhead_s=5e-6)).time_s == pytest.approx(5e-6, rel=1e-3)


def test_fp32_gemm_uses_fp32_peak_and_tf32_uses_tensor_cores():
    dev = get_device(A100)
    op = L.linear("g", 8192, 8192, 8192, DType.FP32, bias=False)
    t32 = op_time(op, dev, ideal())
    ttf = op_time(op, dev, ideal(), compute_dtype=DType.TF32)
    assert t32.compute_s / ttf.compute_s == pytest.approx(156 / 19.5)


def test_skinny_gemm_is_far_from_peak(cal):
    dev = get_device(A100)
    big = gemm_efficiency(8192, 8192, 8192, 1, dev.sms, cal).efficiency
    skinny = gemm_efficiency(16, 4096, 4096, 1, dev.sms, cal).efficiency
    assert skinny < big / 4


def test_unmodelled_kind_raises_not_zero(cal):
    dev = get_device(A100)
    op = Op(name="mystery", kind=OpKind.MATMUL, dtype=DType.FP16, flops=1.0, bytes_read=1.0, bytes_written=1.0)
    with pytest.raises(KeyError):  # a GEMM with no m/n/k cannot be costed
        op_time(op, dev, cal)
    bogus = op.with_(kind="not-a-kind")  # type: ignore[arg-type]
    with pytest.raises(UnmodelledOpError):
        op_time(bogus, dev, cal)


def test_calibration_override(tmp_path):
    f = tmp_path / "cal.yaml"
    f.write_text("architectures:\n  default:\n    kernel_overhead_s: 1.0e-5\n")
    assert load_calibration("ampere", f).kernel_overhead_s == 1e-5
    f.write_text("architectures:\n  default:\n    kernel_overhed_s: 1.0e-5\n")
    with pytest.raises(ConfigError, match="did you mean 'kernel_overhead_s'"):
        load_calibration("ampere", f)
    f.write_text("architectures:\n  default:\n    gemm_max_efficiency: 1.7\n")
    with pytest.raises(ConfigError, match="gemm_max_efficiency"):
        load_calibration("ampere", f)
    f.write_text("architectures: [\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_calibration("ampere", f)


def test_priors_override_puts_architectures_back_on_the_default_block(tmp_path):
    """The like-for-like analytical column of the split reports: hopper and ada on the priors, volta as shipped."""
    import yaml

    from perfforge.engines.analytical.calibration import load_calibration, priors_override

    path = tmp_path / "priors.yaml"
    path.write_text(yaml.safe_dump(priors_override(["hopper", "ada"])))
    default = load_calibration("default")
    shipped_h, prior_h = load_calibration("hopper"), load_calibration("hopper", override=path)
    assert shipped_h.attention_efficiency != default.attention_efficiency          # the shipped block is fitted
    fields = [k for k in type(default).model_fields if k != "source"]
    assert all(getattr(prior_h, k) == getattr(default, k) for k in fields)
    assert load_calibration("ada", override=path).fp32_gemm_scale == default.fp32_gemm_scale == 1.0
    assert load_calibration("volta", override=path).fp32_gemm_scale == load_calibration("volta").fp32_gemm_scale != 1.0
