"""NeuSight's public measurements as perfforge ground-truth records.

Kernel CSVs (``kernels/<op>/<GPU>.csv.gz``; latency in ms; FP32; shape columns B,M,N,K or B,H or conv
geometry) and end-to-end labels (``labels/<GPU>/<model>-<inf|train>-<seq>-<batch>.json``; ms). Records come
out in the same dict layout as ``perfforge profile`` output, with ``source`` naming NeuSight, so the harness
treats both alike. Sampling is deterministic (every k-th row) to bound evaluation time.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path
from typing import Any

from perfforge.core.errors import ConfigError
from perfforge.profiling.op_breakdown import NEUSIGHT_NAMES

SOURCE = "NeuSight (sitar-lab/NeuSight, MIT): FP32 measurements, PyTorch 2.1 / CUDA 12.1"
# Kernel files copied from NeuSight's test set (scripts/asplos/data/dataset/test/*.csv) that stay test data for every
# engine: catalog id -> NeuSight op files (None: all). No fit reads them, analytical or learned. The H100 has
# perfforge's and Vidur's kernels to learn from; training the learned model on its 526 FP32 GEMMs as well made
# every other held-out GPU's end-to-end error worse (13.2% -> 15.8% over NeuSight's 82 labels). The A100 80GB
# PCIe's GEMMs are NeuSight's third OOD GPU; that board's convolutions are NeuSight training data. L4's test
# kernels are the only L4 data and do train (data/ground_truth/neusight/README.md).
TEST_ONLY_KERNELS: dict[str, frozenset[str] | None] = {"h100-sxm5-80gb": None,
                                                       "a100-pcie-80gb": frozenset({"bmm", "linear"})}


def is_test_kernel(device_id: str, op: str) -> bool:
    """Whether a NeuSight kernel row of this GPU (catalog id) and op file is test-only (``TEST_ONLY_KERNELS``)."""
    if device_id not in TEST_ONLY_KERNELS:
        return False
    ops = TEST_ONLY_KERNELS[device_id]
    return ops is None or op in ops
# NeuSight model names -> perfforge zoo ids (None: not in the zoo, reported as not run)
MODELS = {**{ns: zoo for zoo, ns in NEUSIGHT_NAMES.items()}, "switchxl4": "switch-xl"}
# NeuSight's "gpt3_xl" is NOT the GPT-3 paper's XL (d_model 2048, 24 layers, 1.3B parameters: perfforge's zoo
# `gpt3-xl`). The graph NeuSight traced for its own gpt3_xl labels (labels/<GPU>/gpt3_xl-inf-2048-2.csv in
# sitar-lab/NeuSight's data, gzipped copies under data/ground_truth/neusight/labels) has transformer.wte output (2, 2048, 3072),
# attention views (2, 2048, 24, 128), c_attn 3072x9216, mlp.c_fc 3072x12288, lm_head to 50257, and the label
# JSON says num_layer 24: a GPT-2-style decoder of about 2.9B parameters, as costly as its gpt3_27 (the A100
# labels: 1749 ms vs 1742 ms at batch 2). The zoo has it as `gpt3-xl-neusight`.
# NeuSight's training labels ran HF's models in train mode with their default dropout 0.1: its per-node traces
# time every dropout node forward and backward (e.g. labels/Tesla_V100-PCIE-32GB/bert_large-train-512-2.csv,
# bert_encoder_layer_0_attention_self_dropout: 0.136 ms forward, 0.289 ms backward on (2, 16, 512, 512)).
TRAIN_DROPOUT = 0.1
# NeuSight trains BERT as HF's BertForPreTraining (AutoModelForPreTraining: the masked-LM head over every token
# and the next-sentence classifier) and back-propagates a cross-entropy over its prediction logits
# (neusight/Tracing/trace.py, get_model and measure_e2e, trsharm25/NeuSight @ 2e9d3fb)
TRAIN_HEADS = {"bert_large": "pretraining"}
# models whose zoo graph has dropout kernels: all of NeuSight's (Switch's config has dropout_rate 0.1,
# scripts/asplos/data/DLmodel_configs/switchxl4.json, trsharm25/NeuSight @ bca31fb)
DROPOUT_MODELS = frozenset({*NEUSIGHT_NAMES.values(), "switchxl4"})
# Switch's end-to-end labels ran transformers' own sparse layer, not the padded one of NeuSight's per-node traces:
# collect_label.py runs one configuration per process and trace_graph calls measure_e2e before trace_fx_graph,
# the only caller of set_moe (scripts/asplos/collect_label.py, neusight/Tracing/trace.py). With every token id 1
# and no absolute positions, all tokens then route to one expert, which runs min(seq, capacity) x batch rows.
# The zoo's Switch runs every expert on batch x capacity rows (the padded layer, and any input that fills each
# expert's capacity); the reports show what that difference costs.
_BINARY = {"add", "mul", "div", "pow"}
_UNARY = {"addu", "mulu", "divu", "powu", "gelu", "relu", "tanh"}
_LABEL = re.compile(r"^(?P<model>[a-z0-9_]+)-(?P<mode>inf|train)-(?P<seq>\d+)-(?P<batch>\d+)\.json$")


def _params(op: str, row: dict[str, str]) -> dict[str, Any] | None:
    g = lambda k: int(row[k])  # noqa: E731
    # NeuSight's N is the reduction and K the output width (perfforge's k and n): its collect.py times
    # torch.bmm([B,M,N], [B,N,K]) and torch.nn.Linear(N, K) on a [B,M,N] input (neusight/Dataset/collect.py,
    # trsharm25/NeuSight @ bca31fb), and every kernel's launch grid tiles M x K (tests/unit/test_neusight_gemm_dims.py).
    if op == "bmm":
        return {"b": g("B"), "m": g("M"), "n": g("K"), "k": g("N")}
    if op == "linear":
        return {"m": g("B") * g("M"), "n": g("K"), "k": g("N"), "bias": True}
    if op == "ln":
        return {"rows": g("B"), "cols": g("H")}
    if op == "softmax":
        return {"rows": g("B"), "cols": g("H")}
    if op in _BINARY or op in _UNARY:
        return {"numel": g("B") * g("H")}
    if op == "conv":
        return {"batch": g("B"), "in_ch": g("Input_Channel"), "out_ch": g("Output_Channel"),
                "kernel": g("Kernel_Szie"), "h": g("Input_Size"), "w": g("Input_Size"), "stride": g("Stride"),
                "padding": g("Padding")}
    return None


_OP_NAMES = {"ln": "layer_norm", "conv": "conv2d", "addu": "add_scalar", "mulu": "mul_scalar",
             "divu": "div_scalar", "powu": "pow_scalar"}


def read_kernels(folder: str | Path, *, ops: list[str] | None = None, per_file: int | None = 200) -> list[dict[str, Any]]:
    """Kernel records from ``folder/kernels``; at most ``per_file`` evenly spaced rows per (op, GPU) file."""
    root = Path(folder) / "kernels"
    if not root.is_dir():
        raise ConfigError(f"NeuSight kernels folder not found: {root}")
    out: list[dict[str, Any]] = []
    for path in sorted(root.glob("*/*.csv.gz")):
        op = path.parent.name
        if ops and op not in ops:
            continue
        with gzip.open(path, "rt", newline="") as fh:
            rows = list(csv.DictReader(fh))
        step = max(1, len(rows) // per_file) if per_file else 1
        for i, row in enumerate(rows[::step][: per_file or None]):
            params = _params(op, row)
            if params is None:
                continue
            name = _OP_NAMES.get(op, op)
            out.append({
                "kind": "kernel", "group": "neusight", "op": name, "dtype": "fp32", "params": params,
                "latency_s": float(row["Latency"]) * 1e-3, "device": {"name": row["Device"]},
                "key": f"neusight/{op}/{path.stem}/{i * step}", "run_id": f"neusight:{path.parent.name}/{path.name}",
                "source": SOURCE, "extra": {"kernel_name": row.get("Kernel Name", "")[:120]},
            })
    return out


def label_params(neusight_model: str, mode: str) -> dict[str, Any]:
    """How a NeuSight label of ``neusight_model`` in ``mode`` ("train" | "inference") is predicted: the zoo model,
    no optimizer step but gradients accumulated (its loop never zeroes them: every backward after the first adds
    into ``.grad``, the ``grad_accumulate`` step), and for training NeuSight's dropout and head. Also used for
    perfforge's own re-measurements in NeuSight's harness (``perfforge profile --only neusight-e2e``), which ran
    the same setup."""
    train = mode == "train"
    return {"model": MODELS.get(neusight_model), "neusight_model": neusight_model, "mode": mode,
            "optimizer": "grad_accumulate", "exclude_optimizer": False,
            **({"dropout": TRAIN_DROPOUT} if train and neusight_model in DROPOUT_MODELS else {}),
            **({"head": TRAIN_HEADS[neusight_model]} if train and neusight_model in TRAIN_HEADS else {})}


def harness_record_params(rec: dict[str, Any]) -> dict[str, Any]:
    """The params of a record measured in NeuSight's harness (``params.harness == "neusight"``) as its NeuSight
    label's would be: the record's own batch, sequence and fields, with the label's model, dropout and head."""
    p = rec["params"]
    ns_model = p["neusight_label"].split("-")[0]
    out = {k: v for k, v in p.items() if k != "dropout"}
    return {**out, **label_params(ns_model, p["mode"])}


