"""The private channel between the CLI and the running service of one data directory (ADR 0019).

A CLI `search` is a fresh process: it would pay for the imports, the model's runtime sessions
and the index before its first result. When `facesearch serve` runs on the same data directory it
answers on a Unix socket instead, `<home>/run/service.sock`, whose folder is 0700 and the socket
0600. Three checks keep that socket from becoming a way in or a way out:

- the service answers only peers of its own user (the kernel's `SO_PEERCRED`);
- the two sides prove to each other that they hold the deployment's master key, by HMAC-SHA256
  under `KeyRing.local_channel_key` over fresh nonces of both: the CLI sends no photo to a
  listener that cannot prove it (another program that took the path), and the service runs no
  search for a caller that cannot (a process of the same user without the key file);
- every request and answer is bound to its nonces and to the SHA-256 of its body, and a
  server nonce is good for one request within `NONCE_SECONDS`.

Standard library only: the CLI's fast path must not import the server's modules.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import stat
import struct
from pathlib import Path

RUN_DIR = "run"
SOCKET_NAME = "service.sock"
NONCE_BYTES = 32
NONCE_SECONDS = 30.0
#: header names (HTTP/1.1 over the Unix socket)
CLIENT_NONCE = "X-Facesearch-Client-Nonce"
SERVER_NONCE = "X-Facesearch-Server-Nonce"
PROOF = "X-Facesearch-Proof"


def run_dir(home: Path) -> Path:
    return home / RUN_DIR


def _mac(key: bytes, label: bytes, *parts: bytes) -> str:
    mac = hmac.new(key, label + b"\x00", hashlib.sha256)
    for part in parts:
        mac.update(struct.pack(">I", len(part)))
        mac.update(part)
    return mac.hexdigest()


def server_proof(key: bytes, client_nonce: bytes, server_nonce: bytes) -> str:
    """What the service shows to prove it holds the key (answer to a challenge)."""
    return _mac(key, b"facesearch/local/server", client_nonce, server_nonce)


def request_proof(key: bytes, client_nonce: bytes, server_nonce: bytes, body: bytes) -> str:
    """What the CLI shows with a request: the key, both nonces and the body's digest."""
    digest = hashlib.sha256(body).digest()
    return _mac(key, b"facesearch/local/request", client_nonce, server_nonce, digest)


def answer_proof(key: bytes, client_nonce: bytes, server_nonce: bytes, body: bytes) -> str:
    """What the service shows with an answer, bound to the request's nonces."""
    digest = hashlib.sha256(body).digest()
    return _mac(key, b"facesearch/local/answer", client_nonce, server_nonce, digest)


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def open_private_dir(path: Path) -> int:
    """An fd of `path`, a real directory (never through a symbolic link) that belongs to this
    user and that nobody else may enter; raises `PermissionError` with the reason otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    info = os.fstat(fd)
    reason = None
    if info.st_uid != os.geteuid():
        reason = f"{path} belongs to another user (uid {info.st_uid})"
    elif stat.S_IMODE(info.st_mode) & 0o077:
        reason = f"{path} is open to other users (mode {stat.S_IMODE(info.st_mode):o})"
    if reason:
        os.close(fd)
        raise PermissionError(reason)
    return fd


def address_in(dir_fd: int, dir_path: Path) -> str:
    """The socket's address, reached through the open folder where the platform allows it
    (Linux: no re-resolution of the path between the check and the connect, and no limit of
    108 bytes on the data directory's path)."""
    via_fd = f"/proc/self/fd/{dir_fd}"
    if os.path.isdir(via_fd):
        return f"{via_fd}/{SOCKET_NAME}"
    return str(dir_path / SOCKET_NAME)


def peer_uid(sock: socket.socket) -> int | None:
    """The user id of the process at the other end of a Unix socket (None where the platform
    does not say)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)


def socket_state(dir_fd: int) -> str:
    """What is at the socket's name in the open run folder: "absent", "socket" (ours) or a
    reason not to touch it."""
    try:
        info = os.stat(SOCKET_NAME, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return "absent"
    if not stat.S_ISSOCK(info.st_mode):
        return f"{SOCKET_NAME} is not a socket"
    if info.st_uid != os.geteuid():
        return f"{SOCKET_NAME} belongs to another user (uid {info.st_uid})"
    return "socket"
