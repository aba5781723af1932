"""A user's own GPU in the learned model's training data (``perfforge learn train --measured RUN``): its records are
matched to a device YAML through ``cuda_names``, form a GPU group of their own, and records no device matches
are reported, never silently dropped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from perfforge.core.errors import ConfigError
from perfforge.system import catalog

ROOT = Path(__file__).resolve().parents[2] / "data/ground_truth"
SHIPPED_L4 = Path(catalog.__file__).resolve().parents[1] / "data/catalog/devices/l4.yaml"


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A catalog directory with one device the shipped catalog lacks, and a profile run of it."""
    spec = yaml.safe_load(SHIPPED_L4.read_text())
    spec.update(id="lab-gpu", name="Lab GPU (an L4's figures under another name)", cuda_names=["NVIDIA Lab GPU"])
    cat = tmp_path / "catalog"
    cat.mkdir()
    (cat / "lab-gpu.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv(catalog.ENV_VAR, str(cat))
    catalog.clear_cache()
    run = tmp_path / "run1"
    run.mkdir()
    recs = [{"kind": "kernel", "op": "bmm", "params": {"b": 8, "m": 256 * i, "n": 512, "k": 64}, "dtype": "fp32",
             "latency_s": 1e-4 * i, "device": {"name": "NVIDIA Lab GPU"}, "key": f"kernel/bmm/{i}"} for i in (1, 2, 3)]
    recs.append({**recs[0], "device": {"name": "NVIDIA Nobody"}, "key": "kernel/bmm/x"})
    (run / "measurements.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    yield run
    catalog.clear_cache()


def test_records_of_a_user_device_resolve_and_form_their_own_group(lab):
    from perfforge.engines.learned.dataset import gpu_group, samples_from_records, unresolved_devices
    from perfforge.evaluation.measured import device_id, read_measurements, resolve_device_id

    assert resolve_device_id("NVIDIA Lab GPU") == "lab-gpu"
    assert resolve_device_id("NVIDIA H100 80GB HBM3") == "h100-sxm5-80gb"  # the shipped table still comes first
    assert resolve_device_id("NVIDIA Nobody") is None
    recs = read_measurements(lab / "measurements.jsonl")
    gemm = samples_from_records(recs)["gemm"]
    assert list(gemm.group) == ["lab-gpu"] * 3 and gpu_group("lab-gpu") == "lab-gpu" and gpu_group("l4") == "L4"
    assert unresolved_devices(recs) == {"NVIDIA Nobody": 1}
    with pytest.raises(ConfigError, match=r"no catalog id for measured device 'NVIDIA Nobody'.*cuda_names"):
        device_id(recs[-1])


def test_load_records_adds_a_run_folder_and_refuses_a_missing_one(lab, tmp_path):
    from perfforge.engines.learned.dataset import load_records, measurement_files

    assert measurement_files([lab]) == [lab / "measurements.jsonl"]
    assert measurement_files([tmp_path]) == [lab / "measurements.jsonl"]  # one level down: a folder of runs
    base = load_records(ROOT, scale=0.01)
    more = load_records(ROOT, scale=0.01, extra=[lab])
    # --scale thins every file alike: at 0.01, every 100th record of the run, i.e. its first
    assert len(more) == len(base) + 1 and more[-1]["key"] == "kernel/bmm/1"
    with pytest.raises(ConfigError, match="measurements not found"):
        load_records(ROOT, extra=[tmp_path / "nope"])


def test_cli_names_a_missing_measurements_path(tmp_path, capsys):
    from perfforge.cli.main import main

    assert main(["learn", "train", "--measured", str(tmp_path / "nope"), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert "measurements not found" in err and "\n" not in err
    assert not (tmp_path / "m").exists()


def test_the_environment_variable_picks_the_model_every_command_uses(tmp_path, monkeypatch, capsys):
    import shutil

    from perfforge.cli.main import main
    from perfforge.engines.learned.model import (
        MODEL_ENV,
        SHIPPED_MANIFEST,
        SHIPPED_NPZ,
        WeightsMissingError,
        load_model,
    )

    shipped = Path(load_model.__code__.co_filename).parent
    monkeypatch.delenv(MODEL_ENV, raising=False)
    reference = load_model()
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in (SHIPPED_MANIFEST, SHIPPED_NPZ):
        shutil.copy(shipped / name, mine / Path(name).name)
    manifest = json.loads((mine / "kernel_model.json").read_text())
    manifest["families"]["gemm"]["blend_analytical_weight"] = {"*": 0.0}  # a visibly different model
    (mine / "kernel_model.json").write_text(json.dumps(manifest))
    args = ["op-latency", "--op", "bmm", "--shape", "8,512,64,512", "--hardware", "h100-sxm5-80gb", "--json"]
    assert main(args) == 0
    before = json.loads(capsys.readouterr().out)["pred_s"]
    monkeypatch.setenv(MODEL_ENV, str(mine))  # the folder `learn train --out` wrote
    assert load_model().manifest["families"]["gemm"]["blend_analytical_weight"] == {"*": 0.0}
    assert load_model().version == reference.version  # same arrays, so the same sha
    assert main(args) == 0
    after = json.loads(capsys.readouterr().out)["pred_s"]
    assert after != pytest.approx(before, rel=1e-6)  # BMM's shipped weight is 0.25: the prediction moved
    monkeypatch.setenv(MODEL_ENV, str(tmp_path / "missing.json"))
    with pytest.raises(WeightsMissingError, match=MODEL_ENV):
        load_model()
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "missing.json" in err and "Traceback" not in err
