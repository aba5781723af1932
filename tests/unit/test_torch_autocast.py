"""Tracing under autocast (``from_torch(..., amp=...)``): the casts, dtypes and cast cache of torch.autocast."""

from collections import Counter

import pytest

torch = pytest.importorskip("torch", reason="the torch importer needs the optional torch extra")
nn = torch.nn

import perfforge  # noqa: E402
from perfforge.core.dtypes import DType  # noqa: E402
from perfforge.core.errors import ConfigError  # noqa: E402
from perfforge.workload.op import OpKind  # noqa: E402


class NormMLP(nn.Module):
    """LayerNorm -> Linear -> GPT-2's tanh GELU (built from pow and tanh) -> Linear, plus a residual."""

    def __init__(self, h: int = 16) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(h)
        self.up, self.down = nn.Linear(h, 4 * h), nn.Linear(4 * h, h)

    def forward(self, x):
        y = self.up(self.ln(x))
        y = 0.5 * y * (1.0 + torch.tanh(0.79788456 * (y + 0.044715 * torch.pow(y, 3.0))))
        return x + self.down(y)


class Tied(nn.Module):
    """One weight used by two linears: autocast casts it once per forward."""

    def __init__(self, h: int = 8) -> None:
        super().__init__()
        self.proj = nn.Linear(h, h, bias=False)

    def forward(self, x):
        return nn.functional.linear(nn.functional.linear(x, self.proj.weight), self.proj.weight)


def _casts(w):
    return [op for op in w.ops if op.name.endswith(":autocast")]


def test_autocast_casts_and_dtypes_by_hand():
    x = torch.randn(4, 16)
    w = perfforge.from_torch(NormMLP(), x, amp="bf16")
    assert w.dtype is DType.BF16 and w.meta["amp"] == "bf16"
    gemms = [op for op in w.ops if op.kind is OpKind.MATMUL]
    assert [op.dtype for op in gemms] == [DType.BF16, DType.BF16]
    (ln,) = [op for op in w.ops if op.kind is OpKind.LAYER_NORM]
    assert ln.dtype is DType.FP32  # input already fp32: no cast for it
    casts = _casts(w)
    # up: LN output, weight, bias -> bf16; pow's input -> fp32; down: the fp32 GELU output, weight, bias -> bf16
    assert len(casts) == 7
    assert Counter(op.dtype for op in casts) == Counter({DType.BF16: 6, DType.FP32: 1})
    pow_cast = next(op for op in casts if op.dtype is DType.FP32)
    n = 4 * 64
    assert (pow_cast.bytes_read, pow_cast.bytes_written) == (2 * n, 4 * n)  # bf16 in, fp32 out
    weight_cast = next(op for op in casts if op.attrs["numel"] == 16 * 64)
    assert (weight_cast.bytes_read, weight_cast.bytes_written) == (4 * 16 * 64, 2 * 16 * 64)
    # after pow the GELU chain runs in fp32 (type promotion), the residual add too
    tanh = next(op for op in w.ops if op.attrs.get("fn") == "tanh")
    assert tanh.dtype is DType.FP32
    assert w.ops[-1].attrs.get("fn") == "add" and w.ops[-1].dtype is DType.FP32


def test_parameter_casts_are_cached_per_forward():
    w = perfforge.from_torch(Tied(), torch.randn(2, 8), amp="fp16")
    casts = _casts(w)
    # the input and the weight once; the second linear's input is already fp16
    assert len(casts) == 2
    assert [op.dtype for op in w.ops if op.kind is OpKind.MATMUL] == [DType.FP16, DType.FP16]


def test_linear_dtypes_match_real_cpu_autocast():
    """Real torch.autocast on the CPU (linear and addmm are on its lower-precision list too) gives the traced
    GEMMs' dtypes and the number of casts of a plain MLP."""
    from torch.utils._python_dispatch import TorchDispatchMode

    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 8))
    x = torch.randn(5, 8)

    class Seen(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            self.ops.append((func.__name__.split(".")[0], out.dtype if isinstance(out, torch.Tensor) else None))
            return out

    seen = Seen()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), seen:
        model(x)
    real_casts = sum(1 for name, _ in seen.ops if name == "_to_copy")
    real_gemms = [dt for name, dt in seen.ops if name in ("addmm", "mm")]
    traced = perfforge.from_torch(model, x, amp="bf16")
    assert len(_casts(traced)) == real_casts == 5  # input, 2 weights, 2 biases (the ReLU keeps bf16)
    assert real_gemms == [torch.bfloat16, torch.bfloat16]
    assert [op.dtype for op in traced.ops if op.kind is OpKind.MATMUL] == [DType.BF16, DType.BF16]


def test_autocast_training_costs_more_than_pure_bf16():
    """Same module: the autocast trace adds cast kernels and fp32 pointwise work, so its step is slower."""
    x = torch.randn(256, 512)
    model = NormMLP(512)
    pure = perfforge.predict(perfforge.from_torch(model, x, dtype="bf16"), hardware="h100-sxm5-80gb", mode="train")
    amp = perfforge.predict(perfforge.from_torch(model, x, amp="bf16"), hardware="h100-sxm5-80gb", mode="train")
    assert amp.step_time_s > pure.step_time_s
    assert amp.flops_per_step == pytest.approx(pure.flops_per_step, rel=0.05)


@pytest.mark.parametrize("kwargs, message", [
    ({"amp": "fp32"}, "allowed: fp16, bf16"),
    ({"amp": "bf16", "dtype": "fp16"}, "not both"),
])
def test_bad_amp_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        perfforge.from_torch(NormMLP(), torch.randn(2, 16), **kwargs)



def test_input_casts_and_the_first_layer_get_no_input_gradient():
    """Under autocast the image is cast before the stem convolution; neither the cast nor the stem's dgrad
    appears in the backward (the data needs no gradient), the stem's weight gradient does."""
    from perfforge.workload.backward import backward_ops

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
    w = perfforge.from_torch(model, torch.randn(2, 3, 16, 16), amp="fp16")
    input_cast, weight_cast, bias_cast, stem = w.ops[:4]
    assert [op.attrs["cast_of"] for op in (input_cast, weight_cast, bias_cast)] == ["activation", "0.weight", "0.bias"]
    assert stem.kind is OpKind.CONV2D
    assert backward_ops(input_cast) == []
    assert len(backward_ops(weight_cast)) == len(backward_ops(bias_cast)) == 1  # the gradient back to fp32
    assert [b.name.rsplit(".", 1)[-1] for b in backward_ops(stem)] == ["wgrad"]
    second = [op for op in w.ops if op.kind is OpKind.CONV2D][1]
    assert [b.name.rsplit(".", 1)[-1] for b in backward_ops(second)] == ["dgrad", "wgrad"]
