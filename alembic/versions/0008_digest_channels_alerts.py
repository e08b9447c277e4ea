"""digests reach several channels through an outbox of deliveries; alerts as they happen; stored content

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

Each digest's email state (message, attempts, error, next attempt) moves to a ``deliveries`` row of channel
``email``; a digest gets a kind ("digest" or "alert"), the topic of an alert, and its content as JSON (for
the Atom feed, the JSON export and webhooks). Going down keeps each digest's email state and deletes the
alerts (the older schema cannot tell them from daily digests): their stories come again in a digest.
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("digest_id", sa.Integer(), sa.ForeignKey("digests.id"), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("digest_id", "channel", name="uq_deliveries_digest_channel"),
    )
    op.create_index("ix_deliveries_digest_id", "deliveries", ["digest_id"])
    op.create_index("ix_deliveries_status", "deliveries", ["status"])
    op.execute(
        "INSERT INTO deliveries (digest_id, channel, status, payload, attempts, error, next_attempt_at, "
        "created_at, sent_at) "
        "SELECT id, 'email', CASE WHEN status = 'sent' THEN 'sent' ELSE 'pending' END, message, attempts, "
        "error, CASE WHEN status = 'sent' THEN NULL ELSE COALESCE(next_attempt_at, created_at) END, "
        "created_at, sent_at FROM digests WHERE message IS NOT NULL"
    )
    with op.batch_alter_table("digests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=10), nullable=False, server_default="digest"))
        batch_op.add_column(sa.Column("topic", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("document", sa.Text(), nullable=True))
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("error")
        batch_op.drop_column("attempts")
        batch_op.drop_column("message")


def downgrade() -> None:
    op.execute("DELETE FROM digest_items WHERE digest_id IN (SELECT id FROM digests WHERE kind = 'alert')")
    op.execute("DELETE FROM deliveries WHERE digest_id IN (SELECT id FROM digests WHERE kind = 'alert')")
    op.execute("DELETE FROM digests WHERE kind = 'alert'")
    with op.batch_alter_table("digests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
    email = "FROM deliveries d WHERE d.digest_id = digests.id AND d.channel = 'email'"
    op.execute(
        f"UPDATE digests SET message = (SELECT d.payload {email}), "
        f"attempts = COALESCE((SELECT d.attempts {email}), 0), error = (SELECT d.error {email}), "
        f"next_attempt_at = (SELECT d.next_attempt_at {email})"
    )
    with op.batch_alter_table("digests", schema=None) as batch_op:
        batch_op.drop_column("document")
        batch_op.drop_column("topic")
        batch_op.drop_column("kind")
    op.drop_index("ix_deliveries_status", table_name="deliveries")
    op.drop_index("ix_deliveries_digest_id", table_name="deliveries")
    op.drop_table("deliveries")
