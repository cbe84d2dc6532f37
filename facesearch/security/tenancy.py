"""Tenancy: which objects an organisation may see, search and manage.

Every lookup of an organisation-owned object goes through here; no other module compares an
object's `org_id` with the caller's. An object of another organisation raises `NotFound`, exactly
like an id that does not exist, so the API answers 404 and a caller learns nothing about other
tenants (not even that an id is taken).

Collections: an organisation *manages* the collections it owns and may *search* those plus the
ones another organisation shared with it read-only (`CollectionShare`). Collection names are
unique per organisation; in the database they are stored qualified (`org<id>/<name>`) because the
engine's collection names are global, and `display_name` strips the qualifier again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TypeVar

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from facesearch.errors import NoOrganisation, NotFound
from facesearch.security.actor import Actor, Principal
from facesearch.store.accounts import (
    ApiKey,
    Invitation,
    Organisation,
    Passkey,
    User,
    UserSession,
)
from facesearch.store.audit import AuditEntry
from facesearch.store.casework import Case, Lead, Search
from facesearch.store.gallery import Collection, CollectionShare, Face
from facesearch.store.jobs import Job

_Owned = TypeVar("_Owned", Case, Search, Job, User, AuditEntry)

_QUALIFIED = re.compile(r"^org(\d+)/(.+)$", re.DOTALL)


def org_of(actor: Actor) -> int:
    """The caller's organisation, or NoOrganisation for platform administrators."""
    if actor.org_id is None:
        raise NoOrganisation(
            "platform administrators manage organisations only; tenant data belongs to the "
            "organisation's own users"
        )
    return actor.org_id


# -- collections ----------------------------------------------------------------------------------
def qualified_name(org_id: int, name: str) -> str:
    return f"org{org_id}/{name}"


def display_name(collection: Collection) -> str:
    match = _QUALIFIED.match(collection.name)
    if match and collection.org_id is not None and int(match.group(1)) == collection.org_id:
        return match.group(2)
    return collection.name


def searchable_collection_ids(session: Session, org_id: int) -> list[int]:
    """Own collections and those shared read-only with the organisation, by id."""
    shared = select(CollectionShare.collection_id).where(
        CollectionShare.org_id == org_id, CollectionShare.accepted_at.is_not(None)
    )
    query = (
        select(Collection.id)
        .where(or_(Collection.org_id == org_id, Collection.id.in_(shared)))
        .order_by(Collection.id)
    )
    return [int(i) for i in session.scalars(query)]


def searchable_collection(session: Session, org_id: int, collection_id: int) -> Collection:
    collection = session.get(Collection, collection_id)
    if collection is None or collection.id not in set(searchable_collection_ids(session, org_id)):
        raise NotFound("no such collection")
    return collection


def managed_collection(session: Session, org_id: int, collection_id: int) -> Collection:
    """A collection the organisation owns. A shared one is read-only: for its holder, changing
    it is answered exactly like a missing collection would be."""
    collection = session.get(Collection, collection_id)
    if collection is None or collection.org_id != org_id:
        raise NotFound("no such collection")
    return collection


def check_searchable(session: Session, org_id: int, collection_ids: list[int]) -> list[int]:
    """The requested ids, deduplicated in order; NotFound names the first that the organisation
    may not search. An empty request means every searchable collection."""
    allowed = searchable_collection_ids(session, org_id)
    if not collection_ids:
        return allowed
    allowed_set = set(allowed)
    wanted: list[int] = []
    for cid in collection_ids:
        if cid not in allowed_set:
            raise NotFound("no such collection")
        if cid not in wanted:
            wanted.append(cid)
    return wanted


# -- faces, searches, cases, leads, jobs, users, audit entries -----------------------------------
def visible_face(session: Session, org_id: int, face_id: int) -> Face:
    """A face in a collection the organisation may search."""
    face = session.get(Face, face_id)
    if face is None or face.collection_id not in set(searchable_collection_ids(session, org_id)):
        raise NotFound("no such face")
    return face


def _owned(session: Session, model: type[_Owned], object_id: int, org_id: int, what: str) -> _Owned:
    """The object if it belongs to the organisation; otherwise exactly like a missing id."""
    obj = session.get(model, object_id)
    if obj is None or obj.org_id is None or obj.org_id != org_id:
        raise NotFound(f"no such {what}")
    return obj


