#!/bin/bash
# The launch guard checked on a lent GPU machine, in one call (about 2.5 minutes on an H100 or H200):
# 1. benchmarks/device/launch_guard.py: every kernel case timed unguarded, guarded, and (under 100 us) by CUPTI,
#    into $OUT/guard/;
# 2. the profiler's `kernels` group, guarded (the default now), into $OUT/run/: a new ground-truth run;
# 3. the profiler's `shapes` group (random shapes for `perfforge learn train --measured`), into $OUT/shapes/.
# SUITE=tiny makes it a dry run on a CPU. Each step has its own timeout and keeps what finished.
set -u
. "$(dirname "$0")/_setup.sh"   # $OUT/run, PYTHONPATH, nvidia-smi.csv, lscpu.txt
mkdir -p "$OUT/guard" "$OUT/shapes"
cp "$OUT/run/nvidia-smi.csv" "$OUT/run/lscpu.txt" "$OUT/guard/"
cp "$OUT/run/nvidia-smi.csv" "$OUT/run/lscpu.txt" "$OUT/shapes/"
timeout "${GUARD_TIMEOUT:-200}" python3 "$(dirname "$0")/launch_guard.py" --suite "${SUITE:-standard}" \
    --out "$OUT/guard" --max-seconds "${GUARD_SECONDS:-170}" 2>&1 | grep -v "^USDT" | tee "$OUT/guard/log.txt"
timeout "${KERNELS_TIMEOUT:-120}" python3 -m perfforge.profiling --suite "${SUITE:-standard}" --only kernels \
    --out "$OUT/run" 2>&1 | grep -v "^USDT" | tee "$OUT/run/profile-log.txt"
gzip -f "$OUT/run/measurements.jsonl"
timeout "${SHAPES_TIMEOUT:-150}" python3 -m perfforge.profiling --suite "${SUITE:-standard}" --only shapes \
    --out "$OUT/shapes" 2>&1 | grep -v "^USDT" | tee "$OUT/shapes/profile-log.txt"
gzip -f "$OUT/shapes/measurements.jsonl"
