import pytest

from perfforge.core.dtypes import DType
from perfforge.workload import layers as L
from perfforge.workload.backward import backward_ops
from perfforge.workload.op import OpKind, Phase
from perfforge.workload.zoo import get_model


def test_linear_backward_is_two_equal_gemms():
    op = L.linear("fc", 4, 5, 6, DType.FP16)
    # forward 2*m*n*k = 2*4*6*5 = 240
    assert op.flops == 240
    grads = backward_ops(op)
    assert [g.phase for g in grads] == [Phase.BACKWARD_INPUT, Phase.BACKWARD_WEIGHT]
    assert [g.flops for g in grads] == [240, 240]
    # dgrad writes dX (m*k = 20 elements), wgrad writes dW (n*k = 30 elements), fp16 = 2 bytes
    assert grads[0].bytes_written == 40 and grads[1].bytes_written == 60


def test_first_layer_has_no_input_gradient():
    w = get_model("resnet50", batch=1, dtype="fp32")
    stem = [op for op in w.backward if op.name.startswith("stem.conv")]
    assert [op.phase for op in stem] == [Phase.BACKWARD_WEIGHT]


def test_matrix_training_flops_are_three_times_forward():
    w = get_model("gpt2", batch=2, seq=256)
    fwd = sum(op.flops for op in w.ops if op.kind in (OpKind.MATMUL, OpKind.CONV2D) and op.attrs.get("input_grad", True))
    bwd = sum(op.flops for op in w.backward if op.kind in (OpKind.MATMUL, OpKind.CONV2D))
    assert bwd == pytest.approx(2 * fwd)


def test_flash_attention_backward_ratio():
    op = L.attention("a", 1, 8, 8, 128, 128, 64, DType.BF16, causal=False)
    assert op.flops == 2 * 2 * 8 * 128 * 128 * 64
    (bwd,) = backward_ops(op)
    assert bwd.flops == pytest.approx(2.5 * op.flops)
