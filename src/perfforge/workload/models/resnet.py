"""ResNet v1.5 (torchvision layout: the stride of a downsampling bottleneck sits on its 3x3 conv).

He et al. 2016, "Deep Residual Learning", Table 1; v1.5 as in torchvision ``resnet50`` and NVIDIA
DeepLearningExamples. Reference totals for 224x224 and 1000 classes: 25,557,032 parameters and
about 4.1 G multiply-accumulates per image (torchvision model card: 4.09 GFLOPS counted as MACs).
"""

from __future__ import annotations

from perfforge.core.dtypes import DType
from perfforge.workload import layers as L
from perfforge.workload.graph import Workload
from perfforge.workload.op import Op
from perfforge.workload.precision import Precision

EXPANSION = 4
WIDTHS = (64, 128, 256, 512)


def _conv_bn(ops: list[Op], name: str, batch: int, cin: int, hw: tuple[int, int], cout: int, k: int, prec: Precision,
             *, stride: int = 1, layer: str, relu: bool, save_input: bool = True, input_grad: bool = True,
             input_dtype: DType | None = None, fused: bool = False) -> tuple[int, int]:
    dtype = prec.compute
    conv, out_hw = L.conv2d(f"{name}.conv", batch, cin, hw, cout, k, dtype, stride=stride, padding=k // 2,
                            layer=layer, save_input=save_input)
    ops.extend(prec.gemm(conv, input_dtype or dtype, data_input=not input_grad))
    shape = (batch, cout, *out_hw)
    bn = L.batch_norm(f"{name}.bn", shape, dtype, layer=layer)
    if relu and fused:
        # one BN+ReLU kernel: the ReLU is applied on the way out (and its mask on the way back), no kernel of its own
        ops.append(bn.with_(name=f"{name}.bn_relu", flops=bn.flops + L.numel(shape),
                            attrs={**bn.attrs, "fused": "relu"}))
        return out_hw
    ops.append(bn)
    if relu:
        # the ReLU's output is saved once, by the conv (or pool) that consumes it
        ops.append(L.elementwise(f"{name}.relu", shape, dtype, fn="relu", layer=layer, saved_bytes=0.0))
    return out_hw


def _fuse_bn_add_relu(bn: Op, name: str) -> Op:
    """The block's last BN, the residual add and the ReLU as one kernel (MXNet's BatchNormAddRelu, cuDNN's fused
    BN-add-activation): it also reads the shortcut, and its backward also writes the shortcut's gradient."""
    n, b = int(bn.attrs["numel"]), bn.dtype.bytes
    return bn.with_(name=name, flops=bn.flops + 2 * n, bytes_read=bn.bytes_read + n * b,
                    inputs=(*bn.inputs, bn.outputs[0]), attrs={**bn.attrs, "fused": "add_relu"})


def resnet(depths: tuple[int, ...], *, batch: int, dtype: DType, image: int = 224, classes: int = 1000,
           name: str = "resnet50", amp: bool = False, fuse_bn_act: bool = False) -> Workload:
    """``amp``: torch.autocast in ``dtype`` over an fp32 model (``perfforge.workload.precision``): the images and
    every weight are cast for the convolutions; batch norm takes the low-precision activations as they are.
    ``fuse_bn_act``: batch norm runs fused with the ReLU after it, and a block's last batch norm with the residual
    add and ReLU (NVIDIA's MXNet recipe in float16: ``--fuse-bn-relu``/``--fuse-bn-add-relu``); the default is
    PyTorch's eager execution, one kernel each."""
    prec = Precision(dtype, amp)
    ops: list[Op] = []
    fused = fuse_bn_act
    hw = _conv_bn(ops, "stem", batch, 3, (image, image), 64, 7, prec, stride=2, layer="stem", relu=True,
                  input_grad=False, input_dtype=prec.high, fused=fused)
    pool_op, hw = L.pool("stem.maxpool", batch, 64, hw, 3, 2, 1, dtype, fn="max", layer="stem")
    ops.append(pool_op)
    cin = 64
    for stage, (width, depth) in enumerate(zip(WIDTHS, depths), start=1):
        for block in range(depth):
            layer = f"layer{stage}.{block}"
            stride = 2 if (block == 0 and stage > 1) else 1
            cout = width * EXPANSION
            in_hw = hw
            h1 = _conv_bn(ops, f"{layer}.1", batch, cin, in_hw, width, 1, prec, layer=layer, relu=True, fused=fused)
            h2 = _conv_bn(ops, f"{layer}.2", batch, width, h1, width, 3, prec, stride=stride, layer=layer, relu=True,
                          fused=fused)
            h3 = _conv_bn(ops, f"{layer}.3", batch, width, h2, cout, 1, prec, layer=layer, relu=False)
            last_bn = len(ops) - 1
            if block == 0:
                # projection shortcut reads the same input tensor conv1 already saved
                _conv_bn(ops, f"{layer}.downsample", batch, cin, in_hw, cout, 1, prec, stride=stride, layer=layer,
                         relu=False, save_input=False)
            shape = (batch, cout, *h3)
            if fused:
                ops[last_bn] = _fuse_bn_add_relu(ops[last_bn], f"{layer}.3.bn_add_relu")
                if block == 0:   # the shortcut's BN must finish before the fused kernel reads it
                    ops.append(ops.pop(last_bn))
            else:
                ops.append(L.elementwise(f"{layer}.add", shape, dtype, fn="add", n_inputs=2, layer=layer))
                ops.append(L.elementwise(f"{layer}.relu", shape, dtype, fn="relu", layer=layer, saved_bytes=0.0))
            hw, cin = h3, cout
    ops.append(L.reduction("head.avgpool", (batch, cin, *hw), (batch, cin), dtype, fn="mean", layer="head"))
    ops.extend(prec.gemm(L.linear("head.fc", batch, cin, classes, dtype, bias=True, layer="head"), dtype))
    return Workload(name=name, ops=tuple(ops), dtype=dtype, batch=batch, seq=1,
                    meta={"family": "resnet", "image": image, "classes": classes, "depths": depths,
                          "loss_rows": batch, "loss_classes": classes, "fuse_bn_act": fuse_bn_act, **prec.meta})


def resnet50(*, batch: int = 1, dtype: DType = DType.FP32, image: int = 224, amp: bool = False,
             fuse_bn_act: bool = False, **_: object) -> Workload:
    return resnet((3, 4, 6, 3), batch=batch, dtype=dtype, image=image, name="resnet50", amp=amp,
                  fuse_bn_act=fuse_bn_act)
