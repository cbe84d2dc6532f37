"""Memory and CPU denial of service (issue 11, Medium 8), attacked over the API.

A 192 KB PNG of 7700 x 7700 passed every limit and was decoded at full size; six at once pushed
the server to 4.7 GB and stalled every tenant's searches. Now large images are decoded reduced,
model work waits in a bounded queue with a fair share per organisation (429 over the share, 503
when the queue is full, both with Retry-After), uploads are bounded in pixels per request, and
ingest jobs per organisation."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import func, select

from facesearch.deployment import Deployment
from facesearch.ingest.jobs import runner_for
from facesearch.store.casework import Search
from facesearch.workqueue import FairQueue
from tests.api.casework_world import PURPOSE, Org, blank_png, gallery, make_org, probe_bytes
from tests.api.conftest import MakeUser
from tests.api.test_server import Server

PROC_STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


@pytest.fixture(scope="module")
def orgs(
    module_deployment: Deployment,
    module_app: FastAPI,
    module_make_user: MakeUser,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Org, Org]:
    images = gallery(tmp_path_factory.mktemp("gallery"))
    a = make_org(module_deployment, module_app, module_make_user, "Flooder", images)
    b = make_org(module_deployment, module_app, module_make_user, "Bystander", images)
    return a, b


@pytest.fixture
def queue(module_deployment: Deployment) -> FairQueue:
    """Each test sets its own queue; the deployment's own is put back afterwards."""
    return module_deployment.model_queue


@pytest.fixture(scope="module")
def bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (7700, 7700), (120, 130, 140)).save(buf, "PNG", optimize=True)
    data = buf.getvalue()
    assert len(data) < 200_000  # 192 KB for 59.3 megapixels, under max_image_pixels
    return data


def _kb(field: str) -> int:
    for line in PROC_STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def _post_search(base: str, key: str, probe: bytes, name: str) -> httpx.Response:
    return httpx.post(
        f"{base}/api/v1/searches",
        headers={"Authorization": f"Bearer {key}"},
        data={"case_number": "2024/17", "purpose": PURPOSE},
        files={"probe": (name, probe, "image/png")},
        timeout=300,
    )


def _search(org: Org, probe: bytes) -> httpx.Response:
    reply = org.keys["search"].post(
        "/api/v1/searches",
        data={"case_number": "2024/17", "purpose": PURPOSE},
        files={"probe": ("p.jpg", probe, "image/jpeg")},
    )
    return reply  # type: ignore[return-value]


@pytest.mark.skipif(not CLEAR_REFS.exists(), reason="needs /proc/self/clear_refs (Linux)")
def test_a_flood_of_png_bombs_stays_bounded_and_another_org_still_gets_answers(
    orgs: tuple[Org, Org], module_deployment: Deployment, module_app: FastAPI, bomb: bytes
) -> None:
    flooder, bystander = orgs
    flood_key = flooder.investigator.api_key(["search"], name="flood")
    other_key = bystander.investigator.api_key(["search"], name="bystander")
    saved = module_deployment.model_queue
    # a generous wait so a slow, shared test machine does not turn waits into 503s
    module_deployment.model_queue = FairQueue(slots=2, queue_size=16, per_key=4, wait_seconds=240)
    try:
        with Server(module_app) as server:
            base = f"http://127.0.0.1:{server.port}"
            CLEAR_REFS.write_text("5")  # reset this (the server's) process's peak RSS
            baseline = _kb("VmRSS")
            with ThreadPoolExecutor(11) as pool:
                floods = [
                    pool.submit(_post_search, base, flood_key, bomb, f"bomb{i}.png")
                    for i in range(10)
                ]
                other = pool.submit(_post_search, base, other_key, probe_bytes(), "probe.jpg")
                replies = [f.result() for f in floods]
                answer = other.result()
            peak = _kb("VmHWM")
    finally:
        module_deployment.model_queue = saved
    statuses = sorted(r.status_code for r in replies)
    # the flooder holds at most its share (4: two running, two waiting); the rest are 429
    assert statuses.count(200) == 4 and statuses.count(429) == 6, statuses
    assert all(r.headers.get("retry-after", "").isdigit() for r in replies if r.status_code == 429)
    # the other organisation was not starved: its search was answered, with its candidates
    assert answer.status_code == 200, answer.text
    assert any(f["candidates"] for f in answer.json()["faces"])
    # six bombs decoded full-size took 4.7 GB; four through two slots, reduced, stay well under
    rise_mb = (peak - baseline) / 1024
    print(f"flood: resident peak rose by {rise_mb:.0f} MB")
    assert rise_mb < 1000, f"the server's resident peak rose by {rise_mb:.0f} MB"


