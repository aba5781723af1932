"""Read the profiler's measurement records and turn each into what an engine can predict.

A kernel record becomes one ``Op`` built with the same constructors as the zoo (so a matmul record is
costed exactly as a zoo matmul would be); a model record becomes ``predict`` arguments. Records this
module cannot map are returned as unmapped with a reason, never dropped silently.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError
from perfforge.workload import layers as L
from perfforge.workload.backward import backward_ops
from perfforge.workload.op import Op
from perfforge.workload.optimizer import OPTIMIZERS

# The profiler's device names -> catalog ids. The H200 in the catalog is the SXM board.
DEVICE_IDS = {
    "NVIDIA H100 80GB HBM3": "h100-sxm5-80gb",
    "NVIDIA H200": "h200-sxm-141gb",
    "NVIDIA A100-SXM4-80GB": "a100-sxm4-80gb",
    "NVIDIA A100-SXM4-40GB": "a100-sxm4-40gb",
    "NVIDIA A100-PCIE-40GB": "a100-pcie-40gb",
    "Tesla V100-SXM2-16GB": "v100-sxm2-16gb",
    "Tesla V100-PCIE-32GB": "v100-pcie-32gb",
    "Tesla P100-PCIE-16GB": "p100-pcie-16gb",
    "Tesla P4": "p4",
    "NVIDIA A100 80GB PCIe": "a100-pcie-80gb",
    "Tesla T4": "t4",
    "NVIDIA L4": "l4",
    "NVIDIA A40": "a40",
}


def read_measurements(path: str | Path) -> list[dict[str, Any]]:
    """All successful records of a ``measurements.jsonl`` (optionally gzipped); torn last lines skipped."""
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    out: list[dict[str, Any]] = []
    try:
        with opener(p, "rt") as fh:  # type: ignore[operator]
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a run killed mid-write leaves a torn final line
                if rec.get("latency_s") and not rec.get("error"):
                    out.append(rec)
    except FileNotFoundError:
        raise ConfigError(f"measurements not found: {p}") from None
    return out


def measurement_files(paths: Iterable[str | Path]) -> list[Path]:
    """``measurements.jsonl(.gz)`` files named directly or found one level inside a named run folder."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(p.glob("measurements.jsonl*")) or sorted(p.glob("*/measurements.jsonl*"))
            if not found:
                raise ConfigError(f"no measurements.jsonl(.gz) in {p} or its run folders")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise ConfigError(f"measurements not found: {p}")
    return out


def resolve_device_id(name: str) -> str | None:
    """The catalog id of the device a record names (``device.name``, as the CUDA driver reports it): the table
    above, then any catalog device (shipped or in a ``PERFFORGE_CATALOG`` directory) that lists the name in its
    ``cuda_names``; None when nothing matches."""
    if name in DEVICE_IDS:
        return DEVICE_IDS[name]
    from perfforge.system.catalog import get_device, list_devices

    for dev_id in list_devices():
        if name and name in get_device(dev_id).cuda_names:
            return dev_id
    return None


def device_id(record: dict[str, Any]) -> str:
    name = record.get("device", {}).get("name", "")
    found = resolve_device_id(name)
    if found is None:
        raise ConfigError(f"no catalog id for measured device '{name}' (known: {', '.join(DEVICE_IDS)}; describe "
                          f"another in a device YAML with cuda_names: ['{name}'] in a directory on PERFFORGE_CATALOG)")
    return found


@dataclass(frozen=True, slots=True)
class KernelCase:
    record: dict[str, Any]
    op: Op
    compute_dtype: DType


def record_dtypes(rec: dict[str, Any]) -> tuple[DType, DType]:
    """(storage dtype, compute dtype): tf32 records store fp32 and compute on TF32 tensor cores."""
    d = DType.parse(rec["dtype"])
    return (DType.FP32, DType.TF32) if d is DType.TF32 else (d, d)


