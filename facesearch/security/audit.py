"""The hash-chained, append-only audit log.

Each entry's hash is SHA-256 over the previous entry's hash and a canonical JSON serialisation of
the entry (sorted keys, no whitespace, UTF-8). The database refuses UPDATE and DELETE on the table
(triggers), and `verify_chain` finds the first entry whose content, order or link is wrong.
Entries are written inside the caller's transaction, so an action and its record commit together.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from facesearch.store.casework import AuditEntry

GENESIS = "0" * 64
_LOCK = threading.Lock()

#: The fields covered by the hash, in the canonical form.
HASHED_FIELDS = (
    "id", "ts", "org_id", "actor_user_id", "actor_key_id", "action", "target_type",
    "target_id", "ip", "details", "prev_hash",
)


def canonical(entry: dict[str, Any]) -> bytes:
    body = {k: entry.get(k) for k in HASHED_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(str(entry["prev_hash"]).encode() + canonical(entry)).hexdigest()


def as_dict(row: AuditEntry) -> dict[str, Any]:
    return {
        "id": row.id, "ts": row.ts, "org_id": row.org_id, "actor_user_id": row.actor_user_id,
        "actor_key_id": row.actor_key_id, "action": row.action, "target_type": row.target_type,
        "target_id": row.target_id, "ip": row.ip, "details": row.details,
        "prev_hash": row.prev_hash, "entry_hash": row.entry_hash,
    }


def _lock_chain(session: Session) -> None:
    """Serialise appends: one writer extends the chain at a time."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(7204853)"))


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
    """Append an entry in the caller's transaction (committed with the action it records)."""
    with _LOCK:
        _lock_chain(session)
        last = session.execute(
            select(AuditEntry.id, AuditEntry.entry_hash).order_by(AuditEntry.id.desc()).limit(1)
        ).first()
        prev_id, prev_hash = (int(last[0]), str(last[1])) if last else (0, GENESIS)
        entry: dict[str, Any] = {
            "id": prev_id + 1,
            "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
            "org_id": org_id,
            "actor_user_id": actor_user_id,
            "actor_key_id": actor_key_id,
            "action": action,
            "target_type": target_type,
            "target_id": None if target_id is None else str(target_id),
            "ip": ip,
            "details": json.loads(json.dumps(details or {}, default=str)),
            "prev_hash": prev_hash,
        }
        entry["entry_hash"] = entry_hash(entry)
        row = AuditEntry(**entry)
        session.add(row)
        session.flush()
        return row


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    first_bad_id: int | None = None
    first_bad_position: int | None = None
    problem: str | None = None


def verify_entries(entries: Iterable[dict[str, Any]]) -> ChainReport:
    """Check a sequence of entries (from the database or an export file), in order."""
    prev_hash = GENESIS
    prev_id = 0
    count = 0
    for position, entry in enumerate(entries, start=1):
        count = position
        entry_id = entry.get("id")
        if entry.get("prev_hash") != prev_hash:
            return ChainReport(False, count, entry_id, position,
                               "does not link to the previous entry (missing, reordered or "
                               "inserted entry)")
        if not isinstance(entry_id, int) or entry_id != prev_id + 1:
            return ChainReport(False, count, entry_id if isinstance(entry_id, int) else None,
                               position, f"sequence number {entry_id} where {prev_id + 1} was "
                               "expected (deleted or reordered entry)")
        if entry_hash(entry) != entry.get("entry_hash"):
            return ChainReport(False, count, entry_id, position,
                               "content does not match its hash (edited entry)")
        prev_hash = str(entry["entry_hash"])
        prev_id = entry_id
    return ChainReport(True, count)


def iter_entries(session: Session, batch: int = 2000) -> Iterator[dict[str, Any]]:
    query = select(AuditEntry).order_by(AuditEntry.id).execution_options(yield_per=batch)
    for row in session.scalars(query):
        yield as_dict(row)


def verify_chain(session: Session) -> ChainReport:
    return verify_entries(iter_entries(session))
