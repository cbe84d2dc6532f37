"""The keyed, hash-chained, append-only audit log (docs/decisions/0009).

Each entry's hash covers the previous entry's hash and a canonical JSON serialisation of the
entry (sorted keys, no whitespace, UTF-8). Its `scheme` says how: `hmac-sha256/v1` (every entry
written now) is HMAC-SHA256 with the deployment's audit sub-key, so nobody without the key file
can recompute the chain after an edit or a deletion; `sha256` (entries written before the chain
was keyed) is plain SHA-256 and verifies as it always did, but never after a keyed entry. The
database refuses UPDATE and DELETE on the table (triggers), signed checkpoints outside the
database (`store.anchor`) fix its length and head, and `verify_chain` finds the first entry whose
content, order or link is wrong, a chain shorter than a checkpoint, or missing triggers.
Entries are written inside the caller's transaction, so an action and its record commit together.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from sqlalchemy import String, and_, cast, func, or_, select, text
from sqlalchemy.orm import Session

from facesearch import clock
from facesearch.crypto import KeyRing
from facesearch.errors import ConfigError
from facesearch.security.actor import Actor
from facesearch.security.tenancy import org_audit_entry, org_of
from facesearch.store.accounts import User
from facesearch.store.anchor import AnchorReading, anchor_file, public_key_of, read_anchor
from facesearch.store.audit import AuditEntry, missing_triggers
from facesearch.store.db import AUDIT_APPENDED, AUDIT_KEY

GENESIS = "0" * 64
#: The scheme of every entry written now, and the one of entries written before the chain was keyed.
KEYED = "hmac-sha256/v1"
LEGACY = "sha256"
SCHEMES = (LEGACY, KEYED)

#: The fields covered by the hash, in the canonical form.
HASHED_FIELDS = (
    "id",
    "ts",
    "org_id",
    "actor_user_id",
    "actor_key_id",
    "action",
    "target_type",
    "target_id",
    "ip",
    "details",
    "prev_hash",
)


def canonical(entry: dict[str, Any]) -> bytes:
    body = {k: entry.get(k) for k in HASHED_FIELDS}
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


class MissingAuditKey(ConfigError):
    """A keyed entry was to be written or checked without the deployment's audit key."""


def entry_hash(entry: dict[str, Any], key: bytes | None = None) -> str:
    """The entry's hash under its own scheme (`key`: the audit MAC key, for keyed entries)."""
    scheme = entry.get("scheme") or LEGACY
    message = str(entry["prev_hash"]).encode() + canonical(entry)
    if scheme == LEGACY:
        return hashlib.sha256(message).hexdigest()
    if scheme == KEYED:
        if key is None:
            raise MissingAuditKey("keyed audit entries need the deployment's audit key")
        return hmac.new(key, KEYED.encode() + b"\n" + message, hashlib.sha256).hexdigest()
    raise ValueError(f"unknown audit hash scheme {scheme!r}")


def as_dict(row: AuditEntry) -> dict[str, Any]:
    return {
        "id": row.id,
        "ts": row.ts,
        "org_id": row.org_id,
        "actor_user_id": row.actor_user_id,
        "actor_key_id": row.actor_key_id,
        "action": row.action,
        "target_type": row.target_type,
        "target_id": row.target_id,
        "ip": row.ip,
        "details": row.details,
        "prev_hash": row.prev_hash,
        "entry_hash": row.entry_hash,
        "scheme": row.scheme,
    }


