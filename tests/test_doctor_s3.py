"""`facesearch doctor` with blob_store = "s3", against moto's S3 server on loopback (started
here): each planted exposure of the bucket is reported, a well-kept bucket is not, a question the
server cannot answer is a warning ("unknown"), never OK; a plain-HTTP endpoint to another host
and storage credentials in facesearch.toml are critical (and the settings refuse the latter)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facesearch import doctor
from facesearch.config import Settings, load_settings
from facesearch.deployment import init_deployment
from facesearch.errors import CredentialsInSettingsFile
from tests.s3 import S3Server, s3_server

PUBLIC_READ = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "PublicRead",
            "Effect": "Allow",
            "Principal": {"AWS": "*"},
            "Action": ["s3:GetObject"],
            "Resource": "arn:aws:s3:::{bucket}/*",
        }
    ],
}
ALL_BLOCKED = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FACESEARCH_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(doctor, "owner_uid", lambda _path: 1000)


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    with pytest.MonkeyPatch.context() as mp, s3_server(mp) as srv:
        yield srv


def deployment(tmp_path: Path, **settings: object) -> Settings:
    home, key = tmp_path / "home", tmp_path / "keys" / "k.key"
    init_deployment(load_settings(home, key_file=key, **settings))
    return load_settings(home, key_file=key, **settings)


def s3_findings(settings: Settings) -> dict[str, list[doctor.Finding]]:
    found: dict[str, list[doctor.Finding]] = {}
    for f in doctor.run_checks(settings):
        if f.id.startswith("s3.") or f.id == "doctor.check_error":
            found.setdefault(f.id, []).append(f)
    return found


def private_bucket(server: S3Server) -> str:
    bucket = server.new_bucket()
    server.client.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=ALL_BLOCKED)
    return bucket


def test_a_private_blocked_bucket_is_clean(server: S3Server, tmp_path: Path) -> None:
    settings = deployment(tmp_path, **server.settings(private_bucket(server)))
    assert s3_findings(settings) == {}  # http:// to 127.0.0.1 is fine


def test_public_bucket_policy_is_critical(server: S3Server, tmp_path: Path) -> None:
    bucket = private_bucket(server)
    server.client.delete_public_access_block(Bucket=bucket)
    policy = json.dumps(PUBLIC_READ).replace("{bucket}", bucket)
    server.client.put_bucket_policy(Bucket=bucket, Policy=policy)
    found = s3_findings(deployment(tmp_path, **server.settings(bucket, s3_prefix="fs/")))
    [hit] = found["s3.bucket_policy_public"]
    assert hit.severity == "critical" and "PublicRead" in hit.detail and bucket in hit.detail
    [pab] = found["s3.public_access_block_off"]
    assert pab.severity == "warning" and "no public access block" in pab.detail
    assert "s3.bucket_unknown" not in found


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:*"},
        {"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": "s3:Get*"},
        {"Effect": "Allow", "Principal": "*", "NotAction": "s3:PutObject"},
    ],
)
def test_public_policy_shapes(statement: dict[str, object]) -> None:
    assert doctor.public_statements({"Statement": [statement]})


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject"},
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:role/fs"}, "Action": "s3:*"},
        {"Effect": "Allow", "Principal": "*", "Action": "s3:PutObject"},
    ],
)
def test_private_policy_shapes(statement: dict[str, object]) -> None:
    assert not doctor.public_statements({"Statement": statement})


def test_public_acl_is_critical(server: S3Server, tmp_path: Path) -> None:
    bucket = server.new_bucket()
    server.client.put_bucket_acl(Bucket=bucket, ACL="public-read")
    found = s3_findings(deployment(tmp_path, **server.settings(bucket)))
    [hit] = found["s3.bucket_acl_public"]
    assert hit.severity == "critical" and "READ to AllUsers" in hit.detail
    assert found["s3.public_access_block_off"]


def test_partial_public_access_block_is_a_warning(server: S3Server, tmp_path: Path) -> None:
    bucket = server.new_bucket()
    server.client.put_public_access_block(
        Bucket=bucket, PublicAccessBlockConfiguration={**ALL_BLOCKED, "BlockPublicPolicy": False}
    )
    [hit] = s3_findings(deployment(tmp_path, **server.settings(bucket)))[
        "s3.public_access_block_off"
    ]
    assert hit.detail.endswith("BlockPublicPolicy off")


def test_versioning_without_expiry_of_old_versions_warns(server: S3Server, tmp_path: Path) -> None:
    bucket = private_bucket(server)
    server.client.put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    settings = deployment(tmp_path / "a", **server.settings(bucket, s3_prefix="fs/"))
    [hit] = s3_findings(settings)["s3.bucket_versioning"]
    assert hit.severity == "warning" and "versioning is enabled" in hit.detail
    server.client.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "purge-deleted-blobs",
                    "Status": "Enabled",
                    "Filter": {"Prefix": "fs/"},
                    "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                    "Expiration": {"ExpiredObjectDeleteMarker": True},
                }
            ]
        },
    )
    assert s3_findings(settings) == {}


def test_what_the_server_cannot_answer_is_unknown_not_ok(server: S3Server, tmp_path: Path) -> None:
    # a bucket that does not exist, and a loopback port where nothing listens
    found = s3_findings(deployment(tmp_path / "a", **server.settings("fs-no-such-bucket")))
    hits = found["s3.bucket_unknown"]
    assert {h.severity for h in hits} == {"warning"}
    assert any("policy is unknown (NoSuchBucket)" in h.detail for h in hits)
    assert not found.get("s3.bucket_policy_public") and not found.get("s3.bucket_acl_public")
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = deployment(
        tmp_path / "b", **{**server.settings("fs-bucket"), "s3_endpoint_url": dead}
    )
    hits = s3_findings(settings)["s3.bucket_unknown"]
    assert len(hits) == len(doctor.BUCKET_QUESTIONS)
    assert all("unknown" in h.detail and h.severity == "warning" for h in hits)


def test_plain_http_endpoint_to_another_host_is_critical(server: S3Server, tmp_path: Path) -> None:
    settings = deployment(
        tmp_path,
        **{**server.settings("fs-bucket"), "s3_endpoint_url": "http://minio.storage.example:9000"},
    )
    found = s3_findings(settings)
    [hit] = found["s3.endpoint_http"]
    assert hit.severity == "critical" and "minio.storage.example" in hit.detail
    # the doctor's own look at the bucket never left the machine: unknown, not OK
    assert found["s3.bucket_unknown"] and not found.get("doctor.check_error")
    https = deployment(
        tmp_path / "tls",
        **{**server.settings("fs-bucket"), "s3_endpoint_url": "https://minio.storage.example"},
    )
    assert "s3.endpoint_http" not in s3_findings(https)


def test_credentials_in_the_settings_file_are_refused_and_reported(
    server: S3Server, tmp_path: Path
) -> None:
    from facesearch.cli import app

    home, key = tmp_path / "home", tmp_path / "keys" / "k.key"
    init_deployment(load_settings(home, key_file=key))
    toml = home / "facesearch.toml"
    toml.write_text(
        toml.read_text()
        + 'blob_store = "s3"\ns3_bucket = "fs-bucket"\n'
        + f's3_endpoint_url = "{server.endpoint}"\n'
        + 'aws_access_key_id = "AKIAIOSFODNN7EXAMPLE"\n'
        + f'aws_secret_access_key = "{SECRET}"\n'
    )
    with pytest.raises(CredentialsInSettingsFile) as refused:
        load_settings(home, key_file=key)
    assert "aws_secret_access_key" in str(refused.value) and SECRET not in str(refused.value)
    result = CliRunner().invoke(
        app, ["--home", str(home), "--key-file", str(key), "doctor", "--json"]
    )
    assert result.exit_code == 2, result.output
    assert SECRET not in result.output and "AKIAIOSFODNN7EXAMPLE" not in result.output
    found = [f for f in json.loads(result.output) if f["id"] == "s3.credentials_in_settings"]
    assert {f["detail"].split("`")[1] for f in found} == {
        "settings.aws_access_key_id",
        "settings.aws_secret_access_key",
    }
    assert all(f["severity"] == "critical" for f in found)
    # the rest of the doctor ran too (it is not just "settings invalid")
    assert not any(f["id"] == "settings.invalid" for f in json.loads(result.output))
