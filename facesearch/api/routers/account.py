"""The signed-in principal's own account: who am I, my sessions, my API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from facesearch.api.deps import (
    CurrentPrincipal,
    DbSession,
    Id,
    Principal,
    require_session,
    session_policy,
)
from facesearch.security import api_keys, self_service
from facesearch.security.roles import SCOPES

router = APIRouter(tags=["account"])


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


@router.get("/api/v1/me", response_model=MeReply)
def me(principal: CurrentPrincipal, s: DbSession) -> dict[str, Any]:
    return self_service.me(s, principal)


#: Managing sessions and keys needs the person, signed in: an API key, whatever its scope, can
#: neither see nor end its owner's sessions, nor list or revoke its owner's other keys.
SignedInPerson = Annotated[Principal, require_session()]


@router.get("/api/v1/me/sessions", response_model=list[SessionOut])
def my_sessions(request: Request, principal: SignedInPerson, s: DbSession) -> list[dict[str, Any]]:
    return self_service.my_sessions(s, principal, session_policy(request))


@router.delete("/api/v1/me/sessions/{session_id}", status_code=204, response_class=Response)
def end_my_session(session_id: Id, principal: SignedInPerson, s: DbSession) -> Response:
    self_service.end_my_session(s, principal, session_id)
    return Response(status_code=204)


@router.get("/api/v1/me/api-keys", response_model=list[KeyOut])
def my_keys(principal: SignedInPerson, s: DbSession) -> list[dict[str, Any]]:
    return self_service.my_keys(s, principal)


@router.post("/api/v1/me/api-keys", response_model=KeyCreated, status_code=201)
def create_key(
    body: KeyCreate, s: DbSession, principal: Annotated[Principal, require_session()]
) -> dict[str, Any]:
    """A key for a program, with scopes your roles grant; the key is shown only in this reply.
    Only a signed-in person can create keys (a key cannot mint keys)."""
    return self_service.create_key(
        s, principal, name=body.name, scopes=body.scopes, days=body.expires_in_days
    )


@router.delete("/api/v1/me/api-keys/{key_id}", status_code=204, response_class=Response)
def revoke_key(key_id: Id, principal: SignedInPerson, s: DbSession) -> Response:
    self_service.revoke_key(s, principal, key_id)
    return Response(status_code=204)