def _lock_chain(session: Session) -> None:
    """Serialise appends across threads and processes with the database's own lock, held until
    the caller's transaction ends: PostgreSQL an advisory transaction lock; SQLite its single
    write lock, taken by a write that changes nothing, before the chain head is read (so no
    other writer can commit between reading the head and appending to it)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(7204853)"))
    elif dialect == "sqlite":
        session.execute(text("UPDATE alembic_version SET version_num = version_num WHERE 1 = 0"))


def record(
    session: Session,
    *,
    action: str,
    actor_user_id: int | None = None,
    actor_key_id: int | None = None,
    org_id: int | None = None,
    target_type: str | None = None,
    target_id: str | int | None = None,
    ip: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append an entry in the caller's transaction (committed with the action it records).

    The session must carry the audit MAC key (`Database(audit_key=…)`, as every session of a
    `Deployment` does): no entry is ever written unkeyed."""
    key = session.info.get(AUDIT_KEY)
    if not isinstance(key, bytes):
        raise MissingAuditKey("audit entries are written only with the deployment's audit key")
    _lock_chain(session)
    last = session.execute(
        select(AuditEntry.id, AuditEntry.entry_hash).order_by(AuditEntry.id.desc()).limit(1)
    ).first()
    prev_id, prev_hash = (int(last[0]), str(last[1])) if last else (0, GENESIS)
    entry: dict[str, Any] = {
        "id": prev_id + 1,
        "ts": clock.now().isoformat(timespec="microseconds"),
        "org_id": org_id,
        "actor_user_id": actor_user_id,
        "actor_key_id": actor_key_id,
        "action": action,
        "target_type": target_type,
        "target_id": None if target_id is None else str(target_id),
        "ip": ip,
        "details": json.loads(json.dumps(details or {}, default=str)),
        "prev_hash": prev_hash,
        "scheme": KEYED,
    }
    entry["entry_hash"] = entry_hash(entry, key)
    row = AuditEntry(**entry)
    session.add(row)
    session.flush()
    session.info[AUDIT_APPENDED] = (row.id, row.entry_hash)  # for the signed checkpoint
    return row


_ACTORS_ORG = object()


def record_for(
    session: Session,
    actor: Actor,
    action: str,
    *,
    target_type: str | None = None,
    target_id: str | int | None = None,
    details: dict[str, Any] | None = None,
    org_id: int | object | None = _ACTORS_ORG,
) -> AuditEntry:
    """`record` with the actor's fields (user, key, address and, unless given, organisation)."""
    return record(
        session,
        action=action,
        actor_user_id=actor.user_id,
        actor_key_id=actor.api_key_id,
        org_id=actor.org_id if org_id is _ACTORS_ORG else org_id,  # type: ignore[arg-type]
        target_type=target_type,
        target_id=target_id,
        ip=actor.ip,
        details=details,
    )


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    first_bad_id: int | None = None
    first_bad_position: int | None = None
    problem: str | None = None
    #: signed checkpoints that were compared with the chain, and the longest one's length
    checkpoints: int = 0
    anchored_length: int = 0
    #: keyed entries whose MAC could not be checked (no key given: an export's auditor)
    unkeyed_checks: int = 0


