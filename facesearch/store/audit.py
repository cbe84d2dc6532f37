"""The audit table: append-only (database triggers) and hash-chained (`security.audit`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Integer, String, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from facesearch.store.base import Base


class AuditEntry(Base):
    """Append-only, hash-chained: `entry_hash` is, by the entry's `scheme`, HMAC-SHA256 with the
    deployment's audit key (`hmac-sha256/v1`, every entry since migration 0008) or plain
    SHA-256 (`sha256`, entries written before it) over prev_hash and the canonical JSON of the
    entry. The database refuses UPDATE and DELETE on this table (triggers in migration 0002)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[str] = mapped_column(String(40))
    org_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    actor_user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    actor_key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    action: Mapped[str] = mapped_column(String(80), index=True)
    target_type: Mapped[str | None] = mapped_column(String(40), nullable=True)
    target_id: Mapped[str | None] = mapped_column(String(80), nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scheme: Mapped[str] = mapped_column(String(20), default="sha256", server_default="sha256")


#: The triggers that make the table append-only (migration 0002), by dialect.
APPEND_ONLY_TRIGGERS = {
    "sqlite": ("audit_log_no_update", "audit_log_no_delete"),
    "postgresql": ("audit_log_no_change",),
}


def missing_triggers(session: Session) -> list[str]:
    """The append-only triggers that are gone (or disabled) from the database."""
    dialect = session.get_bind().dialect.name
    expected = APPEND_ONLY_TRIGGERS.get(dialect, ())
    if dialect == "sqlite":
        rows = session.execute(
            text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'")
        )
    elif dialect == "postgresql":
        rows = session.execute(
            text(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_log'::regclass "
                "AND NOT tgisinternal AND tgenabled <> 'D'"
            )
        )
    else:
        return []
    present = {str(r[0]) for r in rows}
    return [name for name in expected if name not in present]
