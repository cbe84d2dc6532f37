#!/usr/bin/env bash
# Run the test suite (installs the pinned dependencies into .venv first).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap-venv.sh --dev
exec .venv/bin/python -m pytest "$@"
