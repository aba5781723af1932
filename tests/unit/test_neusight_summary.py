"""NeuSight's published per-label errors (``perfforge.evaluation.neusight_summary``): the copied tables parse to
the 80 labels whose mean is NeuSight's reported 8.9%, join perfforge's label names, and bad tables say why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perfforge.core.errors import ConfigError
from perfforge.evaluation.neusight_summary import read_summary

SUMMARY = Path(__file__).resolve().parents[2] / "data/ground_truth/neusight/summary"


def test_tables_hold_neusights_80_labels_and_its_8_9_percent():
    table = read_summary(SUMMARY)
    assert len(table) == 80
    assert np.mean([v["NeuSight"] for v in table.values()]) == pytest.approx(8.89125)
    # the roofline baseline's mean is the "about 31%" NeuSight quotes for a roofline model
    assert np.mean([v["Roofline"] for v in table.values()]) == pytest.approx(31.4025)
    # nvidia_inf.csv, block NVIDIA_H100_80GB_HBM3, BERT-Large batch 8; nvidia_train.csv, L4, GPT2-Large batch 1
    assert table[("NVIDIA_H100_80GB_HBM3", "bert_large-inf-512-8")]["NeuSight"] == 23.4
    assert table[("NVIDIA_L4", "gpt2_large-train-1024-1")] == {"Roofline": 38.7, "Habitat": 152.8, "Li et al.": 280.0,
                                                               "NeuSight": 2.8}
    assert ("NVIDIA_L4", "gpt3_xl-inf-2048-8") not in table       # empty cell: NeuSight did not run it


def test_every_published_label_is_one_perfforge_predicts():
    from perfforge.evaluation.neusight import read_labels

    ours = {(Path(r["key"]).parent.name, Path(r["key"]).name) for r in read_labels(SUMMARY.parent)}
    assert set(read_summary(SUMMARY)) <= ours
    assert len(ours - set(read_summary(SUMMARY))) == 2          # A100 Switch at seq 2048: not in NeuSight's tables


def test_bad_tables_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="nvidia_inf.csv: NeuSight's summary table is missing"):
        read_summary(tmp_path)
    (tmp_path / "nvidia_inf.csv").write_text("GPU_X\nModel,ResNet,\nBatch,1,2\nNeuSight,1.0,2.0\n")
    (tmp_path / "nvidia_train.csv").write_text((SUMMARY / "nvidia_train.csv").read_text())
    with pytest.raises(ConfigError, match="unknown model column 'ResNet'"):
        read_summary(tmp_path)


def test_versus_neusight_compares_only_labels_with_both():
    from perfforge.engines.learned.e2e import versus_neusight

    rows = [{"measured_s": 1.0, "learned_s": 1.05, "neusight_ape": 10.0},
            {"measured_s": 1.0, "learned_s": 0.80, "neusight_ape": 5.0},
            {"measured_s": 1.0, "learned_s": 1.50, "neusight_ape": None}]
    n, ours, theirs, wins = versus_neusight(rows, "learned_s")
    assert (n, wins) == (2, 1) and ours == pytest.approx(12.5) and theirs == pytest.approx(7.5)
    assert versus_neusight(rows[2:], "learned_s") is None


def test_difference_interval_separates_a_clear_win_from_a_tie():
    """The paired bootstrap puts a uniformly better predictor's interval below zero, a predictor that wins and
    loses by the same margin across zero, and it regenerates identically."""
    from perfforge.engines.learned.e2e import _noise_verdict, difference_interval

    better = [{"measured_s": 1.0, "learned_s": 1.0 + 0.01 * (i % 5), "neusight_ape": 10.0 + i % 3} for i in range(40)]
    lo, hi = difference_interval(better, "learned_s")
    assert hi < 0 and "lower beyond that noise" in _noise_verdict((lo, hi))
    tie = [{"measured_s": 1.0, "learned_s": 1.1 if i % 2 else 1.0, "neusight_ape": 0.0 if i % 2 else 10.0}
           for i in range(40)]                       # ours 10, 0, 10, 0 ...; NeuSight 0, 10, 0, 10 ...
    lo, hi = difference_interval(tie, "learned_s")
    assert lo < 0 < hi and "tie within that noise" in _noise_verdict((lo, hi))
    assert difference_interval(tie, "learned_s") == (lo, hi)
    assert difference_interval([{"measured_s": 1.0, "learned_s": 1.0, "neusight_ape": None}], "learned_s") is None
