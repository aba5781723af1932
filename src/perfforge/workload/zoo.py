"""The model zoo: named, weight-free builders parametrised by batch, sequence length and dtype.

Architecture numbers come from the papers and the models' published ``config.json`` files cited on each
entry. ``get_model(name, batch=..., seq=..., dtype=...)`` returns a ``Workload``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError
from perfforge.core.registry import Registry
from perfforge.workload.graph import Workload
from perfforge.workload.models.megatron import MEGATRON_SEQ, megatron_config
from perfforge.workload.models.megatron import SHAPES as MEGATRON_SHAPES
from perfforge.workload.models.resnet import resnet50
from perfforge.workload.models.switch import SwitchConfig, build_switch
from perfforge.workload.models.transformer import TransformerConfig, build_transformer, builder_head
from perfforge.workload.models.vit import vit


@dataclass(frozen=True, slots=True)
class ModelEntry:
    name: str
    kind: str                      # "cnn", "encoder", "decoder", "vision-transformer"
    default_seq: int
    build: Callable[..., Workload]
    description: str
    config: TransformerConfig | None = None


MODELS: Registry[ModelEntry] = Registry("model")

_GPT2_SRC = ("Radford et al. 2019 (GPT-2) and the openai-community/gpt2* config.json files (n_layer, n_embd, n_head, "
             "n_ctx=1024, vocab 50257, activation_function gelu_new)")
_GPT3_SRC = "Brown et al. 2020, 'Language Models are Few-Shot Learners', Table 2.1 (n_layers, d_model, n_heads, d_head; n_ctx 2048)"
_BERT_SRC = "Devlin et al. 2019 (BERT) and google-bert/bert-*-uncased config.json (vocab 30522, 512 positions, 2 token types)"
_LLAMA2_SRC = "Touvron et al. 2023 (Llama 2) and meta-llama/Llama-2-*-hf config.json (vocab 32000, intermediate_size, num_key_value_heads)"
_LLAMA3_SRC = "meta-llama/Meta-Llama-3-*/config.json (vocab 128256, num_key_value_heads 8, intermediate_size)"
_OPT_SRC = ("Zhang et al. 2022 (OPT), Table 1 (1.3B: 24 layers, 32 heads, d_model 2048), and facebook/opt-1.3b "
            "config.json (ffn_dim 8192, vocab_size 50272, max_position_embeddings 2048, activation relu, "
            "do_layer_norm_before true, dropout 0.1, attention_dropout 0.0); OPTLearnedPositionalEmbedding adds 2 rows "
            "(offset 2): 2050 positions")
_SWITCH_SRC = ("NeuSight's switchxl4 config (sitar-lab/NeuSight scripts/asplos/data/DLmodel_configs/switchxl4.json: "
               "SwitchTransformers, d_model 1024, d_ff 16384, num_heads 32, d_kv 128, num_layers 24 + "
               "num_decoder_layers 24, num_experts 4, expert_capacity 64, encoder/decoder_sparse_step 2, "
               "vocab_size 32128, relu); not one of Google's released Switch checkpoints")
_MIXTRAL_SRC = "Jiang et al. 2024 (Mixtral of Experts), Table 1, and mistralai/Mixtral-8x7B-v0.1 config.json"


def _register_transformer(cfg: TransformerConfig, kind: str, default_seq: int, description: str) -> None:
    def build(*, batch: int = 1, seq: int | None = None, dtype: DType = DType.FP16, phase: str = "prefill",
              attention_impl: str = "fused", dropout: float = 0.0, amp: bool = False,
              head: str = "default") -> Workload:
        return build_transformer(cfg, batch=batch, seq=seq or default_seq, dtype=dtype, phase=phase,
                                 attention_impl=attention_impl, dropout=dropout, amp=amp, head=head)

    MODELS.add(cfg.name, ModelEntry(cfg.name, kind, default_seq, build, description, cfg))


def _gpt2(name: str, layers: int, hidden: int, heads: int, params: str) -> None:
    cfg = TransformerConfig(name=name, layers=layers, hidden=hidden, heads=heads, ffn=4 * hidden, vocab=50257,
                            max_positions=1024, norm="layer", activation="gelu_tanh", tied_embeddings=True, source=_GPT2_SRC)
    _register_transformer(cfg, "decoder", 1024, f"GPT-2 {params} (tied embeddings)")


def _gpt3(name: str, layers: int, hidden: int, heads: int, params: str) -> None:
    cfg = TransformerConfig(name=name, layers=layers, hidden=hidden, heads=heads, ffn=4 * hidden, vocab=50257,
                            max_positions=2048, norm="layer", activation="gelu_tanh", tied_embeddings=True, source=_GPT3_SRC)
    _register_transformer(cfg, "decoder", 2048, f"GPT-3 {params} (paper's nominal size)")


def _bert(name: str, layers: int, hidden: int, heads: int) -> None:
    cfg = TransformerConfig(name=name, layers=layers, hidden=hidden, heads=heads, ffn=4 * hidden, vocab=30522,
                            arch="encoder", max_positions=512, type_vocab=2, embedding_norm=True, final_norm=False,
                            post_norm=True, lm_head=False, pooler=True, separate_qkv=True, source=_BERT_SRC)
    _register_transformer(cfg, "encoder", 512, f"BERT {name.split('-')[1]} (BertModel with pooler)")


def _llama(name: str, layers: int, hidden: int, heads: int, kv: int, ffn: int, vocab: int, src: str, desc: str,
           experts: int = 0, top_k: int = 0, default_seq: int = 4096) -> None:
    cfg = TransformerConfig(name=name, layers=layers, hidden=hidden, heads=heads, kv_heads=kv, ffn=ffn, vocab=vocab,
                            norm="rms", activation="swiglu", qkv_bias=False, out_bias=False, mlp_bias=False,
                            tied_embeddings=False, rotary=True, num_experts=experts, top_k=top_k, separate_qkv=True,
                            source=src)
    _register_transformer(cfg, "decoder", default_seq, desc)


_gpt2("gpt2", 12, 768, 12, "124M")
_gpt2("gpt2-medium", 24, 1024, 16, "355M")
_gpt2("gpt2-large", 36, 1280, 20, "774M")
_gpt2("gpt2-xl", 48, 1600, 25, "1.5B")
_gpt3("gpt3-125m", 12, 768, 12, "Small 125M")
_gpt3("gpt3-350m", 24, 1024, 16, "Medium 350M")
_gpt3("gpt3-760m", 24, 1536, 16, "Large 760M")
_gpt3("gpt3-1.3b", 24, 2048, 16, "XL 1.3B")  # Table 2.1 lists 24 heads of d_head 128 with d_model 2048; 16x128 = 2048
_gpt3("gpt3-2.7b", 32, 2560, 32, "2.7B")
_gpt3("gpt3-6.7b", 32, 4096, 32, "6.7B")
_gpt3("gpt3-13b", 40, 5120, 40, "13B")  # Table 2.1 prints d_model 5140; 40 heads x d_head 128 = 5120
_gpt3("gpt3-175b", 96, 12288, 96, "175B")
# NeuSight's "gpt3_xl" labels are not the paper's XL: its traced graph (sitar-lab/NeuSight labels, the per-node
# CSV of gpt3_xl) has d_model 3072, 24 heads of 128, FFN 12288, 24 layers, vocab 50257 (~2.9B parameters).
_register_transformer(TransformerConfig(
    name="gpt3-xl-neusight", layers=24, hidden=3072, heads=24, ffn=12288, vocab=50257, max_positions=2048,
    norm="layer", activation="gelu_tanh", tied_embeddings=True,
    source="sitar-lab/NeuSight labels: gpt3_xl traced graph (d_model 3072, 24 x 128 heads, FFN 12288, 24 layers)"),
    "decoder", 2048, "NeuSight's 'GPT3-XL' benchmark model (not the GPT-3 paper's 1.3B XL)")
for _name, (_layers, _hidden, _heads, _label) in MEGATRON_SHAPES.items():
    _register_transformer(megatron_config(_name), "decoder", MEGATRON_SEQ,
                          f"Megatron-LM GPT {_label} (Korthikanti et al. 2022 iteration-time table)")
_bert("bert-base", 12, 768, 12)
_bert("bert-large", 24, 1024, 16)
_llama("llama-2-7b", 32, 4096, 32, 32, 11008, 32000, _LLAMA2_SRC, "Llama-2 7B")
_llama("llama-2-13b", 40, 5120, 40, 40, 13824, 32000, _LLAMA2_SRC, "Llama-2 13B")
_llama("llama-2-70b", 80, 8192, 64, 8, 28672, 32000, _LLAMA2_SRC, "Llama-2 70B (GQA, 8 KV heads)")
_llama("llama-3-8b", 32, 4096, 32, 8, 14336, 128256, _LLAMA3_SRC, "Llama-3 8B (GQA)", default_seq=8192)
_llama("llama-3-70b", 80, 8192, 64, 8, 28672, 128256, _LLAMA3_SRC, "Llama-3 70B (GQA)", default_seq=8192)
_llama("mixtral-8x7b", 32, 4096, 32, 8, 14336, 32000, _MIXTRAL_SRC, "Mixtral 8x7B (8 experts, top-2)",
       experts=8, top_k=2, default_seq=4096)

_OPT_1_3B = TransformerConfig(name="opt-1.3b", layers=24, hidden=2048, heads=32, ffn=8192, vocab=50272,
                              max_positions=2050, position_offset=2, norm="layer", activation="relu",
                              tied_embeddings=True,
                              attention_dropout=False, separate_qkv=True,
                              source=_OPT_SRC)
_register_transformer(_OPT_1_3B, "decoder", 2048, "OPT 1.3B (ReLU MLP, learned positions)")

SWITCH_XL = SwitchConfig(name="switch-xl", layers=24, d_model=1024, d_ff=16384, heads=32, d_kv=128, experts=4,
                         expert_capacity=64, sparse_step=2, vocab=32128, source=_SWITCH_SRC)


def _switch_xl(*, batch: int = 1, seq: int | None = None, dtype: DType = DType.FP16, phase: str = "prefill",
               attention_impl: str = "fused", amp: bool = False, dropout: float = 0.0) -> Workload:
    return build_switch(SWITCH_XL, batch=batch, seq=seq or 512, dtype=dtype, phase=phase,
                        attention_impl=attention_impl, amp=amp, dropout=dropout)


MODELS.add("switch-xl", ModelEntry("switch-xl", "encoder-decoder", 512, _switch_xl,
                                   "Switch Transformer as NeuSight ran it (24+24 layers, 4 experts, capacity 64)"))

_VIT_B16 = TransformerConfig(name="vit-b-16", layers=12, hidden=768, heads=12, ffn=3072, vocab=1, arch="encoder",
                             source="Dosovitskiy et al. 2021, Table 1 (ViT-Base)")


def _vit_b16(*, batch: int = 1, seq: int | None = None, dtype: DType = DType.FP16, amp: bool = False,
             **_: object) -> Workload:
    if seq not in (None, 197):
        raise ConfigError("vit-b-16 has a fixed sequence of 197 tokens at 224x224; do not set --seq")
    return vit(_VIT_B16, patch=16, batch=batch, dtype=dtype, amp=amp)


def _resnet50(*, batch: int = 1, seq: int | None = None, dtype: DType = DType.FP16, amp: bool = False,
              fuse_bn_act: bool = False, **_: object) -> Workload:
    if seq not in (None, 1):
        raise ConfigError("resnet50 takes images, not sequences; do not set --seq")
    return resnet50(batch=batch, dtype=dtype, amp=amp, fuse_bn_act=fuse_bn_act)


MODELS.add("resnet50", ModelEntry("resnet50", "cnn", 1, _resnet50, "ResNet-50 v1.5, 224x224, 1000 classes"))
MODELS.add("vit-b-16", ModelEntry("vit-b-16", "vision-transformer", 197, _vit_b16, "ViT-B/16, 224x224", _VIT_B16))

ALIASES = {"bert-large-uncased": "bert-large", "bert-base-uncased": "bert-base", "gpt2-small": "gpt2",
           "vit-b16": "vit-b-16", "vit_b_16": "vit-b-16", "resnet-50": "resnet50",
           # GPT-3 XL is the paper's name for the 1.3B model (Brown et al. 2020, Table 2.1)
           "gpt3-xl": "gpt3-1.3b"}


def get_model(name: str, *, batch: int = 1, seq: int | None = None, dtype: DType | str = DType.FP16,
              phase: str = "prefill", attention_impl: str = "fused", dropout: float = 0.0,
              amp: bool = False, head: str | None = None, fuse_bn_act: bool = False) -> Workload:
    """``fuse_bn_act`` (CNNs): batch norm fused with the activation (and residual add) after it, as NVIDIA's MXNet
    recipe runs float16. ``amp``: the model in fp32 run under torch.autocast in ``dtype`` (``perfforge.workload.precision``),
    instead of the whole model cast to ``dtype``. ``head`` (HF's model classes): "mlm" puts BERT's masked-LM head
    (``BertForMaskedLM``) in place of its pooler, "pretraining" adds it and the next-sentence classifier to the
    pooler (``BertForPreTraining``); "none" (BERT's default, ``BertModel``) and "lm" (the decoders' default, an
    LM head) change nothing."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        raise ConfigError(f"batch must be a positive integer, got {batch!r}")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq <= 0):
        raise ConfigError(f"seq must be a positive integer, got {seq!r}")
    entry = MODELS.get(ALIASES.get(name, name))
    kwargs = {"batch": batch, "seq": seq, "dtype": DType.parse(dtype)}
    # the zoo's transformers and Switch take the attention implementation, the phase and dropout
    transformer = (entry.config is not None and entry.kind in ("decoder", "encoder")) or entry.kind == "encoder-decoder"
    if transformer:
        kwargs.update(phase=phase, attention_impl=attention_impl)
    if dropout:
        if not transformer:
            raise ConfigError(f"dropout kernels are modelled for the zoo's transformers and Switch; '{name}' is a "
                              f"{entry.kind} model")
        kwargs["dropout"] = dropout
    if amp:
        kwargs["amp"] = True
    if fuse_bn_act:
        if entry.kind != "cnn":
            raise ConfigError(f"fuse_bn_act fuses batch norm with its activation in the zoo's CNNs; '{name}' is a "
                              f"{entry.kind} model (allowed: {', '.join(n for n in MODELS.names() if MODELS.get(n).kind == 'cnn')})")
        kwargs["fuse_bn_act"] = True
    encoder = entry.config is not None and entry.kind == "encoder"
    allowed = ("none", "mlm", "pretraining") if encoder else ("lm",) if entry.kind == "decoder" else ()
    if head is not None and head not in allowed:
        raise ConfigError(f"head '{head}' does not apply to {name} (allowed: {', '.join(allowed) or 'none'})")
    if builder_head(head) != "default":
        kwargs["head"] = builder_head(head)
    return entry.build(**kwargs)
