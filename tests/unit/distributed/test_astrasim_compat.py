"""ASTRA-sim-compatible mode against the real ASTRA-sim's outputs (data/ground_truth/astra-sim)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from perfforge.core.errors import ConfigError
from perfforge.distributed.astrasim.inputs import read_network, read_system, read_text_workload
from perfforge.distributed.astrasim.simulate import all_reduce_ns, simulate

ROOT = Path(__file__).parents[3] / "data/ground_truth/astra-sim"
REFS = {c["id"]: c for c in yaml.safe_load((ROOT / "reference_outputs.yaml").read_text())["cases"]}
TOLERANCE = 0.01  # the target: within 1% of ASTRA-sim's finish and exposed communication


def _inputs(case):
    return read_network(ROOT / case["network"]), read_system(ROOT / case["system"])


@pytest.mark.parametrize("case_id", ["allreduce-1mib-ring8", "allreduce-64mib-switch8"])
def test_single_all_reduce(case_id):
    case = REFS[case_id]
    dims, system = _inputs(case)
    got = all_reduce_ns(case["workload"]["size_bytes"], dims, system)
    assert got == pytest.approx(case["finish_ns"], rel=TOLERANCE)


def _divided(workload_path: Path, tmp_path: Path) -> Path:
    """The reference's 'compute/1000' variant: compute columns / 1000, rounded to whole us, at least 1."""
    lines = workload_path.read_text().splitlines()
    out = lines[:2]
    for line in lines[2:]:
        if not line.strip():
            continue
        cols = line.split()
        for k in (2, 5, 8):
            cols[k] = str(max(1, round(int(cols[k]) / 1000)))
        out.append("\t".join(cols))
    path = tmp_path / "resnet50_div1000.txt"
    path.write_text("\n".join(out) + "\n")
    return path


@pytest.mark.parametrize("case_id", ["resnet50-dp-stock-ring8", "resnet50-dp-compute-div1000-ring8"])
def test_resnet50_data_parallel(case_id, tmp_path):
    case = REFS[case_id]
    dims, system = _inputs(case)
    path = ROOT / case["workload"]["text"]
    if case["workload"].get("compute_divisor"):
        path = _divided(path, tmp_path)
    res = simulate(read_text_workload(path), dims, system, compute_unit="us")
    assert res.finish_ns == pytest.approx(case["finish_ns"], rel=TOLERANCE)
    assert res.exposed_comm_ns == pytest.approx(case["exposed_comm_ns"], rel=TOLERANCE)
    assert res.collectives == 54 and res.npus == 8


def test_compute_unit_reading():
    # ASTRA-sim issue #207: the same file is 1000x less compute when its column is read as nanoseconds
    case = REFS["resnet50-dp-stock-ring8"]
    dims, system = _inputs(case)
    wl = read_text_workload(ROOT / case["workload"]["text"])
    us = simulate(wl, dims, system, compute_unit="us")
    ns = simulate(wl, dims, system, compute_unit="ns")
    assert us.compute_ns == pytest.approx(1000 * ns.compute_ns)
    assert ns.exposed_comm_ns > 100 * us.exposed_comm_ns  # communication is exposed once compute shrinks


def test_more_bandwidth_never_slower(tmp_path):
    case = REFS["allreduce-1mib-ring8"]
    dims, system = _inputs(case)
    fast = tmp_path / "fast.yml"
    fast.write_text("topology: [ Ring ]\nnpus_count: [ 8 ]\nbandwidth: [ 100.0 ]\nlatency: [ 500.0 ]\n")
    assert all_reduce_ns(2**20, read_network(fast), system) < all_reduce_ns(2**20, dims, system)


def test_cli_json():
    p = subprocess.run([sys.executable, "-m", "perfforge", "astra-sim", "simulate", "--workload",
                        str(ROOT / "workload/Resnet50_DataParallel.txt"), "--network", str(ROOT / "network/Ring_8npus.yml"),
                        "--system", str(ROOT / "system/sys_ring.json"), "--compute-unit", "us", "--json"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["finish_ns"] == pytest.approx(1_082_479_776, rel=TOLERANCE)
    assert out["exposed_comm_ns"] == pytest.approx(29_776, rel=TOLERANCE)


def test_bad_inputs(tmp_path):
    sysf = tmp_path / "s.json"
    sysf.write_text(json.dumps({"scheduling-policy": "LIFO", "endpoint-delai": 10}))
    with pytest.raises(ConfigError, match="unknown key"):
        read_system(sysf)
    sysf.write_text(json.dumps({"all-reduce-implementation": ["doubleBinaryTree"]}))
    with pytest.raises(ConfigError, match="not supported yet"):
        read_system(sysf)
    sysf.write_text("{bad json")
    with pytest.raises(ConfigError, match="malformed JSON"):
        read_system(sysf)
    net = tmp_path / "n.yml"
    net.write_text("topology: [ Torus ]\nnpus_count: [ 8 ]\nbandwidth: [ 50 ]\nlatency: [ 500 ]\n")
    with pytest.raises(ConfigError, match="allowed: Ring, Switch, FullyConnected"):
        read_network(net)
    net.write_text("topology: [ Ring, Ring ]\nnpus_count: [ 8 ]\nbandwidth: [ 50 ]\nlatency: [ 500 ]\n")
    with pytest.raises(ConfigError, match="one value per dimension"):
        read_network(net)
    wl = tmp_path / "w.txt"
    wl.write_text("MODEL\n1\nl1 -1 1 NONE 0 1 NONE 0 1 ALLREDUCE 4 1\n")
    with pytest.raises(ConfigError, match="not supported yet"):
        read_text_workload(wl)
    wl.write_text("DATA\n2\nl1 -1 1 NONE 0 1 NONE 0 1 ALLREDUCE 4 1\n")
    with pytest.raises(ConfigError, match="header says 2 layers"):
        read_text_workload(wl)
    wl.write_text("DATA\n1\nl1 -1 1 NONE 0 1 NONE 0 1 BROADCAST 4 1\n")
    with pytest.raises(ConfigError, match="unknown comm type"):
        read_text_workload(wl)
