"""Organisations (tenants). Only the platform administrator sees or creates them: the client
list is visible to nobody else. No counts of searches are exposed here."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from facesearch.api.deps import DbSession, Principal, client_ip, require
from facesearch.errors import NotFoundError
from facesearch.security import accounts, clock
from facesearch.store.accounts import Organisation, User

router = APIRouter(tags=["organisations"])

PlatformAdmin = Annotated[Principal, require("admin", roles={"platform_admin"})]
OrgId = Annotated[int, Path(ge=1, le=2_147_483_647)]


class OrgCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class OrgOut(BaseModel):
    id: int
    name: str
    disabled: bool
    created_at: datetime
    users: int


def _out(s: DbSession, org: Organisation) -> OrgOut:
    users = s.scalar(select(func.count(User.id)).where(User.org_id == org.id)) or 0
    return OrgOut(id=org.id, name=org.name, disabled=org.disabled,
                  created_at=clock.aware(org.created_at), users=int(users))


@router.get("/api/v1/organisations", response_model=list[OrgOut])
def list_orgs(principal: PlatformAdmin, s: DbSession) -> list[OrgOut]:
    return [_out(s, o) for o in s.scalars(select(Organisation).order_by(Organisation.id))]


@router.post("/api/v1/organisations", response_model=OrgOut, status_code=201)
def create_org(body: OrgCreate, request: Request, principal: PlatformAdmin,
               s: DbSession) -> OrgOut:
    try:
        org = accounts.create_organisation(s, body.name, actor_user_id=principal.user_id,
                                           ip=client_ip(request))
    except accounts.AccountError as exc:
        raise HTTPException(exc.status, detail=str(exc)) from None
    return _out(s, org)


@router.get("/api/v1/organisations/{org_id}", response_model=OrgOut)
def get_org(org_id: OrgId, principal: PlatformAdmin, s: DbSession) -> OrgOut:
    org = s.get(Organisation, org_id)
    if org is None:
        raise NotFoundError(f"no organisation {org_id}")
    return _out(s, org)