def verify_entries(
    entries: Iterable[dict[str, Any]],
    key: bytes | None = None,
    anchor: AnchorReading | None = None,
) -> ChainReport:
    """Check a sequence of entries (from the database or an export file), in order.

    With `key`, every keyed entry's MAC is checked (without it, a keyed entry's content is left
    to the export's signature). With `anchor`, every checkpointed length must hold the
    checkpoint's head and the chain must be at least as long as the longest checkpoint."""
    heads = anchor.heads if anchor is not None else {}
    checkpoints = anchor.checkpoints if anchor is not None else 0
    anchored = anchor.last_length if anchor is not None else 0
    prev_hash = GENESIS
    prev_id = 0
    count = 0
    keyed_seen = False
    unchecked = 0

    def bad(entry_id: int | None, position: int, problem: str) -> ChainReport:
        return ChainReport(
            False, position, entry_id, position, problem, checkpoints, anchored, unchecked
        )

    for position, entry in enumerate(entries, start=1):
        count = position
        entry_id = entry.get("id")
        if entry.get("prev_hash") != prev_hash:
            return bad(
                entry_id,
                position,
                "does not link to the previous entry (missing, reordered or inserted entry)",
            )
        if not isinstance(entry_id, int) or entry_id != prev_id + 1:
            return bad(
                entry_id if isinstance(entry_id, int) else None,
                position,
                f"sequence number {entry_id} where {prev_id + 1} was "
                "expected (deleted or reordered entry)",
            )
        scheme = entry.get("scheme") or LEGACY
        if scheme not in SCHEMES:
            return bad(entry_id, position, f"unknown hash scheme {scheme!r}")
        if scheme == LEGACY and keyed_seen:
            return bad(
                entry_id,
                position,
                "an unkeyed entry after keyed ones (entries rewritten without the key)",
            )
        keyed_seen = keyed_seen or scheme == KEYED
        if scheme == KEYED and key is None:
            unchecked += 1
        elif entry_hash(entry, key) != entry.get("entry_hash"):
            return bad(entry_id, position, "content does not match its hash (edited entry)")
        prev_hash = str(entry["entry_hash"])
        prev_id = entry_id
        expected = heads.get(entry_id)
        if expected is not None and expected != prev_hash:
            return bad(
                entry_id,
                position,
                "differs from the signed checkpoint at this length (the chain was "
                "rewritten and rehashed from here or before)",
            )
    if count < anchored:
        return ChainReport(
            False,
            count,
            count + 1,
            count + 1,
            f"the chain holds {count} entries but a signed checkpoint recorded {anchored} "
            f"(entries {count + 1}-{anchored} were deleted: truncated chain)",
            checkpoints,
            anchored,
            unchecked,
        )
    return ChainReport(True, count, None, None, None, checkpoints, anchored, unchecked)


def iter_entries(session: Session, batch: int = 2000) -> Iterator[dict[str, Any]]:
    query = select(AuditEntry).order_by(AuditEntry.id).execution_options(yield_per=batch)
    for row in session.scalars(query):
        yield as_dict(row)


def verify_chain(
    session: Session,
    key: bytes | None = None,
    anchor: AnchorReading | None = None,
) -> ChainReport:
    """Prove the database's chain with the audit key (default: the session's), against the
    signed checkpoints when given, and check that the append-only triggers are in place."""
    if key is None:
        info_key = session.info.get(AUDIT_KEY)
        key = info_key if isinstance(info_key, bytes) else None
    if anchor is not None and not anchor.ok:
        return ChainReport(
            False,
            0,
            problem=f"the checkpoint file {anchor.path.name} is damaged: {anchor.problem}",
            checkpoints=anchor.checkpoints,
            anchored_length=anchor.last_length,
        )
    report = verify_entries(iter_entries(session), key, anchor)
    if not report.ok:
        return report
    gone = missing_triggers(session)
    if gone:
        return ChainReport(
            False,
            report.entries,
            problem="the append-only triggers are missing ("
            + ", ".join(gone)
            + "): the database no longer refuses edits and deletions",
            checkpoints=report.checkpoints,
            anchored_length=report.anchored_length,
        )
    return report


def read_anchor_of(keys: KeyRing, anchor_dir: Path) -> AnchorReading:
    """The deployment's signed checkpoints (checked with its audit public key)."""
    return read_anchor(
        anchor_file(anchor_dir, keys.key_id), public_key_of(keys.audit_signing_seed())
    )


# -- signed export --------------------------------------------------------------------------------
EXPORT_FORMAT = "facesearch-audit-export/1"
_EXPORT_GENESIS_LABEL = b"facesearch-audit-export/1 link"


def signing_key(keys: KeyRing) -> Ed25519PrivateKey:
    """The deployment's audit-export signing key (derived from the master key, never stored)."""
    return Ed25519PrivateKey.from_private_bytes(keys.audit_signing_seed())


def public_key_b64(keys: KeyRing) -> str:
    raw = (
        signing_key(keys)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    return base64.b64encode(raw).decode()


def public_key_fingerprint(public_key: str) -> str:
    """A short, comparable form of a public key (SHA-256 of its raw bytes, 32 hex chars)."""
    return hashlib.sha256(base64.b64decode(public_key)).hexdigest()[:32]


def _line(obj: dict[str, Any]) -> bytes:
    return (
        json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
        ).encode()
        + b"\n"
    )


