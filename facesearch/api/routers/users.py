"""An organisation administrator manages the users of its own organisation. Users of another
organisation do not exist here (404)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from facesearch.api.deps import DbSession, Id, Principal, require
from facesearch.security import admin
from facesearch.security.roles import Role, Scope

router = APIRouter(tags=["users"])

OrgAdmin = Annotated[Principal, require(Scope.ADMIN, roles={Role.ORG_ADMIN})]


class UserOut(BaseModel):
    id: int
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
def get_user(user_id: Id, principal: OrgAdmin, s: DbSession) -> dict[str, Any]:
    return admin.get_user(s, principal, user_id)


@router.put("/api/v1/users/{user_id}/roles", response_model=UserOut)
def set_roles(user_id: Id, body: RolesBody, principal: OrgAdmin, s: DbSession) -> dict[str, Any]:
    return admin.set_roles(s, principal, user_id, body.roles)


@router.post("/api/v1/users/{user_id}/disable", response_model=UserOut)
def disable(user_id: Id, principal: OrgAdmin, s: DbSession) -> dict[str, Any]:
    return admin.disable_user(s, principal, user_id)
