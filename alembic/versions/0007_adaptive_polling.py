"""feeds poll at an interval that follows how often they publish, between per-feed bounds

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23

``interval_seconds`` becomes the current interval; ``min_interval_seconds`` and ``max_interval_seconds``
bound it (equal for a feed with a fixed interval). Existing feeds keep their interval fixed until the next
start syncs them with feeds.yaml.
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("min_interval_seconds", sa.Integer(), nullable=False, server_default="300")
        )
        batch_op.add_column(
            sa.Column("max_interval_seconds", sa.Integer(), nullable=False, server_default="86400")
        )
    op.execute(
        "UPDATE feeds SET min_interval_seconds = interval_seconds, max_interval_seconds = interval_seconds"
    )


def downgrade() -> None:
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.drop_column("max_interval_seconds")
        batch_op.drop_column("min_interval_seconds")
