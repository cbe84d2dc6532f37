"""Collections of the caller's organisation: list (own and shared), create (legal basis and
retention required), share read-only with a named organisation, delete. Management needs the
`admin` scope of an organisation administrator; a shared collection is read-only for its holder
(changing it answers 404, as for a missing id)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from facesearch.api.deps import CurrentPrincipal, DbSession, DeploymentDep, Principal, require
from facesearch.api.routers._common import Id, service_errors
from facesearch.ingest import collections as service

router = APIRouter(tags=["collections"])

OrgAdmin = Annotated[Principal, require("admin", roles={"org_admin"})]


class CollectionIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    legal_basis: str = Field(min_length=10, max_length=2000,
                             description="why the organisation may hold these images")
    retention_days: int = Field(ge=1, le=36500, description="days images are kept")
    description: str = Field(default="", max_length=2000)


class ShareIn(BaseModel):
    organisation: str = Field(min_length=1, max_length=200,
                              description="the exact name of the organisation to share with")


@router.get("/api/v1/collections", summary="Collections the organisation owns or may search")
def get_collections(db: DbSession, principal: CurrentPrincipal) -> dict[str, Any]:
    return service.list_collections(db, principal)


@router.post("/api/v1/collections", status_code=201, summary="Create a collection")
def post_collection(body: CollectionIn, db: DbSession, principal: OrgAdmin) -> dict[str, Any]:
    with service_errors():
        return service.create_collection(
            db, principal, name=body.name, legal_basis=body.legal_basis,
            retention_days=body.retention_days, description=body.description,
        )


@router.get("/api/v1/collections/{collection_id}", summary="One collection")
def get_collection(collection_id: Id, db: DbSession,
                   principal: CurrentPrincipal) -> dict[str, Any]:
    return service.get_collection(db, principal, collection_id)


@router.delete("/api/v1/collections/{collection_id}",
               summary="Delete a collection with its images and faces")
def delete_collection(collection_id: Id, dep: DeploymentDep, db: DbSession,
                      principal: OrgAdmin) -> dict[str, Any]:
    with service_errors():
        return service.delete_collection(dep, db, principal, collection_id)


@router.post("/api/v1/collections/{collection_id}/shares",
             summary="Share a collection read-only with a named organisation")
def post_share(collection_id: Id, body: ShareIn, db: DbSession,
               principal: OrgAdmin) -> dict[str, Any]:
    with service_errors():
        return service.share_collection(db, principal, collection_id, body.organisation)


@router.delete("/api/v1/collections/{collection_id}/shares/{organisation}",
               summary="Stop sharing a collection with an organisation")
def delete_share(collection_id: Id, organisation: str, db: DbSession,
                 principal: OrgAdmin) -> dict[str, Any]:
    with service_errors():
        return service.unshare_collection(db, principal, collection_id, organisation)
