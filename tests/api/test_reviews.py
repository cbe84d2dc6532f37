"""Two-person review: a lead becomes confirmed only after two DIFFERENT reviewers confirm it."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from facesearch.deployment import Deployment
from facesearch.store.audit import AuditEntry
from tests.api.casework_world import Org, gallery, make_org, probe_bytes, search
from tests.api.conftest import MakeUser, api_id, db_id, key_client


@pytest.fixture(scope="module")
def org(
    module_deployment: Deployment,
    module_app: FastAPI,
    module_make_user: MakeUser,
    tmp_path_factory: pytest.TempPathFactory,
) -> Org:
    return make_org(
        module_deployment,
        module_app,
        module_make_user,
        "Review Org",
        gallery(tmp_path_factory.mktemp("gallery")),
    )


@pytest.fixture(scope="module")
def results(org: Org) -> list[str]:
    status, body = search(org.keys["search"], probe_bytes(), top_k=2)
    assert status == 200, body
    ids = [c["result_id"] for f in body["faces"] for c in f["candidates"]]
    assert len(ids) >= 2, "two candidates (the gallery holds two faces)"
    return ids


def _review(org: Org, who: str, result_id: str, decision: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    reply = org.keys[who].post(
        f"/api/v1/results/{result_id}/reviews",
        json={"decision": decision, "note": f"{who} says {decision}"},
    )
    return reply.status_code, reply.json()


def _status(org: Org, result_id: str) -> str:
    return str(org.keys["review1"].get(f"/api/v1/results/{result_id}").json()["status"])


def test_two_different_reviewers_confirm(
    org: Org, results: list[str], module_deployment: Deployment
) -> None:
    rid = results[0]
    code, body = _review(org, "review1", rid, "confirm")
    assert code == 200 and body["status"] == "lead", body
    # the same reviewer twice does not confirm
    code, body = _review(org, "review1", rid, "confirm")
    assert code == 409, body
    assert _status(org, rid) == "lead"
    # ... not even through a cookie session instead of the key
    again = org.reviewer1.client.post(
        f"/api/v1/results/{rid}/reviews", json={"decision": "confirm"}
    )
    assert again.status_code == 409
    assert _status(org, rid) == "lead"
    code, body = _review(org, "review2", rid, "confirm")
    assert code == 200 and body["status"] == "confirmed", body
    assert [r["decision"] for r in body["reviews"]] == ["confirm", "confirm"]
    with module_deployment.db.session() as s:
        decided = list(
            s.scalars(
                select(AuditEntry).where(
                    AuditEntry.action == "review.decided",
                    AuditEntry.target_id == str(db_id(module_deployment, "result", rid)),
                )
            )
        )
    assert [e.details["status_after"] for e in decided] == ["lead", "confirmed"]
    assert {e.actor_user_id for e in decided} == {org.reviewer1.user_id, org.reviewer2.user_id}


def test_a_rejection_is_final(org: Org, results: list[str]) -> None:
    rid = results[1]
    code, body = _review(org, "review2", rid, "reject")
    assert code == 200 and body["status"] == "rejected"
    code, _ = _review(org, "review1", rid, "confirm")
    assert code == 409
    assert _status(org, rid) == "rejected"


def test_searcher_cannot_review_own_results(
    org: Org, module_make_user: MakeUser, module_app: FastAPI
) -> None:
    both = module_make_user(org.name, ["investigator", "reviewer"])
    status, body = search(both.client, probe_bytes(), top_k=1, case="2024/18")
    assert status == 200, body
    rid = body["faces"][0]["candidates"][0]["result_id"]
    reply = both.client.post(f"/api/v1/results/{rid}/reviews", json={"decision": "confirm"})
    assert reply.status_code == 403
    assert "ran a search" in reply.json()["detail"]
    # the queue of another reviewer lists it; the searcher's own queue does not
    queue = org.keys["review1"].get("/api/v1/reviews/queue").json()["items"]
    assert rid in [q["result_id"] for q in queue]
    own = key_client(module_app, both.api_key(["review"])).get("/api/v1/reviews/queue")
    assert rid not in [q["result_id"] for q in own.json()["items"]]


def test_review_needs_the_reviewer(org: Org, results: list[str]) -> None:
    for who in ("search", "audit", "ingest", "admin"):
        code, _ = _review(org, who, results[0], "confirm")
        assert code == 403, who
    reply = org.keys["review1"].post(
        f"/api/v1/results/{results[0]}/reviews", json={"decision": "identified"}
    )
    assert reply.status_code == 422
    unknown = api_id(org.admin.client.app.state.deployment, "result", 999_999)  # type: ignore[attr-defined]
    reply = org.keys["review1"].post(
        f"/api/v1/results/{unknown}/reviews", json={"decision": "confirm"}
    )
    assert reply.status_code == 404
