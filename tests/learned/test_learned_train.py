"""Training on a tiny subset: the numpy exports reproduce scikit-learn, training is deterministic, the blend
is chosen on held-out GPUs, and the conformal interval covers held-out GPUs that pooled percentiles miss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

from perfforge.engines.learned.dataset import (  # noqa: E402
    Samples,  # noqa: E402
    load_records,
    samples_from_records,
)
from perfforge.engines.learned.model import load_model  # noqa: E402
from perfforge.engines.learned.train import (  # noqa: E402
    FoldResult,
    choose_blend,
    fit_mlp,
    fit_trees,
    interval_offsets,
    leave_one_gpu_out,
    train_model,
)
from perfforge.engines.learned.trees import from_sklearn  # noqa: E402

ROOT = Path(__file__).resolve().parents[2] / "data/ground_truth"
TINY = {"max_iter": 15, "learning_rate": 0.2, "max_leaf_nodes": 15, "max_depth": 6, "min_samples_leaf": 5,
        "l2_regularization": 1.0}
TINY_MLP = {"hidden_layer_sizes": (16,), "alpha": 1e-4, "batch_size": 64, "learning_rate_init": 5e-3, "max_iter": 15,
            "clip": 5.0}


@pytest.fixture(scope="module")
def samples():
    return samples_from_records(load_records(ROOT, scale=0.01))


def test_export_matches_sklearn(samples):
    from sklearn.ensemble import HistGradientBoostingRegressor

    s = samples["gemm"]
    trees, model = fit_trees(s, params=TINY)
    np.testing.assert_allclose(trees.predict(s.x), model.predict(s.x), rtol=0, atol=1e-9)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = x[:, 0] ** 2 - x[:, 1] + rng.normal(scale=0.1, size=300)
    m = HistGradientBoostingRegressor(max_iter=30, random_state=0, early_stopping=False).fit(x, y)
    np.testing.assert_allclose(from_sklearn(m).predict(x * 1.5), m.predict(x * 1.5), rtol=0, atol=1e-9)


def test_mlp_export_matches_sklearn(samples):
    s = samples["vector"]
    mlp, model = fit_mlp(s, params=TINY_MLP)
    z = np.clip((s.x - mlp.mean) / mlp.scale, -mlp.clip, mlp.clip)
    np.testing.assert_allclose(mlp.predict(s.x), model.predict(z), rtol=0, atol=1e-9)
    # inputs far outside the training range are clipped, not extrapolated
    far = s.x[:3] + 1e6
    np.testing.assert_allclose(mlp.predict(far), mlp.predict(mlp.mean + mlp.clip * mlp.scale * np.sign(far - mlp.mean)))
    with pytest.raises(ValueError, match="feature matrix"):
        mlp.predict(s.x[:, :3])


def test_training_is_deterministic_and_round_trips(samples, tmp_path):
    folds = {f: leave_one_gpu_out(s, groups=["T4", "H100"], params=TINY, mlp_params=TINY_MLP)
             for f, s in samples.items()}
    a = train_model(samples, folds, params=TINY, mlp_params=TINY_MLP)
    b = train_model(samples, folds, params=TINY, mlp_params=TINY_MLP)
    for fam in a.families:
        np.testing.assert_array_equal(a.families[fam].trees.value, b.families[fam].trees.value)
        assert a.families[fam].blend == b.families[fam].blend
        if a.families[fam].mlp is not None:
            np.testing.assert_array_equal(a.families[fam].mlp.weights[0], b.families[fam].mlp.weights[0])
    a.save(tmp_path / "m.npz", tmp_path / "m.json", {"created_by": "test"})
    loaded = load_model(tmp_path / "m.json")
    from perfforge.engines.learned.ops import build_op
    from perfforge.system.catalog import get_device

    ops = [build_op("bmm", {"B": 4, "M": 256, "N": 256, "K": 64}, "fp32"),
           build_op("gelu", {"B": 512, "H": 4096}, "fp16"),
           build_op("conv", {"B": 8, "Input_Channel": 64, "Output_Channel": 64, "Kernel_Size": 3, "Input_Size": 56,
                             "Stride": 1, "Padding": 1}, "fp32")]
    dev = get_device("v100-pcie-32gb")
    pa = a.predict_ops([o for o, _ in ops], dev, [c for _, c in ops])
    pl = loaded.predict_ops([o for o, _ in ops], dev, [c for _, c in ops])
    np.testing.assert_array_equal(pa.pred_s, pl.pred_s)
    np.testing.assert_array_equal(pa.high_s, pl.high_s)
    assert loaded.conv_backward_groups == a.conv_backward_groups == ()
    c = train_model(samples, folds, params=TINY, mlp_params=TINY_MLP, conv_backward_groups=("H100", "V100"))
    c.save(tmp_path / "c.npz", tmp_path / "c.json", {"created_by": "test"})
    assert load_model(tmp_path / "c.json").conv_backward_groups == ("H100", "V100")  # the manifest carries them
    # held-out rows were predicted by folds that never saw their GPU group
    fold = folds["gemm"]
    held = np.isin(fold.samples.group, ["T4", "H100"])
    assert np.isfinite(fold.pred_s[held]).all() and np.isnan(fold.pred_s[~held]).all()
    assert np.isfinite(fold.ratio["mlp"][held]).all()


def _synthetic_fold(offsets: dict[str, float], n: int = 200, noise: float = 0.05, seed: int = 0) -> FoldResult:
    """Out-of-fold log-ratios where each GPU has its own constant offset plus small noise."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(list(offsets), n)
    k = len(groups)
    truth = np.array([offsets[g] for g in groups]) + rng.normal(scale=noise, size=k)
    s = Samples("gemm", np.zeros((k, 1)), np.ones(k), np.exp(truth), groups, groups, np.full(k, "FC"),
                np.full(k, "neusight"), np.full(k, "fp32"), np.ones(k), np.ones(k))
    return FoldResult("gemm", s, {"trees": np.zeros(k), "mlp": truth + 1.0}, np.full(k, -10.0))


