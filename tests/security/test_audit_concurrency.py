"""Two OS processes appending to one audit chain at the same time still write one valid chain.

SQLite serialises the appends with its single writer; PostgreSQL with an advisory transaction
lock taken before the chain head is read (`security.audit._lock_chain`). Without it, two
transactions read the same head and one of them commits a fork (a broken link, or a duplicate
id). The test runs on the run's backend (FACESEARCH_TEST_BACKEND)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from facesearch.cli import app as cli_app
from facesearch.deployment import Deployment
from facesearch.security import audit
from tests.conftest import REPO_ROOT

PER_PROCESS = 40

APPENDER = """
import sys, time
from pathlib import Path
from facesearch.config import load_settings
from facesearch.deployment import Deployment
from facesearch.security import audit

home, key, go, name, n = sys.argv[1:6]
dep = Deployment.open(load_settings(Path(home), key_file=Path(key)))
Path(go + "." + name).touch()  # ready
while not Path(go).exists():
    time.sleep(0.01)
for i in range(int(n)):
    with dep.db.session() as s:
        audit.record(s, action="user.created", target_type="user", target_id=i,
                     details={"writer": name, "i": i})
dep.close()
"""


def test_two_processes_append_one_valid_chain(deployment: Deployment, tmp_path: Path) -> None:
    settings = deployment.settings
    with deployment.db.session() as s:
        audit.record(s, action="deployment.opened")
        before = audit.verify_chain(s).entries
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                APPENDER,
                str(settings.home),
                str(settings.resolved_key_file),
                str(go),
                name,
                str(PER_PROCESS),
            ],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    deadline = time.monotonic() + 120
    while not all(Path(f"{go}.{n}").exists() for n in ("a", "b")):  # both opened the deployment
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.05)
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err

    with deployment.db.session() as s:
        report = audit.verify_chain(s)
        writers = [e["details"].get("writer") for e in audit.iter_entries(s)]
    assert report.ok, report.problem
    assert report.entries == before + 2 * PER_PROCESS
    assert writers.count("a") == writers.count("b") == PER_PROCESS
    # the appends really interleaved: neither process ran all its transactions first
    runs = sum(1 for x, y in itertools.pairwise(writers) if x != y)
    assert runs > 1, "the two writers did not run concurrently"

    base = ["--home", str(settings.home), "--key-file", str(settings.resolved_key_file)]
    result = CliRunner().invoke(cli_app, [*base, "audit", "verify", "--json"])
    assert result.exit_code == 0, result.output
    verified = json.loads(result.output)
    assert verified["ok"] and verified["entries"] == before + 2 * PER_PROCESS
