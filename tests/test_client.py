"""The Python client (and `facesearch remote`) against a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner

from facesearch.cli import app as cli_app
from facesearch.client import (
    FacesearchClient,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
)
from facesearch.deployment import Deployment
from tests.api.casework_world import LEGAL, PURPOSE, blank_png, gallery
from tests.api.conftest import api_id, db_id, make_app, new_deployment, user_factory
from tests.conftest import faces_dir, ingest


@dataclass
class Server:
    url: str
    dep: Deployment
    keys: dict[str, str]
    collection_id: str  # opaque, as the API shows it
    probe: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    probe = faces_dir("small", "barack_obama") / "obama2.jpg"
    dep = new_deployment(tmp_path_factory.mktemp("server"), max_request_bytes=1_000_000)
    app = make_app(dep)
    make_user = user_factory(dep, app)
    admin = make_user("Client Org", ["org_admin"])
    reply = admin.client.post(
        "/api/v1/collections",
        json={"name": "mugshots", "legal_basis": LEGAL, "retention_days": 365},
    )
    assert reply.status_code == 201, reply.text
    assert admin.org_id is not None
    ingest(dep, db_id(dep, "collection", reply.json()["id"]), gallery(tmp_path_factory.mktemp("g")))
    keys = {
        "search": make_user("Client Org", ["investigator"]).api_key(["search"]),
        "review1": make_user("Client Org", ["reviewer"]).api_key(["review"]),
        "review2": make_user("Client Org", ["reviewer"]).api_key(["review"]),
        "ingest": make_user("Client Org", ["ingestor"]).api_key(["ingest"]),
    }
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uv.started, "uvicorn did not start"
    yield Server(f"http://127.0.0.1:{port}", dep, keys, str(reply.json()["id"]), probe)
    uv.should_exit = True
    thread.join(timeout=10)
    dep.close()


def test_search_review_crop_and_case(server: Server) -> None:
    with FacesearchClient(server.url, server.keys["search"]) as fs:
        colls = fs.collections()
        assert [c["name"] for c in colls] == ["mugshots"]
        assert fs.collection_id("mugshots") == server.collection_id
        result = fs.search(server.probe, "2024/77", PURPOSE, [server.collection_id], top_k=3)
        cand = result["faces"][0]["candidates"][0]
        assert cand["status"] == "lead"
        assert fs.crop(cand["face_id"])[:2] == b"\xff\xd8"
        case = fs.get_case(result["case_id"])
        assert case["number"] == "2024/77"
        with pytest.raises(Forbidden):
            fs.review(cand["result_id"], "confirm")
        with pytest.raises(NotFound):
            fs.get_case(api_id(server.dep, "case", 999_999))
        with pytest.raises(NotFound):  # an id is one path segment, whatever it holds
            fs.get_case("../collections")
        assert fs.collection_id(server.collection_id) == server.collection_id
        with pytest.raises(InvalidRequest) as bad:
            fs.search(server.probe, "2024/77", "short")
        assert "purpose" in bad.value.detail
    for who, status in (("review1", "lead"), ("review2", "confirmed")):
        with FacesearchClient(server.url, server.keys[who]) as fs:
            assert fs.review(cand["result_id"], "confirm")["status"] == status


def test_upload_and_job(server: Server) -> None:
    with FacesearchClient(server.url, server.keys["ingest"]) as fs:
        job = fs.upload(
            server.collection_id, [("blank.png", blank_png()), ("junk.jpg", b"not an image")]
        )
        done = fs.wait_job(job["id"], timeout=60, poll=0.2)
        assert done["status"] == "done" and done["files_done"] == 2
        with pytest.raises(PayloadTooLarge):
            fs.upload(server.collection_id, [("big.jpg", b"\xff" * 1_200_000)])


def test_errors(server: Server) -> None:
    with FacesearchClient(server.url, "fsk_000000000000_wrong") as fs, pytest.raises(Unauthorized):
        fs.collections()
    with pytest.raises(ValueError):
        FacesearchClient(server.url, "")
    with FacesearchClient(server.url, server.keys["search"]) as fs:
        # 60 searches a minute per account: send junk probes (cheap) until refused
        with pytest.raises(RateLimited) as limited:
            for _ in range(70):
                fs.search(blank_png(), "2024/78", PURPOSE)
        assert limited.value.retry_after and limited.value.retry_after >= 1


def test_remote_cli(server: Server, tmp_path: Path) -> None:
    env = {"FACESEARCH_URL": server.url, "FACESEARCH_API_KEY": server.keys["ingest"]}
    runner = CliRunner()
    listed = runner.invoke(cli_app, ["remote", "collections", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output)[0]["name"] == "mugshots"
    (tmp_path / "a.png").write_bytes(blank_png())
    ingested = runner.invoke(
        cli_app, ["remote", "ingest", str(tmp_path), "--collection", "mugshots", "--json"], env=env
    )
    assert ingested.exit_code == 0, ingested.output
    job = json.loads(ingested.output)
    assert job["status"] == "done"
    shown = runner.invoke(cli_app, ["remote", "job", str(job["id"])], env=env)
    assert shown.exit_code == 0 and "done" in shown.output
    refused = runner.invoke(
        cli_app,
        ["remote", "search", str(tmp_path / "a.png"), "--case", "2024/79", "--purpose", PURPOSE],
        env=env,
    )
    assert refused.exit_code == 1 and "403" in refused.output
