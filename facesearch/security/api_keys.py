"""API keys for programs: `fsk_<prefix>_<secret>`, prefix = 12 lowercase hex characters (lookup),
secret = `secrets.token_urlsafe(32)`. Only the SHA-256 of the secret is stored (a 256-bit random
secret needs no slow hash); the whole key is shown once, at creation. Every key expires (at most
`MAX_DAYS` days), carries only scopes its owner's roles grant, and can be revoked."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from facesearch import clock
from facesearch.errors import InvalidRequest
from facesearch.security.roles import SCOPES, scopes_for
from facesearch.store.accounts import ApiKey, User

PREFIX = "fsk"
MAX_DAYS = 365
KEY_RE = re.compile(r"^fsk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,128})$")
#: last_used_at is written at most this often.
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class NewKey:
    row: ApiKey
    key: str  # shown once


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(session: Session, user: User, *, name: str, scopes: list[str], days: int) -> NewKey:
    if not 1 <= days <= MAX_DAYS:
        raise InvalidRequest(f"a key must expire within 1 to {MAX_DAYS} days")
    wanted = list(dict.fromkeys(scopes))
    if not wanted:
        raise InvalidRequest("a key needs at least one scope")
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown:
        raise InvalidRequest(f"unknown scope {unknown[0]!r}; scopes are {', '.join(SCOPES)}")
    granted = scopes_for(user.roles)
    beyond = [s for s in wanted if s not in granted]
    if beyond:
        raise InvalidRequest(f"your roles do not grant the scope {beyond[0]!r}")
    name = name.strip()
    if not name:
        raise InvalidRequest("a key needs a name")
    while True:
        prefix = secrets.token_hex(6)
        if session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix)) is None:
            break
    secret = secrets.token_urlsafe(32)
    now = clock.now()
    row = ApiKey(
        user_id=user.id,
        org_id=user.org_id,
        name=name[:200],
        prefix=prefix,
        secret_hash=_hash_secret(secret),
        scopes=wanted,
        created_at=now,
        expires_at=now + timedelta(days=days),
    )
    session.add(row)
    session.flush()
    return NewKey(row, f"{PREFIX}_{prefix}_{secret}")


def is_live(row: ApiKey) -> bool:
    now = clock.now()
    if row.revoked_at is not None:
        return False
    return row.expires_at is not None and now < clock.aware(row.expires_at)


def verify(session: Session, presented: str) -> ApiKey | None:
    """The live key for a presented `fsk_...` string (recording its use), else None."""
    match = KEY_RE.match(presented.strip())
    if match is None:
        return None
    prefix, secret = match.groups()
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None:
        hmac.compare_digest(_hash_secret(secret), "0" * 64)
        return None
    if not hmac.compare_digest(_hash_secret(secret), row.secret_hash):
        return None
    if not is_live(row):
        return None
    now = clock.now()
    if row.last_used_at is None or now - clock.aware(row.last_used_at) >= TOUCH_EVERY:
        row.last_used_at = now
    return row


def revoke(session: Session, row: ApiKey) -> None:
    if row.revoked_at is None:
        row.revoked_at = clock.now()
    session.flush()


def revoke_all(session: Session, user_id: int) -> int:
    """Revoke every live key of a user (sign-out everywhere, lockout); returns how many."""
    now = clock.now()
    rows = session.scalars(
        select(ApiKey).where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
    ).all()
    for row in rows:
        row.revoked_at = now
    return len(rows)
