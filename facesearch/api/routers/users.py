"""An organisation administrator manages the users of its own organisation. Users of another
organisation do not exist here (404)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from facesearch.api.deps import DbSession, DeploymentDep, Principal, require
from facesearch.api.ids import UserId, UserIdOut
from facesearch.security import admin, lifecycle
from facesearch.security.roles import Role, Scope

router = APIRouter(tags=["users"])

OrgAdmin = Annotated[Principal, require(Scope.ADMIN, roles={Role.ORG_ADMIN})]
#: Sensitive: a session must have re-authenticated within `reauth_minutes`.
FreshOrgAdmin = Annotated[Principal, require(Scope.ADMIN, roles={Role.ORG_ADMIN}, fresh=True)]


class UserOut(BaseModel):
    id: UserIdOut
    email: str
    display_name: str
    roles: list[str]
    disabled: bool
    mfa_enrolled: bool
    locked: bool
    created_at: datetime
    last_login_at: datetime | None


class RolesBody(BaseModel):
    roles: list[str] = Field(min_length=1, max_length=6)


@router.get("/api/v1/users", response_model=list[UserOut])
def list_users(principal: OrgAdmin, s: DbSession) -> list[dict[str, Any]]:
    return admin.list_users(s, principal)


@router.get("/api/v1/users/{user_id}", response_model=UserOut)
def get_user(user_id: UserId, principal: OrgAdmin, s: DbSession) -> dict[str, Any]:
    return admin.get_user(s, principal, user_id)


@router.put("/api/v1/users/{user_id}/roles", response_model=UserOut)
def set_roles(
    user_id: UserId, body: RolesBody, principal: FreshOrgAdmin, s: DbSession
) -> dict[str, Any]:
    return admin.set_roles(s, principal, user_id, body.roles)


@router.post("/api/v1/users/{user_id}/disable", response_model=UserOut)
def disable(user_id: UserId, principal: OrgAdmin, s: DbSession) -> dict[str, Any]:
    return admin.disable_user(s, principal, user_id)


class ResetBody(BaseModel):
    expires_in_hours: int = Field(default=lifecycle.RESET_HOURS, ge=1, le=lifecycle.MAX_RESET_HOURS)
    reset_second_factor: bool = Field(
        default=False, description="also clear the second factor: the user enrols a new one"
    )


class ResetIssued(BaseModel):
    user_id: UserIdOut
    expires_at: datetime
    reset_second_factor: bool
    token: str  # shown once
    link: str


@router.post("/api/v1/users/{user_id}/password-reset", response_model=ResetIssued, status_code=201)
def issue_password_reset(
    user_id: UserId, body: ResetBody, principal: FreshOrgAdmin, s: DbSession, dep: DeploymentDep
) -> ResetIssued:
    """A one-time, expiring link for the user to set a new password (hand it over yourself;
    facesearch sends no e-mail). Using it ends the user's sessions."""
    new = lifecycle.issue_reset(
        s,
        principal,
        user_id,
        hours=body.expires_in_hours,
        reset_second_factor=body.reset_second_factor,
    )
    return ResetIssued(
        user_id=new.row.user_id,
        expires_at=new.row.expires_at,
        reset_second_factor=new.row.reset_second_factor,
        token=new.token,
        link=lifecycle.reset_link(dep.settings, new.token),
    )


@router.post("/api/v1/users/{user_id}/unlock", response_model=UserOut)
def unlock(user_id: UserId, principal: FreshOrgAdmin, s: DbSession) -> dict[str, Any]:
    """Clear the user's lockout and failure counts."""
    return admin.user_view(s, lifecycle.unlock(s, principal, user_id))
