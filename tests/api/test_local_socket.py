"""The CLI's private channel to the running service (ADR 0019), and attacks on it.

A CLI `search` of a data directory whose `facesearch serve` runs is answered by the service, on
its warm model and index: the same candidates and scores as a search in the CLI's own process.
The socket is 0600 in a 0700 folder; the CLI sends no photo to a listener that cannot prove it
holds the deployment's key, and the service runs nothing for a caller that cannot; a proof is
good once; a symbolic link, a stale socket and a second service are each handled."""

from __future__ import annotations

import base64
import http.client
import json
import os
import secrets
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from typer.testing import CliRunner

from facesearch import local_channel as lc
from facesearch.api.local_socket import LocalSearchSocket
from facesearch.cli import app, via_service
from facesearch.config import Settings, load_settings
from facesearch.crypto import KeyRing
from facesearch.deployment import Deployment
from facesearch.errors import ConfigError
from tests import pg
from tests.conftest import faces_dir


@pytest.fixture
def home(tmp_path: Path) -> Iterator[tuple[list[str], Settings, dict[str, str]]]:
    """A data directory with four photos of one person ingested through the CLI."""
    photos = faces_dir("small", "barack_obama")
    base = ["--home", str(tmp_path / "home"), "--key-file", str(tmp_path / "keys" / "k.key")]
    env = pg.cli_env()
    runner = CliRunner(env=env)
    assert runner.invoke(app, [*base, "init"]).exit_code == 0
    done = runner.invoke(app, [*base, "ingest", str(photos), "-c", "obama", "--workers", "1"])
    assert done.exit_code == 0, done.output
    with mock.patch.dict(os.environ, env):
        settings = load_settings(tmp_path / "home", key_file=tmp_path / "keys" / "k.key")
    yield base, settings, env


@pytest.fixture
def service(
    home: tuple[list[str], Settings, dict[str, str]],
) -> Iterator[tuple[LocalSearchSocket, list[str], CliRunner]]:
    base, settings, env = home
    dep = Deployment.open(settings)
    dep.warm()
    channel = LocalSearchSocket(dep)
    channel.start()
    try:
        yield channel, base, CliRunner(env=env)
    finally:
        channel.close()
        dep.close()


def _probe() -> str:
    return str(faces_dir("small", "barack_obama", "obama2.jpg"))


def _search(runner: CliRunner, base: list[str], *extra: str) -> tuple[int, str]:
    """Exit code and standard output (the JSON), or everything printed when it failed."""
    result = runner.invoke(app, [*base, "search", _probe(), "--top", "3", "--json", *extra])
    if result.exit_code == 0:
        return 0, result.stdout
    return result.exit_code, f"{result.output} {result.exception}"


def test_a_cli_search_is_answered_by_the_running_service(
    service: tuple[LocalSearchSocket, list[str], CliRunner],
) -> None:
    channel, base, runner = service
    code, here = _search(runner, base, "--local")
    assert code == 0, here
    assert channel.searches == 0
    opened = mock.Mock(side_effect=AssertionError("the CLI opened the data directory itself"))
    with mock.patch.object(Deployment, "open", opened):
        code, there = _search(runner, base, "-c", "obama")
    assert code == 0, there
    assert channel.searches == 1
    assert json.loads(there) == json.loads(here)  # same faces, candidates, scores, models
    assert json.loads(there)["faces"][0]["candidates"][0]["source"].endswith("obama2.jpg")
    with mock.patch.object(Deployment, "open", opened):  # the table too
        table = runner.invoke(app, [*base, "search", _probe(), "--top", "1"])
    assert table.exit_code == 0 and "not identifications" in table.output
    # the service's errors reach the operator as the CLI's own would
    with mock.patch.object(Deployment, "open", opened):
        code, out = _search(runner, base, "-c", "nobody")
    assert code != 0 and "no collection named nobody" in out

    folder = channel.dir
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    sock = folder / lc.SOCKET_NAME
    assert stat.S_ISSOCK(sock.lstat().st_mode) and stat.S_IMODE(sock.lstat().st_mode) == 0o600


