"""ASTRA-sim export of tensor x pipeline x data parallel transformer steps (Megatron-LM style).

One Chakra trace per rank, from the same ``HybridPlan`` perfforge's own hybrid model schedules
(``perfforge.distributed.hybrid.plan_hybrid``), so the two answer from one set of per-op times and bytes:

- Ranks are numbered tensor-fastest, then data, then pipeline (Megatron-LM's default), as in perfforge.
- Each stage runs its pipeline order (GPipe, 1F1B or interleaved 1F1B, ``perfforge.distributed.pipeline``) as one
  chain: per microbatch and model chunk, a receive of the activations (of the gradients in the backward), the
  layers, and a send to the next stage (non-blocking: the chain does not wait for it).
- Each layer is its attention block and its MLP block, each followed by an all-reduce of the activations over
  the tensor-parallel group (with sequence parallelism: an all-gather before the block and a reduce-scatter
  after). With recomputation a layer's forward runs again before its backward.
- Stage-to-stage sends carry 1/tp of the activations, followed by an all-gather over the tensor-parallel group
  unless sequence parallelism keeps them split (Megatron-LM's scatter/gather, Narayanan et al. 2021, sec. 4.1).
- Data parallelism: during the last microbatch's backward each layer's fp32 gradients are all-reduced
  (reduce-scattered with ZeRO-1/2) over the data-parallel group as soon as that layer is done; the optimizer waits
  for all of them and every send; ZeRO-1/2 then all-gathers the updated parameters. Without ``overlap`` the
  reductions start after the last backward.
- ZeRO-3 (FSDP): every microbatch, each layer's parameters are all-gathered over the data-parallel group before
  its forward and again before its backward, each gather issued when the previous layer starts (one layer of
  prefetch, as perfforge prices it), and its gradients are reduce-scattered as soon as its backward is done; the
  parameters stay sharded after the optimizer step.
- Collectives name their communicator group (``pg_name``), listed in ``comm_groups.json`` (ASTRA-sim's
  ``--comm-group-configuration``: group id -> ranks), and set ``involved_dim`` to the network dimensions the group
  spans.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from perfforge.adapters.chakra import (
    COMM_COLL_NODE,
    COMM_RECV_NODE,
    COMM_SEND_NODE,
    COMM_TYPES,
    COMP_NODE,
    EtNode,
    write_et,
)
from perfforge.distributed.hybrid import FP32_BYTES, HybridPlan
from perfforge.distributed.pipeline import interleaved_order, stage_order
from perfforge.distributed.topology import Topology

COMM_GROUPS_FILE = "comm_groups.json"


def rank_of(t: int, d: int, s: int, tp: int, dp: int) -> int:
    """Megatron-LM's default order: tensor-parallel rank fastest, then data, then pipeline."""
    return s * tp * dp + d * tp + t


def comm_groups(tp: int, dp: int, pp: int) -> tuple[dict[int, list[int]], dict[tuple[int, int], int],
                                                      dict[tuple[int, int], int]]:
    """Group id -> ranks, and the tensor-parallel group id of each (stage, data rank) and the data-parallel group
    id of each (stage, tensor rank). Ids start at 1: ASTRA-sim reads 0 (or none) as every rank."""
    groups: dict[int, list[int]] = {}
    tp_id: dict[tuple[int, int], int] = {}
    dp_id: dict[tuple[int, int], int] = {}
    if tp > 1:
        for s in range(pp):
            for d in range(dp):
                tp_id[s, d] = len(groups) + 1
                groups[tp_id[s, d]] = [rank_of(t, d, s, tp, dp) for t in range(tp)]
    if dp > 1:
        for s in range(pp):
            for t in range(tp):
                dp_id[s, t] = len(groups) + 1
                groups[dp_id[s, t]] = [rank_of(t, d, s, tp, dp) for d in range(dp)]
    return groups, tp_id, dp_id


