"""Over the API an organisation administrator picks a collection's model and moves a collection
to another model as a background job; searches use each collection's own model."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from facesearch.deployment import Deployment
from facesearch.ingest.jobs import runner_for
from tests.api.casework_world import LEGAL, PURPOSE, gallery, probe_bytes
from tests.api.conftest import MakeUser, db_id
from tests.conftest import ingest


def _wait(client: TestClient, job_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return dict(job)
        time.sleep(0.2)
    raise AssertionError("job did not finish")


def test_collection_model_choice_and_reembed_job(
    deployment: Deployment, make_user: MakeUser, tmp_path: Path
) -> None:
    admin = make_user("Org M", ["org_admin"])
    investigator = make_user("Org M", ["investigator"])
    made = admin.client.post(
        "/api/v1/collections",
        json={"name": "old", "legal_basis": LEGAL, "retention_days": 30, "model": "dlib"},
    )
    assert made.status_code == 201, made.text
    assert made.json()["model_id"] == "dlib-resnet-v1"
    default = admin.client.post(
        "/api/v1/collections", json={"name": "new", "legal_basis": LEGAL, "retention_days": 30}
    )
    assert default.json()["model_id"] == "sface-2021dec"
    cid = str(made.json()["id"])
    ingest(deployment, db_id(deployment, "collection", cid), gallery(tmp_path / "g"))

    def search() -> dict[str, object]:
        reply = investigator.client.post(
            "/api/v1/searches",
            files={"probe": ("p.jpg", probe_bytes(), "image/jpeg")},
            data={"case_number": "2024/90", "purpose": PURPOSE, "collections": str(cid)},
        )
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    before = search()
    assert [m["model_id"] for m in before["models"]] == ["dlib-resnet-v1"]  # type: ignore[index]

    job = admin.client.post(f"/api/v1/collections/{cid}/reembed", json={"model": "sface"})
    assert job.status_code == 202, job.text
    assert job.json()["kind"] == "reembed"
    again = admin.client.post(f"/api/v1/collections/{cid}/reembed", json={"model": "sface"})
    assert again.status_code == 409  # one job per collection at a time
    runner_for(deployment).wait_idle(120)
    done = _wait(admin.client, str(job.json()["id"]))
    assert done["status"] == "done", done
    assert admin.client.get(f"/api/v1/collections/{cid}").json()["model_id"] == "sface-2021dec"

    after = search()
    assert [m["model_id"] for m in after["models"]] == ["sface-2021dec"]  # type: ignore[index]
    cands = after["faces"][0]["candidates"]  # type: ignore[index]
    assert cands[0]["above_threshold"] and cands[0]["model_id"] == "sface-2021dec"

    same = admin.client.post(f"/api/v1/collections/{cid}/reembed", json={"model": "sface"})
    assert same.status_code == 409
    # another organisation's collection does not exist for this administrator
    other = make_user("Org N", ["org_admin"])
    assert other.client.post(f"/api/v1/collections/{cid}/reembed", json={}).status_code == 404
