"""GPT models of Megatron-LM's published scaling runs (the zoo registers them as ``megatron-gpt-*``).

Korthikanti et al. 2022, 'Reducing Activation Recomputation in Large Transformer Models' (arXiv 2205.05198;
MLSys 2023) time one training iteration of four GPT models on DGX A100 nodes. Their shapes (attention heads,
hidden size, layers; sequence 2048) as written in Calculon's validation inputs, which reproduce that paper's
table (calculon-ai/calculon ``examples/{22B,175B,530B,1T}.json`` @ commit 29c24bb3 / 3a082fe0):

    22B: 64 heads, hidden 6144, 48 layers;   175B: 96, 12288, 96;   530B: 128, 20480, 105;   1T: 160, 25600, 128

Megatron-LM GPT conventions: vocabulary 51,200 (Narayanan et al. 2021, SC21, Sec. 5.1: 'All models use a
vocabulary size of 51,200 ... and a sequence length of 2048'), learned positions, LayerNorm, GELU MLP of 4h,
biases, input and output embeddings shared.
"""

from __future__ import annotations

from perfforge.workload.models.transformer import TransformerConfig

MEGATRON_VOCAB = 51200   # Narayanan et al. 2021, Sec. 5.1
MEGATRON_SEQ = 2048      # same
_SRC = ("Korthikanti et al. 2022 (arXiv 2205.05198) model table, via calculon-ai/calculon examples/{name}.json "
        "(hidden, attn_heads, num_blocks, seq_size 2048); vocabulary 51,200 per Narayanan et al. 2021 Sec. 5.1")

# name -> (layers, hidden, heads, paper label)
SHAPES = {
    "megatron-gpt-22b": (48, 6144, 64, "22B"),
    "megatron-gpt-175b": (96, 12288, 96, "175B"),
    "megatron-gpt-530b": (105, 20480, 128, "530B"),
    "megatron-gpt-1t": (128, 25600, 160, "1T"),
}


def megatron_config(name: str) -> TransformerConfig:
    layers, hidden, heads, label = SHAPES[name]
    return TransformerConfig(name=name, layers=layers, hidden=hidden, heads=heads, ffn=4 * hidden,
                             vocab=MEGATRON_VOCAB, max_positions=MEGATRON_SEQ, norm="layer", activation="gelu",
                             tied_embeddings=True, source=_SRC.format(name=label))
