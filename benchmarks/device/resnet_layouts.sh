#!/bin/bash
# ResNet-50 training at batch 256 in NCHW and NHWC for fp32/tf32/fp16/bf16 on a lent GPU machine, one call
# (about 2-3 minutes on an H100): perfforge.profiling.models.layout_cases through the profiler's runner.
# NVIDIA's published DGX recipe trains AMP in NHWC but TF32/FP32 in NCHW (DeepLearningExamples
# PyTorch/Classification/ConvNets/configs.yml); this measures what the layout costs.
set -u
. "$(dirname "$0")/_setup.sh"   # $OUT/run, PYTHONPATH, nvidia-smi.csv, lscpu.txt
timeout "${PROFILE_TIMEOUT:-300}" python3 -c "
import sys
from perfforge.profiling.models import layout_cases
from perfforge.profiling.runner import run_profile
run_profile('standard', sys.argv[1], cases=layout_cases('standard'))
" "$OUT/run" 2>&1 | grep -v "^USDT" | tee "$OUT/run/profile-log.txt"
gzip -f "$OUT/run/measurements.jsonl"
