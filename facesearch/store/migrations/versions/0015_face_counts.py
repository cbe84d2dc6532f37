"""face counts per collection and model, kept by triggers

The vector index reconciles with the database on every open by comparing, per collection, its
count and highest face id with the database's. Counting was a scan of the collection's range of
the (model, collection, id) index: 0.24 s of every CLI search at 1M faces, 2.4 s at 10M. The
count now lives in `face_counts`, one row per (collection, model), changed by row triggers on
`faces` in the same transaction as the faces themselves, so it is exact whatever writes them
(ingest, re-embed, deletion, a collection's cascade).

A later migration that rebuilds `faces` on SQLite (batch "move and copy") drops its triggers:
it must create them again (`create_triggers`); tests/store/test_face_counts.py fails otherwise.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_ADD_SQLITE = """INSERT INTO face_counts (collection_id, model_id, faces)
         VALUES (NEW.collection_id, NEW.model_id, 1)
         ON CONFLICT (collection_id, model_id) DO UPDATE SET faces = faces + 1;"""
_REMOVE_SQLITE = """UPDATE face_counts SET faces = faces - 1
         WHERE collection_id = OLD.collection_id AND model_id = OLD.model_id;"""

SQLITE = [
    f"CREATE TRIGGER face_counts_insert AFTER INSERT ON faces BEGIN {_ADD_SQLITE} END",
    f"CREATE TRIGGER face_counts_delete AFTER DELETE ON faces BEGIN {_REMOVE_SQLITE} END",
    "CREATE TRIGGER face_counts_update AFTER UPDATE OF collection_id, model_id ON faces "
    f"BEGIN {_REMOVE_SQLITE} {_ADD_SQLITE} END",
]
POSTGRES = [
    """CREATE OR REPLACE FUNCTION face_counts_keep() RETURNS trigger AS $$
       BEGIN
         IF TG_OP IN ('DELETE', 'UPDATE') THEN
           UPDATE face_counts SET faces = faces - 1
             WHERE collection_id = OLD.collection_id AND model_id = OLD.model_id;
         END IF;
         IF TG_OP IN ('INSERT', 'UPDATE') THEN
           INSERT INTO face_counts (collection_id, model_id, faces)
             VALUES (NEW.collection_id, NEW.model_id, 1)
             ON CONFLICT (collection_id, model_id)
             DO UPDATE SET faces = face_counts.faces + 1;
         END IF;
         RETURN NULL;
       END; $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER face_counts_keep
       AFTER INSERT OR DELETE OR UPDATE OF collection_id, model_id ON faces
       FOR EACH ROW EXECUTE FUNCTION face_counts_keep()""",
]


def create_triggers() -> None:
    for statement in POSTGRES if op.get_bind().dialect.name == "postgresql" else SQLITE:
        op.execute(statement)


def upgrade() -> None:
    op.create_table(
        "face_counts",
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.String(length=100), nullable=False),
        sa.Column("faces", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["collection_id"], ["collections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("collection_id", "model_id"),
    )
    op.execute(
        "INSERT INTO face_counts (collection_id, model_id, faces) "
        "SELECT collection_id, model_id, COUNT(*) FROM faces GROUP BY collection_id, model_id"
    )
    create_triggers()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS face_counts_keep ON faces")
        op.execute("DROP FUNCTION IF EXISTS face_counts_keep()")
    else:
        for name in ("face_counts_insert", "face_counts_delete", "face_counts_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("face_counts")
