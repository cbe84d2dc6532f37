"""security round two: sessions keep only the SHA-256 of their CSRF token

The column keeps its name and size (64 hex characters); the tokens of live sessions are replaced
by their hashes, so the clients that hold them keep working.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, csrf_token FROM sessions")).all()
    for session_id, token in rows:
        digest = hashlib.sha256(str(token).encode()).hexdigest()
        conn.execute(
            sa.text("UPDATE sessions SET csrf_token = :digest WHERE id = :id"),
            {"digest": digest, "id": session_id},
        )


def downgrade() -> None:
    raise NotImplementedError("a hashed CSRF token cannot be recovered; sign in again instead")
