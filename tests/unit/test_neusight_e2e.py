"""NeuSight's harness re-measured (perfforge.profiling.neusight_e2e) and its records in the evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perfforge.evaluation.measured import model_predict_kwargs, read_measurements, training_dropout
from perfforge.evaluation.neusight import harness_record_params, label_params, read_labels
from perfforge.profiling.neusight_e2e import STANDARD, E2ECase, _fastest_mean, case_key

ROOT = Path(__file__).resolve().parents[2] / "data" / "ground_truth"
RUNS = ("h100-neusight-e2e-20261126-run1", "h100-neusight-e2e-20261126-run2")


def test_neusight_statistic_is_the_mean_of_the_fastest():
    # measure_e2e sorts the 25 latencies and averages the first 5
    assert _fastest_mean([5.0, 1.0, 4.0, 2.0, 3.0, 9.0], 3) == pytest.approx(2.0)
    assert _fastest_mean([2.0, 4.0], 5) == pytest.approx(3.0)


def test_every_standard_case_names_an_h100_label():
    labels = {r["key"].split("/")[-1] for r in read_labels(ROOT / "neusight")
              if r["key"].split("/")[1] == "NVIDIA_H100_80GB_HBM3"}
    for case in STANDARD:
        _, params = case_key(case)
        assert params["neusight_label"] in labels, case
    key_hf, _ = case_key(E2ECase("switch-xl", "train", 1, 512, "hf"))
    key_padded, _ = case_key(E2ECase("switch-xl", "train", 1, 512))
    assert key_hf != key_padded


def test_harness_records_are_predicted_as_their_labels():
    """A re-measured record gets its label's zoo model, dropout and head; its own batch and sequence stay."""
    recs = [r for run in RUNS for r in read_measurements(ROOT / "measured" / run / "measurements.jsonl.gz")]
    assert len(recs) == 18   # run1: 8 dense + 2 Switch (HF layer); run2: 8 Switch
    labels = {r["key"].split("/")[-1]: r for r in read_labels(ROOT / "neusight")
              if r["key"].split("/")[1] == "NVIDIA_H100_80GB_HBM3"}
    for rec in recs:
        p = harness_record_params(rec)
        label = labels[rec["params"]["neusight_label"]]
        for k in ("model", "mode", "batch", "seq", "dropout", "head", "exclude_optimizer"):
            assert p.get(k) == label["params"].get(k), (rec["key"], k)
        fixed = {**rec, "params": p}
        assert model_predict_kwargs(fixed)["batch"] == rec["params"]["batch"]
    bert = next(r for r in recs if r["params"]["neusight_label"] == "bert_large-train-512-8")
    assert harness_record_params(bert)["head"] == "pretraining"
    assert training_dropout({**bert, "params": harness_record_params(bert)}) == 0.1
    # Switch trains with its config's dropout_rate 0.1 too, and every training label accumulates gradients
    switch = next(r for r in recs if r["params"]["model"] == "switch-xl" and r["params"]["mode"] == "train")
    assert harness_record_params(switch)["dropout"] == 0.1 and label_params("switchxl4", "train")["model"] == "switch-xl"
    assert label_params("switchxl4", "train")["optimizer"] == "grad_accumulate"
    assert "dropout" not in label_params("switchxl4", "inference")


def test_tiny_harness_on_cpu(tmp_path):
    """The tiny suite end to end on a CPU (needs transformers): one record per case with NeuSight's statistic,
    and Switch's padded layer runs every expert on batch x capacity rows."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from perfforge.profiling import neusight_e2e as ne
    from perfforge.profiling.runner import run_profile

    summary = run_profile("tiny", tmp_path, device="cpu", only=["neusight-e2e"], log=lambda s: None)
    recs = [json.loads(line) for line in (tmp_path / "measurements.jsonl").read_text().splitlines()]
    assert summary.measured == len(ne.SUITES["tiny"]) == len(recs) and not summary.failed
    for r in recs:
        e = r["extra"]
        assert r["latency_s"] == pytest.approx(e["fw_s"] + e["bw_s"])
        assert (e["bw_s"] > 0) == (r["params"]["mode"] == "train")
    bert = next(r for r in recs if r["params"]["model"] == "tiny-bert" and r["params"]["mode"] == "train")
    assert bert["extra"]["model_class"] == "BertForPreTraining"

    model, _, inputs = ne.build(E2ECase("tiny-switch", "train", 2, 32), "cpu")
    rows: list[tuple[int, ...]] = []
    for name, mod in model.named_modules():
        if name.rsplit(".", 1)[-1].startswith("expert_"):
            mod.register_forward_hook(lambda m, i, o: rows.append(tuple(i[0].shape)))
    model(**inputs)
    cap = ne._SWITCH_ARCH["tiny-switch"]["expert_capacity"]
    assert rows and set(rows) == {(2 * cap, 64)}
    ne._patch_switch(False)


def test_harness_refuses_big_models_on_a_cpu():
    torch = pytest.importorskip("torch")
    from perfforge.core.errors import ConfigError
    from perfforge.profiling.neusight_e2e import measure_records

    with pytest.raises(ConfigError, match="run it on a GPU"):
        measure_records("standard", torch.device("cpu"), None, set(), lambda r: None, lambda s: None)
    with pytest.raises(ValueError, match="choose from tiny, standard"):
        measure_records("huge", torch.device("cpu"), None, set(), lambda r: None, lambda s: None)


def test_label_reproduction_rows_by_hand():
    """Every re-measurement meets its own label: BERT-Large b8 training in NeuSight's harness is 225.40 ms against
    the label's 236.0 ms (labels/NVIDIA_H100_80GB_HBM3/bert_large-train-512-8.json, e2e_latency 235.99)."""
    from perfforge.evaluation.label_reproduction import render, reproduction_rows

    rows = reproduction_rows(ROOT)
    harness = [r for r in rows if r["protocol"] == "NeuSight's harness"]
    assert len(harness) == 18 and len(rows) == 18 + 36   # + two H100 breakdown runs of 18 (H200 has no labels)
    bert = next(r for r in harness if r["label"] == "bert_large-train-512-8")
    label = json.loads((ROOT / "neusight/labels/NVIDIA_H100_80GB_HBM3/bert_large-train-512-8.json").read_text())
    assert bert["label_s"] == pytest.approx(label["e2e_latency"] * 1e-3)
    assert bert["measured_s"] / bert["label_s"] == pytest.approx(0.955, abs=0.001)
    text = "\n".join(render(rows))
    assert "NeuSight's harness protocol, dense models: 8 runs" in text and "| hf |" in text
