"""The blob_store and s3_* settings: what they accept and refuse, and the store a deployment
chooses from them (no server is contacted to open one)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from facesearch.config import load_settings
from facesearch.errors import CredentialsInSettingsFile
from facesearch.store.blobs import LocalBlobStore, S3BlobStore
from tests.conftest import new_deployment


def test_local_is_the_default(tmp_path: Path) -> None:
    dep = new_deployment(tmp_path)
    try:
        assert dep.settings.blob_store == "local" and isinstance(dep.blobs, LocalBlobStore)
        assert dep.settings.blobs_dir.is_dir()
    finally:
        dep.close()


def test_s3_is_chosen_with_its_bucket_and_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    dep = new_deployment(
        tmp_path,
        blob_store="s3",
        s3_bucket="fs-blobs",
        s3_prefix="facesearch/prod",
        s3_endpoint_url="https://minio.storage.example:9000",
        s3_region="eu-central-1",
    )
    try:
        assert isinstance(dep.blobs, S3BlobStore)
        assert dep.blobs.bucket == "fs-blobs" and dep.blobs.prefix == "facesearch/prod/"
        assert dep.blobs.key_of("ab" * 32) == f"facesearch/prod/ab/{'ab' * 32}"
        assert dep.blobs.client.meta.endpoint_url == "https://minio.storage.example:9000"
        assert dep.blobs.client.meta.region_name == "eu-central-1"
        assert not dep.settings.blobs_dir.exists()  # nothing of the blobs on local disk
    finally:
        dep.close()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"blob_store": "s3"}, "needs s3_bucket"),
        ({"blob_store": "gcs"}, "blob_store"),
        ({"s3_prefix": "/abs"}, "s3_prefix"),
        ({"s3_prefix": "a/../b"}, "s3_prefix"),
        ({"s3_endpoint_url": "ftp://minio"}, "s3_endpoint_url"),
        ({"s3_endpoint_url": "https://AKIA:secret@minio"}, "no credentials in the URL"),
    ],
)
def test_invalid_s3_settings_are_refused(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        load_settings(tmp_path / "home", **overrides)


@pytest.mark.parametrize(
    "line",
    [
        'aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"',
        's3_access_key = "minio-user"',
        'aws_session_token = "FwoGZXIvYXdzEExample"',
        'note = "AKIAIOSFODNN7EXAMPLE"',
    ],
)
def test_credentials_in_the_settings_file_are_refused(tmp_path: Path, line: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "facesearch.toml").write_text(f'[settings]\nblob_store = "local"\n{line}\n')
    with pytest.raises(CredentialsInSettingsFile) as refused:
        load_settings(home)
    value = line.split('"')[1]
    assert line.split(" ")[0] in str(refused.value) and value not in str(refused.value)
    assert load_settings(home, refuse_credentials=False).blob_store == "local"


def test_a_refused_value_is_not_repeated_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as refused:
        load_settings(tmp_path / "home", s3_endpoint_url="https://AKIA:hunter2secret@minio")
    assert "hunter2secret" not in str(refused.value)
