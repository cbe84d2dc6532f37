"""Tenancy: which objects an organisation may see, search and manage.

Every lookup of an organisation-owned object goes through here. An object of another
organisation raises `NotFoundError`, exactly like an id that does not exist, so the API answers
404 and a caller learns nothing about other tenants (not even that an id is taken).

Collections: an organisation *manages* the collections it owns and may *search* those plus the
ones another organisation shared with it read-only (`CollectionShare`). Collection names are
unique per organisation; in the database they are stored qualified (`org<id>/<name>`) because the
engine's collection names are global, and `display_name` strips the qualifier again.
"""

from __future__ import annotations

import re
from typing import Protocol, TypeVar

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from facesearch.errors import FacesearchError, NotFoundError
from facesearch.store.accounts import ApiKey, CollectionShare, Invitation, Organisation, User
from facesearch.store.casework import Case, IngestTask, Search, SearchResult
from facesearch.store.models import Collection, Face

_Owned = TypeVar("_Owned", Case, Search, IngestTask, User, ApiKey)

_QUALIFIED = re.compile(r"^org(\d+)/(.+)$", re.DOTALL)


class Actor(Protocol):
    """Who acts: satisfied by the API's Principal and by anything with these attributes."""

    @property
    def user_id(self) -> int: ...

    @property
    def org_id(self) -> int | None: ...

    @property
    def api_key_id(self) -> int | None: ...

    @property
    def ip(self) -> str | None: ...


class NoOrganisation(FacesearchError):
    """The caller belongs to no organisation (a platform administrator): tenant data is not
    theirs to read or change. The API answers 403."""


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
    shared = select(CollectionShare.collection_id).where(CollectionShare.org_id == org_id)
    query = (
        select(Collection.id)
        .where(or_(Collection.org_id == org_id, Collection.id.in_(shared)))
        .order_by(Collection.id)
    )
    return [int(i) for i in session.scalars(query)]


def manageable_collection_ids(session: Session, org_id: int) -> list[int]:
    query = select(Collection.id).where(Collection.org_id == org_id).order_by(Collection.id)
    return [int(i) for i in session.scalars(query)]


def searchable_collection(session: Session, org_id: int, collection_id: int) -> Collection:
    collection = session.get(Collection, collection_id)
    if collection is None or collection.id not in set(searchable_collection_ids(session, org_id)):
        raise NotFoundError(f"no collection {collection_id}")
    return collection


def managed_collection(session: Session, org_id: int, collection_id: int) -> Collection:
    """A collection the organisation owns. A shared one is read-only: for its holder, changing
    it is answered exactly like a missing collection would be."""
    collection = session.get(Collection, collection_id)
    if collection is None or collection.org_id != org_id:
        raise NotFoundError(f"no collection {collection_id}")
    return collection


def check_searchable(session: Session, org_id: int, collection_ids: list[int]) -> list[int]:
    """The requested ids, deduplicated in order; NotFoundError names the first that the
    organisation may not search. An empty request means every searchable collection."""
    allowed = searchable_collection_ids(session, org_id)
    if not collection_ids:
        return allowed
    allowed_set = set(allowed)
    wanted: list[int] = []
    for cid in collection_ids:
        if cid not in allowed_set:
            raise NotFoundError(f"no collection {cid}")
        if cid not in wanted:
            wanted.append(cid)
    return wanted


# -- faces, searches, cases, results, jobs --------------------------------------------------------
def visible_face(session: Session, org_id: int, face_id: int) -> Face:
    """A face in a collection the organisation may search."""
    face = session.get(Face, face_id)
    if face is None or face.collection_id not in set(searchable_collection_ids(session, org_id)):
        raise NotFoundError(f"no face {face_id}")
    return face


def _owned(session: Session, model: type[_Owned], object_id: int, org_id: int, what: str) -> _Owned:
    """The object if it belongs to the organisation; otherwise exactly like a missing id."""
    obj = session.get(model, object_id)
    if obj is None or obj.org_id != org_id:
        raise NotFoundError(f"no {what} {object_id}")
    return obj


def org_case(session: Session, org_id: int, case_id: int) -> Case:
    return _owned(session, Case, case_id, org_id, "case")


def org_search(session: Session, org_id: int, search_id: int) -> Search:
    return _owned(session, Search, search_id, org_id, "search")


def org_result(session: Session, org_id: int, result_id: int) -> tuple[SearchResult, Search]:
    result = session.get(SearchResult, result_id)
    search = session.get(Search, result.search_id) if result is not None else None
    if result is None or search is None or search.org_id != org_id:
        raise NotFoundError(f"no result {result_id}")
    return result, search


def org_task(session: Session, org_id: int, task_id: int) -> IngestTask:
    return _owned(session, IngestTask, task_id, org_id, "job")


def org_by_name(session: Session, name: str) -> Organisation:
    org = session.scalar(select(Organisation).where(Organisation.name == name))
    if org is None or org.disabled:
        raise NotFoundError(f"no organisation named {name!r}")
    return org


def org_user(session: Session, org_id: int, user_id: int) -> User:
    return _owned(session, User, user_id, org_id, "user")


def org_api_key(session: Session, org_id: int, key_id: int) -> ApiKey:
    return _owned(session, ApiKey, key_id, org_id, "API key")


def org_invitation(session: Session, org_id: int, invitation_id: int) -> Invitation:
    invitation = session.get(Invitation, invitation_id)
    if invitation is None or invitation.org_id != org_id:
        raise NotFoundError(f"no invitation {invitation_id}")
    return invitation
