"""Replica schedulers: which requests run in the next iteration, and KV-block bookkeeping.

Semantics follow Vidur 0.0.26 (``vidur/scheduler/replica_scheduler/*.py``), which model the systems below:

- ``vllm`` (vLLM v0): prefill-first. New requests are admitted FIFO while their prompt's blocks fit above a
  watermark, the batch stays within ``max_tokens_per_batch`` and ``max_batch_size``; a batch holds either
  prefills or decodes. Decodes grow one block at a time; when none is free the youngest running request is
  preempted and recomputed later (its generated tokens join its prompt).
- ``sarathi`` (Sarathi-Serve): every iteration takes all running decodes, then continues partial prefills and
  admits new requests in chunks, all within a ``chunk_size`` token budget (stall-free batching).
- ``orca`` (Orca): iteration-level batching without chunking; a new request reserves blocks for
  ``max_tokens`` up front, so it never preempts.
- ``static`` (FasterTransformer-style): a batch is formed only when the previous one has finished; it runs
  the prompts together and decodes until its longest request is done, finished sequences still occupying
  their slots. Memory is reserved for ``max_tokens`` per request, as in Orca.

Every scheduler has a vectorised path for the common case and an exact element-by-element path that mirrors
the reference loop; tests check that they agree.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from math import ceil

import numpy as np

from perfforge.core.errors import ConfigError
from perfforge.core.registry import Registry
from perfforge.serving.batch import Batch
from perfforge.serving.state import RequestState


@dataclass(frozen=True)
class SchedulerLimits:
    num_blocks: int
    block_size: int
    max_batch_size: int            # Vidur's batch_size_cap
    max_tokens_per_batch: int      # vLLM's max_tokens_in_batch
    chunk_size: int                # Sarathi's token budget
    max_tokens: int                # longest request (Orca/static reserve this much)
    watermark_fraction: float
    stages: int


class ReplicaScheduler:
    name = "base"
    step_allocates = True          # decodes take blocks as they grow (paged); False: reserved up front
    keeps_finished_slots = False   # finished sequences still occupy the batch (static batching)

    def __init__(self, state: RequestState, limits: SchedulerLimits, *, exact: bool = False) -> None:
        self.s = state
        self.lim = limits
        self.exact = exact                      # force the element-by-element path
        self.queue: deque[int] = deque()
        self.running: list[int] = []            # in memory, not in flight (Vidur's _preempted_requests)
        self.free_blocks = limits.num_blocks
        self.n_alloc = 0                        # requests holding blocks
        self.max_micro = max(1, limits.max_batch_size // limits.stages)
        self.watermark = int(limits.watermark_fraction * limits.num_blocks)
        self.max_blocks_per_seq = limits.max_tokens // limits.block_size
        self.preemptions = 0

    # ---- block bookkeeping -------------------------------------------------------------------------------
    def _blocks_for_prompt(self, r: int) -> int:
        return ceil(int(self.s.prefill[r]) / self.lim.block_size)

    def can_admit(self, r: int) -> bool:
        return self.free_blocks - self._blocks_for_prompt(r) >= self.watermark

    def admit(self, r: int) -> None:
        n = self._blocks_for_prompt(r)
        self.free_blocks -= n
        self.s.reserved[r] = n
        self.n_alloc += 1

    def grow(self, r: int) -> None:
        """A running request takes one more block when its processed tokens overflow what it holds."""
        if self.s.processed[r] > self.s.reserved[r] * self.lim.block_size:
            self.s.reserved[r] += 1
            self.free_blocks -= 1

    def release(self, r: int) -> None:
        self.free_blocks += int(self.s.reserved[r])
        self.s.reserved[r] = 0
        self.n_alloc -= 1

    def preempt(self, r: int) -> None:
        self.s.restart(r)
        self.release(r)
        self.queue.appendleft(r)
        self.preemptions += 1

    # ---- hooks -------------------------------------------------------------------------------------------
    def next_batch(self, t: float) -> Batch | None:
        raise NotImplementedError

    def on_batch_end(self, batch: Batch, unfinished: np.ndarray) -> None:
        self.running.extend(unfinished.tolist())

    def admission_blocked(self, batch: Batch) -> bool | None:
        """Can no queued request join while ``batch``'s decodes repeat? True: blocked until a completion;
        False: the queue is empty (an arrival may change that); None: a request could join now."""
        return False if not self.queue else None

    @property
    def is_idle(self) -> bool:
        return not self.queue and not self.running

    # ---- shared pieces -----------------------------------------------------------------------------------
    def _decode_running(self, ids: list[int], q: list[int], limit: int) -> np.ndarray | None:
        """Schedule running decodes in arrival order, growing blocks and preempting the youngest running
        request when no block is free (vLLM v0 recompute preemption). The vectorised path returns the
        chosen ids as an array (``ids``/``q`` untouched); the exact path fills ``ids``/``q``."""
        self.running.sort()
        if not self.exact:
            take = self._decode_fast(limit)
            if take is not None:
                return take
        while self.running and len(ids) < limit:
            self._decode_one(self.running.pop(0), ids, q)
        return None

    def _decode_one(self, r: int, ids: list[int], q: list[int]) -> None:
        """Give running request ``r`` its next token, preempting the youngest running requests (and at last
        ``r`` itself) while no block is free: vLLM v0's loop, element by element."""
        while self.free_blocks < 1:
            if self.running:
                self.preempt(self.running.pop())
            else:
                self.preempt(r)
                return
        self.grow(r)
        ids.append(r)
        q.append(1)

    def _decode_fast(self, limit: int) -> np.ndarray | None:
        take = np.asarray(self.running[:limit], dtype=np.int64)
        if len(take) == 0:
            return take
        res = self.s.reserved[take]
        need = self.s.processed[take] > res * self.lim.block_size
        k = int(np.count_nonzero(need))
        # the reference checks "a block is free" before each request: safe if it holds before the last one
        if self.free_blocks - (k - int(need[-1])) < 1:
            return None
        if k:
            self.s.reserved[take] = res + need
            self.free_blocks -= k
        del self.running[:len(take)]
        return take

    def _decode_batch(self, take: np.ndarray) -> Batch | None:
        if len(take) == 0:
            return None
        return Batch(take, np.ones(len(take), dtype=np.int64), self.s.processed[take] + 1, decode_only=True)

    def _batch(self, ids: list[int], q: list[int] | None, *, decode_only: bool = False) -> Batch | None:
        """``q=None`` with ``decode_only``: every request is past its prompt and adds one token."""
        if not ids:
            return None
        a = np.asarray(ids, dtype=np.int64)
        qa = np.ones(len(ids), dtype=np.int64) if q is None else np.asarray(q, dtype=np.int64)
        return Batch(a, qa, self.s.processed[a] + qa, decode_only=decode_only)


