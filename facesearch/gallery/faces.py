"""Faces: provenance for a tenant, and the face crop, whose every view is audited (through the
API for an organisation's users, through the CLI for the operator)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from facesearch.deployment import Deployment
from facesearch.errors import BlobIntegrityError, NotFound
from facesearch.security import audit
from facesearch.security.actor import Actor, system_actor
from facesearch.security.tenancy import display_name, org_of, visible_face
from facesearch.store.gallery import Collection, Face, SourceFile

log = logging.getLogger("facesearch.gallery")


def crop_url(face_id: int) -> str:
    return f"/api/v1/faces/{face_id}/crop"


def face_view(session: Session, actor: Actor, face_id: int) -> dict[str, Any]:
    """A face's provenance, geometry and quality, in a collection the organisation may search.
    The read is on the record (`face.provenance_viewed`) before it is answered."""
    face = visible_face(session, org_of(actor), face_id)
    file = session.get(SourceFile, face.file_id)
    collection = session.get(Collection, face.collection_id)
    audit.record_for(
        session,
        actor,
        "face.provenance_viewed",
        target_type="face",
        target_id=face.id,
        details={"face_id": face.id, "collection_id": face.collection_id},
    )
    session.commit()
    return {
        "id": face.id,
        "collection_id": face.collection_id,
        "collection": display_name(collection) if collection else None,
        "source": file.source if file else None,
        "source_kind": file.source_kind if file else None,
        "media_url": file.media_url if file else None,
        "frame_time": face.frame_time,
        "box": face.box,
        "quality": face.quality,
        "low_quality": face.low_quality,
        "model_id": face.model_id,
        "ingested_at": file.ingested_at.isoformat() if file else None,
        "crop_url": crop_url(face.id),
    }


def _audited_crop(
    dep: Deployment, session: Session, actor: Actor, face: Face, org_id: int | None
) -> bytes:
    if face.crop_blob is None:
        raise NotFound("the face has no stored crop")
    try:
        data = dep.blobs.get(face.crop_blob)
    except (OSError, ValueError) as exc:
        if isinstance(exc, BlobIntegrityError):  # tampering is the operator's business
            log.error("face %s: %s", face.id, exc)
        raise NotFound("the face has no readable crop") from exc
    audit.record_for(
        session,
        actor,
        "result.viewed",
        org_id=org_id,
        target_type="face",
        target_id=face.id,
        details={"face_id": face.id, "collection_id": face.collection_id},
    )
    session.commit()  # the view is on the record before the bytes leave
    return data


def view_crop(dep: Deployment, session: Session, actor: Actor, face_id: int) -> bytes:
    """The JPEG crop of a face in a collection the organisation may search; 404 otherwise."""
    org_id = org_of(actor)
    return _audited_crop(dep, session, actor, visible_face(session, org_id, face_id), org_id)


def operator_crop(dep: Deployment, session: Session, face_id: int) -> bytes:
    """The operator's view of a crop at the command line (any collection), audited as `cli`."""
    face = session.get(Face, face_id)
    if face is None:
        raise NotFound("no such face")
    collection = session.get(Collection, face.collection_id)
    return _audited_crop(
        dep, session, system_actor(), face, collection.org_id if collection else None
    )
