"""Speed of the serving simulator: CPU per simulated request, the fast-forward's gain, and a big run.

    python benchmarks/bench_serving.py [--million]

Prints, for Llama-2-7B on A100 under vLLM and Sarathi at three loads, the median CPU microseconds per
simulated request (3 runs; ``time.process_time``; the whole ``simulate`` call: set-up, simulation, metrics)
of the compiled core and, as same-process baselines, of the Python reference simulator with the decode
fast-forward and stepping every iteration (``exact=True``), with the ratios. The compiled core is compiled
(or loaded from numba's cache) before timing. ``--million`` also simulates 1,000,000
requests on a 16-replica cluster (round robin, 512/128-token requests, 60% of its SLO capacity) and prints
the wall time; ``--replica-jobs N`` simulates its replicas in N processes (same results), and
``--baseline-requests M`` first runs M requests of the same scenario in one process, as the same-machine
baseline; ``--core python`` runs it on the reference simulator. ``--skip-loads`` skips the per-load table. The comparison with Vidur itself is benchmarks/compare_vidur.py. Targets (issue 5): >= 100x
less CPU per request than Vidur 0.0.26; 1,000,000 requests in < 60 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from perfforge.serving.requests import RequestSet
from perfforge.serving.run import operator_table, request_set, simulate
from perfforge.serving.spec import make_spec

LOADS = {"low": 2.0, "near": 9.0, "over": 16.0}


def cpu_per_request(spec, reqs, table, exact: bool, repeats: int = 3) -> float:  # noqa: ANN001
    samples = []
    for _ in range(repeats):
        t0 = time.process_time()
        simulate(spec, reqs, table, exact=exact)
        samples.append(time.process_time() - t0)
    return statistics.median(samples) / len(reqs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--million", action="store_true")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--replica-jobs", type=int, default=1)
    ap.add_argument("--baseline-requests", type=int, default=0)
    ap.add_argument("--skip-loads", action="store_true")
    ap.add_argument("--core", default="auto", help="simulation core of the million-request run")
    args = ap.parse_args()
    print(f"host: {os.cpu_count()} CPUs", flush=True)
    if not args.skip_loads:
        print(f"{'scheduler':9s} {'load':5s} {'compiled':>9s} {'python':>9s} {'py stepping':>12s} "
              f"{'python/compiled':>16s} {'stepping/compiled':>18s}   (CPU us per request)")
    for scheduler in () if args.skip_loads else ("vllm", "sarathi"):
        for load, qps in LOADS.items():
            spec = make_spec(model="llama-2-7b", hardware="a100-sxm4-80gb", scheduler=scheduler, qps=qps,
                             requests=args.requests, core="compiled")
            table, reqs = operator_table(spec), request_set(spec)
            simulate(spec, RequestSet(reqs.arrival_s[:10], reqs.prefill[:10], reqs.decode[:10]), table)  # compile
            comp = cpu_per_request(spec, reqs, table, exact=False)
            py_spec = spec.model_copy(update={"core": "python"})
            fast = cpu_per_request(py_spec, reqs, table, exact=False)
            step = cpu_per_request(py_spec, reqs, table, exact=True, repeats=1)
            print(f"{scheduler:9s} {load:5s} {comp * 1e6:9.1f} {fast * 1e6:9.1f} {step * 1e6:12.1f} "
                  f"{fast / comp:15.1f}x {step / comp:17.1f}x", flush=True)
    if args.million:
        big = make_spec(model="llama-2-7b", hardware="a100-sxm4-80gb", scheduler="vllm", replicas=16,
                        qps=16 * 6.0, requests=1_000_000, core=args.core)
        table = operator_table(big)
        runs = [(args.baseline_requests, 1)] if args.baseline_requests else []
        for n, jobs in [*runs, (1_000_000, args.replica_jobs)]:
            spec = big.model_copy(update={"requests": n, "replica_jobs": jobs})
            t0 = time.perf_counter()
            reqs = request_set(spec)
            report = simulate(spec, reqs, table)
            wall = time.perf_counter() - t0
            s = report.summary
            print(f"{n:,} requests, 16 replicas at {spec.qps:g} QPS, {jobs} process(es), "
                  f"{s['simulation_core']} core: {wall:.1f} s wall "
                  f"({wall / n * 1e6:.1f} us per request); {s['events']} events, {s['iterations']} iterations; "
                  f"TTFT p99 {s['ttft_p99_s']:.3f} s, TPOT p50 {s['tpot_p50_s'] * 1e3:.2f} ms", flush=True)

if __name__ == "__main__":
    main()