def test_blend_is_chosen_on_held_out_error():
    fold = _synthetic_fold({"a": 0.1, "b": -0.1, "c": 0.2})
    # trees predict 0 (errors 10-20%), the MLP is 1.0 too slow everywhere (170%), their mean ~60%: trees win
    assert choose_blend(fold) == {"*": 0.0, "FC": 0.0}
    fold.ratio["mlp"] = fold.ratio["mlp"] - 1.0 + 0.01   # now the MLP is almost exact
    assert choose_blend(fold)["FC"] == 1.0


def test_analytical_weight_is_chosen_on_held_out_error_with_the_priors():
    """The analytical member enters with the largest weight when its priors-only time is exact on held-out GPUs,
    and not at all when it is 3x off; the folds' prediction is then learned^(1-a) x analytical^a."""
    from perfforge.engines.learned.train import ANALYTICAL_WEIGHTS

    fold = _synthetic_fold({"a": 0.1, "b": -0.1, "c": 0.2})
    s = fold.samples
    exact = type(s)(s.family, s.x, s.bound_s, s.latency_s, s.group, s.device, s.op_class, s.source, s.dtype,
                    s.latency_s * 5.0, s.latency_s)          # shipped constants way off, priors exact
    fold.samples = exact
    choose_blend(fold)
    a = fold.analytical_weight["FC"]
    assert a == max(ANALYTICAL_WEIGHTS)
    np.testing.assert_allclose(fold.pred_s, fold.learned_s ** (1 - a) * s.latency_s ** a, rtol=1e-12)
    fold.samples = type(s)(*(getattr(exact, f) for f in ("family", "x", "bound_s", "latency_s", "group", "device",
                                                         "op_class", "source", "dtype", "analytical_s")),
                           s.latency_s * 3.0)
    choose_blend(fold)
    assert fold.analytical_weight["FC"] == 0.0
    np.testing.assert_array_equal(fold.pred_s, fold.learned_s)


