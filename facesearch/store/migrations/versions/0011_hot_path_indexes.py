"""indexes for every lookup on a hot path: blob references, model id, resume, job links

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("faces", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_faces_crop_blob"), ["crop_blob"], unique=False)
        batch_op.create_index(
            "ix_faces_model_id_collection_id_id", ["model_id", "collection_id", "id"], unique=False
        )
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_files_image_blob"), ["image_blob"], unique=False)
        batch_op.create_index(batch_op.f("ix_files_job_id"), ["job_id"], unique=False)
        batch_op.create_index(
            "ix_files_collection_id_source", ["collection_id", "source"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_index("ix_files_collection_id_source")
        batch_op.drop_index(batch_op.f("ix_files_job_id"))
        batch_op.drop_index(batch_op.f("ix_files_image_blob"))
    with op.batch_alter_table("faces", schema=None) as batch_op:
        batch_op.drop_index("ix_faces_model_id_collection_id_id")
        batch_op.drop_index(batch_op.f("ix_faces_crop_blob"))
