"""The signed-in principal's own account: who am I, my sessions, my API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from facesearch.api.deps import (
    CurrentPrincipal,
    DbSession,
    Principal,
    require_session,
    session_policy,
)
from facesearch.security import api_keys, audit, clock, recovery, sessions
from facesearch.store.accounts import SCOPES, ApiKey, Organisation, User, UserSession

router = APIRouter(tags=["account"])
DbId = Annotated[int, Path(ge=1, le=2_147_483_647)]


class MeReply(BaseModel):
    user_id: int
    email: str
    display_name: str
    org_id: int | None
    organisation: str | None
    roles: list[str]
    scopes: list[str]
    auth: str  # "session" | "api_key"
    mfa_enrolled: bool
    recovery_codes_remaining: int
    csrf_token: str | None = None


class SessionOut(BaseModel):
    id: int
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None
    current: bool


class KeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(min_length=1, max_length=len(SCOPES))
    expires_in_days: int = Field(ge=1, le=api_keys.MAX_DAYS)


class KeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    active: bool


class KeyCreated(KeyOut):
    key: str  # shown once


def _key_out(row: ApiKey) -> dict[str, object]:
    return {
        "id": row.id, "name": row.name, "prefix": row.prefix, "scopes": list(row.scopes),
        "created_at": clock.aware(row.created_at),
        "expires_at": clock.aware(row.expires_at) if row.expires_at else None,
        "last_used_at": clock.aware(row.last_used_at) if row.last_used_at else None,
        "revoked_at": clock.aware(row.revoked_at) if row.revoked_at else None,
        "active": api_keys.is_live(row),
    }


@router.get("/api/v1/me", response_model=MeReply)
def me(principal: CurrentPrincipal, s: DbSession) -> MeReply:
    user = s.get(User, principal.user_id)
    if user is None:  # pragma: no cover - the principal was just loaded
        raise HTTPException(404, detail="no such user")
    org = s.get(Organisation, user.org_id) if user.org_id is not None else None
    csrf = None
    if principal.session_id is not None:
        row = s.get(UserSession, principal.session_id)
        csrf = row.csrf_token if row else None
    return MeReply(
        user_id=user.id, email=user.email, display_name=user.display_name, org_id=user.org_id,
        organisation=org.name if org else None, roles=sorted(principal.roles),
        scopes=sorted(principal.scopes),
        auth="api_key" if principal.api_key_id is not None else "session",
        mfa_enrolled=user.totp_verified_at is not None,
        recovery_codes_remaining=recovery.remaining(s, user.id), csrf_token=csrf,
    )


@router.get("/api/v1/me/sessions", response_model=list[SessionOut])
def my_sessions(request: Request, principal: CurrentPrincipal, s: DbSession) -> list[SessionOut]:
    rows = sessions.list_live(s, principal.user_id, session_policy(request))
    return [
        SessionOut(id=r.id, created_at=clock.aware(r.created_at),
                   last_seen_at=clock.aware(r.last_seen_at),
                   expires_at=clock.aware(r.expires_at), ip=r.ip, user_agent=r.user_agent,
                   current=r.id == principal.session_id)
        for r in rows
    ]


@router.delete("/api/v1/me/sessions/{session_id}", status_code=204, response_class=Response)
def end_my_session(session_id: DbId, principal: CurrentPrincipal, s: DbSession) -> Response:
    row = s.get(UserSession, session_id)
    if row is None or row.user_id != principal.user_id or row.revoked_at is not None:
        raise HTTPException(404, detail=f"no session {session_id}")
    sessions.revoke(s, row)
    user = s.get(User, principal.user_id)
    audit.record(s, action="session.signout", actor_user_id=principal.user_id,
                 actor_key_id=principal.api_key_id, org_id=user.org_id if user else None,
                 target_type="session", target_id=row.id, ip=principal.ip)
    return Response(status_code=204)


@router.get("/api/v1/me/api-keys", response_model=list[KeyOut])
def my_keys(principal: CurrentPrincipal, s: DbSession) -> list[dict[str, object]]:
    rows = s.scalars(select(ApiKey).where(ApiKey.user_id == principal.user_id)
                     .order_by(ApiKey.id)).all()
    return [_key_out(r) for r in rows]


@router.post("/api/v1/me/api-keys", response_model=KeyCreated, status_code=201)
def create_key(body: KeyCreate, s: DbSession,
               principal: Annotated[Principal, require_session()]) -> dict[str, object]:
    """A key for a program, with scopes your roles grant; the key is shown only in this reply.
    Only a signed-in person can create keys (a key cannot mint keys)."""
    user = s.get(User, principal.user_id)
    assert user is not None
    try:
        new = api_keys.create(s, user, name=body.name, scopes=body.scopes,
                              days=body.expires_in_days)
    except api_keys.KeyRejected as exc:
        raise HTTPException(422, detail=str(exc)) from None
    audit.record(s, action="apikey.created", actor_user_id=user.id, org_id=user.org_id,
                 target_type="api_key", target_id=new.row.id, ip=principal.ip,
                 details={"name": new.row.name, "prefix": new.row.prefix,
                          "scopes": list(new.row.scopes),
                          "expires_at": new.row.expires_at.isoformat()
                          if new.row.expires_at else None})
    return {**_key_out(new.row), "key": new.key}


@router.delete("/api/v1/me/api-keys/{key_id}", status_code=204, response_class=Response)
def revoke_key(key_id: DbId, principal: CurrentPrincipal, s: DbSession) -> Response:
    row = s.get(ApiKey, key_id)
    if row is None or row.user_id != principal.user_id:
        raise HTTPException(404, detail=f"no API key {key_id}")
    if row.revoked_at is None:
        api_keys.revoke(s, row)
        audit.record(s, action="apikey.revoked", actor_user_id=principal.user_id,
                     actor_key_id=principal.api_key_id, org_id=row.org_id,
                     target_type="api_key", target_id=row.id, ip=principal.ip)
    return Response(status_code=204)
