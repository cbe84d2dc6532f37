"""Collections: the one place for their rules (name, legal basis, retention, model) and their
management, used by the API (organisations' collections) and the CLI (the operator's).

Only the owner organisation manages a collection; an organisation it is shared with may search
it and nothing else (for that organisation, management calls answer exactly like a missing id).
Collections are passed between layers by id; a name is resolved once, here.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from facesearch import clock
from facesearch.deployment import Deployment
from facesearch.errors import Conflict, InvalidRequest, ModelMismatch, NotFound
from facesearch.gallery.names import collection_models as collection_models
from facesearch.gallery.names import ids_by_name as ids_by_name
from facesearch.security import audit
from facesearch.security.actor import Actor, system_actor
from facesearch.security.tenancy import (
    display_name,
    managed_collection,
    org_of,
    qualified_name,
    searchable_collection,
    searchable_collection_ids,
)
from facesearch.store import faces as face_queries
from facesearch.store.accounts import Organisation
from facesearch.store.gallery import (
    Collection,
    CollectionShare,
    Face,
    FaceCount,
    ShareCode,
    SourceFile,
)
from facesearch.store.jobs import Job, JobStatus
from facesearch.vision.registry import model_id_of

log = logging.getLogger("facesearch.gallery")

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
            select(FaceCount.collection_id, FaceCount.faces)
            .join(Collection, Collection.id == FaceCount.collection_id)
            .where(FaceCount.collection_id.in_(ids), FaceCount.model_id == Collection.model_id)
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
        shares = session.scalars(
            select(CollectionShare)
            .where(CollectionShare.collection_id == collection.id)
            .order_by(CollectionShare.id)
        )
        out["shares"] = [share_view(session, sh, org_id) for sh in shares]
        out["shared_with"] = sorted(
            sh["organisation"] for sh in out["shares"] if sh["state"] == "accepted"
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


SHARE_CODE_DAYS = 7


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.strip().encode()).hexdigest()


def new_share_code(session: Session, actor: Actor) -> dict[str, Any]:
    """A one-time code (valid SHARE_CODE_DAYS days) that this organisation hands to another one
    out of band, so that the other may offer it a collection. Nobody names organisations."""
    org_id = org_of(actor)
    code = "fsc_" + secrets.token_urlsafe(24)
    now = clock.now()
    row = ShareCode(
        org_id=org_id,
        code_hash=_code_hash(code),
        created_by=actor.user_id,
        created_at=now,
        expires_at=now + timedelta(days=SHARE_CODE_DAYS),
    )
    session.add(row)
    session.flush()
    audit.record_for(
        session,
        actor,
        "share_code.created",
        target_type="share_code",
        target_id=row.id,
        details={"expires_at": row.expires_at.isoformat()},
    )
    session.commit()
    return {"id": row.id, "code": code, "expires_at": row.expires_at.isoformat()}


def share_view(session: Session, share: CollectionShare, org_id: int) -> dict[str, Any]:
    collection = session.get(Collection, share.collection_id)
    other_id = share.org_id if collection and collection.org_id == org_id else None
    if other_id is None and collection is not None:
        other_id = collection.org_id
    other = session.get(Organisation, other_id) if other_id else None
    return {
        "id": share.id,
        "collection_id": share.collection_id,
        "collection": display_name(collection) if collection else None,
        "organisation": other.name if other else None,
        "state": "accepted" if share.accepted_at is not None else "offered",
        "created_at": clock.aware(share.created_at).isoformat(),
    }


def share_collection(
    session: Session, actor: Actor, collection_id: int, code: str
) -> dict[str, Any]:
    """Offer read-only search access to the organisation that handed out `code` (used up). An
    unknown, used or expired code answers one 404 that says nothing of any organisation; the
    offer enters the receiver's search scope only once its administrators accept it."""
    org_id = org_of(actor)
    collection = managed_collection(session, org_id, collection_id)
    invalid = NotFound("unknown, used or expired share code")
    row = session.scalar(select(ShareCode).where(ShareCode.code_hash == _code_hash(code or "")))
    if row is None or row.used_at is not None or clock.aware(row.expires_at) <= clock.now():
        audit.record_for(
            session,
            actor,
            "collection.share_refused",
            target_type="collection",
            target_id=collection.id,
            details={"reason": "unknown, used or expired code"},
        )
        session.commit()
        raise invalid
    target = session.get(Organisation, row.org_id)
    if target is None or target.disabled:
        raise invalid
    if target.id == org_id:
        raise InvalidRequest("a collection is always available to its owner", field="code")
    row.used_at = clock.now()
    share = session.scalar(
        select(CollectionShare).where(
            CollectionShare.collection_id == collection.id, CollectionShare.org_id == target.id
        )
    )
    if share is None:
        share = CollectionShare(collection_id=collection.id, org_id=target.id, accepted_at=None)
        session.add(share)
        session.flush()
    audit.record_for(
        session,
        actor,
        "collection.shared",
        target_type="collection",
        target_id=collection.id,
        details={
            "share_id": share.id,
            "with_org_id": target.id,
            "access": "read-only",
            "state": "offered",
        },
    )
    session.commit()
    return share_view(session, share, org_id)


