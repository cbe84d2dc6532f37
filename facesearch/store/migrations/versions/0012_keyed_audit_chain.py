"""security round two: the audit chain is keyed (HMAC-SHA256), versioned per entry

Existing entries keep their plain SHA-256 hashes and verify as they are (`scheme` = "sha256");
every entry written from now on carries `scheme` = "hmac-sha256/v1" (docs/decisions/0009).
A plain ADD COLUMN: the table is not rebuilt, so its append-only triggers stay in place.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "audit_log",
        sa.Column("scheme", sa.String(length=20), nullable=False, server_default="sha256"),
    )


def downgrade() -> None:
    raise NotImplementedError("the audit log is append-only; a keyed chain cannot be downgraded")
