"""Upload sizes (the per-key stored-bytes quota) and an index for the per-minute upload count.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("size_bytes", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_index("ix_uploads_key_created", "uploads", ["api_key_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_uploads_key_created", table_name="uploads")
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("size_bytes")
