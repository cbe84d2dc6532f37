"""Issue 11, Low: a real `facesearch serve` on 127.0.0.1, attacked with a raw socket.

Before: a partial request header kept its connection open for as long as the client liked (70 s
in the review, and more), 100 KB of headers were accepted, and `serve` never wrote `log_file`.
Now a partial head is closed after `request_header_timeout`, a slow body after
`request_body_timeout`, a head over `max_header_bytes` is refused, and the log goes to
`log_file` (0600). Running as root is warned about."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from facesearch.cli import serve_cmd
from facesearch.config import load_settings
from facesearch.deployment import init_deployment


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    home, key = tmp_path / "home", tmp_path / "keys" / "k.key"
    init_deployment(load_settings(home, key_file=key))
    port = _free_port()
    log_file = tmp_path / "logs" / "service.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACESEARCH_")}
    env.update(
        FACESEARCH_REQUEST_HEADER_TIMEOUT="2",
        FACESEARCH_REQUEST_BODY_TIMEOUT="2",
        FACESEARCH_LOG_FILE=str(log_file),
    )
    base = [sys.executable, "-m", "facesearch", "--home", str(home), "--key-file", str(key)]
    proc = subprocess.Popen(
        [*base, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("facesearch serve did not start") from None
                time.sleep(0.2)
        yield port, log_file
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _closed_after(sock: socket.socket, limit: float) -> float | None:
    """Seconds until the server closed the connection (None: still open after `limit`)."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def test_slow_and_oversized_requests_against_a_real_server(server: tuple[int, Path]) -> None:
    port, log_file = server
    # a partial header, then silence (slowloris): closed after the header timeout
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        closed = _closed_after(sock, 15)
    assert closed is not None and closed < 8, closed
    # trickling a byte a second does not reset the clock
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        start = time.monotonic()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for _ in range(15):
                sock.sendall(b"X-A: b\r\n")
                time.sleep(1)
        assert time.monotonic() - start < 10
    # a body announced and never sent: closed after the body timeout
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /api/v1/auth/signin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        closed = _closed_after(sock, 15)
    assert closed is not None and closed < 8, closed
    # 100 KB of headers: refused, never answered 200
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        big = b"X-Big: " + b"a" * 100_000 + b"\r\n"
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + big + b"\r\n")
        try:
            answer = sock.recv(4096)
        except ConnectionResetError:
            answer = b""
    assert answer.startswith(b"HTTP/1.1 431") or answer == b"", answer[:100]
    # an ordinary request still works, and the service log went to log_file, mode 0600
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    deadline = time.monotonic() + 10
    while "GET /api/v1/health" not in log_file.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "GET /api/v1/health" in log_file.read_text()
    assert log_file.stat().st_mode & 0o077 == 0


def test_serve_warns_when_running_as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    warning = serve_cmd.running_as_root()
    assert warning and "root" in warning
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert serve_cmd.running_as_root() is None
