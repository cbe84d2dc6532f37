"""Server-side sessions. The cookie carries a random 256-bit token; the database keeps only its
SHA-256. A session ends when idle for `idle` (30 minutes by default), at its absolute expiry
(12 hours after creation), on sign-out, or when all of its user's sessions are revoked."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from facesearch import clock
from facesearch.store.accounts import UserSession

#: last_seen_at is written at most this often, so reads do not each cost a write.
TOUCH_EVERY = timedelta(seconds=30)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewSession:
    row: UserSession
    token: str  # goes into the cookie, never stored
    csrf_token: str  # goes to the client, only its SHA-256 is stored


@dataclass(frozen=True)
class SessionPolicy:
    idle: timedelta
    absolute: timedelta

    @classmethod
    def from_minutes_hours(cls, idle_minutes: int, absolute_hours: int) -> SessionPolicy:
        return cls(timedelta(minutes=idle_minutes), timedelta(hours=absolute_hours))


def create(
    session: Session,
    user_id: int,
    policy: SessionPolicy,
    *,
    ip: str | None = None,
    user_agent: str | None = None,
    mfa_verified: bool = False,
) -> NewSession:
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = clock.now()
    row = UserSession(
        token_hash=hash_token(token),
        user_id=user_id,
        mfa_verified=mfa_verified,
        csrf_token=hash_token(csrf),
        created_at=now,
        last_seen_at=now,
        expires_at=now + policy.absolute,
        ip=ip,
        user_agent=(user_agent or "")[:400] or None,
    )
    session.add(row)
    session.flush()
    return NewSession(row, token, csrf)


def rotate(session: Session, row: UserSession) -> tuple[str, str]:
    """New token and CSRF token for an existing session (after the second factor), so a token
    observed before verification is worthless afterwards. Returns (token, CSRF token); only
    their hashes are stored."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    row.token_hash = hash_token(token)
    row.csrf_token = hash_token(csrf)
    session.flush()
    return token, csrf


def csrf_matches(row: UserSession, sent: str) -> bool:
    """Whether `sent` is the session's CSRF token (its SHA-256, compared in constant time)."""
    return bool(sent) and hmac.compare_digest(hash_token(sent), row.csrf_token)


def is_live(row: UserSession, policy: SessionPolicy) -> bool:
    now = clock.now()
    if row.revoked_at is not None:
        return False
    if now >= clock.aware(row.expires_at):
        return False
    if now - clock.aware(row.created_at) >= policy.absolute:
        return False
    return now - clock.aware(row.last_seen_at) < policy.idle


def lookup(session: Session, token: str, policy: SessionPolicy) -> UserSession | None:
    """The live session for a cookie token (touching its last-seen time), else None."""
    if not token or len(token) > 200:
        return None
    row = session.scalar(select(UserSession).where(UserSession.token_hash == hash_token(token)))
    if row is None or not is_live(row, policy):
        return None
    now = clock.now()
    if now - clock.aware(row.last_seen_at) >= TOUCH_EVERY:
        row.last_seen_at = now
    return row


def revoke(session: Session, row: UserSession) -> None:
    if row.revoked_at is None:
        row.revoked_at = clock.now()
    session.flush()


def revoke_all(session: Session, user_id: int, *, except_id: int | None = None) -> int:
    """Revoke every live session of a user; returns how many."""
    stmt = (
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )
    if except_id is not None:
        stmt = stmt.where(UserSession.id != except_id)
    result = session.execute(stmt)
    session.flush()
    return int(getattr(result, "rowcount", 0) or 0)


def list_live(session: Session, user_id: int, policy: SessionPolicy) -> list[UserSession]:
    rows = session.scalars(
        select(UserSession)
        .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
        .order_by(UserSession.id)
    ).all()
    return [r for r in rows if is_live(r, policy)]
