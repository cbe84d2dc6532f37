"""The auditor's views of the web application's audit screen: filtered entries (user, action,
case, time), the chain's verification status, and activity per week and month. Auditors only;
their organisation's entries only; the chain check and the activity read are audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from facesearch import clock
from facesearch.deployment import Deployment
from facesearch.security import audit
from facesearch.security.actor import Principal
from facesearch.security.roles import scopes_for
from facesearch.store.audit import AuditEntry
from tests.api.conftest import MakeUser


def act(dep: Deployment, user_id: int, org_id: int | None, action: str, **details: object) -> None:
    """An entry written by the real audit writer, as the casework services write it."""
    roles = frozenset({"investigator", "reviewer"})
    who = Principal(user_id, org_id, roles, scopes_for(roles), None, None, "127.0.0.1")
    with dep.db.session() as s:
        audit.record_for(s, who, action, target_type="search", target_id=1, details=details)
        s.commit()


def test_activity_counts_searches_per_user_per_week_and_decisions_per_month(
    make_user: MakeUser, deployment: Deployment
) -> None:
    auditor = make_user("Audit A", ["auditor"])
    ines = make_user("Audit A", ["investigator"])
    rex = make_user("Audit A", ["reviewer"])
    other = make_user("Audit B", ["auditor"])
    outsider = make_user("Audit B", ["investigator"])
    for _ in range(2):
        act(deployment, ines.user_id, ines.org_id, "search.performed", case_id=7, case_number="C-7")
    act(deployment, rex.user_id, rex.org_id, "review.decided", decision="confirm", case_id=7)
    act(deployment, rex.user_id, rex.org_id, "review.decided", decision="reject", case_id=7)
    act(deployment, outsider.user_id, outsider.org_id, "search.performed", case_id=9)
    # an entry of an earlier week
    earlier = datetime.now(UTC) - timedelta(weeks=3)
    clock.set_clock(lambda: earlier)
    act(deployment, ines.user_id, ines.org_id, "search.performed", case_id=8, case_number="C-8")
    clock.set_clock(None)

    reply = auditor.client.get("/api/v1/audit/activity", params={"weeks": 6, "months": 3})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert len(body["weeks"]) == 6 and len(body["months"]) == 3
    assert [s["user_id"] for s in body["searches"]] == [ines.user_id]
    counts = body["searches"][0]["counts"]
    assert counts[-1] == 2 and counts[-4] == 1 and sum(counts) == 3
    assert body["confirmations"][-1] == 1 and body["rejections"][-1] == 1
    emails = {p["email"] for p in body["people"]}
    assert {ines.email, rex.email, auditor.email} <= emails and outsider.email not in emails
    # another organisation's auditor sees its own activity only
    theirs = other.client.get("/api/v1/audit/activity").json()
    assert [s["user_id"] for s in theirs["searches"]] == [outsider.user_id]
    assert sum(theirs["confirmations"]) == 0
    # auditors only
    assert ines.client.get("/api/v1/audit/activity").status_code == 403
    with deployment.db.session() as s:
        viewed = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "audit.activity_viewed")
        ).all()
    assert {e.actor_user_id for e in viewed} == {auditor.user_id, other.user_id}


def test_entries_filter_by_user_action_case_and_time(
    make_user: MakeUser, deployment: Deployment
) -> None:
    auditor = make_user("Filter A", ["auditor"])
    ines = make_user("Filter A", ["investigator"])
    rex = make_user("Filter A", ["reviewer"])
    act(deployment, ines.user_id, ines.org_id, "search.performed", case_id=7, case_number="C-7")
    act(deployment, ines.user_id, ines.org_id, "search.performed", case_id=8, case_number="C-8")
    act(deployment, rex.user_id, rex.org_id, "review.decided", decision="confirm", case_id=7)

    def get(**params: object) -> list[dict[str, object]]:
        reply = auditor.client.get("/api/v1/audit/entries", params=params)
        assert reply.status_code == 200, reply.text
        return list(reply.json()["items"])

    mine = get(user_id=ines.user_id)
    assert mine and {e["actor_user_id"] for e in mine} == {ines.user_id}
    assert {e["action"] for e in get(action="review.decided")} == {"review.decided"}
    by_number = get(case="C-7")
    assert [e["action"] for e in by_number] == ["search.performed"]
    by_id = get(case="7")
    assert [e["action"] for e in by_id] == ["search.performed", "review.decided"]
    assert get(case="C-7", user_id=rex.user_id) == []
    newest = get(newest_first=True, limit=2)
    assert newest[0]["id"] > newest[1]["id"]
    assert get(before_id=newest[0]["id"], newest_first=True, limit=1)[0]["id"] == newest[1]["id"]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert get(since=future) == []
    assert len(get(until=future, case="7")) == 2
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert get(until=past, case="7") == []


def test_the_chain_status_is_verified_now_and_audited(
    make_user: MakeUser, deployment: Deployment
) -> None:
    auditor = make_user("Chain A", ["auditor"])
    investigator = make_user("Chain A", ["investigator"])
    reply = auditor.client.get("/api/v1/audit/chain")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["ok"] is True and body["entries"] > 0 and body["problem"] is None
    again = auditor.client.get("/api/v1/audit/chain").json()
    assert again["entries"] == body["entries"] + 1  # the first check was itself recorded
    assert investigator.client.get("/api/v1/audit/chain").status_code == 403
