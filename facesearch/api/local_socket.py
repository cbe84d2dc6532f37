"""The service's answer to the CLI of its own data directory: HTTP/1.1 on a private Unix socket.

`facesearch serve` starts `LocalSearchSocket` beside the API port (unless `service_socket` is
off). The CLI's `search` then runs in the service, on its warm model and index, instead of in a
fresh process that loads them (ADR 0019; the channel's checks in `facesearch.local_channel`).

Two routes, nothing else:

- `GET /v1/challenge` with the CLI's nonce: a fresh server nonce and the server's proof;
- `POST /v1/search` with both nonces and the request's proof: a JSON body
  `{"image": base64, "collections": [names] | null, "top": k, "threshold": t | null}`, answered
  with `{"result": …}` (the CLI's `--json` output) or `{"error": {"kind", "message"}}`.

The search is the CLI's own (`search.operator.operator_search`: the operator's collection names,
on the audit record as `search.operator`), taken through the same model queue as the API's
searches, so the CLI cannot starve them.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import secrets
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from facesearch import local_channel as lc
from facesearch.api.errors import status_of
from facesearch.errors import ConfigError, FacesearchError, InvalidRequest, PayloadTooLarge
from facesearch.files import private_dirs

if TYPE_CHECKING:
    from facesearch.deployment import Deployment

log = logging.getLogger("facesearch.local_socket")

#: most outstanding challenges (a flood of challenges only pushes out the oldest)
MAX_CHALLENGES = 256
#: a search body: the largest accepted file, base64-encoded, plus its parameters
_BODY_OVERHEAD = 64 * 1024


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = False
    channel: LocalSearchSocket


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "facesearch-local"
    sys_version = ""
    timeout = 60.0  # a peer that stops sending does not hold a thread for ever

    def address_string(self) -> str:  # a Unix peer has no address
        return "local"

    def log_message(self, format: str, *args: Any) -> None:
        log.info("local socket: " + format, *args)

    def setup(self) -> None:
        super().setup()
        uid = lc.peer_uid(self.connection)
        self.allowed = uid is None or uid == os.geteuid()
        if not self.allowed:
            log.warning("local socket: refused a peer of uid %s", uid)

    # -- routes -----------------------------------------------------------------------------------
    def do_GET(self) -> None:
        if not self.allowed:
            return self._send(403, {"error": {"kind": "Forbidden", "message": "not this user"}})
        url = urlsplit(self.path)
        if url.path != "/v1/challenge":
            return self._send(404, {"error": {"kind": "NotFound", "message": "no such route"}})
        client_nonce = _nonce(parse_qs(url.query).get("nonce", [""])[0])
        if client_nonce is None:
            return self._send(422, _error(InvalidRequest("a 32-byte hex nonce", field="nonce")))
        server_nonce = self.server.channel.challenge(client_nonce)
        proof = lc.server_proof(self.server.channel.key, client_nonce, server_nonce)
        self._send(200, {"nonce": server_nonce.hex(), "proof": proof})

    def do_POST(self) -> None:
        channel = self.server.channel
        if not self.allowed:
            return self._send(403, {"error": {"kind": "Forbidden", "message": "not this user"}})
        if urlsplit(self.path).path != "/v1/search":
            return self._send(404, {"error": {"kind": "NotFound", "message": "no such route"}})
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            return self._send(411, {"error": {"kind": "InvalidRequest", "message": "length"}})
        if int(length) > channel.max_body:
            self.close_connection = True
            return self._send(413, _error(PayloadTooLarge("the probe is over max_file_bytes")))
        body = self.rfile.read(int(length))
        client_nonce = _nonce(self.headers.get(lc.CLIENT_NONCE, ""))
        server_nonce = _nonce(self.headers.get(lc.SERVER_NONCE, ""))
        proof = self.headers.get(lc.PROOF, "")
        if (
            client_nonce is None
            or server_nonce is None
            or not channel.redeem(server_nonce, client_nonce)
            or not lc.same(proof, lc.request_proof(channel.key, client_nonce, server_nonce, body))
        ):
            log.warning("local socket: refused a request without a valid proof")
            return self._send(
                401, {"error": {"kind": "Unauthenticated", "message": "no valid proof of the key"}}
            )
        status, answer = channel.search(body)
        self._send(status, answer, nonces=(client_nonce, server_nonce))

    # -- replies ----------------------------------------------------------------------------------
    def _send(
        self, status: int, doc: dict[str, Any], nonces: tuple[bytes, bytes] | None = None
    ) -> None:
        body = json.dumps(doc, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if nonces is not None:
            self.send_header(lc.PROOF, lc.answer_proof(self.server.channel.key, *nonces, body))
        self.end_headers()
        self.wfile.write(body)


def _nonce(text: str) -> bytes | None:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if len(raw) == lc.NONCE_BYTES else None


def _error(exc: FacesearchError) -> dict[str, Any]:
    return {"error": {"kind": type(exc).__name__, "message": str(exc)}}


class LocalSearchSocket:
    """The Unix socket of one running service; `start()` binds it, `close()` removes it."""

    def __init__(self, dep: Deployment) -> None:
        self.dep = dep
        self.key = dep.keys.local_channel_key
        self.dir = lc.run_dir(dep.settings.home)
        self.max_body = dep.settings.max_file_bytes * 4 // 3 + _BODY_OVERHEAD
        self._challenges: dict[bytes, tuple[bytes, float]] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._dir_fd: int | None = None
        #: requests answered (tests and the log)
        self.searches = 0

    # -- the nonces -------------------------------------------------------------------------------
    def challenge(self, client_nonce: bytes) -> bytes:
        server_nonce = secrets.token_bytes(lc.NONCE_BYTES)
        now = time.monotonic()
        with self._lock:
            for old, (_, at) in list(self._challenges.items()):
                if now - at > lc.NONCE_SECONDS:
                    del self._challenges[old]
            while len(self._challenges) >= MAX_CHALLENGES:
                del self._challenges[next(iter(self._challenges))]
            self._challenges[server_nonce] = (client_nonce, now)
        return server_nonce

    def redeem(self, server_nonce: bytes, client_nonce: bytes) -> bool:
        """Whether `server_nonce` was issued for `client_nonce`, unused and fresh (it is spent
        either way)."""
        with self._lock:
            issued = self._challenges.pop(server_nonce, None)
        if issued is None:
            return False
        nonce, at = issued
        return nonce == client_nonce and time.monotonic() - at <= lc.NONCE_SECONDS

    # -- the work ---------------------------------------------------------------------------------
    def search(self, body: bytes) -> tuple[int, dict[str, Any]]:
        from facesearch.gallery.names import ids_by_name
        from facesearch.search.operator import operator_search

        try:
            try:
                doc = json.loads(body)
                image = base64.b64decode(doc["image"], validate=True)
                names = doc.get("collections") or None
                top = int(doc.get("top", 10))
                threshold = doc.get("threshold")
                if names is not None and not all(isinstance(n, str) for n in names):
                    raise TypeError("collections")
                if threshold is not None:
                    threshold = float(threshold)
            except (ValueError, KeyError, TypeError, binascii.Error) as exc:
                raise InvalidRequest(f"not a search request ({exc})") from exc
            with self.dep.db.session() as s:
                ids = ids_by_name(s, names)
            result = operator_search(
                self.dep,
                image,
                collection_ids=ids,
                top_k=top,
                threshold=threshold,
                channel="service socket",
            )
        except FacesearchError as exc:
            if isinstance(exc, ConfigError):
                log.error("local socket search failed: %s", exc)
            return status_of(exc), _error(exc)
        except Exception:
            log.exception("local socket search failed")
            return 500, {"error": {"kind": "Internal", "message": "see the service's log"}}
        with self._lock:
            self.searches += 1
        return 200, {"result": result.as_dict()}

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> Path:
        """Bind `<home>/run/service.sock` (0600 in a 0700 folder) and answer in a thread.

        A socket left by a service that died is replaced; one another service still answers on
        is left alone (ConfigError), and so is anything at that name that is not our socket."""
        private_dirs(self.dir)
        try:
            fd = lc.open_private_dir(self.dir)
        except (OSError, PermissionError) as exc:
            raise ConfigError(f"the service socket's folder cannot be used: {exc}") from exc
        try:
            address = lc.address_in(fd, self.dir)
            state = lc.socket_state(fd)
            if state == "socket":
                if _answers(address):
                    raise ConfigError(
                        f"another service answers on {self.dir / lc.SOCKET_NAME}: is "
                        "`facesearch serve` already running on this data directory?"
                    )
                os.unlink(lc.SOCKET_NAME, dir_fd=fd)  # left by a service that died
            elif state != "absent":
                raise ConfigError(f"{self.dir}: {state}; remove it or set service_socket = false")
            server = _Server(address, _Handler, bind_and_activate=False)
            server.channel = self
            server.server_bind()
            os.chmod(lc.SOCKET_NAME, 0o600, dir_fd=fd)  # just made, in our 0700 folder
            server.server_activate()
        except BaseException:
            os.close(fd)
            raise
        self._dir_fd, self._server = fd, server
        self._thread = threading.Thread(
            target=server.serve_forever, name="local-socket", daemon=True
        )
        self._thread.start()
        return self.dir / lc.SOCKET_NAME

    def close(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._dir_fd is not None:
            try:
                if lc.socket_state(self._dir_fd) == "socket":
                    os.unlink(lc.SOCKET_NAME, dir_fd=self._dir_fd)
            finally:
                os.close(self._dir_fd)
        self._server = self._thread = self._dir_fd = None


def _answers(address: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(address)
    except OSError:
        return False
    finally:
        probe.close()
    return True
