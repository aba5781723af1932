#!/bin/bash
# Input-pipeline ground truth on a lent GPU machine, in one call (about 2-3 minutes):
#   perfforge profile --suite standard --only input   (python -m perfforge.profiling: the GPU image
#   has torch/torchvision but not pydantic, which the profiler does not need)
# Results land in $OUT/run/: measurements.jsonl, device.json, nvidia-smi.csv, lscpu.txt, the log.
set -u
. "$(dirname "$0")/_setup.sh"   # $OUT/run, PYTHONPATH, nvidia-smi.csv, lscpu.txt
timeout "${PROFILE_TIMEOUT:-420}" python3 -m perfforge.profiling --suite "${SUITE:-standard}" \
  --only input --out "${PROF_DIR:=/tmp/perfforge-prof}" 2>&1 | tee "$OUT/run/profile-log.txt"
cp "$PROF_DIR/measurements.jsonl" "$PROF_DIR/device.json" "$OUT/run/"