def read_labels(folder: str | Path) -> list[dict[str, Any]]:
    """End-to-end model latencies. Training labels are forward + backward with no optimizer step (the gradients
    accumulate across NeuSight's iterations)."""
    root = Path(folder) / "labels"
    if not root.is_dir():
        raise ConfigError(f"NeuSight labels folder not found: {root}")
    configs = {json.loads(p.read_text())["Device"]: p.stem for p in (Path(folder) / "device_configs").glob("*.json")}
    by_folder = {v: k for k, v in configs.items()}
    out = []
    for path in sorted(root.glob("*/*.json")):
        m = _LABEL.match(path.name)
        if not m:
            continue
        data = json.loads(path.read_text())
        device = by_folder.get(path.parent.name, path.parent.name.replace("_", " "))
        mode = "train" if m["mode"] == "train" else "inference"
        out.append({
            "kind": "model", "group": "neusight", "op": f"{m['model']}_{mode}", "dtype": "fp32",
            "params": {"batch": int(m["batch"]), "seq": int(m["seq"]), **label_params(m["model"], mode)},
            "latency_s": float(data["e2e_latency"]) * 1e-3, "device": {"name": device},
            "key": f"neusight/{path.parent.name}/{path.stem}", "run_id": f"neusight:{path.parent.name}",
            "source": SOURCE,
        })
    return out
