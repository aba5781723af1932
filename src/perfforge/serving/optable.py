"""Per-layer operator times of one replica stage, tabulated over the shapes a serving batch can take.

The table has the operator breakdown Vidur profiles (``mlp.csv``, ``attention.csv``, ``all_reduce.csv``,
``send_recv.csv``): token-indexed ops (projections, norms, activation, residual add, rotary embedding,
tensor-parallel all-reduce, pipeline send/recv), prefill attention by (cached tokens, chunk) and decode
attention by (batch size, mean context). Times are per layer, per device, in seconds. A table comes from
perfforge's analytical model (``model_table``) or from measured profiles in Vidur's format
(``serving.vidur_profiles``); the simulator interpolates it, linearly, vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError
from perfforge.workload.models.transformer import TransformerConfig

NCCL_CPU_LAUNCH_S = 2e-5   # host launch of one NCCL call: Vidur 0.0.26's default nccl_cpu_launch_overhead_ms = 0.02
# Vidur's operator names, and perfforge's "attn_qk_norm" (Qwen3's RMSNorm on each head of Q and K) and
# "mlp_router" (a mixture of experts' router GEMM, top-k selection and weighted combine of the experts' outputs)
TOKEN_OPS = ("input_layernorm", "attn_pre_proj", "attn_rope", "attn_qk_norm", "attn_post_proj",
             "post_attention_layernorm", "mlp_router", "mlp_up_proj", "mlp_act", "mlp_down_proj", "add", "all_reduce",
             "send_recv", "emb", "lm_head")


def _grid(points: list[np.ndarray]) -> np.ndarray:
    return np.unique(np.concatenate(points)).astype(np.float64)


# Shapes a batch takes: exact for small token counts, coarser where times are close to linear.
TOKEN_GRID = _grid([np.arange(1, 65), np.arange(72, 1025, 8), np.arange(1088, 8193, 64),
                    np.round(8192 * 2 ** (np.arange(1, 30) / 4))])
CONTEXT_GRID = _grid([np.arange(0, 4097, 256), np.arange(4608, 16385, 512),
                      np.round(16384 * 2 ** (np.arange(1, 27) / 4))])
CHUNK_GRID = _grid([np.array([1, 2, 4, 8, 16]), np.arange(32, 1025, 32), np.arange(1088, 4097, 64),
                    np.round(4096 * 2 ** (np.arange(1, 17) / 4))])
BATCH_GRID = _grid([np.arange(1, 33), np.arange(40, 257, 8), np.arange(288, 1025, 32)])


def interp1(grid: np.ndarray, values: np.ndarray, x: np.ndarray | float) -> np.ndarray:
    """Piecewise-linear in x; linear extrapolation past the last point (times keep growing)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.interp(x, grid, values)
    over = x > grid[-1]
    if np.any(over):
        slope = (values[-1] - values[-2]) / (grid[-1] - grid[-2])
        y = np.where(over, values[-1] + slope * (x - grid[-1]), y)
    return y


