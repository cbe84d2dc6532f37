"""Sign-in throttles kept in the database, so that a restart forgets none of them.

- **Rate limits** of the authentication policies (`ratelimit.PERSISTENT_POLICIES`): a sliding
  window of hit times per policy and subject, stored in `auth_throttles` (`DatabaseHits`,
  plugged into the app's `RateLimiter`).
- **Failures and lockouts of emails without an account** (`ghost_locked_until`, `ghost_fail`):
  they lock exactly like real accounts (five failures, fifteen minutes), so neither the answers
  nor a restart tell whether an account exists.

Rows are keyed by a keyed hash (`KeyRing.blind_index`) of the policy and subject, never by the
email or address itself. Each hit is committed in its own transaction, so a request that fails
afterwards (and rolls back its own work) still counts.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from facesearch import clock
from facesearch.crypto import KeyRing
from facesearch.store.accounts import AuthThrottle
from facesearch.store.db import Database

#: Rows untouched for this long are forgotten (longer than every window and lockout).
KEEP_FOR = timedelta(days=2)


def _row(session: Session, key: str) -> AuthThrottle:
    row = session.get(AuthThrottle, key)
    if row is None:
        row = AuthThrottle(key=key, hits=[], failures=0, locked_until=None)
        session.add(row)
        try:
            with session.begin_nested():
                session.flush()
        except IntegrityError:  # another request created it meanwhile
            row = session.get(AuthThrottle, key, populate_existing=True)  # type: ignore[assignment]
            assert row is not None
    return row


class DatabaseHits:
    """The persistent half of the rate limiter: `hit` counts one request of `policy` by
    `subject` against `requests` per `window_s` seconds; None when allowed, else seconds to
    wait."""

    def __init__(self, db: Database, keys: KeyRing) -> None:
        self.db = db
        self.keys = keys

    def hit(self, policy: str, subject: str, requests: int, window_s: float) -> float | None:
        key = self.keys.blind_index("ratelimit", f"{policy}\x00{subject}")
        now = clock.now().timestamp()
        with self.db.session() as s:
            row = _row(s, key)
            hits = [float(t) for t in (row.hits or []) if float(t) > now - window_s]
            if len(hits) >= requests:
                row.hits = hits
                return max(1.0, math.ceil(hits[0] + window_s - now))
            row.hits = [*hits, now]
            row.updated_at = clock.now()
            return None

    def prune(self) -> int:
        with self.db.session() as s:
            result = s.execute(
                delete(AuthThrottle).where(AuthThrottle.updated_at < clock.now() - KEEP_FOR)
            )
            return int(getattr(result, "rowcount", 0) or 0)


# -- emails without an account ------------------------------------------------------------------
def _ghost_key(keys: KeyRing, email: str) -> str:
    return keys.blind_index("ghost-lockout", email)


def ghost_locked_until(session: Session, keys: KeyRing, email: str) -> datetime | None:
    row = session.get(AuthThrottle, _ghost_key(keys, email))
    if row is None or row.locked_until is None:
        return None
    until = clock.aware(row.locked_until)
    return until if until > clock.now() else None


def ghost_fail(
    session: Session, keys: KeyRing, email: str, *, max_failures: int, lock_for: timedelta
) -> datetime | None:
    """Count a failed sign-in for an email without an account; the lock expiry when this one
    locked it (like `accounts._register_failure` for real accounts)."""
    row = _row(session, _ghost_key(keys, email))
    row.updated_at = clock.now()
    if row.locked_until is not None and clock.aware(row.locked_until) <= clock.now():
        row.locked_until = None
        row.failures = 0
    row.failures = (row.failures or 0) + 1
    if row.failures >= max_failures:
        until = clock.now() + lock_for
        row.locked_until = until
        row.failures = 0
        return until
    return None
