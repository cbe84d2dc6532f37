"""blob_store = "s3" end to end, against moto's S3 server on loopback (started here): ingest of the
shared face photos into an organisation's collection that keeps its images, crops and search
through the API, no plaintext in the bucket, a tampered object refused, and the deletion of a
collection removing its objects (and only its own)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from facesearch.deployment import Deployment
from facesearch.errors import BlobIntegrityError, Unavailable
from facesearch.store.blobs import S3BlobStore
from facesearch.store.gallery import Face, SourceFile
from tests.api.casework_world import LEGAL, probe_bytes, search
from tests.api.conftest import (
    SignedIn,
    api_id,
    db_id,
    key_client,
    make_app,
    new_deployment,
    user_factory,
)
from tests.conftest import faces_dir, ingest
from tests.s3 import S3Server, s3_server

pytestmark = [pytest.mark.slow, pytest.mark.shared_faces]

PREFIX = "fs/"
KEY = re.compile(r"^fs/([0-9a-f]{2})/([0-9a-f]{64})$")
JPEG, PNG = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"


@dataclass
class World:
    server: S3Server
    bucket: str
    dep: Deployment
    app: FastAPI
    admin: SignedIn
    investigator: SignedIn
    mugshots: int
    other: int
    third: int
    sources: list[Path]


def _collection(admin: SignedIn, name: str) -> int:
    reply = admin.client.post(
        "/api/v1/collections", json={"name": name, "legal_basis": LEGAL, "retention_days": 365}
    )
    assert reply.status_code == 201, reply.text
    dep = admin.client.app.state.deployment  # type: ignore[attr-defined]
    return db_id(dep, "collection", reply.json()["id"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with pytest.MonkeyPatch.context() as mp, s3_server(mp) as server:
        bucket = server.new_bucket()
        dep = new_deployment(
            tmp_path_factory.mktemp("s3dep"),
            **server.settings(bucket, s3_prefix=PREFIX, store_images=True),
        )
        try:
            assert isinstance(dep.blobs, S3BlobStore)
            app = make_app(dep)
            make_user = user_factory(dep, app)
            admin = make_user("Org S3", ["org_admin"])
            investigator = make_user("Org S3", ["investigator"])
            # mugshots: Obama, Biden and a PNG; other: a photo shared with mugshots, and Lennon
            first, second = tmp_path_factory.mktemp("g1"), tmp_path_factory.mktemp("g2")
            third_dir = tmp_path_factory.mktemp("g3")
            shutil.copy(faces_dir("small", "john_lennon") / "lennon-2.jpg", third_dir)
            for src in [
                *faces_dir("small", "barack_obama").glob("obama[13].jpg"),
                faces_dir("small", "joe_biden") / "biden.jpg",
                faces_dir("small", "alex_lacamoire") / "alex-lacamoire.png",
            ]:
                shutil.copy(src, first / src.name)
            shutil.copy(first / "obama1.jpg", second / "obama1.jpg")
            shutil.copy(faces_dir("small", "john_lennon") / "lennon-1.jpg", second)
            mugshots, other = _collection(admin, "mugshots"), _collection(admin, "other")
            assert ingest(dep, mugshots, first).faces >= 4
            assert ingest(dep, other, second).faces >= 2
            third = _collection(admin, "third")
            assert ingest(dep, third, third_dir).faces >= 1
            sources = sorted([*first.iterdir(), *second.iterdir(), *third_dir.iterdir()])
            yield World(
                server, bucket, dep, app, admin, investigator, mugshots, other, third, sources
            )
        finally:
            dep.close()


def blobs_of(dep: Deployment, collection_id: int) -> set[str]:
    with dep.db.session() as s:
        crops = s.scalars(select(Face.crop_blob).where(Face.collection_id == collection_id))
        images = s.scalars(
            select(SourceFile.image_blob).where(SourceFile.collection_id == collection_id)
        )
        return {b for b in [*crops, *images] if b}


def test_the_bucket_holds_only_ciphertext_under_opaque_keys(world: World) -> None:
    objects = world.server.objects(world.bucket)
    collections = (world.mugshots, world.other, world.third)
    expected = set().union(*(blobs_of(world.dep, c) for c in collections))
    assert expected and {KEY.match(k).group(2) for k in objects if KEY.match(k)} == expected  # type: ignore[union-attr]
    assert all(KEY.match(k) for k in objects), sorted(objects)
    # images (one kept per file, the shared photo once) and crops (one per face)
    with world.dep.db.session() as s:
        images = set(s.scalars(select(SourceFile.image_blob)))
    assert len(images - {None}) == len(world.sources) - 1
    names = {p.stem.lower() for p in world.sources} | {"mugshots", "other", "third", "org", "s3"}
    # Every object is a sealed envelope, never an image. A 3-byte magic turns up by chance in a
    # few MB of ciphertext, so anywhere in a body the test looks for needles long enough that
    # random bytes never match: the JPEG start with its JFIF or EXIF header, the PNG signature
    # and header chunk, EXIF's own header.
    needles = [
        JPEG + b"\xe0\x00\x10JFIF",
        JPEG + b"\xe1",
        PNG,
        b"\x00\x00\x00\x0dIHDR",
        b"Exif\x00\x00",
        b"JFIF\x00",
    ]
    for key, body in objects.items():
        assert not any(name in key.lower() for name in names), key
        assert body[:4] == b"FSE1" and not body.startswith((JPEG, PNG)), key
        for needle in needles:
            assert needle not in body, (key, needle)
    # no run of 32 bytes of any source photo appears in any object
    for path in world.sources:
        data = path.read_bytes()
        for start in range(0, len(data) - 32, max(1, len(data) // 16)):
            chunk = data[start : start + 32]
            assert not any(chunk in body for body in objects.values()), path.name
    # nothing went to the data directory instead
    blobs_dir = world.dep.settings.blobs_dir
    assert not blobs_dir.exists() or not any(p.is_file() for p in blobs_dir.rglob("*"))


def test_search_and_crops_through_the_api(world: World) -> None:
    investigator = key_client(world.app, world.investigator.api_key(["search"]))
    status, body = search(
        investigator, probe_bytes(), collections=api_id(world.dep, "collection", world.mugshots)
    )
    assert status == 200, body
    leads = [c for f in body["faces"] for c in f["candidates"]]
    assert leads and leads[0]["source"].endswith(("obama1.jpg", "obama3.jpg"))
    for lead in leads:
        crop = investigator.get(lead["crop_url"])
        assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
        assert crop.content[:3] == JPEG
        with world.dep.db.session() as s:
            face = s.get(Face, db_id(world.dep, "face", lead["face_id"]))
            assert face is not None and face.crop_blob
            key = f"{PREFIX}{face.crop_blob[:2]}/{face.crop_blob}"
        sealed = world.server.objects(world.bucket)[key]
        assert crop.content not in sealed and world.dep.blobs.get(face.crop_blob) == crop.content


def test_a_tampered_object_is_refused(world: World, caplog: pytest.LogCaptureFixture) -> None:
    investigator = key_client(world.app, world.investigator.api_key(["search"]))
    with world.dep.db.session() as s:
        face = s.scalars(select(Face).where(Face.collection_id == world.mugshots)).first()
        assert face is not None and face.crop_blob
        face_id, blob = face.id, face.crop_blob
    key = f"{PREFIX}{blob[:2]}/{blob}"
    client = world.server.client
    original = client.get_object(Bucket=world.bucket, Key=key)["Body"].read()
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0x80
    client.put_object(Bucket=world.bucket, Key=key, Body=bytes(tampered))
    try:
        with pytest.raises(BlobIntegrityError, match="integrity check"):
            world.dep.blobs.get(blob)
        reply = investigator.get(f"/api/v1/faces/{api_id(world.dep, 'face', face_id)}/crop")
        assert reply.status_code == 404 and "no readable crop" in reply.json()["detail"]
        assert JPEG not in reply.content
        assert any(
            r.name == "facesearch.gallery" and "integrity check" in r.getMessage()
            for r in caplog.records
        )
    finally:
        client.put_object(Bucket=world.bucket, Key=key, Body=original)
    assert (
        investigator.get(f"/api/v1/faces/{api_id(world.dep, 'face', face_id)}/crop").status_code
        == 200
    )


def test_deleting_a_collection_removes_its_objects_and_keeps_shared_ones(world: World) -> None:
    kept = blobs_of(world.dep, world.mugshots) | blobs_of(world.dep, world.third)
    doomed = blobs_of(world.dep, world.other)
    shared = kept & doomed
    assert shared and doomed - kept  # the shared photo, and Lennon's image and crop
    reply = world.admin.client.delete(
        f"/api/v1/collections/{api_id(world.dep, 'collection', world.other)}"
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["deleted"] is True
    left = {KEY.match(k).group(2) for k in world.server.objects(world.bucket)}  # type: ignore[union-attr]
    assert left == kept
    assert not (doomed - kept) & left
    assert all(world.dep.blobs.exists(b) for b in shared)


def test_a_blob_the_store_fails_to_delete_does_not_stop_the_purge(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    doomed = blobs_of(world.dep, world.third)
    assert len(doomed) >= 2  # Lennon's image and crop
    real_delete = world.dep.blobs.delete
    failed: list[str] = []

    def flaky_delete(blob_id: str) -> None:
        if not failed:
            failed.append(blob_id)
            raise Unavailable(5, "the blob store cannot be reached; try again shortly")
        real_delete(blob_id)

    monkeypatch.setattr(world.dep.blobs, "delete", flaky_delete)
    reply = world.admin.client.delete(
        f"/api/v1/collections/{api_id(world.dep, 'collection', world.third)}"
    )
    assert reply.status_code == 200 and reply.json()["deleted"] is True, reply.text
    left = {KEY.match(k).group(2) for k in world.server.objects(world.bucket)}  # type: ignore[union-attr]
    assert doomed & left == set(failed)  # the others went
    assert any(failed[0] in r.getMessage() for r in caplog.records)
    assert any("still stored" in r.getMessage() for r in caplog.records)
    real_delete(failed[0])
