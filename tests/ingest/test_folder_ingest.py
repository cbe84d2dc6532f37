"""Folder ingest: bad files never stop the job, counts are exact, resume loses and duplicates
nothing, and the data directory holds no plaintext image or embedding."""

from __future__ import annotations

import io
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from facesearch.deployment import Deployment
from facesearch.store.faces import open_embedding
from facesearch.store.gallery import Face, SourceFile
from tests.conftest import REPO_ROOT, faces_dir, ingest, init_home, new_deployment


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims huge dimensions (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_bad_files_are_rejected_with_reasons_and_good_ones_ingested(tmp_path: Path) -> None:
    small = faces_dir("small")
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = small / "barack_obama" / "obama.jpg"
    shutil.copy(good, folder / "good.jpg")
    jpeg = good.read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (folder / "random.jpg").write_bytes(os.urandom(4096))
    (folder / "bomb.png").write_bytes(_png_claiming(100_000, 100_000))
    (folder / "empty.jpg").write_bytes(b"")
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (90, 140, 200)).save(buf, "PNG")
    (folder / "sky.png").write_bytes(buf.getvalue())

    dep = new_deployment(tmp_path)
    try:
        summary = ingest(dep, "mixed", folder, workers=1)
        reasons = {Path(p).name: r for p, r in summary.rejected_files}
        with dep.db.session() as s:
            rows = {Path(f.source).name: f for f in s.scalars(select(SourceFile))}
    finally:
        dep.close()

    assert summary.ok == 1 and summary.faces == 1
    assert summary.no_face == 1  # the plain blue picture
    assert summary.rejected == 4
    assert reasons["truncated.jpg"].startswith("truncated")
    assert reasons["random.jpg"].startswith("not_an_image")
    assert reasons["bomb.png"].startswith("decompression_bomb")
    assert reasons["empty.jpg"].startswith("empty")
    # Every outcome is recorded, so a rerun does not retry the bad files either.
    assert rows["good.jpg"].status == "ok" and rows["sky.png"].status == "no_face"
    assert {rows[n].status for n in reasons} == {"rejected"}


def _counts(dep: Deployment) -> dict[str, int]:
    with dep.db.session() as s:
        by_status = dict(
            s.execute(select(SourceFile.status, func.count()).group_by(SourceFile.status)).all()
        )
        faces = s.scalar(select(func.count(Face.id))) or 0
        distinct = (
            s.scalar(
                select(func.count()).select_from(
                    select(Face.file_id, Face.face_index).distinct().subquery()
                )
            )
            or 0
        )
    return {"faces": faces, "distinct_faces": distinct, **by_status}


def _lfw_sample(tmp_path: Path, people: int = 12) -> Path:
    lfw = faces_dir("lfw-devtrain")
    folder = tmp_path / "sample"
    chosen = sorted(p for p in lfw.iterdir() if p.is_dir())[:people]
    for person in chosen:
        shutil.copytree(person, folder / person.name)
    return folder


@pytest.mark.slow
def test_killed_ingest_resumes_to_the_counts_of_an_uninterrupted_run(tmp_path: Path) -> None:
    folder = _lfw_sample(tmp_path)
    total_files = sum(1 for _ in folder.rglob("*.jpg"))
    assert total_files >= 20

    reference = new_deployment(tmp_path / "reference")
    try:
        ingest(reference, "lfw", folder, workers=2)
        expected = _counts(reference)
    finally:
        reference.close()

    killed = tmp_path / "killed"
    settings = init_home(killed / "home", killed / "keys" / "master.key")  # the CLI reopens it
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "facesearch",
        "--home",
        str(settings.home),
        "--key-file",
        str(settings.resolved_key_file),
        "ingest",
        str(folder),
        "-c",
        "lfw",
        "--workers",
        "2",
        "--json",
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    probe = Deployment.open(settings)
    try:
        deadline = time.monotonic() + 120
        committed = 0
        while time.monotonic() < deadline and proc.poll() is None:
            with probe.db.session() as s:
                committed = s.scalar(select(func.count(SourceFile.id))) or 0
            if committed >= 4:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "ingest finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        partial = _counts(probe)
    finally:
        probe.close()
    assert (
        0 < sum(v for k, v in partial.items() if k in ("ok", "no_face", "rejected")) < total_files
    )

    resumed = Deployment.open(settings)
    try:
        summary = ingest(resumed, "lfw", folder, workers=2)
        assert summary.skipped > 0
        got = _counts(resumed)
        assert resumed.index.size() == got["faces"]
    finally:
        resumed.close()
    assert got == expected
    assert got["faces"] == got["distinct_faces"]


