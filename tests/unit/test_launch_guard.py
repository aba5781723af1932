"""The CUDA timer's launch guard, checked against a simulated GPU stream (no GPU needed).

The fake stream keeps two clocks: the host's (advanced by each call's host cost) and the GPU's (a command starts
when it is enqueued and the previous one is done). An event's timestamp is when the GPU reaches it. With a host
slower than the kernel, unguarded event pairs measure the host's launch gap; guarded ones measure the kernel.
"""

from __future__ import annotations

import sys
import types

import pytest

from perfforge.profiling import timing


class FakeGPU:
    def __init__(self, kernel_s: float, host_s: float, spin_hz: float = 1.5e9, fill_s: float = 4e-6) -> None:
        self.kernel_s, self.host_s, self.spin_hz, self.fill_s = kernel_s, host_s, spin_hz, fill_s
        self.host = 0.0  # host clock, seconds
        self.gpu = 0.0  # when the GPU finishes what is queued
        self.spins: list[float] = []

    def run(self, duration_s: float, host_cost_s: float) -> None:
        self.host += host_cost_s
        self.gpu = max(self.host, self.gpu) + duration_s

    def kernel(self) -> None:
        self.run(self.kernel_s, self.host_s)

    def module(self) -> types.ModuleType:
        gpu = self

        class Event:
            def __init__(self, enable_timing: bool = False) -> None:
                self.ts: float | None = None

            def record(self) -> None:
                gpu.host += 1e-6
                self.ts = max(gpu.host, gpu.gpu)
                gpu.gpu = self.ts

            def query(self) -> bool:
                assert self.ts is not None
                return gpu.host >= self.ts

            def elapsed_time(self, end: Event) -> float:
                assert self.ts is not None and end.ts is not None
                return (end.ts - self.ts) * 1e3

        class Buffer:
            def fill_(self, value: int) -> None:
                gpu.run(gpu.fill_s, 3e-6)

        def sleep(cycles: int) -> None:
            gpu.spins.append(cycles / gpu.spin_hz)
            gpu.run(cycles / gpu.spin_hz, 3e-6)

        def synchronize(device: object = None) -> None:
            gpu.host = max(gpu.host, gpu.gpu)

        cuda = types.SimpleNamespace(Event=Event, synchronize=synchronize, _sleep=sleep)
        return types.SimpleNamespace(cuda=cuda, int32="int32", empty=lambda *a, **k: Buffer())

    def perf_counter(self) -> float:
        return self.host


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    def make(kernel_s: float, host_s: float) -> FakeGPU:
        gpu = FakeGPU(kernel_s, host_s)
        monkeypatch.setitem(sys.modules, "torch", gpu.module())
        monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=gpu.perf_counter))
        monkeypatch.setattr(timing, "_SLEEP_CYCLES_PER_S", {})
        return gpu

    return make


def _time(gpu_dev: str = "cuda:0", **kw: object) -> timing.TimingResult:
    return timing.time_callable(kw.pop("fn"), device=gpu_dev, warmup=3, repeats=20, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("flush", [False, True])
def test_guard_times_the_kernel_not_the_host_launch_gap(fake_gpu, flush: bool) -> None:  # noqa: ANN001
    gpu = fake_gpu(kernel_s=5e-6, host_s=25e-6)  # a 5 us kernel behind a 25 us host launch
    plain = _time(fn=gpu.kernel, l2_flush=flush)
    assert plain.guard == "off"
    assert plain.median_s > 20e-6  # the gap: the start event fired long before the kernel was enqueued
    guarded = _time(fn=gpu.kernel, l2_flush=flush, launch_guard=True)
    assert guarded.guard == "held"
    assert guarded.median_s == pytest.approx(5e-6, rel=0.05)
    # the spin was sized from the host's enqueue time, not the GPU time
    assert gpu.spins[-1] >= guarded.repeats * 25e-6


def test_guard_changes_nothing_for_a_gpu_bound_kernel(fake_gpu) -> None:  # noqa: ANN001
    gpu = fake_gpu(kernel_s=200e-6, host_s=25e-6)
    plain = _time(fn=gpu.kernel)
    guarded = _time(fn=gpu.kernel, launch_guard=True)
    assert plain.median_s == pytest.approx(200e-6, rel=0.02)
    assert guarded.median_s == pytest.approx(plain.median_s, rel=0.02)


def test_guard_retries_longer_when_the_host_outruns_the_spin(fake_gpu) -> None:  # noqa: ANN001
    gpu = fake_gpu(kernel_s=5e-6, host_s=10e-6)
    calls = {"n": 0}

    def slow_after_warmup() -> None:  # the host gets 8x slower once timing starts: the first spin is too short
        calls["n"] += 1
        gpu.host_s = 80e-6 if calls["n"] > 3 else 10e-6
        gpu.kernel()

    res = _time(fn=slow_after_warmup, launch_guard=True)
    assert res.guard == "held"
    assert len(gpu.spins) >= 3  # the rate calibration's two spins, then more than one guard attempt
    assert res.median_s == pytest.approx(5e-6, rel=0.05)


def test_guard_says_when_it_never_held(fake_gpu) -> None:  # noqa: ANN001
    gpu = fake_gpu(kernel_s=5e-6, host_s=10e-6)
    calls = {"n": 0}

    def hopeless() -> None:  # 0.1 s of host per call: no spin under GUARD_MAX_S covers the repeats
        calls["n"] += 1
        gpu.host_s = 0.1 if calls["n"] > 3 else 10e-6
        gpu.kernel()

    res = _time(fn=hopeless, launch_guard=True)
    assert res.guard == "released_early"
    assert max(gpu.spins) <= timing.GUARD_MAX_S + 1e-9


def test_cpu_timing_ignores_the_guard() -> None:
    res = timing.time_callable(lambda: None, device="cpu", warmup=1, repeats=3, launch_guard=True)
    assert res.guard == "off" and res.timer == "wall"


def test_both_command_lines_pass_the_guard_choice(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    import perfforge.profiling.__main__ as module_cli
    import perfforge.profiling.runner as runner

    seen: list[bool] = []

    def fake_run_profile(*args: object, launch_guard: bool = True, **kw: object) -> object:
        seen.append(launch_guard)
        return types.SimpleNamespace(interrupted=False)

    monkeypatch.setattr(module_cli, "run_profile", fake_run_profile)
    assert module_cli.main(["--out", str(tmp_path)]) == 0
    assert module_cli.main(["--out", str(tmp_path), "--no-launch-guard"]) == 0
    pytest.importorskip("torch")
    monkeypatch.setattr(runner, "run_profile", fake_run_profile)
    from perfforge.cli.main import main

    main(["profile", "--out", str(tmp_path), "--suite", "tiny", "--device", "cpu", "--no-launch-guard"])
    assert seen == [True, False, False]


def test_kernel_sum_leaves_out_the_named_kernels() -> None:
    def event(name: str, us: float, device: str = "DeviceType.CUDA") -> types.SimpleNamespace:
        return types.SimpleNamespace(name=name, device_type=device,
                                     time_range=types.SimpleNamespace(elapsed_us=lambda: us))

    prof = types.SimpleNamespace(events=lambda: [event("gemm", 7.0), event("FillFunctor<int> flush", 90.0),
                                                 event("cpu op", 50.0, "DeviceType.CPU")])
    assert timing.cuda_kernel_us(prof) == 97.0
    assert timing.cuda_kernel_us(prof, exclude="FillFunctor<int>") == 7.0
