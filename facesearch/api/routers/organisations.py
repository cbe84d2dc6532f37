"""Organisations (tenants). Only the platform administrator sees or creates them: the client
list is visible to nobody else. No counts of searches are exposed here."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from facesearch.api.deps import DbSession, Principal, require
from facesearch.api.ids import OrganisationId, OrganisationIdOut
from facesearch.security import admin
from facesearch.security.roles import Role, Scope

router = APIRouter(tags=["organisations"])

PlatformAdmin = Annotated[Principal, require(Scope.ADMIN, roles={Role.PLATFORM_ADMIN})]


class OrgCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class OrgOut(BaseModel):
    id: OrganisationIdOut
    name: str
    disabled: bool
    created_at: datetime
    users: int


@router.get("/api/v1/organisations", response_model=list[OrgOut])
def list_orgs(principal: PlatformAdmin, s: DbSession) -> list[dict[str, Any]]:
    return admin.list_organisations(s)


@router.post("/api/v1/organisations", response_model=OrgOut, status_code=201)
def create_org(body: OrgCreate, principal: PlatformAdmin, s: DbSession) -> dict[str, Any]:
    org = admin.create_organisation(s, principal, body.name)
    return admin.organisation_view(s, org)


@router.get("/api/v1/organisations/{org_id}", response_model=OrgOut)
def get_org(org_id: OrganisationId, principal: PlatformAdmin, s: DbSession) -> dict[str, Any]:
    return admin.get_organisation(s, org_id)
