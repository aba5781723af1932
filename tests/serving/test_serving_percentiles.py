"""Percentiles: the inverted-CDF definition, weighted and unweighted, against a direct computation."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from perfforge.serving.metrics import weighted_percentiles


def _by_definition(values, weights, q):
    """The smallest value whose cumulative weight reaches q% of the total."""
    order = np.argsort(values, kind="stable")
    v, c = values[order], np.cumsum(weights[order])
    for value, cum in zip(v, c):
        if cum >= q / 100.0 * c[-1]:
            return float(value)
    return float(v[-1])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 10.0), min_size=1, max_size=60), st.data())
def test_percentiles_match_the_definition(values, data):
    x = np.asarray(values)
    w = np.asarray(data.draw(st.lists(st.integers(1, 5), min_size=len(x), max_size=len(x))), dtype=float)
    qs = (0.0, 33.3, 50.0, 90.0, 99.0, 100.0)
    assert weighted_percentiles(x, w, qs) == [_by_definition(x, w, q) for q in qs]
    assert weighted_percentiles(x, None, qs) == [_by_definition(x, np.ones(len(x)), q) for q in qs]


def test_repeated_values_are_the_same_distribution_as_one_weighted_value():
    gaps = np.array([0.01, 0.01, 0.01, 0.02, 0.5])
    merged_v, merged_w = np.array([0.01, 0.02, 0.5]), np.array([3.0, 1.0, 1.0])
    qs = (50.0, 70.0, 90.0, 99.0)
    assert weighted_percentiles(gaps, None, qs) == weighted_percentiles(merged_v, merged_w, qs) == [0.01, 0.02, 0.5, 0.5]
