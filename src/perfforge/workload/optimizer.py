"""Optimizers: state bytes per parameter and the cost of the update step.

Mixed-precision convention (Megatron-LM / ZeRO paper, Rajbhandari et al. 2020, Sec. 3.1): weights and
gradients are kept in the compute dtype and the optimizer holds an fp32 master copy plus its states.
With fp32 compute there is no separate master copy. Adam in mixed precision is therefore
2 + 2 + (4 + 4 + 4) = 16 bytes per parameter, the ZeRO paper's "K = 12" optimizer term plus 4.
"""

from __future__ import annotations

from dataclasses import dataclass

from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError
from perfforge.workload.op import Op, OpKind, Phase

FP32_BYTES = 4


@dataclass(frozen=True, slots=True)
class OptimizerSpec:
    name: str
    states: int               # fp32 state tensors per parameter (Adam: m and v)
    flops_per_param: int      # arithmetic of one update per parameter
    accumulate_only: bool = False   # no update: the new gradient is added into the existing ``.grad``
    norm_pass: bool = False         # a separate pass reads weights and gradients for per-layer norms (LARS/LAMB)


OPTIMIZERS: dict[str, OptimizerSpec] = {
    "sgd": OptimizerSpec("sgd", states=0, flops_per_param=2),
    "sgd_momentum": OptimizerSpec("sgd_momentum", states=1, flops_per_param=4),
    "adam": OptimizerSpec("adam", states=2, flops_per_param=12),
    "adamw": OptimizerSpec("adamw", states=2, flops_per_param=14),
    "lion": OptimizerSpec("lion", states=1, flops_per_param=8),
    # LARS (You et al. 2017, arXiv 1708.03888, Algorithm 1): momentum SGD whose per-layer learning rate is scaled
    # by ||w|| / (||g|| + beta ||w||), so the weights' and gradients' norms are read first (2 FLOPs per element
    # each) before the momentum update with weight decay and the trust ratio (6 per element)
    "lars": OptimizerSpec("lars", states=1, flops_per_param=10, norm_pass=True),
    # LAMB (You et al. 2019, arXiv 1904.00962, Algorithm 2): Adam's moments and update, scaled per layer by
    # ||w|| / ||update||: Adam's arithmetic plus the two norms and the scaling, and a second pass for the norms
    "lamb": OptimizerSpec("lamb", states=2, flops_per_param=18, norm_pass=True),
    # a backward into gradients that already exist (a gradient-accumulation micro-step, or a timing loop with no
    # zero_grad such as NeuSight's): autograd adds each new gradient into ``.grad`` in place, no optimizer step
    "grad_accumulate": OptimizerSpec("grad_accumulate", states=0, flops_per_param=1, accumulate_only=True),
}


def get_optimizer(name: str) -> OptimizerSpec:
    key = name.lower().replace("-", "_")
    if key not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer '{name}' (allowed: {', '.join(OPTIMIZERS)})")
    return OPTIMIZERS[key]


def has_master_copy(dtype: DType) -> bool:
    return dtype.bytes < FP32_BYTES


def state_bytes(dtype: DType) -> int:
    """Bytes of one optimizer-state (or master, or reduced-gradient) element: fp32, or the parameters' own dtype
    where that is wider (PyTorch's optimizers keep fp64 parameters' states in fp64)."""
    return max(FP32_BYTES, dtype.bytes)


def optimizer_state_bytes_per_param(opt: OptimizerSpec, dtype: DType) -> int:
    """fp32 states plus the fp32 master weights when training in a narrower dtype (none without an update)."""
    if opt.accumulate_only:
        return 0
    return state_bytes(dtype) * opt.states + (FP32_BYTES if has_master_copy(dtype) else 0)


def optimizer_op(opt: OptimizerSpec, params: int, dtype: DType) -> Op:
    """One fused (multi-tensor) update over all parameters: memory-bound, streaming every byte once.

    Reads gradient, master weights and states; writes master weights, states and the compute-dtype copy.
    ``grad_accumulate`` instead reads the existing and the new gradient and writes their sum (``grad += new``).
    A norm pass (LARS) reads the gradient and the master weights once more.
    """
    b = dtype.bytes
    if opt.accumulate_only:
        return Op(name=f"optimizer.{opt.name}", kind=OpKind.OPTIMIZER, dtype=dtype, flops=float(params),
                  bytes_read=2.0 * params * b, bytes_written=float(params * b), layer="optimizer",
                  phase=Phase.OPTIMIZER, attrs={"params": params, "optimizer": opt.name, "numel": params})
    master = FP32_BYTES if has_master_copy(dtype) else 0
    weights = FP32_BYTES if master else b
    states = state_bytes(dtype) * opt.states
    read = params * (b + weights + states)
    if opt.norm_pass:
        read += params * (b + weights)
    written = params * (weights + states + (b if master else 0))
    return Op(
        name=f"optimizer.{opt.name}", kind=OpKind.OPTIMIZER, dtype=DType.FP32,
        flops=float(opt.flops_per_param * params), bytes_read=float(read), bytes_written=float(written),
        layer="optimizer", phase=Phase.OPTIMIZER, attrs={"params": params, "optimizer": opt.name, "numel": params},
    )
