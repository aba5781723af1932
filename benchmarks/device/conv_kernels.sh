#!/bin/bash
# ResNet-50's backward convolutions on a lent GPU machine, in one call: the profiler's conv2d_dgrad and
# conv2d_wgrad kernel cases (fp16 channels-last and strict fp32 NCHW; batch 32-256), timed with CUDA events and
# an L2 flush. They are the ground truth the learned model lacks for backward convolutions (NeuSight's data has
# forward 3x3 convs only; the forward conv2d cases are in the standard runs of data/ground_truth/measured).
# CONV_OPS=conv2d,conv2d_dgrad,conv2d_wgrad adds the forward ones. About 2-4 minutes on an H100.
# SUITE=tiny runs one small case of each on a CPU (a dry run).
# Results land in $OUT/run/ as they are measured (a timeout keeps the finished cases).
set -u
. "$(dirname "$0")/_setup.sh"   # $OUT/run, PYTHONPATH, nvidia-smi.csv, lscpu.txt
timeout "${PROFILE_TIMEOUT:-420}" python3 -c "
import sys
from perfforge.profiling.kernels import kernel_cases
from perfforge.profiling.runner import run_profile
suite, out, ops = sys.argv[1:4]
cases = [c for c in kernel_cases(suite) if c.op in ops.split(',')]
print(len(cases), 'conv cases', flush=True)
run_profile(suite, out, cases=cases)
" "${SUITE:-standard}" "$OUT/run" "${CONV_OPS:-conv2d_dgrad,conv2d_wgrad}" 2>&1 | grep -v "^USDT" | tee "$OUT/run/profile-log.txt"
gzip -f "$OUT/run/measurements.jsonl"
