"""The shipped learned kernel model: numpy-only prediction, the roofline bound, intervals, failures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from perfforge.core.dtypes import DType
from perfforge.engines.learned.features import roofline_bound_s
from perfforge.engines.learned.model import CLASS_OF_KIND, WeightsMissingError, load_model
from perfforge.engines.learned.ops import build_op
from perfforge.system.catalog import get_device
from perfforge.workload import layers as L

DATA = Path(__file__).resolve().parents[2] / "src/perfforge/engines/learned/data"


def test_shipped_model_is_small_and_described():
    npz = DATA / "kernel_model.npz"
    manifest = json.loads((DATA / "kernel_model.json").read_text())
    assert npz.stat().st_size < 20e6
    assert set(manifest["families"]) == {"gemm", "conv", "vector"}
    assert manifest["training_data"]["gemm"]["by_group"]  # which GPUs the trees saw
    for fam in manifest["families"].values():              # per-class blend of trees and MLP, and its intervals
        assert set(fam["blend_mlp_weight"].values()) <= {0.0, 0.5, 1.0}
        assert set(fam["blend_analytical_weight"].values()) <= {0.0, 0.25, 0.5}
        assert all(lo <= 0.0 <= hi for lo, hi in fam["interval"].values())
    assert set(manifest["held_out_summary"]) >= {"BMM", "FC", "CONV", "NORM", "ELEMENTWISE"}


@pytest.mark.parametrize("calibration", ["shipped", "priors"])
def test_shipped_blend_matches_its_parts(calibration):
    """A class shipped as 'MLP' predicts exactly the MLP's ratio, as 'trees' exactly the trees'; that learned time
    is blended geometrically with the analytical engine's time under the calibration passed in."""
    from perfforge.engines.analytical.calibration import load_calibration, priors_calibration
    from perfforge.engines.analytical.roofline import op_time
    from perfforge.engines.learned.features import op_features

    model, device = load_model(), get_device("v100-pcie-32gb")
    cal = load_calibration(device.architecture) if calibration == "shipped" else priors_calibration()
    ops = [build_op("linear", {"B": 2, "M": 512, "N": 1024, "K": 1024}, "fp32"),
           build_op("bmm", {"B": 16, "M": 512, "N": 512, "K": 64}, "fp32"),
           build_op("add", {"B": 1024, "H": 4096}, "fp32")]
    for op, dt in ops:
        fam, x, bound = op_features(op, device, dt)
        fm = model.families[fam]
        cls = CLASS_OF_KIND[op.kind]
        w = fm.blend.get(cls, fm.blend["*"])
        a = fm.analytical_weight.get(cls, fm.analytical_weight["*"])
        trees = fm.trees.predict(x[None])[0]
        mlp = fm.mlp.predict(x[None])[0] if fm.mlp is not None else trees
        learned = bound * np.exp(max((1 - w) * trees + w * mlp, fm.floor))
        expected = learned ** (1 - a) * op_time(op, device, cal, dt).time_s ** a
        got = model.predict_ops([op], device, [dt], cal).pred_s[0]
        assert got == pytest.approx(expected, rel=1e-12)


def test_roofline_bound_by_hand():
    h100 = get_device("h100-sxm5-80gb")
    op = L.bmm("x", 8, 512, 512, 64, DType.FP32)
    flops = 2 * 8 * 512 * 512 * 64                         # 268,435,456 FLOP
    nbytes = 8 * (512 * 64 + 64 * 512 + 512 * 512) * 4     # A, B read once, C written once: 10,485,760 B
    expected = max(flops / h100.peak_flop_per_s(DType.FP32), nbytes / h100.memory_bytes_per_s)
    assert roofline_bound_s(op, h100) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("hw", ["h100-sxm5-80gb", "a100-sxm4-80gb", "t4", "l4", "a40", "h200-sxm-141gb"])
@pytest.mark.parametrize("dtype", ["fp32", "tf32", "fp16", "bf16"])
def test_gemm_never_below_roofline_and_interval_brackets(hw, dtype):
    model = load_model()
    device = get_device(hw)
    shapes = [(1, 64, 64, 64), (8, 512, 512, 64), (1, 4096, 4096, 4096), (32, 2048, 128, 2048), (3, 1000, 77, 513)]
    ops = [build_op(name, dict(zip("BMNK", s)), dtype) for s in shapes for name in ("bmm", "linear")]
    p = model.predict_ops([o for o, _ in ops], device, [c for _, c in ops])
    assert p.covered.all()
    assert np.all(p.pred_s >= p.bound_s)                   # the floor of the gemm family is the roofline
    assert np.all((p.low_s <= p.pred_s) & (p.pred_s <= p.high_s))


def test_more_work_takes_longer():
    model, device = load_model(), get_device("a100-pcie-40gb")
    sizes = [256, 1024, 4096, 16384]
    ops = [build_op("linear", {"B": 1, "M": n, "N": n, "K": n}, "fp32") for n in sizes]
    t = model.predict_ops([o for o, _ in ops], device, [c for _, c in ops]).pred_s
    assert np.all(np.diff(t) > 0)                          # 64x the FLOPs per step: strictly slower
    vec = [build_op("add", {"B": 1024, "H": h}, "fp16") for h in (1024, 16384, 262144)]
    tv = model.predict_ops([o for o, _ in vec], device, [c for _, c in vec]).pred_s
    assert np.all(np.diff(tv) > 0)


def test_uncovered_kinds_are_flagged_not_zero():
    model, device = load_model(), get_device("h100-sxm5-80gb")
    attn = L.attention("a", 1, 8, 8, 128, 128, 64, DType.FP16)
    emb = L.embedding("e", 128, 1000, 64, DType.FP16)
    p = model.predict_ops([attn, emb], device)
    assert not p.covered.any() and np.isnan(p.pred_s).all()


def test_unsupported_dtype_is_a_config_error():
    from perfforge.core.errors import ConfigError

    with pytest.raises(ConfigError, match="dtype 'fp8' is not supported"):
        load_model().predict_ops([L.bmm("x", 1, 64, 64, 64, DType.FP8)], get_device("h100-sxm5-80gb"))


def test_missing_or_tampered_weights(tmp_path):
    with pytest.raises(WeightsMissingError, match="perfforge learn train"):
        load_model(tmp_path / "nope.json")
    shutil.copy(DATA / "kernel_model.json", tmp_path / "kernel_model.json")
    np.savez(tmp_path / "kernel_model.npz", x=np.zeros(3))
    with pytest.raises(WeightsMissingError, match="sha256"):
        load_model(tmp_path / "kernel_model.json")


def test_prediction_needs_numpy_only():
    code = (
        "import sys\n"
        "sys.modules['sklearn'] = None; sys.modules['torch'] = None\n"
        "import perfforge\n"
        "r = perfforge.predict('gpt2', 'a100-sxm4-80gb', seq=128, backend='learned')\n"
        "assert r.extra['learned_ops'] > 0, r.extra\n"
        "print(r.step_time_s)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip()) > 0
