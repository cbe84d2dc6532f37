"""Ten single-use recovery codes per user, stored as argon2id hashes."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from facesearch import clock
from facesearch.store.accounts import RecoveryCode

COUNT = 10
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
#: The codes carry 80 bits of entropy each, so a lighter argon2id profile (OWASP minimum:
#: m=19 MiB, t=2) is enough and keeps checking ten codes quick.
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, type=Type.ID)


def _new_code() -> str:
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(16))
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def _normalise(code: str) -> str:
    return code.strip().lower().replace("-", "").replace(" ", "")


def issue(session: Session, user_id: int) -> list[str]:
    """Replace the user's codes with ten new ones; returns the plain codes (shown once)."""
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = [_new_code() for _ in range(COUNT)]
    for code in codes:
        session.add(RecoveryCode(user_id=user_id, code_hash=HASHER.hash(_normalise(code))))
    session.flush()
    return codes


def looks_like_recovery_code(code: str) -> bool:
    norm = _normalise(code)
    return len(norm) == 16 and all(c in _ALPHABET for c in norm)


def use(session: Session, user_id: int, code: str) -> bool:
    """Consume a matching unused code; False when none matches."""
    norm = _normalise(code)
    if not looks_like_recovery_code(code):
        return False
    rows = session.scalars(
        select(RecoveryCode).where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
    ).all()
    for row in rows:
        try:
            if HASHER.verify(row.code_hash, norm):
                row.used_at = clock.now()
                session.flush()
                return True
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            continue
    return False


def remaining(session: Session, user_id: int) -> int:
    return len(
        session.scalars(
            select(RecoveryCode.id).where(
                RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)
            )
        ).all()
    )
