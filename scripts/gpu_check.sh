#!/usr/bin/env bash
# Run kiln's CUDA test suite and GPU benchmarks in one call on a machine with an NVIDIA GPU
# (see docs/cuda.md): tests/cuda (the device-tensor tests on the real driver too) and the GPU
# benchmarks. Results: the file given as $1 (default gpu-results.md), Markdown.
set -u
cd "$(dirname "$0")/.."
out="${1:-gpu-results.md}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
PYTHONPATH=. python3 -m kiln.cuda.check --out "$out"
rc=$?
cat "$out"
exit $rc
