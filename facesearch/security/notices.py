"""Notices to a user about their own account (ASVS 2.5.5, 3.3; CJIS 5.5): a sign-in from an
address or browser this account has not signed in from before, a new API key, a changed or
reset password, a re-enrolled second factor. They are kept in the database and read at
GET /api/v1/me/notices; delivering them by e-mail is out of scope (facesearch sends no mail)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facesearch import clock
from facesearch.security.actor import Principal
from facesearch.store.accounts import Notice, UserSession

#: A user's list is capped: the oldest notices beyond this many are not shown.
SHOWN = 200


def notify(
    session: Session, user_id: int, kind: str, message: str, details: dict[str, Any] | None = None
) -> None:
    session.add(
        Notice(
            user_id=user_id,
            kind=kind,
            message=message[:400],
            details=details or {},
            created_at=clock.now(),
        )
    )
    session.flush()


def is_new_device(session: Session, user_id: int, ip: str | None, user_agent: str | None) -> bool:
    """No earlier session of the user came from this address with this user agent (call it
    before the new session is created)."""
    agent = (user_agent or "")[:400] or None
    earlier = session.scalar(
        select(UserSession.id)
        .where(
            UserSession.user_id == user_id,
            UserSession.ip.is_(None) if ip is None else UserSession.ip == ip,
            UserSession.user_agent.is_(None) if agent is None else UserSession.user_agent == agent,
        )
        .limit(1)
    )
    return earlier is None


def signed_in(session: Session, user_id: int, ip: str | None, user_agent: str | None) -> None:
    """The password was right from a new address or browser (whether or not the second factor
    follows: a stranger who knows the password is exactly what the owner must hear about)."""
    if is_new_device(session, user_id, ip, user_agent):
        notify(
            session,
            user_id,
            "signin.new_device",
            "a sign-in with your password from an address or browser not seen before; if it "
            "was not you, change your password and tell your administrator",
            {"ip": ip, "user_agent": (user_agent or "")[:200]},
        )


def list_mine(session: Session, principal: Principal) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Notice)
        .where(Notice.user_id == principal.user_id)
        .order_by(Notice.id.desc())
        .limit(SHOWN)
    ).all()
    return [
        {
            "id": r.id,
            "kind": r.kind,
            "message": r.message,
            "details": dict(r.details or {}),
            "created_at": clock.aware(r.created_at),
        }
        for r in rows
    ]
