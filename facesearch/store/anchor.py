"""Signed checkpoints of the audit chain, kept outside the database (docs/decisions/0009).

A checkpoint says "the chain had `length` entries and the last one's hash was `head`", signed
with the deployment's Ed25519 audit key (derived from the master key, never stored) and linked to
the checkpoint before it (`prev`: SHA-256 of that line), one JSON line each, appended to a file in
`audit_anchor_dir` (by default beside the key file, outside the data directory). Whoever can
write the database but not read the key file cannot forge a checkpoint, so a truncated chain
(fewer entries than the last checkpoint) or a rehashed one (a different hash at a checkpointed
length) is found by `audit verify` and the doctor. Checkpoints can also be forwarded, as they are
written, to syslog or an HTTP sink, so that not even the anchor file's own host holds the only
copy.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import logging.handlers
import os
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from facesearch import clock
from facesearch.files import private_dirs

FORMAT = "facesearch-audit-anchor/1"
_GENESIS = hashlib.sha256(FORMAT.encode()).hexdigest()
_TAIL_BYTES = 8192

log = logging.getLogger(__name__)

Forwarder = Callable[[dict[str, Any]], None]


def anchor_file(anchor_dir: Path, key_id: str) -> Path:
    """The checkpoint file of the deployment whose key file has `key_id`."""
    return anchor_dir / f"audit-anchor-{key_id}.jsonl"


def _canonical(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _signed_part(checkpoint: dict[str, Any]) -> bytes:
    return _canonical({k: v for k, v in checkpoint.items() if k != "signature"})


def _last_line(fd: int) -> bytes | None:
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    start = max(0, size - _TAIL_BYTES)
    data = os.pread(fd, size - start, start)
    lines = [line for line in data.split(b"\n") if line.strip()]
    return lines[-1] if lines else None


class AnchorWriter:
    """Appends signed checkpoints: when at least `every` entries were appended since the last
    one this process wrote, and at `close` (shutdown) for whatever is left."""

    def __init__(
        self,
        path: Path,
        seed: bytes,
        key_id: str,
        *,
        every: int = 1,
        forwarders: list[Forwarder] | None = None,
    ) -> None:
        self.path = path
        self.key_id = key_id
        self.every = max(1, every)
        self.forwarders = list(forwarders or [])
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self._lock = threading.Lock()
        self._written = 0
        self._pending: tuple[int, str] | None = None

    def observe(self, length: int, head: str) -> None:
        """An audit commit left the chain at `length` entries ending in `head`."""
        with self._lock:
            if self._pending is None or length > self._pending[0]:
                self._pending = (length, head)
            if length - self._written >= self.every:
                self._flush_locked()

    def close(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._pending is None or self._pending[0] <= self._written:
            return
        length, head = self._pending
        try:
            checkpoint = self._append(length, head)
        except OSError as exc:  # the action is committed; say loudly that it is not anchored
            log.error("audit checkpoint %s not written to %s: %s", length, self.path, exc)
            return
        self._written = length
        for forward in self.forwarders:
            try:
                forward(checkpoint)
            except Exception as exc:  # a sink that is down never stops the service
                log.error("audit checkpoint %s not forwarded: %s", length, exc)

    def _append(self, length: int, head: str) -> dict[str, Any]:
        private_dirs(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # other processes of the deployment append too
            last = _last_line(fd)
            checkpoint: dict[str, Any] = {
                "type": "checkpoint",
                "format": FORMAT,
                "key_id": self.key_id,
                "length": length,
                "head": head,
                "ts": clock.now().isoformat(timespec="seconds"),
                "prev": hashlib.sha256(last).hexdigest() if last else _GENESIS,
            }
            checkpoint["signature"] = base64.b64encode(
                self._key.sign(_signed_part(checkpoint))
            ).decode()
            os.write(fd, _canonical(checkpoint) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        return checkpoint


def syslog_forwarder(address: str) -> Forwarder:
    """Send each checkpoint to syslog: `host:port` (UDP) or a socket path such as /dev/log."""
    target: str | tuple[str, int]
    if address.startswith("/"):
        target = address
    else:
        host, _, port = address.rpartition(":")
        target = (host or "localhost", int(port or 514))
    handler = logging.handlers.SysLogHandler(address=target)
    handler.setFormatter(logging.Formatter("facesearch-audit: %(message)s"))
    sink = logging.getLogger(f"facesearch.audit.anchor.syslog.{id(handler)}")
    sink.propagate = False
    sink.setLevel(logging.INFO)
    sink.addHandler(handler)

    def forward(checkpoint: dict[str, Any]) -> None:
        sink.info(_canonical(checkpoint).decode())

    return forward


def http_forwarder(url: str, timeout: float = 5.0) -> Forwarder:
    """POST each checkpoint as JSON to `url` (an append-only sink run by someone else)."""
    if not url.lower().startswith(("http://", "https://")):
        raise ValueError("audit_forward_url must be an http:// or https:// URL")

    def forward(checkpoint: dict[str, Any]) -> None:
        request = urllib.request.Request(  # noqa: S310 (http or https, checked above)
            url,
            data=_canonical(checkpoint),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read()

    return forward


@dataclass
class AnchorReading:
    """What a checkpoint file proves: `heads` maps each checkpointed length to its head."""

    path: Path
    exists: bool
    checkpoints: int = 0
    last_length: int = 0
    heads: dict[int, str] = field(default_factory=dict)
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def public_key_of(seed: bytes) -> bytes:
    return (
        Ed25519PrivateKey.from_private_bytes(seed)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def read_anchor(path: Path, public_key: bytes) -> AnchorReading:
    """Read and check every checkpoint: its signature and its link to the line before."""
    reading = AnchorReading(path, path.is_file())
    if not reading.exists:
        return reading
    key = Ed25519PublicKey.from_public_bytes(public_key)
    prev = _GENESIS
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            line = raw.rstrip(b"\n")
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                signature = base64.b64decode(str(item["signature"]))
                length, head = int(item["length"]), str(item["head"])
            except (ValueError, KeyError, TypeError):
                reading.problem = f"checkpoint line {number} is not a checkpoint"
                return reading
            try:
                key.verify(signature, _signed_part(item))
            except InvalidSignature:
                reading.problem = (
                    f"checkpoint line {number} is not signed by this deployment's audit key "
                    "(forged or edited checkpoint)"
                )
                return reading
            if item.get("prev") != prev:
                reading.problem = (
                    f"checkpoint line {number} does not follow the line before it "
                    "(checkpoints removed or reordered)"
                )
                return reading
            prev = hashlib.sha256(line).hexdigest()
            reading.checkpoints += 1
            reading.heads[length] = head
            reading.last_length = max(reading.last_length, length)
    return reading


def forwarders_for(syslog: str | None, url: str | None) -> list[Forwarder]:
    found: list[Forwarder] = []
    if syslog:
        with contextlib.suppress(OSError):
            found.append(syslog_forwarder(syslog))
    if url:
        found.append(http_forwarder(url))
    return found
