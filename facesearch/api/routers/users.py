"""An organisation administrator manages the users of its own organisation. Users of another
organisation do not exist here (404)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from facesearch.api.deps import DbSession, Principal, client_ip, require
from facesearch.errors import NotFoundError
from facesearch.security import accounts, clock
from facesearch.store.accounts import User

router = APIRouter(tags=["users"])

OrgAdmin = Annotated[Principal, require("admin", roles={"org_admin"})]
UserId = Annotated[int, Path(ge=1, le=2_147_483_647)]


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


def _out(user: User) -> UserOut:
    return UserOut(
        id=user.id, email=user.email, display_name=user.display_name, roles=list(user.roles),
        disabled=user.disabled, mfa_enrolled=user.totp_verified_at is not None,
        locked=accounts.locked_until(user) is not None,
        created_at=clock.aware(user.created_at),
        last_login_at=clock.aware(user.last_login_at) if user.last_login_at else None,
    )


def _org_user(s: DbSession, principal: Principal, user_id: int) -> User:
    user = s.get(User, user_id)
    if user is None or principal.org_id is None or user.org_id != principal.org_id:
        raise NotFoundError(f"no user {user_id}")
    return user


@router.get("/api/v1/users", response_model=list[UserOut])
def list_users(principal: OrgAdmin, s: DbSession) -> list[UserOut]:
    rows = s.scalars(select(User).where(User.org_id == principal.org_id).order_by(User.id))
    return [_out(u) for u in rows]


@router.get("/api/v1/users/{user_id}", response_model=UserOut)
def get_user(user_id: UserId, principal: OrgAdmin, s: DbSession) -> UserOut:
    return _out(_org_user(s, principal, user_id))


@router.put("/api/v1/users/{user_id}/roles", response_model=UserOut)
def set_roles(user_id: UserId, body: RolesBody, request: Request, principal: OrgAdmin,
              s: DbSession) -> UserOut:
    user = _org_user(s, principal, user_id)
    try:
        accounts.change_roles(s, user, body.roles, actor_user_id=principal.user_id,
                              ip=client_ip(request))
    except accounts.AccountError as exc:
        raise HTTPException(exc.status, detail=str(exc)) from None
    return _out(user)


@router.post("/api/v1/users/{user_id}/disable", response_model=UserOut)
def disable(user_id: UserId, request: Request, principal: OrgAdmin, s: DbSession) -> UserOut:
    user = _org_user(s, principal, user_id)
    try:
        accounts.disable_user(s, user, actor_user_id=principal.user_id, ip=client_ip(request))
    except accounts.AccountError as exc:
        raise HTTPException(exc.status, detail=str(exc)) from None
    return _out(user)
