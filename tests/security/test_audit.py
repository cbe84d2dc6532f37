"""The audit log: append-only in the database, hash-chained, exported signed; tampering with an
export (edit, delete, reorder an entry) is caught AT that entry, and so is a bad signature."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from facesearch.cli import app as cli_app
from facesearch.deployment import Deployment
from facesearch.security import audit
from facesearch.store.accounts import Organisation
from facesearch.store.audit import AuditEntry


def _fill(dep: Deployment, n: int = 8) -> tuple[int, int]:
    with dep.db.session() as s:
        a, b = Organisation(name="Org A"), Organisation(name="Org B")
        s.add_all([a, b])
        s.flush()
        for i in range(n):
            org = a if i % 2 == 0 else b
            audit.record(
                s,
                action="search.performed",
                actor_user_id=i + 1,
                org_id=org.id,
                target_type="search",
                target_id=i + 1,
                ip="127.0.0.1",
                details={
                    "case_number": f"C-{i}",
                    "purpose": "testing the audit log",
                    "results": [{"face_id": i, "score": 0.5}],
                },
            )
        return a.id, b.id


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _write(path: Path, lines: list[str]) -> Path:
    out = path.with_name("tampered-" + path.name)
    out.write_text("\n".join(lines) + "\n")
    return out


@pytest.fixture
def exported(deployment: Deployment, tmp_path: Path) -> Path:
    _fill(deployment)
    path = tmp_path / "audit.jsonl"
    with deployment.db.session() as s:
        result = audit.export(s, path, keys=deployment.keys)
    assert result.entries == 9  # 8 + the export's own record
    return path


def test_database_refuses_update_and_delete(deployment: Deployment) -> None:
    _fill(deployment, 3)
    with pytest.raises(DBAPIError, match="append-only"), deployment.db.session() as s:
        s.execute(update(AuditEntry).where(AuditEntry.id == 2).values(action="nothing"))
    with pytest.raises(DBAPIError, match="append-only"), deployment.db.session() as s:
        s.execute(delete(AuditEntry).where(AuditEntry.id == 2))
    with pytest.raises(DBAPIError, match="append-only"), deployment.db.session() as s:
        s.execute(text("DELETE FROM audit_log"))
    with deployment.db.session() as s:
        assert len(list(s.scalars(select(AuditEntry)))) == 3
        assert audit.verify_chain(s).ok


@pytest.mark.postgresql_only
def test_postgresql_refuses_truncate_too(deployment: Deployment) -> None:
    """PostgreSQL's TRUNCATE fires no row trigger: the statement trigger refuses it as well."""
    _fill(deployment, 3)
    with pytest.raises(DBAPIError, match="append-only"), deployment.db.session() as s:
        s.execute(text("TRUNCATE audit_log"))
    with deployment.db.session() as s:
        assert audit.verify_chain(s).entries == 3


def test_export_verifies_and_is_audited(deployment: Deployment, exported: Path) -> None:
    report = audit.verify_export(exported)
    assert report.ok and report.signature_ok and report.chain_ok, report
    assert report.entries == 9 and report.scope == "full"
    assert report.fingerprint == audit.public_key_fingerprint(audit.public_key_b64(deployment.keys))
    assert audit.verify_export(exported, expected_public_key=report.fingerprint).ok
    last = json.loads(_lines(exported)[-2])
    assert last["action"] == "audit.exported"
    header, trailer = json.loads(_lines(exported)[0]), json.loads(_lines(exported)[-1])
    assert header["public_key"] == trailer["public_key"]
    assert trailer["type"] == "signature" and trailer["algorithm"] == "Ed25519"


def test_edited_entry_fails_at_that_entry(exported: Path) -> None:
    lines = _lines(exported)
    entry = json.loads(lines[4])  # entry id 4 (line 5)
    entry["details"]["purpose"] = "something else entirely"
    lines[4] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    report = audit.verify_export(_write(exported, lines))
    assert not report.ok and report.first_bad_id == 4 and report.first_bad_line == 5
    assert "edited" in (report.problem or "")


def test_deleted_entry_fails_where_it_was(exported: Path) -> None:
    lines = _lines(exported)
    del lines[4]  # entry 4 removed: entry 5 now follows entry 3
    report = audit.verify_export(_write(exported, lines))
    assert not report.ok and report.first_bad_id == 5 and report.first_bad_line == 5
    assert "missing" in (report.problem or "")


def test_reordered_entries_fail_at_the_first_moved(exported: Path) -> None:
    lines = _lines(exported)
    lines[3], lines[4] = lines[4], lines[3]  # entries 3 and 4 swapped
    report = audit.verify_export(_write(exported, lines))
    assert not report.ok and report.first_bad_line == 4 and report.first_bad_id == 4


