"""The core CLI end to end: init, ingest, search, verify, stats, index rebuild."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

from typer.testing import CliRunner

from facesearch.cli import app
from tests import pg
from tests.conftest import faces_dir


def test_core_commands_end_to_end(tmp_path: Path) -> None:
    photos = faces_dir("small", "barack_obama")
    base = ["--home", str(tmp_path / "home"), "--key-file", str(tmp_path / "k.key")]
    runner = CliRunner(env=pg.cli_env())

    def run(*args: str) -> str:
        result = runner.invoke(app, [*base, *args])
        assert result.exit_code == 0, result.output
        return result.output

    run("init")
    summary = json.loads(run("ingest", str(photos), "-c", "obama", "--workers", "1", "--json"))
    assert summary["ok"] == 4 and summary["faces"] == 4 and summary["rejected"] == 0
    stats = json.loads(run("stats", "--json"))
    assert {k: stats[k] for k in ("collections", "files", "faces", "index_size")} == {
        "collections": 1,
        "files": 4,
        "faces": 4,
        "index_size": 4,
    }

    crops = tmp_path / "crops"
    probe = str(photos / "obama2.jpg")
    found = json.loads(
        run("search", probe, "-c", "obama", "--top", "2", "--json", "--crops", str(crops))
    )
    cands = found["faces"][0]["candidates"]
    assert [c["rank"] for c in cands] == [1, 2]
    assert cands[0]["score"] >= cands[1]["score"] and cands[0]["source"].endswith("obama2.jpg")
    assert {"score", "source", "box", "collection", "quality", "low_quality"} <= set(cands[0])
    assert len(list(crops.glob("*.jpg"))) == 2
    table = run("search", probe, "--top", "1")
    assert "obama" in table and "not identifications" in table

    out = run("index", "rebuild")
    assert "4 vectors" in out
    assert json.loads(run("search", probe, "-c", "obama", "--top", "2", "--json")) == {**found}

    same = json.loads(
        run("verify", str(photos / "obama.jpg"), str(photos / "obama1.jpg"), "--json")
    )
    assert same["same_person"] is True and same["score"] >= same["threshold"]
    other = faces_dir("small", "joe_biden", "biden2.jpg")
    diff = json.loads(run("verify", str(photos / "obama.jpg"), str(other), "--json"))
    assert diff["same_person"] is False


def test_a_cli_search_finds_what_the_warmed_service_index_finds(tmp_path: Path) -> None:
    """The CLI opens only what one search needs (segment headers, the short list's codes, the
    re-rank's blocks, beside the model's work): same candidates and scores as the service's
    index, which holds every code in RAM."""
    photos = faces_dir("small", "barack_obama")
    base = ["--home", str(tmp_path / "home"), "--key-file", str(tmp_path / "k.key")]
    env = pg.cli_env()
    runner = CliRunner(env=env)
    assert runner.invoke(app, [*base, "init"]).exit_code == 0
    ingest = runner.invoke(app, [*base, "ingest", str(photos), "-c", "obama", "--workers", "1"])
    assert ingest.exit_code == 0, ingest.output
    probe = str(photos / "obama2.jpg")
    result = runner.invoke(app, [*base, "search", probe, "-c", "obama", "--top", "2", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)["faces"][0]["candidates"]
    assert len(found) == 2
    with mock.patch.dict(os.environ, env):  # the same database (PostgreSQL: the test's own)
        warm = _warm_candidates(tmp_path, probe)
    assert warm == [(c["face_id"], c["score"]) for c in found]


def _warm_candidates(tmp_path: Path, probe: str) -> list[tuple[int, float]]:
    from facesearch.config import load_settings
    from facesearch.deployment import Deployment
    from facesearch.search.engine import SearchEngine

    settings = load_settings(tmp_path / "home", key_file=tmp_path / "k.key")
    dep = Deployment.open(settings)
    try:
        dep.warm()  # as the service does at start-up: every segment's codes in RAM
        # ... and the model's runtime sessions built: the first search builds none
        no_session = mock.Mock(side_effect=AssertionError("a search built a model session"))
        with (
            mock.patch("facesearch.vision.onnx_model.create_session", no_session),
            mock.patch("facesearch.vision.sface.create_session", no_session),
        ):
            result = SearchEngine(dep).search(
                Path(probe).read_bytes(), collection_ids=dep.index.collections(), top_k=2
            )
    finally:
        dep.close()
    return [(c.face_id, c.score) for c in result.faces[0].candidates]


_IMPORTS = """
import json, sys
sys.argv = ["facesearch", *sys.argv[2:]]
from facesearch.cli import main
try:
    main()
