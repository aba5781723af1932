"""Vision Transformer (Dosovitskiy et al. 2021, Table 1: ViT-Base 12 layers, hidden 768, MLP 3072, 12 heads).

Reference total for ViT-B/16 at 224x224 with a 1000-class head: 86,567,656 parameters (torchvision
``vit_b_16`` model card).
"""

from __future__ import annotations

from perfforge.core.dtypes import DType
from perfforge.workload import layers as L
from perfforge.workload.graph import Workload
from perfforge.workload.models.transformer import TransformerConfig, transformer_layers
from perfforge.workload.op import Op
from perfforge.workload.precision import Precision


def vit(cfg: TransformerConfig, *, patch: int, batch: int, dtype: DType, image: int = 224, classes: int = 1000,
        amp: bool = False) -> Workload:
    """``amp``: torch.autocast in ``dtype`` over an fp32 model (``perfforge.workload.precision``)."""
    prec = Precision(dtype, amp)
    h = cfg.hidden
    grid = image // patch
    seq = grid * grid + 1  # patches plus the class token
    ops: list[Op] = []
    conv, _ = L.conv2d("embed.patch", batch, 3, (image, image), h, patch, dtype, stride=patch, bias=True, layer="embed")
    ops.extend(prec.gemm(conv, prec.high, data_input=True))
    pos = L.elementwise("embed.add_positions", (batch * seq, h), prec.high, fn="add", n_inputs=2, layer="embed")
    ops.append(prec.mixed(pos, 1).with_(params=seq * h + h))  # position table plus the class token
    ops.extend(transformer_layers(cfg, batch=batch, seq=seq, dtype=dtype, phase="prefill", prefix="encoder", amp=amp))
    ops.append(L.layer_norm("final_norm", (batch * seq, h), prec.high, layer="head"))
    ops.extend(prec.gemm(L.linear("head", batch, h, classes, dtype, bias=True, layer="head"), prec.high))
    meta = {"family": "vit", "arch": "encoder", "layers": cfg.layers, "hidden": h, "heads": cfg.heads,
            "kv_heads": cfg.heads, "head_dim": cfg.d_head, "kv_layers": 0, "image": image, "patch": patch,
            "loss_rows": batch, "loss_classes": classes, **prec.meta}
    return Workload(name=cfg.name, ops=tuple(ops), dtype=dtype, batch=batch, seq=seq, meta=meta)
