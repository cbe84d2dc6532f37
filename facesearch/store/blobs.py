"""Encrypted content-addressed blob stores: a local directory (the default) or an S3-compatible
bucket, both behind one small protocol, `BlobStore`.

A blob's id is a keyed hash of its plaintext (HMAC-SHA256 under a key derived from the master
key), so equal content is stored once and the id says nothing to someone without the key. What
is stored is AES-256-GCM ciphertext bound to its id (`KeyRing.blobs`, associated data = the id):
the same sealed bytes whichever store holds them, so a blob can move from one to the other
unchanged. Neither store ever sees a file name, an organisation or a collection: only opaque ids
and ciphertext (docs/decisions/0003, 0011).

Writes are complete-or-absent: a local file is written to a temporary name, fsynced and renamed;
an S3 PUT is atomic. Reads check the GCM tag: a blob that was changed, truncated, swapped for
another id's ciphertext or sealed under another key raises `BlobIntegrityError`; a missing blob
raises `FileNotFoundError`. Both are `ValueError`/`OSError` subclasses, which callers that can
do without a blob (a crop, a re-embed) already handle.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag

from facesearch.crypto import KeyRing
from facesearch.errors import BlobIntegrityError, ConfigError, Unavailable
from facesearch.files import private_dirs

_BLOB_ID = re.compile(r"^[0-9a-f]{64}$")
log = logging.getLogger("facesearch.store.blobs")


def check_blob_id(blob_id: str) -> str:
    """`blob_id` if it is a well-formed id (64 lower-case hex digits); ValueError otherwise, so a
    crafted id can never name a path or a key outside the store."""
    if not isinstance(blob_id, str) or not _BLOB_ID.match(blob_id):
        raise ValueError("malformed blob id")
    return blob_id


@runtime_checkable
class BlobStore(Protocol):
    """Where sealed images and face crops live. Every method takes or returns plaintext; sealing
    and the integrity check happen inside.

    - `put(data) -> id`: store `data` (idempotent: equal content gives the same id, stored once)
      and return its id. When it returns, the blob is durably stored; if it raises, nothing
      partial is left under that id.
    - `get(id) -> data`: the plaintext; `FileNotFoundError` when absent, `BlobIntegrityError`
      when the stored bytes fail the GCM check.
    - `exists(id)`, `delete(id)` (a missing blob is not an error), `ids()` (every stored id).
    """

    def put(self, data: bytes) -> str: ...

    def get(self, blob_id: str) -> bytes: ...

    def exists(self, blob_id: str) -> bool: ...

    def delete(self, blob_id: str) -> None: ...

    def ids(self) -> list[str]: ...


def _open_sealed(keys: KeyRing, blob_id: str, sealed: bytes) -> bytes:
    try:
        return keys.blobs.open(sealed, aad=blob_id.encode())
    except (InvalidTag, ValueError) as exc:
        raise BlobIntegrityError(
            f"blob {blob_id[:12]}… failed its integrity check (AES-GCM tag): it was altered, "
            "truncated, swapped or sealed under another key; it is not returned"
        ) from exc


class LocalBlobStore:
    """Sealed blobs as files under `root` (`<root>/ab/cd/<id>`, folders 0700)."""

    def __init__(self, root: Path, keyring: KeyRing) -> None:
        self.root = root
        self._keys = keyring

    def _path(self, blob_id: str) -> Path:
        check_blob_id(blob_id)
        return self.root / blob_id[:2] / blob_id[2:4] / blob_id

    def put(self, data: bytes) -> str:
        blob_id = self._keys.content_hash(data)
        path = self._path(blob_id)
        if path.exists():
            return blob_id
        private_dirs(path.parent)
        sealed = self._keys.blobs.seal(data, aad=blob_id.encode())
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(sealed)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return blob_id

    def get(self, blob_id: str) -> bytes:
        return _open_sealed(self._keys, blob_id, self._path(blob_id).read_bytes())

    def exists(self, blob_id: str) -> bool:
        return self._path(blob_id).exists()

    def delete(self, blob_id: str) -> None:
        self._path(blob_id).unlink(missing_ok=True)

    def ids(self) -> list[str]:
        return [p.name for p in self.root.glob("*/*/*") if _BLOB_ID.match(p.name)]


# -- S3-compatible storage ------------------------------------------------------------------------

_PREFIX = re.compile(r"^[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*/?$")


def normalise_prefix(prefix: str) -> str:
    """A key prefix as stored: empty, or path segments of [A-Za-z0-9._-] ending in `/`."""
    prefix = prefix.strip()
    if not prefix:
        return ""
    if not _PREFIX.match(prefix) or any(part in (".", "..") for part in prefix.split("/")):
        raise ValueError(
            "s3_prefix: segments of letters, digits, '.', '_' or '-' separated by '/', "
            "without a leading '/'"
        )
    return prefix if prefix.endswith("/") else prefix + "/"


def s3_client(
    *,
    endpoint_url: str | None,
    region: str | None,
    connect_timeout: float = 10.0,
    read_timeout: float = 60.0,
    max_attempts: int = 4,
) -> Any:
    """A boto3 S3 client. Credentials come only from the standard AWS chain (environment, shared
    credentials file, instance or task role); facesearch never passes keys of its own."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:  # pragma: no cover - the scale extra is not installed
        raise ConfigError("blob_store = 's3' needs boto3: pip install 'facesearch[scale]'") from exc
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        signature_version="s3v4",
        s3={"addressing_style": "path" if endpoint_url else "auto"},
    )
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
#: Answers that mean the deployment's S3 settings or credentials are wrong, not the request.
_MISCONFIGURED = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "NoSuchBucket",
        "PermanentRedirect",
        "AuthorizationHeaderMalformed",
        "403",
        "301",
    }
)
#: Seconds a client is asked to wait when the S3 server cannot be reached.
S3_RETRY_AFTER = 5


