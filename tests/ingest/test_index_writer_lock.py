"""One process writes the embedded index: a CLI ingest run beside the service must not write
the service's segment files (two writers would reuse segment numbers and drop each other's
manifests). The second process writes the database only; the service finds its faces on its
next search, and the index on disk stays the writer's."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import func, select

from facesearch.config import load_settings
from facesearch.deployment import Deployment
from facesearch.gallery.collections import ensure_collection
from facesearch.search.engine import SearchEngine
from facesearch.store.gallery import Face
from tests.conftest import faces_dir, ingest, new_deployment


def _files(index_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(index_dir)): p.read_bytes()
        for p in sorted(index_dir.rglob("*"))
        if p.is_file() and not p.name.endswith(".writer.lock")
    }


def _people(tmp_path: Path, name: str, *people: str) -> Path:
    folder = tmp_path / name
    for person in people:
        shutil.copytree(faces_dir("small", person), folder / person)
    return folder


def _reopen(tmp_path: Path) -> Deployment:
    """The same data directory (and database) opened by another process."""
    return Deployment.open(
        load_settings(tmp_path / "home", key_file=tmp_path / "keys" / "master.key")
    )


def _sources(dep: Deployment, photo: Path, cid: int) -> set[str]:
    result = SearchEngine(dep).search(photo.read_bytes(), collection_ids=[cid], top_k=5)
    return {c.source for f in result.faces for c in f.candidates if c.above_threshold}


def test_a_second_process_writes_the_database_and_the_writer_catches_up(tmp_path: Path) -> None:
    first = _people(tmp_path, "first", "amy_adams")
    second = _people(tmp_path, "second", "barack_obama")
    service = new_deployment(tmp_path)  # the writer: opens the index first
    try:
        ingest(service, "gallery", first)
        cid = ensure_collection(service, "gallery")
        obama = next(faces_dir("small", "barack_obama").glob("*.jpg"))
        assert not _sources(service, obama, cid)  # not in the gallery yet

        on_disk = _files(service.settings.index_dir)
        cli = _reopen(tmp_path)  # e.g. `facesearch ingest` beside it
        try:
            summary = ingest(cli, "gallery", second)
            assert summary.faces > 0
            found_by_cli = _sources(cli, obama, cid)  # it reads, with its own faces in memory
        finally:
            cli.close()
        assert found_by_cli
        assert _files(service.settings.index_dir) == on_disk, "the second process wrote files"

        found = _sources(service, obama, cid)  # the writer catches up from the database
        assert found == found_by_cli
        assert all("barack_obama" in s for s in found)
    finally:
        service.close()

    reopened = _reopen(tmp_path)  # the next writer sees everything
    try:
        assert _sources(reopened, obama, cid) == found
        with reopened.db.session() as s:
            in_db = s.scalar(
                select(func.count()).select_from(Face).where(Face.collection_id == cid)
            )
        assert reopened.index_for(reopened.default_model_id).state(cid).count == in_db
    finally:
        reopened.close()
