#!/usr/bin/env bash
# The dlib network on ONNX Runtime's CUDA execution provider: parity with dlib and throughput.
#
# Run from the repository root on a machine with an NVIDIA GPU, in an environment where the
# `onnxruntime-gpu` wheel (matching the machine's CUDA/cuDNN) replaces `onnxruntime`:
#     pip uninstall -y onnxruntime && pip install "onnxruntime-gpu>=1.18"   # or: pip install .[gpu]
#     bash bench/onnx_gpu.sh
# The converted model is written to $FACESEARCH_CACHE_DIR (a temporary directory by default).
# Without a CUDA provider the script says so and exits 0: CI never has a GPU, and the CPU path is
# what the regular test suite covers. dlib runs on the CPU throughout (it is the reference).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export FACESEARCH_CACHE_DIR=${FACESEARCH_CACHE_DIR:-$(mktemp -d)}

if ! "$PY" -c 'import sys, onnxruntime as o; sys.exit("CUDAExecutionProvider" not in o.get_available_providers())'; then
    echo "onnx_gpu: no CUDAExecutionProvider here (install onnxruntime-gpu on a GPU machine); nothing to do"
    exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

echo "== parity: CUDA descriptors vs dlib (tolerance 1e-4)"
"$PY" -m pytest -q -s -p no:cacheprovider tests/vision/test_onnx_parity.py -k "cuda or random or small" || exit 1

echo "== throughput: ONNX Runtime CUDA at batch 1/16/64/256 (dlib CPU for reference)"
"$PY" bench/embed_bench.py --providers cuda --skip-recall --faces 1024 --dlib-faces 32 \
    --batches 1 16 64 256
