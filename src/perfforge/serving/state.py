"""Per-request simulation state as aligned numpy arrays (index = request id = arrival order)."""

from __future__ import annotations

import numpy as np

from perfforge.serving.requests import RequestSet


class RequestState:
    """Mutable token and timing state of every request. A restart (preemption by recompute) turns the tokens
    processed so far into a longer prompt, as vLLM v0 and Vidur do."""

    def __init__(self, reqs: RequestSet) -> None:
        n = len(reqs)
        self.n = n
        self.arrival = reqs.arrival_s.astype(np.float64)
        self.orig_prefill = reqs.prefill.astype(np.int64)
        self.orig_decode = reqs.decode.astype(np.int64)
        self.total = self.orig_prefill + self.orig_decode
        self.prefill = self.orig_prefill.copy()         # grows on restart
        self.processed = np.zeros(n, dtype=np.int64)    # tokens whose KV exists (+1 once a token is out)
        self.prefill_done = np.zeros(n, dtype=bool)
        self.reserved = np.zeros(n, dtype=np.int64)     # KV blocks held
        self.scheduled_at = np.full(n, np.nan)
        self.first_token_at = np.full(n, np.nan)
        self.last_token_at = np.full(n, np.nan)
        self.completed_at = np.full(n, np.nan)
        self.restarts = np.zeros(n, dtype=np.int64)
        self.replica = np.full(n, -1, dtype=np.int64)

    def restart(self, r: int) -> None:
        self.prefill[r] = self.processed[r]
        self.processed[r] = 0
        self.prefill_done[r] = False
        self.restarts[r] += 1
