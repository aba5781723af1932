"""ResNet with batch norm fused with its ReLU and residual add (NVIDIA's MXNet recipe in float16): the kernels it
removes, the bytes the fused kernels move, and where the option reaches (API, CLI, published rows)."""

from pathlib import Path

import pytest

from perfforge import api
from perfforge.core.errors import ConfigError
from perfforge.evaluation.published import load_published
from perfforge.workload.backward import backward_ops
from perfforge.workload.op import OpKind

ROOT = Path(__file__).resolve().parents[2]


def _graphs(batch: int = 16):
    plain = api.resolve_workload("resnet50", mode="train", batch=batch, dtype="fp16")
    fused = api.resolve_workload("resnet50", mode="train", batch=batch, dtype="fp16", fuse_bn_act=True)
    return plain, fused


def test_fusion_removes_the_relu_and_add_kernels_only():
    plain, fused = _graphs()
    assert fused.params == plain.params
    matrix = (OpKind.CONV2D, OpKind.MATMUL)
    assert sum(o.flops for o in fused.ops if o.kind in matrix) == sum(o.flops for o in plain.ops if o.kind in matrix)
    assert not [o for o in fused.ops if o.kind is OpKind.ELEMENTWISE]       # every ReLU and residual add is folded
    relus = sum(1 for o in plain.ops if o.attrs.get("fn") == "relu")
    adds = sum(1 for o in plain.ops if o.attrs.get("fn") == "add")
    assert (relus, adds) == (49, 16)        # stem, two per bottleneck, and each block's output
    assert len(fused.ops) == len(plain.ops) - relus - adds
    assert sum(1 for o in fused.ops if o.attrs.get("fused") == "add_relu") == 16
    assert sum(1 for o in fused.ops if o.attrs.get("fused") == "relu") == 49 - 16


def test_fused_add_relu_reads_the_shortcut_and_returns_its_gradient():
    plain, fused = _graphs()
    bn = next(o for o in plain.ops if o.name == "layer1.0.3.bn")
    f = next(o for o in fused.ops if o.name == "layer1.0.3.bn_add_relu")
    n, b = bn.attrs["numel"], bn.dtype.bytes
    assert f.bytes_read == bn.bytes_read + n * b and f.bytes_written == bn.bytes_written
    (bwd,) = backward_ops(f)
    (plain_bwd,) = backward_ops(bn)
    assert bwd.bytes_written == plain_bwd.bytes_written + n * b               # dX and the shortcut's gradient
    # the shortcut's batch norm runs before the fused kernel that reads its output
    names = [o.name for o in fused.ops]
    assert names.index("layer1.0.downsample.bn") < names.index("layer1.0.3.bn_add_relu")


def test_fused_step_saves_most_of_the_removed_kernels():
    kw = dict(mode="train", batch=256, dtype="fp16", optimizer="sgd_momentum")
    plain = api.predict("resnet50", "a100-sxm4-80gb", **kw)
    fused = api.predict("resnet50", "a100-sxm4-80gb", fuse_bn_act=True, **kw)
    removed = sum(r.time_s for r in plain.breakdown if r.kind == "elementwise")
    # the fused add-ReLU kernels still read each shortcut and write its gradient, so not all of it is saved
    assert 0.5 * removed < plain.step_time_s - fused.step_time_s < removed


def test_fusion_is_for_cnns():
    with pytest.raises(ConfigError, match="fuse_bn_act .* 'gpt2' is a decoder model .*allowed: resnet50"):
        api.predict("gpt2", "a100-sxm4-80gb", fuse_bn_act=True)


def test_cli_and_train_take_the_option(capsys):
    from perfforge.cli.main import main

    assert main(["train", "--model", "resnet50", "--hardware", "a100-sxm4-80gb", "--gpus", "8", "--batch", "64",
                 "--fuse-bn-act", "--json"]) == 0
    assert '"step_time_s"' in capsys.readouterr().out
    assert api.train("resnet50", "a100-sxm4-80gb", gpus=8, batch=64, fuse_bn_act=True).step_time_s < \
        api.train("resnet50", "a100-sxm4-80gb", gpus=8, batch=64).step_time_s


def test_published_rows_say_which_recipe_fused():
    rows = {r.id: r for r in load_published(ROOT / "data/ground_truth/published.yaml")}
    fused = {i for i, r in rows.items() if r.fuse_bn_act}
    # NVIDIA's MXNet recipes fuse in float16; MLPerf's MXNet submissions (all float16) do too
    assert fused == {"dle-mxnet-rn50-a100-80gb-amp-1gpu", "dle-mxnet-rn50-a100-80gb-amp-8gpu",
                     "dle-mxnet-rn50-v100-16gb-amp-1gpu", "dle-mxnet-rn50-v100-16gb-amp-8gpu"} | {
        i for i in rows if i.startswith("mlperf-")}
