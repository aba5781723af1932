# Sourced by the device scripts: the output folder $OUT/run, this checkout's src on PYTHONPATH, and the
# machine's GPU and CPU facts (nvidia-smi.csv, lscpu.txt) beside the measurements.
OUT=${OUT:-/tmp/perfforge-out}
mkdir -p "$OUT/run"
export PYTHONPATH="$PWD/src" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,uuid,driver_version,clocks.max.sm,clocks.max.memory,power.limit \
  --format=csv > "$OUT/run/nvidia-smi.csv" 2>&1
{ lscpu; echo; nproc; free -g; } > "$OUT/run/lscpu.txt" 2>&1
