"""Backward-pass rules: each forward op yields its input-gradient and weight-gradient ops.

Rules (FLOPs relative to the forward op ``F``):
- matmul/linear/conv: dgrad = F, wgrad = F (hence the usual training total of 3F);
- bmm of two activations: two input gradients of F each;
- fused attention: 2.5F (FlashAttention-2 backward runs five GEMM-shaped products to the forward's two,
  Dao 2023, "FlashAttention-2", Sec. 3.1.2), reading Q, K, V, O, dO and writing dQ, dK, dV;
- pointwise ops, norms, softmax, pooling: memory-bound kernels that read the output gradient and what the
  forward saved, and write the input gradient; about twice the forward FLOPs;
- a residual add's backward is the gradient accumulation at the branch point: one add of the same shape;
- a dtype cast (``attrs["cast_of"]``, autocast's copies) casts the gradient back, reading and writing the
  forward's widths swapped; a same-dtype copy (``attrs["grad_passthrough"]``: clone, contiguous) has none.
An op with ``attrs["input_grad"] is False`` (the first layer, fed by data) gets no dgrad; such an op without
weights of its own (a pointwise op or cast on the input) gets no backward at all. An op with
``attrs["no_grad"]`` (an integer count, a freshly zeroed buffer) is outside autograd: no backward.
"""

from __future__ import annotations

from perfforge.workload.op import Op, OpKind, Phase

FLASH_BACKWARD_FLOP_RATIO = 2.5
POINTWISE_BACKWARD_FLOP_RATIO = 2.0


def _gemm(op: Op, suffix: str, phase: Phase, m: int, n: int, k: int, batch: int,
          read_elems: float, write_elems: float) -> Op:
    b = op.dtype.bytes
    return Op(
        name=f"{op.name}.{suffix}", kind=op.kind, dtype=op.dtype, flops=op.flops,
        bytes_read=read_elems * b, bytes_written=write_elems * b, layer=op.layer, phase=phase,
        attrs={**op.attrs, "m": m, "n": n, "k": k, "batch": batch},
    )


