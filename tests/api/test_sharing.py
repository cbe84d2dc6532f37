"""Issue 11, Medium 4: sharing does not reveal whether another organisation exists, and a shared
collection enters the receiver's search scope only once the receiver accepts it."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from facesearch.deployment import Deployment
from tests.api.casework_world import LEGAL, gallery, probe_bytes, search
from tests.api.conftest import MakeUser, db_id
from tests.conftest import ingest


def _collection(client: TestClient, dep: Deployment, tmp: Path) -> str:
    r = client.post(
        "/api/v1/collections", json={"name": "pushed", "legal_basis": LEGAL, "retention_days": 30}
    )
    assert r.status_code == 201, r.text
    cid = str(r.json()["id"])
    ingest(dep, db_id(dep, "collection", cid), gallery(tmp))
    return cid


def test_sharing_reveals_no_organisation_and_needs_the_receivers_consent(
    deployment: Deployment, make_user: MakeUser, tmp_path: Path
) -> None:
    owner = make_user("Org A", ["org_admin"])
    receiver = make_user("Org B", ["org_admin"])
    investigator = make_user("Org B", ["investigator"])
    cid = _collection(owner.client, deployment, tmp_path / "g")

    # names of organisations, real or not, get the same answer: sharing takes a code
    answers = []
    for name in ("Org B", "No Such Org"):
        post = owner.client.post(f"/api/v1/collections/{cid}/shares", json={"organisation": name})
        gone = owner.client.delete(f"/api/v1/collections/{cid}/shares/{name}")
        answers.append(
            (post.status_code, post.text, gone.status_code, gone.text.replace(name, "?"))
        )
    assert answers[0] == answers[1] and answers[0][0] >= 400 and answers[0][2] >= 400
    # a guessed code tells nothing either
    for code in ("fsc_guessed-code-1", "fsc_guessed-code-2"):
        r = owner.client.post(f"/api/v1/collections/{cid}/shares", json={"code": code})
        assert r.status_code == 404 and "Org" not in r.text

    # the receiver hands out a code; the owner offers; nothing enters B's scope yet
    code = receiver.client.post("/api/v1/share-codes").json()["code"]
    r = owner.client.post(f"/api/v1/collections/{cid}/shares", json={"code": code})
    assert r.status_code == 201, r.text
    share_id = r.json()["id"]
    assert r.json()["state"] == "offered"
    # the code is used up
    again = owner.client.post(f"/api/v1/collections/{cid}/shares", json={"code": code})
    assert again.status_code == 404
    listed = [c["id"] for c in investigator.client.get("/api/v1/collections").json()["items"]]
    assert cid not in listed
    status, body = search(investigator.client, probe_bytes(), case="B-1")
    assert status == 422, body  # B has nothing to search: the offer is not in its scope
    status, _ = search(investigator.client, probe_bytes(), case="B-1", collections=str(cid))
    assert status == 404

    incoming = receiver.client.get("/api/v1/shares/incoming").json()["items"]
    assert [(s["id"], s["state"], s["organisation"]) for s in incoming] == [
        (share_id, "offered", "Org A")
    ]
    assert receiver.client.post(f"/api/v1/shares/{share_id}/accept").status_code == 200
    status, body = search(investigator.client, probe_bytes(), case="B-1")
    assert status == 200
    assert cid in {c["collection_id"] for f in body["faces"] for c in f["candidates"]}

    # withdrawing names the share by id; an unknown id is refused and audited
    assert owner.client.delete(f"/api/v1/collections/{cid}/shares/999999").status_code == 404
    auditor = make_user("Org A", ["auditor"])
    actions = [
        e["action"]
        for e in auditor.client.get("/api/v1/audit/entries", params={"limit": 500}).json()["items"]
    ]
    assert "collection.unshare_refused" in actions and "collection.share_refused" in actions
    r = owner.client.delete(f"/api/v1/collections/{cid}/shares/{share_id}")
    assert r.status_code == 200 and r.json()["shared_with"] == []
