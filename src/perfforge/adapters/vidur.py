"""Vidur 0.0.26 adapter: run the same serving scenario through Vidur, on the same operator times.

perfforge builds Vidur's configuration from a ``ServeSpec`` and hands Vidur (a) the very requests perfforge
simulates and (b) Vidur-format prediction tables computed from perfforge's operator table, keyed as Vidur's
execution-time predictor looks them up, so the two simulators differ only in their simulation. Vidur runs in
whatever Python has it installed (``PERFFORGE_VIDUR_PYTHON``, ``--vidur-python``, or this interpreter when
``import vidur`` works), through ``vidur_runner.py``, which blocks all network access. Its per-request
metrics are read back into perfforge's metric names.

Where the two can differ on identical operator times, by Vidur's documented behaviour
(``vidur/execution_time_predictor/sklearn_execution_time_predictor.py``): it rounds a batch's token count
up to a multiple of 8, a decode batch's mean context up to a multiple of 256 and a prefill chunk up to 32;
it looks prefill attention up at (context *including* the chunk, chunk); and it adds a 0.02 ms NCCL launch
overhead per all-reduce (perfforge's table already includes one, so the adapter hands Vidur the table minus
that overhead). The embedding and LM head are not in Vidur's batch time: comparisons run perfforge without
them too (``vidur_composition``).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from perfforge.core.errors import ConfigError
from perfforge.serving.optable import NCCL_CPU_LAUNCH_S, OperatorTable
from perfforge.serving.requests import RequestSet
from perfforge.serving.spec import ServeSpec

VIDUR_MODELS = {"llama-2-7b": "meta-llama/Llama-2-7b-hf", "llama-2-70b": "meta-llama/Llama-2-70b-hf",
                "llama-3-8b": "meta-llama/Llama-3-8B", "llama-3-70b": "meta-llama/Llama-3-70B"}
VIDUR_DEVICES = {"a100-sxm4-80gb": ("a100", "a100_dgx"), "h100-sxm5-80gb": ("h100", "h100_dgx")}
KV_GRANULARITY = 256        # kv_cache_prediction_granularity
_GENERAL = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj", "mlp_act", "attn_rope",
            "input_layernorm", "post_attention_layernorm", "add")


def vidur_python(explicit: str | None = None) -> str:
    """The interpreter that has Vidur; ConfigError saying how to get one when there is none."""
    for candidate in (explicit, os.environ.get("PERFFORGE_VIDUR_PYTHON")):
        if candidate:
            if not Path(candidate).exists() and shutil.which(candidate) is None:
                raise ConfigError(f"Vidur interpreter not found: {candidate}")
            return candidate
    try:
        import vidur  # noqa: F401
    except ImportError:
        raise ConfigError("Vidur is not installed: `pip install vidur==0.0.26` (in this or another environment) "
                          "and point PERFFORGE_VIDUR_PYTHON or --vidur-python at that Python") from None
    return sys.executable


def vidur_composition(table: OperatorTable) -> OperatorTable:
    """The table without the ops Vidur's batch time leaves out (embedding, LM head)."""
    return replace(table, absent=tuple(sorted(set(table.absent) | {"emb", "lm_head"})))


def predictions(table: OperatorTable, spec: ServeSpec) -> dict[str, list[list[Any]]]:
    """Vidur's prediction dictionaries (ms) on the grid its predictor queries."""
    mt = spec.max_tokens
    tokens = np.arange(1, mt + 1, dtype=np.float64)
    out: dict[str, list[list[Any]]] = {}

    def rows(keys: list[tuple[int, ...]], seconds: np.ndarray) -> list[list[Any]]:
        return [[list(k), float(v) * 1e3] for k, v in zip(keys, seconds)]

    keys1 = [(int(t),) for t in tokens]
    for op in _GENERAL:
        out[op] = rows(keys1, table.token_time(op, tokens))
    out["attn_kv_cache_save"] = rows(keys1, np.zeros(len(tokens)))   # in perfforge's attention/QKV times
    if spec.tp > 1:
        out["all_reduce"] = rows(keys1, np.maximum(table.token_time("all_reduce", tokens) - NCCL_CPU_LAUNCH_S, 0))
    if spec.pp > 1:
        out["send_recv"] = rows(keys1, table.token_time("send_recv", tokens))
    ctx = np.arange(0, mt + 1, KV_GRANULARITY)
    chunks = np.arange(32, mt + 1, 32)
    k2, c2 = np.meshgrid(ctx, chunks, indexing="ij")
    out["attn_prefill"] = rows([(int(a), int(b)) for a, b in zip(k2.ravel(), c2.ravel())],
                               table.prefill_attention(k2.ravel().astype(float), c2.ravel().astype(float)))
    bs = np.arange(1, spec.max_batch_size + 1)
    b2, k3 = np.meshgrid(bs, ctx, indexing="ij")
    out["attn_decode"] = rows([(int(a), int(b)) for a, b in zip(b2.ravel(), k3.ravel())],
                              table.decode_attention(b2.ravel().astype(float), k3.ravel().astype(float)))
    return out


