"""ingest workers: one face per (file, model, position), whoever commits it

Two `facesearch worker` processes that run the same job (a retried job whose first worker is
still alive) or the same collection can never both store a face of one file at one position
for one model; files were already unique per collection by content hash.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("faces", schema=None) as batch_op:
        batch_op.create_index(
            "uq_faces_file_id_model_id_face_index",
            ["file_id", "model_id", "face_index"],
            unique=True,
        )


def downgrade() -> None:
    with op.batch_alter_table("faces", schema=None) as batch_op:
        batch_op.drop_index("uq_faces_file_id_model_id_face_index")
