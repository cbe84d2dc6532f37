"""Two-person review of search results.

A candidate returned by a search is a *lead*. Reviewers (users holding the `reviewer` role of the
same organisation) confirm or reject it:

- it becomes `confirmed` only when two DIFFERENT reviewers have confirmed it;
- any rejection makes it `rejected`, which is final;
- one user decides at most once per result, so the same user twice never confirms;
- the user who ran the search cannot review its results (nobody confirms their own lead);
- a confirmation is *independent* only when neither confirming reviewer was invited by the
  searcher or by the other reviewer, and the searcher and both reviewers were not all invited by
  one person within `CASE_WINDOW` of the case; otherwise the confirmed result is marked
  `independent: false` (shown with it and in the audit record, with who invited whom);
- every decision is written to the audit log (`review.decided`) in the same transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facesearch import clock
from facesearch.deployment import Deployment
from facesearch.errors import Conflict, Forbidden, InvalidRequest
from facesearch.gallery.faces import crop_url
from facesearch.search.casework import model_thresholds, result_dict
from facesearch.security import audit
from facesearch.security.actor import Actor
from facesearch.security.roles import Role
from facesearch.security.tenancy import org_lead, org_of, org_user, people_names
from facesearch.store.accounts import Invitation, PasswordReset, User
from facesearch.store.casework import Case, Decision, Lead, LeadStatus, Review, Search

DECISIONS: tuple[str, ...] = tuple(Decision)
REVIEWER_ROLE = Role.REVIEWER
CONFIRMATIONS_NEEDED = 2
NOTE_MAX = 2000
#: Invitations this close to a case's opening make a shared inviter suspicious.
CASE_WINDOW = timedelta(days=30)


def _invited(session: Session, user_id: int | None) -> tuple[int | None, datetime | None]:
    """Who invited a user, and when (None for accounts made otherwise). An administrator's
    password reset that also cleared the second factor re-provisions the account (whoever
    holds the link can take it over), so the latest such reset counts as the invitation."""
    if user_id is None:
        return None, None
    reset = session.scalar(
        select(PasswordReset)
        .where(
            PasswordReset.user_id == user_id,
            PasswordReset.reset_second_factor.is_(True),
            PasswordReset.used_at.is_not(None),
        )
        .order_by(PasswordReset.id.desc())
        .limit(1)
    )
    if reset is not None:
        return reset.created_by, clock.aware(reset.created_at)
    row = session.scalar(select(Invitation).where(Invitation.used_by == user_id))
    if row is None:
        return None, None
    return row.created_by, clock.aware(row.created_at)


def independence(
    session: Session, search: Search, confirmers: list[int]
) -> tuple[bool, list[str], dict[str, int | None]]:
    """Whether two confirmations are independent of the search and of each other; the reasons
    when not, and who invited whom (for the audit record)."""
    searcher = search.user_id
    invited = {u: _invited(session, u) for u in [searcher, *confirmers] if u is not None}
    inviter = {u: by for u, (by, _) in invited.items()}
    problems: list[str] = []
    # reviewers are named by their place in `confirmed_by`, never by a database id
    for n, u in enumerate(confirmers, 1):
        if searcher is not None and inviter.get(u) == searcher:
            problems.append(f"confirming reviewer {n} was invited by the searcher")
        for m, other in enumerate(confirmers, 1):
            if other != u and inviter.get(u) == other:
                problems.append(f"confirming reviewer {n} was invited by confirming reviewer {m}")
    people = [u for u in [searcher, *confirmers] if u is not None]
    inviters = {inviter.get(u) for u in people}
    if len(people) == len(confirmers) + 1 and len(inviters) == 1 and None not in inviters:
        case = session.get(Case, search.case_id)
        opened = clock.aware(case.created_at) if case is not None else clock.now()
        when = [invited[u][1] for u in people]
        if any(w is not None and w >= opened - CASE_WINDOW for w in when):
            problems.append("the searcher and both reviewers were invited by one person")
    return not problems, problems, {str(u): by for u, by in inviter.items()}


def status_from(reviews: list[Review], reviewer_ids: set[int]) -> str:
    """The status that a result's reviews give it."""
    if any(r.decision == Decision.REJECT for r in reviews):
        return LeadStatus.REJECTED
    confirmers = {
        r.user_id for r in reviews if r.decision == Decision.CONFIRM and r.user_id in reviewer_ids
    }
    return LeadStatus.CONFIRMED if len(confirmers) >= CONFIRMATIONS_NEEDED else LeadStatus.LEAD


