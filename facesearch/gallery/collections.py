"""Collections: the one place for their rules (name, legal basis, retention, model) and their
management, used by the API (organisations' collections) and the CLI (the operator's).

Only the owner organisation manages a collection; an organisation it is shared with may search
it and nothing else (for that organisation, management calls answer exactly like a missing id).
Collections are passed between layers by id; a name is resolved once, here.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from facesearch.deployment import Deployment
from facesearch.errors import Conflict, InvalidRequest, ModelMismatch, NotFound
from facesearch.security import audit
from facesearch.security.actor import Actor, system_actor
from facesearch.security.tenancy import (
    display_name,
    managed_collection,
    org_by_name,
    org_of,
    qualified_name,
    searchable_collection,
    searchable_collection_ids,
)
from facesearch.store import faces as face_queries
from facesearch.store.accounts import Organisation
from facesearch.store.gallery import Collection, CollectionShare, Face, SourceFile
from facesearch.store.jobs import Job, JobStatus
from facesearch.vision.registry import model_id_of

NAME_MAX = 100
NAME = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9 ._-]{{0,{NAME_MAX - 1}}}$")
NAME_RULE = f"1 to {NAME_MAX} characters: letters, digits, space and . _ - (not first)"
LEGAL_BASIS_MIN, LEGAL_BASIS_MAX = 10, 2000
RETENTION_MIN, RETENTION_MAX = 1, 36500
DESCRIPTION_MAX = 2000


# -- the rules ------------------------------------------------------------------------------------
def valid_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME.match(name):
        raise InvalidRequest(NAME_RULE, field="name")
    return name


def valid_legal_basis(legal_basis: str) -> str:
    legal_basis = (legal_basis or "").strip()
    if not LEGAL_BASIS_MIN <= len(legal_basis) <= LEGAL_BASIS_MAX:
        raise InvalidRequest(
            f"state the legal basis for holding these images ({LEGAL_BASIS_MIN} to "
            f"{LEGAL_BASIS_MAX} characters)",
            field="legal_basis",
        )
    return legal_basis


def valid_retention(retention_days: int) -> int:
    if isinstance(retention_days, bool) or not RETENTION_MIN <= retention_days <= RETENTION_MAX:
        raise InvalidRequest(f"{RETENTION_MIN} to {RETENTION_MAX} days", field="retention_days")
    return retention_days


def valid_description(description: str) -> str:
    description = (description or "").strip()
    if len(description) > DESCRIPTION_MAX:
        raise InvalidRequest(f"at most {DESCRIPTION_MAX} characters", field="description")
    return description


def model_id_for(dep: Deployment, model: str | None) -> str:
    """The model id of a model named by its runtime (`sface`, `dlib`, `dlib-onnx`), or the
    deployment's default for new collections."""
    if not model:
        return dep.default_model_id
    try:
        return model_id_of(model)
    except ValueError as exc:
        raise InvalidRequest(str(exc), field="model") from exc


def check_model(collection: Collection, model_id: str) -> None:
    """Collections never mix models: a collection's faces all come from the model it was
    created with (`facesearch reembed` moves a whole collection to another one)."""
    if collection.model_id and collection.model_id != model_id:
        raise ModelMismatch(
            f"collection {display_name(collection)!r} holds {collection.model_id} embeddings, "
            f"not {model_id}: one collection never mixes two models (move it to another model "
            "with `facesearch reembed`)"
        )


# -- views ----------------------------------------------------------------------------------------
def _counts(session: Session, ids: list[int]) -> dict[int, tuple[int, int]]:
    if not ids:
        return {}
    files = dict(
        session.execute(
            select(SourceFile.collection_id, func.count(SourceFile.id))
            .where(SourceFile.collection_id.in_(ids))
            .group_by(SourceFile.collection_id)
        ).all()
    )
    faces = dict(  # a collection's own model only (a re-embed in progress adds others)
        session.execute(
            select(Face.collection_id, func.count(Face.id))
            .join(Collection, Collection.id == Face.collection_id)
            .where(Face.collection_id.in_(ids), Face.model_id == Collection.model_id)
            .group_by(Face.collection_id)
        ).all()
    )
    return {i: (int(files.get(i, 0)), int(faces.get(i, 0))) for i in ids}


