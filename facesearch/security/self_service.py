"""What a signed-in person (or a key) does about itself: who am I, my sessions, my API keys."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facesearch import clock
from facesearch.errors import NotFound
from facesearch.security import accounts, api_keys, audit, notices, reauth, recovery, sessions
from facesearch.security.actor import Principal
from facesearch.security.roles import Scope
from facesearch.security.tenancy import own_api_key, own_session
from facesearch.store.accounts import ApiKey, Organisation, User


def _user(session: Session, principal: Principal) -> User:
    user = session.get(User, principal.user_id)
    if user is None:  # pragma: no cover - the principal was just loaded
        raise NotFound("no such user")
    return user


def me(session: Session, principal: Principal) -> dict[str, Any]:
    user = _user(session, principal)
    org = session.get(Organisation, user.org_id) if user.org_id is not None else None
    return {
        "user_id": user.id,
        "email": user.email,
        "display_name": user.display_name,
        "org_id": user.org_id,
        "organisation": org.name if org else None,
        "roles": sorted(principal.roles),
        "scopes": sorted(principal.scopes),
        "auth": "api_key" if principal.api_key_id is not None else "session",
        "mfa_enrolled": accounts.has_second_factor(session, user),
        "second_factors": accounts.second_factors(session, user),
        "recovery_codes_remaining": recovery.remaining(session, user.id),
        # only the CSRF token's hash is stored: it is in the sign-in reply and the fs_csrf cookie
        "csrf_token": None,
    }


def my_sessions(
    session: Session, principal: Principal, policy: sessions.SessionPolicy
) -> list[dict[str, Any]]:
    return [
        {
            "id": r.id,
            "created_at": clock.aware(r.created_at),
            "last_seen_at": clock.aware(r.last_seen_at),
            "expires_at": clock.aware(r.expires_at),
            "ip": r.ip,
            "user_agent": r.user_agent,
            "current": r.id == principal.session_id,
        }
        for r in sessions.list_live(session, principal.user_id, policy)
    ]


def end_my_session(session: Session, principal: Principal, session_id: int) -> None:
    row = own_session(session, principal, session_id)
    sessions.revoke(session, row)
    user = session.get(User, principal.user_id)
    audit.record_for(
        session,
        principal,
        "session.signout",
        org_id=user.org_id if user else None,
        target_type="session",
        target_id=row.id,
    )
    session.commit()


def key_view(row: ApiKey) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "scopes": list(row.scopes),
        "created_at": clock.aware(row.created_at),
        "expires_at": clock.aware_or_none(row.expires_at),
        "last_used_at": clock.aware_or_none(row.last_used_at),
        "revoked_at": clock.aware_or_none(row.revoked_at),
        "active": api_keys.is_live(row),
    }


def my_keys(session: Session, principal: Principal) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(ApiKey).where(ApiKey.user_id == principal.user_id).order_by(ApiKey.id)
    ).all()
    return [key_view(r) for r in rows]


def create_key(
    session: Session, principal: Principal, *, name: str, scopes: list[str], days: int
) -> dict[str, Any]:
    """A key with scopes the caller's roles grant; the secret is in this answer only. A key
    with the `admin` scope needs a session that re-authenticated recently."""
    if Scope.ADMIN in scopes:
        reauth.require_fresh(principal)
    user = _user(session, principal)
    new = api_keys.create(session, user, name=name, scopes=scopes, days=days)
    audit.record_for(
        session,
        principal,
        "apikey.created",
        org_id=user.org_id,
        target_type="api_key",
        target_id=new.row.id,
        details={
            "name": new.row.name,
            "prefix": new.row.prefix,
            "scopes": list(new.row.scopes),
            "expires_at": new.row.expires_at.isoformat() if new.row.expires_at else None,
        },
    )
    notices.notify(
        session,
        user.id,
        "apikey.created",
        f"a new API key {new.row.name!r} ({new.row.prefix}) with the scopes "
        f"{', '.join(new.row.scopes)}; if you did not create it, revoke it",
        {"api_key_id": new.row.id, "prefix": new.row.prefix, "scopes": list(new.row.scopes)},
    )
    session.commit()
    return {**key_view(new.row), "key": new.key}


def revoke_key(session: Session, principal: Principal, key_id: int) -> None:
    row = own_api_key(session, principal, key_id)
    if row.revoked_at is None:
        api_keys.revoke(session, row)
        audit.record_for(
            session,
            principal,
            "apikey.revoked",
            org_id=row.org_id,
            target_type="api_key",
            target_id=row.id,
        )
        session.commit()
