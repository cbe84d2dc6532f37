"""`facesearch doctor`: a clean deployment passes; each planted misconfiguration is reported
with the right severity; the doctor never crashes, never writes, never prints a secret."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select, text
from typer.testing import CliRunner

from facesearch import doctor
from facesearch.config import Settings, load_settings
from facesearch.crypto import KeyRing
from facesearch.deployment import Deployment, init_deployment
from facesearch.errors import ConfigError
from facesearch.files import private_dirs
from facesearch.security.audit import record
from facesearch.store.accounts import ApiKey, Organisation, Passkey, User
from facesearch.store.db import Database
from facesearch.store.gallery import Collection
from tests import pg
from tests.conftest import init_home

REPO = Path(__file__).resolve().parents[1]
NOW = datetime.now(UTC)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FACESEARCH_"):
            monkeypatch.delenv(name)
    # the tests may run as root (containers): only test_service_running_as_root wants to know
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(doctor, "owner_uid", lambda _path: 1000)


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path]:
    home, key = tmp_path / "home", tmp_path / "keys" / "k.key"
    init_home(home, key)  # on PostgreSQL runs, its own database (named in facesearch.toml)
    return home, key


def settings_of(paths: tuple[Path, Path], **overrides: object) -> Settings:
    home, key = paths
    return load_settings(home, key_file=key, **overrides)


def findings(settings: Settings) -> list[doctor.Finding]:
    return doctor.run_checks(settings)


def only(found: list[doctor.Finding], check_id: str) -> list[doctor.Finding]:
    return [f for f in found if f.id == check_id]


def assert_reported(
    found: list[doctor.Finding], check_id: str, severity: str, *needles: str
) -> doctor.Finding:
    hits = only(found, check_id)
    assert hits, f"{check_id} not reported; got {[(f.id, f.detail) for f in found]}"
    for needle in needles:
        assert any(needle in f.detail for f in hits), (needle, [f.detail for f in hits])
    assert all(f.severity == severity for f in hits)
    assert all(f.fix for f in hits)
    return hits[0]


def database(settings: Settings) -> Database:
    """The deployment's database, opened with its key (SQLCipher, ADR 0010)."""
    return Database(settings.sqlalchemy_url, KeyRing.load(settings.resolved_key_file).database_key)


def plant(settings: Settings, *rows: object) -> None:
    db = database(settings)
    try:
        with db.session() as s:
            for row in rows:
                s.add(row)
                s.flush()
    finally:
        db.dispose()


def user(
    email: str,
    *,
    mfa: bool = True,
    roles: list[str] | None = None,
    disabled: bool = False,
    org_id: int | None = None,
) -> User:
    return User(
        email=email,
        password_hash="$argon2id$x",
        roles=roles or ["investigator"],
        org_id=org_id,
        totp_verified_at=NOW if mfa else None,
        disabled=disabled,
    )


# -- the clean case and the degenerate ones ---------------------------------------------


def test_clean_deployment_reports_no_critical(paths: tuple[Path, Path]) -> None:
    found = findings(settings_of(paths))
    assert not [f for f in found if f.severity == "critical"], found
    assert not only(found, "doctor.check_error")


def test_not_initialised_is_reported_without_crashing(tmp_path: Path) -> None:
    found = findings(load_settings(tmp_path / "nothing", key_file=tmp_path / "k.key"))
    assert_reported(found, "deployment.not_initialised", "critical", "nothing")
    assert not only(found, "doctor.check_error")
    assert not (tmp_path / "nothing").exists()  # the doctor creates nothing


def test_missing_key_is_reported_and_other_checks_still_run(paths: tuple[Path, Path]) -> None:
    key = paths[1]
    s = settings_of(paths)
    plant(s, user("nomfa@example.org", mfa=False))
    key.unlink()
    found = findings(s)
    assert_reported(found, "key.missing", "critical", str(key))
    if pg.ON_PG:  # a database server needs no key file: its checks still run
        assert_reported(found, "accounts.no_second_factor", "critical", "nomfa@example.org")
    else:  # without the key the database (SQLCipher, ADR 0010) cannot be read: said, no crash
        assert_reported(found, "database.unavailable", "critical")
    assert not only(found, "doctor.check_error")


def test_a_failing_check_becomes_a_finding(
    paths: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(_ctx: doctor.Context) -> list[str]:
        raise RuntimeError("exploded at postgresql://u:hunter2hunter2@db/x")

    broken = doctor.Check("test.boom", "Always fails", "critical", "none", boom)
    monkeypatch.setattr(doctor, "CHECKS", [broken, *doctor.CHECKS])
    found = findings(settings_of(paths, debug=True))
    err = assert_reported(found, "doctor.check_error", "warning", "test.boom", "RuntimeError")
    assert "hunter2hunter2" not in err.detail
    assert_reported(found, "service.debug", "critical")  # the rest still ran


@pytest.mark.sqlite_only  # the PostgreSQL counterpart: test_dropped_postgresql_database
def test_missing_database_file(paths: tuple[Path, Path]) -> None:
    s = settings_of(paths)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{s.db_path}{suffix}").unlink(missing_ok=True)
    found = findings(s)
    assert_reported(found, "database.unavailable", "critical")
    assert not s.db_path.exists()  # read-only: never creates an empty database
    assert not only(found, "doctor.check_error")


def test_outdated_schema_is_reported_and_not_migrated(paths: tuple[Path, Path]) -> None:
    s = settings_of(paths)
    db = database(s)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0002'"))
    found = findings(s)
    assert_reported(found, "database.schema_outdated", "warning", "0002")
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0002"
    db.dispose()


# -- the key and the data directory ---------------------------------------------------------------


def test_key_file_inside_data_dir(paths: tuple[Path, Path]) -> None:
    home, key = paths
    inside = home / "k.key"
    inside.write_bytes(key.read_bytes())
    inside.chmod(0o600)
    found = findings(load_settings(home, key_file=inside))
    assert_reported(found, "key.inside_data_dir", "critical", str(inside))


def test_key_file_readable_by_others(paths: tuple[Path, Path]) -> None:
    paths[1].chmod(0o644)
    assert_reported(findings(settings_of(paths)), "key.permissions", "critical", "644")


def _rewrite_key(key: Path, master: bytes) -> None:
    doc = json.loads(key.read_text())
    doc["master_key"] = base64.b64encode(master).decode()
    key.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("master", "needle"),
    [(b"\x01" * 16, "16 bytes"), (bytes(32), "all zero"), (b"ab" * 16, "distinct byte")],
)
def test_short_or_low_entropy_master_key(
    paths: tuple[Path, Path], master: bytes, needle: str
) -> None:
    _rewrite_key(paths[1], master)
    assert_reported(findings(settings_of(paths)), "key.weak", "critical", needle)


