#!/usr/bin/env bash
# Install facesearch into .venv and run it on the embedded default (SQLite + FAISS + encrypted
# blobs) with a data directory under ./demo-data. Uses ../shared/faces when present.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap-venv.sh
export FACESEARCH_HOME="${FACESEARCH_HOME:-$PWD/demo-data/home}"
export FACESEARCH_KEY_FILE="${FACESEARCH_KEY_FILE:-$PWD/demo-data/keys/master.key}"
fs() { .venv/bin/facesearch "$@"; }

if [ ! -f "$FACESEARCH_HOME/facesearch.toml" ]; then
  fs init
fi
FACES="$(cd .. && pwd)/shared/faces"
if [ -d "$FACES/small" ]; then
  echo "== ingesting the shared sample photos from $FACES"
  fs ingest "$FACES/small" --collection demo --retention-days 30 --legal-basis "Demonstration on the public sample photos shipped for testing"
  fs ingest "$FACES/small_multi" --collection demo
  if [ -d "$FACES/video/franck_frames" ]; then
    fs ingest "$FACES/video/franck_frames" --collection demo
  fi
  echo "== searching with a probe photo"
  fs search "$FACES/small_multi/two_people.jpg" --collection demo --top 3
  echo "== verifying two photos"
  fs verify "$FACES/small/barack_obama/obama.jpg" "$FACES/small/barack_obama/obama2.jpg"
else
  echo "No sample photos at $FACES."
  echo "Ingest your own: .venv/bin/facesearch ingest /path/to/photos --collection NAME"
  echo "then search:     .venv/bin/facesearch search probe.jpg"
fi
fs stats
if [ "${FACESEARCH_DEMO_NO_SERVE:-0}" != "1" ] && fs --help | grep -q " serve "; then
  echo "== starting the service"
  # People open the web application at localhost (a secure context on loopback, and the host
  # name passkeys are bound to), so the links it prints name localhost too.
  export FACESEARCH_PUBLIC_URL="${FACESEARCH_PUBLIC_URL:-http://localhost:${FACESEARCH_PORT:-8600}}"
  # The first platform administrator's one-time enrolment link (refused once one exists).
  link="$(fs admin bootstrap --email "${FACESEARCH_ADMIN_EMAIL:-admin@localhost}" 2>/dev/null \
    | grep -o 'http[^ ]*/enrol#token=[A-Za-z0-9_-]*' | head -n 1 || true)"
  echo
  if [ -n "$link" ]; then
    echo "Open this link in your browser to set up the first administrator (one-time, 24 h):"
    echo
    echo "    $link"
  else
    echo "An administrator exists already. Open the web application and sign in:"
    echo
    echo "    ${FACESEARCH_PUBLIC_URL%/}/signin"
  fi
  echo
  exec .venv/bin/facesearch serve
fi