def test_every_operator_search_is_on_the_audit_record(
    service: tuple[LocalSearchSocket, list[str], CliRunner],
) -> None:
    """Here or in the service, an operator's search leaves a `search.operator` entry, committed
    before the answer: the channel, the probe's keyed hash, the collections and every candidate
    shown; the chain still verifies."""
    from sqlalchemy import select

    from facesearch.security import audit
    from facesearch.store.audit import AuditEntry

    channel, base, runner = service
    code, here = _search(runner, base, "--local")
    assert code == 0, here
    code, there = _search(runner, base, "-c", "obama")
    assert code == 0, there
    assert channel.searches == 1
    dep = channel.dep
    with dep.db.session() as s:
        rows = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "search.operator").order_by(AuditEntry.id)
        ).all()
        assert [r.details["channel"] for r in rows] == ["cli", "service socket"]
        assert [r.ip for r in rows] == ["cli", "service socket"]
        assert all(r.org_id is None and r.actor_user_id is None for r in rows)
        probe_hash = dep.keys.content_hash(Path(_probe()).read_bytes())
        for row, answer in zip(rows, (here, there), strict=True):
            shown = [
                (c["face_id"], f["index"])
                for f in json.loads(answer)["faces"]
                for c in f["candidates"]
            ]
            assert shown, "the probe's person is in the gallery"
            assert [(r["face_id"], r["probe_face"]) for r in row.details["results"]] == shown
            assert row.details["probe_hash"] == probe_hash
            assert row.details["top_k"] == 3
        assert rows[1].details["collections"] == rows[0].details["collections"]
        assert audit.verify_chain(s).ok


def test_no_photo_goes_to_a_listener_without_the_key(
    home: tuple[list[str], Settings, dict[str, str]],
) -> None:
    """Another program that took the socket's name (or a service with another key file) learns
    nothing: the CLI checks the listener's proof before it sends the photo."""
    base, settings, env = home
    dep = Deployment.open(settings)
    impostor = LocalSearchSocket(dep)
    impostor.key = secrets.token_bytes(32)
    impostor.search = mock.Mock(side_effect=AssertionError("the photo reached the impostor"))  # type: ignore[method-assign]
    impostor.start()
    try:
        code, out = _search(CliRunner(env=env), base)
    finally:
        impostor.close()
        dep.close()
    assert code != 0 and "could not prove" in out and "photo was not sent" in out
    impostor.search.assert_not_called()


def _raw(address: str) -> http.client.HTTPConnection:
    conn = via_service._UnixConnection(address)
    conn.connect()
    return conn


def test_the_service_runs_nothing_without_a_proof_and_a_proof_is_good_once(
    service: tuple[LocalSearchSocket, list[str], CliRunner],
) -> None:
    channel, _, _ = service
    settings = channel.dep.settings
    # a caller of the same user without the key file
    with pytest.raises(ConfigError, match="could not prove"):
        via_service.search(
            settings, secrets.token_bytes(32), b"x", collections=None, top=1, threshold=None
        )
    assert channel.searches == 0
    key = KeyRing.load(settings.resolved_key_file).local_channel_key
    address = str(channel.dir / lc.SOCKET_NAME)
    image = Path(_probe()).read_bytes()
    body = json.dumps({"image": base64.b64encode(image).decode(), "top": 1}).encode()

    def challenge(conn: http.client.HTTPConnection, nonce: bytes) -> bytes:
        conn.request("GET", f"/v1/challenge?nonce={nonce.hex()}")
        return bytes.fromhex(json.loads(conn.getresponse().read())["nonce"])

    def post(conn: http.client.HTTPConnection, cn: bytes, sn: bytes, proof: str) -> int:
        headers = {lc.CLIENT_NONCE: cn.hex(), lc.SERVER_NONCE: sn.hex(), lc.PROOF: proof}
        conn.request("POST", "/v1/search", body=body, headers=headers)
        reply = conn.getresponse()
        reply.read()
        return reply.status

    conn = _raw(address)
    cn = secrets.token_bytes(lc.NONCE_BYTES)
    sn = challenge(conn, cn)
    # a proof over another body, or made up, runs nothing (and spends the challenge)
    assert post(conn, cn, sn, lc.request_proof(key, cn, sn, b"{}")) == 401
    assert post(conn, cn, sn, lc.request_proof(key, cn, sn, body)) == 401
    sn = challenge(conn, cn)
    assert post(conn, cn, sn, lc.request_proof(key, cn, sn, body)) == 200
    assert channel.searches == 1
    assert post(conn, cn, sn, lc.request_proof(key, cn, sn, body)) == 401  # replayed
    assert channel.searches == 1
    conn.close()
    # an expired challenge is refused
    conn = _raw(address)
    sn = challenge(conn, cn)
    later = time.monotonic() + lc.NONCE_SECONDS + 1
    with mock.patch("facesearch.api.local_socket.time.monotonic", return_value=later):
        assert post(conn, cn, sn, lc.request_proof(key, cn, sn, body)) == 401
    conn.close()
    assert channel.searches == 1


