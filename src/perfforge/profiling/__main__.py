"""CLI: ``python -m perfforge.profiling --suite standard --out DIR [--max-seconds N]``."""

from __future__ import annotations

import argparse
import sys

from perfforge.profiling.kernels import SUITES
from perfforge.profiling.runner import GROUPS, run_profile


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m perfforge.profiling",
                                 description="Measure kernels, ceilings and models (ground truth).")
    ap.add_argument("--suite", choices=SUITES, default="standard")
    ap.add_argument("--out", required=True, help="output folder (measurements.jsonl, device.json)")
    ap.add_argument("--device", choices=("cuda", "cpu"), default=None,
                    help="default: cuda when available, else cpu")
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="global budget; no new case starts after it")
    ap.add_argument("--only", default=None, help=f"comma list of groups: {','.join(GROUPS)}")
    ap.add_argument("--repeats", type=int, default=None, help="override timed repeats per case")
    ap.add_argument("--op-breakdown", action="store_true",
                    help="whole-model cases also record the time of every ATen op of one profiled call")
    ap.add_argument("--no-launch-guard", action="store_true",
                    help="time GPU kernel cases without the spin kernel that fills the launch queue first "
                         "(the behaviour of runs before 2026-11-27; a kernel shorter than its host launch then "
                         "reads as the launch gap)")
    args = ap.parse_args(argv)
    only = [g.strip() for g in args.only.split(",") if g.strip()] if args.only else None
    try:
        summary = run_profile(args.suite, args.out, device=args.device,
                              max_seconds=args.max_seconds, only=only, repeats=args.repeats,
                              op_breakdown=args.op_breakdown, launch_guard=not args.no_launch_guard)
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 130 if summary.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