def content_sha256(item: dict[str, Any]) -> str:
    """A keyed entry's MAC cannot be checked without the key, so an export also carries a plain
    SHA-256 of its scheme, link and content (covered by the export link and the signature)."""
    return hashlib.sha256(
        str(item.get("scheme")).encode()
        + b"\n"
        + str(item.get("prev_hash")).encode()
        + canonical(item)
    ).hexdigest()


def _link(prev: str, item: dict[str, Any]) -> str:
    data = prev.encode() + str(item.get("entry_hash")).encode()
    if (item.get("scheme") or LEGACY) != LEGACY:
        data += content_sha256(item).encode()
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ExportResult:
    path: Path
    entries: int
    public_key: str
    fingerprint: str
    audit_entry_id: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "entries": self.entries,
            "public_key": self.public_key,
            "fingerprint": self.fingerprint,
            "audit_entry_id": self.audit_entry_id,
        }


def export(
    session: Session,
    out_path: Path,
    org_id: int | None = None,
    *,
    keys: KeyRing,
    actor_user_id: int | None = None,
    actor_key_id: int | None = None,
    ip: str | None = None,
) -> ExportResult:
    """Write the audit log (or one organisation's entries) as signed JSON Lines.

    Line 1 is a header, then one line per entry in chain order (each entry with its own
    `prev_hash`/`entry_hash` and an `export_link`: SHA-256 over the previous line's link and the
    entry's hash, so a deletion or reordering inside an organisation's subset is caught at the
    entry where it happened), then a signature line: Ed25519 over every byte before it, with the
    public key. The export itself is audited (`audit.exported`, committed first, and included)."""
    entry = record(
        session,
        action="audit.exported",
        actor_user_id=actor_user_id,
        actor_key_id=actor_key_id,
        org_id=org_id,
        ip=ip,
        target_type="organisation" if org_id is not None else "deployment",
        target_id=org_id,
        details={"scope": "organisation" if org_id is not None else "full", "file": out_path.name},
    )
    session.commit()
    pub = public_key_b64(keys)
    header = {
        "type": "header",
        "format": EXPORT_FORMAT,
        "created_at": clock.now().isoformat(timespec="seconds"),
        "scope": "organisation" if org_id is not None else "full",
        "org_id": org_id,
        "key_id": keys.key_id,
        "public_key": pub,
        "fingerprint": public_key_fingerprint(pub),
        "hash": "per entry scheme: hmac-sha256/v1 = HMAC-SHA256(audit key, scheme || newline || "
        "prev_hash || canonical json of the fields "
        + ",".join(HASHED_FIELDS)
        + "), sha256 = SHA-256(prev_hash || the same json)",
        "signature": "ed25519 over every byte before the signature line",
    }
    digest = hashlib.sha256()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    count = 0
    with tmp.open("wb") as fh:
        data = _line(header)
        digest.update(data)
        fh.write(data)
        link = hashlib.sha256(_EXPORT_GENESIS_LABEL).hexdigest()
        query = select(AuditEntry).order_by(AuditEntry.id).execution_options(yield_per=2000)
        if org_id is not None:
            query = query.where(AuditEntry.org_id == org_id)
        for row in session.scalars(query):
            item = as_dict(row)
            if row.scheme != LEGACY:
                item["content_sha256"] = content_sha256(item)
            link = _link(link, item)
            item["type"] = "entry"
            item["export_link"] = link
            data = _line(item)
            digest.update(data)
            fh.write(data)
            count += 1
        body_sha = digest.hexdigest()
        trailer = {
            "type": "signature",
            "algorithm": "Ed25519",
            "public_key": pub,
            "entries": count,
            "last_link": link,
            "sha256": body_sha,
        }
        # The signed message: the SHA-256 of the body plus the trailer's own claims.
        trailer["signature"] = base64.b64encode(
            signing_key(keys).sign(_signed_message(body_sha, count, link))
        ).decode()
        fh.write(_line(trailer))
    os.replace(tmp, out_path)
    return ExportResult(out_path, count, pub, public_key_fingerprint(pub), entry.id)


