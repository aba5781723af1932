"""Edge cases a user hits from the command line: each is a one-line error or a valid result, never a traceback."""

import json
import math
import subprocess
import sys

import pytest

from perfforge.cli.main import main
from perfforge.core.files import dumps_json


def run_cli(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perfforge.cli.main", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def one_line_error(p: subprocess.CompletedProcess, needle: str) -> None:
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    lines = [ln for ln in p.stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and needle in lines[0], p.stderr


@pytest.mark.parametrize("args,needle", [
    (["predict", "--model", "gpt2", "--hardware", "t4", "--dtype", "fp64"], "t4 has no peak for fp64"),
    (["op-latency", "--op", "bmm", "--shape", "8,512,512,64.5", "--dtype", "fp16", "--hardware", "h100-sxm5-80gb"],
     "shape column 'K' must be an integer, got '64.5'"),
    (["train", "--model", "resnet50", "--hardware", "l4", "--gpus", "2"], "no default node for 'l4'"),
    (["train", "--model", "resnet50", "--hardware", "l4", "--gpus", "2", "--node", "dgx-h100"],
     "node dgx-h100 holds h100-sxm5-80gb GPUs, not l4"),
    (["train", "--model", "gpt2", "--hardware", "h100-sxm5-80gb", "--gpus", "8", "--tp", "2", "--dropout", "0.1"],
     "dropout: not modelled with tensor/pipeline parallelism"),
    (["train", "--model", "gpt2", "--hardware", "h100-sxm5-80gb", "--gpus", "8", "--zero", "1",
      "--sequence-parallel"], "sequence_parallel splits norms and dropout over the tensor-parallel group"),
    (["train", "--model", "gpt2", "--hardware", "h100-sxm5-80gb", "--gpus", "12", "--tp", "2"],
     "12 GPUs do not fill whole dgx-h100 nodes"),
    (["train", "--model", "gpt3-1.3b", "--hardware", "h100-sxm5-80gb", "--gpus", "4", "--pp", "4", "--batch", "6",
      "--microbatches", "6", "--schedule", "interleaved", "--virtual-stages", "2"],
     "microbatches (6) must be a multiple of pp (4)"),
])
def test_one_line_errors(args, needle):
    one_line_error(run_cli(*args), needle)


def test_outputs_that_cannot_be_written_are_one_line_errors(tmp_path):
    one_line_error(run_cli("predict", "--model", "gpt2", "--hardware", "a100-sxm4-80gb", "--csv", str(tmp_path)),
                   "is a folder; give a file name")
    (tmp_path / "taken").write_text("")
    one_line_error(run_cli("astra-sim", "export", "--out", str(tmp_path / "taken"), "--model", "resnet50",
                           "--hardware", "a100-sxm4-80gb"), "already exists and is not a folder")
    bad = tmp_path / "ops.csv"
    bad.write_bytes(b"op,B,M,N,K,dtype\n\xff\xfe,1\n")
    one_line_error(run_cli("op-latency", "--csv", str(bad), "--hardware", "a100-sxm4-80gb"), "is not UTF-8 text")


def test_astra_sim_inputs_with_text_where_numbers_belong(tmp_path):
    from perfforge.core.errors import ConfigError
    from perfforge.distributed.astrasim.inputs import read_network, read_system

    net = tmp_path / "net.yml"
    net.write_text("topology: [ Ring ]\nnpus_count: [ 8.5 ]\nbandwidth: [ 50 ]\nlatency: [ 500 ]\n")
    with pytest.raises(ConfigError, match="npus_count must be an integer, got 8.5"):
        read_network(net)
    system = tmp_path / "sys.json"
    system.write_text(json.dumps({"endpoint-delay": "abc"}))
    with pytest.raises(ConfigError, match="endpoint-delay must be a number, got 'abc'"):
        read_system(system)


def test_json_output_is_strict_json():
    assert dumps_json({"a": math.nan, "b": [math.inf, 1.5]}) == '{"a": null, "b": [null, 1.5]}'
    # one request with one output token has no TPOT/TBT: null, which jq and JSON.parse accept
    p = run_cli("serve", "--model", "llama-2-7b", "--hardware", "a100-sxm4-80gb", "--requests", "1", "--decode", "1",
                "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert d["tpot_p50_s"] is None


def test_a_lone_gpu_trains_without_a_node(capsys):
    assert main(["train", "--model", "resnet50", "--hardware", "l4", "--batch", "32", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["node"] is None and d["exposed_comm_s"] == 0 and d["step_time_s"] > 0


def test_hardware_lists_nodes_and_networks(capsys):
    assert main(["hardware"]) == 0
    text = capsys.readouterr().out
    assert "dgx-a100" in text and "infiniband-ndr" in text
    assert main(["hardware", "dgx-h100", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["devices_per_node"] == 8


def test_hardware_list_prints_every_id_whole_at_80_columns(capsys):
    """The ids are what --hardware, --node and the node YAMLs take: a truncated 'a100-pcie-…' is useless."""
    from perfforge.system.catalog import list_devices, list_networks, list_nodes

    assert main(["hardware"]) == 0   # captured output: rich's default width of 80 columns
    words = set(capsys.readouterr().out.replace("│", " ").split())
    assert set(list_devices()) | set(list_nodes()) | set(list_networks()) <= words


def test_train_json_carries_the_learned_backend_account(capsys):
    assert main(["train", "--model", "resnet50", "--hardware", "a100-sxm4-80gb", "--gpus", "8", "--batch", "64",
                 "--backend", "learned", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["backend"] == "learned" and d["learned_ops"] > 0 and d["kernel_time_low_s"] < d["kernel_time_high_s"]


def test_the_table_says_which_ops_the_learned_backend_timed(capsys):
    # V100 has no measured backward convolutions, so they fall back; the table must say so, as --json does
    assert main(["train", "--model", "resnet50", "--hardware", "v100-sxm2-32gb", "--batch", "64", "--dtype", "fp32",
                 "--backend", "learned"]) == 0
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())   # rich wraps the cell over lines
    assert "learned kernel model" in text and "conv2d backward 105" in text and "80% interval" in text
    assert main(["predict", "--model", "gpt2", "--hardware", "t4", "--dtype", "fp16"]) == 0
    assert "learned kernel model" not in capsys.readouterr().out


def test_concurrent_collectives_count_their_wall_time_once():
    import perfforge

    r = perfforge.train("gpt2-xl", "h100-sxm5-80gb", gpus=64, batch=1, comm_streams=4)
    assert r.extra["comm_s"] <= r.step_time_s and r.extra["comm_share"] <= 1.0


def test_sweeps_sharing_a_store_each_report_their_own_points(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    for name, batches in (("a", [1, 8]), ("b", [8, 16])):
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(f"name: {name}\ngrid: {{batch: {batches}}}\nfixed: {{model: gpt2, hardware: a100-sxm4-80gb}}\n")
        assert main(["sweep", str(spec), "--store", str(store), "--jobs", "1",
                     "--export", str(tmp_path / f"{name}.csv")]) == 0
    text = capsys.readouterr().out
    assert "b: 2 points, 1 already stored, 1 computed" in text
    exported = (tmp_path / "b.csv").read_text()
    assert exported.count("\n") == 3          # header and both of b's points, batch 8 computed by a


def test_a_sweep_field_in_grid_and_fixed_is_refused(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: x\ngrid: {batch: [1, 2]}\nfixed: {model: gpt2, hardware: a100-sxm4-80gb, batch: 4}\n")
    one_line_error(run_cli("sweep", str(spec), "--store", str(tmp_path / "s.sqlite")), "batch: in both grid and fixed")
