"""Collections of the caller's organisation: list (own and shared), create (legal basis and
retention required), share read-only with a named organisation, delete. Management needs the
`admin` scope of an organisation administrator; a shared collection is read-only for its holder
(changing it answers 404, as for a missing id)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from facesearch.api.deps import CurrentPrincipal, DbSession, DeploymentDep, Id, Principal, require
from facesearch.gallery import collections as service
from facesearch.security.roles import Role, Scope

router = APIRouter(tags=["collections"])

OrgAdmin = Annotated[Principal, require(Scope.ADMIN, roles={Role.ORG_ADMIN})]


class CollectionIn(BaseModel):
    name: str = Field(min_length=1, max_length=service.NAME_MAX)
    legal_basis: str = Field(
        min_length=service.LEGAL_BASIS_MIN,
        max_length=service.LEGAL_BASIS_MAX,
        description="why the organisation may hold these images",
    )
    retention_days: int = Field(
        ge=service.RETENTION_MIN, le=service.RETENTION_MAX, description="days images are kept"
    )
    description: str = Field(default="", max_length=service.DESCRIPTION_MAX)
    model: Literal["sface", "dlib-onnx", "dlib"] | None = Field(
        default=None,
        description="face model of the collection (default: the deployment's, sface unless "
        "configured); a collection never mixes models",
    )


class ShareIn(BaseModel):
    organisation: str = Field(
        min_length=1, max_length=200, description="the exact name of the organisation to share with"
    )


class CollectionOut(BaseModel):
    id: int
    name: str
    description: str
    owned: bool
    access: str = Field(description="manage (owned) or read-only (shared with the organisation)")
    legal_basis: str | None
    retention_days: int | None
    model_id: str | None = Field(description="the face model of every face in the collection")
    files: int
    faces: int
    created_at: str
    shared_with: list[str] | None = Field(
        default=None, description="organisations it is shared with (owner only)"
    )
    owner: str | None = Field(default=None, description="the owner (shared collections only)")


class CollectionList(BaseModel):
    total: int
    items: list[CollectionOut]


class CollectionDeleted(BaseModel):
    id: int
    deleted: bool
    files: int
    faces: int


@router.get(
    "/api/v1/collections",
    response_model=CollectionList,
    response_model_exclude_unset=True,
    summary="Collections the organisation owns or may search",
)
def get_collections(db: DbSession, principal: CurrentPrincipal) -> dict[str, Any]:
    return service.list_collections(db, principal)


@router.post(
    "/api/v1/collections",
    status_code=201,
    response_model=CollectionOut,
    response_model_exclude_unset=True,
    summary="Create a collection",
)
def post_collection(
    body: CollectionIn, dep: DeploymentDep, db: DbSession, principal: OrgAdmin
) -> dict[str, Any]:
    return service.create_collection(
        dep,
        db,
        principal,
        name=body.name,
        legal_basis=body.legal_basis,
        retention_days=body.retention_days,
        description=body.description,
        model=body.model,
    )


@router.get(
    "/api/v1/collections/{collection_id}",
    response_model=CollectionOut,
    response_model_exclude_unset=True,
    summary="One collection",
)
def get_collection(collection_id: Id, db: DbSession, principal: CurrentPrincipal) -> dict[str, Any]:
    return service.get_collection(db, principal, collection_id)


@router.delete(
    "/api/v1/collections/{collection_id}",
    response_model=CollectionDeleted,
    summary="Delete a collection with its images and faces",
)
def delete_collection(
    collection_id: Id, dep: DeploymentDep, db: DbSession, principal: OrgAdmin
) -> dict[str, Any]:
    return service.delete_collection(dep, db, principal, collection_id)


@router.post(
    "/api/v1/collections/{collection_id}/shares",
    response_model=CollectionOut,
    response_model_exclude_unset=True,
    summary="Share a collection read-only with a named organisation",
)
def post_share(
    collection_id: Id, body: ShareIn, db: DbSession, principal: OrgAdmin
) -> dict[str, Any]:
    return service.share_collection(db, principal, collection_id, body.organisation)


@router.delete(
    "/api/v1/collections/{collection_id}/shares/{organisation}",
    response_model=CollectionOut,
    response_model_exclude_unset=True,
    summary="Stop sharing a collection with an organisation",
)
def delete_share(
    collection_id: Id, organisation: str, db: DbSession, principal: OrgAdmin
) -> dict[str, Any]:
    return service.unshare_collection(db, principal, collection_id, organisation)
