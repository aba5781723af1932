"""Vidur's public operator and collective profiles as perfforge ground-truth records.

``mlp.csv`` holds one transformer layer's non-attention operators (ms, FP16) by ``num_tokens`` and
tensor-parallel degree, with the model's dimensions in the same row, so each row maps to one perfforge op of
known shape. ``all_reduce.csv`` / ``send_recv.csv`` hold NCCL times by size and worker count (collective
records for the distributed engine). The GPU folder names map to catalog ids via ``DEVICES``.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path
from typing import Any

from perfforge.core.errors import ConfigError

SOURCE = "Vidur (microsoft/vidur, MIT): FP16 operator profiles, median of repeated runs"
# Vidur's GPU folders -> the device names used in measurement records (see evaluation.measured.DEVICE_IDS)
DEVICES = {"a100": "NVIDIA A100-SXM4-80GB", "h100": "NVIDIA H100 80GB HBM3", "a40": "NVIDIA A40"}
_NORM = {"phi-2": "layer_norm"}  # every other profiled model uses RMSNorm


def _shapes(op: str, row: dict[str, str], model: str) -> tuple[str, dict[str, Any]] | None:
    t = int(row["num_tokens"])
    tp = int(row["num_tensor_parallel_workers"])
    h, heads, kv = int(row["n_embd"]), int(row["n_head"]), int(row["n_kv_head"])
    ffn, vocab = int(row["n_expanded_embd"]), int(row["vocab_size"])
    gated = row["use_gated_mlp"].strip().lower() == "true"
    d = h // heads
    if op == "attn_pre_proj":
        return "linear", {"m": t, "k": h, "n": (heads + 2 * kv) * d // tp, "bias": False}
    if op == "attn_post_proj":
        return "linear", {"m": t, "k": heads * d // tp, "n": h, "bias": False}
    if op == "mlp_up_proj":
        return "linear", {"m": t, "k": h, "n": (2 if gated else 1) * ffn // tp, "bias": False}
    if op == "mlp_down_proj":
        return "linear", {"m": t, "k": ffn // tp, "n": h, "bias": False}
    if op in ("input_layernorm", "post_attention_layernorm"):
        return _NORM.get(model, "rms_norm"), {"rows": t, "cols": h}
    if op == "mlp_act":
        return ("swiglu" if gated else "gelu"), {"numel": t * ffn // tp}
    if op == "add":
        return "add", {"numel": t * h}
    if op == "emb":
        return "embedding", {"tokens": t, "vocab": vocab // tp, "dim": h}
    return None  # attn_rope: its shape depends on the rotary implementation; left out, not guessed


def read_mlp_profiles(folder: str | Path, *, per_file: int | None = 60) -> list[dict[str, Any]]:
    root = Path(folder) / "profiling" / "compute"
    if not root.is_dir():
        raise ConfigError(f"Vidur compute profiles not found: {root}")
    out: list[dict[str, Any]] = []
    for path in sorted(root.glob("*/*/*/mlp.csv.gz")):
        gpu, model = path.parts[-4], path.parts[-2]
        with gzip.open(path, "rt", newline="") as fh:
            rows = list(csv.DictReader(fh))
        step = max(1, len(rows) // per_file) if per_file else 1
        for i, row in enumerate(rows[::step][: per_file or None]):
            ops = sorted({c.split(".")[1] for c in row if c.startswith("time_stats.")})
            for op in ops:
                mapped = _shapes(op, row, model)
                if mapped is None:
                    continue
                name, params = mapped
                out.append({
                    "kind": "kernel", "group": "vidur", "op": name, "dtype": "fp16", "params": params,
                    "latency_s": float(row[f"time_stats.{op}.median"]) * 1e-3, "device": {"name": DEVICES.get(gpu, gpu)},
                    "key": f"vidur/{gpu}/{model}/{op}/{i * step}", "run_id": f"vidur:{gpu}",
                    "source": SOURCE, "extra": {"vidur_op": op, "model": model,
                                                "tp": int(row["num_tensor_parallel_workers"])},
                })
    return out


def read_collectives(folder: str | Path) -> list[dict[str, Any]]:
    """NCCL all-reduce / send-recv times (s) by message size and worker count, per profiled node type."""
    root = Path(folder) / "profiling" / "network"
    out = []
    for path in sorted(root.glob("*/*.csv.gz")):
        with gzip.open(path, "rt", newline="") as fh:
            for row in csv.DictReader(fh):
                coll = row["collective"]
                out.append({
                    "kind": "collective", "group": "vidur", "op": coll, "dtype": "fp16",
                    "params": {"size_bytes": int(row["size"]), "workers": int(row["num_workers"]),
                               "devices_per_node": int(row["devices_per_node"])},
                    "latency_s": float(row[f"time_stats.{coll}.median"]) * 1e-3,
                    "device": {"name": path.parent.name}, "key": f"vidur/{path.parent.name}/{coll}/{row['size']}/{row['num_workers']}",
                    "source": SOURCE,
                })
    return out