def collection_view(
    session: Session,
    collection: Collection,
    org_id: int,
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
        "model_id": collection.model_id,
        "files": n_files,
        "faces": n_faces,
        "created_at": collection.created_at.isoformat(),
    }
    if owned:
        out["shared_with"] = list(
            session.scalars(
                select(Organisation.name)
                .join(CollectionShare, CollectionShare.org_id == Organisation.id)
                .where(CollectionShare.collection_id == collection.id)
                .order_by(Organisation.name)
            )
        )
    else:
        owner = session.get(Organisation, collection.org_id) if collection.org_id else None
        out["owner"] = owner.name if owner else None
    return out


# -- an organisation's collections (API) ----------------------------------------------------------
def list_collections(session: Session, actor: Actor) -> dict[str, Any]:
    org_id = org_of(actor)
    ids = searchable_collection_ids(session, org_id)
    counts = _counts(session, ids)
    rows: list[Collection] = (
        list(
            session.scalars(
                select(Collection).where(Collection.id.in_(ids)).order_by(Collection.id)
            )
        )
        if ids
        else []
    )
    items = [collection_view(session, c, org_id, counts) for c in rows]
    return {"total": len(items), "items": items}


def get_collection(session: Session, actor: Actor, collection_id: int) -> dict[str, Any]:
    org_id = org_of(actor)
    return collection_view(session, searchable_collection(session, org_id, collection_id), org_id)


def create_collection(
    dep: Deployment,
    session: Session,
    actor: Actor,
    *,
    name: str,
    legal_basis: str,
    retention_days: int,
    description: str = "",
    model: str | None = None,
) -> dict[str, Any]:
    """A new collection of the actor's organisation, for the deployment's model unless named."""
    model_id = model_id_for(dep, model)
    org_id = org_of(actor)
    name = valid_name(name)
    legal_basis = valid_legal_basis(legal_basis)
    retention_days = valid_retention(retention_days)
    description = valid_description(description)
    stored = qualified_name(org_id, name)
    if session.scalar(select(Collection.id).where(Collection.name == stored)) is not None:
        raise Conflict(f"this organisation already has a collection named {name!r}")
    collection = Collection(
        name=stored,
        description=description,
        org_id=org_id,
        legal_basis=legal_basis,
        retention_days=retention_days,
        model_id=model_id,
    )
    session.add(collection)
    session.flush()
    audit.record_for(
        session,
        actor,
        "collection.created",
        target_type="collection",
        target_id=collection.id,
        details={
            "name": name,
            "legal_basis": legal_basis,
            "retention_days": retention_days,
            "model_id": model_id,
        },
    )
    session.commit()
    return collection_view(session, collection, org_id)


def share_collection(
    session: Session, actor: Actor, collection_id: int, organisation: str
) -> dict[str, Any]:
    """Grant read-only search access to a named organisation (idempotent)."""
    org_id = org_of(actor)
    collection = managed_collection(session, org_id, collection_id)
    target = org_by_name(session, (organisation or "").strip())
    if target.id == org_id:
        raise InvalidRequest("a collection is always available to its owner", field="organisation")
    exists = session.scalar(
        select(CollectionShare.id).where(
            CollectionShare.collection_id == collection.id, CollectionShare.org_id == target.id
        )
    )
    if exists is None:
        session.add(CollectionShare(collection_id=collection.id, org_id=target.id))
        session.flush()
        audit.record_for(
            session,
            actor,
            "collection.shared",
            target_type="collection",
            target_id=collection.id,
            details={"with_org_id": target.id, "with_org": target.name, "access": "read-only"},
        )
        session.commit()
    return collection_view(session, collection, org_id)


def unshare_collection(
    session: Session, actor: Actor, collection_id: int, organisation: str
) -> dict[str, Any]:
    org_id = org_of(actor)
    collection = managed_collection(session, org_id, collection_id)
    target = org_by_name(session, (organisation or "").strip())
    share = session.scalar(
        select(CollectionShare).where(
            CollectionShare.collection_id == collection.id, CollectionShare.org_id == target.id
        )
    )
    if share is not None:
        session.delete(share)
        audit.record_for(
            session,
            actor,
            "collection.unshared",
            target_type="collection",
            target_id=collection.id,
            details={"with_org_id": target.id, "with_org": target.name},
        )
        session.commit()
    return collection_view(session, collection, org_id)