def test_a_peer_of_another_user_is_refused(
    service: tuple[LocalSearchSocket, list[str], CliRunner],
) -> None:
    channel, _, _ = service
    with mock.patch("facesearch.api.local_socket.lc.peer_uid", return_value=os.geteuid() + 1):
        conn = _raw(str(channel.dir / lc.SOCKET_NAME))
        conn.request("GET", f"/v1/challenge?nonce={secrets.token_hex(lc.NONCE_BYTES)}")
        reply = conn.getresponse()
        assert reply.status == 403 and b"proof" not in reply.read()
        conn.close()


def test_stale_sockets_second_services_and_links(
    home: tuple[list[str], Settings, dict[str, str]], tmp_path: Path
) -> None:
    base, settings, env = home
    folder = lc.run_dir(settings.home)
    folder.mkdir(mode=0o700)
    # a socket left by a service that died (bound, nobody listening): replaced
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(folder / lc.SOCKET_NAME))
    dead.close()
    code, out = _search(CliRunner(env=env), base)  # the CLI searches on its own meanwhile
    assert code == 0 and json.loads(out)["faces"], out
    dep = Deployment.open(settings)
    first = LocalSearchSocket(dep)
    first.start()
    try:
        with pytest.raises(ConfigError, match="another service answers"):
            LocalSearchSocket(dep).start()  # a second service leaves the first's socket alone
        assert first.searches == 0
        assert _search(CliRunner(env=env), base)[0] == 0 and first.searches == 1
    finally:
        first.close()
        dep.close()
    assert not (folder / lc.SOCKET_NAME).exists()  # removed when the service stops

    # the run folder swapped for a link to a folder elsewhere: neither side follows it
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    folder.rmdir()
    folder.symlink_to(elsewhere)
    code, out = _search(CliRunner(env=env), base)
    assert code != 0 and "not using the service socket" in out
    dep = Deployment.open(settings)
    try:
        with pytest.raises(ConfigError, match="folder cannot be used"):
            LocalSearchSocket(dep).start()
    finally:
        dep.close()
    assert list(elsewhere.iterdir()) == []
    # a folder others may enter is not used either (here with a socket left in it)
    folder.unlink()
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(folder / lc.SOCKET_NAME))
    dead.close()
    code, out = _search(CliRunner(env=env), base)
    assert code != 0 and "open to other users" in out


def test_a_real_service_answers_a_real_cli(
    home: tuple[list[str], Settings, dict[str, str]], tmp_path: Path
) -> None:
    """`facesearch serve` and `facesearch search` as the operator runs them, two processes."""
    base, settings, env = home
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("FACESEARCH_")}
    run_env.update(env)
    cli = [sys.executable, "-m", "facesearch", *base]
    proc = subprocess.Popen(
        [*cli, "serve", "--port", str(port)],
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sock = lc.run_dir(settings.home) / lc.SOCKET_NAME
    try:
        deadline = time.monotonic() + 90
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)
        there = subprocess.run(
            [*cli, "search", _probe(), "--top", "3", "--json"],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        here = subprocess.run(
            [*cli, "search", _probe(), "--top", "3", "--json", "--local"],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    assert json.loads(there.stdout) == json.loads(here.stdout)
    assert "answered by the running service" in there.stderr
    assert "answered by the running service" not in here.stderr
    assert "CLI searches of this data directory answered on" in output
    assert proc.returncode == 0 and not sock.exists(), output  # removed on a clean stop


def test_a_search_through_the_service_loads_no_database_index_or_model(
    service: tuple[LocalSearchSocket, list[str], CliRunner], tmp_path: Path
) -> None:
    """What makes it fast: the CLI process that hands its search to the service imports no
    database, index, model or image module (the service has them warm)."""
    channel, base, _ = service
    out = tmp_path / "modules.json"
    code = (
        "import json, sys\n"
        "sys.argv = ['facesearch', *sys.argv[1:]]\n"
        "from facesearch.cli import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        f"open({str(out)!r}, 'w').write(json.dumps(sorted(sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACESEARCH_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])  # (no database is opened)
    subprocess.run(
        [sys.executable, "-c", code, *base, "search", _probe(), "--json"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert channel.searches == 1
    loaded = {m.split(".")[0] for m in json.loads(out.read_text())}
    heavy = {"sqlalchemy", "numpy", "faiss", "onnxruntime", "onnx", "PIL", "fastapi", "httpx"}
    assert not loaded & heavy, sorted(loaded & heavy)
