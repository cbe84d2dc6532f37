"""S3BlobStore against an S3-compatible server on loopback (moto, started here): the same sealed
bytes as the local store under opaque keys, integrity checked on every read, purge of every
version on delete, and no request that could leave the machine."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from facesearch.crypto import KeyRing
from facesearch.errors import BlobIntegrityError, ConfigError, Unavailable
from facesearch.store.blobs import BlobStore, LocalBlobStore, S3BlobStore, s3_client
from tests.s3 import REGION, LeftLoopback, S3Server, s3_server


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    with pytest.MonkeyPatch.context() as mp, s3_server(mp) as srv:
        yield srv


@pytest.fixture
def keys(tmp_path: Path) -> KeyRing:
    return KeyRing.create(tmp_path / "master.key")


def jpeg_like(size: int = 5000) -> bytes:
    return b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00" + os.urandom(size)


def test_round_trip_dedupe_and_opaque_keys(server: S3Server, keys: KeyRing) -> None:
    bucket = server.new_bucket()
    store = S3BlobStore(server.client, bucket, keys, prefix="tenant-neutral/fs")
    assert isinstance(store, BlobStore)
    data = jpeg_like()
    blob_id = store.put(data)
    assert store.put(data) == blob_id  # stored once
    assert store.get(blob_id) == data and store.exists(blob_id)
    assert store.ids() == [blob_id]
    objects = server.objects(bucket)
    assert list(objects) == [f"tenant-neutral/fs/{blob_id[:2]}/{blob_id}"]
    sealed = objects[f"tenant-neutral/fs/{blob_id[:2]}/{blob_id}"]
    assert b"\xff\xd8\xff" not in sealed and b"Exif" not in sealed and data[16:48] not in sealed
    head = server.client.head_object(Bucket=bucket, Key=next(iter(objects)))
    assert head["Metadata"] == {}  # nothing but ciphertext: no name, no org, no collection


def test_the_bucket_holds_the_same_sealed_bytes_as_the_data_directory(
    server: S3Server, keys: KeyRing, tmp_path: Path
) -> None:
    """A blob can move between the stores unchanged: same id, same envelope."""
    bucket = server.new_bucket()
    s3 = S3BlobStore(server.client, bucket, keys)
    local = LocalBlobStore(tmp_path / "blobs", keys)
    data = jpeg_like()
    blob_id = s3.put(data)
    assert local.put(data) == blob_id
    local_path = next((tmp_path / "blobs").rglob(blob_id))
    local_path.write_bytes(server.objects(bucket)[f"{blob_id[:2]}/{blob_id}"])
    assert local.get(blob_id) == data
    server.client.put_object(Bucket=bucket, Key=f"{blob_id[:2]}/{blob_id}", Body=b"x")
    server.client.put_object(
        Bucket=bucket, Key=f"{blob_id[:2]}/{blob_id}", Body=local_path.read_bytes()
    )
    assert s3.get(blob_id) == data


def test_a_tampered_truncated_or_swapped_object_is_refused(
    server: S3Server, keys: KeyRing, tmp_path: Path
) -> None:
    bucket = server.new_bucket()
    store = S3BlobStore(server.client, bucket, keys)
    a, b = store.put(jpeg_like()), store.put(jpeg_like())
    key_a, key_b = store.key_of(a), store.key_of(b)
    sealed_a = server.objects(bucket)[key_a]
    flipped = bytearray(sealed_a)
    flipped[40] ^= 0x01
    server.client.put_object(Bucket=bucket, Key=key_a, Body=bytes(flipped))
    with pytest.raises(BlobIntegrityError, match="integrity check"):
        store.get(a)
    server.client.put_object(Bucket=bucket, Key=key_a, Body=sealed_a[:-5])
    with pytest.raises(BlobIntegrityError):
        store.get(a)
    server.client.put_object(Bucket=bucket, Key=key_b, Body=sealed_a)  # b's key, a's ciphertext
    with pytest.raises(BlobIntegrityError):
        store.get(b)
    # the same bucket read with another deployment's key: nothing opens
    good = store.put(jpeg_like())
    stranger = S3BlobStore(server.client, bucket, KeyRing.create(tmp_path / "other.key"))
    assert store.get(good)
    with pytest.raises(BlobIntegrityError):
        stranger.get(good)


def test_missing_blob_and_malformed_ids(server: S3Server, keys: KeyRing) -> None:
    store = S3BlobStore(server.client, server.new_bucket(), keys)
    missing = "0" * 64
    assert not store.exists(missing)
    with pytest.raises(FileNotFoundError):
        store.get(missing)
    store.delete(missing)  # not an error
    for bad in ("../../etc/passwd", "A" * 64, "0" * 63, f"{'0' * 62}/x"):
        with pytest.raises(ValueError, match="malformed"):
            store.get(bad)
    with pytest.raises(ValueError):
        S3BlobStore(server.client, "b", keys, prefix="/abs")
    with pytest.raises(ValueError):
        S3BlobStore(server.client, "b", keys, prefix="a/../b")


def test_delete_purges_every_version_of_a_versioned_bucket(server: S3Server, keys: KeyRing) -> None:
    bucket = server.new_bucket()
    server.client.put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    store = S3BlobStore(server.client, bucket, keys, prefix="p")
    keep, gone = store.put(jpeg_like()), store.put(jpeg_like())
    server.client.put_object(Bucket=bucket, Key=store.key_of(gone), Body=b"a second version")
    store.delete(gone)
    listing = server.client.list_object_versions(Bucket=bucket)
    keys_left = {
        v["Key"] for v in [*listing.get("Versions", []), *listing.get("DeleteMarkers", [])]
    }
    assert keys_left == {store.key_of(keep)}
    assert store.ids() == [keep] and store.get(keep)


def test_nothing_can_leave_loopback_while_the_server_runs(server: S3Server) -> None:
    with pytest.raises(LeftLoopback):
        socket.create_connection(("192.0.2.1", 443), timeout=1)
    with pytest.raises(LeftLoopback):
        socket.getaddrinfo("s3.amazonaws.com", 443)
    assert re.match(r"^http://127\.0\.0\.1:\d+$", server.endpoint)


def test_server_failures_speak_the_error_vocabulary(server: S3Server, keys: KeyRing) -> None:
    """A bucket that is not there (or refuses us) is the deployment's misconfiguration; a server
    that cannot be reached is Unavailable (503 with Retry-After), not a traceback."""
    store = S3BlobStore(server.client, "fs-no-such-bucket", keys)
    with pytest.raises(ConfigError, match="NoSuchBucket"):
        store.put(b"data")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    unreachable = S3BlobStore(
        s3_client(endpoint_url=dead, region=REGION, connect_timeout=1, max_attempts=1), "b", keys
    )
    with pytest.raises(Unavailable) as busy:
        unreachable.get("0" * 64)
    assert busy.value.retry_after >= 1