def test_key_of_another_deployment(paths: tuple[Path, Path]) -> None:
    _rewrite_key(paths[1], secrets.token_bytes(32))
    found = findings(settings_of(paths))
    assert_reported(found, "key.mismatch", "critical")
    assert not only(found, "key.weak")


@pytest.mark.sqlite_only  # the database file's mode; on PostgreSQL the server keeps its files
def test_data_dir_and_db_readable_by_others(paths: tuple[Path, Path]) -> None:
    home, _ = paths
    s = settings_of(paths)
    home.chmod(0o755)
    s.db_path.chmod(0o644)
    s.blobs_dir.chmod(0o755)
    found = findings(s)
    hit = assert_reported(found, "data_dir.permissions", "critical", "755", "644")
    assert hit.severity == "critical"
    details = " ".join(f.detail for f in only(found, "data_dir.permissions"))
    assert str(s.db_path) in details and str(s.blobs_dir) in details


def test_index_files_and_blob_folders_readable_by_others(paths: tuple[Path, Path]) -> None:
    """Files an older version left at the umask's 0644 inside a 0700 index folder are found:
    copied off by whoever can read them once the folder's mode slips (a backup, a chmod)."""
    s = settings_of(paths)
    shard = s.index_dir / "sface" / "c1"
    private_dirs(shard)
    (shard / "seg-1.fsseg").write_bytes(b"sealed")
    (shard / "seg-1.fsseg").chmod(0o644)
    (shard / "manifest.json").write_bytes(b"{}")
    (shard / "manifest.json").chmod(0o600)
    s.blobs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (s.blobs_dir / "ab").mkdir(mode=0o755)
    (s.blobs_dir / "ab").chmod(0o755)
    (s.blobs_dir / "link").symlink_to("/etc")  # not followed, not judged
    details = " ".join(f.detail for f in only(findings(s), "data_dir.permissions"))
    assert "1 entries below" in details and "seg-1.fsseg (644)" in details
    assert "manifest.json" not in details
    assert f"1 folders below {s.blobs_dir}" in details and "ab (755)" in details
    assert "/etc" not in details
    (shard / "seg-1.fsseg").chmod(0o600)
    (s.blobs_dir / "ab").chmod(0o700)
    assert not only(findings(s), "data_dir.permissions")


# -- secrets --------------------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["postgres", "changeme", "Sh0rt-pw"])
def test_default_or_short_database_password(paths: tuple[Path, Path], password: str) -> None:
    url = f"postgresql://facesearch:{password}@127.0.0.1:1/facesearch"
    found = findings(settings_of(paths, database_url=url))
    assert_reported(found, "secret.database_password", "critical", "'facesearch'")
    assert all(password not in f.detail for f in found)


def test_strong_database_password_passes(paths: tuple[Path, Path]) -> None:
    url = "postgresql://facesearch:Zq8v-Kp2xN4mW7rT9bYc@127.0.0.1:1/facesearch"
    found = findings(settings_of(paths, database_url=url))
    assert not only(found, "secret.database_password")
    assert_reported(found, "database.unavailable", "critical")  # nothing listens there
    assert all("Zq8v-Kp2xN4mW7rT9bYc" not in f.detail for f in found)


def test_weak_secret_in_environment(
    paths: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACESEARCH_WEBHOOK_SECRET", "changeme")
    found = findings(settings_of(paths))
    assert_reported(found, "secret.weak_env", "critical", "FACESEARCH_WEBHOOK_SECRET")
    assert all("changeme" not in f.detail for f in found)


def test_secret_in_settings_file(paths: tuple[Path, Path]) -> None:
    s = settings_of(paths)
    with s.settings_file.open("a") as fh:
        fh.write(
            'smtp_password = "a-long-smtp-password-value"\n'
            'FACESEARCH_API_TOKEN = "tok-0123456789abcdef"\n'
        )
    found = findings(settings_of(paths))
    assert_reported(
        found, "secret.in_settings_file", "critical", "smtp_password", "FACESEARCH_API_TOKEN"
    )
    assert all("a-long-smtp-password-value" not in f.detail for f in found)


# -- the service ----------------------------------------------------------------------------------


def test_debug_mode(paths: tuple[Path, Path]) -> None:
    assert_reported(findings(settings_of(paths, debug=True)), "service.debug", "critical")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "facesearch.example.org"])
