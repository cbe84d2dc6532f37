"""Fixtures for API tests (shared by every engineer's tests under tests/api).

- `deployment`: a fresh initialised Deployment in tmp_path (key file outside the home).
- `app`: `create_app(deployment)`; rate limits for sign-in per address are raised so fixtures
  can sign in many users from the one test address (tests of the limiter set their own).
- `client`: an anonymous TestClient.
- `make_user(org, roles) -> SignedIn`: a user of organisation `org` (created on first use;
  None = a platform administrator) with a verified second factor, signed in through the real
  API (password, then TOTP), holding an MFA-verified cookie session with the CSRF header set.
  `SignedIn.api_key(scopes, days=30)` creates a key through the API and returns `fsk_...`.
- `module_deployment`, `module_app`, `module_make_user`: the same, shared by a test module.
- `api_id(dep, kind, n)` / `db_id(dep, kind, text)`: the API's opaque id of a database id and
  back (facesearch.api.ids, the one codec), for tests that reach into the database.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher, Type
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from facesearch import clock
from facesearch.api import ids
from facesearch.api.app import create_app
from facesearch.api.deps import CSRF_HEADER
from facesearch.deployment import Deployment
from facesearch.security import accounts, admin, passwords, recovery, totp
from facesearch.security.actor import system_actor
from facesearch.security.ratelimit import DEFAULT_LIMITS, Limit, RateLimiter
from facesearch.store.accounts import Organisation, User
from tests.conftest import init_home

_FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=Type.ID)
_counter = itertools.count(1)


@pytest.fixture(scope="session", autouse=True)
def _fast_argon2() -> Iterator[None]:
    """argon2id with tiny parameters: the tests check behaviour, not hashing cost."""
    saved = passwords.HASHER, recovery.HASHER
    passwords.HASHER = _FAST
    recovery.HASHER = _FAST
    passwords._dummy_hash.cache_clear()
    yield
    passwords.HASHER, recovery.HASHER = saved
    passwords._dummy_hash.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_identity_state() -> Iterator[None]:
    yield
    clock.set_clock(None)


def new_deployment(base: Path, **overrides: object) -> Deployment:
    settings = init_home(base / "home", base / "keys" / "deployment.key", **overrides)
    return Deployment.open(settings)


def fast_limiter() -> RateLimiter:
    limits = dict(DEFAULT_LIMITS)
    limits["signin:address"] = Limit(10_000, 300.0)
    limits["invitation:address"] = Limit(10_000, 300.0)
    return RateLimiter(limits)


def api_id(dep: Deployment, kind: str, value: int) -> str:
    """The opaque id the API shows for database id `value` of `kind` (api/ids.py KINDS)."""
    return ids.codec_for(dep.keys).encode(kind, value)


def db_id(dep: Deployment, kind: str, text: str) -> int:
    """The database id behind an opaque id the API gave out."""
    value = ids.codec_for(dep.keys).decode(kind, text)
    assert value is not None, f"{text!r} is not an id of kind {kind}"
    return value


def make_app(dep: Deployment) -> FastAPI:
    return create_app(dep, limiter=fast_limiter())


@dataclass
class SignedIn:
    client: TestClient
    user_id: int
    org_id: int | None
    email: str
    password: str
    totp_secret: str
    roles: list[str] = field(default_factory=list)
    recovery_codes: list[str] = field(default_factory=list)

    def api_key(self, scopes: list[str], days: int = 30, name: str = "test key") -> str:
        reply = self.client.post(
            "/api/v1/me/api-keys", json={"name": name, "scopes": scopes, "expires_in_days": days}
        )
        assert reply.status_code == 201, reply.text
        return str(reply.json()["key"])

    def sign_in_again(self) -> TestClient:
        """Another MFA-verified session of this user (a new TestClient)."""
        return sign_in(
            self.client.app,
            self.email,
            self.password,
            self.totp_secret,  # type: ignore[arg-type]
            self.recovery_codes,
        )

    def totp_code(self, offset: int = 0) -> str:
        return totp.code_at(self.totp_secret, totp.current_step() + offset)

    @property
    def uid(self) -> str:
        """The user's id as the API shows it (opaque)."""
        return api_id(self.client.app.state.deployment, "user", self.user_id)  # type: ignore[attr-defined]

    @property
    def oid(self) -> str | None:
        """The organisation's id as the API shows it (opaque); None for a platform admin."""
        if self.org_id is None:
            return None
        return api_id(self.client.app.state.deployment, "organisation", self.org_id)  # type: ignore[attr-defined]


