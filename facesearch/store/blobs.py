"""Encrypted content-addressed blob store on a local directory.

A blob's id is a keyed hash of its plaintext, so equal content is stored once and the id says
nothing to someone without the key. Each file holds AES-256-GCM ciphertext bound to its id.
Writes are atomic (temporary file, fsync, rename): a crash leaves either nothing or the blob.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from facesearch.crypto import KeyRing

_BLOB_ID = re.compile(r"^[0-9a-f]{64}$")


class BlobStore:
    def __init__(self, root: Path, keyring: KeyRing) -> None:
        self.root = root
        self._keys = keyring

    def _path(self, blob_id: str) -> Path:
        if not _BLOB_ID.match(blob_id):
            raise ValueError("malformed blob id")
        return self.root / blob_id[:2] / blob_id[2:4] / blob_id

    def put(self, data: bytes) -> str:
        blob_id = self._keys.content_hash(data)
        path = self._path(blob_id)
        if path.exists():
            return blob_id
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
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
        return self._keys.blobs.open(self._path(blob_id).read_bytes(), aad=blob_id.encode())

    def exists(self, blob_id: str) -> bool:
        return self._path(blob_id).exists()

    def delete(self, blob_id: str) -> None:
        self._path(blob_id).unlink(missing_ok=True)

    def ids(self) -> list[str]:
        return [p.name for p in self.root.glob("*/*/*") if _BLOB_ID.match(p.name)]
