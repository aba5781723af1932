"""NeuSight's per-op metric: op classes of profiled ATen ops and of NeuSight's trace nodes, the layer replication
of label traces, and APEs checked against hand-computed values."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest

from perfforge.evaluation import op_breakdown as ob
from perfforge.evaluation.neusight_traces import class_sums, node_class, read_label_breakdowns

ROOT = Path(__file__).resolve().parents[2] / "data/ground_truth"


@pytest.mark.parametrize("aten, cls", [
    ("aten::addmm", "FC"), ("aten::mm", "FC"), ("aten::bmm", "BMM"), ("aten::_softmax", "SOFTMAX"),
    ("aten::_softmax_backward_data", "SOFTMAX"), ("aten::native_layer_norm_backward", "NORM"),
    ("aten::add", "ELEMENTWISE"), ("aten::tanh_backward", "ELEMENTWISE"), ("aten::clamp_min", "ELEMENTWISE"),
    ("aten::copy_", "OTHER"), ("aten::embedding_dense_backward", "OTHER"), ("aten::sum", "OTHER"),
    ("Activity Buffer Request", "OTHER"),
])
def test_aten_op_classes(aten, cls):
    assert ob.op_class(aten) == cls


def test_measured_sums_add_ops_of_a_class():
    rec = {"extra": {"ops": [{"op": "aten::mm", "self_device_s": 0.002}, {"op": "aten::addmm", "self_device_s": 0.003},
                             {"op": "aten::bmm", "self_device_s": 0.001}, {"op": "aten::copy_", "self_device_s": 0.5}]}}
    sums = ob.measured_sums(rec)
    assert sums["FC"] == pytest.approx(0.005) and sums["BMM"] == pytest.approx(0.001) and sums["OTHER"] == 0.5


def _record_from_prediction(factor: float, step_factor: float) -> dict:
    """A record whose measured class sums are ``factor`` x perfforge's own analytical prediction."""
    rec = {"params": {"model": "gpt2-large", "mode": "inference", "batch": 1, "seq": 128},
           "device": {"name": "NVIDIA H100 80GB HBM3"}, "run_id": "test", "latency_s": 1.0}
    r = ob.predict_record(rec, "analytical")
    rec["class_sums"] = {c: v * factor for c, v in ob.predicted_sums(r).items()}
    rec["latency_s"] = r.step_time_s * step_factor
    return rec


def test_ape_matches_hand_computed_values():
    rows = ob.evaluate([_record_from_prediction(2.0, 1.25)], backends=("analytical",))
    (row,) = rows
    # predicted = measured / 2 -> |0.5 - 1| = 50% in every scored class; step: |1/1.25 - 1| = 20%
    assert set(row["ape"]) == set(ob.SCORED)
    assert all(v == pytest.approx(50.0) for v in row["ape"].values())
    assert row["e2e_ape"] == pytest.approx(20.0)
    summ = ob.summary(rows)["NVIDIA H100 80GB HBM3"]["analytical"]
    assert summ["BMM"] == pytest.approx(50.0) and summ["runs"] == 1
    lines = ob.render_section(rows, {"BMM": 13.8, "FC": 13.9}, model_note="test")
    assert "| NVIDIA H100 80GB HBM3 | analytical | 1 | 50.0% | 50.0% | 50.0% | 50.0% | 50.0% | 20.0% |" in lines


def _row(**kw):
    base = {"op": "call_function", "target": "", "input_shapes": "[]", "output_shape": "(4, 8)", "meta": "",
            "Name": "n", "latency": "1.0"}
    return {**base, **kw}


def test_trace_node_classes():
    linear = "{'nn_module_stack': OrderedDict([('bert', <class 'x.BertModel'>), ('q', <class 'torch.nn.modules.linear.Linear'>)])}"
    assert node_class(_row(op="call_module", meta=linear)) == "FC"
    assert node_class(_row(target="<built-in method matmul of type object at 0x1>",
                           input_shapes="[[4, 20, 1024, 64], [4, 20, 64, 1024]]")) == "BMM"
    assert node_class(_row(target="<built-in method matmul of type object at 0x1>",
                           input_shapes="[[4096, 64], [64, 64]]")) == "FC"
    assert node_class(_row(target="<built-in function add>")) == "ELEMENTWISE"
    assert node_class(_row(target="<built-in function add>", output_shape="(1,)")) == "OTHER"  # size arithmetic
    assert node_class(_row(op="call_method", target="contiguous")) == "OTHER"
    assert node_class(_row(target="<function softmax>")) == "SOFTMAX"