def _signed_message(body_sha: str, count: int, last_link: str) -> bytes:
    return f"{EXPORT_FORMAT}\n{body_sha}\n{count}\n{last_link}".encode()


@dataclass(frozen=True)
class ExportReport:
    ok: bool
    entries: int
    signature_ok: bool
    chain_ok: bool
    scope: str | None = None
    public_key: str | None = None
    fingerprint: str | None = None
    first_bad_id: int | None = None
    first_bad_line: int | None = None
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_export(path: Path, expected_public_key: str | None = None) -> ExportReport:
    """Check an export: every entry's hash, the chain (full exports: the database chain itself;
    organisation exports: ids ascending and the export links), and the Ed25519 signature over
    the file. Names the first bad entry (by id and line number)."""
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if len(lines) < 2:
        return ExportReport(False, 0, False, False, problem="not an audit export (too short)")
    try:
        header = json.loads(lines[0])
        trailer = json.loads(lines[-1])
    except ValueError:
        return ExportReport(False, 0, False, False, problem="header or signature line is not JSON")
    if header.get("type") != "header" or header.get("format") != EXPORT_FORMAT:
        return ExportReport(False, 0, False, False, problem=f"not a {EXPORT_FORMAT} file")
    scope = str(header.get("scope"))
    pub = str(header.get("public_key", ""))
    fingerprint: str | None = None
    with contextlib.suppress(ValueError):
        fingerprint = public_key_fingerprint(pub)

    def fail(
        entries: int,
        problem: str,
        bad_id: int | None = None,
        line_no: int | None = None,
        signature_ok: bool = False,
        chain_ok: bool = False,
    ) -> ExportReport:
        return ExportReport(
            False,
            entries,
            signature_ok,
            chain_ok,
            scope,
            pub,
            fingerprint,
            bad_id,
            line_no,
            problem,
        )

    # 1. The entries, in file order: content, order and links.
    entries: list[dict[str, Any]] = []
    for number, data in enumerate(lines[1:-1], start=2):
        try:
            item = json.loads(data)
        except ValueError:
            return fail(len(entries), f"line {number} is not JSON", None, number)
        if not isinstance(item, dict) or item.get("type") != "entry":
            return fail(len(entries), f"line {number} is not an entry", None, number)
        entries.append(item)
    link = hashlib.sha256(_EXPORT_GENESIS_LABEL).hexdigest()
    prev_id = 0
    full = scope == "full"
    if full:
        report = verify_entries(entries)
        if not report.ok:
            position = report.first_bad_position or 1
            return fail(
                len(entries),
                f"entry {report.first_bad_id}: {report.problem}",
                report.first_bad_id,
                position + 1,
            )
    for number, item in enumerate(entries, start=2):
        entry_id = item.get("id")
        legacy = (item.get("scheme") or LEGACY) == LEGACY
        if (legacy and entry_hash(item) != item.get("entry_hash")) or (
            not legacy and content_sha256(item) != item.get("content_sha256")
        ):
            return fail(
                len(entries),
                f"entry {entry_id}: content does not match its hash (edited entry)",
                entry_id,
                number,
            )
        if not isinstance(entry_id, int) or entry_id <= prev_id:
            return fail(
                len(entries),
                f"entry {entry_id}: out of order (reordered entry)",
                entry_id if isinstance(entry_id, int) else None,
                number,
            )
        link = _link(link, item)
        if item.get("export_link") != link:
            return fail(
                len(entries),
                f"entry {entry_id}: does not link to the entry before it "
                "in this file (missing, inserted or reordered entry)",
                entry_id,
                number,
            )
        prev_id = entry_id
    # 2. The signature over the body.
    body = b"".join(line + b"\n" for line in lines[:-1])
    body_sha = hashlib.sha256(body).hexdigest()
    if trailer.get("type") != "signature":
        return fail(len(entries), "the signature line is missing (truncated file)", chain_ok=True)
    if trailer.get("entries") != len(entries) or trailer.get("last_link") != link:
        return fail(
            len(entries),
            f"the file holds {len(entries)} entries but was signed with "
            f"{trailer.get('entries')} (entries removed at the end or added)",
            chain_ok=True,
        )
    if trailer.get("sha256") != body_sha:
        return fail(len(entries), "the file's bytes differ from the signed ones", chain_ok=True)
    if trailer.get("public_key") != pub:
        return fail(len(entries), "header and signature name different public keys", chain_ok=True)
    if expected_public_key is not None and expected_public_key not in (pub, fingerprint):
        return fail(
            len(entries), "signed with a different key than the one expected", chain_ok=True
        )
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(pub))
        key.verify(
            base64.b64decode(str(trailer.get("signature", ""))),
            _signed_message(body_sha, len(entries), link),
        )
    except (ValueError, InvalidSignature):
        return fail(len(entries), "the Ed25519 signature does not verify", chain_ok=True)
    return ExportReport(True, len(entries), True, True, scope, pub, fingerprint)