def test_public_bind_without_tls(paths: tuple[Path, Path], host: str) -> None:
    found = findings(settings_of(paths, host=host))
    assert_reported(found, "service.public_without_tls", "critical", host)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_bind_passes(paths: tuple[Path, Path], host: str) -> None:
    assert not only(findings(settings_of(paths, host=host)), "service.public_without_tls")


def test_wildcard_cors(paths: tuple[Path, Path]) -> None:
    found = findings(settings_of(paths, cors_origins=["https://app.example.org", "*"]))
    assert_reported(found, "service.cors_wildcard", "critical", "'*'")


def test_wildcard_trusted_proxies_and_http_public_url(paths: tuple[Path, Path]) -> None:
    found = findings(
        settings_of(paths, trusted_proxies=["0.0.0.0/0"], public_url="http://faces.example.org")
    )
    assert_reported(found, "service.trusted_proxies_wildcard", "warning", "0.0.0.0/0")
    assert_reported(found, "service.public_url_http", "warning", "http://faces.example.org")


# -- TLS ------------------------------------------------------------------------------------------


def _self_signed(tmp_path: Path, not_after: datetime, key_mode: int = 0o600) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "faces.example.org")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - timedelta(days=365))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(key_mode)
    return cert_path, key_path


def test_valid_certificate_on_public_address_passes(
    paths: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path, NOW + timedelta(days=200))
    found = findings(settings_of(paths, host="0.0.0.0", tls_cert=cert, tls_key=key))
    assert not [f for f in found if f.id.startswith(("tls.", "service."))], found


def test_expired_certificate(paths: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path, NOW - timedelta(days=3))
    found = findings(settings_of(paths, tls_cert=cert, tls_key=key))
    assert_reported(found, "tls.cert_expired", "critical", "expired")
    assert not only(found, "tls.cert_expiring")


def test_expiring_certificate(paths: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path, NOW + timedelta(days=10, hours=1))
    found = findings(settings_of(paths, tls_cert=cert, tls_key=key))
    assert_reported(found, "tls.cert_expiring", "warning", "in 10 days")
    assert not only(found, "tls.cert_expired")


def test_tls_key_readable_by_others(paths: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path, NOW + timedelta(days=200), key_mode=0o644)
    found = findings(settings_of(paths, tls_cert=cert, tls_key=key))
    assert_reported(found, "tls.key_permissions", "critical", str(key))


def test_tls_half_configured_or_garbage(paths: tuple[Path, Path], tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate")
    found = findings(settings_of(paths, tls_cert=garbage))
    assert_reported(found, "tls.unusable", "critical", "only one", "not a PEM")
    assert not only(found, "doctor.check_error")


# -- accounts and keys ----------------------------------------------------------------------------


def test_account_without_second_factor(paths: tuple[Path, Path]) -> None:
    s = settings_of(paths)
    plant(s, Organisation(name="Org A"))
    plant(
        s,
        user("ok@example.org", org_id=1),
        user("nomfa@example.org", mfa=False, org_id=1),
        user("gone@example.org", mfa=False, disabled=True, org_id=1),
        user("passkey@example.org", mfa=False, org_id=1),
    )
    # a passkey alone is a second factor (accounts.has_second_factor)
    db = database(s)
    try:
        with db.session() as session:
            owner = session.scalar(select(User.id).where(User.email == "passkey@example.org"))
            session.add(
                Passkey(user_id=owner, credential_id=b"c" * 16, public_key=b"k", name="laptop")
            )
    finally:
        db.dispose()
    found = findings(s)
    assert_reported(found, "accounts.no_second_factor", "critical", "nomfa@example.org")
    details = " ".join(f.detail for f in found)
    assert "ok@example.org" not in details and "gone@example.org" not in details
    assert "passkey@example.org" not in details


def test_too_many_platform_admins(paths: tuple[Path, Path]) -> None:
    s = settings_of(paths, max_platform_admins=2)
    plant(
        s,
        *(user(f"admin{i}@example.org", roles=["platform_admin"]) for i in range(3)),
        user("retired@example.org", roles=["platform_admin"], disabled=True),
    )
    found = findings(s)
    assert_reported(found, "accounts.too_many_platform_admins", "warning", "3 platform")
    assert not only(
        findings(settings_of(paths, max_platform_admins=3)), "accounts.too_many_platform_admins"
    )


def _key(prefix: str, **kw: object) -> ApiKey:
    return ApiKey(
        user_id=1,
        name=f"key-{prefix}",
        prefix=prefix,
        secret_hash="0" * 64,
        scopes=["search"],
        **kw,
    )


def test_api_keys_without_expiry_unused_expired(paths: tuple[Path, Path]) -> None:
    s = settings_of(paths)
    plant(s, user("owner@example.org"))
    old, soon = NOW - timedelta(days=120), NOW + timedelta(days=30)
    plant(
        s,
        _key("aaaaaaaaaaaa", expires_at=None, last_used_at=NOW),  # no expiry
        _key("bbbbbbbbbbbb", expires_at=soon, created_at=old),  # never used
        _key("cccccccccccc", expires_at=soon, created_at=old, last_used_at=old),  # stale
        _key("dddddddddddd", expires_at=NOW - timedelta(days=1), last_used_at=NOW),  # expired
        _key("eeeeeeeeeeee", expires_at=soon, last_used_at=NOW),  # fine
        _key("ffffffffffff", expires_at=None, revoked_at=NOW),  # revoked
        _key("000000000000", expires_at=soon),  # new, unused
    )
    found = findings(s)
    assert_reported(found, "apikeys.no_expiry", "critical", "fsk_aaaaaaaaaaaa")
    assert_reported(found, "apikeys.unused", "warning", "fsk_bbbbbbbbbbbb", "fsk_cccccccccccc")
    assert_reported(found, "apikeys.expired_not_revoked", "info", "fsk_dddddddddddd")
    details = " ".join(f.detail for f in found)
    for fine in ("eeeeeeeeeeee", "ffffffffffff", "000000000000"):
        assert fine not in details
    assert len(only(found, "apikeys.unused")) == 2


def test_api_key_of_disabled_user(paths: tuple[Path, Path]) -> None:
    s = settings_of(paths)
    plant(s, user("left@example.org", disabled=True))
    plant(s, _key("abcabcabcabc", expires_at=NOW + timedelta(days=5), last_used_at=NOW))
    assert_reported(findings(s), "apikeys.owner_disabled", "warning", "fsk_abcabcabcabc")


# -- the audit chain ------------------------------------------------------------------------------


def _append_audit(s: Settings, n: int) -> Database:
    db = Deployment.open(s).db  # keyed, and checkpointed beside the key file
    with db.session() as session:
        for i in range(n):
            record(
                session, action="user.created", target_type="user", target_id=i, details={"i": i}
            )
    return db


def test_intact_audit_chain_passes(paths: tuple[Path, Path]) -> None:
    s = settings_of(paths)
    _append_audit(s, 4).dispose()
    assert not only(findings(s), "audit.chain_broken")


def test_edited_audit_entry_is_named(paths: tuple[Path, Path]) -> None:
    s = settings_of(paths)
    db = _append_audit(s, 4)
    with db.engine.begin() as conn:
        pg.drop_append_only_trigger(conn, "update")
        conn.execute(text("UPDATE audit_log SET action = 'user.disabled' WHERE id = 3"))
    db.dispose()
    found = findings(s)
    hit = assert_reported(found, "audit.chain_broken", "critical", "audit entry 3", "edited")
    assert hit.title


def test_forged_audit_entry_is_named(paths: tuple[Path, Path]) -> None:
    s = settings_of(paths)
    db = _append_audit(s, 2)
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_log (id, ts, action, details, prev_hash, entry_hash) "
                "VALUES (3, :ts, 'audit.exported', '{}', :prev, :hash)"
            ),
            {"ts": NOW.isoformat(), "prev": "f" * 64, "hash": "e" * 64},
        )
    db.dispose()
    assert_reported(findings(s), "audit.chain_broken", "critical", "audit entry 3")


