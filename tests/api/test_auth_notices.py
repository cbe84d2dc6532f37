"""Issue 11, account lifecycle: notices of new sign-ins and new keys, disabling of accounts
unused for `inactive_days` (the sweep and `facesearch admin sweep`), the system-use banner."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from facesearch.cli import app as cli_app
from facesearch.deployment import Deployment
from facesearch.security import lifecycle
from facesearch.security.actor import system_actor
from facesearch.store.accounts import ApiKey, User
from facesearch.store.audit import AuditEntry
from tests.api.conftest import MakeUser, create_user, key_client, make_app, new_deployment
from tests.api.test_auth import FakeClock, actions, fake_clock

__all__ = ["fake_clock"]


def kinds(client: TestClient) -> list[str]:
    r = client.get("/api/v1/me/notices")
    assert r.status_code == 200, r.text
    return [n["kind"] for n in r.json()]


# -- notices --------------------------------------------------------------------------------------
def test_new_sign_in_and_new_key_are_noticed(app: FastAPI, make_user: MakeUser) -> None:
    user = make_user("Acme", ["investigator"])
    # the fixture's first sign-in came from a new browser
    assert kinds(user.client) == ["signin.new_device"]
    user.sign_in_again()  # same address, same user agent: nothing new
    assert kinds(user.client) == ["signin.new_device"]
    c = TestClient(app, headers={"User-Agent": "Evil/1.0"})
    r = c.post("/api/v1/auth/signin", json={"email": user.email, "password": user.password})
    assert r.status_code == 200  # only the password: the owner hears about it all the same
    notices = user.client.get("/api/v1/me/notices").json()
    assert notices[0]["kind"] == "signin.new_device"
    assert notices[0]["details"]["user_agent"] == "Evil/1.0"
    key = user.api_key(["search"], name="robot")
    notices = user.client.get("/api/v1/me/notices").json()
    assert notices[0]["kind"] == "apikey.created" and "robot" in notices[0]["message"]
    # someone else's notices are not visible; keys cannot read them
    other = make_user("Acme", ["investigator"])
    assert "apikey.created" not in kinds(other.client)
    assert key_client(app, key).get("/api/v1/me/notices").status_code == 403


# -- inactive accounts ----------------------------------------------------------------------------
def test_accounts_unused_for_n_days_are_disabled(
    app: FastAPI, make_user: MakeUser, deployment: Deployment, fake_clock: FakeClock
) -> None:
    days = deployment.settings.inactive_days
    assert days == 90
    idle = make_user("Acme", ["investigator"])
    idle_key = idle.api_key(["search"], days=365)
    busy = make_user("Acme", ["investigator"])
    busy_key = busy.api_key(["search"], days=365)
    root = make_user(None, ["platform_admin"])  # the only platform administrator
    fake_clock.advance(days=days - 1)
    with deployment.db.session() as s:
        assert lifecycle.disable_inactive(s, system_actor(), days) == []
    assert key_client(app, busy_key).get("/api/v1/me").status_code == 200  # a key in use counts
    fake_clock.advance(days=2)
    with deployment.db.session() as s:
        disabled = lifecycle.disable_inactive(s, system_actor(), days)
    assert disabled == [idle.user_id]
    assert idle.client.get("/api/v1/me").status_code == 401
    assert key_client(app, idle_key).get("/api/v1/me").status_code == 401
    with deployment.db.session() as s:
        row = s.get(User, idle.user_id)
        assert row is not None and row.disabled
        key_row = s.scalar(select(ApiKey).where(ApiKey.user_id == idle.user_id))
        assert key_row is not None and key_row.revoked_at is not None
        entry = s.scalar(select(AuditEntry).where(AuditEntry.action == "user.disabled_inactive"))
        assert entry is not None and entry.target_id == str(idle.user_id)
    assert "user.inactive_spared" in actions(deployment)  # the last platform admin stays
    with deployment.db.session() as s:
        row = s.get(User, root.user_id)
        assert row is not None and not row.disabled
    with deployment.db.session() as s:
        assert lifecycle.disable_inactive(s, system_actor(), 0) == []  # 0: off


def test_admin_sweep_command(tmp_path: Path) -> None:
    dep = new_deployment(tmp_path, inactive_days=1)
    try:
        user_id = create_user(dep, "Acme", ["investigator"])[0]
        with dep.db.session() as s:
            row = s.get(User, user_id)
            assert row is not None
            row.created_at = row.created_at.replace(year=row.created_at.year - 1)
    finally:
        dep.close()
    base = [
        "--home",
        str(tmp_path / "home"),
        "--key-file",
        str(tmp_path / "keys" / "deployment.key"),
    ]
    result = CliRunner().invoke(
        cli_app, [*base, "admin", "sweep"], env={"FACESEARCH_INACTIVE_DAYS": "1"}
    )
    assert result.exit_code == 0, result.output
    assert "disabled 1 account" in result.output
    dep = Deployment.open(dep.settings)
    try:
        with dep.db.session() as s:
            row = s.get(User, user_id)
            assert row is not None and row.disabled
    finally:
        dep.close()


def test_serve_sweeps_unused_accounts_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    dep = new_deployment(tmp_path)
    try:
        user_id = create_user(dep, "Acme", ["investigator"])[0]
        with dep.db.session() as s:
            row = s.get(User, user_id)
            assert row is not None
            row.created_at = row.created_at.replace(year=row.created_at.year - 1)
    finally:
        dep.close()
    started: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append(app))
    base = [
        "--home",
        str(tmp_path / "home"),
        "--key-file",
        str(tmp_path / "keys" / "deployment.key"),
    ]
    result = CliRunner().invoke(cli_app, [*base, "serve", "--port", "8999"])
    assert result.exit_code == 0, result.output
    assert started and "disabled 1 account(s) unused for 90 days" in result.output
    dep = Deployment.open(dep.settings)
    try:
        with dep.db.session() as s:
            row = s.get(User, user_id)
            assert row is not None and row.disabled
    finally:
        dep.close()


# -- banner ---------------------------------------------------------------------------------------
def test_system_use_banner(tmp_path: Path) -> None:
    text = "Authorised use only. Activity is monitored and audited."
    dep = new_deployment(tmp_path, system_use_banner=text)
    try:
        app = make_app(dep)
        client = TestClient(app)
        r = client.get("/api/v1/banner")
        assert r.status_code == 200 and r.json() == {"banner": text}
        _, _, email, password, _, _ = create_user(dep, "Acme", ["investigator"])
        r = client.post("/api/v1/auth/signin", json={"email": email, "password": password})
        assert r.status_code == 200 and r.json()["banner"] == text
    finally:
        dep.close()


def test_no_banner_by_default(client: TestClient) -> None:
    assert client.get("/api/v1/banner").json() == {"banner": None}