def kernel_op(rec: dict[str, Any]) -> Op | None:
    """The perfforge op for one kernel record, or None for kinds that are not single ops (ceilings)."""
    p, op = rec["params"], rec["op"]
    dt, _ = record_dtypes(rec)
    if op in ("matmul", "gemm_peak"):
        return L.linear(op, p["m"], p["k"], p["n"], dt, bias=False)
    if op == "linear":
        return L.linear(op, p["m"], p["k"], p["n"], dt, bias=bool(p.get("bias", True)))
    if op == "bmm":
        return L.bmm(op, p["b"], p["m"], p["n"], p["k"], dt)
    if op in ("conv2d", "conv2d_dgrad", "conv2d_wgrad"):
        conv, _ = L.conv2d("conv2d", p["batch"], p["in_ch"], (p["h"], p["w"]), p["out_ch"], p["kernel"], dt,
                           stride=p["stride"], padding=p["padding"])
        if op == "conv2d":
            return conv
        # the backward op perfforge derives for a training step (``workload.backward``)
        suffix = op.removeprefix("conv2d_")
        return next(b for b in backward_ops(conv) if b.name.endswith(f".{suffix}"))
    if op == "sdpa":
        return L.attention(op, p["batch"], p["heads"], p["kv_heads"], p["seq_q"], p["seq_kv"], p["head_dim"], dt,
                           causal=bool(p["causal"]))
    if op == "layer_norm":
        return L.layer_norm(op, (p["rows"], p["cols"]), dt)
    if op == "rms_norm":
        return L.rms_norm(op, (p["rows"], p["cols"]), dt)
    if op == "softmax":
        return L.softmax(op, (p["rows"], p["cols"]), dt)
    if op in ("gelu", "add", "mul", "div", "pow", "relu", "tanh"):
        return L.elementwise(op, (p["numel"],), dt, fn=op, n_inputs=2 if op in ("add", "mul", "div", "pow") else 1)
    if op == "swiglu":
        # silu(gate) * up over the gate/up halves of a fused projection: reads 2 tensors, writes 1
        return L.elementwise(op, (p["numel"],), dt, fn="swiglu", n_inputs=2)
    if op in ("add_scalar", "mul_scalar", "div_scalar", "pow_scalar"):
        return L.elementwise(op, (p["numel"],), dt, fn=op.removesuffix("_scalar"), n_inputs=1)
    if op == "embedding":
        return L.embedding(op, p["tokens"], p["vocab"], p["dim"], dt)
    if op == "memcpy_d2d":
        # a copy reads and writes every byte: an identity pointwise op over bytes/4 fp32 elements
        return L.elementwise(op, (p["bytes"] // 4,), DType.FP32, fn="copy")
    return None


NOT_DEVICE_OPS = {"memcpy_h2d": "host-to-device copy over PCIe: not a device op; PCIe links belong to the distributed engine",
                  "memcpy_d2h": "device-to-host copy over PCIe: not a device op; PCIe links belong to the distributed engine"}


def kernel_cases(records: list[dict[str, Any]]) -> tuple[list[KernelCase], list[tuple[str, str]]]:
    """Map kernel records to ops; return (cases, [(key, reason) for unmapped records])."""
    cases, unmapped = [], []
    for rec in records:
        if rec.get("kind") != "kernel":
            continue
        op = kernel_op(rec)
        if op is None:
            unmapped.append((rec["key"], NOT_DEVICE_OPS.get(rec["op"], f"no op mapping for '{rec['op']}'")))
            continue
        cases.append(KernelCase(rec, op, record_dtypes(rec)[1]))
    return cases, unmapped


def model_predict_kwargs(rec: dict[str, Any]) -> dict[str, Any]:
    """``perfforge.predict`` arguments matching a model record (same model id, mode, batch, seq, dtype)."""
    p = rec["params"]
    kw: dict[str, Any] = {"mode": p["mode"], "batch": p["batch"], "dtype": rec["dtype"]}
    if p.get("seq"):
        kw["seq"] = p["seq"]
    if p["mode"] == "train":
        # the profiler records torch's names ("adamw_fused"): the update's cost is AdamW's
        kw["optimizer"] = p["optimizer"] if p.get("optimizer") in OPTIMIZERS else "adamw"
    return kw


# HuggingFace's GPT-2 and BERT configs default to dropout 0.1 (GPT2Config resid/embd/attn_pdrop, BertConfig
# hidden/attention_probs_dropout_prob); `perfforge profile`'s `models` group builds them with those defaults.
HF_DEFAULT_DROPOUT = 0.1


def training_dropout(rec: dict[str, Any]) -> float:
    """The dropout probability a measured training run used: its own ``params.dropout`` when recorded, HF's
    default for the profiler's HuggingFace models (they record a ``head``), else none."""
    p = rec.get("params", {})
    if p.get("mode") != "train":
        return 0.0
    if "dropout" in p:
        return float(p["dropout"])
    return HF_DEFAULT_DROPOUT if p.get("head") else 0.0