def test_conformal_interval_covers_a_gpu_with_its_own_offset():
    offsets = {"a": 0.0, "b": 0.3, "c": -0.3, "d": 0.15, "e": -0.15, "f": 0.4}
    fold = _synthetic_fold(offsets, noise=0.02)
    s = fold.samples
    err = np.log(s.latency_s / fold.pred_s)
    covered = []
    for g in offsets:
        lo, hi = interval_offsets(fold, exclude_group=g)["FC"]
        m = s.group == g
        covered.append(np.mean((err[m] >= lo) & (err[m] <= hi)))
    # tight within-GPU noise, large between-GPU offsets: most held-out GPUs fall inside the widened band
    assert np.mean(covered) >= 0.65
    lo, hi = interval_offsets(fold)["FC"]
    assert lo < -0.3 and hi > 0.4 * 0.9


def test_held_out_models_never_saw_their_gpu(samples):
    from perfforge.engines.learned.perop import held_out_models

    folds = {f: leave_one_gpu_out(s, groups=["T4", "H100"], params=TINY, mlp_params=TINY_MLP)
             for f, s in samples.items()}
    shipped = train_model(samples, folds, params=TINY, mlp_params=TINY_MLP)
    models = held_out_models(shipped, folds)
    assert set(models) == {"T4", "H100"}
    for g, m in models.items():
        for fam, fm in m.families.items():
            if g in folds[fam].models:
                assert fm.trees is folds[fam].models[g][0]          # the learners trained without g
                assert fm.blend == shipped.families[fam].blend
            else:
                assert fm is shipped.families[fam]                   # the family has no rows of g
    # a held-out model predicts the held-out rows exactly as the fold did
    fold = folds["gemm"]
    t4 = fold.samples.group == "T4"
    trees = models["T4"].families["gemm"].trees
    np.testing.assert_allclose(trees.predict(fold.samples.x[t4]), fold.ratio["trees"][t4])


def test_neusight_test_kernels_of_test_only_gpus_are_scored_never_fitted():
    """NeuSight's H100 test kernels are held-out rows in the H100 fold and never in any learner's fit."""
    from perfforge.engines.learned.dataset import NEUSIGHT_TEST_ONLY
    from perfforge.engines.learned.train import leave_one_gpu_out

    k = 60
    groups = np.array(["A100"] * 20 + ["V100"] * 20 + ["H100"] * 20)
    devices = np.array(["a100-pcie-40gb"] * 20 + ["v100-pcie-32gb"] * 20 + ["h100-sxm5-80gb"] * 20)
    source = np.array(["neusight"] * 50 + ["measured"] * 10)   # 10 NeuSight H100 rows, 10 of perfforge's
    assert "h100-sxm5-80gb" in NEUSIGHT_TEST_ONLY
    x = np.zeros((k, 1))  # one feature value: a learner can only predict the mean target of what it fitted
    # the test-only rows carry an absurd target: any learner that fitted them would move far from 1x
    latency = np.where((source == "neusight") & (devices == "h100-sxm5-80gb"), 1e3, 1.0)
    s = Samples("gemm", x, np.ones(k), latency, groups, devices, np.full(k, "FC"), source, np.full(k, "fp32"),
                np.ones(k), np.ones(k))
    assert s.trainable.sum() == 50 and not s.trainable[40:50].any()
    fold = leave_one_gpu_out(s, params=TINY, mlp_params=TINY_MLP)
    held = s.group == "H100"
    assert np.isfinite(fold.ratio["trees"][held]).all()            # all 20 H100 rows are scored
    for g in ("A100", "V100"):                                      # no other fold learned the 1000x rows
        assert np.all(np.abs(fold.ratio["trees"][s.group == g]) < 1.0)


