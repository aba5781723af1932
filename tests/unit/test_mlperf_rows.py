"""MLPerf Training ResNet-50 rows: each carries its recipe's optimizer and gradient-overlap setting, and the
harness hands both to the scenario it predicts."""

from pathlib import Path

import pytest

from perfforge.core.errors import ConfigError
from perfforge.evaluation.harness import plan
from perfforge.evaluation.published import load_published
from perfforge.evaluation.suite import load_suite

ROOT = Path(__file__).parents[2]


def _mlperf_rows():
    return {r.id: r for r in load_published(ROOT / "data/ground_truth/published.yaml") if r.id.startswith("mlperf-")}


def test_rows_follow_their_configs_overlap_and_optimizer():
    rows = _mlperf_rows()
    assert len(rows) == 16
    # configs with MXNET_HOROVOD_NUM_GROUPS > 1 overlap (v0.7's 1-node DGX A100: 20; DGX-1: 20, 16 on 130 nodes);
    # every other config read sets 1 group
    overlapped = {i for i, r in rows.items() if r.parallel.get("overlap", True)}
    assert overlapped == {"mlperf-v0.7-rn50-dgxa100-40gb-8gpu", "mlperf-v0.6-rn50-dgx1-v100-8gpu",
                          "mlperf-v0.7-rn50-dgx1-v100-8gpu", "mlperf-v0.6-rn50-dgx1-v100-1040gpu"}
    # v0.7's 1- and 2-node runs are momentum SGD (--optimizer sgd --lars-eta 0.0); every other run is LARS
    sgd = {i for i, r in rows.items() if r.train_optimizer == "sgd_momentum"}
    assert sgd == {"mlperf-v0.7-rn50-dgxa100-40gb-8gpu", "mlperf-v0.7-rn50-dgxa100-40gb-16gpu"}
    assert {rows[i].train_optimizer for i in rows.keys() - sgd} == {"lars"}
    # throughput counts every GPU: the step is gpus x batch / images per second
    r = rows["mlperf-v2.0-rn50-dgxa100-64gpu"]
    assert r.step_time_s == pytest.approx(64 * 51 / 167768.60)


def test_harness_predicts_them_with_that_recipe(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text("name: m\ndescription: d\nengines: [distributed]\nsources:\n"
                     f"  - published: {ROOT / 'data/ground_truth/published.yaml'}\n")
    tasks = {t.row.case_id: t for t in plan(load_suite(str(suite)), ROOT) if t.row.case_id.startswith("mlperf-")}
    t = tasks["mlperf-v1.0-rn50-dgxa100-64gpu"]
    assert t.params["optimizer"] == "lars" and t.params["parallel"] == {"overlap": False}
    assert t.row.extra["optimizer"] == "lars" and t.row.extra["gpus"] == 64
    assert tasks["mlperf-v0.7-rn50-dgxa100-40gb-8gpu"].params["optimizer"] == "sgd_momentum"


def test_published_optimizer_is_validated(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("records:\n  - {id: x, model: resnet50, hardware: h100-sxm5-80gb, mode: train, dtype: fp16, "
                   "batch: 8, optimizer: larsx, metric: step_time_s, value: 1.0, unit: s, "
                   "source: 'a source of twenty characters or more'}\n")
    with pytest.raises(ConfigError, match="optimizer.*allowed: .*lars"):
        load_published(bad)


def test_example_scenario_reproduces_the_row():
    # examples/mlperf-resnet50-dgxa100-8nodes.yaml is the recipe of mlperf-v2.0-rn50-dgxa100-64gpu
    from perfforge.api import run_scenario
    from perfforge.scenario import load_scenario

    sc = load_scenario(ROOT / "examples/mlperf-resnet50-dgxa100-8nodes.yaml")
    row = _mlperf_rows()["mlperf-v2.0-rn50-dgxa100-64gpu"]
    assert (sc.gpus, sc.batch, sc.optimizer, sc.overlap, sc.fuse_bn_act) == (row.gpus, row.batch, "lars", False, True)
    step = run_scenario(sc).step_time_s
    assert abs(step / row.step_time_s - 1) < 0.1  # 19.6 ms predicted against 19.5 ms measured when written