SCHEDULERS: Registry[type[ReplicaScheduler]] = Registry("scheduler")


@SCHEDULERS.register("vllm")
class VLLMScheduler(ReplicaScheduler):
    name = "vllm"

    def next_batch(self, t: float) -> Batch | None:
        ids: list[int] = []
        q: list[int] = []
        tokens = 0
        while self.queue:
            r = self.queue[0]
            n = int(self.s.prefill[r])
            if (not self.can_admit(r) or tokens + n > self.lim.max_tokens_per_batch
                    or self.n_alloc == self.lim.max_batch_size or len(ids) == self.max_micro):
                break
            self.queue.popleft()
            self.admit(r)
            ids.append(r)
            q.append(n)
            tokens += n
        if ids:
            return self._batch(ids, q)
        take = self._decode_running(ids, q, self.max_micro)
        if take is not None:
            return self._decode_batch(take)
        return self._batch(ids, None, decode_only=True)

    def admission_blocked(self, batch: Batch) -> bool | None:
        if not self.queue:
            return False
        r = self.queue[0]
        if (not self.can_admit(r) or self.n_alloc == self.lim.max_batch_size
                or self.s.prefill[r] > self.lim.max_tokens_per_batch):
            return True   # stays blocked: free blocks only shrink and no slot opens before a completion
        return None


@SCHEDULERS.register("sarathi")
class SarathiScheduler(ReplicaScheduler):
    name = "sarathi"

    def next_batch(self, t: float) -> Batch | None:
        ids: list[int] = []
        q: list[int] = []
        budget = self.lim.chunk_size
        self.running.sort()
        partial: list[int] = []
        skipped: list[int] = []
        if not self.exact and self._split_fast(ids, q, partial):
            pass                                # decodes and partial prompts split without preemption
        else:
            # decodes always get their token (the budget limits prefill chunks only)
            while self.running and len(ids) < self.max_micro:
                r = self.running.pop(0)
                if not self.s.prefill_done[r]:
                    partial.append(r)
                    continue
                self._decode_one(r, ids, q)
        used = len(ids)
        partial_used = False
        for r in partial:                      # continue chunked prefills (their blocks are already held)
            n = min(int(self.s.prefill[r] - self.s.processed[r]), budget - used)
            if n <= 0:
                skipped.append(r)
                continue
            ids.append(r)
            q.append(n)
            used += n
            partial_used = True
        if skipped:
            self.running = sorted(skipped + self.running)
        admitted = False
        while self.queue:
            if self.n_alloc == self.lim.max_batch_size or len(ids) == self.max_micro:
                break
            r = self.queue[0]
            if not self.can_admit(r):
                break
            n = min(int(self.s.prefill[r]), budget - used)
            if n <= 0:
                break
            self.queue.popleft()
            self.admit(r)
            ids.append(r)
            q.append(n)
            used += n
            admitted = True
        return self._batch(ids, q, decode_only=not partial_used and not admitted)

    def _split_fast(self, ids: list[int], q: list[int], partial: list[int]) -> bool:
        """The reference loop, vectorised: walk the running list in order until ``max_micro`` decodes are
        taken, collecting unfinished prompts on the way. False (nothing changed) when a block would run out."""
        if not self.running:
            return True
        run = np.asarray(self.running, dtype=np.int64)
        ready = self.s.prefill_done[run]
        count = np.cumsum(ready)
        full = np.flatnonzero(count >= self.max_micro)
        cut = int(full[0]) + 1 if len(full) else len(run)
        head, ready = run[:cut], ready[:cut]
        take = head[ready]
        if len(take):
            need = self.s.processed[take] > self.s.reserved[take] * self.lim.block_size
            k = int(np.count_nonzero(need))
            if self.free_blocks - (k - int(need[-1])) < 1:
                return False
            self.s.reserved[take] += need
            self.free_blocks -= k
        del self.running[:cut]
        ids.extend(take.tolist())
        q.extend([1] * len(take))
        partial.extend(head[~ready].tolist())
        return True

    def admission_blocked(self, batch: Batch) -> bool | None:
        if not self.queue:
            return False
        r = self.queue[0]
        if (self.n_alloc == self.lim.max_batch_size or batch.size >= self.max_micro
                or batch.size >= self.lim.chunk_size or not self.can_admit(r)):
            return True
        return None