def key_client(app: Any, key: str) -> TestClient:
    """A TestClient that authenticates with an API key (no cookies)."""
    return TestClient(app, headers={"Authorization": f"Bearer {key}"})


def create_user(
    dep: Deployment,
    org: str | None,
    roles: list[str],
    *,
    email: str | None = None,
    password: str | None = None,
    enrolled: bool = True,
) -> tuple[int, int | None, str, str, str, list[str]]:
    """A user straight in the database (org created on first use). Returns
    (user_id, org_id, email, password, totp_secret, recovery_codes)."""
    n = next(_counter)
    domain = (org or "platform").lower().replace(" ", "-")
    email = email or f"{roles[0].replace('_', '-')}{n}@{domain}.test"
    password = password or f"pw-{secrets.token_urlsafe(12)}"
    secret = totp.new_secret()
    with dep.db.session() as s:
        org_id: int | None = None
        if org is not None:
            row = s.scalar(select(Organisation).where(Organisation.name == org))
            if row is None:
                row = admin.create_organisation(s, system_actor(), org)
            org_id = row.id
        user = User(
            org_id=org_id,
            email=email,
            password_hash=passwords.hash_password(password),
            roles=list(roles),
        )
        s.add(user)
        s.flush()
        if enrolled:
            user.totp_secret = accounts.seal_totp_secret(dep.keys.secrets, user, secret)
            user.totp_verified_at = clock.now()
            codes = recovery.issue(s, user.id)
        else:
            codes = []
        user_id = user.id
    return user_id, org_id, email, password, secret, codes


def sign_in(
    app: FastAPI, email: str, password: str, secret: str, recovery_codes: list[str] | None = None
) -> TestClient:
    """A TestClient with an MFA-verified cookie session and the CSRF header set. TOTP codes are
    single use, so a third sign-in within one 30-second step spends a recovery code."""
    client = TestClient(app)
    reply = client.post("/api/v1/auth/signin", json={"email": email, "password": password})
    assert reply.status_code == 200, reply.text
    client.headers[CSRF_HEADER] = reply.json()["csrf_token"]
    reply = client.post(
        "/api/v1/auth/mfa/verify", json={"code": totp.code_at(secret, totp.current_step())}
    )
    if reply.status_code == 401:  # this step's code was used already: the next one is valid
        reply = client.post(
            "/api/v1/auth/mfa/verify", json={"code": totp.code_at(secret, totp.current_step() + 1)}
        )
    if reply.status_code == 401 and recovery_codes:
        reply = client.post("/api/v1/auth/mfa/verify", json={"code": recovery_codes.pop()})
    assert reply.status_code == 200, reply.text
    client.headers[CSRF_HEADER] = reply.json()["csrf_token"]
    return client


MakeUser = Callable[..., SignedIn]


def user_factory(dep: Deployment, app: FastAPI) -> MakeUser:
    def make(org: str | None, roles: list[str], **kwargs: object) -> SignedIn:
        user_id, org_id, email, password, secret, codes = create_user(dep, org, roles, **kwargs)  # type: ignore[arg-type]
        client = sign_in(app, email, password, secret, codes)
        return SignedIn(client, user_id, org_id, email, password, secret, list(roles), codes)

    return make


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    dep = new_deployment(tmp_path)
    yield dep
    dep.close()


@pytest.fixture
def app(deployment: Deployment) -> FastAPI:
    return make_app(deployment)


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    return TestClient(app)


@pytest.fixture
def make_user(deployment: Deployment, app: FastAPI) -> MakeUser:
    return user_factory(deployment, app)


@pytest.fixture(scope="module")
def module_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    dep = new_deployment(tmp_path_factory.mktemp("deployment"))
    yield dep
    dep.close()


@pytest.fixture(scope="module")
def module_app(module_deployment: Deployment) -> FastAPI:
    return make_app(module_deployment)


@pytest.fixture(scope="module")
def module_make_user(module_deployment: Deployment, module_app: FastAPI) -> MakeUser:
    return user_factory(module_deployment, module_app)