def decide(
    session: Session, actor: Actor, result_id: int, decision: str, note: str = ""
) -> dict[str, Any]:
    """Record a reviewer's decision on a result and commit it with its audit entry."""
    if decision not in DECISIONS:
        raise InvalidRequest("confirm or reject", field="decision")
    note = (note or "").strip()
    if len(note) > NOTE_MAX:
        raise InvalidRequest(f"at most {NOTE_MAX} characters", field="note")
    org_id = org_of(actor)
    result, search = org_lead(session, org_id, result_id)
    if actor.user_id is None:
        raise Forbidden("only users with the reviewer role decide on results")
    user = org_user(session, org_id, actor.user_id)
    if REVIEWER_ROLE not in (user.roles or []) or user.disabled:
        raise Forbidden("only users with the reviewer role decide on results")
    if search.user_id == user.id:
        raise Forbidden("the user who ran a search cannot review its results")
    if result.status == LeadStatus.REJECTED:
        raise Conflict("this result has been rejected; the decision is final")
    existing = session.scalar(
        select(Review).where(Review.result_id == result.id, Review.user_id == user.id)
    )
    if existing is not None:
        raise Conflict("you have already decided on this result; a second reviewer must")
    before = result.status
    session.add(Review(result_id=result.id, user_id=user.id, decision=decision, note=note))
    session.flush()
    reviews = list(
        session.scalars(select(Review).where(Review.result_id == result.id).order_by(Review.id))
    )
    reviewer_ids = {
        u.id
        for u in session.scalars(select(User).where(User.id.in_([r.user_id for r in reviews])))
        if REVIEWER_ROLE in (u.roles or []) and u.org_id == org_id
    }
    result.status = status_from(reviews, reviewer_ids)
    chain: dict[str, Any] = {}
    if result.status == LeadStatus.CONFIRMED:
        confirmers = [
            r.user_id
            for r in reviews
            if r.decision == Decision.CONFIRM and r.user_id in reviewer_ids
        ]
        independent, problems, inviters = independence(session, search, confirmers)
        result.independent = independent
        chain = {
            "independent": independent,
            "independence_problems": problems,
            "searcher_user_id": search.user_id,
            "confirmed_by": confirmers,
            "invited_by": inviters,
        }
    audit.record_for(
        session,
        actor,
        "review.decided",
        org_id=org_id,
        target_type="result",
        target_id=result.id,
        details={
            "search_id": search.id,
            "case_id": search.case_id,
            "face_id": result.face_id,
            "score": result.score,
            "decision": decision,
            "note": note,
            "status_before": before,
            "status_after": result.status,
            "confirmations": sum(1 for r in reviews if r.decision == Decision.CONFIRM),
            **chain,
        },
    )
    session.commit()
    return result_dict(result, reviews, people_names(session, org_id, [r.user_id for r in reviews]))


def review_queue(
    session: Session,
    actor: Actor,
    *,
    limit: int = 100,
    dep: Deployment | None = None,
) -> dict[str, Any]:
    """Leads of the organisation this reviewer may still decide on (not their own searches, not
    already decided by them), oldest first; given the deployment, with the thresholds of the
    models each lead's search used."""
    org_id = org_of(actor)
    mine = select(Review.result_id).where(Review.user_id == actor.user_id)
    query = (
        select(Lead, Search, Case.number)
        .join(Search, Search.id == Lead.search_id)
        .join(Case, Case.id == Search.case_id)
        .where(
            Search.org_id == org_id,
            Lead.status == LeadStatus.LEAD,
            Search.user_id.is_distinct_from(actor.user_id),
            Lead.id.not_in(mine),
        )
        .order_by(Lead.id)
        .limit(limit)
    )
    rows = session.execute(query).all()
    names = people_names(session, org_id, [s.user_id for _r, s, _n in rows])
    items = [
        {
            "result_id": r.id,
            "search_id": s.id,
            "case_id": s.case_id,
            "case_number": number,
            "searched_by": s.user_id,
            "searched_by_name": names.get(s.user_id) if s.user_id else None,
            "face_id": r.face_id,
            "score": r.score,
            "rank": r.rank,
            "status": r.status,
            "crop_url": crop_url(r.face_id),
            "model_thresholds": model_thresholds(dep, s.model_id) if dep is not None else {},
        }
        for r, s, number in rows
    ]
    return {"total": len(items), "items": items}


def result_view(session: Session, actor: Actor, result_id: int) -> dict[str, Any]:
    org_id = org_of(actor)
    result, _ = org_lead(session, org_id, result_id)
    reviews = list(
        session.scalars(select(Review).where(Review.result_id == result.id).order_by(Review.id))
    )
    return result_dict(result, reviews, people_names(session, org_id, [r.user_id for r in reviews]))
