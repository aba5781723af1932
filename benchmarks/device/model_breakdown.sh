#!/bin/bash
# Whole-model profile cases with a per-ATen-op breakdown, on a lent GPU machine, in one call: the profiler's
# model cases whose name contains $FILTER (default "gpt2": HF GPT-2 training and inference; its bf16 autocast
# training steps are predicted 48-59% too fast by the zoo graph and -13% to +12% by the module traced under
# autocast, so the per-op split is what is left to check), each timed whole and once under the PyTorch profiler
# (perfforge profile --only models --op-breakdown, restricted to those cases). About 2-4 minutes on an H100
# for the standard suite's GPT-2 cases. SUITE=tiny FILTER=gpt2 runs one small case on a CPU (a dry run).
# Results land in $OUT/run/ as they are measured (a timeout keeps the finished cases): measurements.jsonl,
# device.json, nvidia-smi.csv, lscpu.txt, the log.
set -u
. "$(dirname "$0")/_setup.sh"   # $OUT/run, PYTHONPATH, nvidia-smi.csv, lscpu.txt
timeout "${PROFILE_TIMEOUT:-420}" python3 -c "
import sys
from perfforge.profiling.models import model_cases
from perfforge.profiling.runner import run_profile
suite, out, pattern = sys.argv[1:4]
cases = [c for c in model_cases(suite) if pattern in c.op]
if not cases:
    sys.exit(f'no {suite} model case matches {pattern!r}')
print('cases:', ', '.join(f'{c.op} {c.dtype} b{c.params[\"batch\"]}' for c in cases), flush=True)
run_profile(suite, out, cases=cases, op_breakdown=True)
" "${SUITE:-standard}" "$OUT/run" "${FILTER:-gpt2}" 2>&1 | grep -v "^USDT" | tee "$OUT/run/profile-log.txt"
gzip -f "$OUT/run/measurements.jsonl"
