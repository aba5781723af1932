"""Paged KV-cache capacity of one replica: how many blocks fit beside the weights.

Follows vLLM's (and Vidur's ``MemoryPlanner``) accounting: a fraction of device memory is usable, the weight
shard is resident, and the rest holds KV blocks of ``block_size`` tokens. Per token and device the cache
stores K and V for the stage's layers and the device's KV heads. Vidur 0.0.26 counts only the blocks'
weights (no embeddings or LM head) and keeps a 10% margin (``memory_margin_fraction``); perfforge counts every
weight, so its capacity is slightly smaller for models with large vocabularies.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from perfforge.core.dtypes import DType
from perfforge.core.errors import InfeasibleError


@dataclass(frozen=True)
class KVPlan:
    num_blocks: int
    block_size: int
    bytes_per_token: float       # per device
    weights_bytes: float         # per device
    usable_bytes: float          # per device

    @property
    def capacity_tokens(self) -> int:
        return self.num_blocks * self.block_size


def plan_kv(*, params: int, layers: int, kv_heads: int, head_dim: int, tp: int, pp: int, dtype: DType,
            memory_bytes: float, memory_fraction: float, block_size: int) -> KVPlan:
    weights = params * dtype.bytes / (tp * pp)
    per_token = 2 * ceil(kv_heads / tp) * head_dim * dtype.bytes * (layers // pp)
    usable = memory_bytes * memory_fraction
    blocks = int((usable - weights) // (per_token * block_size))
    if blocks < 1:
        raise InfeasibleError(
            f"the weights ({weights / 2**30:.1f} GiB per device) leave no room for a KV block in "
            f"{usable / 2**30:.1f} GiB usable; use more tensor/pipeline parallelism or a bigger GPU")
    return KVPlan(blocks, block_size, per_token, weights, usable)