except SystemExit:
    pass
open(ARGV_FILE, "w").write(json.dumps(sorted(sys.modules)))
"""


def _modules_after(tmp_path: Path, *args: str) -> set[str]:
    out = tmp_path / "modules.json"
    code = _IMPORTS.replace("ARGV_FILE", repr(str(out)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run(
        [sys.executable, "-c", code, "-", *args], env=env, check=True, capture_output=True
    )
    return {m.split(".")[0] for m in json.loads(out.read_text())}


def test_help_loads_no_model_runtime_web_framework_index_or_database(tmp_path: Path) -> None:
    """`facesearch --help` (and a group's help) is instant: the commands import what they need
    inside themselves."""
    heavy = {"onnxruntime", "onnx", "fastapi", "faiss", "sqlalchemy", "numpy", "httpx", "PIL"}
    for args in (["--help"], ["index", "--help"], ["remote", "--help"], ["audit", "--help"]):
        assert not _modules_after(tmp_path, *args) & heavy, args


def test_clear_errors_for_bad_input(tmp_path: Path) -> None:
    runner = CliRunner(env=pg.cli_env())
    base = ["--home", str(tmp_path / "home"), "--key-file", str(tmp_path / "k.key")]
    result = runner.invoke(app, [*base, "stats"])
    assert result.exit_code != 0
    assert "init" in str(result.exception) or "init" in result.output
    assert runner.invoke(app, [*base, "init"]).exit_code == 0
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not a jpeg at all")
    result = runner.invoke(app, [*base, "search", str(junk)])
    assert result.exit_code != 0
    assert "not_an_image" in str(result.exception)


def test_delete_purges_a_collection_and_is_audited(tmp_path: Path) -> None:
    from facesearch.config import load_settings
    from facesearch.deployment import Deployment
    from facesearch.security import audit

    photos = faces_dir("small", "barack_obama")
    base = ["--home", str(tmp_path / "home"), "--key-file", str(tmp_path / "k.key")]
    runner = CliRunner(env=pg.cli_env())

    def run(*args: str) -> str:
        result = runner.invoke(app, [*base, *args])
        assert result.exit_code == 0, result.output
        return result.output

    run("init")
    run("ingest", str(photos), "-c", "gone", "--workers", "1", "--json")
    blobs = tmp_path / "home" / "blobs"
    assert any(p.is_file() for p in blobs.rglob("*"))
    assert "deleted" in run("delete", "-c", "gone", "--yes")
    stats = json.loads(run("stats", "--json"))
    assert stats["collections"] == 0 and stats["faces"] == 0 and stats["index_size"] == 0
    assert not any(p.is_file() for p in blobs.rglob("*")), "images and crops are purged"
    url = runner.env.get("FACESEARCH_DATABASE_URL")
    dep = Deployment.open(
        load_settings(tmp_path / "home", key_file=tmp_path / "k.key", database_url=url)
    )
    try:
        with dep.db.session() as s:
            entries = [e for e in audit.iter_entries(s) if e["action"] == "collection.deleted"]
    finally:
        dep.close()
    assert entries and entries[-1]["ip"] == "cli" and entries[-1]["details"]["faces"] > 0
    missing = runner.invoke(app, [*base, "delete", "-c", "gone", "--yes"])
    assert missing.exit_code != 0
