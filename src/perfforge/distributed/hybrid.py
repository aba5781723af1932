"""Tensor x pipeline x data parallel training of transformers (Megatron-LM style), with ZeRO stages.

One training step of one GPU, composed from per-op analytical times of a tensor-parallel shard:

- **Tensor parallelism** (Shoeybi et al. 2019): attention heads, MLP width and the vocabulary split over
  ``tp`` GPUs of a node; two all-reduces of the layer's activations in the forward and two in the backward
  (with sequence parallelism, Korthikanti et al. 2022, each becomes a reduce-scatter plus an all-gather of
  the same bytes, and norms/dropout run on 1/tp of the tokens). TP collectives sit on the critical path.
- **Pipeline parallelism** (Narayanan et al. 2021): layers split over ``pp`` stages, ``m`` microbatches.
  GPipe, 1F1B and interleaved 1F1B (``v`` chunks per stage, Megatron-LM's order) are simulated stage by stage
  (``perfforge.distributed.pipeline``), the first stage (chunk) also running the embedding and the last the LM
  head and loss. Activations cross stage boundaries point to point, once per chunk: interleaving v chunks sends
  v times as many activations (the paper's cost of the smaller bubble).
- **Data parallelism** over ``dp`` replicas: fp32 gradients all-reduced (ZeRO-1/2/3: reduce-scattered, then
  parameters all-gathered: the same volume, Rajbhandari et al. 2020 Sec. 7), overlapped with the last
  microbatch's backward when ``overlap``.
- **ZeRO** (Rajbhandari et al. 2020): stage 1 shards optimizer state, 2 also gradients, 3 also parameters
  (all-gathered per layer in forward and backward, prefetched behind compute). FSDP is ZeRO-3.
Ranks are ordered tensor-fastest, then data, then pipeline (Megatron-LM's default), which decides whether a
group's links are NVLink or the network.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError, InfeasibleError, UnmodelledOpError
from perfforge.distributed.collectives import collective_time
from perfforge.distributed.pipeline import simulate_interleaved, simulate_pipeline
from perfforge.distributed.topology import Dimension, Topology
from perfforge.engines.analytical.calibration import Calibration
from perfforge.engines.analytical.roofline import op_time
from perfforge.system.device import DeviceSpec
from perfforge.system.network import NodeSpec
from perfforge.workload.backward import backward_ops
from perfforge.workload.models.transformer import TransformerConfig, build_transformer
from perfforge.workload.op import Op, OpKind
from perfforge.workload.optimizer import get_optimizer, optimizer_op, optimizer_state_bytes_per_param

FP32_BYTES = 4
SCHEDULES = ("1f1b", "gpipe", "interleaved")


@dataclass(frozen=True, slots=True)
class ParallelConfig:
    tp: int = 1
    pp: int = 1
    dp: int = 1
    zero: int = 0
    microbatches: int = 1
    schedule: str = "1f1b"
    virtual_stages: int = 1
    sequence_parallel: bool = False
    recompute: bool = False
    overlap: bool = True

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "dp", "microbatches", "virtual_stages"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.zero not in (0, 1, 2, 3):
            raise ConfigError(f"zero must be 0, 1, 2 or 3, got {self.zero}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule '{self.schedule}' (allowed: {', '.join(SCHEDULES)})")
        if self.schedule != "interleaved" and self.virtual_stages != 1:
            raise ConfigError("virtual_stages > 1 needs schedule 'interleaved'")

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp


def shard_config(cfg: TransformerConfig, tp: int) -> TransformerConfig:
    """The per-GPU slice of a tensor-parallel transformer: heads, KV heads, MLP width, vocabulary / tp."""
    if cfg.heads % tp:
        raise InfeasibleError(f"tp {tp} does not divide {cfg.name}'s {cfg.heads} attention heads")
    for what, width in (("MLP width", cfg.ffn), ("shared expert width", cfg.shared_expert_ffn),
                        ("dense MLP width", cfg.dense_ffn)):
        if width % tp:
            raise InfeasibleError(f"tp {tp} does not divide {cfg.name}'s {what} {width}")
    kv = cfg.n_kv_heads
    kv_shard = kv // tp if kv >= tp else 1  # fewer KV heads than ranks: each rank keeps one (replicated)
    if kv >= tp and kv % tp:
        raise InfeasibleError(f"tp {tp} does not divide {cfg.name}'s {kv} KV heads")
    return replace(cfg, heads=cfg.heads // tp, kv_heads=kv_shard, head_dim=cfg.d_head, ffn=cfg.ffn // tp,
                   shared_expert_ffn=cfg.shared_expert_ffn // tp, dense_ffn=cfg.dense_ffn // tp,
                   vocab=-(-cfg.vocab // tp), name=f"{cfg.name} (tp={tp} shard)")


@dataclass(frozen=True)
class HybridStep:
    step_time_s: float
    compute_s: float
    tp_comm_s: float
    pp_comm_s: float
    bubble_s: float
    dp_comm_s: float
    exposed_dp_s: float
    optimizer_s: float
    memory: dict[str, float]
    model_flops: float
    detail: dict[str, float]
    executed_flops: float = 0.0
    records: tuple = ()
    backend_info: dict = field(default_factory=dict)


def op_timer(backend: str) -> Any:
    """The per-op timer of ``backend`` (``perfforge.engines.analytical.timers.OP_TIMERS``)."""
    from perfforge.engines.analytical.timers import OP_TIMERS

    if backend not in OP_TIMERS:
        import perfforge.engines.learned  # noqa: F401  (registers the learned backend)
    return OP_TIMERS.get(backend)()


def _times(ops: list[Op], device: DeviceSpec, cal: Calibration, dtype: DType,
           timer: Any) -> tuple[float, float, dict[str, Any]]:
    """(forward seconds, backward seconds, the timer's facts) of ``ops``; an op no rule covers is an error."""
    every = list(ops) + [b for op in ops for b in backward_ops(op)]
    timings, info = timer.time_ops(every, device, cal, dtype)
    missing = sorted({op.name for op, t in zip(every, timings) if t is None})
    if missing:
        raise UnmodelledOpError(f"no rule times {', '.join(missing)} (backend '{timer.name}')")
    n = len(ops)
    return sum(t.time_s for t in timings[:n]), sum(t.time_s for t in timings[n:]), info


def _merge_info(infos: list[dict[str, Any]]) -> dict[str, Any]:
    """One result's backend facts from several ``time_ops`` calls: op counts and fallbacks summed."""
    out: dict[str, Any] = {}
    fallback: Counter[str] = Counter()
    for info in infos:
        for key, value in info.items():
            if key == "fallback_ops":
                fallback.update(value)
            elif key in ("learned_ops", "kernel_time_low_s", "kernel_time_high_s"):
                out[key] = out.get(key, 0) + value
            elif value or key not in out:
                out[key] = value
    if infos and any("fallback_ops" in i for i in infos):
        out["fallback_ops"] = dict(sorted(fallback.items()))
    out.pop("kernel_time_low_s", None)   # per-call sums over different op sets: not a step's interval
    out.pop("kernel_time_high_s", None)
    return out


def _groups(node: NodeSpec, net_bw: float, net_lat: float, par: ParallelConfig) -> tuple[Topology, Topology, Dimension]:
    per_node = node.devices_per_node
    kind = "switch" if node.fabric_kind == "nvswitch" else "ring"
    if par.tp > per_node:
        raise InfeasibleError(f"tp {par.tp} exceeds the {per_node} GPUs of a {node.id} node")
    tp_topo = Topology((Dimension("tp", kind, par.tp, node.fabric_bytes_per_s, node.fabric_latency_s),))
    dp_in = max(1, min(par.dp, per_node // par.tp))
    while par.dp % dp_in:
        dp_in -= 1
    dims = [Dimension("dp-node", kind, dp_in, node.fabric_bytes_per_s, node.fabric_latency_s)]
    if par.dp // dp_in > 1:
        dims.append(Dimension("dp-network", "switch", par.dp // dp_in, net_bw, net_lat))
    dp_topo = Topology(tuple(dims))
    intra_pp = par.tp * par.dp < per_node
    pp_link = (Dimension("pp", kind, 2, node.fabric_bytes_per_s, node.fabric_latency_s) if intra_pp
               else Dimension("pp", "switch", 2, net_bw, net_lat))
    return tp_topo, dp_topo, pp_link


@dataclass(frozen=True)
class HybridPlan:
    """What one GPU of a tp x pp x dp step runs, before the pipeline is scheduled: per-layer compute (split into
    the attention and the MLP block, each followed by its tensor-parallel collective), the first and last stages'
    extra work, the bytes every collective moves and the groups it runs over. ``simulate_hybrid`` schedules it;
    the ASTRA-sim export (``perfforge.adapters.astrasim_hybrid``) writes it out as per-rank traces."""

    par: ParallelConfig
    microbatch_size: int
    layers_per_stage: int
    block_fwd_s: tuple[float, float]   # one layer's attention and MLP blocks, forward compute
    block_bwd_s: tuple[float, float]   # the same, backward (without recomputation)
    emb_fwd_s: float
    emb_bwd_s: float
    head_fwd_s: float                  # final norm, LM head and loss
    head_bwd_s: float
    act_bytes: float                   # one microbatch's activations at a layer boundary
    tp_allreduce_s: float              # one all-reduce of act_bytes over the tensor-parallel group (SP: RS + AG)
    p2p_s: float                       # one stage-to-stage send, scatter/gather included
    zero3_allgather_s: float           # one layer's parameters all-gathered over the data-parallel group
    layer_params: int
    emb_params: int
    head_params: int
    layer_saved_bytes: float           # one layer's activations kept for the backward, one microbatch
    edge_saved_bytes: float            # the same for the embedding, head and loss
    tp_topo: Topology
    dp_topo: Topology
    pp_link: Dimension
    backend_info: dict[str, Any] = field(default_factory=dict)   # how the ops were timed (learned: fallbacks)

    @property
    def edge_params(self) -> int:
        """Parameters outside the layers on the GPU that holds the most of them."""
        if self.par.pp == 1:
            return self.emb_params + self.head_params
        return max(self.emb_params, self.head_params)

    @property
    def params_per_gpu(self) -> int:
        return self.layer_params * self.layers_per_stage + self.edge_params


def send_s(link: Dimension, nbytes: float, efficiency: float) -> float:
    """One point-to-point send of ``nbytes`` over ``link`` (a pipeline stage boundary)."""
    return link.latency_s + nbytes / (link.bytes_per_s * efficiency)


def _attention_block(ops: list[Op]) -> int:
    """How many of a layer's ops (in order) make its attention block: up to the last ``.attn.`` op."""
    last = max((i for i, op in enumerate(ops) if ".attn." in op.name), default=-1)
    if last < 0:
        raise ConfigError("a transformer layer without attention ops: the tensor-parallel split needs them")
    return last + 1


def plan_hybrid(cfg: TransformerConfig, *, device: DeviceSpec, node: NodeSpec, net_bw: float, net_lat: float,
                cal: Calibration, par: ParallelConfig, batch: int, seq: int, dtype: DType,
                backend: str = "analytical") -> HybridPlan:
    """The per-GPU work of one step; ``batch`` is sequences per data-parallel replica per step. ``backend`` times
    the ops (``analytical``: the roofline; ``learned``: the learned kernel model, the roofline for op kinds it does
    not cover, listed in ``backend_info``)."""
    if batch % par.microbatches:
        raise ConfigError(f"batch {batch} is not a multiple of microbatches {par.microbatches}")
    if cfg.layers % (par.pp * par.virtual_stages):
        raise InfeasibleError(f"{cfg.layers} layers do not split into pp {par.pp} x virtual stages {par.virtual_stages}")
    if par.pp > 1 and par.microbatches < par.pp and par.schedule != "gpipe":
        raise InfeasibleError(f"1F1B needs at least pp ({par.pp}) microbatches, got {par.microbatches}")
    mbs = batch // par.microbatches
    shard = shard_config(cfg, par.tp)
    wl = build_transformer(shard, batch=mbs, seq=seq, dtype=dtype)
    layer0 = [op for op in wl.ops if op.layer == "layers.0"]
    edge = [op for op in wl.ops if op.layer in ("embed", "head")]
    if wl.loss_op is not None:
        edge.append(wl.loss_op)
    if par.sequence_parallel and par.tp > 1:
        # norms, residual adds and pointwise ops run on 1/tp of the tokens
        layer0 = [op.with_(flops=op.flops / par.tp, bytes_read=op.bytes_read / par.tp,
                           bytes_written=op.bytes_written / par.tp, saved_bytes=op.saved_bytes / par.tp)
                  if op.kind not in (OpKind.MATMUL, OpKind.ATTENTION, OpKind.BMM) else op for op in layer0]
    split = _attention_block(layer0)
    timer = op_timer(backend)
    embed_ops = [op for op in edge if op.layer == "embed"]
    head_ops = [op for op in edge if op.layer != "embed"]  # final norm, LM head, loss
    (af, ab, i1), (mf, mb, i2), (emb_f, emb_b, i3), (head_f, head_b, i4) = (
        _times(group, device, cal, dtype, timer) for group in (layer0[:split], layer0[split:], embed_ops, head_ops))
    tp_topo, dp_topo, pp_link = _groups(node, net_bw, net_lat, par)
    act_bytes = mbs * seq * cfg.hidden * dtype.bytes
    nccl = {"efficiency": cal.collective_efficiency, "launch_s": cal.collective_launch_s}
    layer_params = sum(op.params for op in layer0)
    if par.sequence_parallel and par.tp > 1:
        # each all-reduce becomes a reduce-scatter and an all-gather of the same bytes (Korthikanti et al. 2022):
        # the same volume, but two calls, each with its own launch
        tp_ar = (collective_time("reduce_scatter", act_bytes, tp_topo, **nccl)
                 + collective_time("all_gather", act_bytes, tp_topo, **nccl))
    else:
        tp_ar = collective_time("all_reduce", act_bytes, tp_topo, **nccl)
    z3_ag = 0.0
    if par.zero == 3 and par.dp > 1:
        z3_ag = collective_time("all_gather", layer_params * dtype.bytes, dp_topo, **nccl)
    p2p = 0.0
    if par.pp > 1:
        # Megatron-LM's scatter/gather optimization (Narayanan et al. 2021, section 4.1): each of the tp ranks sends
        # 1/tp of the activations over its own link, and the next stage all-gathers them over NVLink (with sequence
        # parallelism the activations are already split, so nothing is gathered)
        p2p = send_s(pp_link, act_bytes / par.tp, cal.collective_efficiency)
        if par.tp > 1 and not par.sequence_parallel:
            p2p += collective_time("all_gather", act_bytes, tp_topo, **nccl)
    return HybridPlan(
        par=par, microbatch_size=mbs, layers_per_stage=cfg.layers // par.pp, block_fwd_s=(af, mf),
        block_bwd_s=(ab, mb), emb_fwd_s=emb_f, emb_bwd_s=emb_b, head_fwd_s=head_f, head_bwd_s=head_b,
        act_bytes=act_bytes, tp_allreduce_s=tp_ar, p2p_s=p2p,
        zero3_allgather_s=z3_ag, layer_params=layer_params, emb_params=sum(op.params for op in embed_ops),
        head_params=sum(op.params for op in head_ops), layer_saved_bytes=sum(op.saved_bytes for op in layer0),
        edge_saved_bytes=sum(op.saved_bytes for op in edge), tp_topo=tp_topo, dp_topo=dp_topo, pp_link=pp_link,
        backend_info=_merge_info([i1, i2, i3, i4]))


def optimizer_step_s(plan: HybridPlan, optimizer: str, device: DeviceSpec, cal: Calibration, dtype: DType) -> float:
    """The optimizer step over this GPU's parameters (its 1/dp shard with ZeRO 1-3)."""
    shard_params = int(plan.params_per_gpu / (plan.par.dp if plan.par.zero >= 1 else 1))
    return op_time(optimizer_op(get_optimizer(optimizer), shard_params, dtype), device, cal).time_s


def simulate_hybrid(cfg: TransformerConfig, *, device: DeviceSpec, node: NodeSpec, net_bw: float, net_lat: float,
                    cal: Calibration, par: ParallelConfig, batch: int, seq: int, dtype: DType,
                    optimizer: str = "adamw", backend: str = "analytical") -> HybridStep:
    """One step; ``batch`` is sequences per data-parallel replica per step (microbatch size x microbatches)."""
    plan = plan_hybrid(cfg, device=device, node=node, net_bw=net_bw, net_lat=net_lat, cal=cal, par=par,
                       batch=batch, seq=seq, dtype=dtype, backend=backend)
    mbs, layers_per_stage, p2p = plan.microbatch_size, plan.layers_per_stage, plan.p2p_s
    emb_f, emb_b, head_f, head_b = plan.emb_fwd_s, plan.emb_bwd_s, plan.head_fwd_s, plan.head_bwd_s
    if par.pp == 1:
        ef, eb = emb_f + head_f, emb_b + head_b
    else:  # the slowest stage sets the pace: the last one holds the head and the loss
        ef, eb = max(emb_f, head_f), max(emb_b, head_b)
    edge_params, layer_params = plan.edge_params, plan.layer_params
    lf, lb = sum(plan.block_fwd_s), sum(plan.block_bwd_s)
    tp_ar = plan.tp_allreduce_s
    tp_f, tp_b = 2 * tp_ar, 2 * tp_ar
    if par.recompute:
        lb += lf
        tp_b += tp_f
    z3_ag = plan.zero3_allgather_s
    if par.zero == 3 and par.dp > 1:
        lf, lb = max(lf, z3_ag), max(lb, 2 * z3_ag)  # prefetched gathers hide behind compute when shorter
    dp_topo = plan.dp_topo
    nccl = {"efficiency": cal.collective_efficiency, "launch_s": cal.collective_launch_s}
    t_b = layers_per_stage * (lb + tp_b) + eb + p2p
    m, p, v = par.microbatches, par.pp, par.virtual_stages
    slots = m + (p - 1) / v if par.schedule == "interleaved" else m + p - 1
    records: tuple = ()
    body_f = layers_per_stage * (lf + tp_f) + (p2p if p > 1 else 0.0)
    body_b = layers_per_stage * (lb + tp_b) + (p2p if p > 1 else 0.0)
    if par.schedule == "interleaved" and v > 1:
        # interleaved 1F1B, Narayanan et al. 2021: each stage holds v chunks of layers_per_stage / v layers, each
        # chunk sending its activations on; the first chunk of stage 0 carries the embedding, the last chunk of
        # the last stage the LM head and loss. With equal chunks the bubble is (p - 1) / v stage slots.
        chunk_f = layers_per_stage / v * (lf + tp_f) + (p2p if p > 1 else 0.0)
        chunk_b = layers_per_stage / v * (lb + tp_b) + (p2p if p > 1 else 0.0)
        cf = [[chunk_f] * v for _ in range(p)]
        cb = [[chunk_b] * v for _ in range(p)]
        cf[0][0] += emb_f
        cb[0][0] += emb_b
        cf[-1][-1] += head_f
        cb[-1][-1] += head_b
        run = simulate_interleaved(cf, cb, m)
        pipeline, bubble, records = run.makespan_s, run.bubble_s, run.records
    else:
        # stage by stage (interleaved with one chunk per stage is 1F1B): the first stage carries the embedding,
        # the last the LM head and loss; one stage is the whole model
        fs = [body_f] * p
        bs = [body_b] * p
        fs[0] += emb_f
        bs[0] += emb_b
        fs[-1] += head_f
        bs[-1] += head_b
        run = simulate_pipeline(fs, bs, m, "gpipe" if par.schedule == "gpipe" else "1f1b")
        pipeline, bubble, records = run.makespan_s, run.bubble_s, run.records
    # data-parallel gradient sync of this GPU's parameters
    params_gpu = layer_params * layers_per_stage + edge_params
    grad_bytes = params_gpu * FP32_BYTES
    reduce = gather = 0.0
    if par.dp > 1:
        if par.zero >= 1:
            # each rank updates its shard: gradients reduce-scattered (hidden behind the last backward when
            # ``overlap``), then ZeRO-1/2 all-gather the updated parameters after the optimizer step, with nothing
            # left to hide behind (the all-reduce's volume, split around the step; the data-parallel engine and the
            # ASTRA-sim export do the same). ZeRO-3 keeps them sharded: each layer gathers its own (layer times).
            reduce = collective_time("reduce_scatter", grad_bytes, dp_topo, **nccl)
            if par.zero < 3:
                gather = collective_time("all_gather", params_gpu * dtype.bytes, dp_topo, **nccl)
        else:
            reduce = collective_time("all_reduce", grad_bytes, dp_topo, **nccl)
    dp_comm = reduce + gather
    exposed_dp = (max(0.0, reduce - t_b) if par.overlap else reduce) + gather
    opt = get_optimizer(optimizer)
    opt_s = optimizer_step_s(plan, optimizer, device, cal, dtype)
    step = pipeline + exposed_dp + opt_s
    # memory per GPU
    w_b = params_gpu * dtype.bytes
    weights = w_b / (par.dp if par.zero >= 3 else 1)
    grads = w_b / (par.dp if par.zero >= 2 else 1)
    opt_states = params_gpu * optimizer_state_bytes_per_param(opt, dtype) / (par.dp if par.zero >= 1 else 1)
    per_layer_act = plan.layer_saved_bytes
    in_flight = m if par.schedule == "gpipe" else min(m, p)
    if par.recompute:
        ckpt = mbs * seq * cfg.hidden * dtype.bytes
        activations = in_flight * layers_per_stage * ckpt + per_layer_act
    else:
        activations = in_flight * layers_per_stage * per_layer_act
    activations += plan.edge_saved_bytes
    one = build_transformer(cfg, batch=1, seq=seq, dtype=dtype)  # FLOPs grow linearly with sequences
    model_flops = (one.forward_flops + one.backward_flops) * batch * par.dp
    # what the GPUs execute: recomputation replays each forward once more (not useful work: MFU leaves it out)
    executed_flops = model_flops + (one.forward_flops * batch * par.dp if par.recompute else 0.0)
    compute = m * layers_per_stage * (lf + lb) + m * (ef + eb)
    pp_comm = 2 * m * p2p * (v if par.schedule == "interleaved" else 1)   # one send per chunk and microbatch
    return HybridStep(
        step_time_s=step, compute_s=compute, tp_comm_s=m * layers_per_stage * (tp_f + tp_b), pp_comm_s=pp_comm,
        bubble_s=bubble, dp_comm_s=dp_comm, exposed_dp_s=exposed_dp, optimizer_s=opt_s,
        memory={"weights": weights, "gradients": grads, "optimizer_states": opt_states, "activations": activations},
        model_flops=model_flops, executed_flops=executed_flops,
        detail={"microbatch_size": mbs, "layer_fwd_s": lf, "layer_bwd_s": lb, "tp_allreduce_s": tp_ar,
                "zero3_allgather_s": z3_ag, "params_per_gpu": params_gpu, "pipeline_slots": slots},
        records=records, backend_info=plan.backend_info,
    )
