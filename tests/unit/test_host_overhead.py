"""The host (CPU issue) overhead: zoo graphs and traced graphs each pay their own per-op constant, and the
shipped constants are what ``perfforge calibrate`` fits on the committed host-bound runs."""

from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="tracing needs the optional torch extra")

import perfforge  # noqa: E402
from perfforge.api import resolve_workload  # noqa: E402
from perfforge.engines.analytical.calibration import load_calibration  # noqa: E402
from perfforge.evaluation.calibrate import fit_host_overhead, is_host_calibration_record, traced_op_count  # noqa: E402
from perfforge.evaluation.measured import read_measurements  # noqa: E402

RUN = Path(__file__).resolve().parents[2] / "data/ground_truth/measured/h100-sxm-20261126-run1/measurements.jsonl.gz"


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln, self.fc = torch.nn.LayerNorm(16), torch.nn.Linear(16, 16)

    def forward(self, x):
        return torch.relu(self.fc(self.ln(x)))


def test_traced_graphs_pay_the_traced_host_overhead_per_op():
    """A tiny traced model is host-bound: its step is its forward op count times the traced-op constant
    (by hand), not the zoo-op constant."""
    from perfforge.engines.analytical.calibration import load_calibration

    w = perfforge.from_torch(Tiny(), torch.randn(2, 16), dtype="fp16")
    cal = load_calibration("hopper")
    assert cal.host_overhead_traced_op_s != cal.host_overhead_s
    res = perfforge.predict(w, hardware="h100-sxm5-80gb")
    assert res.host_time_s == pytest.approx(len(w.ops) * cal.host_overhead_traced_op_s)
    assert res.step_time_s == pytest.approx(res.host_time_s)


def test_shipped_host_constants_refit_from_the_committed_run():
    pytest.importorskip("transformers", reason="the traced constant is fitted on HF modules")
    records = [r for r in read_measurements(RUN) if r.get("kind") == "model" and is_host_calibration_record(r)]
    assert len(records) == 3  # resnet50, gpt2, bert-base at batch 1
    zoo = [(r["latency_s"], len(resolve_workload(r["params"]["model"], batch=r["params"]["batch"],
                                                 seq=r["params"].get("seq"), dtype=r["dtype"]).ops)) for r in records]
    traced = [(r["latency_s"], n) for r in records if (n := traced_op_count(r))]
    assert len(traced) == 2  # resnet50 is not traced from an HF module
    cal = load_calibration("hopper")
    assert fit_host_overhead(zoo) == pytest.approx(cal.host_overhead_s, rel=1e-3)
    assert fit_host_overhead(traced) == pytest.approx(cal.host_overhead_traced_op_s, rel=1e-3)


@pytest.mark.parametrize("impl", ["fused", "unfused", "sdpa"])
def test_eager_zoo_graphs_pay_the_per_kernel_host_overhead(impl):
    """The zoo's eager graphs list one op per launched kernel, like a traced module, and pay that constant; the
    fused graph keeps its own (fitted per fused op)."""
    cal = load_calibration("hopper")
    w = resolve_workload("gpt2", batch=1, seq=128, dtype="fp16", attention_impl=impl)
    res = perfforge.predict(w, hardware="h100-sxm5-80gb")
    per_op = cal.host_overhead_s if impl == "fused" else cal.host_overhead_traced_op_s
    assert res.host_time_s == pytest.approx(len(w.ops) * per_op)
