#!/bin/bash
# NeuSight's H100 label configurations timed the way NeuSight's harness timed its labels (dropout 0.1, pre-training
# and causal-LM heads with a cross-entropy, all-ones token ids, mean of the 5 fastest of 25 iterations each after
# torch.cuda.empty_cache, Switch with padded experts; perfforge.profiling.neusight_e2e), on a lent GPU machine,
# in one call (about 3-4 minutes on an H100):
#   perfforge profile --suite standard --only neusight-e2e   (python -m perfforge.profiling: the GPU image has
#   torch and transformers but not pydantic, which the profiler does not need)
# SUITE=tiny runs two-layer models on a CPU (a dry run). Results land in $OUT/run/ as they are measured (a timeout
# keeps the finished cases): measurements.jsonl.gz, device.json, nvidia-smi.csv, lscpu.txt, the log.
set -u
. "$(dirname "$0")/_setup.sh"   # $OUT/run, PYTHONPATH, nvidia-smi.csv, lscpu.txt
timeout "${PROFILE_TIMEOUT:-420}" python3 -m perfforge.profiling --suite "${SUITE:-standard}" \
  --only neusight-e2e --out "$OUT/run" ${DEVICE_ARG:-} 2>&1 | grep -v "^USDT" | tee "$OUT/run/profile-log.txt"
gzip -f "$OUT/run/measurements.jsonl"
