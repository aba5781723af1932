"""Serving ground truth for the evaluation harness.

Two kinds of rows:

- ``serving-ops``: one transformer layer's non-attention time (the token-indexed ops Vidur profiles: norms,
  QKV/output/MLP projections, activation, residual add, rotary embedding) at ``num_tokens`` tokens, measured by
  Vidur on A100/H100 (``data/ground_truth/vidur``) against perfforge's serving operator table (the same
  ops, summed). This is the batch-time model's accuracy, minus attention, on real GPUs.
- ``serving-iteration``: a whole decoder's prefill or decode iteration (every layer, embedding, LM head on
  the last positions), measured on a GPU by ``perfforge profile --only llm`` as the sum of its kernel
  durations, against perfforge's stage timer for the same batch.
- ``serving-sim``: Vidur 0.0.26's simulated TTFT/TPOT/E2E percentiles for recorded scenarios
  (``data/ground_truth/vidur-sim/reference_outputs.json``, produced by ``benchmarks/compare_vidur.py`` with the
  real Vidur) against perfforge's simulator on the same requests and operator times; variant ``as-shipped``
  uses perfforge's own lookups, ``vidur-lookups`` emulates Vidur's (simulation semantics alone).
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np

from perfforge.evaluation.measured import DEVICE_IDS
from perfforge.evaluation.vidur import DEVICES

# Vidur's profiled model folders -> perfforge zoo ids (only the ones the zoo has)
VIDUR_MODEL_IDS = {"meta-llama/Llama-2-7b-hf": "llama-2-7b", "meta-llama/Llama-2-70b-hf": "llama-2-70b",
                   "meta-llama/Meta-Llama-3-8B": "llama-3-8b", "meta-llama/Meta-Llama-3-70B": "llama-3-70b"}
# Vidur's A100 and H100 folders, as catalog ids (the serving suite's scope; its A40 profiles are not used here)
GPU_IDS = {gpu: DEVICE_IDS[DEVICES[gpu]] for gpu in ("a100", "h100")}
OPS = ("input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj", "post_attention_layernorm",
       "mlp_up_proj", "mlp_act", "mlp_down_proj", "add")
TOKENS = (1, 8, 32, 128, 512, 2048, 4096)


def serving_op_cases(folder: Path, source: str) -> list[dict[str, Any]]:
    """Measured per-layer non-attention times at a few token counts, per (GPU, model, TP)."""
    out = []
    seen: set[str] = set()
    for path in sorted((folder / "profiling" / "compute").glob("*/*/*/mlp.csv.gz")):
        gpu, model = path.parts[-4], "/".join(path.parts[-3:-1])
        if gpu not in GPU_IDS or model not in VIDUR_MODEL_IDS:
            continue
        with gzip.open(path, "rt", newline="") as fh:
            rows = list(csv.DictReader(fh))
        for row in rows:
            n, tp = int(row["num_tokens"]), int(row["num_tensor_parallel_workers"])
            if n not in TOKENS:
                continue
            key = f"vidur/{gpu}/{VIDUR_MODEL_IDS[model]}/tp{tp}/{n}"
            if key in seen:
                continue   # the profiles repeat some rows; the first measurement is kept
            seen.add(key)
            parts = {op: float(row[f"time_stats.{op}.median"]) * 1e-3 for op in OPS
                     if row.get(f"time_stats.{op}.median") not in (None, "")}
            out.append({"id": key, "model": VIDUR_MODEL_IDS[model],
                        "hardware": GPU_IDS[gpu], "tp": tp, "tokens": n, "measured_s": sum(parts.values()),
                        "ops": sorted(parts), "device_name": DEVICES[gpu], "source": source})
    return out


def predict_serving_ops(case: dict[str, Any]) -> float:
    from perfforge.serving.optable import model_table

    table = model_table(case["model"], case["hardware"], case["tp"], "fp16")
    return float(sum(table.token_time(op, case["tokens"]) for op in case["ops"] if op not in table.absent))


def serving_sim_cases(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    doc = json.loads(path.read_text())
    return doc["meta"], doc["cases"]


def predict_serving_sim(case: dict[str, Any], metric: str, vidur_lookups: bool) -> float:
    from perfforge.adapters.vidur import vidur_composition
    from perfforge.serving.run import operator_table, request_set, simulate
    from perfforge.serving.spec import make_spec

    spec = make_spec(**case["spec"])
    table = vidur_composition(operator_table(spec))
    report = simulate(spec, request_set(spec), table, vidur_lookups=vidur_lookups)
    s = report.output.state
    arrays = {"ttft": s.first_token_at - s.arrival, "e2e": s.completed_at - s.arrival,
              "tpot": (s.completed_at - s.first_token_at) / s.orig_decode}   # Vidur's TPOT definition
    name, pct = metric.rsplit("_p", 1)
    return float(np.nanpercentile(arrays[name], float(pct.removesuffix("_s"))))


def iteration_cases(path: Path, source: str) -> list[dict[str, Any]]:
    """The ``llm_prefill``/``llm_decode`` records of a ``perfforge profile --only llm`` measurements file."""
    from perfforge.evaluation.measured import read_measurements

    out = []
    for rec in read_measurements(path):
        if not rec["op"].startswith("llm_"):
            continue
        p, phase = rec["params"], rec["op"].removeprefix("llm_")
        length = p["prompt"] if phase == "prefill" else p["context"]
        name = rec["device"]["name"]
        out.append({"id": f"{name}/{rec['key']}", "model": p["model"], "hardware": DEVICE_IDS.get(name, name),
                    "phase": phase, "missing": "" if name in DEVICE_IDS else f"device '{name}' is not in the catalog",
                    "batch": p["batch"], "length": length, "dtype": rec["dtype"], "measured_s": rec["latency_s"],
                    "wall_s": rec.get("extra", {}).get("wall_s"), "source": source})
    return out


def predict_iteration(case: dict[str, Any]) -> float:
    """perfforge's stage time for the case's batch: ``batch`` prompts of ``length`` tokens (prefill), or
    ``batch`` decoding requests with ``length`` tokens already cached (decode)."""
    from perfforge.serving.batch_time import StageTimer
    from perfforge.serving.optable import model_table
    from perfforge.workload.zoo import MODELS

    cfg = MODELS.get(case["model"]).config
    timer = StageTimer(model_table(case["model"], case["hardware"], 1, case["dtype"]), cfg.layers, 1, 1,
                       gqa=cfg.n_kv_heads < cfg.heads)
    b, n = case["batch"], case["length"]
    if case["phase"] == "prefill":
        q = np.full(b, n, dtype=np.int64)
        return timer.batch_time(q, q.copy())
    return timer.batch_time(np.ones(b, dtype=np.int64), np.full(b, n + 1, dtype=np.int64))
