"""Training on a tiny subset: the numpy export reproduces scikit-learn, and training is deterministic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

from perfforge.engines.learned.dataset import load_records, samples_from_records  # noqa: E402
from perfforge.engines.learned.model import load_model  # noqa: E402
from perfforge.engines.learned.train import fit_trees, leave_one_gpu_out, train_model  # noqa: E402
from perfforge.engines.learned.trees import from_sklearn  # noqa: E402

ROOT = Path(__file__).resolve().parents[2] / "data/ground_truth"
TINY = {"max_iter": 15, "learning_rate": 0.2, "max_leaf_nodes": 15, "max_depth": 6, "min_samples_leaf": 5,
        "l2_regularization": 1.0}


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


def test_training_is_deterministic_and_round_trips(samples, tmp_path):
    folds = {f: leave_one_gpu_out(s, groups=["T4", "H100"], params=TINY) for f, s in samples.items()}
    a = train_model(samples, folds, params=TINY)
    b = train_model(samples, folds, params=TINY)
    for fam in a.families:
        np.testing.assert_array_equal(a.families[fam].trees.value, b.families[fam].trees.value)
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
    # held-out rows were predicted by folds that never saw their GPU group
    fold = folds["gemm"]
    held = np.isin(fold.samples.group, ["T4", "H100"])
    assert np.isfinite(fold.pred_s[held]).all() and np.isnan(fold.pred_s[~held]).all()
