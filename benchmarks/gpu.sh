#!/usr/bin/env bash
# The full-scale model on one GPU: latency per 512x512 edit (DDIM 20 and 50 steps) with and without PFB/CAM/IE/GB,
# peak GPU memory, and the bf16 training step at batch 4, for the SD-1.5-shaped U-Net at random init.
#   benchmarks/gpu.sh            a GPU machine (a few minutes)
#   benchmarks/gpu.sh --smoke    any machine: the ip2p-mini shape at 64 px, to check the script
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || make setup
exec "$PY" benchmarks/bench_gpu.py "$@"