def build_job(spec: ServeSpec, requests: RequestSet, table: OperatorTable, num_blocks: int, out_dir: Path) -> dict[str, Any]:
    if spec.model not in VIDUR_MODELS:
        raise ConfigError(f"Vidur 0.0.26 has no config for '{spec.model}' (it knows: {', '.join(VIDUR_MODELS)})")
    if spec.hardware not in VIDUR_DEVICES:
        raise ConfigError(f"Vidur 0.0.26 has no device for '{spec.hardware}' (mapped: {', '.join(VIDUR_DEVICES)})")
    if spec.scheduler not in ("vllm", "sarathi", "orca"):
        raise ConfigError(f"Vidur 0.0.26 has no '{spec.scheduler}' scheduler (allowed here: vllm, sarathi, orca)")
    if spec.routing != "round_robin":
        raise ConfigError("the Vidur adapter uses round_robin routing (Vidur's default)")
    device, network = VIDUR_DEVICES[spec.hardware]
    return {
        "model_name": VIDUR_MODELS[spec.model], "device": device, "network_device": network, "tp": spec.tp,
        "pp": spec.pp, "replicas": spec.replicas, "scheduler": spec.scheduler, "max_batch_size": spec.max_batch_size,
        "max_tokens_per_batch": spec.max_tokens_per_batch, "chunk_size": spec.chunk_size,
        "block_size": spec.block_size, "num_blocks": num_blocks, "max_tokens": spec.max_tokens, "seed": spec.seed,
        "arrival": requests.arrival_s.tolist(), "prefill": requests.prefill.tolist(),
        "decode": requests.decode.tolist(), "predictions": predictions(table, spec), "output_dir": str(out_dir),
    }


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def parse_output(metrics_dir: Path) -> dict[str, Any]:
    """Vidur's ``request_metrics.csv`` -> per-request arrays in seconds (perfforge's metric names)."""
    files = sorted(Path(metrics_dir).rglob("request_metrics.csv"))
    if not files:
        raise ConfigError(f"Vidur wrote no request_metrics.csv under {metrics_dir}")
    rows = _read_csv(files[0])

    def col(name: str) -> np.ndarray:
        if name not in rows[0]:
            raise ConfigError(f"Vidur's request_metrics.csv lacks '{name}' (has: {', '.join(rows[0])})")
        return np.array([float(r[name]) if r[name] != "" else math.nan for r in rows])

    ids = col("Request Id").astype(int)
    order = np.argsort(ids)
    out = {"ttft": col("prefill_e2e_time")[order], "e2e": col("request_e2e_time")[order],
           "tpot": col("decode_time_execution_plus_preemption_normalized")[order],
           "restarts": col("request_num_restarts")[order], "scheduling_delay": col("request_scheduling_delay")[order]}
    tbt_files = sorted(Path(metrics_dir).rglob("decode_token_execution_plus_preemption_time.csv"))
    if tbt_files:
        t = _read_csv(tbt_files[0])
        key = next(k for k in t[0] if k.startswith("decode_token"))
        out["tbt"] = np.array([float(r[key]) for r in t])
    return out


def run_vidur(spec: ServeSpec, requests: RequestSet, table: OperatorTable, num_blocks: int, *,
              python: str | None = None, workdir: str | Path | None = None, timeout_s: float = 3600) -> dict[str, Any]:
    """Run Vidur on the scenario; per-request metrics plus the CPU seconds its simulation loop took."""
    exe = vidur_python(python)
    base = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="perfforge-vidur-"))
    base.mkdir(parents=True, exist_ok=True)
    job = build_job(spec, requests, table, num_blocks, base / "out")
    job_path = base / "job.json"
    job_path.write_text(json.dumps(job))
    runner = Path(__file__).with_name("vidur_runner.py")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([exe, str(runner), str(job_path)], capture_output=True, text=True, env=env,
                          timeout=timeout_s, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise ConfigError(f"Vidur failed (exit {proc.returncode}): {tail[0]}")
    info = json.loads((base / "out" / "perfforge_runner.json").read_text())
    metrics = parse_output(Path(info["metrics_dir"]))
    metrics["simulation_cpu_s"] = info["simulation_cpu_s"]   # the event loop and metrics (Simulator.run)
    metrics["setup_cpu_s"] = info["setup_cpu_s"]             # configs, predictor tables
    return metrics
