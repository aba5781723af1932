"""Pipeline schedules simulated stage by stage: GPipe and 1F1B, with per-stage forward/backward times.

Each stage runs its own order of microbatch forwards (F) and backwards (B):
- GPipe: all forwards, then all backwards;
- 1F1B (PipeDream-Flush, Narayanan et al. 2021): stage s runs min(p-s-1, m) warm-up forwards, then
  alternates one forward and one backward, then drains the remaining backwards.
F(s, i) needs F(s-1, i); B(s, i) needs B(s+1, i) (the last stage's B needs its own F). A stage starts an op
when its previous op is done and the dependency is met. With equal stages both schedules take
(m + p - 1) x (t_f + t_b), the closed form; unequal stages (embedding on the first, LM head on the last) are
what the simulation adds. Cost is O(p x m).
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
    raise ConfigError(f"schedule '{schedule}' has no stage-by-stage simulation (simulated: gpipe, 1f1b)")


def simulate_pipeline(t_f: list[float], t_b: list[float], microbatches: int, schedule: str = "1f1b") -> PipelineRun:
    p = len(t_f)
    if p == 0 or len(t_b) != p or microbatches < 1:
        raise ConfigError("a pipeline needs at least one stage, matching forward/backward times and microbatches")
    orders = [stage_order(schedule, s, p, microbatches) for s in range(p)]
    done: dict[tuple[str, int, int], float] = {}
    cursor = [0] * p
    free = [0.0] * p
    records: list[OpRecord] = []
    remaining = sum(len(o) for o in orders)
    while remaining:
        progressed = False
        for s in range(p):
            while cursor[s] < len(orders[s]):
                kind, i = orders[s][cursor[s]]
                if kind == "F":
                    dep = done.get(("F", s - 1, i)) if s > 0 else 0.0
                else:
                    dep = done.get(("B", s + 1, i)) if s < p - 1 else done.get(("F", s, i))
                if dep is None:
                    break  # wait for another stage to produce it
                start = max(free[s], dep)
                dur = t_f[s] if kind == "F" else t_b[s]
                free[s] = start + dur
                done[(kind, s, i)] = free[s]
                records.append(OpRecord(f"{kind}{i}", "forward" if kind == "F" else "backward", f"stage{s}",
                                        "forward" if kind == "F" else "backward_input", dur, 0.0, 0.0, "compute",
                                        start_s=start, stream=f"stage{s}"))
                cursor[s] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            raise RuntimeError("pipeline schedule deadlocked")  # our own invariant, not a user error
    busy = tuple(microbatches * (t_f[s] + t_b[s]) for s in range(p))
    return PipelineRun(max(free), tuple(records), busy)
