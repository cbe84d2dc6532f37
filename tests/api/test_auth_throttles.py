"""Issue 11, High 3: second-factor guessing is bounded per account whatever the password does,
and the sign-in rate limits and lockouts of emails without an account survive a restart without
telling which emails exist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

from fastapi import FastAPI
from fastapi.testclient import TestClient

from facesearch import clock
from facesearch.api.app import create_app
from facesearch.api.deps import CSRF_HEADER
from facesearch.deployment import Deployment
from tests.api.conftest import MakeUser
from tests.conftest import REPO_ROOT
from tests.pg import RawDatabase


def _password_only(app: FastAPI, email: str, password: str) -> tuple[TestClient, int]:
    c = TestClient(app)
    r = c.post("/api/v1/auth/signin", json={"email": email, "password": password})
    if r.status_code == 200:
        c.headers[CSRF_HEADER] = r.json()["csrf_token"]
    return c, r.status_code


def test_a_correct_password_does_not_buy_new_second_factor_guesses(
    app: FastAPI, make_user: MakeUser
) -> None:
    user = make_user("Acme", ["investigator"])
    answers = []
    for _round in range(3):  # password, 2 wrong codes; password again, ...
        c, status = _password_only(app, user.email, user.password)
        if status != 200:
            answers.append(status)
            break
        for _ in range(2):
            answers.append(c.post("/api/v1/auth/mfa/verify", json={"code": "000000"}).status_code)
            if answers[-1] != 401:
                break
        if answers[-1] != 401:
            break
    # the fifth wrong code locks, although a correct password came in between
    assert answers == [401, 401, 401, 401, 423], answers
    # and the lock holds for the password too, as long as it lasts
    assert _password_only(app, user.email, user.password)[1] == 423


def test_second_factor_locks_grow_and_only_a_correct_code_resets(
    deployment: Deployment, make_user: MakeUser
) -> None:
    user = make_user("Acme", ["investigator"])
    app = create_app(deployment)  # persisted limits, on the one clock the test moves
    now = clock.now()
    moved = [now]
    clock.set_clock(lambda: moved[0])
    for round_no in range(2):
        c, status = _password_only(app, user.email, user.password)
        assert status == 200
        codes = [
            c.post("/api/v1/auth/mfa/verify", json={"code": "000000"}).status_code for _ in range(5)
        ]
        assert codes == [401, 401, 401, 401, 423]
        minutes = 15 * 2**round_no
        moved[0] += timedelta(minutes=minutes - 1)
        assert _password_only(app, user.email, user.password)[1] == 423
        moved[0] += timedelta(minutes=1, seconds=1)
    con = RawDatabase(deployment)
    try:
        (failures,) = con.execute(
            "SELECT mfa_failures FROM users WHERE id = ?", (user.user_id,)
        ).one()
    finally:
        con.close()
    assert failures == 10
    c, _ = _password_only(app, user.email, user.password)
    ok = c.post("/api/v1/auth/mfa/verify", json={"code": user.totp_code()})
    if ok.status_code == 401:
        ok = c.post("/api/v1/auth/mfa/verify", json={"code": user.totp_code(1)})
    assert ok.status_code == 200, ok.text


_AFTER_RESTART = """
import json, sys
from pathlib import Path
from fastapi.testclient import TestClient
from facesearch.api.app import create_app
from facesearch.config import load_settings
from facesearch.deployment import Deployment
from facesearch.store.db import connect_sqlite

home, key, attempts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
dep = Deployment.open(load_settings(Path(home), key_file=Path(key)))
client = TestClient(create_app(dep), client=("10.1.1.1", 5000))
out = []
for email, password in attempts:
    r = client.post("/api/v1/auth/signin", json={"email": email, "password": password})
    out.append([r.status_code, r.json().get("detail")])
print(json.dumps(out))
dep.close()
"""


def _after_restart(dep: Deployment, attempts: list[tuple[str, str]]) -> list[list[object]]:
    """Sign-in attempts against a freshly started service (another process) on the same data
    directory."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _AFTER_RESTART,
            str(dep.settings.home),
            str(dep.key_file),
            json.dumps(attempts),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_lockouts_of_unknown_emails_survive_a_restart_like_real_ones(
    deployment: Deployment, make_user: MakeUser
) -> None:
    user = make_user("Acme", ["investigator"])
    app = create_app(deployment)  # the production limiter, persisted in the database
    c = TestClient(app, client=("10.1.1.1", 5000))
    ghost = "nobody-here@acme.test"
    for email in (user.email, ghost):
        codes = [
            c.post("/api/v1/auth/signin", json={"email": email, "password": "wrong password!"})
            for _ in range(5)
        ]
        assert [r.status_code for r in codes] == [401, 401, 401, 401, 423]
    later = _after_restart(deployment, [(user.email, user.password), (ghost, "wrong password!")])
    assert [code for code, _ in later] == [423, 423], later
    # the same words for both: nothing tells that one of them has an account
    assert later[0][1] is not None and later[0][1] == later[1][1]
    # the table holds keyed hashes, never the email
    con = RawDatabase(deployment)
    try:
        throttle_rows = [repr(row) for row in con.execute("SELECT * FROM auth_throttles")]
    finally:
        con.close()
    assert throttle_rows and not any(ghost in line for line in throttle_rows)


def test_sign_in_rate_limits_survive_a_restart(deployment: Deployment) -> None:
    app = create_app(deployment)
    c = TestClient(app, client=("10.1.1.1", 5000))
    email = "target@acme.test"
    codes = [
        c.post("/api/v1/auth/signin", json={"email": email, "password": f"guess {i}"}).status_code
        for i in range(10)
    ]
    assert codes.count(429) == 0
    assert c.post("/api/v1/auth/signin", json={"email": email, "password": "x"}).status_code == 429
    later = _after_restart(deployment, [(email, "one more guess")])
    assert later[0][0] == 429, later
