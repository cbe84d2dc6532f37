"""Issue 11, Medium 9: attacks on the audit chain by whoever can write the database file.

Each test performs the attack the review did (delete the last entries, edit one and recompute
every later hash, purge one organisation's entries and renumber, drop the append-only
triggers) and shows that `audit verify`, `verify_chain` and the doctor catch it: the chain is
keyed (HMAC-SHA256 with a sub-key of the key file) and anchored by signed checkpoints outside
the database. Entries written before the chain was keyed keep verifying."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from facesearch import doctor
from facesearch.cli import app as cli_app
from facesearch.config import load_settings
from facesearch.deployment import Deployment
from facesearch.security import audit
from facesearch.store.anchor import anchor_file, public_key_of, read_anchor
from facesearch.store.audit import APPEND_ONLY_TRIGGERS
from facesearch.store.db import Database
from tests.pg import APPEND_ONLY_DDL, RawDatabase


def dep_dialect(dep: Deployment) -> str:
    return dep.db.engine.dialect.name


def _fill(dep: Deployment, n: int, orgs: tuple[int, ...] = (1, 2)) -> None:
    for i in range(n):  # one commit per entry, as the service does
        with dep.db.session() as s:
            audit.record(
                s,
                action="search.performed",
                org_id=orgs[i % len(orgs)],
                target_type="search",
                target_id=i + 1,
                details={"case_number": f"C-{i}"},
            )


def _open(dep: Deployment) -> RawDatabase:
    """The database as an intruder who also holds the key file opens it (SQLCipher), or as the
    database's owner role on PostgreSQL."""
    return RawDatabase(dep)


def _con(dep: Deployment) -> RawDatabase:
    con = _open(dep)
    for name in APPEND_ONLY_TRIGGERS[con.dialect]:
        on = " ON audit_log" if con.dialect == "postgresql" else ""
        con.execute(f"DROP TRIGGER IF EXISTS {name}{on}")
    return con


def _rows(con: RawDatabase) -> list[dict[str, Any]]:
    cur: Any = con.execute("SELECT * FROM audit_log ORDER BY id")
    rows = [dict(r._mapping) for r in cur]
    for r in rows:
        if isinstance(r["details"], str):  # SQLite's JSON is text; psycopg parses it
            r["details"] = json.loads(r["details"])
    return rows


def _rewrite(con: RawDatabase, rows: list[dict[str, Any]], key: bytes | None) -> None:
    """Renumber and recompute every hash: plainly (no key: the scheme of old) or with the
    audit key itself (the strongest attacker: one who also read the key file)."""
    con.execute("DELETE FROM audit_log")
    prev = audit.GENESIS
    for number, row in enumerate(rows, start=1):
        row["id"], row["prev_hash"] = number, prev
        if key is None:
            row["scheme"] = audit.LEGACY
        row["entry_hash"] = audit.entry_hash(row, key)
        prev = row["entry_hash"]
        con.execute(
            "INSERT INTO audit_log (id, ts, org_id, actor_user_id, actor_key_id, action, "
            "target_type, target_id, ip, details, prev_hash, entry_hash, scheme) VALUES "
            "(:id, :ts, :org_id, :actor_user_id, :actor_key_id, :action, :target_type, "
            ":target_id, :ip, :details, :prev_hash, :entry_hash, :scheme)",
            {**row, "details": json.dumps(row["details"])},
        )


def _recreate_triggers(con: RawDatabase) -> None:
    for statement in APPEND_ONLY_DDL[con.dialect]:
        con.execute(statement)


def _verify(dep: Deployment) -> audit.ChainReport:
    anchor = audit.read_anchor_of(dep.keys, dep.anchor_dir)
    with dep.db.session() as s:
        return audit.verify_chain(s, anchor=anchor)


def _cli_verify(dep: Deployment) -> dict[str, Any]:
    s = dep.settings
    base = ["--home", str(s.home), "--key-file", str(s.resolved_key_file)]
    result = CliRunner().invoke(cli_app, [*base, "audit", "verify", "--json"])
    out: dict[str, Any] = json.loads(result.output)
    out["exit_code"] = result.exit_code
    return out


def _doctor(dep: Deployment) -> list[doctor.Finding]:
    s = dep.settings
    settings = load_settings(s.home, key_file=s.resolved_key_file)
    return [f for f in doctor.run_checks(settings) if f.id.startswith("audit.")]


def test_an_intact_keyed_chain_is_checkpointed_and_verifies(deployment: Deployment) -> None:
    _fill(deployment, 5)
    report = _verify(deployment)
    assert report.ok and report.entries == 5, report
    assert report.checkpoints == 5 and report.anchored_length == 5
    with deployment.db.session() as s:
        rows = [r for r in audit.iter_entries(s)]
    assert {r["scheme"] for r in rows} == {audit.KEYED}
    # the MAC is keyed: plain SHA-256 of the same content is not the stored hash
    plain = hashlib.sha256(rows[0]["prev_hash"].encode() + audit.canonical(rows[0])).hexdigest()
    assert plain != rows[0]["entry_hash"]
    # the checkpoint file is outside the data directory, beside the key file, 0600
    path = anchor_file(deployment.anchor_dir, deployment.keys.key_id)
    assert path.parent == deployment.settings.resolved_key_file.parent
    assert path.stat().st_mode & 0o077 == 0
    assert _cli_verify(deployment)["exit_code"] == 0
    assert not _doctor(deployment)


