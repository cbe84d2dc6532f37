"""A real uvicorn server on 127.0.0.1 (plain HTTP and TLS), spoken to with httpx: sign-in over
HTTP, security headers, no stack trace or internal path in an error, request size limit,
trusted-proxy handling."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from facesearch.api.deps import CSRF_HEADER, SESSION_COOKIE
from facesearch.deployment import Deployment
from facesearch.security import totp
from facesearch.store.audit import AuditEntry
from tests.api.conftest import create_user, make_app, new_deployment

SECRET_PATH = "/srv/facesearch/internal/secret_module.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def add_failing_route(app: FastAPI) -> None:
    def boom() -> None:
        raise RuntimeError(f"kaboom in {SECRET_PATH}")

    app.add_api_route("/api/v1/test-only/boom", boom, methods=["GET"])


class Server:
    def __init__(self, app: FastAPI, **kw: object) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            server_header=False,
            proxy_headers=False,
            lifespan="off",
            **kw,
        )  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def sign_in_http(http: httpx.Client, email: str, password: str, secret: str) -> None:
    r = http.post("/api/v1/auth/signin", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    http.headers[CSRF_HEADER] = r.json()["csrf_token"]
    r = http.post(
        "/api/v1/auth/mfa/verify", json={"code": totp.code_at(secret, totp.current_step())}
    )
    assert r.status_code == 200, r.text
    http.headers[CSRF_HEADER] = r.json()["csrf_token"]


def assert_security_headers(response: httpx.Response) -> None:
    h = response.headers
    assert "default-src 'self'" in h["content-security-policy"]
    assert "frame-ancestors 'none'" in h["content-security-policy"]
    assert h["x-frame-options"] == "DENY"
    assert h["referrer-policy"] == "no-referrer"
    assert h["x-content-type-options"] == "nosniff"
    assert "server" not in h


@pytest.fixture
def served(deployment: Deployment) -> Iterator[tuple[str, FastAPI]]:
    app = make_app(deployment)
    add_failing_route(app)
    with Server(app) as server:
        yield f"http://127.0.0.1:{server.port}", app


def test_real_server_sign_in_headers_and_errors(
    served: tuple[str, FastAPI], deployment: Deployment
) -> None:
    base, _ = served
    _, _, email, password, secret, _ = create_user(deployment, "Acme", ["investigator"])
    with httpx.Client(base_url=base, timeout=10) as http:
        r = http.get("/api/v1/health")
        assert r.status_code == 200
        assert_security_headers(r)
        assert "strict-transport-security" not in r.headers  # plain HTTP: no HSTS
        assert http.get("/api/v1/me").status_code == 401

        sign_in_http(http, email, password, secret)
        cookie = next(c for c in http.cookies.jar if c.name == SESSION_COOKIE)
        assert cookie.has_nonstandard_attr("HttpOnly")
        assert not cookie.secure  # plain HTTP on loopback
        r = http.get("/api/v1/me")
        assert r.status_code == 200 and r.json()["email"] == email
        assert_security_headers(r)
        assert r.headers["cache-control"] == "no-store"

        # an unhandled error: generic body with a request id, no trace, no path
        r = http.get("/api/v1/test-only/boom")
        assert r.status_code == 500
        body = r.text
        assert r.json()["detail"] == "internal error" and r.json()["request_id"]
        for leak in (
            "Traceback",
            "kaboom",
            SECRET_PATH,
            "/srv/",
            ".py",
            "RuntimeError",
            str(Path(__file__).parent),
        ):
            assert leak not in body
        assert_security_headers(r)

        # validation errors do not echo what was sent
        r = http.post("/api/v1/auth/signin", json={"email": "x@y.z", "password": 5})
        assert r.status_code == 422 and "input" not in r.text

        r = http.get("/api/v1/no-such-route")
        assert r.status_code in (401, 404) and "Traceback" not in r.text
        assert_security_headers(r)


def test_request_size_limit(tmp_path: Path) -> None:
    dep = new_deployment(tmp_path, max_request_bytes=4096)
    try:
        with (
            Server(make_app(dep)) as server,
            httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as http,
        ):
            r = http.post(
                "/api/v1/auth/signin",
                content=b"x" * 10_000,
                headers={"content-type": "application/json"},
            )
            assert r.status_code == 413
            assert_security_headers(r)

            def chunks() -> Iterator[bytes]:
                for _ in range(10):
                    yield b"y" * 1000

            r = http.post(
                "/api/v1/auth/signin",
                content=chunks(),
                headers={"content-type": "application/json"},
            )
            assert r.status_code == 413
            r = http.post("/api/v1/auth/signin", json={"email": "a@b.cd", "password": "p"})
            assert r.status_code == 401
    finally:
        dep.close()


def test_tls_hsts_and_secure_cookie(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    dep = new_deployment(tmp_path, tls_cert=cert, tls_key=key)
    try:
        _, _, email, password, _, _ = create_user(dep, "Acme", ["investigator"])
        app = make_app(dep)
        with (
            Server(app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as server,
            httpx.Client(
                base_url=f"https://localhost:{server.port}", verify=False, timeout=10
            ) as http,
        ):
            r = http.get("/api/v1/health")
            assert r.status_code == 200
            assert "max-age=" in r.headers["strict-transport-security"]
            r = http.post("/api/v1/auth/signin", json={"email": email, "password": password})
            assert r.status_code == 200
            set_cookie = next(
                v
                for k, v in r.headers.multi_items()
                if k == "set-cookie" and v.startswith(SESSION_COOKIE)
            ).lower()
            assert "secure" in set_cookie and "httponly" in set_cookie
            assert "samesite=strict" in set_cookie
    finally:
        dep.close()


def _signin_ip(dep: Deployment) -> str | None:
    with dep.db.session() as s:
        row = s.scalars(
            select(AuditEntry)
            .where(AuditEntry.action.like("auth.signin.%"))
            .order_by(AuditEntry.id.desc())
        ).first()
        return row.ip if row else None


def test_forwarded_for_only_from_trusted_proxies(tmp_path: Path) -> None:
    dep = new_deployment(tmp_path, trusted_proxies=["10.0.0.0/8"])
    try:
        app = make_app(dep)
        body = {"email": "nobody@x.test", "password": "wrong wrong"}
        spoof = {"X-Forwarded-For": "203.0.113.9"}
        TestClient(app, client=("192.0.2.1", 1)).post(
            "/api/v1/auth/signin", json=body, headers=spoof
        )
        assert _signin_ip(dep) == "192.0.2.1"  # untrusted peer: header ignored
        TestClient(app, client=("10.1.2.3", 1)).post(
            "/api/v1/auth/signin",
            json=body,
            headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9, 10.0.0.2"},
        )
        assert _signin_ip(dep) == "203.0.113.9"  # rightmost address not a trusted proxy
    finally:
        dep.close()