# -- an organisation's auditors -------------------------------------------------------------------
def _ts(value: datetime) -> str:
    """A time as the entries store it (UTC ISO 8601 with microseconds), for comparisons."""
    return clock.aware(value).astimezone(UTC).isoformat(timespec="microseconds")


def org_entries(
    session: Session,
    actor: Actor,
    *,
    after_id: int = 0,
    limit: int = 100,
    action: str | None = None,
    user_id: int | None = None,
    case: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    newest_first: bool = False,
) -> dict[str, Any]:
    """The organisation's entries after `after_id` (and before `before_id`), oldest first (or
    newest first), and how many match. Filters: the action, the acting user, a case (its id or
    number: the case's own entries and those that name it), a time range."""
    org_id = org_of(actor)
    conditions: list[Any] = [AuditEntry.org_id == org_id]
    if action:
        conditions.append(AuditEntry.action == action)
    if user_id is not None:
        conditions.append(AuditEntry.actor_user_id == user_id)
    if case:
        conditions.append(
            or_(
                and_(AuditEntry.target_type == "case", AuditEntry.target_id == case),
                cast(AuditEntry.details["case_id"].as_string(), String) == case,
                cast(AuditEntry.details["case_number"].as_string(), String) == case,
            )
        )
    if since is not None:
        conditions.append(AuditEntry.ts >= _ts(since))
    if until is not None:
        conditions.append(AuditEntry.ts < _ts(until))
    count = select(func.count(AuditEntry.id)).where(*conditions)
    page = [*conditions, AuditEntry.id > after_id]
    if before_id is not None:
        page.append(AuditEntry.id < before_id)
    order = AuditEntry.id.desc() if newest_first else AuditEntry.id
    rows = session.scalars(select(AuditEntry).where(*page).order_by(order).limit(limit))
    return {"total": int(session.scalar(count) or 0), "items": [as_dict(r) for r in rows]}


def org_chain_status(
    session: Session, actor: Actor, keys: KeyRing, anchor_dir: Path
) -> dict[str, Any]:
    """For an organisation's auditor: is the deployment's audit chain intact (every entry's MAC
    and link, the signed checkpoints, the append-only triggers)? The check is audited. Where the
    chain breaks is named only when the entry is the organisation's own."""
    org_id = org_of(actor)
    report = verify_chain(session, anchor=read_anchor_of(keys, anchor_dir))
    bad_id = report.first_bad_id
    own = False
    if bad_id is not None:
        row = session.get(AuditEntry, bad_id)
        own = row is not None and row.org_id == org_id
    checked_at = clock.now()
    record_for(
        session,
        actor,
        "audit.chain_verified",
        details={"ok": report.ok, "entries": report.entries},
    )
    session.commit()
    return {
        "ok": report.ok,
        "entries": report.entries,
        "checkpoints": report.checkpoints,
        "anchored_length": report.anchored_length,
        "problem": report.problem
        if own or report.first_bad_id is None
        else (
            "an entry of the deployment's chain does not verify; the operator runs "
            "`facesearch audit verify` for the details"
        ),
        "first_bad_id": bad_id if own else None,
        "checked_at": checked_at,
    }


