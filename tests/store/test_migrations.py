"""The ORM models and the Alembic migrations describe the same schema.

A fresh database migrated to head is compared with the models' metadata (`compare_metadata`):
a column, index or table added to a model without a migration, or the other way round, fails
here instead of on a user's upgrade."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from facesearch.store.db import MIGRATIONS_DIR, Database, current_revision, metadata, migrate


def test_models_match_the_migrations(empty_db_url: str) -> None:
    db = Database(empty_db_url)
    try:
        migrate(db.engine)
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata())
    finally:
        db.dispose()
    assert diff == [], "models and migrations differ (write a migration):\n" + "\n".join(
        map(str, diff)
    )


def test_a_database_at_the_retired_placeholder_revision_upgrades(empty_db_url: str) -> None:
    """Revision 0003 was an empty placeholder and is gone; a database stamped with it still
    upgrades to head."""
    db = Database(empty_db_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0002")
            conn.execute(text("UPDATE alembic_version SET version_num = '0003'"))
        migrate(db.engine)
        with db.engine.connect() as conn:
            head = ScriptDirectory.from_config(cfg).get_current_head()
            assert current_revision(db.engine) == head
            assert not compare_metadata(MigrationContext.configure(conn), metadata())
    finally:
        db.dispose()


def test_upgrading_keeps_old_audit_entries_verifying_and_hashes_csrf_tokens(
    empty_db_url: str,
) -> None:
    """Migrations 0008 and 0009 (issue 11): entries written before the chain was keyed verify
    as `sha256` entries, and a live session's CSRF token is replaced by its SHA-256."""
    import hashlib

    from facesearch.security import audit
    from facesearch.store.accounts import UserSession

    db = Database(empty_db_url, audit_key=b"k" * 32)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    entry = {
        "id": 1,
        "ts": "2026-01-01T00:00:00",
        "org_id": None,
        "actor_user_id": None,
        "actor_key_id": None,
        "action": "user.created",
        "target_type": None,
        "target_id": None,
        "ip": None,
        "details": {},
        "prev_hash": audit.GENESIS,
    }
    entry["entry_hash"] = audit.entry_hash(entry)
    try:
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0007")
            conn.execute(
                text(
                    "INSERT INTO audit_log (id, ts, action, details, prev_hash, entry_hash) "
                    "VALUES (1, :ts, :action, '{}', :prev_hash, :entry_hash)"
                ),
                entry,
            )
            conn.execute(
                text(
                    "INSERT INTO users (id, email, display_name, password_hash, roles, "
                    "failed_logins, mfa_failures, disabled, created_at) VALUES "
                    "(1, 'a@b.c', '', 'x', '[]', 0, 0, FALSE, '2026-01-01')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO sessions (id, token_hash, user_id, mfa_verified, csrf_token, "
                    "created_at, last_seen_at, expires_at) VALUES (1, 'h', 1, TRUE, 'plain-token', "
                    "'2026-01-01', '2026-01-01', '2026-01-02')"
                )
            )
        migrate(db.engine)
        with db.session() as s:
            assert audit.verify_chain(s).ok
            audit.record(s, action="user.disabled")
        with db.session() as s:
            assert audit.verify_chain(s).ok
            assert [e["scheme"] for e in audit.iter_entries(s)] == [audit.LEGACY, audit.KEYED]
            row = s.get(UserSession, 1)
            assert row is not None
            assert row.csrf_token == hashlib.sha256(b"plain-token").hexdigest()
    finally:
        db.dispose()
