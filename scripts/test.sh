#!/usr/bin/env bash
# Run the test suite (installs the pinned dependencies into .venv first).
# Unless FACESEARCH_TEST_PG names a PostgreSQL cluster already, a private one is started on a
# free loopback port for the run (Debian's postgresql package) and removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap-venv.sh --dev
if [ -z "${FACESEARCH_TEST_PG:-}" ] && ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
  pg_dir=$(mktemp -d /tmp/facesearch-test-pg.XXXXXX)
  trap 'bash scripts/pg-test-cluster.sh stop "$pg_dir" >/dev/null 2>&1 || true' EXIT
  port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  FACESEARCH_TEST_PG=$(bash scripts/pg-test-cluster.sh start "$pg_dir" "$port")
  export FACESEARCH_TEST_PG
fi
.venv/bin/python -m pytest "$@"