def backward_ops(op: Op) -> list[Op]:
    """The backward ops of one forward op, input gradient first."""
    if op.phase is not Phase.FORWARD:
        raise ValueError(f"{op.name}: backward of a {op.phase.value} op")
    kind = op.kind
    if op.attrs.get("no_grad"):
        return []
    wants_dgrad = op.attrs.get("input_grad", True)
    out: list[Op] = []
    if kind in (OpKind.MATMUL, OpKind.BMM):
        m, n, k, batch = (op.attrs[x] for x in ("m", "n", "k", "batch"))
        if kind is OpKind.MATMUL:
            # dX[m,k] = dY[m,n] W[n,k];  dW[n,k] = dY^T[n,m] X[m,k]
            if wants_dgrad:
                out.append(_gemm(op, "dgrad", Phase.BACKWARD_INPUT, m, k, n, batch,
                                 batch * (m * n + n * k), batch * m * k))
            out.append(_gemm(op, "wgrad", Phase.BACKWARD_WEIGHT, n, k, m, batch,
                             batch * (m * n + m * k), batch * n * k))
        else:
            # dA[m,k] = dC[m,n] B^T[n,k];  dB[k,n] = A^T[k,m] dC[m,n]
            out.append(_gemm(op, "dgrad_a", Phase.BACKWARD_INPUT, m, k, n, batch,
                             batch * (m * n + n * k), batch * m * k))
            out.append(_gemm(op, "dgrad_b", Phase.BACKWARD_INPUT, k, n, m, batch,
                             batch * (m * k + m * n), batch * k * n))
        return out
    if kind is OpKind.CONV2D:
        a = op.attrs
        m_out, cout, kdim = a["m"], a["n"], a["k"]
        batch_n = op.inputs[0][0]
        h, w = a["hw"]
        in_elems = batch_n * a["in_ch"] * h * w
        weight = cout * kdim
        if wants_dgrad:
            # implicit GEMM over input positions: m = N*H*W, n = Cin, k = Cout*Kh*Kw (same FLOPs as forward)
            out.append(_gemm(op, "dgrad", Phase.BACKWARD_INPUT, batch_n * h * w, a["in_ch"],
                             max(1, round(op.flops / (2 * batch_n * h * w * a["in_ch"]))), 1,
                             m_out * cout + weight, in_elems))
        # wgrad: m = Cout, n = Cin*Kh*Kw, k = N*Ho*Wo
        out.append(_gemm(op, "wgrad", Phase.BACKWARD_WEIGHT, cout, kdim, m_out, 1,
                         m_out * cout + in_elems, weight))
        return out
    if kind is OpKind.ATTENTION:
        b = op.dtype.bytes
        q_o = 2 * op.bytes_written  # O and dO
        return [Op(
            name=f"{op.name}.bwd", kind=kind, dtype=op.dtype, flops=op.flops * FLASH_BACKWARD_FLOP_RATIO,
            bytes_read=op.bytes_read + q_o, bytes_written=op.bytes_read, layer=op.layer,
            phase=Phase.BACKWARD_INPUT, attrs={**op.attrs, "direction": "backward"},
        )] if b else []
    if kind is OpKind.EMBEDDING:
        a = op.attrs
        b = op.dtype.bytes
        # dense embedding backward: scatter-add token gradients into a zeroed vocab x hidden table
        return [Op(
            name=f"{op.name}.wgrad", kind=kind, dtype=op.dtype, flops=float(a["tokens"] * a["hidden"]),
            bytes_read=(a["tokens"] * a["hidden"]) * b + a["tokens"] * 8,
            bytes_written=(a["vocab"] * a["hidden"]) * b, layer=op.layer, phase=Phase.BACKWARD_WEIGHT,
            attrs=dict(a),
        )]
    if kind is OpKind.ELEMENTWISE and op.attrs.get("fn") == "dropout":
        n = int(op.attrs["numel"])
        # dX = dY * mask / (1 - p): read dY and the one-byte mask, write dX
        return [op.with_(name=f"{op.name}.bwd", phase=Phase.BACKWARD_INPUT, bytes_read=n * op.dtype.bytes + n,
                         bytes_written=n * op.dtype.bytes, saved_bytes=0.0, params=0)]
    if kind is OpKind.ELEMENTWISE and op.attrs.get("grad_passthrough"):
        return []  # a same-dtype copy (clone, contiguous): autograd passes the gradient through, no kernel
    if kind is OpKind.ELEMENTWISE and "cast_of" in op.attrs:
        if not wants_dgrad:
            return []  # a cast of the input data: no gradient flows back into it
        # a dtype cast's backward casts the gradient back: read dY at the cast's output width, write dX at its
        # input width; a weight's cast delivers the fp32 weight gradient
        phase = Phase.BACKWARD_INPUT if op.attrs["cast_of"] == "activation" else Phase.BACKWARD_WEIGHT
        return [op.with_(name=f"{op.name}.bwd", phase=phase, bytes_read=op.bytes_written,
                         bytes_written=op.bytes_read, saved_bytes=0.0, params=0)]
    if kind is OpKind.ELEMENTWISE and op.attrs.get("fn") in ("mask_add", "add_scalar"):
        return []  # the gradient passes through unchanged: no kernel
    if kind is OpKind.ELEMENTWISE and op.attrs.get("fn") in ("add",):
        # gradient accumulation where the residual branches meet
        return [op.with_(name=f"{op.name}.bwd", phase=Phase.BACKWARD_INPUT, saved_bytes=0.0, params=0)]
    if kind is OpKind.REDUCTION:
        return [op.with_(name=f"{op.name}.bwd", phase=Phase.BACKWARD_INPUT, bytes_read=op.bytes_written,
                         bytes_written=op.bytes_read, saved_bytes=0.0)]
    if kind is OpKind.OPTIMIZER:
        raise ValueError("optimizer ops have no backward")
    if not wants_dgrad and not op.params:
        return []  # fed by data that needs no gradient, and no weights of its own: nothing to compute
    # pointwise / normalisation / softmax / pooling / router: read dY and the saved tensor, write dX
    out_bytes = op.bytes_written
    in_bytes = op.bytes_read - op.params * op.dtype.bytes
    phase = Phase.BACKWARD_INPUT
    return [op.with_(
        name=f"{op.name}.bwd", phase=phase, flops=op.flops * POINTWISE_BACKWARD_FLOP_RATIO,
        bytes_read=out_bytes + in_bytes + op.params * op.dtype.bytes,
        bytes_written=in_bytes + op.params * op.dtype.bytes, saved_bytes=0.0, params=0,
    )]
