"""The ORM models and the Alembic migrations describe the same schema.

A fresh database migrated to head is compared with the models' metadata (`compare_metadata`):
a column, index or table added to a model without a migration, or the other way round, fails
here instead of on a user's upgrade."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from facesearch.store.db import MIGRATIONS_DIR, Database, current_revision, metadata, migrate


def test_models_match_the_migrations(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        migrate(db.engine)
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata())
    finally:
        db.dispose()
    assert diff == [], "models and migrations differ (write a migration):\n" + "\n".join(
        map(str, diff)
    )


def test_a_database_at_the_retired_placeholder_revision_upgrades(tmp_path: Path) -> None:
    """Revision 0003 was an empty placeholder and is gone; a database stamped with it still
    upgrades to head."""
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
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
