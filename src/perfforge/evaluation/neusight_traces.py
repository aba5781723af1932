"""NeuSight's per-node label traces as per-op-class sums, the measured side of its per-operator metric.

Each ``labels/<GPU>/<model>-<inf|train>-<seq>-<batch>.csv.gz`` (sitar-lab/NeuSight, MIT) is a torch.fx trace of
one model run on that GPU with a measured latency per node (ms; ``latency`` = forward + backward for training).
It holds one transformer block; NeuSight's ``summarize.py`` (``replicate_layer``) repeats the rows from a start
node to an end node ``num_layer`` times (``num_layer`` from the label JSON) before summing per op class.
This module does the same, with the same markers, and classes nodes the way NeuSight's op graph does as far as
the trace shows it: ``Linear`` modules, ``addmm`` and 2-D ``matmul`` are FC; ``bmm`` and batched ``matmul`` BMM;
``softmax``; ``LayerNorm``; and the pointwise ``add``/``mul``/``truediv``/``pow``/``tanh``/``gelu``/``relu`` with
a tensor output (NeuSight's VEC ops). Copies, views, dropout, embeddings, ``where``, ``masked_fill`` and scalar
arithmetic on sizes count as OTHER, as NeuSight drops them (``contiguous``, ``dropout``, ``misc``) or keeps them
out of the VEC classes.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path
from typing import Any

from perfforge.evaluation.neusight import _LABEL, MODELS, SOURCE, TRAIN_DROPOUT, TRAIN_HEADS

# NeuSight's scripts/asplos/summarize.py MODEL_LAYERS: the first and last node of the traced block
LAYER_MARKERS = {"bert": ("bert_encoder_layer_0_attention_self_query", "bert_encoder_layer_0_output_layer_norm"),
                 "gpt": ("transformer_h_0_ln_1", "add_15"),
                 "opt": ("model_decoder_layers_0_self_attn_layer_norm", "view_11")}
_POINTWISE_FUNCTIONS = {"<built-in function add>", "<built-in function mul>", "<built-in function truediv>",
                        "<built-in method pow of type object>", "<built-in method tanh of type object>",
                        "<built-in function gelu>", "<function gelu>", "<function relu>"}
_MODULE_CLASS = {"Linear": "FC", "LayerNorm": "NORM", "ReLU": "ELEMENTWISE", "Tanh": "ELEMENTWISE",
                 "GELU": "ELEMENTWISE", "NewGELUActivation": "ELEMENTWISE"}


def _dims(shapes: str) -> list[int]:
    """Ranks of the node's tensor inputs, from the trace's ``input_shapes`` text ("[[4, 1024], [1024]]")."""
    return [len([x for x in s.split(",") if x.strip()]) for s in re.findall(r"\[([^\[\]]*)\]", shapes)]


def node_class(row: dict[str, str]) -> str:
    """The op class of one trace node (FC, BMM, SOFTMAX, NORM, ELEMENTWISE) or OTHER."""
    op, target = row["op"], re.sub(r" at 0x[0-9a-f]+", "", row["target"])
    if op == "call_module":
        classes = re.findall(r"<class '([\w.]+)'>", row.get("meta", ""))
        return _MODULE_CLASS.get(classes[-1].rsplit(".", 1)[-1], "OTHER") if classes else "OTHER"
    if op != "call_function":
        return "OTHER"
    if "addmm" in target:
        return "FC"
    if "method bmm" in target:
        return "BMM"
    if "method matmul" in target:
        ranks = _dims(row.get("input_shapes", ""))
        return "BMM" if len(ranks) >= 2 and min(ranks) >= 3 else "FC"
    if "function softmax" in target:
        return "SOFTMAX"
    if "function layer_norm" in target:
        return "NORM"
    if target in _POINTWISE_FUNCTIONS and row.get("output_shape", "(1,)") != "(1,)":
        return "ELEMENTWISE"
    return "OTHER"


def mask_class(rows: list[dict[str, str]]) -> str:
    """How the trace masks its attention scores, as NeuSight classes it: ``OTHER`` where a ``where`` or
    ``masked_fill`` writes the scores tensor (GPT-2 style models in NeuSight's HF version), ``ELEMENTWISE``
    where the mask is added (BERT's extended mask, OPT's causal mask). Building the mask itself (one head,
    ``[b, 1, s, s]``) is not the masking of the scores."""
    for row in rows:
        target = row["target"]
        if row["op"] in ("call_function", "call_method") and ("where" in target or "masked_fill" in target):
            shape = [int(x) for x in re.findall(r"\d+", row.get("output_shape", ""))]
            if len(shape) == 4 and shape[1] > 1:
                return "OTHER"
    return "ELEMENTWISE"


def _replicated(rows: list[dict[str, str]], model: str, n_layer: int) -> list[dict[str, str]]:
    for family, (first, last) in LAYER_MARKERS.items():
        if family in model:
            names = [r["Name"] for r in rows]
            if first not in names or last not in names:
                raise ValueError(f"{model}: trace lacks the layer markers {first}..{last}")
            i, j = names.index(first), names.index(last) + 1
            return rows[:i] + rows[i:j] * n_layer + rows[j:]
    raise ValueError(f"no layer markers for NeuSight model {model!r}")


def read_trace(csv_path: str | Path) -> list[dict[str, str]]:
    with gzip.open(csv_path, "rt", newline="") as fh:
        return list(csv.DictReader(fh))


def class_sums(csv_path: str | Path, n_layer: int, model: str) -> dict[str, float]:
    """Seconds per op class of one label trace, the block repeated ``n_layer`` times."""
    return _class_sums(read_trace(csv_path), n_layer, model)


def _class_sums(rows: list[dict[str, str]], n_layer: int, model: str) -> dict[str, float]:
    sums: dict[str, float] = {}
    for row in _replicated(rows, model, n_layer):
        c = node_class(row)
        sums[c] = sums.get(c, 0.0) + float(row["latency"] or 0.0) * 1e-3
    return sums


def read_label_breakdowns(folder: str | Path) -> list[dict[str, Any]]:
    """One record per label with a trace: the label's run (model, mode, batch, seq, GPU, e2e latency) and the
    per-class sums of its trace, in the layout ``perfforge.evaluation.op_breakdown.evaluate`` takes."""
    root = Path(folder)
    configs = {json.loads(p.read_text())["Device"]: p.stem for p in (root / "device_configs").glob("*.json")}
    by_folder = {v: k for k, v in configs.items()}
    out = []
    for path in sorted((root / "labels").glob("*/*.csv.gz")):
        m = _LABEL.match(path.name.removesuffix(".csv.gz") + ".json")
        label_json = path.with_name(path.name.removesuffix(".csv.gz") + ".json")
        if not m or not label_json.is_file() or MODELS.get(m["model"]) is None:
            continue
        label = json.loads(label_json.read_text())
        mode = "train" if m["mode"] == "train" else "inference"
        rows = read_trace(path)
        out.append({
            "kind": "model", "group": "neusight_trace", "op": f"{m['model']}_{mode}", "dtype": "fp32",
            "params": {"model": MODELS[m["model"]], "mode": mode, "batch": int(m["batch"]), "seq": int(m["seq"]),
                       "neusight_label": label_json.stem, **({"dropout": TRAIN_DROPOUT} if mode == "train" else {}),
                       **({"head": TRAIN_HEADS[m["model"]]} if mode == "train" and m["model"] in TRAIN_HEADS else {})},
            "latency_s": float(label["e2e_latency"]) * 1e-3,
            "device": {"name": by_folder.get(path.parent.name, path.parent.name.replace("_", " "))},
            "class_sums": _class_sums(rows, int(label["num_layer"]), m["model"]),
            "mask_class": mask_class(rows),
            "run_id": f"neusight:{path.parent.name}", "source": SOURCE,
        })
    return out
