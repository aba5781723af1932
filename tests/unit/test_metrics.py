import math

import pytest

from perfforge.evaluation.metrics import accuracy, kendall, spearman

np = pytest.importorskip("numpy")


def test_accuracy_by_hand():
    # errors: +10%, -20%, 0% -> MAPE 10%, bias -3.33%, median 10%, max 20%
    acc = accuracy([1.1, 0.8, 3.0], [1.0, 1.0, 3.0])
    assert acc.mape == pytest.approx(0.1)
    assert acc.bias == pytest.approx(-0.1 / 3)
    assert acc.median_ape == pytest.approx(0.1) and acc.max_ape == pytest.approx(0.2)
    assert acc.within_10pct == pytest.approx(2 / 3)


def test_rank_correlations_match_reference_values():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    b = np.array([5.0, 6.0, 7.0, 8.0, 7.0])
    # scipy.stats.spearmanr(a, b) = 0.8207826816681233; kendalltau(a, b) (tau-b) = 0.7378647873726218
    assert spearman(a, b) == pytest.approx(0.8207826816681233)
    assert kendall(a, b) == pytest.approx(0.7378647873726218)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert math.isnan(spearman(a[:2], b[:2]))


def test_bad_inputs():
    with pytest.raises(ValueError):
        accuracy([], [])
    with pytest.raises(ValueError):
        accuracy([1.0], [0.0])


def test_bootstrap_mean_interval_brackets_the_mean_and_narrows_with_more_data():
    import numpy as np
    import pytest

    from perfforge.evaluation.metrics import bootstrap_mean_interval

    rng = np.random.default_rng(3)
    small, large = rng.normal(10.0, 2.0, 20), rng.normal(10.0, 2.0, 2000)
    lo, hi = bootstrap_mean_interval(small)
    assert lo < small.mean() < hi
    # the standard error of the mean is 2/sqrt(20) = 0.45: a 95% interval is about 1.75 wide
    assert 1.2 < hi - lo < 2.4
    lo2, hi2 = bootstrap_mean_interval(large)
    assert hi2 - lo2 < (hi - lo) / 5
    assert bootstrap_mean_interval(small) == (lo, hi)          # fixed seed: regenerates identically
    assert bootstrap_mean_interval([4.0] * 5) == (4.0, 4.0)
    with pytest.raises(ValueError):
        bootstrap_mean_interval([])