def test_rerun_skips_everything_already_ingested(tmp_path: Path) -> None:
    folder = tmp_path / "few"
    folder.mkdir()
    for path in sorted(faces_dir("small", "joe_biden").iterdir()):
        shutil.copy(path, folder / path.name)
    shutil.copy(folder / "biden.jpg", folder / "biden-copy.jpg")  # same bytes, another name
    dep = new_deployment(tmp_path)
    try:
        first = ingest(dep, "c", folder, workers=1)
        second = ingest(dep, "c", folder, workers=1)
    finally:
        dep.close()
    assert first.ok == 2 and first.duplicates == 1
    assert second.ok == 0 and second.faces == 0 and second.skipped == 2
    assert second.duplicates == 1


def test_data_directory_holds_no_plaintext_images_or_embeddings(tmp_path: Path) -> None:
    folder = faces_dir("small", "barack_obama")
    dep = new_deployment(tmp_path)
    try:
        ingest(dep, "c", folder, workers=1)
        with dep.db.session() as s:
            faces = list(s.scalars(select(Face)))
            vectors = [open_embedding(dep.keys.embeddings, f) for f in faces]
        dep.index.save()
        home = dep.settings.home
    finally:
        dep.close()
    assert vectors
    # JPEG magic plus its JFIF header (Pillow's crops), the PNG signature, and slices of every
    # source image: long enough that random ciphertext never matches them by chance.
    needles = [b"\xff\xd8\xff\xe0\x00\x10JFIF", b"\x89PNG\r\n\x1a\n"]
    for image in folder.iterdir():
        data = image.read_bytes()
        needles += [data[:32], data[len(data) // 2 : len(data) // 2 + 32]]
    for vec in vectors:
        raw = np.asarray(vec, dtype=np.float32).tobytes()
        needles += [raw[:16], raw[64:80], np.asarray(vec, dtype=np.float64).tobytes()[:16]]
    scanned = 0
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            scanned += len(data)
            for needle in needles:
                assert needle not in data, f"plaintext found in {path}"
    assert scanned > 100_000  # the images and crops are there, only sealed


def test_a_collection_never_mixes_embeddings_of_two_models(tmp_path: Path) -> None:
    from facesearch.errors import ModelMismatch
    from facesearch.store.gallery import Collection

    dep = new_deployment(tmp_path)
    try:
        with dep.db.session() as s:
            s.add(Collection(name="old", model_id="some-other-model-v2"))
        with pytest.raises(ModelMismatch, match="never mixes"):
            ingest(dep, "old", tmp_path, workers=1)
    finally:
        dep.close()


def test_a_collection_deleted_before_its_run_is_not_recreated(tmp_path: Path) -> None:
    from facesearch.errors import NotFound
    from facesearch.gallery.collections import ensure_collection
    from facesearch.ingest.runner import FolderIngest
    from facesearch.store.gallery import Collection

    dep = new_deployment(tmp_path / "home")
    try:
        cid = ensure_collection(dep, "doomed")
        with dep.db.session() as s:
            s.delete(s.get(Collection, cid))
        with pytest.raises(NotFound):
            FolderIngest(dep, cid, workers=1).run(tmp_path)
        with dep.db.session() as s:
            assert s.get(Collection, cid) is None
            assert s.scalar(select(func.count(Collection.id))) == 0
    finally:
        dep.close()
