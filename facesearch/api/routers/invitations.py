"""Invitations: the only way an account comes to exist.

An organisation administrator invites people into its own organisation (any organisation role);
the platform administrator invites the administrators of any organisation. Invitations are single
use, expire, and bind the new account to one organisation and its roles. Accepting is public:
the one-time token is the credential."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from facesearch.api.deps import (
    DbSession,
    DeploymentDep,
    Principal,
    client_ip,
    enforce_rate_limit,
    require,
)
from facesearch.errors import NotFoundError
from facesearch.security import accounts, clock
from facesearch.store.accounts import Invitation

router = APIRouter(tags=["invitations"])

Admin = Annotated[Principal, require("admin", roles={"org_admin", "platform_admin"})]
InvitationId = Annotated[int, Path(ge=1, le=2_147_483_647)]


class InviteBody(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    roles: list[str] = Field(min_length=1, max_length=6)
    org_id: int | None = Field(default=None, ge=1, le=2_147_483_647,
                               description="required for platform administrators")
    expires_in_hours: int = Field(default=accounts.INVITATION_HOURS, ge=1,
                                  le=accounts.MAX_INVITATION_HOURS)


class InvitationOut(BaseModel):
    id: int
    org_id: int | None
    email: str
    roles: list[str]
    created_at: datetime
    expires_at: datetime
    state: str


class InvitationCreated(InvitationOut):
    token: str  # shown once
    link: str


class AcceptBody(BaseModel):
    token: str = Field(min_length=10, max_length=200)
    password: str = Field(min_length=1, max_length=1024)
    display_name: str = Field(default="", max_length=200)


class Accepted(BaseModel):
    user_id: int
    email: str
    next: str


def _out(row: Invitation) -> dict[str, object]:
    return {"id": row.id, "org_id": row.org_id, "email": row.email, "roles": list(row.roles),
            "created_at": clock.aware(row.created_at), "expires_at": clock.aware(row.expires_at),
            "state": accounts.invitation_state(row)}


def _visible(row: Invitation | None, principal: Principal) -> bool:
    if row is None:
        return False
    if principal.is_platform_admin:
        return row.created_by == principal.user_id
    return principal.org_id is not None and row.org_id == principal.org_id


@router.post("/api/v1/invitations", response_model=InvitationCreated, status_code=201)
def invite(body: InviteBody, request: Request, principal: Admin, s: DbSession,
           dep: DeploymentDep) -> dict[str, object]:
    if principal.is_platform_admin:
        if body.org_id is None:
            raise HTTPException(422, detail="name the organisation (org_id) to invite into")
        if list(dict.fromkeys(body.roles)) != ["org_admin"]:
            raise HTTPException(403, detail="the platform administrator invites organisation "
                                            "administrators only")
        org_id: int = body.org_id
    else:
        if principal.org_id is None or (body.org_id is not None
                                        and body.org_id != principal.org_id):
            raise NotFoundError(f"no organisation {body.org_id}")
        org_id = principal.org_id
    try:
        new = accounts.create_invitation(
            s, org_id=org_id, email=body.email, roles=body.roles,
            created_by=principal.user_id, hours=body.expires_in_hours, ip=client_ip(request))
    except accounts.AccountError as exc:
        raise HTTPException(exc.status, detail=str(exc)) from None
    return {**_out(new.row), "token": new.token,
            "link": accounts.enrolment_link(dep.settings, new.token)}


@router.get("/api/v1/invitations", response_model=list[InvitationOut])
def list_invitations(principal: Admin, s: DbSession) -> list[dict[str, object]]:
    query = select(Invitation).order_by(Invitation.id)
    if principal.is_platform_admin:
        query = query.where(Invitation.created_by == principal.user_id)
    else:
        query = query.where(Invitation.org_id == principal.org_id)
    return [_out(r) for r in s.scalars(query)]


@router.delete("/api/v1/invitations/{invitation_id}", response_model=InvitationOut)
def revoke(invitation_id: InvitationId, request: Request, principal: Admin,
           s: DbSession) -> dict[str, object]:
    row = s.get(Invitation, invitation_id)
    if row is None or not _visible(row, principal):
        raise NotFoundError(f"no invitation {invitation_id}")
    try:
        accounts.revoke_invitation(s, row, actor_user_id=principal.user_id,
                                   ip=client_ip(request))
    except accounts.AccountError as exc:
        raise HTTPException(exc.status, detail=str(exc)) from None
    return _out(row)


@router.post("/api/v1/invitations/accept", response_model=Accepted, status_code=201)
def accept(body: AcceptBody, request: Request, s: DbSession) -> Accepted:
    """Public: the invited person sets a password with the token from the link. Next: sign in
    and enrol the second factor."""
    enforce_rate_limit(request, "invitation:address", client_ip(request) or "unknown")
    try:
        user = accounts.accept_invitation(s, body.token, body.password,
                                          display_name=body.display_name, ip=client_ip(request))
    except accounts.AccountError as exc:
        raise HTTPException(exc.status, detail=str(exc)) from None
    return Accepted(user_id=user.id, email=user.email,
                    next="sign in at /api/v1/auth/signin, then enrol the second factor at "
                         "/api/v1/auth/mfa/enrol")
