"""Shared fixtures: a hand-made operator table whose times are simple enough to compute by hand."""

from __future__ import annotations

import numpy as np
import pytest

from perfforge.serving.optable import BATCH_GRID, CHUNK_GRID, CONTEXT_GRID, TOKEN_GRID, TOKEN_OPS, OperatorTable

# every token op costs A + B * tokens seconds per layer; attention is constant per call
A, B = 1e-5, 1e-8
PREFILL_ATTN, DECODE_ATTN = 2e-5, 3e-5
# a Llama-style block on one device without rotary cost: no collectives, embedding, LM head or Q/K norms
ABSENT = ("all_reduce", "send_recv", "emb", "lm_head", "attn_rope", "attn_qk_norm", "mlp_router")


def linear_table() -> OperatorTable:
    ops = {op: A + B * TOKEN_GRID for op in TOKEN_OPS if op not in ABSENT}
    return OperatorTable(
        tokens=TOKEN_GRID, token_ops=ops, prefill_context=CONTEXT_GRID, prefill_chunk=CHUNK_GRID,
        prefill_time=np.full((len(CONTEXT_GRID), len(CHUNK_GRID)), PREFILL_ATTN), decode_batch=BATCH_GRID,
        decode_context=CONTEXT_GRID, decode_time=np.full((len(BATCH_GRID), len(CONTEXT_GRID)), DECODE_ATTN),
        source="hand-made", absent=ABSENT)


@pytest.fixture(scope="session")
def hand_table() -> OperatorTable:
    return linear_table()