def test_deleting_the_last_20_entries_is_a_truncation(deployment: Deployment) -> None:
    _fill(deployment, 30)
    con = _con(deployment)
    con.execute("DELETE FROM audit_log WHERE id > 10")
    _recreate_triggers(con)
    con.commit()
    con.close()
    report = _verify(deployment)
    assert not report.ok and "truncated" in (report.problem or ""), report
    assert report.anchored_length == 30 and report.entries == 10
    out = _cli_verify(deployment)
    assert out["exit_code"] == 1 and "truncated" in out["problem"]
    assert any("truncated" in f.detail for f in _doctor(deployment) if f.severity == "critical")


def test_edit_and_rehash_without_the_key_fails_at_the_edited_entry(
    deployment: Deployment,
) -> None:
    _fill(deployment, 8)
    con = _con(deployment)
    rows = _rows(con)
    rows[3]["details"] = {"case_number": "C-forged"}
    _rewrite(con, rows, key=None)  # plain SHA-256, as `audit verify` accepted before
    _recreate_triggers(con)
    con.commit()
    con.close()
    report = _verify(deployment)
    assert not report.ok and report.first_bad_id == 1, report  # head 1 was checkpointed
    assert _cli_verify(deployment)["exit_code"] == 1
    # with its checkpoints gone too, a whole chain rewritten without the key verifies as an
    # old unkeyed chain: that is what the checkpoint file is for, and the doctor says so
    anchor_file(deployment.anchor_dir, deployment.keys.key_id).unlink()
    hits = [f for f in _doctor(deployment) if f.id == "audit.anchor_missing"]
    assert hits and "no signed checkpoint file" in hits[0].detail


def test_edit_and_plain_rehash_of_the_tail_fails_even_without_checkpoints(
    deployment: Deployment,
) -> None:
    _fill(deployment, 8)
    anchor_file(deployment.anchor_dir, deployment.keys.key_id).unlink()
    con = _con(deployment)
    con.execute('UPDATE audit_log SET details = \'{"case_number":"C-forged"}\' WHERE id = 4')
    _rewrite_tail_plain(con, 3)
    _recreate_triggers(con)
    con.commit()
    con.close()
    with deployment.db.session() as s:
        bare = audit.verify_chain(s)
    assert not bare.ok and bare.first_bad_id == 4 and "unkeyed" in (bare.problem or "")


def _rewrite_tail_plain(con: RawDatabase, keep: int) -> None:
    """Recompute, with plain SHA-256, every entry after the first `keep`."""
    rows = _rows(con)
    prev = rows[keep - 1]["entry_hash"]
    for row in rows[keep:]:
        row["prev_hash"], row["scheme"] = prev, audit.LEGACY
        row["entry_hash"] = prev = audit.entry_hash(row)
        con.execute(
            "UPDATE audit_log SET prev_hash = ?, scheme = ?, entry_hash = ? WHERE id = ?",
            (row["prev_hash"], row["scheme"], row["entry_hash"], row["id"]),
        )


def test_edit_and_rehash_with_the_key_is_caught_by_the_checkpoint(
    deployment: Deployment,
) -> None:
    _fill(deployment, 8)
    con = _con(deployment)
    rows = _rows(con)
    rows[5]["details"] = {"case_number": "C-forged"}
    _rewrite(con, rows, key=deployment.keys.audit_mac_key)
    _recreate_triggers(con)
    con.commit()
    con.close()
    report = _verify(deployment)
    assert not report.ok and report.first_bad_id == 6 and "checkpoint" in (report.problem or "")
    hits = _doctor(deployment)
    assert any("audit entry 6" in f.detail and "rehashed" in f.detail for f in hits), hits


def test_purging_one_organisations_searches_and_renumbering(deployment: Deployment) -> None:
    _fill(deployment, 12, orgs=(1, 2, 3))
    for key in (None, deployment.keys.audit_mac_key):
        con = _con(deployment)
        kept = [r for r in _rows(con) if r["org_id"] != 2]
        _rewrite(con, kept, key=key)
        _recreate_triggers(con)
        con.commit()
        con.close()
        report = _verify(deployment)
        assert not report.ok, (key, report)
        assert _cli_verify(deployment)["exit_code"] == 1


def test_dropped_triggers_are_reported(deployment: Deployment) -> None:
    _fill(deployment, 3)
    con = _con(deployment)  # nothing else changed
    con.commit()
    con.close()
    report = _verify(deployment)
    assert not report.ok and "triggers" in (report.problem or ""), report
    assert APPEND_ONLY_TRIGGERS[dep_dialect(deployment)][-1] in (report.problem or "")
    out = _cli_verify(deployment)
    assert out["exit_code"] == 1 and "append-only" in out["problem"]
    assert any("triggers" in f.detail for f in _doctor(deployment) if f.severity == "critical")


