#!/bin/bash
# Per-operator breakdown of NeuSight's benchmark transformers (FP32, HF transformers, eager attention) on a
# lent GPU machine, in one call (about 3-5 minutes on an H100):
#   perfforge profile --suite standard --only breakdown   (python -m perfforge.profiling: the GPU image has
#   torch and transformers but not pydantic, which the profiler does not need)
# Results land in $OUT/run/ as they are measured (a timeout keeps the finished cases): measurements.jsonl,
# device.json, nvidia-smi.csv, lscpu.txt, the log.
set -u
. "$(dirname "$0")/_setup.sh"   # $OUT/run, PYTHONPATH, nvidia-smi.csv, lscpu.txt
timeout "${PROFILE_TIMEOUT:-420}" python3 -m perfforge.profiling --suite "${SUITE:-standard}" \
  --only breakdown --out "$OUT/run" 2>&1 | grep -v "^USDT" | tee "$OUT/run/profile-log.txt"
gzip -f "$OUT/run/measurements.jsonl"
