"""Face crops and provenance, only for faces of collections the caller's organisation may
search (404 otherwise). Viewing a crop is audited (`result.viewed`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from facesearch.api.deps import CurrentPrincipal, DbSession, DeploymentDep, need_any
from facesearch.api.ids import CollectionIdOut, CropUrl, FaceId, FaceIdOut, ImageUrl, Source
from facesearch.gallery import faces
from facesearch.security.roles import Scope

router = APIRouter(tags=["faces"])


class FaceOut(BaseModel):
    id: FaceIdOut
    collection_id: CollectionIdOut
    collection: str | None
    source: Source | None
    source_kind: str | None
    media_url: str | None
    frame_time: float | None
    box: list[int]
    quality: float
    low_quality: bool
    model_id: str
    ingested_at: str | None
    crop_url: CropUrl
    image_url: ImageUrl = Field(
        description="the source image the face was found in, when its collection kept images"
    )
    width: int | None = Field(description="the source image's width in pixels")
    height: int | None = Field(description="the source image's height in pixels")


@router.get(
    "/api/v1/faces/{face_id}/crop",
    summary="The JPEG crop of a face (audited)",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def get_crop(
    face_id: FaceId, dep: DeploymentDep, db: DbSession, principal: CurrentPrincipal
) -> Response:
    need_any(principal, Scope.SEARCH, Scope.REVIEW)
    data = faces.view_crop(dep, db, principal, face_id)
    return Response(
        content=data, media_type="image/jpeg", headers={"Cache-Control": "no-store, private"}
    )


@router.get(
    "/api/v1/faces/{face_id}/image",
    summary="The source image a face was found in (audited; when its collection kept images)",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}},
    },
)
def get_image(
    face_id: FaceId, dep: DeploymentDep, db: DbSession, principal: CurrentPrincipal
) -> Response:
    need_any(principal, Scope.SEARCH, Scope.REVIEW)
    data, media_type = faces.view_image(dep, db, principal, face_id)
    return Response(
        content=data, media_type=media_type, headers={"Cache-Control": "no-store, private"}
    )


@router.get(
    "/api/v1/faces/{face_id}",
    response_model=FaceOut,
    summary="A face's provenance, geometry and quality",
)
def get_face(face_id: FaceId, db: DbSession, principal: CurrentPrincipal) -> dict[str, Any]:
    need_any(principal, Scope.SEARCH, Scope.REVIEW)
    return faces.face_view(db, principal, face_id)