def _incoming(session: Session, org_id: int, share_id: int) -> CollectionShare:
    share = session.get(CollectionShare, share_id)
    if share is None or share.org_id != org_id:
        raise NotFound("no such share")
    return share


def list_incoming_shares(session: Session, actor: Actor) -> dict[str, Any]:
    org_id = org_of(actor)
    rows = session.scalars(
        select(CollectionShare).where(CollectionShare.org_id == org_id).order_by(CollectionShare.id)
    )
    items = [share_view(session, r, org_id) for r in rows]
    return {"total": len(items), "items": items}


def accept_share(session: Session, actor: Actor, share_id: int) -> dict[str, Any]:
    """The receiving organisation's administrators accept an offered share: from now on the
    collection is searchable by the organisation (and in its default search scope)."""
    org_id = org_of(actor)
    share = _incoming(session, org_id, share_id)
    if share.accepted_at is None:
        share.accepted_at = clock.now()
        audit.record_for(
            session,
            actor,
            "collection.share_accepted",
            target_type="share",
            target_id=share.id,
            details={"collection_id": share.collection_id},
        )
        session.commit()
    return share_view(session, share, org_id)


def _end_share(session: Session, actor: Actor, share: CollectionShare, by: str) -> None:
    session.delete(share)
    audit.record_for(
        session,
        actor,
        "collection.unshared",
        target_type="share",
        target_id=share.id,
        details={"collection_id": share.collection_id, "with_org_id": share.org_id, "by": by},
    )
    session.commit()


def decline_share(session: Session, actor: Actor, share_id: int) -> dict[str, Any]:
    """The receiver declines an offer or leaves an accepted share."""
    org_id = org_of(actor)
    share = _incoming(session, org_id, share_id)
    view = share_view(session, share, org_id)
    _end_share(session, actor, share, "receiver")
    return {**view, "state": "ended"}


def unshare_collection(
    session: Session, actor: Actor, collection_id: int, share_id: int
) -> dict[str, Any]:
    """The owner withdraws a share, named by its id (an id that is not a share of this
    collection answers 404 like any unknown id, and is audited)."""
    org_id = org_of(actor)
    collection = managed_collection(session, org_id, collection_id)
    share = session.get(CollectionShare, share_id)
    if share is None or share.collection_id != collection.id:
        audit.record_for(
            session,
            actor,
            "collection.unshare_refused",
            target_type="collection",
            target_id=collection.id,
            details={"share_id": share_id},
        )
        session.commit()
        raise NotFound("no such share of this collection")
    _end_share(session, actor, share, "owner")
    return collection_view(session, collection, org_id)


def delete_collection(
    dep: Deployment, session: Session, actor: Actor, collection_id: int
) -> dict[str, Any]:
    """Delete one of the organisation's collections with its files, faces, index shard and
    unshared blobs. Past search results keep their face ids and scores (the audit trail stays
    whole)."""
    org_id = org_of(actor)
    return _purge(dep, session, actor, managed_collection(session, org_id, collection_id))


def delete_operator_collection(dep: Deployment, session: Session, name: str) -> dict[str, Any]:
    """The operator's deletion (CLI) of a collection that belongs to no organisation, audited as
    `cli`; an organisation's collection is deleted by its administrators over the API."""
    collection = session.scalar(
        select(Collection).where(Collection.name == name, Collection.org_id.is_(None))
    )
    if collection is None:
        raise NotFound(f"no collection named {name!r} outside the organisations")
    return _purge(dep, session, system_actor(), collection)


def _purge(
    dep: Deployment, session: Session, actor: Actor, collection: Collection
) -> dict[str, Any]:
    collection_id = collection.id
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
        org_id=collection.org_id,
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
    # Blobs are content-addressed: keep any that another collection still references. The
    # deletion is committed: a blob the store fails to delete (an S3 server that is down) does
    # not stop the others, and is logged by id for the operator to remove.
    failed: list[str] = []
    for blob in blobs:
        if blob is None:
            continue
        if not face_queries.blob_in_use(session, blob):
            try:
                dep.blobs.delete(blob)
            except Exception as exc:
                log.warning("collection %s: blob %s not deleted: %s", collection_id, blob, exc)
                failed.append(blob)
    if failed:
        log.error(
            "collection %s deleted, but %d of its blobs are still stored (ids logged before this): "
            "delete them from the blob store",
            collection_id,
            len(failed),
        )
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
