"""Read timeouts and header limits for the HTTP server (issue 11, Low).

uvicorn arms no timer until a first response has been sent, so a client that sends half a
request line and headers (slowloris), or a body a byte at a time, holds a connection for as long
as it likes; and h11 buffers 16 KiB of headers only if told to. `BoundedH11Protocol` closes a
connection whose request headers are not complete `header_timeout` seconds after its first byte
(or after the connection opened), or whose body is not complete `body_timeout` seconds after its
headers; `uvicorn_options` gives uvicorn this protocol, the header size limit and a short
keep-alive.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from facesearch.config import Settings

_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b'connection: close\r\ncontent-length: 42\r\n\r\n{"detail":"request headers are too large"}'
)


class BoundedH11Protocol(H11Protocol):
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_header_bytes: int = 16_384

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._limit_timer: asyncio.TimerHandle | None = None
        self._limit_state: object | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and self._head_too_large(data):
            self._disarm()
            self.logger.info("refusing a request: its head exceeds %d bytes", self.max_header_bytes)
            self.transport.write(_TOO_LARGE)
            self.transport.close()
            return
        super().data_received(data)
        self._arm()

    def _head_too_large(self, data: bytes) -> bool:
        """h11 bounds only a head that arrives in several reads; this bounds it however it
        arrives (request line and headers, up to the blank line)."""
        buffered = bytes(self.conn.trailing_data[0]) + data
        end = buffered.find(b"\r\n\r\n")
        return (end if end >= 0 else len(buffered)) > self.max_header_bytes

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _disarm(self) -> None:
        timer = getattr(self, "_limit_timer", None)
        if timer is not None:
            timer.cancel()
        self._limit_timer = None
        self._limit_state = None

    def _arm(self) -> None:
        """One timer per phase: waiting for complete headers (IDLE), or for the body."""
        state = self.conn.their_state
        if state is h11.IDLE:
            if self.cycle is not None and not self.cycle.response_complete:
                self._disarm()  # a response is being written: not the client's turn
                return
            timeout = self.header_timeout
        elif state is h11.SEND_BODY:
            timeout = self.body_timeout
        else:
            self._disarm()
            return
        if self._limit_timer is not None and self._limit_state is state:
            return  # the phase's clock keeps running: trickled bytes do not reset it
        self._disarm()
        self._limit_state = state
        self._limit_timer = self.loop.call_later(timeout, self._expired, state)

    def _expired(self, state: object) -> None:
        self._limit_timer = None
        if self.conn.their_state is not state or self.transport.is_closing():
            self._arm()
            return
        if state is h11.IDLE and self.cycle is not None and not self.cycle.response_complete:
            return
        if state is h11.IDLE and not self._partial():
            # an idle keep-alive connection: uvicorn's keep-alive timer owns it
            if self.timeout_keep_alive_task is None:
                self.transport.close()
            return
        self.logger.info("closing a connection: request %s not received in time", _phase(state))
        self.transport.close()

    def _partial(self) -> bool:
        """Whether part of a request has been received (bytes are waiting in h11's buffer)."""
        return bool(self.conn.trailing_data[0])


def _phase(state: object) -> str:
    return "headers" if state is h11.IDLE else "body"


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What `facesearch serve` passes to uvicorn for timeouts and header limits."""

    class Protocol(BoundedH11Protocol):
        header_timeout = settings.request_header_timeout
        body_timeout = settings.request_body_timeout
        max_header_bytes = settings.max_header_bytes

    return {
        "http": Protocol,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": 5,
    }
