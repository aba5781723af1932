"""Data-parallel step: overlap, symmetry, buckets, and the CLI/API contract."""

import json
import subprocess
import sys

import pytest

import perfforge
from perfforge.core.errors import ConfigError
from perfforge.distributed.data_parallel import BUCKET_BYTES, FIRST_BUCKET_BYTES, gradient_producers
from perfforge.workload.zoo import get_model


def test_every_parameter_gradient_is_produced_once():
    w = get_model("resnet50", batch=2)
    assert sum(gradient_producers(w).values()) == w.params == 25_557_032


def test_one_gpu_has_no_communication_and_matches_predict():
    one = perfforge.train("resnet50", "a100-sxm4-80gb", gpus=1, batch=64, optimizer="sgd_momentum")
    single = perfforge.predict("resnet50", "a100-sxm4-80gb", mode="train", batch=64, optimizer="sgd_momentum")
    assert one.extra["comm_s"] == 0 and one.step_time_s == pytest.approx(single.step_time_s)
    # and lists no collective: a lone device has nothing to reduce
    assert one.extra["gradient_buckets"] == 0 and not any(r.kind == "all_reduce" for r in one.breakdown)


def test_scaling_is_symmetric_and_communication_grows():
    r8 = perfforge.train("resnet50", "h100-sxm5-80gb", gpus=8, batch=128)
    r64 = perfforge.train("resnet50", "h100-sxm5-80gb", gpus=64, batch=128)
    assert r8.extra["compute_s"] == pytest.approx(r64.extra["compute_s"])  # the per-device work is the same
    assert r64.extra["comm_s"] > r8.extra["comm_s"]  # a second (network) dimension
    assert r64.throughput_samples_per_s > 7 * r8.throughput_samples_per_s
    assert r64.flops_per_step == pytest.approx(8 * r8.flops_per_step)
    # buckets: 1 MiB first, then 25 MiB, of fp32 gradients
    expected = 1 + -(-(25_557_032 * 4 - FIRST_BUCKET_BYTES) // BUCKET_BYTES)
    assert abs(r8.extra["gradient_buckets"] - expected) <= 1


def test_overlap_hides_communication():
    kw = dict(gpus=16, batch=32, dtype="fp16")
    with_overlap = perfforge.train("bert-large", "a100-sxm4-80gb", seq=128, **kw)
    without = perfforge.train("bert-large", "a100-sxm4-80gb", seq=128, overlap=False, **kw)
    assert without.extra["exposed_comm_s"] == pytest.approx(without.extra["comm_s"], rel=1e-6)
    assert with_overlap.extra["exposed_comm_s"] < without.extra["exposed_comm_s"]
    assert with_overlap.step_time_s < without.step_time_s
    # exposed communication never exceeds total communication
    assert with_overlap.extra["exposed_comm_s"] <= with_overlap.extra["comm_s"] + 1e-12


def test_trace_has_both_streams(tmp_path):
    out = tmp_path / "t.json"
    p = subprocess.run([sys.executable, "-m", "perfforge.cli.main", "train", "--model", "resnet50", "--hardware",
                        "a100-sxm4-80gb", "--gpus", "8", "--batch", "64", "--json", "--trace", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    for key in ("step_time_s", "throughput_samples_per_s", "compute_s", "exposed_comm_s", "memory_bytes_per_device",
                "fits"):
        assert key in d
    streams = {e.get("tid") for e in json.loads(out.read_text())["traceEvents"]}
    assert {"compute", "comm"} <= streams


def test_bad_inputs():
    with pytest.raises(ConfigError, match="whole"):
        perfforge.train("resnet50", "a100-sxm4-80gb", gpus=12)
    with pytest.raises(ConfigError, match="gpus"):
        perfforge.train("resnet50", "a100-sxm4-80gb", gpus=0)
    with pytest.raises(ConfigError, match="no default node"):
        perfforge.train("resnet50", "t4", gpus=2)
    p = subprocess.run([sys.executable, "-m", "perfforge.cli.main", "train", "--model", "resnet50", "--hardware",
                        "a100-sxm4-80gb", "--gpus", "8", "--pp", "4"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "need a decoder transformer" in p.stderr and "Traceback" not in p.stderr


def test_concurrent_collectives_share_links():
    from perfforge.distributed.data_parallel import schedule_collectives

    # two 1 s collectives ready together: one stream serialises them; two streams on shared links finish both
    # at 2 s (each at half speed); on independent links both finish at 1 s
    assert schedule_collectives([(0, 1), (0, 1)], streams=1) == [(0, 1), (1, 2)]
    assert schedule_collectives([(0, 1), (0, 1)], streams=2, shared_links=True) == [(0, 2), (0, 2)]
    assert schedule_collectives([(0, 1), (0, 1)], streams=2, shared_links=False) == [(0, 1), (0, 1)]
    # a later arrival slows the running one only while both run: 0..0.5 alone, then shared
    (s0, e0), (s1, e1) = schedule_collectives([(0, 1), (0.5, 1)], streams=2)
    assert (s0, s1) == (0, 0.5) and e0 == pytest.approx(1.5) and e1 == pytest.approx(2.0)
    kw = dict(gpus=64, batch=32)
    shared = perfforge.train("bert-large", "h100-sxm5-80gb", seq=128, comm_streams=4, **kw)
    free = perfforge.train("bert-large", "h100-sxm5-80gb", seq=128, comm_streams=4, shared_links=False, **kw)
    assert free.step_time_s <= shared.step_time_s


def _records(r, kind):
    return [x for x in r.breakdown if x.kind == kind]


@pytest.mark.parametrize("model,kw", [("resnet50", dict(batch=64, dtype="fp16")),
                                      ("gpt2", dict(batch=8, seq=1024, dtype="bf16"))])
def test_zero_1_and_2_on_the_data_parallel_timeline(model, kw):
    """Any model: buckets reduce-scattered instead of all-reduced, the optimizer on this rank's shard, the
    parameters all-gathered after it; stage 1 shards optimizer state, stage 2 gradients too."""
    base = perfforge.train(model, "a100-sxm4-80gb", gpus=16, **kw)
    z1 = perfforge.train(model, "a100-sxm4-80gb", gpus=16, zero=1, **kw)
    z2 = perfforge.train(model, "a100-sxm4-80gb", gpus=16, zero=2, **kw)
    assert _records(base, "all_reduce") and not _records(z1, "all_reduce")
    assert len(_records(z1, "reduce_scatter")) == len(_records(base, "all_reduce"))
    (gather,) = _records(z1, "all_gather")
    assert gather.bytes == z1.params * 2 and gather.start_s >= max(r.start_s + r.time_s for r in z1.breakdown
                                                                    if r.phase == "optimizer") - 1e-12
    # the same forward and backward: only the optimizer (a 1/16 shard) and the collectives differ
    body = lambda r: sum(x.time_s for x in r.breakdown if x.stream == "compute" and x.phase != "optimizer")  # noqa: E731
    assert body(z1) == pytest.approx(body(base))
    opt = lambda r: sum(x.time_s for x in r.breakdown if x.phase == "optimizer")  # noqa: E731
    assert opt(z1) < opt(base) / 4
    assert z1.memory.optimizer_states == pytest.approx(base.memory.optimizer_states / 16)
    assert z2.memory.gradients < z1.memory.gradients / 8
    assert z1.flops_per_step == pytest.approx(base.flops_per_step, rel=0.01)


def test_zero_3_gathers_each_layer_before_it_runs():
    r = perfforge.train("gpt2", "h100-sxm5-80gb", gpus=16, batch=8, seq=1024, dtype="bf16", zero=3)
    gathers = {x.name: x for x in _records(r, "all_gather")}
    first = {}
    for x in r.breakdown:
        if x.stream == "compute":
            key = ("forward" if x.phase == "forward" else "backward", x.layer)
            first.setdefault(key, x)
    checked = 0
    for (phase, layer), op in first.items():
        g = gathers.get(f"allgather.{phase}.{layer}")
        if g is not None:
            assert op.start_s >= g.start_s + g.time_s - 1e-12
            checked += 1
    assert checked >= 2 * 12                          # every transformer layer, forward and backward
    base = perfforge.train("gpt2", "h100-sxm5-80gb", gpus=16, batch=8, seq=1024, dtype="bf16")
    # 1/16 of the weights plus the two layers gathered at a time (GPT-2's largest is its tied embedding)
    layers: dict[str, int] = {}
    for op in get_model("gpt2", batch=8, seq=1024, dtype="bf16").ops:
        layers[op.layer] = layers.get(op.layer, 0) + op.params
    assert r.memory.weights == pytest.approx(base.memory.weights / 16 + 2 * max(layers.values()) * 2)
    # a slower network never makes ZeRO-3 faster
    slow = perfforge.train("gpt2", "h100-sxm5-80gb", gpus=16, batch=8, seq=1024, dtype="bf16", zero=3,
                           node="pcie-h100-8x")
    assert slow.step_time_s >= r.step_time_s


def test_zero3_without_overlap_reduce_scatters_after_backward():
    kw = dict(gpus=16, batch=32, dtype="fp16", optimizer="sgd_momentum", zero=3)
    on = perfforge.train("resnet50", "a100-sxm4-80gb", **kw)
    off = perfforge.train("resnet50", "a100-sxm4-80gb", overlap=False, **kw)
    backward_end = max(r.start_s + r.time_s for r in off.breakdown if r.stream == "compute" and r.phase != "optimizer")
    scatters = [r for r in off.breakdown if r.kind == "reduce_scatter"]
    assert scatters and min(r.start_s for r in scatters) >= backward_end - 1e-12
    assert off.step_time_s > on.step_time_s
    # the layers' parameter gathers are still prefetched during the passes
    assert min(r.start_s for r in off.breakdown if r.kind == "all_gather") < backward_end
