"""The CLI contract: names, JSON fields, files written, and one-line errors without tracebacks."""

import csv
import json
import subprocess
import sys

import pytest

from perfforge.cli.main import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perfforge.cli.main", *args], capture_output=True, text=True,
                          timeout=120)


def test_predict_json_contract():
    p = run_cli("predict", "--model", "resnet50", "--hardware", "a100-sxm4-80gb", "--batch", "256",
                "--mode", "train", "--dtype", "fp16", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    for key in ("step_time_s", "throughput_samples_per_s", "params", "flops_per_step", "mfu", "memory_bytes",
                "fits", "breakdown"):
        assert key in d
    assert d["params"] == 25_557_032 and d["fits"] is True
    assert d["throughput_samples_per_s"] == pytest.approx(256 / d["step_time_s"])


def test_predict_table_and_files(tmp_path, capsys):
    out_csv, out_trace = tmp_path / "b.csv", tmp_path / "t.json"
    rc = main(["predict", "--model", "gpt2", "--hardware", "a100-sxm4-80gb", "--seq", "512",
               "--csv", str(out_csv), "--trace", str(out_trace)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Time by op class" in text and "Time by layer" in text and "MFU" in text
    rows = list(csv.DictReader(out_csv.open()))
    assert rows and {"name", "kind", "time_s", "flops", "bytes"} <= set(rows[0])
    assert json.loads(out_trace.read_text())["traceEvents"]


def test_models_and_hardware_lists(capsys):
    assert main(["models", "--json"]) == 0
    ids = {m["id"] for m in json.loads(capsys.readouterr().out)}
    assert {"resnet50", "bert-large", "gpt2", "gpt2-large", "llama-2-7b"} <= ids
    assert main(["hardware", "--json"]) == 0
    hw = {d["id"] for d in json.loads(capsys.readouterr().out)}
    assert {"a100-sxm4-80gb", "a100-pcie-40gb", "h100-sxm5-80gb", "h100-pcie-80gb", "v100-sxm2-16gb", "l4", "t4"} <= hw
    assert main(["hardware", "h100-sxm5-80gb"]) == 0
    text = capsys.readouterr().out
    # the source keys ([ds], [wp]) name the texts below the table: rich must print them, not read them as markup
    assert "source" in text and "[ds]" in text and "[wp]" in text


def test_table_keeps_the_calibration_architecture(capsys):
    assert main(["predict", "--model", "resnet50", "--hardware", "h100-sxm5-80gb", "--batch", "8"]) == 0
    assert "[hopper]" in capsys.readouterr().out


def test_run_scenario_file(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text("model: bert-large\nhardware: a100-sxm4-80gb\nmode: inference\nbatch: 8\nseq: 384\ndtype: fp16\n")
    assert main(["run", str(f), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == 335_141_888
    assert main(["predict", "--model", str(f), "--batch", "16", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["batch"] == 16


@pytest.mark.parametrize(
    "args,needle",
    [
        (["predict", "--model", "resnet5", "--hardware", "a100-sxm4-80gb"], "unknown model 'resnet5'"),
        (["predict", "--model", "resnet50", "--hardware", "a100-sxm"], "unknown hardware"),
        (["predict", "--model", "resnet50", "--hardware", "a100-sxm4-80gb", "--batch", "-2"], "batch"),
        (["predict", "--model", "resnet50", "--hardware", "a100-sxm4-80gb", "--batch", "x"], "--batch"),
        (["predict", "--model", "resnet50", "--hardware", "a100-sxm4-80gb", "--mode", "serve"], "mode"),
        (["predict", "--model", "resnet50"], "--hardware is required"),
        (["run", "MISSING.yaml"], "not found"),
    ],
)
def test_bad_input_is_one_line(args, needle):
    p = run_cli(*args)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and needle in lines[0], p.stderr


@pytest.mark.parametrize(
    "content,needle",
    [
        ("model: gpt2\nhardware: [unclosed\n", "malformed YAML"),
        ("hardware: a100-sxm4-80gb\n", "model: required field is missing"),
        ("model: gpt2\nhardware: a100-sxm4-80gb\nbatchsize: 4\n", "batchsize: unknown field"),
        ("- just\n- a list\n", "must be a mapping"),
    ],
)
def test_bad_scenario_files(tmp_path, content, needle):
    f = tmp_path / "bad.yaml"
    f.write_text(content)
    p = run_cli("run", str(f))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert needle in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_csv_not_half_written_on_error(tmp_path):
    out = tmp_path / "keep.csv"
    out.write_text("previous content\n")
    p = run_cli("predict", "--model", "nope", "--hardware", "a100-sxm4-80gb", "--csv", str(out))
    assert p.returncode == 2 and out.read_text() == "previous content\n"


def test_scenario_that_no_engine_supports_is_one_line(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("model: resnet50\nhardware: a100-sxm4-80gb\nmode: train\ngpus: 8\nengine: analytical\n")
    p = run_cli("run", str(f))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "distributed engine" in p.stderr and len(p.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args,needle", [(["profile", "--suite", "huge"], "unknown suite 'huge'"),
                                         (["profile", "--suite", "tiny", "--only", "kernelz"], "unknown group"),
                                         (["profile", "--suite", "tiny", "--device", "tpu"], "--device 'tpu'")])
def test_profile_bad_options(args, needle):
    p = run_cli(*args)
    assert p.returncode == 2 and needle in p.stderr and "Traceback" not in p.stderr


def test_train_loader_workers(capsys):
    rc = main(["train", "--model", "resnet50", "--hardware", "h200-sxm-141gb", "--batch", "256", "--dtype", "fp16",
               "--optimizer", "sgd_momentum", "--loader-workers", "4", "--loader-rate", "100", "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["step_time_s"] == pytest.approx(256 / 400) and d["input_bound"] is True
    assert d["loader_workers"] == 4 and d["input_s"] == pytest.approx(0.64)
    rc = main(["train", "--model", "resnet50", "--hardware", "h200-sxm-141gb", "--loader-workers", "4"])
    assert rc == 0 and "input pipeline" in capsys.readouterr().out
    p = run_cli("train", "--model", "resnet50", "--hardware", "h200-sxm-141gb", "--loader-workers", "0")
    assert p.returncode != 0 and "loader_workers" in p.stderr and "Traceback" not in p.stderr
