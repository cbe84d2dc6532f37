"""Face crops and provenance, only for faces of collections the caller's organisation may
search (404 otherwise). Viewing a crop is audited (`result.viewed`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from facesearch.api.deps import CurrentPrincipal, DbSession, DeploymentDep
from facesearch.api.routers._common import Id, need_any
from facesearch.search.casework import crop_url, view_crop
from facesearch.security.tenancy import display_name, org_of, visible_face
from facesearch.store.models import Collection, SourceFile

router = APIRouter(tags=["faces"])


@router.get("/api/v1/faces/{face_id}/crop", summary="The JPEG crop of a face (audited)",
            response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}})
def get_crop(face_id: Id, dep: DeploymentDep, db: DbSession,
             principal: CurrentPrincipal) -> Response:
    need_any(principal, "search", "review")
    data = view_crop(dep, db, principal, face_id)
    return Response(content=data, media_type="image/jpeg",
                    headers={"Cache-Control": "no-store, private"})


@router.get("/api/v1/faces/{face_id}", summary="A face's provenance, geometry and quality")
def get_face(face_id: Id, db: DbSession, principal: CurrentPrincipal) -> dict[str, Any]:
    need_any(principal, "search", "review")
    face = visible_face(db, org_of(principal), face_id)
    file = db.get(SourceFile, face.file_id)
    collection = db.get(Collection, face.collection_id)
    return {
        "id": face.id, "collection_id": face.collection_id,
        "collection": display_name(collection) if collection else None,
        "source": file.source if file else None,
        "source_kind": file.source_kind if file else None,
        "media_url": file.media_url if file else None,
        "frame_time": face.frame_time, "box": face.box, "quality": face.quality,
        "low_quality": face.low_quality, "model_id": face.model_id,
        "ingested_at": file.ingested_at.isoformat() if file else None,
        "crop_url": crop_url(face.id),
    }