def _translated(exc: Exception, what: str, bucket: str) -> Exception | None:
    """The facesearch error for a failed S3 call, or None to let it through: the settings or
    credentials are wrong (`ConfigError`: the API logs it and answers 500), or the server
    cannot be reached after the retries (`Unavailable`: 503 with Retry-After)."""
    from botocore.exceptions import (
        ConnectionError as BotoConnectionError,
    )
    from botocore.exceptions import (
        NoCredentialsError,
        PartialCredentialsError,
        ReadTimeoutError,
    )

    code = _error_code(exc)
    if code in _MISCONFIGURED:
        return ConfigError(f"the S3 blob store refused to {what} in bucket {bucket!r}: {code}")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ConfigError(
            "no AWS credentials for the S3 blob store: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or give the host an instance role"
        )
    if isinstance(exc, BotoConnectionError | ReadTimeoutError):
        return Unavailable(S3_RETRY_AFTER, "the blob store cannot be reached; try again shortly")
    return None


#: Answers of a server that will not list object versions (permissions, not implemented).
_NO_VERSIONS = frozenset({"AccessDenied", "NotImplemented", "MethodNotAllowed", "501", "405"})


class S3BlobStore:
    """Sealed blobs as objects `<prefix><ab>/<id>` of one bucket of an S3-compatible server.

    The objects hold exactly the bytes `LocalBlobStore` writes to its files; their keys are the
    opaque ids, with no metadata, tags or content type that could say what they are. A PUT is
    atomic, so an object is complete or absent. `delete` purges every version of the object;
    copies it cannot reach (replicas, the provider's backups) are the operator's to expire
    (docs/scaling.md; the doctor warns about versioning without expiry). S3 failures come out as
    `ConfigError` (refused: credentials, permissions, no such bucket) or `Unavailable`
    (unreachable after the client's retries)."""

    def __init__(self, client: Any, bucket: str, keyring: KeyRing, *, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = normalise_prefix(prefix)
        self._keys = keyring

    def _call(self, what: str, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)
        except Exception as exc:
            if _error_code(exc) in _MISSING:
                raise
            translated = _translated(exc, what, self.bucket)
            if translated is None:
                raise
            raise translated from exc

    def key_of(self, blob_id: str) -> str:
        check_blob_id(blob_id)
        return f"{self.prefix}{blob_id[:2]}/{blob_id}"

    def put(self, data: bytes) -> str:
        blob_id = self._keys.content_hash(data)
        key = self.key_of(blob_id)
        if self.exists(blob_id):
            return blob_id
        sealed = self._keys.blobs.seal(data, aad=blob_id.encode())
        self._call(
            "write a blob",
            "put_object",
            Key=key,
            Body=sealed,
            ContentType="application/octet-stream",
        )
        return blob_id

    def get(self, blob_id: str) -> bytes:
        key = self.key_of(blob_id)
        try:
            reply = self._call("read a blob", "get_object", Key=key)
        except Exception as exc:
            if _error_code(exc) in _MISSING:
                raise FileNotFoundError(f"no blob {blob_id[:12]}… in the bucket") from exc
            raise
        body = reply["Body"]
        try:
            sealed = body.read()
        finally:
            body.close()
        return _open_sealed(self._keys, blob_id, sealed)

    def exists(self, blob_id: str) -> bool:
        key = self.key_of(blob_id)
        try:
            self._call("look up a blob", "head_object", Key=key)
        except Exception as exc:
            if _error_code(exc) in _MISSING:
                return False
            raise
        return True

    def delete(self, blob_id: str) -> None:
        """Purge the blob: every version of its object, so that a versioned bucket keeps no
        noncurrent copy of the ciphertext (this needs s3:ListBucketVersions and
        s3:DeleteObjectVersion; where the server refuses to list versions, the current object
        is deleted and the refusal logged; the doctor warns about versioning)."""
        key = self.key_of(blob_id)
        try:
            versions = self._versions_of(key)
        except Exception as exc:
            if _error_code(exc) not in _NO_VERSIONS:
                translated = _translated(exc, "list blob versions", self.bucket)
                if translated is None:
                    raise
                raise translated from exc
            log.warning(
                "cannot list the versions of blob %s… (%s): deleted the current object only; "
                "older versions may remain in the bucket",
                blob_id[:12],
                _error_code(exc),
            )
            versions = []
        if not versions:
            self._call("delete a blob", "delete_object", Key=key)
            return
        for version_id in versions:
            self._call("delete a blob", "delete_object", Key=key, VersionId=version_id)

    def _versions_of(self, key: str) -> list[str]:
        """The version ids (objects and delete markers) of exactly `key`."""
        found: list[str] = []
        paginator = self.client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
            for item in [*page.get("Versions", ()), *page.get("DeleteMarkers", ())]:
                if item.get("Key") == key and item.get("VersionId"):
                    found.append(str(item["VersionId"]))
        return found

    def _keys_listed(self) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", ()):
                yield str(item["Key"])

    def ids(self) -> list[str]:
        found = []
        for key in self._keys_listed():
            rest = key[len(self.prefix) :]
            head, _, name = rest.partition("/")
            if _BLOB_ID.match(name) and head == name[:2]:
                found.append(name)
        return found
