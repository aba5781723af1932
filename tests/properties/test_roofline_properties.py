"""Invariants of the analytical engine (hypothesis)."""

from hypothesis import given, settings
from hypothesis import strategies as st

import perfforge
from perfforge.core.dtypes import DType
from perfforge.engines.analytical.calibration import load_calibration
from perfforge.engines.analytical.roofline import op_time
from perfforge.system.catalog import get_device
from perfforge.workload import layers as L

CAL = load_calibration("default")
DEVICES = ["a100-sxm4-80gb", "h100-sxm5-80gb", "v100-sxm2-16gb", "t4", "l4"]
dims = st.integers(min_value=1, max_value=16384)


@settings(max_examples=200, deadline=None)
@given(m=dims, n=dims, k=dims, dev=st.sampled_from(DEVICES), dtype=st.sampled_from([DType.FP16, DType.FP32]))
def test_never_faster_than_peak_or_bandwidth(m, n, k, dev, dtype):
    d = get_device(dev)
    op = L.linear("g", m, k, n, dtype, bias=False)
    t = op_time(op, d, CAL)
    assert t.time_s >= op.flops / d.peak_flop_per_s(dtype)
    assert t.time_s >= op.bytes / d.memory_bytes_per_s


@settings(max_examples=100, deadline=None)
@given(m=dims, n=dims, k=dims, scale=st.floats(min_value=1.0, max_value=8.0))
def test_more_bandwidth_is_never_slower(m, n, k, scale):
    d = get_device("a100-sxm4-80gb")
    bw = d.memory_bandwidth
    faster = d.model_copy(update={"memory_bandwidth": bw.model_copy(update={"value": bw.value * scale})})
    op = L.linear("g", m, k, n, DType.FP16, bias=False)
    assert op_time(op, faster, CAL).time_s <= op_time(op, d, CAL).time_s


@settings(max_examples=30, deadline=None)
@given(batch=st.integers(min_value=1, max_value=256), dev=st.sampled_from(DEVICES),
       model=st.sampled_from(["resnet50", "gpt2", "bert-base"]))
def test_step_time_monotone_in_batch(batch, dev, model):
    small = perfforge.predict(model, dev, mode="train", batch=batch, seq=128 if model != "resnet50" else None)
    large = perfforge.predict(model, dev, mode="train", batch=2 * batch, seq=128 if model != "resnet50" else None)
    assert large.step_time_s >= small.step_time_s
    assert large.flops_per_step > small.flops_per_step
    assert 0 < small.mfu < 1 and 0 < large.mfu < 1
