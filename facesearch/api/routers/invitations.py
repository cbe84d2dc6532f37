"""Invitations: the only way an account comes to exist.

An organisation administrator invites people into its own organisation (any organisation role);
the platform administrator invites the administrators of any organisation. Invitations are single
use, expire, and bind the new account to one organisation and its roles. Accepting is public:
the one-time token is the credential."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from facesearch.api.deps import (
    DbSession,
    DeploymentDep,
    Principal,
    client_ip,
    enforce_rate_limit,
    require,
)
from facesearch.api.ids import InvitationId, InvitationIdOut, OrganisationId, OrganisationIdOut
from facesearch.security import accounts, admin
from facesearch.security.roles import Role, Scope

router = APIRouter(tags=["invitations"])

Admin = Annotated[Principal, require(Scope.ADMIN, roles={Role.ORG_ADMIN, Role.PLATFORM_ADMIN})]
#: Inviting is sensitive: a session must have re-authenticated within `reauth_minutes`.
FreshAdmin = Annotated[
    Principal,
    require(Scope.ADMIN, roles={Role.ORG_ADMIN, Role.PLATFORM_ADMIN}, fresh=True),
]


class InviteBody(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    roles: list[str] = Field(min_length=1, max_length=6)
    org_id: OrganisationId | None = Field(
        default=None, description="required for platform administrators"
    )
    expires_in_hours: int = Field(
        default=accounts.INVITATION_HOURS, ge=1, le=accounts.MAX_INVITATION_HOURS
    )


class InvitationOut(BaseModel):
    id: InvitationIdOut
    org_id: OrganisationIdOut | None
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
    """The same answer whether or not the address already had an account."""

    email: str
    next: str


@router.post("/api/v1/invitations", response_model=InvitationCreated, status_code=201)
def invite(
    body: InviteBody, principal: FreshAdmin, s: DbSession, dep: DeploymentDep
) -> dict[str, Any]:
    new = admin.invite(
        s,
        principal,
        email=body.email,
        roles=body.roles,
        org_id=body.org_id,
        hours=body.expires_in_hours,
    )
    return {
        **admin.invitation_view(new.row),
        "token": new.token,
        "link": accounts.enrolment_link(dep.settings, new.token),
    }


@router.get("/api/v1/invitations", response_model=list[InvitationOut])
def list_invitations(principal: Admin, s: DbSession) -> list[dict[str, Any]]:
    return admin.list_invitations(s, principal)


@router.delete("/api/v1/invitations/{invitation_id}", response_model=InvitationOut)
def revoke(invitation_id: InvitationId, principal: Admin, s: DbSession) -> dict[str, Any]:
    return admin.revoke_invitation(s, principal, invitation_id)


@router.post("/api/v1/invitations/accept", response_model=Accepted, status_code=201)
def accept(body: AcceptBody, request: Request, s: DbSession) -> Accepted:
    """Public: the invited person sets a password with the token from the link. Next: sign in
    and enrol the second factor."""
    enforce_rate_limit(request, "invitation:address", client_ip(request) or "unknown")
    email = accounts.accept_invitation(
        s, body.token, body.password, display_name=body.display_name, ip=client_ip(request)
    )
    return Accepted(
        email=email,
        next="sign in at /api/v1/auth/signin, then enrol the second factor at "
        "/api/v1/auth/mfa/enrol",
    )