def _week(ts: datetime) -> date:
    day = ts.date()
    return day - timedelta(days=day.weekday())


def org_activity(
    session: Session, actor: Actor, *, weeks: int = 12, months: int = 12
) -> dict[str, Any]:
    """For an organisation's auditor, from its audit entries: searches per user per week (the
    last `weeks`, Monday first) and review confirmations and rejections per month (the last
    `months`), with the organisation's people to name the users. The read is audited."""
    org_id = org_of(actor)
    now = clock.now().astimezone(UTC)
    first_week = _week(now) - timedelta(weeks=weeks - 1)
    week_starts = [first_week + timedelta(weeks=i) for i in range(weeks)]
    month_starts: list[date] = []
    y, m = now.year, now.month
    for _ in range(months):
        month_starts.insert(0, date(y, m, 1))
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)
    start = min(
        datetime(first_week.year, first_week.month, first_week.day, tzinfo=UTC),
        datetime(month_starts[0].year, month_starts[0].month, 1, tzinfo=UTC),
    )
    rows = session.execute(
        select(AuditEntry.ts, AuditEntry.actor_user_id, AuditEntry.action, AuditEntry.details)
        .where(
            AuditEntry.org_id == org_id,
            AuditEntry.action.in_(("search.performed", "review.decided")),
            AuditEntry.ts >= _ts(start),
        )
        .order_by(AuditEntry.id)
    ).all()
    searches: dict[int, list[int]] = {}
    confirmed = [0] * months
    rejected = [0] * months
    week_index = {w: i for i, w in enumerate(week_starts)}
    month_index = {(d.year, d.month): i for i, d in enumerate(month_starts)}
    for ts_text, user_id, action, details in rows:
        ts = datetime.fromisoformat(ts_text).astimezone(UTC)
        if action == "search.performed" and user_id is not None:
            i = week_index.get(_week(ts))
            if i is not None:
                searches.setdefault(user_id, [0] * weeks)[i] += 1
        elif action == "review.decided":
            j = month_index.get((ts.year, ts.month))
            decision = (details or {}).get("decision")
            if j is not None and decision == "confirm":
                confirmed[j] += 1
            elif j is not None and decision == "reject":
                rejected[j] += 1
    people = session.execute(
        select(User.id, User.email, User.display_name)
        .where(User.org_id == org_id)
        .order_by(User.email)
    ).all()
    record_for(session, actor, "audit.activity_viewed", details={"weeks": weeks, "months": months})
    session.commit()
    return {
        "weeks": week_starts,
        "searches": [
            {"user_id": uid, "counts": counts} for uid, counts in sorted(searches.items())
        ],
        "months": month_starts,
        "confirmations": confirmed,
        "rejections": rejected,
        "people": [{"user_id": i, "email": e, "display_name": n or ""} for i, e, n in people],
    }


def org_entry(session: Session, actor: Actor, entry_id: int) -> dict[str, Any]:
    return as_dict(org_audit_entry(session, org_of(actor), entry_id))


def org_export(session: Session, actor: Actor, keys: KeyRing, scratch: Path) -> tuple[str, bytes]:
    """A signed export of the organisation's entries (file name, bytes); the export is audited.
    `scratch` is a private directory for the temporary file."""
    org_id = org_of(actor)
    name = f"audit-org{org_id}.jsonl"
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        out = Path(tmp) / name
        export(
            session,
            out,
            org_id,
            keys=keys,
            actor_user_id=actor.user_id,
            actor_key_id=actor.api_key_id,
            ip=actor.ip,
        )
        return name, out.read_bytes()
