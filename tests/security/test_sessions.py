from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from facesearch import clock
from facesearch.deployment import Deployment
from facesearch.errors import InvalidRequest
from facesearch.security import api_keys, ratelimit, recovery, sessions
from facesearch.store.accounts import User
from tests.conftest import init_home


@pytest.fixture
def dep(tmp_path: Path) -> Iterator[Deployment]:
    d = Deployment.open(init_home(tmp_path / "home", tmp_path / "k" / "key"))
    yield d
    d.close()


@pytest.fixture
def user_id(dep: Deployment) -> int:
    with dep.db.session() as s:
        u = User(email="x@example.org", password_hash="x", roles=["investigator"])
        s.add(u)
        s.flush()
        return u.id


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
        clock.set_clock(lambda: self.now)

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def fake_clock() -> Iterator[Clock]:
    c = Clock()
    yield c
    clock.set_clock(None)


POLICY = sessions.SessionPolicy.from_minutes_hours(30, 12)


def test_token_is_random_and_only_its_hash_is_stored(dep: Deployment, user_id: int) -> None:
    with dep.db.session() as s:
        a = sessions.create(s, user_id, POLICY)
        b = sessions.create(s, user_id, POLICY)
        assert a.token != b.token and len(a.token) >= 43
        assert a.row.token_hash == sessions.hash_token(a.token) != a.token
        assert sessions.lookup(s, a.token, POLICY) is a.row
        assert sessions.lookup(s, "nope", POLICY) is None


def test_idle_timeout(dep: Deployment, user_id: int, fake_clock: Clock) -> None:
    with dep.db.session() as s:
        new = sessions.create(s, user_id, POLICY)
        for _ in range(5):  # activity keeps it alive past 30 minutes in total
            fake_clock.advance(minutes=20)
            assert sessions.lookup(s, new.token, POLICY) is not None
        fake_clock.advance(minutes=31)
        assert sessions.lookup(s, new.token, POLICY) is None


def test_absolute_lifetime(dep: Deployment, user_id: int, fake_clock: Clock) -> None:
    with dep.db.session() as s:
        new = sessions.create(s, user_id, POLICY)
        for _ in range(12 * 3 - 1):
            fake_clock.advance(minutes=20)
            assert sessions.lookup(s, new.token, POLICY) is not None
        fake_clock.advance(minutes=20)
        assert sessions.lookup(s, new.token, POLICY) is None


def test_revoke_and_revoke_all(dep: Deployment, user_id: int) -> None:
    with dep.db.session() as s:
        a, b, c = (sessions.create(s, user_id, POLICY) for _ in range(3))
        sessions.revoke(s, a.row)
        assert sessions.lookup(s, a.token, POLICY) is None
        assert sessions.revoke_all(s, user_id, except_id=c.row.id) == 1
        s.expire_all()
        assert sessions.lookup(s, b.token, POLICY) is None
        assert sessions.lookup(s, c.token, POLICY) is not None


def test_rotate_invalidates_old_token(dep: Deployment, user_id: int) -> None:
    with dep.db.session() as s:
        new = sessions.create(s, user_id, POLICY)
        old_csrf = new.row.csrf_token
        token, csrf = sessions.rotate(s, new.row)
        assert sessions.lookup(s, new.token, POLICY) is None
        assert sessions.lookup(s, token, POLICY) is new.row
        assert new.row.csrf_token != old_csrf
        assert sessions.csrf_matches(new.row, csrf) and not sessions.csrf_matches(new.row, "")
        assert not sessions.csrf_matches(new.row, new.csrf_token)
        assert not sessions.csrf_matches(new.row, new.row.csrf_token)  # the stored hash


def test_api_keys(dep: Deployment, user_id: int, fake_clock: Clock) -> None:
    with dep.db.session() as s:
        user = s.get(User, user_id)
        assert user is not None
        with pytest.raises(InvalidRequest):
            api_keys.create(s, user, name="k", scopes=["search"], days=0)
        with pytest.raises(InvalidRequest):
            api_keys.create(s, user, name="k", scopes=["search"], days=366)
        with pytest.raises(InvalidRequest, match="do not grant"):
            api_keys.create(s, user, name="k", scopes=["admin"], days=30)
        new = api_keys.create(s, user, name="k", scopes=["search"], days=30)
        assert api_keys.KEY_RE.match(new.key)
        assert new.key.split("_")[1] == new.row.prefix and len(new.row.prefix) == 12
        assert new.key.split("_", 2)[2] not in new.row.secret_hash
        assert api_keys.verify(s, new.key) is new.row
        assert new.row.last_used_at is not None
        assert api_keys.verify(s, new.key[:-1] + ("A" if new.key[-1] != "A" else "B")) is None
        fake_clock.advance(days=31)
        assert api_keys.verify(s, new.key) is None
        other = api_keys.create(s, user, name="k2", scopes=["search"], days=30)
        api_keys.revoke(s, other.row)
        assert api_keys.verify(s, other.key) is None


def test_recovery_codes_single_use(dep: Deployment, user_id: int) -> None:
    with dep.db.session() as s:
        codes = recovery.issue(s, user_id)
        assert len(codes) == 10 and len(set(codes)) == 10
        assert recovery.use(s, user_id, codes[3].upper())
        assert not recovery.use(s, user_id, codes[3])
        assert recovery.remaining(s, user_id) == 9
        assert not recovery.use(s, user_id, "aaaa-bbbb-cccc-dddd")


def test_rate_limiter_sliding_window() -> None:
    now = [0.0]
    lim = ratelimit.RateLimiter({"p": ratelimit.Limit(3, 10.0)}, clock=lambda: now[0])
    assert [lim.hit("p", "a") for _ in range(3)] == [None, None, None]
    wait = lim.hit("p", "a")
    assert wait is not None and 1 <= wait <= 10
    assert lim.hit("p", "b") is None  # keys are independent
    now[0] = 10.5
    assert lim.hit("p", "a") is None
