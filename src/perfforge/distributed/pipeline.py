"""Pipeline schedules simulated stage by stage: GPipe, 1F1B and interleaved 1F1B, with per-stage (per-chunk)
forward/backward times.

Each stage runs its own order of microbatch forwards (F) and backwards (B):
- GPipe: all forwards, then all backwards;
- 1F1B (PipeDream-Flush, Narayanan et al. 2021): stage s runs min(p-s-1, m) warm-up forwards, then
  alternates one forward and one backward, then drains the remaining backwards.
F(s, i) needs F(s-1, i); B(s, i) needs B(s+1, i) (the last stage's B needs its own F). A stage starts an op
when its previous op is done and the dependency is met. With equal stages both schedules take
(m + p - 1) x (t_f + t_b), the closed form; unequal stages (embedding on the first, LM head on the last) are
what the simulation adds. Cost is O(p x m).

Interleaved 1F1B (Narayanan et al. 2021, section 2.2.2) gives each stage v model chunks: chunk c of stage s holds
layers [(c p + s) L/(p v), ...). Its forward passes run stage 0 .. p-1 for chunk 0, then again for chunk 1, and so
on; backwards the other way. Each stage's order is Megatron-LM's: microbatches in groups of p, chunk by chunk,
(p - s - 1) x 2 + (v - 1) x p warm-up forwards, then one forward and one backward alternately, then the
remaining backwards (``interleaved_order``). With equal chunks the bubble is (p - 1) / v stage slots. Cost is
O(p x m x v).
"""

from __future__ import annotations

from dataclasses import dataclass

from perfforge.core.errors import ConfigError
from perfforge.result import OpRecord


@dataclass(frozen=True)
class PipelineRun:
    makespan_s: float
    records: tuple[OpRecord, ...]
    busy_s: tuple[float, ...]  # per stage

    @property
    def bubble_s(self) -> float:
        """Idle time of the busiest stage within the makespan."""
        return self.makespan_s - max(self.busy_s)


def stage_order(schedule: str, stage: int, stages: int, microbatches: int) -> list[tuple[str, int]]:
    m = microbatches
    if schedule == "gpipe":
        return [("F", i) for i in range(m)] + [("B", i) for i in range(m)]
    if schedule == "1f1b":
        warm = min(stages - stage - 1, m)
        order = [("F", i) for i in range(warm)]
        for i in range(m - warm):
            order += [("F", warm + i), ("B", i)]
        order += [("B", i) for i in range(m - warm, m)]
        return order
    raise ConfigError(f"schedule '{schedule}' is not simulated here (gpipe, 1f1b; interleaved: simulate_interleaved)")


def interleaved_order(stage: int, stages: int, microbatches: int, chunks: int) -> list[tuple[str, int, int]]:
    """Stage ``stage``'s (F|B, chunk, microbatch) order under interleaved 1F1B with ``chunks`` per stage (the order
    of Megatron-LM's ``forward_backward_pipelining_with_interleaving``; ``microbatches`` a multiple of ``stages``)."""
    p, m, v = stages, microbatches, chunks
    if m % p:
        raise ConfigError(f"the interleaved schedule runs microbatches in groups of the pipeline depth: "
                          f"microbatches ({m}) must be a multiple of pp ({p})")
    total = m * v

    def op(kind: str, k: int) -> tuple[str, int, int]:
        group = (k // p) % v
        return kind, (group if kind == "F" else v - 1 - group), (k // (p * v)) * p + k % p

    warm = min((p - stage - 1) * 2 + (v - 1) * p, total)
    order = [op("F", k) for k in range(warm)]
    for k in range(total - warm):
        order += [op("F", warm + k), op("B", k)]
    return order + [op("B", k) for k in range(total - warm, total)]


def simulate_pipeline(t_f: list[float], t_b: list[float], microbatches: int, schedule: str = "1f1b") -> PipelineRun:
    p = len(t_f)
    if p == 0 or len(t_b) != p or microbatches < 1:
        raise ConfigError("a pipeline needs at least one stage, matching forward/backward times and microbatches")
    orders = [[(kind, 0, i) for kind, i in stage_order(schedule, s, p, microbatches)] for s in range(p)]
    return _simulate(orders, [[f] for f in t_f], [[b] for b in t_b], microbatches)


def simulate_interleaved(t_f: list[list[float]], t_b: list[list[float]], microbatches: int) -> PipelineRun:
    """Interleaved 1F1B: ``t_f[s][c]`` and ``t_b[s][c]`` are chunk c of stage s's forward and backward times."""
    p = len(t_f)
    v = len(t_f[0]) if p else 0
    if p == 0 or v == 0 or len(t_b) != p or any(len(x) != v for x in (*t_f, *t_b)) or microbatches < 1:
        raise ConfigError("an interleaved pipeline needs at least one stage, the same number of chunks on every "
                          "stage, matching forward/backward times and microbatches")
    return _simulate([interleaved_order(s, p, microbatches, v) for s in range(p)], t_f, t_b, microbatches)


def _simulate(orders: list[list[tuple[str, int, int]]], t_f: list[list[float]], t_b: list[list[float]],
              microbatches: int) -> PipelineRun:
    """Run each stage's order in sequence, an op starting when the stage is free and its input is done: F of
    chunk c on stage s needs the previous stage's F of that chunk (stage 0: the last stage's F of chunk c - 1);
    B needs the next stage's B (the last stage: stage 0's B of chunk c + 1, or its own F on the last chunk)."""
    p, v = len(t_f), len(t_f[0])
    done: dict[tuple[str, int, int, int], float] = {}
    cursor = [0] * p
    free = [0.0] * p
    records: list[OpRecord] = []
    remaining = sum(len(o) for o in orders)
    while remaining:
        progressed = False
        for s in range(p):
            while cursor[s] < len(orders[s]):
                kind, c, i = orders[s][cursor[s]]
                if kind == "F":
                    dep = (done.get(("F", s - 1, c, i)) if s > 0 else
                           done.get(("F", p - 1, c - 1, i)) if c > 0 else 0.0)
                else:
                    dep = (done.get(("B", s + 1, c, i)) if s < p - 1 else
                           done.get(("B", 0, c + 1, i)) if c < v - 1 else done.get(("F", s, c, i)))
                if dep is None:
                    break  # wait for another stage to produce it
                start = max(free[s], dep)
                dur = t_f[s][c] if kind == "F" else t_b[s][c]
                free[s] = start + dur
                done[(kind, s, c, i)] = free[s]
                name = f"{kind}{i}" if v == 1 else f"{kind}{i}.chunk{c}"
                records.append(OpRecord(name, "forward" if kind == "F" else "backward", f"stage{s}",
                                        "forward" if kind == "F" else "backward_input", dur, 0.0, 0.0, "compute",
                                        start_s=start, stream=f"stage{s}"))
                cursor[s] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            raise RuntimeError("pipeline schedule deadlocked")  # our own invariant, not a user error
    busy = tuple(microbatches * (sum(t_f[s]) + sum(t_b[s])) for s in range(p))
    return PipelineRun(max(free), tuple(records), busy)