def test_truncation_and_signature(exported: Path, deployment: Deployment) -> None:
    lines = _lines(exported)
    # the last entry removed (nothing after it to break a link): the signature catches it
    report = audit.verify_export(_write(exported, [*lines[:-2], lines[-1]]))
    assert not report.ok and report.chain_ok and not report.signature_ok
    # no signature line at all
    assert not audit.verify_export(_write(exported, lines[:-1])).ok
    # a forged signature
    trailer = json.loads(lines[-1])
    trailer["signature"] = base64.b64encode(b"\x00" * 64).decode()
    report = audit.verify_export(_write(exported, [*lines[:-1], json.dumps(trailer)]))
    assert not report.ok and "signature" in (report.problem or "")
    # re-signed by someone else's key: verifies alone, fails against the deployment's key
    other = Ed25519PrivateKey.generate()
    pub = base64.b64encode(other.public_key().public_bytes_raw()).decode()
    header = json.loads(lines[0])
    header["public_key"] = pub
    body = [json.dumps(header, sort_keys=True, separators=(",", ":")), *lines[1:-1]]
    import hashlib

    sha = hashlib.sha256("".join(x + "\n" for x in body).encode()).hexdigest()
    trailer = json.loads(lines[-1])
    trailer.update(public_key=pub, sha256=sha)
    trailer["signature"] = base64.b64encode(
        other.sign(audit._signed_message(sha, trailer["entries"], trailer["last_link"]))
    ).decode()
    forged = _write(exported, [*body, json.dumps(trailer)])
    assert audit.verify_export(forged).ok
    real = audit.public_key_fingerprint(audit.public_key_b64(deployment.keys))
    assert not audit.verify_export(forged, expected_public_key=real).ok


def test_organisation_export_catches_tampering(deployment: Deployment, tmp_path: Path) -> None:
    a, _ = _fill(deployment)
    path = tmp_path / "org.jsonl"
    with deployment.db.session() as s:
        audit.export(s, path, a, keys=deployment.keys)
    lines = _lines(path)
    entries = [json.loads(x) for x in lines[1:-1]]
    assert {e["org_id"] for e in entries} == {a}
    assert audit.verify_export(path).ok
    second = entries[2]["id"]
    bad = audit.verify_export(_write(path, [*lines[:2], *lines[3:]]))  # entry at line 3 gone
    assert not bad.ok and bad.first_bad_line == 3 and bad.first_bad_id == second
    swapped = list(lines)
    swapped[2], swapped[3] = swapped[3], swapped[2]
    bad = audit.verify_export(_write(path, swapped))
    assert not bad.ok and bad.first_bad_line == 3
    edited = list(lines)
    e = json.loads(edited[2])
    e["ip"] = "10.9.9.9"
    edited[2] = json.dumps(e)
    bad = audit.verify_export(_write(path, edited))
    assert not bad.ok and bad.first_bad_line == 3 and "edited" in (bad.problem or "")


def test_cli_verify_export_and_verify_export(deployment: Deployment, tmp_path: Path) -> None:
    _fill(deployment, 3)
    settings = deployment.settings
    base = ["--home", str(settings.home), "--key-file", str(settings.resolved_key_file)]
    runner = CliRunner()
    ok = runner.invoke(cli_app, [*base, "audit", "verify"])
    assert ok.exit_code == 0, ok.output
    out = tmp_path / "cli.jsonl"
    exported = runner.invoke(
        cli_app, [*base, "audit", "export", str(out), "--org", "Org A", "--json"]
    )
    assert exported.exit_code == 0, exported.output
    fingerprint = json.loads(exported.output)["fingerprint"]
    checked = runner.invoke(
        cli_app, ["audit", "verify-export", str(out), "--public-key", fingerprint]
    )
    assert checked.exit_code == 0, checked.output
    lines = _lines(out)
    entry = json.loads(lines[1])
    entry["action"] = "nothing.happened"
    lines[1] = json.dumps(entry)
    tampered = _write(out, lines)
    failed = runner.invoke(cli_app, ["audit", "verify-export", str(tampered), "--json"])
    assert failed.exit_code == 1
    assert json.loads(failed.output)["first_bad_id"] == entry["id"]


def test_cli_verify_names_the_first_bad_entry(deployment: Deployment) -> None:
    _fill(deployment, 4)
    settings = deployment.settings
    from tests import pg

    # an attacker with the file and the key (or the database's owner role) drops the trigger
    con = pg.RawDatabase(deployment)
    pg.drop_append_only_trigger(con.conn, "update")
    con.execute("UPDATE audit_log SET ip = '10.0.0.1' WHERE id = 3")
    con.commit()
    con.close()
    base = ["--home", str(settings.home), "--key-file", str(settings.resolved_key_file)]
    result = CliRunner().invoke(cli_app, [*base, "audit", "verify", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["first_bad_id"] == 3
