"""A batch on a replica: which requests, how many query tokens each, and for a decode run how many
back-to-back iterations it stands for (the simulator's fast-forward)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class Batch:
    ids: np.ndarray              # request ids
    q: np.ndarray                # query tokens per request in this iteration
    kv: np.ndarray               # KV tokens per request after this iteration
    pad: int = 0                 # finished sequences still occupying slots (static batching)
    iterations: int = 1          # > 1: a fast-forwarded run of identical decode iterations
    durations: np.ndarray | None = None   # per-iteration seconds of a fast-forwarded run
    run_time: float = 0.0                 # their sum
    active: np.ndarray | None = None      # requests still decoding in each iteration of the run
    fixed_slots: bool = False             # finished requests keep their slots (static batching)
    scheduled_at: float = 0.0
    stage_times: list[float] = field(default_factory=list)
    decode_only: bool = False   # every request adds exactly one token

    @property
    def size(self) -> int:
        return len(self.ids)