def test_entries_written_before_the_chain_was_keyed_keep_verifying(
    deployment: Deployment,
) -> None:
    # a chain of old (plain SHA-256) entries, as migration 0008 finds it
    con = _open(deployment)
    prev = audit.GENESIS
    for i in range(1, 4):
        row: dict[str, Any] = {
            "id": i,
            "ts": "2026-01-01T00:00:00",
            "org_id": 1,
            "actor_user_id": None,
            "actor_key_id": None,
            "action": "user.created",
            "target_type": "user",
            "target_id": str(i),
            "ip": None,
            "details": {},
            "prev_hash": prev,
        }
        row["entry_hash"] = prev = audit.entry_hash(row)
        con.execute(
            "INSERT INTO audit_log (id, ts, org_id, action, target_type, target_id, details, "
            "prev_hash, entry_hash) VALUES (:id, :ts, :org_id, :action, :target_type, "
            ":target_id, '{}', :prev_hash, :entry_hash)",
            row,
        )
    con.commit()
    con.close()
    _fill(deployment, 3)
    report = _verify(deployment)
    assert report.ok and report.entries == 6, report
    with deployment.db.session() as s:
        schemes = [r["scheme"] for r in audit.iter_entries(s)]
    assert schemes == [audit.LEGACY] * 3 + [audit.KEYED] * 3
    # a full export of the mixed chain verifies without the key
    out = deployment.settings.home.parent / "mixed.jsonl"
    with deployment.db.session() as s:
        audit.export(s, out, keys=deployment.keys)
    assert audit.verify_export(out).ok


def test_a_forged_or_removed_checkpoint_is_reported(deployment: Deployment) -> None:
    _fill(deployment, 4)
    path = anchor_file(deployment.anchor_dir, deployment.keys.key_id)
    lines = path.read_text().splitlines()
    forged = json.loads(lines[-1])
    forged["length"] = 2
    path.write_text("\n".join([*lines[:-1], json.dumps(forged)]) + "\n")
    report = _verify(deployment)
    assert not report.ok and "checkpoint" in (report.problem or "")
    path.write_text("\n".join([lines[0], *lines[2:]]) + "\n")  # a line removed
    assert "removed" in (_verify(deployment).problem or "")
    path.unlink()
    hits = [f for f in _doctor(deployment) if f.id == "audit.anchor_missing"]
    assert hits and "no signed checkpoint file" in hits[0].detail


def test_an_audit_entry_is_never_written_without_the_key(deployment: Deployment) -> None:
    db = Database(deployment.settings.sqlalchemy_url)
    try:
        with pytest.raises(audit.MissingAuditKey), db.session() as s:
            audit.record(s, action="user.created")
    finally:
        db.dispose()


class _Sink(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Sink.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def sink() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Sink.received = []
    yield f"http://127.0.0.1:{server.server_address[1]}/anchor"
    server.shutdown()
    server.server_close()


def test_checkpoints_are_forwarded_to_an_http_sink(
    deployment: Deployment, sink: str, tmp_path: Path
) -> None:
    s = deployment.settings
    anchors = tmp_path / "elsewhere"
    settings = load_settings(
        s.home,
        key_file=s.resolved_key_file,
        audit_forward_url=sink,
        audit_anchor_dir=anchors,
        audit_checkpoint_every=3,
    )
    dep = Deployment.open(settings)
    try:
        _fill(dep, 7)
    finally:
        dep.close()  # shutdown writes the rest
    assert [c["length"] for c in _Sink.received] == [3, 6, 7]
    # what the sink holds verifies with the deployment's public key, like the file
    copy = tmp_path / "sink.jsonl"
    copy.write_text(
        "".join(json.dumps(c, sort_keys=True, separators=(",", ":")) + "\n" for c in _Sink.received)
    )
    public = public_key_of(dep.keys.audit_signing_seed())
    assert read_anchor(copy, public).ok
    reading = read_anchor(anchor_file(anchors, dep.keys.key_id), public)
    assert reading.ok and reading.last_length == 7 and reading.checkpoints == 3


def test_checkpoints_are_forwarded_to_syslog(deployment: Deployment, tmp_path: Path) -> None:
    import socket

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(10)
    port = receiver.getsockname()[1]
    s = deployment.settings
    settings = load_settings(
        s.home,
        key_file=s.resolved_key_file,
        audit_forward_syslog=f"127.0.0.1:{port}",
        audit_anchor_dir=tmp_path / "anchors",
    )
    dep = Deployment.open(settings)
    try:
        _fill(dep, 1)
    finally:
        dep.close()
        message = receiver.recv(65536).decode()
        receiver.close()
    assert "facesearch-audit: " in message
    checkpoint = json.loads(message.split("facesearch-audit: ", 1)[1].rstrip("\x00"))
    assert checkpoint["length"] == 1 and checkpoint["type"] == "checkpoint"