# -- collections ----------------------------------------------------------------------------------


def test_collections_without_retention_or_legal_basis(paths: tuple[Path, Path]) -> None:
    s = settings_of(paths)
    plant(
        s,
        Collection(name="good", legal_basis="Art. 9(2)(g) GDPR, statute X", retention_days=365),
        Collection(name="no-basis", legal_basis="   ", retention_days=30),
        Collection(name="forever", legal_basis="consent", retention_days=None),
    )
    found = findings(s)
    assert_reported(found, "collections.no_legal_basis", "critical", "'no-basis'")
    assert_reported(found, "collections.no_retention", "warning", "'forever'")
    assert "'good'" not in " ".join(f.detail for f in found)


# -- backups and logs -----------------------------------------------------------------------------


def test_world_readable_backups(paths: tuple[Path, Path], tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    (backups / "2024").mkdir(parents=True, mode=0o700)
    backups.chmod(0o700)
    (backups / "2024").chmod(0o700)
    safe, leaky = backups / "2024" / "a.tar", backups / "2024" / "b.tar"
    safe.write_bytes(b"x")
    safe.chmod(0o600)
    leaky.write_bytes(b"x")
    leaky.chmod(0o644)
    found = findings(settings_of(paths, backup_dir=backups))
    assert_reported(found, "backups.permissions", "critical", str(leaky))
    assert str(safe) not in " ".join(f.detail for f in found)
    backups.chmod(0o755)
    assert_reported(
        findings(settings_of(paths, backup_dir=backups)),
        "backups.permissions",
        "critical",
        f"{backups} has mode 755",
    )


def test_world_readable_logs(paths: tuple[Path, Path], tmp_path: Path) -> None:
    log = tmp_path / "logs" / "facesearch.log"
    log.parent.mkdir()
    log.write_text("GET /api/v1/health 200\n")
    log.chmod(0o644)
    rotated = log.with_name("facesearch.log.1")
    rotated.write_text("old\n")
    rotated.chmod(0o640)
    in_home = paths[0] / "debug.log"
    in_home.write_text("x\n")
    in_home.chmod(0o644)
    found = findings(settings_of(paths, log_file=log))
    assert_reported(found, "logs.permissions", "critical", str(log), str(rotated), str(in_home))
    assert not only(found, "logs.secrets")


API_KEY = "fsk_0123456789ab_" + "Zx9-Q_" * 7
SECRET_LINES = {
    "apikey": f"INFO auth ok Authorization: Bearer {API_KEY}",
    "password": 'DEBUG sign-in body {"email": "a@b.c", "password": "Tr0ub4dor&3horse"}',
    "password2": "DEBUG form password=CorrectHorseBattery staple",
    "otpauth": "INFO enrol otpauth://totp/facesearch:a@b.c?secret=JBSWY3DPEHPK3PXPJBSWY3DP",
    "pem": "-----BEGIN PRIVATE KEY-----",
    "aws": "WARN boto using AKIAIOSFODNN7EXAMPLE",
    "bearer": "DEBUG upstream Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOjF9.abcdefgh",
}
SECRET_VALUES = [
    API_KEY,
    "Zx9-Q_Zx9-Q_",
    "Tr0ub4dor&3horse",
    "CorrectHorseBattery",
    "JBSWY3DPEHPK3PXPJBSWY3DP",
    "AKIAIOSFODNN7EXAMPLE",
    "eyJhbGciOiJIUzI1NiJ9",
]


def _secret_log(tmp_path: Path) -> Path:
    log = tmp_path / "service.log"
    lines = ["INFO started", 'INFO {"password": "***"}', "INFO password reset requested"]
    lines += list(SECRET_LINES.values())
    log.write_text("\n".join(lines) + "\n")
    log.chmod(0o600)
    return log


def test_secrets_in_logs_reported_by_line_and_masked(
    paths: tuple[Path, Path], tmp_path: Path
) -> None:
    log = _secret_log(tmp_path)
    found = findings(settings_of(paths, log_file=log))
    hits = only(found, "logs.secrets")
    assert all(f.severity == "critical" for f in hits)
    lines = {int(m.group(1)) for f in hits if (m := re.search(r":(\d+): ", f.detail))}
    assert lines == set(range(4, 4 + len(SECRET_LINES))), [f.detail for f in hits]
    details = " ".join(f.detail for f in hits)
    for kind in (
        "facesearch API key fsk_0123456789ab_****",
        "password",
        "otpauth",
        "private key",
        "AWS access key AKIAIOSF****",
        "bearer token",
    ):
        assert kind in details, kind
    for value in SECRET_VALUES:
        assert value not in details
    assert not only(found, "logs.permissions")


def test_cli_never_prints_a_secret_from_logs(paths: tuple[Path, Path], tmp_path: Path) -> None:
    from facesearch.cli import app

    home, key = paths
    log = _secret_log(tmp_path)
    runner = CliRunner()
    for extra in ([], ["--json"]):
        result = runner.invoke(
            app,
            ["--home", str(home), "--key-file", str(key), "doctor", *extra],
            env={"FACESEARCH_LOG_FILE": str(log)},
        )
        assert result.exit_code == 2, result.output
        for value in SECRET_VALUES:
            assert value not in result.output


# -- the command line -----------------------------------------------------------------------------


def _cli(paths: tuple[Path, Path], *args: str, env: dict[str, str] | None = None) -> Result:
    from facesearch.cli import app

    home, key = paths
    return CliRunner().invoke(
        app, ["--home", str(home), "--key-file", str(key), "doctor", *args], env=env
    )


def test_cli_clean_exits_zero(paths: tuple[Path, Path]) -> None:
    result = _cli(paths)
    assert result.exit_code == 0, result.output
    assert "0 critical" in result.output


def test_cli_critical_exits_two_and_json_shape(paths: tuple[Path, Path]) -> None:
    result = _cli(paths, "--json", env={"FACESEARCH_DEBUG": "1"})
    assert result.exit_code == 2, result.output
    data = json.loads(result.output)
    assert isinstance(data, list) and data
    assert all(set(item) == {"id", "severity", "title", "detail", "fix"} for item in data)
    assert any(item["id"] == "service.debug" and item["severity"] == "critical" for item in data)


def test_cli_table_names_check_and_fix(paths: tuple[Path, Path]) -> None:
    result = _cli(paths, env={"FACESEARCH_CORS_ORIGINS": '["*"]', "COLUMNS": "200"})
    assert result.exit_code == 2
    out = result.output
    assert "service.cors_wildcard" in out and "critical" in out and "1 critical" in out


def test_cli_warnings_do_not_fail(paths: tuple[Path, Path]) -> None:
    result = _cli(paths, env={"FACESEARCH_TRUSTED_PROXIES": '["*"]', "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    # on PostgreSQL also database.not_encrypted_at_rest
    assert f"{2 if pg.ON_PG else 1} warning" in result.output
    assert "do not fail" in result.output


def test_cli_not_initialised_exits_two(tmp_path: Path) -> None:
    from facesearch.cli import app

    result = CliRunner().invoke(
        app,
        [
            "--home",
            str(tmp_path / "none"),
            "--key-file",
            str(tmp_path / "k.key"),
            "doctor",
            "--json",
        ],
    )
    assert result.exit_code == 2
    assert json.loads(result.output)[0]["id"] == "deployment.not_initialised"


def test_cli_invalid_settings_is_a_finding(paths: tuple[Path, Path]) -> None:
    result = _cli(paths, "--json", env={"FACESEARCH_PORT": "not-a-port"})
    assert result.exit_code == 2, result.output
    assert json.loads(result.output)[0]["id"] == "settings.invalid"


# -- documentation --------------------------------------------------------------------------------


def test_every_check_is_documented_with_its_severity() -> None:
    doc = (REPO / "docs" / "doctor.md").read_text()
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(
            r"^\|\s*`([a-z0-9_.]+)`\s*\|\s*(critical|warning|info)\s*\|", doc, re.MULTILINE
        )
    }
    registry = {c.id: c.severity for c in [*doctor.CHECKS, *doctor.RUNNER_FINDINGS]}
    missing = sorted(set(registry) - set(rows))
    assert not missing, f"checks missing from docs/doctor.md: {missing}"
    stale = sorted(set(rows) - set(registry))
    assert not stale, f"docs/doctor.md lists unknown checks: {stale}"
    wrong = {cid: (rows[cid], sev) for cid, sev in registry.items() if rows[cid] != sev}
    assert not wrong, f"severity in docs differs from the registry: {wrong}"


def test_registry_is_well_formed() -> None:
    ids = doctor.all_check_ids()
    assert len(ids) == len(set(ids))
    for c in [*doctor.CHECKS, *doctor.RUNNER_FINDINGS]:
        assert c.severity in doctor.SEVERITIES and c.title and c.fix


def test_doctor_reports_a_tampered_model_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facesearch.vision import model_files

    src = model_files.model_dir()
    if model_files.missing(src):
        pytest.skip("the YuNet/SFace model files are not installed here")
    copy = tmp_path / "models"
    shutil.copytree(src, copy)
    target = copy / model_files.YUNET.filename
    data = target.read_bytes()
    target.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # one bit pattern changed
    monkeypatch.setenv("FACESEARCH_MODEL_DIR", str(copy))
    settings = load_settings(tmp_path / "home", key_file=tmp_path / "k.key")
    found = doctor.run_checks(settings)
    assert_reported(found, "models.files", "critical", model_files.YUNET.filename)


# -- issue 11: what the doctor missed, each planted -----------------------------------------------


def _master_b64(key: Path) -> str:
    return str(json.loads(key.read_text())["master_key"])


@pytest.mark.parametrize("form", ["key file", "base64 in a note", "raw bytes"])
def test_a_stray_copy_of_the_key_in_the_data_dir(paths: tuple[Path, Path], form: str) -> None:
    home, key = paths
    stray = home / "old" / "notes.txt"
    stray.parent.mkdir()
    if form == "key file":
        stray.write_bytes(key.read_bytes())
    elif form == "base64 in a note":
        stray.write_text(f"restore with this one: {_master_b64(key)}\n")
    else:
        stray.write_bytes(b"\x00junk" + base64.b64decode(_master_b64(key)) + b"tail")
    assert_reported(findings(settings_of(paths)), "key.copy_in_data_dir", "critical", str(stray))


def test_no_key_copy_is_reported_on_a_clean_deployment(paths: tuple[Path, Path]) -> None:
    found = findings(settings_of(paths))
    assert not only(found, "key.copy_in_data_dir") and not only(found, "backups.master_key")


def test_the_master_key_in_backup_dir(paths: tuple[Path, Path], tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    backups.mkdir(mode=0o700)
    copy = backups / "2026-12-01" / "k.key"
    copy.parent.mkdir(mode=0o700)
    copy.write_bytes(paths[1].read_bytes())
    copy.chmod(0o600)
    found = findings(settings_of(paths, backup_dir=backups))
    assert_reported(found, "backups.master_key", "critical", str(copy))


def test_key_file_inside_a_git_work_tree(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    home, key = tmp_path / "home", repo / "deploy" / "k.key"
    init_deployment(load_settings(home, key_file=key))
    found = findings(load_settings(home, key_file=key))
    assert_reported(found, "key.in_git_worktree", "critical", str(repo))
    assert not only(findings(settings_of((home, key))), "key.copy_in_data_dir")


def test_cors_origins_other_than_the_deployments_own(paths: tuple[Path, Path]) -> None:
    own = "https://faces.example.org"
    ok = settings_of(paths, public_url=own + "/", cors_origins=["https://faces.example.org:443"])
    assert not only(findings(ok), "service.cors_foreign_origin")
    bad = settings_of(paths, public_url=own, cors_origins=[own, "https://evil.example.net"])
    assert_reported(findings(bad), "service.cors_foreign_origin", "warning", "evil.example.net")
    unset = settings_of(paths, cors_origins=["http://localhost:3000"])
    assert_reported(findings(unset), "service.cors_foreign_origin", "warning", "not set")


def test_trusted_proxies_that_split_a_wildcard(paths: tuple[Path, Path]) -> None:
    split = settings_of(paths, trusted_proxies=["0.0.0.0/1", "128.0.0.0/1"])
    hit = assert_reported(findings(split), "service.trusted_proxies_broad", "warning", "100%")
    assert "4,294,967,296" in hit.detail
    assert doctor.proxy_coverage(["10.0.0.0/8", "10.1.0.0/16", "::1"]) == (2**24, 1)
    narrow = settings_of(paths, trusted_proxies=["10.0.0.5", "192.168.1.0/24"])
    assert not only(findings(narrow), "service.trusted_proxies_broad")


def test_secrets_in_a_service_log_other_than_log_file(
    paths: tuple[Path, Path], tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o700)
    (logs / "service.log").write_text("started\n")
    redirected = logs / "serve.out"  # `facesearch serve > serve.out 2>&1`
    redirected.write_text("Authorization: Bearer fsk_abcdefabcdef_" + "x" * 30 + "\n")
    beside_home = tmp_path / "facesearch.log"
    beside_home.write_text('{"password": "hunter2hunter2"}\n')
    found = findings(settings_of(paths, log_file=logs / "service.log"))
    assert_reported(found, "logs.secrets", "critical", str(redirected))
    assert_reported(found, "logs.secrets", "critical", str(beside_home))


@pytest.mark.parametrize(
    ("setting", "value"),
    [("session_idle_minutes", 100_000), ("session_absolute_hours", 100_000)],
)
def test_session_limits_of_100000_are_refused(
    paths: tuple[Path, Path], setting: str, value: int
) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        settings_of(paths, **{setting: value})
    hit = assert_reported(
        findings(settings_of(paths, **{setting: 600})), "service.session_limits", "warning"
    )
    assert setting in hit.detail


def test_max_request_bytes_of_10_gb(paths: tuple[Path, Path]) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        settings_of(paths, max_request_bytes=10_000_000_000)
    found = findings(settings_of(paths, max_request_bytes=1_500_000_000))
    assert_reported(found, "service.request_limits", "warning", "1,500,000,000")


def test_image_limits_disabled(paths: tuple[Path, Path]) -> None:
    off = settings_of(paths, max_image_pixels=10**12, max_image_side=10**7, max_file_bytes=10**11)
    found = findings(off)
    for name in ("max_image_pixels", "max_image_side", "max_file_bytes"):
        assert_reported(found, "ingest.image_limits", "warning", name)
    assert not only(findings(settings_of(paths)), "ingest.image_limits")


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.mark.parametrize("folder", ["imports", "uploads"])
def test_world_writable_staging_and_plaintext_photos(paths: tuple[Path, Path], folder: str) -> None:
    home, _ = paths
    root = home / folder / "org1"
    root.mkdir(parents=True)
    (home / folder).chmod(0o700)
    root.chmod(0o777)
    photo = root / "suspect.png"
    photo.write_bytes(PNG)
    sealed = root / "sealed.bin"
    sealed.write_bytes(b"FSE1" + b"\x00" * 40)
    found = findings(settings_of(paths))
    assert_reported(found, "staging.permissions", "critical", str(root), "world-writable")
    hits = only(found, "staging.plaintext_photos")
    assert [h.detail for h in hits] == [f"{photo} is a plaintext image"]


def test_symlinks_in_drop_folders(paths: tuple[Path, Path]) -> None:
    home, key = paths
    drop = home / "imports" / "org1"
    drop.mkdir(parents=True, mode=0o700)
    (home / "imports").chmod(0o700)
    link = drop / "photo.jpg"
    link.symlink_to(key)
    found = findings(settings_of(paths))
    assert_reported(found, "staging.symlinks", "warning", str(link))
    assert not only(found, "key.copy_in_data_dir")  # a link is not a copy, and is not read


def test_audit_triggers_dropped(paths: tuple[Path, Path]) -> None:
    s = settings_of(paths)
    db = _append_audit(s, 3)
    with db.engine.begin() as conn:
        name = pg.drop_append_only_trigger(conn, "delete")
    db.dispose()
    assert_reported(findings(s), "audit.chain_broken", "critical", name, "append-only")


def test_service_running_as_root(paths: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    assert not only(findings(settings_of(paths)), "host.runs_as_root")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert_reported(findings(settings_of(paths)), "host.runs_as_root", "warning", "runs as root")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(doctor, "owner_uid", lambda _path: 0)
    assert_reported(findings(settings_of(paths)), "host.runs_as_root", "warning", "owned by root")


# -- the vector index on Milvus -------------------------------------------------------------------


def test_milvus_without_tls_or_credentials_is_critical(
    paths: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = settings_of(paths, index_backend="milvus", milvus_uri="http://milvus.internal:19530")
    found = findings(plain)
    assert_reported(found, "milvus.no_tls", "critical", "http://milvus.internal:19530")
    assert_reported(found, "milvus.no_auth", "critical", "milvus.internal")
    monkeypatch.setenv("FACESEARCH_MILVUS_TOKEN", "facesearch:" + secrets.token_urlsafe(24))
    tls = settings_of(paths, index_backend="milvus", milvus_uri="https://milvus.internal:19530")
    found = findings(tls)
    assert not only(found, "milvus.no_tls") and not only(found, "milvus.no_auth")
    assert all(os.environ["FACESEARCH_MILVUS_TOKEN"] not in f.detail for f in found)
    loopback = settings_of(paths, index_backend="milvus", milvus_uri="http://127.0.0.1:19530")
    assert not only(findings(loopback), "milvus.no_tls")


def test_milvus_embeddings_are_reported_as_plaintext(paths: tuple[Path, Path]) -> None:
    assert not only(findings(settings_of(paths)), "milvus.plaintext_embeddings")  # segments
    lite = settings_of(paths, index_backend="milvus")
    finding = assert_reported(
        findings(lite), "milvus.plaintext_embeddings", "warning", "plaintext", "milvus.db"
    )
    assert "Milvus Lite" in finding.detail
    assert not only(findings(lite), "milvus.no_auth")  # Milvus Lite runs in-process
    server = settings_of(paths, index_backend="milvus", milvus_uri="https://milvus.example:443")
    assert_reported(findings(server), "milvus.plaintext_embeddings", "warning", "Milvus server")


def test_a_milvus_token_in_the_settings_file_is_refused(paths: tuple[Path, Path]) -> None:
    s = settings_of(paths)
    with s.settings_file.open("a") as fh:
        fh.write('index_backend = "milvus"\nmilvus_token = "root:a-long-milvus-password"\n')
    with pytest.raises(ConfigError, match="FACESEARCH_MILVUS_TOKEN"):
        settings_of(paths)
    result = _cli(paths, "--json")  # the doctor reports it rather than crashing
    assert result.exit_code == 2, result.output
    assert "milvus_token" in result.output and "a-long-milvus-password" not in result.output


# -- issue 10: PostgreSQL as the metadata store ---------------------------------------------------

STRONG = "Zq8v-Kp2xN4mW7rT9bYc"


def test_embedded_sqlite_has_no_database_server_findings(tmp_path: Path) -> None:
    home, key = tmp_path / "home", tmp_path / "k.key"
    init_deployment(load_settings(home, key_file=key))
    found = findings(load_settings(home, key_file=key))
    for check_id in ("not_encrypted_at_rest", "tls_off", "tls_unverified", "superuser"):
        assert not only(found, f"database.{check_id}")


def test_database_server_metadata_is_not_encrypted_by_facesearch(paths: tuple[Path, Path]) -> None:
    url = f"postgresql+psycopg://facesearch:{STRONG}@127.0.0.1:1/facesearch"
    found = findings(settings_of(paths, database_url=url))
    hit = assert_reported(
        found, "database.not_encrypted_at_rest", "warning", "no SQLCipher", "disk encryption or TDE"
    )
    assert "operator" in hit.detail
    assert all(STRONG not in f.detail for f in found)


@pytest.mark.parametrize(
    ("url", "off", "unverified"),
    [
        ("postgresql+psycopg://fs@db.invalid/fs", True, False),
        ("postgresql+psycopg://fs@db.invalid/fs?sslmode=prefer", True, False),
        ("postgresql+psycopg://fs@db.invalid/fs?sslmode=disable", True, False),
        ("postgresql+psycopg://fs@/fs?host=db.invalid", True, False),
        ("postgresql+psycopg://fs@db.invalid/fs?sslmode=require", False, True),
        ("postgresql+psycopg://fs@db.invalid/fs?sslmode=verify-full", False, False),
        ("postgresql+psycopg://fs@127.0.0.1:1/fs", False, False),
        ("postgresql+psycopg://fs@/fs?host=/run/postgresql", False, False),
    ],
)
def test_database_connection_to_another_host_needs_verified_tls(
    paths: tuple[Path, Path], url: str, off: bool, unverified: bool
) -> None:
    found = findings(settings_of(paths, database_url=url))
    if off:
        assert_reported(found, "database.tls_off", "critical", "db.invalid", "sslmode=")
    else:
        assert not only(found, "database.tls_off")
    if unverified:
        assert_reported(found, "database.tls_unverified", "warning", "sslmode=require")
    else:
        assert not only(found, "database.tls_unverified")


def test_pgsslmode_in_the_environment_counts(
    paths: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGSSLMODE", "verify-full")
    found = findings(settings_of(paths, database_url="postgresql+psycopg://fs@db.invalid/fs"))
    assert not only(found, "database.tls_off") and not only(found, "database.tls_unverified")


def test_database_password_written_in_the_settings_file(paths: tuple[Path, Path]) -> None:
    s = settings_of(paths)
    text_before = s.settings_file.read_text()
    kept = "\n".join(line for line in text_before.splitlines() if "database_url" not in line)
    s.settings_file.write_text(
        kept + f'\ndatabase_url = "postgresql+psycopg://facesearch:{STRONG}@127.0.0.1:1/fs"\n'
    )
    found = findings(settings_of(paths))
    hit = assert_reported(
        found, "secret.in_settings_file", "critical", "database_url", "carries a password"
    )
    assert "FACESEARCH_DATABASE_URL" in hit.fix and "pgpass" in hit.fix
    assert all(STRONG not in f.detail for f in found)


def test_database_url_without_password_in_the_settings_file_passes(
    paths: tuple[Path, Path],
) -> None:
    s = settings_of(paths)
    with s.settings_file.open("a") as fh:
        fh.write('# database_url = "postgresql+psycopg://facesearch@db.example.org/fs"\n')
    assert not only(findings(settings_of(paths)), "secret.in_settings_file")


@pytest.mark.postgresql_only
def test_superuser_database_role_is_reported(paths: tuple[Path, Path]) -> None:
    own = settings_of(paths)
    assert not only(findings(own), "database.superuser")  # the suite's role owns, nothing more
    admin_url = pg.sqlalchemy_url(pg.require_pg(), own.database_url.rsplit("/", 1)[-1])
    found = findings(settings_of(paths, database_url=admin_url))
    assert_reported(found, "database.superuser", "critical", "'postgres'", "superuser")


@pytest.mark.postgresql_only
def test_disabled_postgresql_trigger_is_reported(paths: tuple[Path, Path]) -> None:
    s = settings_of(paths)
    db = _append_audit(s, 3)
    with db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change"))
        conn.execute(text("UPDATE audit_log SET ip = ip WHERE id = 3"))  # no longer refused
    db.dispose()
    assert_reported(
        findings(s), "audit.chain_broken", "critical", "audit_log_no_change", "append-only"
    )


@pytest.mark.postgresql_only
def test_dropped_postgresql_database(paths: tuple[Path, Path]) -> None:
    s = settings_of(paths)
    assert s.database_url is not None
    pg.drop_database(s.database_url)
    found = findings(s)
    assert_reported(found, "database.unavailable", "critical")
    assert not only(found, "doctor.check_error")


def test_the_service_socket_folder_open_to_others_or_a_link(
    paths: tuple[Path, Path], tmp_path: Path
) -> None:
    """The CLI's channel to the service (ADR 0019) lives in `run/`: 0700, never a link."""
    s = settings_of(paths)
    run = s.home / "run"
    run.mkdir(mode=0o755)
    run.chmod(0o755)
    details = " ".join(f.detail for f in only(findings(s), "data_dir.permissions"))
    assert f"{run} has mode 755" in details
    run.rmdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    run.symlink_to(elsewhere)
    details = " ".join(f.detail for f in only(findings(s), "data_dir.permissions"))
    assert f"{run} is a symbolic link" in details
    run.unlink()
    private_dirs(run)
    assert not only(findings(s), "data_dir.permissions")
