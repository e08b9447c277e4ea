"""aliases, per-topic language/feed/site filters, hit explanations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "aliases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    with op.batch_alter_table("topics", schema=None) as batch_op:
        for column in ("languages", "feeds", "sites"):
            batch_op.add_column(sa.Column(column, sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("hits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("explanation", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("hits", schema=None) as batch_op:
        batch_op.drop_column("explanation")
    with op.batch_alter_table("topics", schema=None) as batch_op:
        for column in ("sites", "feeds", "languages"):
            batch_op.drop_column(column)
    op.drop_table("aliases")
