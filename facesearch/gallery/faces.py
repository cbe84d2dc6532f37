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
        "image_url": image_url(face.id) if file and file.image_blob else None,
        "width": file.width if file else None,
        "height": file.height if file else None,
    }


#: Stored image formats served as they are (anything else is re-encoded as JPEG).
IMAGE_MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


def image_url(face_id: int) -> str:
    return f"/api/v1/faces/{face_id}/image"


def view_image(dep: Deployment, session: Session, actor: Actor, face_id: int) -> tuple[bytes, str]:
    """The source image a face was found in (its box is on this image), for a face in a
    collection the organisation may search, when its collection kept images (`store_images`);
    404 otherwise. Every view is on the record (`result.image_viewed`) before the bytes leave.
    A stored image in a format browsers may not show is re-encoded as JPEG."""
    org_id = org_of(actor)
    face = visible_face(session, org_id, face_id)
    file = session.get(SourceFile, face.file_id)
    if file is None or file.image_blob is None:
        raise NotFound(f"face {face.id} has no stored source image")
    try:
        data = dep.blobs.get(file.image_blob)
    except (OSError, ValueError) as exc:
        raise NotFound(f"face {face.id} has no readable source image") from exc
    media_type = IMAGE_MEDIA_TYPES.get((file.format or "").upper())
    if media_type is None:
        data, media_type = _as_jpeg(data), "image/jpeg"
    audit.record_for(
        session,
        actor,
        "result.image_viewed",
        org_id=org_id,
        target_type="face",
        target_id=face.id,
        details={"face_id": face.id, "collection_id": face.collection_id, "file_id": file.id},
    )
    session.commit()
    return data, media_type


def _as_jpeg(data: bytes) -> bytes:
    import io

    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as img:
            out = io.BytesIO()
            ImageOps.exif_transpose(img).convert("RGB").save(out, "JPEG", quality=90)
            return out.getvalue()
    except (OSError, ValueError) as exc:
        raise NotFound("the stored source image cannot be shown") from exc


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
