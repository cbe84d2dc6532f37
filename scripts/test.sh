#!/usr/bin/env bash
# Run the test suite (installs the pinned dependencies into .venv first), twice:
#   1. the whole suite on the embedded default (SQLite/SQLCipher);
#   2. the tests that exercise the metadata store again with FACESEARCH_TEST_BACKEND=postgresql
#      (every deployment gets a PostgreSQL database of its own; tests marked sqlite_only are
#      deselected, those marked postgresql_only run). Vision, index, eval, web and the
#      architecture/docs checks do not touch the database, so they run once.
# Arguments go to both pytest runs. Unless FACESEARCH_TEST_PG names a PostgreSQL cluster
# already, a private one is started on a free loopback port (Debian's postgresql package) and
# removed afterwards. FACESEARCH_TEST_RUNS=sqlite (or postgresql) runs only that half.
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
runs=${FACESEARCH_TEST_RUNS:-sqlite postgresql}
status=0
for backend in $runs; do
  case "$backend" in
    sqlite) FACESEARCH_TEST_BACKEND=sqlite .venv/bin/python -m pytest "$@" || status=$? ;;
    postgresql)
      echo "== the store-facing tests again, on PostgreSQL (FACESEARCH_TEST_BACKEND=postgresql)"
      FACESEARCH_TEST_BACKEND=postgresql .venv/bin/python -m pytest "$@" \
        tests/store tests/security tests/search tests/api tests/ingest tests/test_doctor.py \
        tests/test_cli.py || status=$?
      ;;
    *) echo "FACESEARCH_TEST_RUNS: unknown backend $backend" >&2; exit 2 ;;
  esac
done
exit "$status"
