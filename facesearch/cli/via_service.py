"""The CLI's side of the private channel to a running service (ADR 0019).

`search(settings, …)` returns the service's answer, or None when no service of this data
directory listens (the CLI then searches in its own process). It sends the photo only after the
listener has proved that it holds the deployment's key, and accepts an answer only with the
service's proof over it. Standard library and the key file only: this is the fast path.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import secrets
import socket
from typing import TYPE_CHECKING, Any

from facesearch import local_channel as lc
from facesearch.errors import ConfigError, FacesearchError

if TYPE_CHECKING:
    from facesearch.config import Settings

#: a search of a big group photo on a busy service may take a while; a dead one answers at once
TIMEOUT_SECONDS = 300.0


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, address: str) -> None:
        super().__init__("localhost", timeout=TIMEOUT_SECONDS)
        self._address = address

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._address)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class NoService(Exception):
    """No service of this data directory listens (not an error: search locally)."""


def may_listen(settings: Settings) -> bool:
    """Whether something is at the socket's name (cheap: the key is loaded only then)."""
    return os.path.lexists(lc.run_dir(settings.home) / lc.SOCKET_NAME) or os.path.islink(
        lc.run_dir(settings.home)
    )


def _connect(settings: Settings) -> tuple[_UnixConnection, int]:
    folder = lc.run_dir(settings.home)
    try:
        fd = lc.open_private_dir(folder)
    except FileNotFoundError as exc:
        raise NoService from exc
    except (OSError, PermissionError) as exc:  # a link, another user's folder, an open folder
        raise ConfigError(
            f"not using the service socket: {exc}; remove {folder} (the service makes it)"
        ) from exc
    state = lc.socket_state(fd)
    if state != "socket":
        os.close(fd)
        if state == "absent":
            raise NoService
        raise ConfigError(f"not using the service socket in {folder}: {state}")
    conn = _UnixConnection(lc.address_in(fd, folder))
    try:
        conn.connect()
    except (ConnectionRefusedError, FileNotFoundError) as exc:  # left by a service that died
        os.close(fd)
        raise NoService from exc
    except OSError:
        os.close(fd)
        raise
    return conn, fd


def _json(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ConfigError("the service socket answered something that is not JSON") from exc
    if not isinstance(doc, dict):
        raise ConfigError("the service socket answered something unexpected")
    return doc


def search(
    settings: Settings,
    key: bytes,
    image: bytes,
    *,
    collections: list[str] | None,
    top: int,
    threshold: float | None,
) -> dict[str, Any] | None:
    """The running service's search result (as `EngineResult.as_dict()`), or None when no
    service of this data directory listens."""
    try:
        conn, fd = _connect(settings)
    except NoService:
        return None
    where = lc.run_dir(settings.home) / lc.SOCKET_NAME
    try:
        client_nonce = secrets.token_bytes(lc.NONCE_BYTES)
        conn.request("GET", f"/v1/challenge?nonce={client_nonce.hex()}")
        reply = conn.getresponse()
        doc = _json(reply.read())
        if reply.status != 200:
            raise ConfigError(f"the service on {where} refused the challenge: {_message(doc)}")
        try:
            server_nonce = bytes.fromhex(str(doc["nonce"]))
            shown = str(doc["proof"])
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"the listener on {where} does not speak facesearch") from exc
        if len(server_nonce) != lc.NONCE_BYTES or not lc.same(
            shown, lc.server_proof(key, client_nonce, server_nonce)
        ):
            raise ConfigError(
                f"the listener on {where} could not prove that it holds this deployment's "
                "key (another program, or a service started with another key file): the "
                "photo was not sent"
            )
        body = json.dumps(
            {
                "image": base64.b64encode(image).decode(),
                "collections": collections,
                "top": top,
                "threshold": threshold,
            }
        ).encode()
        conn.request(
            "POST",
            "/v1/search",
            body=body,
            headers={
                "Content-Type": "application/json",
                lc.CLIENT_NONCE: client_nonce.hex(),
                lc.SERVER_NONCE: server_nonce.hex(),
                lc.PROOF: lc.request_proof(key, client_nonce, server_nonce, body),
            },
        )
        reply = conn.getresponse()
        raw = reply.read()
        if not lc.same(
            reply.getheader(lc.PROOF) or "", lc.answer_proof(key, client_nonce, server_nonce, raw)
        ):
            if reply.status == 401:
                raise ConfigError(
                    f"the service on {where} does not accept this key file's proof (it was "
                    "started with another key file)"
                )
            if reply.status != 200:  # refused before the search (too large, malformed)
                raise ConfigError(f"the service on {where} refused: {_message(_json(raw))}")
            raise ConfigError(f"the answer on {where} carries no valid proof of the key")
        doc = _json(raw)
        if reply.status != 200:
            raise FacesearchError(_message(doc))
        result = doc.get("result")
        if not isinstance(result, dict):
            raise ConfigError(f"the service on {where} answered no result")
        return result
    except (OSError, http.client.HTTPException) as exc:
        raise ConfigError(f"the service on {where} stopped answering: {exc}") from exc
    finally:
        conn.close()
        os.close(fd)


def _message(doc: dict[str, Any]) -> str:
    error = doc.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    if isinstance(message, str):
        return message
    return "no reason given"