def delete_collection(
    dep: Deployment, session: Session, actor: Actor, collection_id: int
) -> dict[str, Any]:
    """Delete a collection with its files, faces, index shard and unshared blobs. Past search
    results keep their face ids and scores (the audit trail stays whole)."""
    org_id = org_of(actor)
    collection = managed_collection(session, org_id, collection_id)
    busy = session.scalar(
        select(Job.id).where(
            Job.collection_id == collection.id,
            Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)),
        )
    )
    if busy is not None:
        raise Conflict(f"job {busy} is still ingesting into this collection; wait for it")
    blobs: set[str | None] = set(
        session.scalars(
            select(Face.crop_blob).where(
                Face.collection_id == collection.id, Face.crop_blob.is_not(None)
            )
        )
    )
    blobs |= set(
        session.scalars(
            select(SourceFile.image_blob).where(
                SourceFile.collection_id == collection.id, SourceFile.image_blob.is_not(None)
            )
        )
    )
    counts = _counts(session, [collection.id]).get(collection.id, (0, 0))
    name = display_name(collection)
    model_id = collection.model_id
    session.execute(delete(Face).where(Face.collection_id == collection.id))
    session.execute(delete(SourceFile).where(SourceFile.collection_id == collection.id))
    session.execute(delete(CollectionShare).where(CollectionShare.collection_id == collection.id))
    session.delete(collection)
    session.flush()
    audit.record_for(
        session,
        actor,
        "collection.deleted",
        target_type="collection",
        target_id=collection_id,
        details={"name": name, "files": counts[0], "faces": counts[1]},
    )
    session.commit()
    index = dep.loaded_index(model_id) if model_id else None
    if index is not None:
        index.drop_collection(collection_id)  # in memory and on disk, at once
    else:
        dep.drop_index_collection(model_id, collection_id)
    # Blobs are content-addressed: keep any that another collection still references.
    for blob in blobs:
        if blob is None:
            continue
        if not face_queries.blob_in_use(session, blob):
            dep.blobs.delete(blob)
    return {"id": collection_id, "deleted": True, "files": counts[0], "faces": counts[1]}


# -- the operator's collections (CLI) -------------------------------------------------------------
def ensure_collection(
    dep: Deployment,
    name: str,
    *,
    legal_basis: str | None = None,
    retention_days: int | None = None,
    model: str | None = None,
) -> int:
    """The id of the operator's collection `name` (one that belongs to no organisation), created
    (and audited) if missing, for `model` (default: the deployment's). A legal basis or
    retention given here is recorded on it (the doctor reports collections without them)."""
    name = valid_name(name)
    if legal_basis:
        legal_basis = valid_legal_basis(legal_basis)
    if retention_days is not None:
        valid_retention(retention_days)
    model_id = model_id_for(dep, model)
    with dep.db.session() as s:
        collection = s.scalar(
            select(Collection).where(Collection.name == name, Collection.org_id.is_(None))
        )
        if collection is None:
            collection = Collection(name=name, model_id=model_id)
            s.add(collection)
            s.flush()
            audit.record_for(
                s,
                system_actor(),
                "collection.created",
                target_type="collection",
                target_id=collection.id,
                details={
                    "name": name,
                    "legal_basis": legal_basis,
                    "retention_days": retention_days,
                    "model_id": model_id,
                },
            )
        elif model:
            check_model(collection, model_id)
        if legal_basis:
            collection.legal_basis = legal_basis
        if retention_days is not None:
            collection.retention_days = retention_days
        s.flush()
        return collection.id


def ids_by_name(session: Session, names: list[str] | None) -> list[int]:
    """The operator's view: collection ids for names (every collection when none are named)."""
    if not names:
        return [int(i) for i in session.scalars(select(Collection.id).order_by(Collection.id))]
    found = dict(
        session.execute(
            select(Collection.name, Collection.id).where(Collection.name.in_(names))
        ).all()
    )
    missing = sorted(set(names) - set(found))
    if missing:
        raise NotFound(f"no collection named {', '.join(missing)}")
    return [int(found[n]) for n in names]