def test_the_a100_80gb_boards_gemm_test_kernels_are_their_own_held_out_group():
    """NeuSight's third OOD GPU: its GEMM test kernels form group 'A100-80' and are never fitted; the same board's
    NeuSight convolutions (training data in NeuSight) stay trainable in 'A100'."""
    from perfforge.engines.learned.dataset import load_records, samples_from_records

    root = Path(__file__).resolve().parents[2] / "data/ground_truth"
    recs = [r for r in load_records(root, scale=0.05) if r.get("device", {}).get("name") == "NVIDIA A100 80GB PCIe"]
    samples = samples_from_records(recs)
    gemm, conv = samples["gemm"], samples["conv"]
    assert set(gemm.group) == {"A100-80"} and not gemm.trainable.any() and len(gemm) > 20
    assert set(conv.group) == {"A100"} and conv.trainable.all() and len(conv) > 20


def test_report_rows_carry_the_oracle_scale_diagnostic(samples):
    """'own median error removed' rescales each held-out GPU's predictions by its own median error: computed here
    by hand from the fold's predictions, it must match the report row (and leave a median log error of 0)."""
    from perfforge.engines.learned.evaluate import kernel_rows

    fold = leave_one_gpu_out(samples["gemm"], groups=["T4", "V100"], params=TINY, mlp_params=TINY_MLP)
    rows = kernel_rows({"gemm": fold})
    assert {r["gpu"] for r in rows} == {"T4", "V100"}
    s = fold.samples
    for r in rows:
        m = (s.group == r["gpu"]) & (s.op_class == r["op_class"]) & np.isfinite(fold.pred_s)
        scaled = fold.pred_s[m] * np.exp(np.median(np.log(s.latency_s[m] / fold.pred_s[m])))
        assert np.median(np.log(s.latency_s[m] / scaled)) == pytest.approx(0.0, abs=1e-12)
        assert r["mape_oracle_scale"] == pytest.approx(100 * np.mean(np.abs(scaled / s.latency_s[m] - 1)))
        assert r["mape"] == pytest.approx(100 * np.mean(np.abs(fold.pred_s[m] / s.latency_s[m] - 1)))


def test_dtype_rows_split_only_pairs_measured_in_several_dtypes():
    """A GPU's FC kernels in fp32 and fp16 get one row per dtype with that dtype's own error; a class measured in
    one dtype only gets none (the per-GPU table already has it)."""
    from types import SimpleNamespace

    from perfforge.engines.learned.evaluate import dtype_rows

    n = 40
    dtype = np.array(["fp32"] * 20 + ["fp16"] * 20)
    op_class = np.array(["FC"] * 40)
    latency = np.ones(n)
    pred = np.where(dtype == "fp32", 1.1, 0.5)           # fp32 10% slow, fp16 2x fast
    s = Samples("gemm", np.zeros((n, 1)), np.ones(n), latency, np.array(["H100"] * n), np.array(["h100-sxm5-80gb"] * n),
                op_class, np.array(["measured"] * n), dtype, np.ones(n), np.full(n, 2.0))
    rows = {r["dtype"]: r for r in dtype_rows({"gemm": SimpleNamespace(samples=s, pred_s=pred)})}
    assert set(rows) == {"fp32", "fp16"}
    assert rows["fp32"]["mape"] == pytest.approx(10.0) and rows["fp16"]["mape"] == pytest.approx(50.0)
    assert rows["fp16"]["bias"] == pytest.approx(np.log(0.5)) and rows["fp32"]["analytical_priors_mape"] == 100.0
    one = Samples("gemm", s.x, s.bound_s, latency, s.group, s.device, op_class, s.source, np.array(["fp32"] * n),
                  s.analytical_s, s.analytical_priors_s)
    assert dtype_rows({"gemm": SimpleNamespace(samples=one, pred_s=pred)}) == []
