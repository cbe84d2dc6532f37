"""Collections keep their own face model: a dlib collection and an SFace collection live in one
deployment, each searched with its own model, and `reembed` moves a collection from one model
to the other, resuming after a kill to exactly the result of an uninterrupted run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from facesearch.deployment import Deployment
from facesearch.errors import InvalidRequest, ModelMismatch
from facesearch.gallery.collections import ensure_collection, ids_by_name
from facesearch.ingest.reembed import Reembed
from facesearch.search.engine import SearchEngine
from facesearch.store.gallery import Collection, Face, SourceFile
from tests.conftest import REPO_ROOT, faces_dir, ingest, new_deployment

DLIB = "dlib-resnet-v1"
SFACE = "sface-2021dec"


def _gallery(tmp_path: Path, people: tuple[str, ...] = ("barack_obama", "joe_biden")) -> Path:
    folder = tmp_path / "gallery"
    for person in people:
        shutil.copytree(faces_dir("small", person), folder / person)
    return folder


def test_new_collections_use_sface_and_collections_never_mix(tmp_path: Path) -> None:
    dep = new_deployment(tmp_path / "a")
    try:
        assert dep.default_model_id == SFACE
        cid = ensure_collection(dep, "default")
        with dep.db.session() as s:
            assert s.get(Collection, cid).model_id == SFACE  # type: ignore[union-attr]
        ensure_collection(dep, "old", model="dlib")
        with pytest.raises(ModelMismatch, match="never mixes"):
            ensure_collection(dep, "old", model="sface")
        with pytest.raises(InvalidRequest):
            ensure_collection(dep, "other", model="no-such-model")
    finally:
        dep.close()


def test_a_dlib_and_an_sface_collection_are_each_searched_with_their_own_model(
    tmp_path: Path,
) -> None:
    gallery = _gallery(tmp_path)
    dep = new_deployment(tmp_path / "home")
    try:
        ingest(dep, ensure_collection(dep, "legacy", model="dlib"), gallery)
        ingest(dep, ensure_collection(dep, "modern"), gallery)
        with dep.db.session() as s:
            models = dict(s.execute(select(Collection.name, Collection.model_id)).all())
            per_model = dict(
                s.execute(select(Face.model_id, func.count(Face.id)).group_by(Face.model_id)).all()
            )
            ids = ids_by_name(s, ["legacy", "modern"])
        assert models == {"legacy": DLIB, "modern": SFACE}
        assert per_model[DLIB] > 0 and per_model[SFACE] > 0
        probe = faces_dir("small", "barack_obama", "obama2.jpg").read_bytes()
        result = SearchEngine(dep).search(probe, collection_ids=ids, top_k=6)
        assert {m.model_id for m in result.models} == {DLIB, SFACE}
        used = {m.model_id: m for m in result.models}
        assert used[SFACE].gallery_faces == per_model[SFACE]
        assert used[DLIB].gallery_faces == per_model[DLIB]
        # what the threshold means at this gallery size: faces x the measured false-match rate
        assert used[SFACE].expected_false_candidates == pytest.approx(
            per_model[SFACE] * 2.181e-3, rel=1e-3
        )
        assert len(result.faces) == 1, "both models' faces of the probe are one probe face"
        cands = result.faces[0].candidates
        by_model = {c.model_id: c for c in reversed(cands)}  # the best of each model
        assert by_model[DLIB].collection == "legacy" and by_model[SFACE].collection == "modern"
        for cand in by_model.values():
            assert cand.above_threshold and "barack_obama" in cand.source
        # the exact same photo scores ~1 under either model
        assert all(c.score > 0.99 for c in by_model.values() if c.source.endswith("obama2.jpg"))
    finally:
        dep.close()


def _reembed_cli(settings_home: Path, key: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "facesearch",
            "--home",
            str(settings_home),
            "--key-file",
            str(key),
            "reembed",
            "-c",
            "lfw",
            "--model",
            "sface",
            "--workers",
            "1",
            "--json",
            *extra,
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        start_new_session=True,
    )


def _lfw(tmp_path: Path, people: int = 12) -> Path:
    lfw = faces_dir("lfw-devtrain")
    folder = tmp_path / "lfw"
    for person in sorted(p for p in lfw.iterdir() if p.is_dir())[:people]:
        shutil.copytree(person, folder / person.name)
    return folder


def _snapshot(dep: Deployment) -> list[tuple[str, int, str, int, int, int, int]]:
    with dep.db.session() as s:
        return [
            (Path(r[0]).name, int(r[1]), str(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6]))
            for r in s.execute(
                select(
                    SourceFile.source,
                    Face.face_index,
                    Face.model_id,
                    Face.left,
                    Face.top,
                    Face.right,
                    Face.bottom,
                )
                .join(SourceFile, SourceFile.id == Face.file_id)
                .order_by(SourceFile.source, Face.face_index)
            )
        ]


@pytest.mark.slow
def test_reembed_resumes_after_sigkill_to_the_uninterrupted_result(tmp_path: Path) -> None:
    folder = _lfw(tmp_path)
    probe = next(folder.glob("*/*_0002.jpg")).read_bytes()

    def prepared(name: str) -> Deployment:
        dep = new_deployment(tmp_path / name)
        ingest(dep, ensure_collection(dep, "lfw", model="dlib"), folder)
        return dep

    reference = prepared("reference")
    try:
        (cid,) = ids_by_name_of(reference, "lfw")
        summary = Reembed(reference, cid, "sface", workers=1).run()
        assert summary.from_model == DLIB and summary.to_model == SFACE and summary.faces > 0
        expected = _snapshot(reference)
        expected_hits = _hits(reference, cid, probe)
        assert {row[2] for row in expected} == {SFACE}
    finally:
        reference.close()

    killed = prepared("killed")
    settings = killed.settings
    (cid,) = ids_by_name_of(killed, "lfw")
    killed.close()
    proc = _reembed_cli(settings.home, tmp_path / "killed" / "keys" / "master.key")
    probe_dep = Deployment.open(settings)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            with probe_dep.db.session() as s:
                done = s.scalar(select(func.count(Face.id)).where(Face.model_id == SFACE)) or 0
            if done >= 8:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "re-embed finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        with probe_dep.db.session() as s:
            assert s.get(Collection, cid).model_id == DLIB  # type: ignore[union-attr]
    finally:
        probe_dep.close()
    resumed = Deployment.open(settings)
    try:
        summary = Reembed(resumed, cid, "sface", workers=1).run()
        assert summary.skipped > 0
        assert _snapshot(resumed) == expected
        assert _hits(resumed, cid, probe) == expected_hits
        with resumed.db.session() as s:
            assert s.get(Collection, cid).model_id == SFACE  # type: ignore[union-attr]
    finally:
        resumed.close()


def ids_by_name_of(dep: Deployment, *names: str) -> list[int]:
    with dep.db.session() as s:
        return ids_by_name(s, list(names))


def _hits(dep: Deployment, cid: int, probe: bytes) -> list[tuple[str, float]]:
    result = SearchEngine(dep).search(probe, collection_ids=[cid], top_k=5)
    return [(Path(c.source).name, c.score) for c in result.faces[0].candidates]


def test_a_collection_without_stored_images_says_how_to_reingest(tmp_path: Path) -> None:
    gallery = _gallery(tmp_path, ("barack_obama",))
    dep = new_deployment(tmp_path / "home", store_images=False)
    try:
        cid = ensure_collection(dep, "thin", model="dlib")
        ingest(dep, cid, gallery)
        with pytest.raises(InvalidRequest, match="ingest the sources again"):
            Reembed(dep, cid, "sface").run()
    finally:
        dep.close()


def test_a_dlib_deployment_keeps_working_after_the_default_moved_to_sface(tmp_path: Path) -> None:
    """A data directory made when dlib was the default: its collections keep their model."""
    gallery = _gallery(tmp_path, ("barack_obama",))
    old = new_deployment(tmp_path / "d", model="dlib-onnx")
    settings = old.settings
    try:
        ingest(old, "archive", gallery)
    finally:
        old.close()
    reopened = Deployment.open(settings.model_copy(update={"model": "sface"}))
    try:
        assert reopened.default_model_id == SFACE
        more = tmp_path / "more"
        shutil.copytree(faces_dir("small", "joe_biden"), more)
        summary = ingest(reopened, "archive", more)  # the collection's own model, not the default
        assert summary.faces > 0
        (cid,) = ids_by_name_of(reopened, "archive")
        with reopened.db.session() as s:
            models = set(s.scalars(select(Face.model_id).where(Face.collection_id == cid)))
        assert models == {DLIB}
        probe = faces_dir("small", "joe_biden", "biden.jpg").read_bytes()
        result = SearchEngine(reopened).search(probe, collection_ids=[cid], top_k=1)
        best = result.faces[0].candidates[0]
        assert best.model_id == DLIB and best.above_threshold and best.source.endswith("biden.jpg")
    finally:
        reopened.close()
