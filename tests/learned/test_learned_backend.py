"""The learned backend inside the analytical engine, the new zoo ids, and the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import perfforge
from perfforge.cli.main import main
from perfforge.core.errors import ConfigError


@pytest.mark.parametrize("dtype", ["fp32", "tf32", "fp16", "bf16"])
def test_backend_learned_reports_fallbacks(dtype):
    r = perfforge.predict("gpt2", "h100-sxm5-80gb", seq=256, batch=2, dtype=dtype, backend="learned")
    a = perfforge.predict("gpt2", "h100-sxm5-80gb", seq=256, batch=2, dtype=dtype)
    assert r.extra["backend"] == "learned" and a.extra["backend"] == "analytical"
    assert r.extra["learned_ops"] > 0
    # fused attention and embeddings have no learned family: timed by the roofline and counted
    assert set(r.extra["fallback_ops"]) == {"attention", "embedding"}
    assert r.extra["kernel_time_low_s"] <= r.step_time_s <= r.extra["kernel_time_high_s"] or r.host_bound
    kernels = lambda res: sum(x.time_s for x in res.breakdown if x.stream == "compute")  # noqa: E731
    assert kernels(r) != kernels(a)  # the step itself may be host-bound in both


def test_training_step_and_bad_backend():
    r = perfforge.predict("bert-base", "a100-pcie-40gb", mode="train", seq=128, batch=4, dtype="fp32", backend="learned")
    assert "optimizer" in r.extra["fallback_ops"]
    with pytest.raises(ConfigError, match="backend"):
        perfforge.predict("gpt2", "h100-sxm5-80gb", backend="neural")


def test_backward_convolutions_are_covered_only_where_they_were_measured():
    """The shipped model's data holds H100 and H200 backward convs (data/ground_truth/measured/h100-conv-backward-
    2026112*, and the standard kernel runs since they include them: h100-sxm-20261127-run3,
    h*-kernels-guarded-20261127) and no other GPU's: it times a ResNet-50 training step's dgrad and wgrad convs on
    an H100, and on a V100 leaves them to the roofline and says so."""
    import dataclasses

    from perfforge.engines.learned.backend import using_model
    from perfforge.engines.learned.dataset import conv_backward_groups, load_records
    from perfforge.engines.learned.model import load_model

    shipped = load_model()
    assert shipped.conv_backward_groups == ("H100", "H200")
    root = Path(__file__).resolve().parents[2] / "data" / "ground_truth"
    assert conv_backward_groups(load_records(root, scale=0.01)) == ("H100", "H200")
    kw = dict(mode="train", batch=32, dtype="fp16", optimizer="sgd_momentum", backend="learned")
    r = perfforge.predict("resnet50", "v100-sxm2-16gb", **kw)
    n_backward_convs = sum(1 for x in r.breakdown if x.kind == "conv2d" and x.phase.startswith("backward"))
    assert r.extra["fallback_ops"]["conv2d backward"] == n_backward_convs == 53 + 52  # the stem has no dgrad
    with using_model(dataclasses.replace(shipped, conv_backward_groups=("V100",))):
        covered = perfforge.predict("resnet50", "v100-sxm2-16gb", **kw)
    assert "conv2d backward" not in covered.extra["fallback_ops"]
    assert covered.extra["learned_ops"] == r.extra["learned_ops"] + n_backward_convs
    h100 = perfforge.predict("resnet50", "h100-sxm5-80gb", **kw)
    assert "conv2d backward" not in h100.extra["fallback_ops"]


def test_zoo_ids_for_neusight_labels():
    from perfforge.workload.zoo import get_model

    assert get_model("gpt3-xl").params == get_model("gpt3-1.3b").params
    # facebook/opt-1.3b: 1,315,758,080 parameters (HF OPTForCausalLM, tied head; 2050 learned positions)
    assert get_model("opt-1.3b").params == 1_315_758_080
    sw = get_model("switch-xl", batch=1, seq=512, dtype="fp32", attention_impl="fused")
    experts = [o for o in sw.ops if o.name.endswith("experts.wi")]
    assert len(experts) == 24                       # 12 sparse blocks in each of the two stacks
    assert experts[0].attrs["m"] == 64 and experts[0].attrs["batch"] == 4  # batch x capacity rows, 4 experts
    eager = get_model("switch-xl", batch=1, seq=512, dtype="fp32", attention_impl="unfused")
    per_expert = [o for o in eager.ops if o.name.endswith(".wi") and ".expert" in o.name]
    assert len(per_expert) == 24 * 4 and {o.attrs["m"] for o in per_expert} == {64}   # one GEMM per expert


def test_neusight_bert_training_labels_are_bert_for_pretraining():
    """NeuSight trains BERT as HF's BertForPreTraining (neusight/Tracing/trace.py): its training labels are read
    with that head, its inference labels with the plain encoder and pooler."""
    from pathlib import Path

    from perfforge.evaluation.neusight import read_labels

    labels = read_labels(Path(__file__).resolve().parents[2] / "data/ground_truth/neusight")
    bert = [r["params"] for r in labels if r["params"]["neusight_model"] == "bert_large"]
    assert bert and all(p.get("head") == ("pretraining" if p["mode"] == "train" else None) for p in bert)
    assert not any(r["params"].get("head") for r in labels if r["params"]["neusight_model"] != "bert_large")


def test_predict_cli_gpt3_xl(capsys):
    rc = main(["predict", "--model", "gpt3-xl", "--seq", "2048", "--batch", "2", "--dtype", "fp32",
               "--hardware", "a100-pcie-40gb", "--backend", "learned", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["backend"] == "learned" and out["step_time_s"] > 0


def test_op_latency_json(capsys):
    assert main(["op-latency", "--op", "bmm", "--shape", "8,512,512,64", "--dtype", "fp32",
                 "--hardware", "h100-sxm5-80gb", "--backend", "learned", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["low_s"] <= out["pred_s"] <= out["high_s"] and out["backend"] == "learned"
    assert out["pred_s"] >= out["bound_s"]
    assert main(["op-latency", "--op", "conv", "--shape", "8,64,64,3,56,1,1", "--hardware", "t4",
                 "--backend", "analytical", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["backend"] == "analytical" and out["low_s"] is None


@pytest.mark.parametrize("args, message", [
    (["--op", "matmul3", "--shape", "1,2,3,4", "--hardware", "t4"], "unknown op 'matmul3'"),
    (["--op", "bmm", "--shape", "1,2,3", "--hardware", "t4"], "needs 4 values B,M,N,K, got 3"),
    (["--op", "bmm", "--shape", "1,2,3,4", "--hardware", "t9"], "unknown hardware 't9'"),
    (["--op", "ln", "--shape", "1,x", "--hardware", "t4"], "must be an integer"),
    (["--op", "bmm", "--shape", "1,2,3,4", "--hardware", "t4", "--backend", "magic"], "unknown backend 'magic'"),
])
def test_op_latency_bad_input_is_one_line_exit_2(args, message, capsys):
    assert main(["op-latency", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_op_latency_csv_round_trip(tmp_path):
    path = tmp_path / "ops.csv"
    rows = [{"op": "bmm", "B": 4, "M": 128, "N": 128, "K": 64, "H": "", "dtype": "fp16"},
            {"op": "softmax", "B": 4096, "M": "", "N": "", "K": "", "H": 1024, "dtype": "fp32"},
            {"op": "linear", "B": 2, "M": 512, "N": 1024, "K": 1024, "H": "", "dtype": "bf16"}]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "pred.csv"
    assert main(["op-latency", "--csv", str(path), "--hardware", "a100-sxm4-80gb", "--out", str(out)]) == 0
    got = list(csv.DictReader(out.open()))
    assert [g["op"] for g in got] == ["bmm", "softmax", "linear"]
    for g in got:
        assert float(g["low_s"]) <= float(g["pred_s"]) <= float(g["high_s"]) and g["backend"] == "learned"
    bad = tmp_path / "bad.csv"
    bad.write_text("op,B,M,N\nbmm,1,2,3\n")
    assert main(["op-latency", "--csv", str(bad), "--hardware", "t4"]) == 2


def test_neusight_gpt3_xl_labels_use_neusight_dims():
    """NeuSight's gpt3_xl labels were measured on d_model 3072 (its traced graph), not the zoo's 1.3B gpt3-xl."""
    from pathlib import Path

    from perfforge.evaluation.neusight import read_labels
    from perfforge.workload.zoo import ALIASES, MODELS

    root = Path(__file__).resolve().parents[2] / "data/ground_truth/neusight"
    xl = [r for r in read_labels(root) if r["params"]["neusight_model"] == "gpt3_xl"]
    assert len(xl) == 8 and all(r["params"]["model"] == "gpt3-xl-neusight" for r in xl)  # 3 training + 5 OOD GPUs
    cfg = MODELS.get("gpt3-xl-neusight").config
    assert (cfg.hidden, cfg.layers, cfg.heads, cfg.ffn) == (3072, 24, 24, 12288)
    # the GPT-3 paper's XL (d_model 2048) stays the zoo's gpt3-xl
    assert ALIASES["gpt3-xl"] == "gpt3-1.3b" and MODELS.get("gpt3-1.3b").config.hidden == 2048
    others = [r for r in read_labels(root) if r["params"]["neusight_model"] != "gpt3_xl"]
    assert all(r["params"]["model"] for r in others)


def test_e2e_rows_mark_neusight_ood_rows_and_use_the_held_out_model(tmp_path):
    """An OOD GPU or an OOD model makes a row OOD (NeuSight's split); each row is also priced by the model held
    out for its GPU group."""
    import shutil
    from pathlib import Path

    from perfforge.engines.learned.e2e import e2e_rows
    from perfforge.engines.learned.model import load_model

    src = Path(__file__).resolve().parents[2] / "data/ground_truth/neusight"
    for rel in ("labels/Tesla_V100-PCIE-32GB/bert_large-inf-512-8.json", "labels/Tesla_V100-PCIE-32GB/opt_13-inf-2048-2.json",
                "labels/NVIDIA_L4/bert_large-inf-512-8.json", "device_configs/Tesla_V100-PCIE-32GB.json"):
        (tmp_path / "neusight" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / rel, tmp_path / "neusight" / rel)
    shipped = load_model()
    rows = {(r["gpu"], r["label"]): r for r in e2e_rows(shipped, tmp_path, held_out={"V100": shipped})}
    assert not rows[("v100-pcie-32gb", "bert_large-inf-512-8")]["neusight_ood"]
    assert rows[("v100-pcie-32gb", "opt_13-inf-2048-2")]["neusight_ood"]          # an OOD model
    l4 = rows[("l4", "bert_large-inf-512-8")]
    assert l4["neusight_ood"] and not l4["held_out_seen"]                        # no L4 kernels anywhere
    v100 = rows[("v100-pcie-32gb", "bert_large-inf-512-8")]
    assert v100["held_out_seen"]
    # the same model was passed; the held-out run prices its analytical member and fallback on the priors alone
    from perfforge.api import predict, resolve_workload
    from perfforge.engines.analytical.calibration import calibrated_architectures, priors_calibration_file

    wl = resolve_workload("bert-large", mode="inference", batch=8, seq=512, dtype="fp32", attention_impl="unfused")
    with priors_calibration_file(calibrated_architectures()) as priors:
        on_priors = predict(wl, "v100-pcie-32gb", mode="inference", backend="learned", calibration=priors)
    shipped_cal = predict(wl, "v100-pcie-32gb", mode="inference", backend="learned")
    assert v100["held_out_s"] == pytest.approx(on_priors.step_time_s, rel=1e-9)
    assert v100["learned_s"] == pytest.approx(shipped_cal.step_time_s, rel=1e-9)
    assert v100["held_out_s"] != v100["learned_s"]
