"""Collections of the caller's organisation: list (own and shared), create (legal basis and
retention required), share read-only with the organisation that handed out a share code (it
accepts before the collection enters its search scope), delete. Management needs the
`admin` scope of an organisation administrator; a shared collection is read-only for its holder
(changing it answers 404, as for a missing id)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from facesearch.api.deps import CurrentPrincipal, DbSession, DeploymentDep, Principal, require
from facesearch.api.ids import CollectionId, CollectionIdOut, ShareCodeIdOut, ShareId, ShareIdOut
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
    code: str = Field(
        min_length=8,
        max_length=200,
        description="the one-time share code the receiving organisation handed out",
    )


class ShareOut(BaseModel):
    id: ShareIdOut
    collection_id: CollectionIdOut
    collection: str | None
    organisation: str | None = Field(description="the other organisation")
    state: str = Field(description="offered (not searchable yet), accepted, or ended")
    created_at: str


class ShareList(BaseModel):
    total: int
    items: list[ShareOut]


class ShareCodeOut(BaseModel):
    id: ShareCodeIdOut
    code: str = Field(description="shown once; hand it to the organisation that will share")
    expires_at: str


class CollectionOut(BaseModel):
    id: CollectionIdOut
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
        default=None, description="organisations that accepted a share (owner only)"
    )
    shares: list[ShareOut] | None = Field(default=None, description="its shares (owner only)")
    owner: str | None = Field(default=None, description="the owner (shared collections only)")


class CollectionList(BaseModel):
    total: int
    items: list[CollectionOut]


class CollectionDeleted(BaseModel):
    id: CollectionIdOut
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
def get_collection(
    collection_id: CollectionId, db: DbSession, principal: CurrentPrincipal
) -> dict[str, Any]:
    return service.get_collection(db, principal, collection_id)


@router.delete(
    "/api/v1/collections/{collection_id}",
    response_model=CollectionDeleted,
    summary="Delete a collection with its images and faces",
)
def delete_collection(
    collection_id: CollectionId, dep: DeploymentDep, db: DbSession, principal: OrgAdmin
) -> dict[str, Any]:
    return service.delete_collection(dep, db, principal, collection_id)


@router.post(
    "/api/v1/collections/{collection_id}/shares",
    response_model=ShareOut,
    status_code=201,
    summary="Offer a collection read-only to the organisation that handed out a share code",
)
def post_share(
    collection_id: CollectionId, body: ShareIn, db: DbSession, principal: OrgAdmin
) -> dict[str, Any]:
    return service.share_collection(db, principal, collection_id, body.code)


@router.delete(
    "/api/v1/collections/{collection_id}/shares/{share_id}",
    response_model=CollectionOut,
    response_model_exclude_unset=True,
    summary="Withdraw a share of a collection",
)
def delete_share(
    collection_id: CollectionId, share_id: ShareId, db: DbSession, principal: OrgAdmin
) -> dict[str, Any]:
    return service.unshare_collection(db, principal, collection_id, share_id)


@router.post(
    "/api/v1/share-codes",
    response_model=ShareCodeOut,
    status_code=201,
    summary="A one-time code another organisation needs to share a collection with this one",
)
def post_share_code(db: DbSession, principal: OrgAdmin) -> dict[str, Any]:
    return service.new_share_code(db, principal)


@router.get(
    "/api/v1/shares/incoming",
    response_model=ShareList,
    summary="Collections offered to or shared with this organisation",
)
def get_incoming(db: DbSession, principal: OrgAdmin) -> dict[str, Any]:
    return service.list_incoming_shares(db, principal)


@router.post(
    "/api/v1/shares/{share_id}/accept",
    response_model=ShareOut,
    summary="Accept an offered share: the collection enters this organisation's search scope",
)
def accept_share(share_id: ShareId, db: DbSession, principal: OrgAdmin) -> dict[str, Any]:
    return service.accept_share(db, principal, share_id)


@router.delete(
    "/api/v1/shares/{share_id}",
    response_model=ShareOut,
    summary="Decline an offered share, or leave an accepted one",
)
def decline_share(share_id: ShareId, db: DbSession, principal: OrgAdmin) -> dict[str, Any]:
    return service.decline_share(db, principal, share_id)
