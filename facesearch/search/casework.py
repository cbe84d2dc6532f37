"""Accountable searches: every probe search belongs to a case, states its purpose, and leaves an
audit record that is COMMITTED before any result leaves this module.

`run_search` validates the request, checks the organisation may search every requested
collection (another organisation's private collection is answered like a missing one), runs the
engine, then writes in one transaction the `Search` row, one `Lead` per candidate (each a
*lead*, status `lead`) and the `search.performed` audit entry (who, organisation, when, case,
purpose, keyed hash of the probe, collections, result face ids and scores) and commits it. Only
after the commit are the results turned into the answer; a failure after that point can lose the
answer, never the record.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from facesearch.deployment import Deployment
from facesearch.errors import InvalidRequest
from facesearch.gallery.faces import crop_url
from facesearch.search.engine import Candidate, EngineResult, SearchEngine, check_limits
from facesearch.security import audit
from facesearch.security.actor import Actor
from facesearch.security.tenancy import (
    check_searchable,
    display_name,
    org_case,
    org_of,
    org_search,
    people_names,
)
from facesearch.store.casework import Case, Lead, LeadStatus, Review, Search
from facesearch.store.gallery import Collection

#: The most faces one probe may number (a bound on the `face` index a search may choose).
MAX_PROBE_FACES = 1000
CASE_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{2,63}$")
PURPOSE_MIN, PURPOSE_MAX = 10, 500


def validate_case_number(value: str) -> str:
    value = (value or "").strip()
    if not CASE_NUMBER.match(value):
        raise InvalidRequest(
            "3 to 64 characters: letters, digits and . _ / - (starting with a letter or digit)",
            field="case_number",
        )
    return value


def validate_purpose(value: str) -> str:
    value = (value or "").strip()
    if not PURPOSE_MIN <= len(value) <= PURPOSE_MAX:
        raise InvalidRequest(
            f"state why this search is needed, in {PURPOSE_MIN} to {PURPOSE_MAX} characters",
            field="purpose",
        )
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise InvalidRequest("control characters are not allowed", field="purpose")
    return value


# -- the answer -----------------------------------------------------------------------------------
@dataclass
class CandidateOut(Candidate):
    """A candidate as the service answers it: the engine's candidate, plus its stored result
    (a reviewable lead) and the authenticated crop URL."""

    result_id: int
    status: str
    crop_url: str


@dataclass
class ProbeFaceOut:
    index: int
    box: list[int]
    quality: dict[str, Any]
    candidates: list[CandidateOut] = field(default_factory=list)


@dataclass
class SearchOutcome:
    search_id: int
    case_id: int
    case_number: str
    purpose: str
    created_at: str
    audit_entry_id: int
    model_id: str
    threshold: float
    collections: list[dict[str, Any]]
    faces: list[ProbeFaceOut]
    models: list[dict[str, Any]] = field(default_factory=list)
    notice: str = (
        "Candidates are leads, not identifications. A candidate is confirmed only after two "
        "different reviewers confirm it."
    )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- cases ----------------------------------------------------------------------------------------
def find_or_create_case(session: Session, org_id: int, number: str, user_id: int | None) -> Case:
    case = session.scalar(select(Case).where(Case.org_id == org_id, Case.number == number))
    if case is not None:
        return case
    case = Case(org_id=org_id, number=number, created_by=user_id)
    session.add(case)
    session.flush()
    return case


# -- the search -----------------------------------------------------------------------------------
def run_search(
    dep: Deployment,
    session: Session,
    actor: Actor,
    image: bytes,
    *,
    case_number: str,
    purpose: str,
    collection_ids: list[int] | None = None,
    top_k: int = 10,
    threshold: float | None = None,
    face_index: int | None = None,
    engine: SearchEngine | None = None,
) -> SearchOutcome:
    """Search, record, commit, then answer. Raises InvalidRequest (422), NotFound (a
    collection the organisation may not search: 404), NoOrganisation (403) and ImageRejected
    (a bad probe, 422) before anything is searched; TooManyRequests (429) when the organisation
    already holds its share of the model queue, Unavailable (503) when the queue is full."""
    number = validate_case_number(case_number)
    why = validate_purpose(purpose)
    check_limits(top_k, threshold)
    if not image:
        raise InvalidRequest("an image file is required", field="probe")
    if face_index is not None and not 0 <= face_index < MAX_PROBE_FACES:
        raise InvalidRequest("the index of a face of the probe", field="face")
    org_id = org_of(actor)
    ids = check_searchable(session, org_id, list(collection_ids or []))
    if not ids:
        raise InvalidRequest("the organisation has no collection to search", field="collections")

    # model work waits its turn: at most `model_slots` at once, a fair share per organisation
    # (TooManyRequests over the organisation's share, Unavailable when the queue is full)
    with dep.model_queue.slot(org_id):
        found = (engine or SearchEngine(dep)).search(
            image, collection_ids=ids, top_k=top_k, threshold=threshold
        )
    if face_index is not None:
        chosen = [f for f in found.faces if f.index == face_index]
        if not chosen:
            raise InvalidRequest(
                f"the probe holds {len(found.faces)} face(s); face {face_index} is not one of them",
                field="face",
            )
        found.faces = chosen
    probe_hash = dep.keys.content_hash(image)

    collections = {
        c.id: c for c in session.scalars(select(Collection).where(Collection.id.in_(ids)))
    }
    case = find_or_create_case(session, org_id, number, actor.user_id)
    search = Search(
        org_id=org_id,
        user_id=actor.user_id,
        api_key_id=actor.api_key_id,
        case_id=case.id,
        purpose=why,
        probe_hash=probe_hash,
        collections=ids,
        top_k=top_k,
        threshold=threshold,
        model_id=",".join(m.model_id for m in found.models)[:100],
    )
    session.add(search)
    session.flush()
    rows: list[tuple[int, int, Lead]] = []  # (probe face, candidate position, row)
    for face in found.faces:
        for position, cand in enumerate(face.candidates):
            row = Lead(
                search_id=search.id,
                probe_face=face.index,
                rank=cand.rank,
                face_id=cand.face_id,
                score=float(cand.score),
                status=LeadStatus.LEAD,
            )
            session.add(row)
            rows.append((face.index, position, row))
    session.flush()
    entry = audit.record_for(
        session,
        actor,
        "search.performed",
        org_id=org_id,
        target_type="search",
        target_id=search.id,
        details={
            "case_id": case.id,
            "case_number": number,
            "purpose": why,
            "probe_hash": probe_hash,
            "collections": ids,
            "top_k": top_k,
            "threshold": threshold,
            "model_id": found.model_id,
            "models": [asdict(m) for m in found.models],
            "probe_faces": len(found.faces),
            "probe_face_chosen": face_index,
            "results": [
                {"result_id": r.id, "face_id": r.face_id, "score": r.score, "probe_face": pf}
                for pf, _, r in rows
            ],
        },
    )
    session.commit()  # the record is durable before anything is returned
    return _build_outcome(found, search, case, entry.id, collections, rows)


def examine_probe(
    dep: Deployment,
    session: Session,
    actor: Actor,
    image: bytes,
    *,
    collection_ids: list[int] | None = None,
    engine: SearchEngine | None = None,
) -> dict[str, Any]:
    """The faces of a probe (boxes on the original image, quality), numbered as a search over
    the same collections numbers them, so that the user can choose one before searching.
    Nothing is searched and nothing of the image is kept; the look is on the record
    (`search.probe_examined`, with the probe's keyed hash) before it is answered."""
    if not image:
        raise InvalidRequest("an image file is required", field="probe")
    org_id = org_of(actor)
    ids = check_searchable(session, org_id, list(collection_ids or []))
    if not ids:
        raise InvalidRequest("the organisation has no collection to search", field="collections")
    with dep.model_queue.slot(org_id):
        found = (engine or SearchEngine(dep)).detect(image, collection_ids=ids)
    audit.record_for(
        session,
        actor,
        "search.probe_examined",
        org_id=org_id,
        target_type="probe",
        details={
            "probe_hash": dep.keys.content_hash(image),
            "collections": ids,
            "probe_faces": len(found.faces),
        },
    )
    session.commit()
    return {
        "width": found.width,
        "height": found.height,
        "faces": [{"index": f.index, "box": f.box, "quality": f.quality} for f in found.faces],
    }


def _build_outcome(
    found: EngineResult,
    search: Search,
    case: Case,
    entry_id: int,
    collections: dict[int, Collection],
    rows: list[tuple[int, int, Lead]],
) -> SearchOutcome:
    result_ids = {(pf, pos): r.id for pf, pos, r in rows}
    faces: list[ProbeFaceOut] = []
    for face in found.faces:
        out = ProbeFaceOut(face.index, face.box, face.quality)
        for position, cand in enumerate(face.candidates):
            coll = collections.get(cand.collection_id)
            engine_fields = asdict(cand)
            engine_fields["collection"] = display_name(coll) if coll else cand.collection
            out.candidates.append(
                CandidateOut(
                    **engine_fields,
                    result_id=result_ids[(face.index, position)],
                    status=LeadStatus.LEAD,
                    crop_url=crop_url(cand.face_id),
                )
            )
        faces.append(out)
    return SearchOutcome(
        search_id=search.id,
        case_id=case.id,
        case_number=case.number,
        purpose=search.purpose,
        created_at=search.created_at.isoformat(),
        audit_entry_id=entry_id,
        model_id=found.model_id,
        threshold=found.threshold,
        models=[asdict(m) for m in found.models],
        collections=[{"id": c.id, "name": display_name(c)} for c in collections.values()],
        faces=faces,
    )


# -- reading cases and history --------------------------------------------------------------------
def _case_dict(case: Case, searches: int, names: dict[int, str] | None = None) -> dict[str, Any]:
    return {
        "id": case.id,
        "number": case.number,
        "created_by": case.created_by,
        "created_by_name": (names or {}).get(case.created_by) if case.created_by else None,
        "created_at": case.created_at.isoformat(),
        "searches": searches,
    }


def list_cases(
    session: Session, actor: Actor, *, limit: int = 100, offset: int = 0
) -> dict[str, Any]:
    org_id = org_of(actor)
    counts = (
        select(Search.case_id, func.count(Search.id).label("n"))
        .where(Search.org_id == org_id)
        .group_by(Search.case_id)
        .subquery()
    )
    query = (
        select(Case, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.case_id == Case.id)
        .where(Case.org_id == org_id)
        .order_by(Case.id.desc())
        .limit(limit)
        .offset(offset)
    )
    total = session.scalar(select(func.count(Case.id)).where(Case.org_id == org_id)) or 0
    rows = session.execute(query).all()
    names = people_names(session, org_id, [case.created_by for case, _n in rows])
    items = [_case_dict(case, int(n), names) for case, n in rows]
    return {"total": int(total), "items": items}


def result_dict(
    result: Lead, reviews: list[Review], names: dict[int, str] | None = None
) -> dict[str, Any]:
    return {
        "id": result.id,
        "search_id": result.search_id,
        "probe_face": result.probe_face,
        "rank": result.rank,
        "face_id": result.face_id,
        "score": result.score,
        "status": result.status,
        "independent": result.independent,
        "crop_url": crop_url(result.face_id),
        "reviews": [
            {
                "user_id": r.user_id,
                "user_name": (names or {}).get(r.user_id),
                "decision": r.decision,
                "note": r.note,
                "created_at": r.created_at.isoformat(),
            }
            for r in reviews
        ],
    }


def search_dict(
    search: Search, case: Case | None = None, names: dict[int, str] | None = None
) -> dict[str, Any]:
    return {
        "id": search.id,
        "case_id": search.case_id,
        "case_number": case.number if case is not None else None,
        "user_id": search.user_id,
        "user_name": (names or {}).get(search.user_id) if search.user_id else None,
        "api_key_id": search.api_key_id,
        "purpose": search.purpose,
        "probe_hash": search.probe_hash,
        "collections": list(search.collections),
        "top_k": search.top_k,
        "threshold": search.threshold,
        "model_id": search.model_id,
        "created_at": search.created_at.isoformat(),
    }


def case_detail(session: Session, org_id: int, case_id: int) -> dict[str, Any]:
    """A case with every search of it and their results (statuses and reviews); the people in
    it (who opened it, searched, decided) are named as the organisation names them
    (`tenancy.people_names`: its own users only)."""
    case = org_case(session, org_id, case_id)
    searches = list(
        session.scalars(
            select(Search)
            .where(Search.case_id == case.id, Search.org_id == org_id)
            .order_by(Search.id)
        )
    )
    results = (
        list(
            session.scalars(
                select(Lead)
                .where(Lead.search_id.in_([s.id for s in searches]))
                .order_by(Lead.search_id, Lead.probe_face, Lead.rank)
            )
        )
        if searches
        else []
    )
    reviews: dict[int, list[Review]] = {}
    if results:
        for review in session.scalars(
            select(Review).where(Review.result_id.in_([r.id for r in results])).order_by(Review.id)
        ):
            reviews.setdefault(review.result_id, []).append(review)
    names = people_names(
        session,
        org_id,
        [case.created_by, *(s.user_id for s in searches)]
        + [r.user_id for decided in reviews.values() for r in decided],
    )
    per_search: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        per_search.setdefault(r.search_id, []).append(result_dict(r, reviews.get(r.id, []), names))
    out = _case_dict(case, len(searches), names)
    out["search_list"] = [
        {**search_dict(s, case, names), "results": per_search.get(s.id, [])} for s in searches
    ]
    return out


def search_history(
    session: Session, actor: Actor, *, limit: int = 100, before_id: int | None = None
) -> dict[str, Any]:
    """The organisation's searches, newest first (for auditors)."""
    org_id = org_of(actor)
    counts = (
        select(Lead.search_id, func.count(Lead.id).label("n")).group_by(Lead.search_id).subquery()
    )
    query = (
        select(Search, Case, func.coalesce(counts.c.n, 0))
        .join(Case, Case.id == Search.case_id)
        .outerjoin(counts, counts.c.search_id == Search.id)
        .where(Search.org_id == org_id)
    )
    if before_id is not None:
        query = query.where(Search.id < before_id)
    query = query.order_by(Search.id.desc()).limit(limit)
    total = session.scalar(select(func.count(Search.id)).where(Search.org_id == org_id)) or 0
    rows = session.execute(query).all()
    names = people_names(session, org_id, [s.user_id for s, _c, _n in rows])
    items = [{**search_dict(s, c, names), "results": int(n)} for s, c, n in rows]
    return {"total": int(total), "items": items}


def get_case(
    session: Session, actor: Actor, case_id: int, dep: Deployment | None = None
) -> dict[str, Any]:
    """A case's detail (and, given the deployment, each search's model thresholds); the read is
    on the record (`case.viewed`) before it is answered."""
    detail = case_detail(session, org_of(actor), case_id)
    if dep is not None:
        for item in detail["search_list"]:
            item["model_thresholds"] = model_thresholds(dep, item["model_id"])
    audit.record_for(session, actor, "case.viewed", target_type="case", target_id=case_id)
    session.commit()
    return detail


def model_thresholds(dep: Deployment, model_ids: str) -> dict[str, float]:
    """The threshold of each model a search used (its `model_id` lists them, comma-separated);
    a model this installation no longer computes is left out."""
    out: dict[str, float] = {}
    for model_id in filter(None, (m.strip() for m in model_ids.split(","))):
        try:
            out[model_id] = float(dep.model_for(model_id).default_threshold)
        except (ValueError, KeyError):
            continue
    return out


def get_search(
    session: Session, actor: Actor, search_id: int, dep: Deployment | None = None
) -> dict[str, Any]:
    """One search of the organisation with its results, as it appears in its case (and, given
    the deployment, each model's threshold)."""
    org_id = org_of(actor)
    search = org_search(session, org_id, search_id)
    detail = case_detail(session, org_id, search.case_id)
    audit.record_for(
        session,
        actor,
        "search.viewed",
        target_type="search",
        target_id=search.id,
        details={"case_id": search.case_id},
    )
    session.commit()
    thresholds = model_thresholds(dep, search.model_id) if dep is not None else {}
    for item in detail["search_list"]:
        if item["id"] == search.id:
            return {**item, "model_thresholds": thresholds}
    return search_dict(search, session.get(Case, search.case_id))  # pragma: no cover
