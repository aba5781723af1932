"""SCALE-Sim-compatible systolic model vs the real SCALE-Sim 3.0.0 outputs (data/accelerators/scalesim)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perfforge.accelerators.systolic import SystolicArraySpec, check_dataflow, parse_array, simulate
from perfforge.accelerators.topology import ConvLayer, from_workload, read_csv
from perfforge.core.errors import ConfigError
from perfforge.workload.zoo import get_model

DATA = Path(__file__).resolve().parents[2] / "data" / "accelerators" / "scalesim"
REFS = [json.loads(line) for line in (DATA / "reference_outputs.jsonl").read_text().splitlines() if line.strip()]


def _id(r: dict) -> str:
    return f"{r['array']}-{r['dataflow']}-{'x'.join(map(str, r['shape']))}"


@pytest.mark.parametrize("ref", REFS, ids=[_id(r) for r in REFS])
def test_compute_cycles_match_real_scalesim(ref: dict) -> None:
    layer = ConvLayer("x", *ref["shape"])
    res = simulate([layer], SystolicArraySpec(rows=ref["array"], cols=ref["array"], dataflow=ref["dataflow"]))
    d = res.layer_dicts()[0]
    assert d["compute_cycles"] == int(ref["printed"]["Compute cycles"])
    assert f"{d['utilization'] * 100:.2f}%" == ref["printed"]["Overall utilization"]
    assert f"{d['mapping_efficiency'] * 100:.2f}%" == ref["printed"]["Mapping efficiency"]
    bw = ref["reports"]["BANDWIDTH_REPORT.csv"]
    cyc = d["compute_cycles"]
    # SCALE-Sim reports SRAM bandwidth as words/cycle; multiply back to words (float rounding only)
    assert d["sram_reads"]["ifmap"] == pytest.approx(float(bw["Avg IFMAP SRAM BW"]) * cyc, rel=1e-9)
    assert d["sram_reads"]["filter"] == pytest.approx(float(bw["Avg FILTER SRAM BW"]) * cyc, rel=1e-9)
    assert d["sram_writes"]["ofmap"] == pytest.approx(float(bw["Avg OFMAP SRAM BW"]) * cyc, rel=1e-9)


def test_reference_covers_both_resnet50_topologies_at_128() -> None:
    shapes = {(tuple(r["shape"]), r["array"], r["dataflow"]) for r in REFS}
    for csv_name in ("perfforge_resnet50.csv", "Resnet50.csv"):
        for lay in read_csv(DATA / csv_name):
            key = (lay.ifmap_h, lay.ifmap_w, lay.filter_h, lay.filter_w, lay.channels, lay.filters, lay.stride)
            assert (key, 128, "os") in shapes


def test_ofmap_rounds_up_like_scalesim() -> None:
    # ceil((230 - 7 + 2) / 2) = 113, where PyTorch's floor((230 - 7) / 2) + 1 = 112
    assert ConvLayer("c", 230, 230, 7, 7, 3, 64, 2).ofmap_h == 113


def test_resnet50_graph_topology_keeps_macs() -> None:
    layers = from_workload(get_model("resnet50", batch=1))
    assert len(layers) == 54  # 53 convolutions + the FC layer
    # torchvision's ResNet-50 model card: 4.09 GFLOPS counted as multiply-accumulates
    assert sum(lay.macs for lay in layers) == 4_089_184_256


def test_whole_resnet50_under_a_second() -> None:
    layers = from_workload(get_model("resnet50", batch=1))
    t0 = time.perf_counter()
    for df in ("ws", "os", "is"):
        res = simulate(layers, SystolicArraySpec(rows=128, cols=128, dataflow=df))
        assert res.total_compute_cycles > sum(lay.macs for lay in layers) // (128 * 128)
    assert time.perf_counter() - t0 < 1.0


def test_hand_computed_os_cycles() -> None:
    # 56x56 1x1 conv, 64->64, 128x128 OS: folds = ceil(3136/128) * ceil(64/128) = 25,
    # lines per fold = T + R + C - 2 = 64 + 128 + 128 - 2 = 318 -> 25 * 318 - 1 = 7949
    res = simulate([ConvLayer("c", 56, 56, 1, 1, 64, 64, 1)], SystolicArraySpec(rows=128, cols=128, dataflow="os"))
    assert res.total_compute_cycles == 7949


@pytest.mark.parametrize("bad", ["12x", "0x4", "axb", "5000x2"])
def test_bad_array(bad: str) -> None:
    with pytest.raises(ConfigError, match="ROWSxCOLS"):
        parse_array(bad)


def test_unknown_dataflow_lists_allowed() -> None:
    with pytest.raises(ConfigError, match="ws, os, is"):
        check_dataflow("rs")


def test_bad_topology_row(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("hdr\nL1,56,56,3,3,64,\n")
    with pytest.raises(ConfigError, match="expected 8 fields"):
        read_csv(p)


@pytest.mark.parametrize("args", [["--array", "12x"], ["--dataflow", "xs"], []])
def test_cli_bad_input_exits_2_with_one_line(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "perfforge", "accel", "systolic", *(args if not args else ["--model", "resnet50", *args])]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("error:")


def test_cli_json_resnet50() -> None:
    p = subprocess.run([sys.executable, "-m", "perfforge", "accel", "systolic", "--model", "resnet50", "--array",
                        "128x128", "--dataflow", "os", "--json"], capture_output=True, text=True, check=True)
    out = json.loads(p.stdout)
    assert {"compute_cycles", "utilization", "per_layer"} <= set(out)
    assert len(out["per_layer"]) == 54 and out["compute_cycles"] == sum(x["compute_cycles"] for x in out["per_layer"])
