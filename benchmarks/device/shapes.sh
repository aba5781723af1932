#!/bin/bash
# The `shapes` group on a lent GPU machine, in one call: seeded random bmm, linear, layer-norm, softmax and
# pointwise shapes in fp16 and fp32 (800 cases in the standard suite), timed with CUDA events and an L2 flush.
# They are what `perfforge learn train --measured RUN` adapts the learned kernel model with, and, on a GPU the
# shipped model was not trained on, a test of it. 800 cases: 8 s on an H100 (data/ground_truth/measured/
# h100-shapes-20261127, from launch_guard.sh); the timeout keeps what finished.
# SUITE=tiny runs 9 small cases on a CPU (a dry run).
# Results land in $OUT/run/ as they are measured (a timeout keeps the finished cases).
set -u
. "$(dirname "$0")/_setup.sh"   # $OUT/run, PYTHONPATH, nvidia-smi.csv, lscpu.txt
timeout "${PROFILE_TIMEOUT:-420}" python3 -m perfforge.profiling --suite "${SUITE:-standard}" --only shapes \
    --out "$OUT/run" 2>&1 | grep -v "^USDT" | tee "$OUT/run/profile-log.txt"
gzip -f "$OUT/run/measurements.jsonl"