def involved_dims(ranks: list[int], topo: Topology) -> list[bool]:
    """Which of the network's dimensions (mixed radix, first dimension fastest) a group's ranks differ in."""
    out, stride = [], 1
    for dim in topo.dims:
        out.append(len({(r // stride) % dim.npus for r in ranks}) > 1)
        stride *= dim.npus
    return out


class _RankTrace:
    """One rank's trace: a chain of compute, receives and blocking collectives, plus nodes hung off it (sends,
    overlapped gradient reductions)."""

    def __init__(self, plan: HybridPlan, rank: int, groups: tuple[int | None, int | None],
                 dims: dict[int, list[bool]], param_bytes: int) -> None:
        par = plan.par
        self.plan, self.par, self.rank = plan, par, rank
        self.t, self.d, self.s = rank % par.tp, (rank // par.tp) % par.dp, rank // (par.tp * par.dp)
        self.tp_group, self.dp_group = groups
        self.dims = dims
        self.v = par.virtual_stages if par.schedule == "interleaved" else 1
        self.chunks = par.pp * self.v
        self.sp = par.sequence_parallel and par.tp > 1
        self.act = int(plan.act_bytes)
        self.nodes: list[EtNode] = []
        self.tail: int | None = None
        self.sends: list[int] = []
        self.reductions: list[int] = []
        self.pending: list[tuple[str, float]] = []   # gradient reductions left for the chain's end (no overlap)
        self.zero3 = par.zero == 3 and par.dp > 1
        self.param_bytes = param_bytes   # bytes per parameter as gathered (the model's dtype)
        self.anchor: int | None = None   # ZeRO-3: the chain node after which the next layer's gather is issued

    # ---- nodes -----------------------------------------------------------------------------------------------
    def add(self, name: str, type_: int, *, chain: bool = True, after: list[int] | None = None,
            duration_s: float = 0.0, **attrs: Any) -> int:
        # a node off the chain with its own dependencies (a prefetched gather) does not wait for the chain's tail;
        # every dependency is a data dependency, the kind every Chakra reader resolves (``chakra`` module)
        tail = [self.tail] if self.tail is not None and (chain or after is None) else []
        node = EtNode(len(self.nodes), name, type_, data_deps=tail + [a for a in after or [] if a not in tail],
                      duration_micros=max(1, round(duration_s * 1e6)) if type_ == COMP_NODE else 0,
                      attrs={"is_cpu_op": False, **attrs})
        self.nodes.append(node)
        if chain:
            self.tail = node.id
        return node.id

    def coll(self, name: str, kind: str, size: float, group: int | None, *, chain: bool = True,
             after: list[int] | None = None) -> int:
        attrs: dict[str, Any] = {"comm_type": COMM_TYPES[kind], "comm_size": int(size)}
        if group is not None:
            attrs |= {"pg_name": str(group), "involved_dim": self.dims[group]}
        return self.add(name, COMM_COLL_NODE, chain=chain, after=after, **attrs)

    def block(self, name: str, seconds: float, mb: int, after: list[int] | None = None) -> int:
        """One attention or MLP block with its tensor-parallel collectives; returns the compute node. ``after``:
        what its compute also waits for (a ZeRO-3 parameter gather)."""
        tp = self.par.tp
        if tp > 1 and self.sp:
            self.coll(f"{name}.allgather.mb{mb}", "all_gather", self.act, self.tp_group)
        node = self.add(f"{name}.mb{mb}", COMP_NODE, duration_s=seconds, after=after)
        if tp > 1:
            if self.sp:
                self.coll(f"{name}.reducescatter.mb{mb}", "reduce_scatter", self.act, self.tp_group)
            else:
                self.coll(f"{name}.allreduce.mb{mb}", "all_reduce", self.act, self.tp_group)
        return node

    def layer_forward(self, prefix: str, mb: int, after: list[int] | None = None) -> None:
        self.block(f"{prefix}.attn.fwd", self.plan.block_fwd_s[0], mb, after)
        self.block(f"{prefix}.mlp.fwd", self.plan.block_fwd_s[1], mb)

    def gather_layer(self, name: str, mb: int) -> list[int]:
        """ZeRO-3: this layer's parameters all-gathered over the data-parallel group, issued when the previous
        layer started (``self.anchor``); returns what the layer's first compute must wait for."""
        if not self.zero3:
            return []
        size = self.plan.layer_params * self.param_bytes
        node = self.coll(f"{name}.allgather.mb{mb}", "all_gather", size, self.dp_group, chain=False,
                         after=[self.anchor] if self.anchor is not None else [])
        self.anchor = self.tail
        return [node]

    def peer(self, chunk: int) -> int:
        """The rank of this rank's tensor/data position in the stage that holds model chunk ``chunk``."""
        return rank_of(self.t, self.d, chunk % self.par.pp, self.par.tp, self.par.dp)

    def tag(self, mb: int, chunk: int, backward: bool) -> int:
        return (mb * self.chunks + chunk) * 2 + int(backward)

    def receive(self, what: str, src_chunk: int, mb: int, tag: int) -> None:
        self.add(f"recv.{what}.mb{mb}", COMM_RECV_NODE, comm_src=self.peer(src_chunk), comm_dst=self.rank,
                 comm_tag=tag, comm_size=self.act // self.par.tp)
        if self.par.tp > 1 and not self.sp:
            self.coll(f"recv.{what}.allgather.mb{mb}", "all_gather", self.act, self.tp_group)

    def send(self, what: str, dst_chunk: int, mb: int, tag: int) -> None:
        self.sends.append(self.add(f"send.{what}.mb{mb}", COMM_SEND_NODE, chain=False, comm_src=self.rank,
                                   comm_dst=self.peer(dst_chunk), comm_tag=tag, comm_size=self.act // self.par.tp))

    def reduce_grads(self, name: str, params: float, node: int) -> None:
        size = params * FP32_BYTES
        if self.par.dp == 1 or not size:
            return
        kind = "reduce_scatter" if self.par.zero else "all_reduce"
        if self.par.overlap:
            self.reductions.append(self.coll(f"{name}.{kind.replace('_', '')}", kind, size, self.dp_group,
                                             chain=False, after=[node]))
        else:
            self.pending.append((name, size))

    # ---- the step --------------------------------------------------------------------------------------------
    def order(self) -> list[tuple[str, int, int]]:
        par = self.par
        if par.schedule == "interleaved" and self.v > 1:
            return interleaved_order(self.s, par.pp, par.microbatches, self.v)
        schedule = "gpipe" if par.schedule == "gpipe" else "1f1b"
        return [(kind, 0, mb) for kind, mb in stage_order(schedule, self.s, par.pp, par.microbatches)]

    def forward(self, c: int, mb: int) -> None:
        g = c * self.par.pp + self.s   # the model chunk's place in the whole pipeline
        if g > 0:
            self.receive("act", g - 1, mb, self.tag(mb, g, False))
        else:
            self.add(f"embed.fwd.mb{mb}", COMP_NODE, duration_s=self.plan.emb_fwd_s)
        self.anchor = self.tail
        for layer in range(self.plan.layers_per_stage // self.v):
            self.layer_forward(f"c{c}.layer{layer}", mb, self.gather_layer(f"c{c}.layer{layer}.fwd", mb))
        if g == self.chunks - 1:
            self.add(f"head.fwd.mb{mb}", COMP_NODE, duration_s=self.plan.head_fwd_s)
        else:
            self.send("act", g + 1, mb, self.tag(mb, g + 1, False))

    def backward(self, c: int, mb: int, grads_now: bool) -> None:
        plan = self.plan
        g = c * self.par.pp + self.s
        if g < self.chunks - 1:
            self.receive("grad", g + 1, mb, self.tag(mb, g, True))
        else:
            node = self.add(f"head.bwd.mb{mb}", COMP_NODE, duration_s=plan.head_bwd_s)
            if grads_now:
                self.reduce_grads("head.grads", plan.head_params, node)
        self.anchor = self.tail
        for layer in reversed(range(plan.layers_per_stage // self.v)):
            name = f"c{c}.layer{layer}"
            gathered = self.gather_layer(f"{name}.bwd", mb)
            if self.par.recompute:
                self.layer_forward(f"{name}.recompute", mb, gathered)
                gathered = []
            self.block(f"{name}.mlp.bwd", plan.block_bwd_s[1], mb, gathered)
            node = self.block(f"{name}.attn.bwd", plan.block_bwd_s[0], mb)
            if self.zero3:   # sharded gradients: reduce-scattered every microbatch
                self.reduce_grads(f"{name}.grads.mb{mb}", plan.layer_params, node)
            elif grads_now:
                self.reduce_grads(f"{name}.grads", plan.layer_params, node)
        if g == 0:
            node = self.add(f"embed.bwd.mb{mb}", COMP_NODE, duration_s=plan.emb_bwd_s)
            if grads_now:
                self.reduce_grads("embed.grads", plan.emb_params, node)
        else:
            self.send("grad", g - 1, mb, self.tag(mb, g - 1, True))

    def build(self, optimizer_s: float) -> list[EtNode]:
        par, plan = self.par, self.plan
        order = self.order()
        last_backward = {c: max(i for i, (k, cc, _) in enumerate(order) if k == "B" and cc == c)
                         for c in range(self.v)}
        for i, (kind, c, mb) in enumerate(order):
            if kind == "F":
                self.forward(c, mb)
            else:
                self.backward(c, mb, grads_now=i == last_backward[c])
        kind = "reduce_scatter" if par.zero else "all_reduce"
        for name, size in self.pending:
            self.reductions.append(self.coll(f"{name}.{kind.replace('_', '')}", kind, size, self.dp_group))
        sharded = par.zero and par.dp > 1
        self.add("optimizer.shard" if sharded else "optimizer", COMP_NODE, duration_s=optimizer_s,
                 after=self.reductions + self.sends)
        if sharded and not self.zero3:   # ZeRO-1/2 gather the updated parameters; ZeRO-3 keeps them sharded
            params = (plan.layer_params * plan.layers_per_stage + (plan.emb_params if self.s == 0 else 0)
                      + (plan.head_params if self.s == par.pp - 1 else 0))
            self.coll("allgather.parameters", "all_gather", params * self.param_bytes, self.dp_group)
        return self.nodes


def iter_traces(plan: HybridPlan, topo: Topology, *, optimizer_s: float,
                param_bytes: int) -> Iterator[tuple[int, list[EtNode]]]:
    """(rank, trace) for every rank in rank order, one at a time (a 1024-rank export never holds them all).
    ``param_bytes``: bytes per parameter (the model's dtype)."""
    par = plan.par
    groups, tp_id, dp_id = comm_groups(par.tp, par.dp, par.pp)
    dims = {g: involved_dims(r, topo) for g, r in groups.items()}
    for rank in range(par.gpus):
        t, d, s = rank % par.tp, (rank // par.tp) % par.dp, rank // (par.tp * par.dp)
        yield rank, _RankTrace(plan, rank, (tp_id.get((s, d)), dp_id.get((s, t))), dims, param_bytes).build(optimizer_s)


def build_traces(plan: HybridPlan, topo: Topology, *, optimizer_s: float,
                 param_bytes: int) -> tuple[list[list[EtNode]], dict[int, list[int]]]:
    """Every rank's trace and the communicator groups."""
    traces = [nodes for _, nodes in iter_traces(plan, topo, optimizer_s=optimizer_s, param_bytes=param_bytes)]
    return traces, comm_groups(plan.par.tp, plan.par.dp, plan.par.pp)[0]


def export_hybrid(scenario: Any, out: Path) -> dict[str, Any]:
    """Write the traces and ``comm_groups.json`` for a scenario with tp > 1, pp > 1 or microbatches > 1; returns
    the manifest's scenario-specific part (the caller writes the network, system and memory files)."""
    from perfforge.distributed.engine import hybrid_plan
    from perfforge.distributed.hybrid import optimizer_step_s
    from perfforge.distributed.topology import job_topology
    from perfforge.system.catalog import get_device

    plan, h, workload = hybrid_plan(scenario)
    device = get_device(scenario.hardware)
    _, topo = job_topology(scenario.hardware, scenario.node, scenario.gpus)
    groups = comm_groups(h.par.tp, h.par.dp, h.par.pp)[0]
    out.mkdir(parents=True, exist_ok=True)
    cache: dict[tuple, bytes] = {}
    stage_size = h.par.tp * h.par.dp
    longest = collectives = p2p = 0
    for rank, nodes in iter_traces(plan, topo, param_bytes=workload.dtype.bytes,
                                   optimizer_s=optimizer_step_s(plan, scenario.optimizer, device, h.cal, workload.dtype)):
        if rank % stage_size == 0:
            cache.clear()   # ranks of one stage share nodes; the next stage's are different
        with open(out / f"workload.{rank}.et", "wb") as fh:
            write_et(fh, nodes, cache)
        longest = max(longest, len(nodes))
        collectives = max(collectives, sum(x.type == COMM_COLL_NODE for x in nodes))
        p2p = max(p2p, sum(x.type in (COMM_SEND_NODE, COMM_RECV_NODE) for x in nodes))
    (out / COMM_GROUPS_FILE).write_text(json.dumps({str(k): v for k, v in groups.items()}, indent=1))
    return {"topology": topo, "nodes_per_trace": longest, "collectives": collectives, "point_to_point": p2p,
            "comm_groups": COMM_GROUPS_FILE if groups else None,
            "parallel": {"tp": h.par.tp, "pp": h.par.pp, "dp": h.par.dp, "zero": h.par.zero,
                         "microbatches": h.par.microbatches, "schedule": h.par.schedule,
                         "virtual_stages": h.par.virtual_stages, "sequence_parallel": h.par.sequence_parallel,
                         "recompute": h.par.recompute}}