@SCHEDULERS.register("orca")
class OrcaScheduler(ReplicaScheduler):
    name = "orca"
    step_allocates = False

    def __init__(self, state: RequestState, limits: SchedulerLimits, *, exact: bool = False) -> None:
        super().__init__(state, limits, exact=exact)
        if self.max_blocks_per_seq < 1:
            raise ConfigError("max_tokens must be at least one block for orca/static scheduling")
        # as many sequences as fit at max_tokens each (Vidur: min(kv_tokens // max_tokens, batch_size_cap))
        self.max_batch = min(limits.num_blocks // self.max_blocks_per_seq, limits.max_batch_size)
        if self.max_batch < 1:
            raise ConfigError(f"not even one request of max_tokens={limits.max_tokens} fits the KV cache "
                              f"({limits.num_blocks * limits.block_size} tokens)")

    def can_admit(self, r: int) -> bool:
        return self.free_blocks >= self.max_blocks_per_seq

    def admit(self, r: int) -> None:
        self.free_blocks -= self.max_blocks_per_seq
        self.s.reserved[r] = self.max_blocks_per_seq
        self.n_alloc += 1

    def next_batch(self, t: float) -> Batch | None:
        self.running.sort()
        take = self.running[:self.max_batch]
        del self.running[:len(take)]
        ids = list(take)
        q = [1] * len(ids)   # everything running has finished its prompt
        decode_only = True
        while self.queue and len(ids) < self.max_batch and self.can_admit(self.queue[0]):
            r = self.queue.popleft()
            self.admit(r)
            ids.append(r)
            q.append(int(self.s.prefill[r]))
            decode_only = False
        return self._batch(ids, q, decode_only=decode_only)

    def admission_blocked(self, batch: Batch) -> bool | None:
        if not self.queue:
            return False
        return True if batch.size >= self.max_batch or not self.can_admit(self.queue[0]) else None

    def preempt(self, r: int) -> None:  # pragma: no cover - reserved memory never runs out
        raise AssertionError("orca reserves max_tokens per request and never preempts")


@SCHEDULERS.register("static")
class StaticScheduler(OrcaScheduler):
    name = "static"
    keeps_finished_slots = True

    def __init__(self, state: RequestState, limits: SchedulerLimits, *, exact: bool = False) -> None:
        super().__init__(state, limits, exact=exact)
        self.group: list[int] = []      # the batch in progress, finished members included (padding)

    def next_batch(self, t: float) -> Batch | None:
        if self.group and not self.running:
            return None                 # members in flight (pipeline): wait for them
        if not self.running:
            self.group = []
            ids: list[int] = []
            while self.queue and len(ids) < self.max_batch and self.can_admit(self.queue[0]):
                r = self.queue.popleft()
                self.admit(r)
                ids.append(r)
            if not ids:
                return None
            self.group = ids
            return self._batch(ids, [int(self.s.prefill[r]) for r in ids])
        self.running.sort()
        ids = list(self.running)
        self.running.clear()
        batch = self._batch(ids, None, decode_only=True)
        assert batch is not None
        batch.pad = len(self.group) - len(ids)
        return batch

    def on_batch_end(self, batch: Batch, unfinished: np.ndarray) -> None:
        super().on_batch_end(batch, unfinished)
        if not self.running:
            self.group = []

    def admission_blocked(self, batch: Batch) -> bool | None:
        return True   # nothing joins a static batch
