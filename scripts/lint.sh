#!/usr/bin/env bash
# Static checks CI runs before the tests: ruff (lint and format) and mypy (strict).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap-venv.sh --dev
.venv/bin/ruff check facesearch tests bench
.venv/bin/ruff format --check facesearch tests bench
.venv/bin/python -m mypy facesearch