def interp2(xg: np.ndarray, yg: np.ndarray, z: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear on a rectangular grid, clamped at the edges (``z[i, j]`` at ``xg[i], yg[j]``)."""
    x = np.minimum(np.maximum(np.asarray(x, dtype=np.float64), xg[0]), xg[-1])
    y = np.minimum(np.maximum(np.asarray(y, dtype=np.float64), yg[0]), yg[-1])
    i = np.minimum(np.searchsorted(xg, x, side="right") - 1, len(xg) - 2)
    j = np.minimum(np.searchsorted(yg, y, side="right") - 1, len(yg) - 2)
    x0, y0 = xg[i], yg[j]
    tx = (x - x0) / (xg[i + 1] - x0)
    ty = (y - y0) / (yg[j + 1] - y0)
    z00, z10, z01, z11 = z[i, j], z[i + 1, j], z[i, j + 1], z[i + 1, j + 1]
    return z00 + tx * (z10 - z00) + ty * (z01 - z00) + tx * ty * (z11 - z10 - z01 + z00)


@dataclass(frozen=True)
class OperatorTable:
    """Seconds per layer per device. ``token_ops[name][k]`` is at ``tokens[k]`` tokens; missing ops cost 0
    only when the model does not have them (``absent`` says which, so nothing is silently zero)."""

    tokens: np.ndarray
    token_ops: dict[str, np.ndarray]
    prefill_context: np.ndarray          # tokens already cached before the chunk
    prefill_chunk: np.ndarray
    prefill_time: np.ndarray             # [context, chunk], one request
    decode_batch: np.ndarray
    decode_context: np.ndarray           # mean context per request (tokens attended)
    decode_time: np.ndarray              # [batch, context]
    source: str
    absent: tuple[str, ...] = ()
    meta: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [op for op in TOKEN_OPS if op not in self.token_ops and op not in self.absent]
        if missing:
            raise ConfigError(f"operator table ({self.source}) lacks {', '.join(missing)}; "
                              "profile them or list them as absent")

    def token_time(self, op: str, tokens: np.ndarray | float) -> np.ndarray:
        if op in self.absent:
            return np.zeros_like(np.asarray(tokens, dtype=np.float64))
        return interp1(self.tokens, self.token_ops[op], tokens)

    def prefill_attention(self, context: np.ndarray, chunk: np.ndarray) -> np.ndarray:
        return interp2(self.prefill_context, self.prefill_chunk, self.prefill_time, context, chunk)

    def decode_attention(self, batch: np.ndarray, context: np.ndarray) -> np.ndarray:
        return interp2(self.decode_batch, self.decode_context, self.decode_time, batch, context)


def _ops_for(cfg: TransformerConfig, tp: int, tokens: int, dtype: DType) -> dict[str, object]:
    """One layer's ops (one TP shard) at ``tokens`` tokens, as perfforge Ops (or lists of Ops, whose times add),
    keyed by Vidur's names. A mixture of experts runs the experts its tokens reach
    (``transformer.routed_experts``), each split over the tensor-parallel ranks."""
    from perfforge.workload import layers as L
    from perfforge.workload.models.transformer import routed_experts

    h, d, nh, nkv = cfg.hidden, cfg.d_head, cfg.heads // tp, max(1, cfg.n_kv_heads // tp)
    ffn = cfg.ffn // tp
    if any(cfg.dense_layers):
        raise ConfigError(f"{cfg.name}: dense MLP layers between the MoE layers are not in the serving operator table "
                          "(one layer's operators, repeated); serve a model whose layers are alike")
    if cfg.embed_scale or cfg.windowed_layers or cfg.sandwich_norm or cfg.attn_softcap or cfg.final_softcap:
        raise ConfigError(f"{cfg.name}: the serving operator table has no embedding scale, sliding-window attention "
                          "or norms after the attention and MLP (Gemma's); serve a model without them")
    up = 2 * ffn if cfg.gated else ffn
    norm = L.rms_norm if cfg.norm == "rms" else L.layer_norm
    ops: dict[str, object] = {
        "input_layernorm": norm("norm1", (tokens, h), dtype),
        "attn_pre_proj": L.linear("qkv", tokens, h, (nh + 2 * nkv) * d, dtype, bias=cfg.qkv_bias),
        "attn_post_proj": L.linear("out", tokens, nh * d, h, dtype, bias=cfg.out_bias),
        "post_attention_layernorm": norm("norm2", (tokens, h), dtype),
        "mlp_up_proj": L.linear("up", tokens, h, up, dtype, bias=cfg.mlp_bias),
        "mlp_act": L.elementwise("act", (tokens, ffn), dtype, fn=cfg.activation, n_inputs=2 if cfg.gated else 1),
        "mlp_down_proj": L.linear("down", tokens, ffn, h, dtype, bias=cfg.mlp_bias),
        # two residual adds per block (after attention, after the MLP)
        "add": L.elementwise("add", (2 * tokens, h), dtype, fn="add", n_inputs=2),
        "emb": L.embedding("emb", tokens, max(1, cfg.vocab // tp), h, dtype),
    }
    if cfg.rotary:
        ops["attn_rope"] = L.elementwise("rope", (tokens, (nh + nkv) * d), dtype, fn="mul", n_inputs=2)
    if cfg.qk_norm:
        ops["attn_qk_norm"] = L.rms_norm("qk_norm", (tokens * (nh + nkv), d), dtype)
    if cfg.num_experts:
        e, k = cfg.num_experts, cfg.top_k
        active, rows = routed_experts(tokens, e, k)
        ops["mlp_router"] = [L.linear("router", tokens, h, e, dtype, bias=False), L.moe_router("route", tokens, e, k, dtype),
                             L.elementwise("combine", (tokens, k, h), dtype, fn="mul", n_inputs=2)]
        ops["mlp_up_proj"] = L.linear("experts.up", rows, h, up, dtype, bias=cfg.mlp_bias, batch=active)
        ops["mlp_act"] = L.elementwise("experts.act", (active, rows, ffn), dtype, fn=cfg.activation,
                                       n_inputs=2 if cfg.gated else 1)
        ops["mlp_down_proj"] = L.linear("experts.down", rows, ffn, h, dtype, bias=cfg.mlp_bias, batch=active)
        if cfg.shared_expert_ffn:   # every token also runs the shared expert (Qwen2-MoE), gated, added
            sf = cfg.shared_expert_ffn // tp
            ops["mlp_up_proj"] = [ops["mlp_up_proj"], L.linear("shared.up", tokens, h, 2 * sf if cfg.gated else sf,
                                                               dtype, bias=cfg.mlp_bias)]
            ops["mlp_act"] = [ops["mlp_act"], L.elementwise("shared.act", (tokens, sf), dtype, fn=cfg.activation,
                                                            n_inputs=2 if cfg.gated else 1)]
            ops["mlp_down_proj"] = [ops["mlp_down_proj"], L.linear("shared.down", tokens, sf, h, dtype,
                                                                   bias=cfg.mlp_bias)]
            if cfg.shared_expert_gate:
                ops["mlp_router"] += [L.linear("shared.gate", tokens, h, 1, dtype, bias=False),
                                      L.elementwise("shared.gate_act", (tokens, 1), dtype, fn="sigmoid"),
                                      L.elementwise("shared.scale", (tokens, h), dtype, fn="mul", n_inputs=2)]
            ops["mlp_router"].append(L.elementwise("shared.add", (tokens, h), dtype, fn="add", n_inputs=2))
    return ops


def model_table(model: str, hardware: str, tp: int = 1, dtype: str = "fp16", node: str | None = None,
                calibration: str | None = None, backend: str = "analytical") -> OperatorTable:
    """perfforge's operator table for ``model`` (a zoo id or an HF config.json; ``_model_table``)."""
    from perfforge.workload.decoders import model_key

    return _model_table(model_key(model), hardware, tp, dtype, node, calibration, backend)


@lru_cache(maxsize=32)
def _model_table(key: str, hardware: str, tp: int = 1, dtype: str = "fp16", node: str | None = None,
                 calibration: str | None = None, backend: str = "analytical") -> OperatorTable:
    """perfforge's op times for every shape in the grids, from one of the core engine's per-op backends
    (``analytical``: the roofline; ``learned``: the learned kernel model, roofline where it does not cover an
    op kind). A few thousand ops, timed in one batch."""
    from perfforge.distributed.collectives import collective_time
    from perfforge.distributed.topology import DEFAULT_NODE, cluster_topology
    from perfforge.engines.analytical.calibration import load_calibration
    from perfforge.engines.analytical.timers import OP_TIMERS
    from perfforge.system.catalog import get_device
    from perfforge.workload import layers as L
    from perfforge.workload.decoders import decoder_config, model_of

    model = model_of(key)
    cfg = decoder_config(model)
    if cfg.heads % tp or cfg.ffn % tp or cfg.shared_expert_ffn % tp:
        raise ConfigError(f"tp={tp} must divide {model}'s heads ({cfg.heads}) and MLP widths (ffn {cfg.ffn}"
                          + (f", shared expert {cfg.shared_expert_ffn}" if cfg.shared_expert_ffn else "") + ")")
    dt = DType.parse(dtype)
    device = get_device(hardware)
    cal = load_calibration(device.architecture, calibration)
    if backend not in OP_TIMERS:
        import perfforge.engines.learned  # noqa: F401  (registers the learned backend)
    timer = OP_TIMERS.get(backend)()

    slots: list[tuple[str, int]] = []   # (token op, index in TOKEN_GRID) of each timed op; a list's times add
    ops: list[object] = []
    for i, n in enumerate(TOKEN_GRID.astype(int)):
        for name, op in _ops_for(cfg, tp, int(n), dt).items():
            for one in op if isinstance(op, list) else [op]:
                slots.append((name, i))
                ops.append(one)
        # the LM head runs on the last position of each sequence; its rows are sequences, bounded by tokens
        slots.append(("lm_head", i))
        ops.append(L.linear("lm_head", int(n), cfg.hidden, max(1, cfg.vocab // tp), dt, bias=False))
    nh, nkv = cfg.heads // tp, max(1, cfg.n_kv_heads // tp)
    pre_ops = [L.attention("a", 1, nh, nkv, int(c), int(k + c), cfg.d_head, dt, causal=True)
               for k in CONTEXT_GRID for c in CHUNK_GRID]
    dec_ops = [L.attention("a", int(b), nh, nkv, 1, max(1, int(k)), cfg.d_head, dt, causal=True)
               for b in BATCH_GRID for k in CONTEXT_GRID]
    timings, info = timer.time_ops(ops + pre_ops + dec_ops, device, cal, dt)
    if any(x is None for x in timings):
        raise ConfigError(f"backend '{backend}' cannot time every serving op of {model}")
    secs = [x.time_s for x in timings]  # type: ignore[union-attr]
    token_ops: dict[str, np.ndarray] = {}
    for (name, i), sec in zip(slots, secs[:len(ops)]):
        token_ops.setdefault(name, np.zeros(len(TOKEN_GRID)))[i] += sec
    pre = np.array(secs[len(ops):len(ops) + len(pre_ops)]).reshape(len(CONTEXT_GRID), len(CHUNK_GRID))
    dec = np.array(secs[len(ops) + len(pre_ops):]).reshape(len(BATCH_GRID), len(CONTEXT_GRID))
    absent: list[str] = ([] if cfg.rotary else ["attn_rope"]) + ([] if cfg.qk_norm else ["attn_qk_norm"]) + \
        ([] if cfg.num_experts else ["mlp_router"])
    node_id = node or DEFAULT_NODE.get(hardware)
    # the calibration's collective_launch_s is the GPU-side per-call latency (fitted on NCCL kernel times);
    # the host adds its launch on top
    launch_s = NCCL_CPU_LAUNCH_S
    msg = TOKEN_GRID * cfg.hidden * dt.bytes
    if node_id is None:
        if tp > 1:
            raise ConfigError(f"no default node for '{hardware}'; name one with --node for tp > 1")
        absent += ["all_reduce", "send_recv"]  # a lone device: no collectives to model
    else:
        if tp > 1:
            topo = cluster_topology(node_id, tp)
            token_ops["all_reduce"] = np.array([collective_time("all_reduce", m, topo,
                                                                efficiency=cal.collective_efficiency,
                                                                launch_s=cal.collective_launch_s) + launch_s
                                                for m in msg])
        else:
            absent.append("all_reduce")
        # pipeline stages hand activations to the next stage over the node fabric (one hop)
        hop = cluster_topology(node_id, 2)
        token_ops["send_recv"] = np.array([collective_time("p2p", m, hop, efficiency=cal.collective_efficiency,
                                                           launch_s=cal.collective_launch_s) + launch_s for m in msg])

    return OperatorTable(
        tokens=TOKEN_GRID, token_ops={k: np.asarray(v) for k, v in token_ops.items()},
        prefill_context=CONTEXT_GRID, prefill_chunk=CHUNK_GRID, prefill_time=pre,
        decode_batch=BATCH_GRID, decode_context=CONTEXT_GRID, decode_time=dec,
        source=f"perfforge {backend} backend ({cal.source}) on {hardware}, tp={tp}, {dt.value}"
               + "".join(f"; {k}={v}" for k, v in info.items() if k != "fallback_note"), absent=tuple(absent),
        meta={"model": cfg.name, "hardware": hardware, "tp": tp, "dtype": dt.value, "backend": backend},
    )

