"""Two-person review of search results.

A candidate returned by a search is a *lead*. Reviewers (users holding the `reviewer` role of the
same organisation) confirm or reject it:

- it becomes `confirmed` only when two DIFFERENT reviewers have confirmed it;
- any rejection makes it `rejected`, which is final;
- one user decides at most once per result, so the same user twice never confirms;
- the user who ran the search cannot review its results (nobody confirms their own lead);
- every decision is written to the audit log (`review.decided`) in the same transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facesearch.errors import FacesearchError
from facesearch.search.casework import InvalidRequest, crop_url, result_dict
from facesearch.security import audit
from facesearch.security.tenancy import Actor, org_of, org_result, org_user
from facesearch.store.accounts import User
from facesearch.store.casework import Review, Search, SearchResult

DECISIONS = ("confirm", "reject")
REVIEWER_ROLE = "reviewer"
CONFIRMATIONS_NEEDED = 2
NOTE_MAX = 2000


class ReviewForbidden(FacesearchError):
    """The caller may see the result but may not decide on it (API: 403)."""


class ReviewConflict(FacesearchError):
    """The decision cannot be taken in the result's present state (API: 409)."""


def status_from(reviews: list[Review], reviewer_ids: set[int]) -> str:
    """The status that a result's reviews give it."""
    if any(r.decision == "reject" for r in reviews):
        return "rejected"
    confirmers = {r.user_id for r in reviews if r.decision == "confirm" and r.user_id in
                  reviewer_ids}
    return "confirmed" if len(confirmers) >= CONFIRMATIONS_NEEDED else "lead"


def decide(
    session: Session, actor: Actor, result_id: int, decision: str, note: str = ""
) -> dict[str, Any]:
    """Record a reviewer's decision on a result and commit it with its audit entry."""
    if decision not in DECISIONS:
        raise InvalidRequest("decision", "confirm or reject")
    note = (note or "").strip()
    if len(note) > NOTE_MAX:
        raise InvalidRequest("note", f"at most {NOTE_MAX} characters")
    org_id = org_of(actor)
    result, search = org_result(session, org_id, result_id)
    user = org_user(session, org_id, actor.user_id)
    if REVIEWER_ROLE not in (user.roles or []) or user.disabled:
        raise ReviewForbidden("only users with the reviewer role decide on results")
    if search.user_id == user.id:
        raise ReviewForbidden("the user who ran a search cannot review its results")
    if result.status == "rejected":
        raise ReviewConflict("this result has been rejected; the decision is final")
    existing = session.scalar(
        select(Review).where(Review.result_id == result.id, Review.user_id == user.id)
    )
    if existing is not None:
        raise ReviewConflict("you have already decided on this result; a second reviewer must")
    before = result.status
    session.add(Review(result_id=result.id, user_id=user.id, decision=decision, note=note))
    session.flush()
    reviews = list(session.scalars(
        select(Review).where(Review.result_id == result.id).order_by(Review.id)
    ))
    reviewer_ids = {
        u.id for u in session.scalars(
            select(User).where(User.id.in_([r.user_id for r in reviews]))
        ) if REVIEWER_ROLE in (u.roles or []) and u.org_id == org_id
    }
    result.status = status_from(reviews, reviewer_ids)
    audit.record(
        session,
        action="review.decided",
        actor_user_id=actor.user_id,
        actor_key_id=actor.api_key_id,
        org_id=org_id,
        target_type="result",
        target_id=result.id,
        ip=actor.ip,
        details={
            "search_id": search.id, "case_id": search.case_id, "face_id": result.face_id,
            "score": result.score, "decision": decision, "note": note,
            "status_before": before, "status_after": result.status,
            "confirmations": sum(1 for r in reviews if r.decision == "confirm"),
        },
    )
    session.commit()
    return result_dict(result, reviews)


def review_queue(session: Session, actor: Actor, *, limit: int = 100) -> list[dict[str, Any]]:
    """Leads of the organisation this reviewer may still decide on (not their own searches, not
    already decided by them), oldest first."""
    org_id = org_of(actor)
    mine = select(Review.result_id).where(Review.user_id == actor.user_id)
    query = (
        select(SearchResult, Search)
        .join(Search, Search.id == SearchResult.search_id)
        .where(Search.org_id == org_id, SearchResult.status == "lead",
               Search.user_id.is_distinct_from(actor.user_id),
               SearchResult.id.not_in(mine))
        .order_by(SearchResult.id).limit(limit)
    )
    return [
        {"result_id": r.id, "search_id": s.id, "case_id": s.case_id, "face_id": r.face_id,
         "score": r.score, "rank": r.rank, "status": r.status, "crop_url": crop_url(r.face_id)}
        for r, s in session.execute(query).all()
    ]


def result_view(session: Session, actor: Actor, result_id: int) -> dict[str, Any]:
    org_id = org_of(actor)
    result, _ = org_result(session, org_id, result_id)
    reviews = list(session.scalars(
        select(Review).where(Review.result_id == result.id).order_by(Review.id)
    ))
    return result_dict(result, reviews)
