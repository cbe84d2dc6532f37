"""Envelope of the data directory's secrets: one master key in a key file, sub-keys by purpose.

The key file lives outside the data directory (0600). From its 32-byte master key we derive, with
HKDF-SHA256, one sub-key per purpose so that a leak of one derived value says nothing about the
others. Everything that reaches disk inside the data directory and could identify a person
(images, face crops, embeddings, the vector index) is sealed with AES-256-GCM; the associated data
binds each ciphertext to what it is (a blob id, a face id), so ciphertexts cannot be swapped.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from facesearch.errors import ConfigError
from facesearch.files import private_dirs

KEY_FILE_VERSION = 1
NONCE_SIZE = 12
_BASE32_BODY = re.compile(r"[a-z2-7]{26}")
_MAGIC = b"FSE1"  # facesearch sealed envelope, version 1


def _derive(master: bytes, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
        master
    )


@dataclass(frozen=True)
class Sealer:
    """AES-256-GCM with a random nonce. Output: magic | nonce | ciphertext+tag."""

    key: bytes

    #: bytes a sealed value adds to its plaintext (magic, nonce, GCM tag)
    OVERHEAD = len(_MAGIC) + NONCE_SIZE + 16

    @functools.cached_property
    def _aead(self) -> AESGCM:
        return AESGCM(self.key)

    def seal(self, plaintext: bytes | bytearray | memoryview, aad: bytes = b"") -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        return _MAGIC + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def seal_into(
        self,
        fh: BinaryIO,
        parts: Sequence[bytes | memoryview],
        aad: bytes = b"",
        *,
        piece: int = 1 << 20,
    ) -> int:
        """Seal the concatenation of `parts` straight into the file `fh` (the bytes `seal`
        returns, so `open` reads them), a MiB at a time: no copy of the whole plaintext or
        ciphertext, and no call that holds the GIL for more than a MiB's work (a background
        compaction seals headers of tens of MB while searches run). Returns the bytes
        written."""
        nonce = os.urandom(NONCE_SIZE)
        enc = Cipher(algorithms.AES(self.key), modes.GCM(nonce)).encryptor()
        enc.authenticate_additional_data(aad)
        fh.write(_MAGIC + nonce)
        written = len(_MAGIC) + NONCE_SIZE
        for part in parts:
            view = memoryview(part).cast("B")
            for at in range(0, len(view), piece):
                out = enc.update(view[at : at + piece])
                fh.write(out)
                written += len(out)
        out = enc.finalize()
        fh.write(out + enc.tag)
        return written + len(out) + len(enc.tag)

    def open(self, sealed: bytes, aad: bytes = b"") -> bytes:
        if not sealed.startswith(_MAGIC):
            raise ValueError("not a facesearch sealed value")
        nonce = sealed[len(_MAGIC) : len(_MAGIC) + NONCE_SIZE]
        return self._aead.decrypt(nonce, sealed[len(_MAGIC) + NONCE_SIZE :], aad)


_B32 = "abcdefghijklmnopqrstuvwxyz234567"  # RFC 4648 base32, lowercase, no padding
#: our alphabet -> the digits of Python's int(x, 32) ("0-9a-v"), to decode in one call
_TO_INT32 = str.maketrans(_B32, "0123456789abcdefghijklmnopqrstuv")


_B32_PAIRS = [a + b for a in _B32 for b in _B32]  # 10 bits -> two characters
_B32_SHIFTS = tuple(range(120, -1, -10))


def _b32(raw: bytes) -> str:
    """16 bytes as 26 base32 characters (the last one carries 3 bits and two zero bits)."""
    n = int.from_bytes(raw, "big") << 2
    return "".join([_B32_PAIRS[(n >> shift) & 1023] for shift in _B32_SHIFTS])


def _unb32(body: str) -> bytes | None:
    """The 16 bytes of a canonical 26-character body, or None (any other spelling)."""
    if not _BASE32_BODY.fullmatch(body):
        return None
    n = int(body.translate(_TO_INT32), 32)
    if n & 3:
        return None  # a non-canonical spelling of some block: refused, never an alias
    return (n >> 2).to_bytes(16, "big")


class IdCodec:
    """Opaque ids for the API (docs/decisions/0015-opaque-ids.md).

    An id of kind `k` (`collection`, `face`, ...) is `<prefix>_<base32 of AES-256(block)>`, the
    block being `tag(k) (4 bytes) | id (8 bytes, big-endian) | 4 zero bytes`: one call of the
    block cipher (a keyed pseudo-random permutation of 16-byte blocks), so two ids reveal neither
    their order nor how many objects exist, and a changed character decrypts to a block whose tag
    and zero bytes do not check (a forgery succeeds with probability 2^-64). Decoding answers
    None for anything that is not an id of that kind made with this key."""

    BLOCK = 16
    #: lowercase RFC 4648 base32 of 16 bytes, without padding
    BODY_CHARS = 26

    def __init__(self, key: bytes, prefixes: dict[str, str]) -> None:
        if len(key) != 32:
            raise ConfigError("the id key must be 32 bytes")
        # a single block, never a message: ECB over one block *is* the block cipher (ADR 0015).
        # One long-lived context each way (block-aligned input: every update returns its block
        # at once, no state carries over); contexts are not thread-safe, hence the lock.
        cipher = Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305
        self._enc = cipher.encryptor()
        self._dec = cipher.decryptor()
        self._lock = threading.Lock()
        self.prefixes = dict(prefixes)
        self._tags = {
            kind: hashlib.sha256(b"facesearch/id-kind/" + kind.encode()).digest()[:4]
            for kind in prefixes
        }

    def encode(self, kind: str, value: int) -> str:
        if not 0 <= value < 2**63:
            raise ValueError(f"id out of range for {kind}")
        block = self._tags[kind] + value.to_bytes(8, "big") + bytes(4)
        with self._lock:
            out = self._enc.update(block)
        return f"{self.prefixes[kind]}_{_b32(out)}"

    def decode(self, kind: str, text: object) -> int | None:
        """The integer behind an opaque id of `kind`, or None (malformed, another kind, another
        deployment's key, tampered)."""
        prefix = self.prefixes[kind] + "_"
        if not isinstance(text, str) or len(text) != len(prefix) + self.BODY_CHARS:
            return None
        if not text.startswith(prefix):
            return None
        raw = _unb32(text[len(prefix) :])
        if raw is None:
            return None
        with self._lock:
            block = self._dec.update(raw)
        if not hmac.compare_digest(block[:4], self._tags[kind]) or block[12:] != bytes(4):
            return None
        return int.from_bytes(block[4:12], "big")


class KeyRing:
    """The sub-keys of one deployment, derived from the master key in its key file."""

    def __init__(self, master: bytes, key_id: str) -> None:
        if len(master) != 32:
            raise ConfigError("the master key must be 32 bytes")
        self.key_id = key_id
        self.blobs = Sealer(_derive(master, "facesearch/blobs/v1"))
        self.embeddings = Sealer(_derive(master, "facesearch/embeddings/v1"))
        self.index = Sealer(_derive(master, "facesearch/index/v1"))
        self.secrets = Sealer(_derive(master, "facesearch/secrets/v1"))
        self._hash_key = _derive(master, "facesearch/content-hash/v1")
        self._index_key = _derive(master, "facesearch/blind-index/v1")
        self._check = _derive(master, "facesearch/key-check/v1")
        #: SQLCipher's raw key for the SQLite database (ADR 0010)
        self.database_key = _derive(master, "facesearch/database/v1")
        #: the HMAC-SHA256 key of the audit chain (scheme hmac-sha256/v1, docs/decisions/0009)
        self.audit_mac_key = _derive(master, "facesearch/audit-chain/v1")
        #: the AES-256 key of the API's opaque ids (docs/decisions/0011)
        self.id_key = _derive(master, "facesearch/opaque-ids/v1")
        #: the HMAC key of the CLI's private channel to the running service (ADR 0019)
        self.local_channel_key = _derive(master, "facesearch/local-socket/v1")

    def content_hash(self, data: bytes) -> str:
        """Keyed hash of content: dedupes files without letting anyone confirm a known photo."""
        return hmac.new(self._hash_key, data, hashlib.sha256).hexdigest()

    def blind_index(self, kind: str, value: str) -> str:
        """Keyed hash of a lookup value (an email, a rate-limit subject): equal values find each
        other, but the stored hash does not let anyone confirm a guessed value without the key."""
        message = kind.encode() + b"\x00" + value.encode("utf-8", "surrogatepass")
        return hmac.new(self._index_key, message, hashlib.sha256).hexdigest()

    @property
    def fingerprint(self) -> str:
        """A value stored in the data directory to detect the wrong key file early."""
        return hashlib.sha256(self._check).hexdigest()[:32]

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        if not path.exists():
            raise ConfigError(f"key file {path} not found (run `facesearch init`)")
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"key file {path} is readable by others (mode {mode:o}); run chmod 600 {path}"
            )
        try:
            doc = json.loads(path.read_text())
            master = base64.b64decode(doc["master_key"])
            key_id = str(doc["key_id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"key file {path} is not a facesearch key file") from exc
        return cls(master, key_id)

    @staticmethod
    def create(path: Path) -> KeyRing:
        """Write a new key file with 0600 permissions; refuse to overwrite an existing one."""
        private_dirs(path.parent)
        master = secrets.token_bytes(32)
        key_id = secrets.token_hex(8)
        doc = {
            "version": KEY_FILE_VERSION,
            "key_id": key_id,
            "master_key": base64.b64encode(master).decode(),
            "note": "facesearch master key: keep it outside the data directory and back it up "
            "separately; without it the data directory cannot be read.",
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=2)
        return KeyRing(master, key_id)

    def audit_signing_seed(self) -> bytes:
        """The 32-byte Ed25519 seed that signs audit exports.

        Derived with HKDF-SHA256 (its own purpose label) from the secrets sub-key, itself derived
        from the master key, so it is as secret as the master key, is never stored, and is the
        same for every process of the deployment. The public half goes into each export."""
        return _derive(self.secrets.key, "facesearch/audit-signing/v1")