def test_trace_block_is_repeated_num_layer_times(tmp_path):
    rows = [_row(Name="pre", target="<built-in function add>", latency="1.0"),
            _row(Name="transformer_h_0_ln_1", op="call_module",
                 meta="{'s': OrderedDict([('ln', <class 'torch.nn.modules.normalization.LayerNorm'>)])}", latency="2.0"),
            _row(Name="addmm", target="<built-in method addmm of type object at 0x1>", latency="10.0"),
            _row(Name="add_15", target="<built-in function add>", latency="3.0"),
            _row(Name="lm_head", op="call_module",
                 meta="{'s': OrderedDict([('h', <class 'torch.nn.modules.linear.Linear'>)])}", latency="5.0")]
    path = tmp_path / "gpt2_large-inf-1024-4.csv.gz"
    with gzip.open(path, "wt", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    sums = class_sums(path, 3, "gpt2_large")
    # ms -> s: FC = 3 x 10 + 5, NORM = 3 x 2, ELEMENTWISE = 1 + 3 x 3
    assert sums["FC"] == pytest.approx(35e-3) and sums["NORM"] == pytest.approx(6e-3)
    assert sums["ELEMENTWISE"] == pytest.approx(10e-3)
    with pytest.raises(ValueError, match="markers"):
        class_sums(path, 3, "opt_13")


def test_shipped_label_traces_are_read():
    recs = read_label_breakdowns(ROOT / "neusight")
    assert len(recs) >= 30
    v100 = [r for r in recs if r["params"]["neusight_label"] == "bert_large-train-512-8"]
    assert v100 and v100[0]["params"]["mode"] == "train"
    for r in recs:
        sums = r["class_sums"]
        assert max(sums, key=sums.get) == "FC"            # GEMMs dominate every one of these transformers
        assert 0.5 < sum(sums.values()) / r["latency_s"] < 2.0


def test_training_dropout_of_measured_runs():
    from perfforge.evaluation.measured import training_dropout
    from perfforge.evaluation.neusight import read_labels

    assert training_dropout({"params": {"mode": "train", "head": "lm"}}) == 0.1        # HF defaults
    assert training_dropout({"params": {"mode": "train", "head": "lm", "dropout": 0.0}}) == 0.0
    assert training_dropout({"params": {"mode": "inference", "head": "lm"}}) == 0.0
    assert training_dropout({"params": {"mode": "train", "model": "resnet50"}}) == 0.0
    labels = read_labels(ROOT / "neusight")
    # every training label ran its config's dropout 0.1, Switch's (dropout_rate) too
    assert all(r["params"].get("dropout", 0.0) == (0.1 if r["params"]["mode"] == "train" else 0.0) for r in labels)


def test_attention_mask_is_classed_as_each_trace_masks():
    """NeuSight's GPT-2 style traces mask the scores with ``where`` (not a VEC op in its classes); its OPT and BERT
    traces add the mask. The predicted mask op follows the trace, so the ELEMENTWISE sums compare like with like."""
    recs = read_label_breakdowns(ROOT / "neusight")
    by_model = {}
    for r in recs:
        by_model.setdefault(r["params"]["model"], set()).add(r["mask_class"])
    assert by_model["gpt2-large"] == {"OTHER"} and by_model["gpt3-2.7b"] == {"OTHER"}
    assert by_model["opt-1.3b"] == {"ELEMENTWISE"} and by_model["bert-large"] == {"ELEMENTWISE"}
    rec = {"params": {"model": "gpt2-large", "mode": "inference", "batch": 1, "seq": 128},
           "device": {"name": "NVIDIA H100 80GB HBM3"}, "run_id": "test", "latency_s": 1.0}
    r = ob.predict_record(rec, "analytical")
    mask_s = sum(x.time_s for x in r.breakdown if x.name.endswith(".core.mask"))
    assert mask_s > 0
    added, where = ob.predicted_sums(r), ob.predicted_sums(r, mask_class="OTHER")
    assert added["ELEMENTWISE"] - where["ELEMENTWISE"] == pytest.approx(mask_s)
    assert where["OTHER"] - added.get("OTHER", 0.0) == pytest.approx(mask_s)
    assert sum(added.values()) == pytest.approx(sum(where.values()))