@pytest.mark.skipif(not CLEAR_REFS.exists(), reason="needs /proc/self/clear_refs (Linux)")
def test_six_png_bombs_at_once_are_all_answered_within_bounded_memory(
    orgs: tuple[Org, Org], module_deployment: Deployment, module_app: FastAPI, bomb: bytes
) -> None:
    flooder, _ = orgs
    key = flooder.investigator.api_key(["search"], name="six")
    saved = module_deployment.model_queue
    module_deployment.model_queue = FairQueue(slots=2, queue_size=16, per_key=6, wait_seconds=240)
    try:
        with Server(module_app) as server:
            base = f"http://127.0.0.1:{server.port}"
            CLEAR_REFS.write_text("5")
            baseline = _kb("VmRSS")
            with ThreadPoolExecutor(6) as pool:
                replies = list(
                    pool.map(lambda i: _post_search(base, key, bomb, f"b{i}.png"), range(6))
                )
            peak = _kb("VmHWM")
    finally:
        module_deployment.model_queue = saved
    assert [r.status_code for r in replies] == [200] * 6, [r.text for r in replies]
    assert all(r.json()["faces"] == [] for r in replies)
    rise_mb = (peak - baseline) / 1024
    print(f"six bombs: resident peak rose by {rise_mb:.0f} MB")
    assert rise_mb < 1000, f"the server's resident peak rose by {rise_mb:.0f} MB (was 4.7 GB)"


def test_over_the_share_429_and_queue_full_503_with_retry_after(
    orgs: tuple[Org, Org], module_deployment: Deployment
) -> None:
    flooder, bystander = orgs
    saved = module_deployment.model_queue
    queue = FairQueue(slots=1, queue_size=0, per_key=1, wait_seconds=1)
    module_deployment.model_queue = queue
    with module_deployment.db.session() as s:
        searches_before = s.scalar(select(func.count(Search.id)))
    try:
        with queue.slot(flooder.admin.org_id):  # the flooder's one search is running
            share = _search(flooder, probe_bytes())
            full = _search(bystander, probe_bytes())
        after = _search(bystander, probe_bytes())
    finally:
        module_deployment.model_queue = saved
    assert share.status_code == 429, share.text
    assert int(share.headers["retry-after"]) >= 1
    assert full.status_code == 503, full.text
    assert int(full.headers["retry-after"]) >= 1 and "busy" in full.json()["detail"]
    assert after.status_code == 200, after.text
    with module_deployment.db.session() as s:  # refused searches were not performed
        assert s.scalar(select(func.count(Search.id))) == (searches_before or 0) + 1


def test_uploads_are_bounded_in_pixels_and_jobs_per_organisation(
    orgs: tuple[Org, Org], module_deployment: Deployment
) -> None:
    flooder, bystander = orgs
    settings = module_deployment.settings
    big = [("files", ("a.png", blank_png(400), "image/png")) for _ in range(3)]
    old_pixels = settings.max_request_pixels
    settings.max_request_pixels = 400_000  # three 400 x 400 images are 480,000
    try:
        reply = flooder.keys["ingest"].post(
            f"/api/v1/collections/{flooder.collection_id}/uploads", files=big
        )
    finally:
        settings.max_request_pixels = old_pixels
    assert reply.status_code == 413, reply.text
    uploads = settings.home / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())  # refused before anything is stored

    runner = runner_for(module_deployment)
    gate = threading.Event()
    assert flooder.admin.org_id is not None
    for _ in range(settings.ingest_queue_per_org):  # the flooder's share of queued jobs
        runner.submit_work(0, lambda: gate.wait(30) and None, org_id=flooder.admin.org_id)
    one = [("files", ("a.png", blank_png(), "image/png"))]
    try:
        refused = flooder.keys["ingest"].post(
            f"/api/v1/collections/{flooder.collection_id}/uploads", files=one
        )
        accepted = bystander.keys["ingest"].post(
            f"/api/v1/collections/{bystander.collection_id}/uploads", files=one
        )
    finally:
        gate.set()
    assert runner.wait_idle(60)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert accepted.status_code == 202, accepted.text
