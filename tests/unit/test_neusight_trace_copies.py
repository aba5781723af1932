"""NeuSight's per-node traces on its OOD GPUs (H100, L4, A100 80GB PCIe) were copied through a text-reading tool,
16,000 characters at a time. Two redundancies in the traces check every copy: one fx graph per label, so every
field but the latencies must equal the same label's trace on another GPU (NeuSight's own files for its training
GPUs where it ran the label there, else the other copied GPU's, copied separately); and each node's latency is
forward + backward + accumulation, so a mistyped latency breaks its row's sum."""

from __future__ import annotations

import csv
import gzip
import re
from pathlib import Path

import pytest

LABELS = Path(__file__).resolve().parents[2] / "data/ground_truth/neusight/labels"
COPIED = ("NVIDIA_H100_80GB_HBM3", "NVIDIA_L4", "NVIDIA_A100_80GB_PCIe")
TRAINING_GPUS = ("Tesla_V100-PCIE-32GB", "NVIDIA_A100-PCIE-40GB", "Tesla_T4", "Tesla_P100-PCIE-16GB", "Tesla_P4")
LATENCIES = ("latency", "fw_latency", "bw_latency", "acc_latency")


def _rows(path: Path) -> list[dict[str, str]]:
    with gzip.open(path, "rt", newline="") as fh:
        return list(csv.DictReader(fh))


def _graph(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Every field but the latencies; function addresses (``<function softmax at 0x...>``) differ per run."""
    return [{k: re.sub(r" at 0x[0-9a-f]+", "", v) for k, v in r.items() if k not in LATENCIES} for r in rows]


def _copies() -> list[Path]:
    return sorted(p for gpu in COPIED for p in (LABELS / gpu).glob("*.csv.gz"))


def test_every_ood_gpu_has_its_traces():
    counts = {gpu: len(list((LABELS / gpu).glob("*.csv.gz"))) for gpu in COPIED}
    assert counts == {"NVIDIA_H100_80GB_HBM3": 18, "NVIDIA_L4": 10, "NVIDIA_A100_80GB_PCIe": 8}


@pytest.mark.parametrize("path", _copies(), ids=lambda p: f"{p.parent.name}-{p.name[:-7]}")
def test_copy_matches_the_same_graph_elsewhere_and_its_latencies_add_up(path):
    rows = _rows(path)
    for r in rows:
        parts = [float(r[k]) for k in LATENCIES]
        assert parts[0] == pytest.approx(sum(parts[1:]), rel=1e-6, abs=1e-9), r["Name"]
    others = [LABELS / g / path.name for g in (*TRAINING_GPUS, *COPIED)
              if g != path.parent.name and (LABELS / g / path.name).is_file()]
    assert others, f"no other GPU ran {path.name}"
    assert _graph(rows) == _graph(_rows(others[0]))
