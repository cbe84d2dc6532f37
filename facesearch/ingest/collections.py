"""Collection management for organisations: create (with legal basis and retention, both
required), list own and shared, share read-only with a named organisation, delete.

Only the owner organisation manages a collection; an organisation it is shared with may search
it and nothing else (for that organisation, management calls answer exactly like a missing id).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from facesearch.deployment import Deployment
from facesearch.errors import FacesearchError
from facesearch.search.casework import InvalidRequest
from facesearch.security import audit
from facesearch.security.tenancy import (
    Actor,
    display_name,
    managed_collection,
    org_by_name,
    org_of,
    qualified_name,
    searchable_collection,
    searchable_collection_ids,
)
from facesearch.store.accounts import CollectionShare, Organisation
from facesearch.store.casework import IngestTask
from facesearch.store.models import Collection, Face, SourceFile

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")
LEGAL_BASIS_MIN, LEGAL_BASIS_MAX = 10, 2000
RETENTION_MIN, RETENTION_MAX = 1, 36500


class Conflict(FacesearchError):
    """The request contradicts the present state (API: 409)."""


def _counts(session: Session, ids: list[int]) -> dict[int, tuple[int, int]]:
    if not ids:
        return {}
    files = dict(session.execute(
        select(SourceFile.collection_id, func.count(SourceFile.id))
        .where(SourceFile.collection_id.in_(ids)).group_by(SourceFile.collection_id)
    ).all())
    faces = dict(session.execute(
        select(Face.collection_id, func.count(Face.id))
        .where(Face.collection_id.in_(ids)).group_by(Face.collection_id)
    ).all())
    return {i: (int(files.get(i, 0)), int(faces.get(i, 0))) for i in ids}


def collection_dict(
    session: Session, collection: Collection, org_id: int,
    counts: dict[int, tuple[int, int]] | None = None,
) -> dict[str, Any]:
    owned = collection.org_id == org_id
    n_files, n_faces = (counts or _counts(session, [collection.id])).get(collection.id, (0, 0))
    out: dict[str, Any] = {
        "id": collection.id,
        "name": display_name(collection),
        "description": collection.description,
        "owned": owned,
        "access": "manage" if owned else "read-only",
        "legal_basis": collection.legal_basis,
        "retention_days": collection.retention_days,
        "files": n_files,
        "faces": n_faces,
        "created_at": collection.created_at.isoformat(),
    }
    if owned:
        out["shared_with"] = [
            name for name in session.scalars(
                select(Organisation.name).join(
                    CollectionShare, CollectionShare.org_id == Organisation.id
                ).where(CollectionShare.collection_id == collection.id)
                .order_by(Organisation.name)
            )
        ]
    else:
        owner = session.get(Organisation, collection.org_id) if collection.org_id else None
        out["owner"] = owner.name if owner else None
    return out


def list_collections(session: Session, actor: Actor) -> dict[str, Any]:
    org_id = org_of(actor)
    ids = searchable_collection_ids(session, org_id)
    counts = _counts(session, ids)
    rows: list[Collection] = list(session.scalars(
        select(Collection).where(Collection.id.in_(ids)).order_by(Collection.id)
    )) if ids else []
    items = [collection_dict(session, c, org_id, counts) for c in rows]
    return {"total": len(items), "items": items}


def get_collection(session: Session, actor: Actor, collection_id: int) -> dict[str, Any]:
    org_id = org_of(actor)
    return collection_dict(session, searchable_collection(session, org_id, collection_id), org_id)


def create_collection(
    session: Session, actor: Actor, *, name: str, legal_basis: str, retention_days: int,
    description: str = "",
) -> dict[str, Any]:
    org_id = org_of(actor)
    name = (name or "").strip()
    if not NAME.match(name):
        raise InvalidRequest("name", "1 to 100 characters: letters, digits, space and . _ -")
    legal_basis = (legal_basis or "").strip()
    if not LEGAL_BASIS_MIN <= len(legal_basis) <= LEGAL_BASIS_MAX:
        raise InvalidRequest(
            "legal_basis", f"state the legal basis for holding these images "
            f"({LEGAL_BASIS_MIN} to {LEGAL_BASIS_MAX} characters)"
        )
    if isinstance(retention_days, bool) or not RETENTION_MIN <= retention_days <= RETENTION_MAX:
        raise InvalidRequest("retention_days", f"{RETENTION_MIN} to {RETENTION_MAX} days")
    description = (description or "").strip()
    if len(description) > 2000:
        raise InvalidRequest("description", "at most 2000 characters")
    stored = qualified_name(org_id, name)
    if session.scalar(select(Collection.id).where(Collection.name == stored)) is not None:
        raise Conflict(f"this organisation already has a collection named {name!r}")
    from facesearch.vision.dlib_model import MODEL_ID

    collection = Collection(name=stored, description=description, org_id=org_id,
                            legal_basis=legal_basis, retention_days=retention_days,
                            model_id=MODEL_ID)
    session.add(collection)
    session.flush()
    audit.record(session, action="collection.created", actor_user_id=actor.user_id,
                 actor_key_id=actor.api_key_id, org_id=org_id, target_type="collection",
                 target_id=collection.id, ip=actor.ip,
                 details={"name": name, "legal_basis": legal_basis,
                          "retention_days": retention_days})
    session.commit()
    return collection_dict(session, collection, org_id)


def share_collection(
    session: Session, actor: Actor, collection_id: int, organisation: str
) -> dict[str, Any]:
    """Grant read-only search access to a named organisation (idempotent)."""
    org_id = org_of(actor)
    collection = managed_collection(session, org_id, collection_id)
    target = org_by_name(session, (organisation or "").strip())
    if target.id == org_id:
        raise InvalidRequest("organisation", "a collection is always available to its owner")
    exists = session.scalar(select(CollectionShare.id).where(
        CollectionShare.collection_id == collection.id, CollectionShare.org_id == target.id))
    if exists is None:
        session.add(CollectionShare(collection_id=collection.id, org_id=target.id))
        session.flush()
        audit.record(session, action="collection.shared", actor_user_id=actor.user_id,
                     actor_key_id=actor.api_key_id, org_id=org_id, target_type="collection",
                     target_id=collection.id, ip=actor.ip,
                     details={"with_org_id": target.id, "with_org": target.name,
                              "access": "read-only"})
        session.commit()
    return collection_dict(session, collection, org_id)


def unshare_collection(
    session: Session, actor: Actor, collection_id: int, organisation: str
) -> dict[str, Any]:
    org_id = org_of(actor)
    collection = managed_collection(session, org_id, collection_id)
    target = org_by_name(session, (organisation or "").strip())
    share = session.scalar(select(CollectionShare).where(
        CollectionShare.collection_id == collection.id, CollectionShare.org_id == target.id))
    if share is not None:
        session.delete(share)
        audit.record(session, action="collection.unshared", actor_user_id=actor.user_id,
                     actor_key_id=actor.api_key_id, org_id=org_id, target_type="collection",
                     target_id=collection.id, ip=actor.ip,
                     details={"with_org_id": target.id, "with_org": target.name})
        session.commit()
    return collection_dict(session, collection, org_id)


def delete_collection(
    dep: Deployment, session: Session, actor: Actor, collection_id: int
) -> dict[str, Any]:
    """Delete a collection with its files, faces, index shard and unshared blobs. Past search
    results keep their face ids and scores (the audit trail stays whole)."""
    org_id = org_of(actor)
    collection = managed_collection(session, org_id, collection_id)
    busy = session.scalar(select(IngestTask.id).where(
        IngestTask.collection_id == collection.id, IngestTask.status.in_(("queued", "running"))))
    if busy is not None:
        raise Conflict(f"job {busy} is still ingesting into this collection; wait for it")
    blobs: set[str | None] = set(session.scalars(select(Face.crop_blob).where(
        Face.collection_id == collection.id, Face.crop_blob.is_not(None))))
    blobs |= set(session.scalars(select(SourceFile.image_blob).where(
        SourceFile.collection_id == collection.id, SourceFile.image_blob.is_not(None))))
    counts = _counts(session, [collection.id]).get(collection.id, (0, 0))
    name = display_name(collection)
    session.execute(delete(Face).where(Face.collection_id == collection.id))
    session.execute(delete(SourceFile).where(SourceFile.collection_id == collection.id))
    session.execute(delete(CollectionShare).where(CollectionShare.collection_id == collection.id))
    session.delete(collection)
    session.flush()
    audit.record(session, action="collection.deleted", actor_user_id=actor.user_id,
                 actor_key_id=actor.api_key_id, org_id=org_id, target_type="collection",
                 target_id=collection_id, ip=actor.ip,
                 details={"name": name, "files": counts[0], "faces": counts[1]})
    session.commit()
    if "index" in dep.__dict__:
        dep.index.drop_collection(collection_id)
        dep.index.save()
    # Blobs are content-addressed: keep any that another collection still references.
    for blob in blobs:
        if blob is None:
            continue
        still = session.scalar(select(Face.id).where(Face.crop_blob == blob).limit(1))
        if still is None:
            still = session.scalar(
                select(SourceFile.id).where(SourceFile.image_blob == blob).limit(1))
        if still is None:
            dep.blobs.delete(blob)
    return {"id": collection_id, "deleted": True, "files": counts[0], "faces": counts[1]}
