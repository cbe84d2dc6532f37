"""Key file, sealing and the encrypted blob store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from facesearch.crypto import KeyRing
from facesearch.errors import ConfigError
from facesearch.store.blobs import LocalBlobStore


def test_key_file_is_private_and_refuses_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "k" / "master.key"
    KeyRing.create(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    with pytest.raises(FileExistsError):
        KeyRing.create(path)


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    KeyRing.create(path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        KeyRing.load(path)


def test_sealed_values_are_bound_to_their_associated_data(tmp_path: Path) -> None:
    keys = KeyRing.create(tmp_path / "master.key")
    sealed = keys.embeddings.seal(b"vector bytes", b"face:1")
    assert keys.embeddings.open(sealed, b"face:1") == b"vector bytes"
    with pytest.raises(Exception):
        keys.embeddings.open(sealed, b"face:2")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(Exception):
        keys.embeddings.open(tampered, b"face:1")
    other = KeyRing.create(tmp_path / "other.key")
    with pytest.raises(Exception):
        other.embeddings.open(sealed, b"face:1")


def test_a_value_sealed_into_a_file_in_pieces_opens_as_one_sealed_value(tmp_path: Path) -> None:
    """Segment headers are sealed a MiB at a time straight into the file: the bytes are a
    sealed value like any other, bound to their associated data."""
    keys = KeyRing.create(tmp_path / "master.key")
    parts = [b"head", os.urandom(3 * 1024 + 5), memoryview(os.urandom(10_000)), b""]
    path = tmp_path / "sealed"
    with path.open("wb") as fh:
        written = keys.embeddings.seal_into(fh, parts, b"segment:1", piece=1024)
    sealed = path.read_bytes()
    assert written == len(sealed) == keys.embeddings.OVERHEAD + sum(len(p) for p in parts)
    assert keys.embeddings.open(sealed, b"segment:1") == b"".join(bytes(p) for p in parts)
    with pytest.raises(Exception):
        keys.embeddings.open(sealed, b"segment:2")


def test_content_hash_is_keyed(tmp_path: Path) -> None:
    a = KeyRing.create(tmp_path / "a.key")
    b = KeyRing.create(tmp_path / "b.key")
    assert a.content_hash(b"same") == a.content_hash(b"same")
    assert a.content_hash(b"same") != b.content_hash(b"same")


def test_blob_store_round_trip_dedupes_and_hides_content(tmp_path: Path) -> None:
    keys = KeyRing.create(tmp_path / "master.key")
    store = LocalBlobStore(tmp_path / "blobs", keys)
    data = b"\xff\xd8\xff" + os.urandom(1000)
    blob_id = store.put(data)
    assert store.put(data) == blob_id and len(store.ids()) == 1
    assert store.get(blob_id) == data
    on_disk = next((tmp_path / "blobs").rglob(blob_id)).read_bytes()
    assert data[:16] not in on_disk and b"\xff\xd8\xff" not in on_disk
    store.delete(blob_id)
    assert not store.exists(blob_id)
    with pytest.raises(ValueError):
        store.get("../../etc/passwd")


def test_a_new_key_files_folders_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """Every folder created for a new master key is 0700, the parents too (mkdir's mode
    applies to the last one only)."""
    old = os.umask(0o022)
    try:
        KeyRing.create(tmp_path / "config" / "facesearch" / "master.key")
    finally:
        os.umask(old)
    for folder in (tmp_path / "config", tmp_path / "config" / "facesearch"):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    assert (tmp_path / "config" / "facesearch" / "master.key").stat().st_mode & 0o777 == 0o600


def test_blob_folders_and_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """The two levels of shard folders are 0700 like the root (their names are the blobs'
    content hashes), the blobs 0600, even under a permissive umask."""
    keys = KeyRing.create(tmp_path / "master.key")
    old = os.umask(0o022)
    try:
        store = LocalBlobStore(tmp_path / "blobs", keys)
        store.put(os.urandom(100))
    finally:
        os.umask(old)
    paths = list((tmp_path / "blobs").rglob("*"))
    assert len([p for p in paths if p.is_dir()]) == 2 and any(p.is_file() for p in paths)
    for p in paths:
        assert p.stat().st_mode & 0o777 == (0o700 if p.is_dir() else 0o600), p