def org_case(session: Session, org_id: int, case_id: int) -> Case:
    return _owned(session, Case, case_id, org_id, "case")


def org_search(session: Session, org_id: int, search_id: int) -> Search:
    return _owned(session, Search, search_id, org_id, "search")


def org_lead(session: Session, org_id: int, lead_id: int) -> tuple[Lead, Search]:
    lead = session.get(Lead, lead_id)
    search = session.get(Search, lead.search_id) if lead is not None else None
    if lead is None or search is None or search.org_id != org_id:
        raise NotFound("no such result")
    return lead, search


def org_job(session: Session, org_id: int, job_id: int) -> Job:
    return _owned(session, Job, job_id, org_id, "job")


def org_user(session: Session, org_id: int, user_id: int) -> User:
    return _owned(session, User, user_id, org_id, "user")


def people_names(session: Session, org_id: int, user_ids: Iterable[int | None]) -> dict[int, str]:
    """How the organisation's own screens name its people: display name, else email, for the
    given ids **of users of `org_id` only**. An id of anyone else (another organisation's user,
    a platform administrator) is simply absent, so no name crosses organisations."""
    wanted = {i for i in user_ids if i is not None}
    if not wanted:
        return {}
    rows = session.execute(
        select(User.id, User.display_name, User.email).where(
            User.id.in_(wanted), User.org_id == org_id
        )
    ).all()
    return {uid: (name or email) for uid, name, email in rows}


def org_audit_entry(session: Session, org_id: int, entry_id: int) -> AuditEntry:
    return _owned(session, AuditEntry, entry_id, org_id, "audit entry")


# -- identity objects -----------------------------------------------------------------------------
def visible_invitation(session: Session, principal: Principal, invitation_id: int) -> Invitation:
    """An organisation administrator sees its organisation's invitations; the platform
    administrator sees the ones it sent."""
    row = session.get(Invitation, invitation_id)
    if row is not None:
        if principal.is_platform_admin and row.created_by == principal.user_id:
            return row
        same_org = principal.org_id is not None and row.org_id == principal.org_id
        if not principal.is_platform_admin and same_org:
            return row
    raise NotFound("no such invitation")


def own_session(session: Session, actor: Actor, session_id: int) -> UserSession:
    """One of the caller's own live sessions."""
    row = session.get(UserSession, session_id)
    if row is None or row.user_id != actor.user_id or row.revoked_at is not None:
        raise NotFound("no such session")
    return row


def own_api_key(session: Session, actor: Actor, key_id: int) -> ApiKey:
    """One of the caller's own API keys."""
    row = session.get(ApiKey, key_id)
    if row is None or row.user_id != actor.user_id:
        raise NotFound("no such API key")
    return row


def org_api_key(session: Session, org_id: int, key_id: int) -> tuple[ApiKey, User]:
    """An API key of a user of organisation `org_id`, with its owner; another organisation's
    key answers exactly like a key that does not exist."""
    row = session.get(ApiKey, key_id)
    owner = session.get(User, row.user_id) if row is not None else None
    if row is None or owner is None or row.org_id != org_id or owner.org_id != org_id:
        raise NotFound("no such API key")
    return row, owner


def own_passkey(session: Session, actor: Actor, passkey_id: int) -> Passkey:
    """One of the caller's own passkeys."""
    row = session.get(Passkey, passkey_id)
    if row is None or row.user_id != actor.user_id:
        raise NotFound("no such passkey")
    return row


def organisation(session: Session, org_id: int) -> Organisation:
    """An organisation by id (platform administration only: callers check the role)."""
    org = session.get(Organisation, org_id)
    if org is None:
        raise NotFound("no such organisation")
    return org


def live_organisation(session: Session, org_id: int) -> Organisation:
    org = session.get(Organisation, org_id)
    if org is None or org.disabled:
        raise NotFound("no such organisation")
    return org


def org_by_name(session: Session, name: str) -> Organisation:
    org = session.scalar(select(Organisation).where(Organisation.name == name))
    if org is None or org.disabled:
        raise NotFound(f"no organisation named {name!r}")
    return org
