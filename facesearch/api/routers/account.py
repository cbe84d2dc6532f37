"""The signed-in principal's own account: who am I, my sessions, my API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from facesearch.api.deps import (
    CurrentPrincipal,
    DbSession,
    DeploymentDep,
    Principal,
    require_session,
    session_policy,
)
from facesearch.api.ids import (
    ApiKeyId,
    ApiKeyIdOut,
    Details,
    NoticeIdOut,
    OrganisationIdOut,
    PasskeyId,
    PasskeyIdOut,
    SessionId,
    SessionIdOut,
    UserIdOut,
)
from facesearch.security import api_keys, lifecycle, notices, passkeys, self_service
from facesearch.security.roles import SCOPES

router = APIRouter(tags=["account"])


class MeReply(BaseModel):
    user_id: UserIdOut
    email: str
    display_name: str
    org_id: OrganisationIdOut | None
    organisation: str | None
    roles: list[str]
    scopes: list[str]
    auth: str  # "session" | "api_key"
    mfa_enrolled: bool
    #: the verified second factors: "totp" and/or "passkey" (either alone is enough)
    second_factors: list[str]
    recovery_codes_remaining: int
    csrf_token: str | None = None
    #: a session ends after this many minutes without a request (`session_idle_minutes`); the
    #: web application warns before; None for an API key
    session_idle_minutes: int | None = None


class SessionOut(BaseModel):
    id: SessionIdOut
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
    id: ApiKeyIdOut
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
def me(principal: CurrentPrincipal, s: DbSession, dep: DeploymentDep) -> dict[str, Any]:
    reply = self_service.me(s, principal)
    if principal.session_id is not None:
        reply["session_idle_minutes"] = dep.settings.session_idle_minutes
    return reply


#: Managing sessions and keys needs the person, signed in: an API key, whatever its scope, can
#: neither see nor end its owner's sessions, nor list or revoke its owner's other keys.
SignedInPerson = Annotated[Principal, require_session()]


@router.get("/api/v1/me/sessions", response_model=list[SessionOut])
def my_sessions(request: Request, principal: SignedInPerson, s: DbSession) -> list[dict[str, Any]]:
    return self_service.my_sessions(s, principal, session_policy(request))


@router.delete("/api/v1/me/sessions/{session_id}", status_code=204, response_class=Response)
def end_my_session(session_id: SessionId, principal: SignedInPerson, s: DbSession) -> Response:
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
def revoke_key(key_id: ApiKeyId, principal: SignedInPerson, s: DbSession) -> Response:
    self_service.revoke_key(s, principal, key_id)
    return Response(status_code=204)


FreshSession = Annotated[Principal, require_session(fresh=True)]


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class PasswordChanged(BaseModel):
    other_sessions_ended: int


class ReenrolReply(BaseModel):
    otpauth_uri: str
    secret: str
    qr_svg: str
    next: str = "confirm a code of the new secret at /api/v1/me/mfa/confirm"


class ConfirmBody(BaseModel):
    code: str = Field(min_length=6, max_length=12)


class RecoveryCodes(BaseModel):
    recovery_codes: list[str]  # shown once


@router.post("/api/v1/me/password", response_model=PasswordChanged)
def change_password(
    body: PasswordChange, s: DbSession, principal: Annotated[Principal, require_session()]
) -> PasswordChanged:
    """Change your password: the current one, and a new one that meets the policy. Every other
    session of yours ends."""
    ended = lifecycle.change_password(s, principal, body.current_password, body.new_password)
    return PasswordChanged(other_sessions_ended=ended)


@router.post("/api/v1/me/mfa/enrol", response_model=ReenrolReply)
def reenrol(s: DbSession, dep: DeploymentDep, principal: FreshSession) -> ReenrolReply:
    """Re-enrol the second factor (needs a fresh re-authentication): a new TOTP secret, pending
    until confirmed; the current one keeps working meanwhile."""
    new = lifecycle.start_reenrolment(s, dep.keys.secrets, principal)
    return ReenrolReply(otpauth_uri=new.uri, secret=new.secret, qr_svg=new.qr_svg)


@router.post("/api/v1/me/mfa/confirm", response_model=RecoveryCodes)
def confirm_reenrolment(
    body: ConfirmBody, s: DbSession, dep: DeploymentDep, principal: FreshSession
) -> RecoveryCodes:
    """A code of the new secret replaces the old one; ten new recovery codes, shown once."""
    codes = lifecycle.confirm_reenrolment(s, dep.keys.secrets, principal, body.code)
    return RecoveryCodes(recovery_codes=codes)


@router.post("/api/v1/me/recovery-codes", response_model=RecoveryCodes)
def regenerate_recovery_codes(s: DbSession, principal: FreshSession) -> RecoveryCodes:
    """Ten new recovery codes (needs a fresh re-authentication); the old ones stop working."""
    return RecoveryCodes(recovery_codes=lifecycle.regenerate_recovery_codes(s, principal))


class NoticeOut(BaseModel):
    id: NoticeIdOut
    kind: str  # signin.new_device, apikey.created, password.changed, password.reset, ...
    message: str
    details: Details
    created_at: datetime


@router.get("/api/v1/me/notices", response_model=list[NoticeOut])
def my_notices(
    s: DbSession, principal: Annotated[Principal, require_session()]
) -> list[dict[str, Any]]:
    """What you should know about your account, newest first: sign-ins from a new address or
    browser, new API keys, password changes and resets, a replaced second factor. (Not sent by
    e-mail: facesearch sends no mail.)"""
    return notices.list_mine(s, principal)


class PasskeyOptionsOut(BaseModel):
    """WebAuthn creation options for `navigator.credentials.create` (JSON, base64url fields)."""

    options: dict[str, Any]


class PasskeyRegistration(BaseModel):
    name: str = Field(default="passkey", max_length=200)
    credential: dict[str, Any] = Field(description="PublicKeyCredential.toJSON() of the answer")


class PasskeyOut(BaseModel):
    id: PasskeyIdOut
    name: str
    created_at: datetime
    last_used_at: datetime | None


@router.post("/api/v1/me/passkeys/options", response_model=PasskeyOptionsOut)
def passkey_registration_options(
    s: DbSession, dep: DeploymentDep, principal: FreshSession
) -> PasskeyOptionsOut:
    """Register a passkey, step 1 (needs a fresh re-authentication): creation options with a
    single-use challenge that expires in five minutes."""
    return PasskeyOptionsOut(
        options=passkeys.registration_options(s, dep.settings, principal, dep.keys)
    )


@router.post("/api/v1/me/passkeys", response_model=PasskeyOut, status_code=201)
def register_passkey(
    body: PasskeyRegistration, s: DbSession, dep: DeploymentDep, principal: FreshSession
) -> dict[str, Any]:
    """Register a passkey, step 2: the browser's answer, verified (origin, RP id, challenge,
    user verification) before the public key is kept."""
    row = passkeys.register(s, dep.settings, principal, body.credential, body.name)
    return passkeys.passkey_view(row)


@router.get("/api/v1/me/passkeys", response_model=list[PasskeyOut])
def my_passkeys(
    s: DbSession, principal: Annotated[Principal, require_session()]
) -> list[dict[str, Any]]:
    return passkeys.list_mine(s, principal)


@router.delete("/api/v1/me/passkeys/{passkey_id}", status_code=204, response_class=Response)
def remove_passkey(passkey_id: PasskeyId, s: DbSession, principal: FreshSession) -> Response:
    """Remove a passkey (needs a fresh re-authentication)."""
    passkeys.remove(s, principal, passkey_id)
    return Response(status_code=204)
