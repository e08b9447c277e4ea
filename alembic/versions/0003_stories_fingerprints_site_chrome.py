"""stories, text fingerprints, LSH bands, per-site chrome lines, page URLs, stale reposts

Every article already processed becomes a story of its own (its fingerprint is unknown, so later copies
cannot find it by text, only by URL). Articles keep their canonical URL; their page URL is the same URL,
except for entries without a page (the ``#entry-`` pseudo-URLs), which get none.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("representative_id", sa.Integer(), nullable=False),
        sa.Column("first_published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "sites",
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("articles", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("host"),
    )
    op.create_table(
        "site_lines",
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("line_key", sa.String(length=32), nullable=False),
        sa.Column("articles", sa.Integer(), nullable=False),
        sa.Column("site_articles_at_first", sa.Integer(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("host", "line_key"),
    )
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("page_url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("site", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("content_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("story_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("republished_from", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_articles_site", ["site"])
        batch_op.create_index("ix_articles_content_hash", ["content_hash"])
        batch_op.create_index("ix_articles_story_id", ["story_id"])
        batch_op.create_foreign_key("fk_articles_story_id_stories", "stories", ["story_id"], ["id"])
    op.create_table(
        "article_bands",
        sa.Column("band_key", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["article_id"], ["articles.id"]),
        sa.PrimaryKeyConstraint("band_key", "article_id"),
    )
    op.create_index("ix_article_bands_article_id", "article_bands", ["article_id"])
    op.create_table(
        "article_fingerprints",
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("story_id", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=255), nullable=True),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["article_id"], ["articles.id"]),
        sa.ForeignKeyConstraint(["story_id"], ["stories.id"]),
        sa.PrimaryKeyConstraint("article_id"),
    )

    articles = sa.table(
        "articles",
        sa.column("id", sa.Integer()),
        sa.column("url", sa.Text()),
        sa.column("page_url", sa.Text()),
        sa.column("state", sa.String()),
        sa.column("story_id", sa.Integer()),
        sa.column("published_at", sa.DateTime(timezone=True)),
        sa.column("discovered_at", sa.DateTime(timezone=True)),
    )
    stories = sa.table(
        "stories",
        sa.column("id", sa.Integer()),
        sa.column("representative_id", sa.Integer()),
        sa.column("first_published_at", sa.DateTime(timezone=True)),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    op.execute(articles.update().where(~articles.c.url.contains("#entry-")).values(page_url=articles.c.url))
    processed = sa.select(
        articles.c.id,
        articles.c.id,
        articles.c.published_at,
        articles.c.discovered_at,
        articles.c.discovered_at,
    ).where(articles.c.state == "matched")
    op.execute(
        stories.insert().from_select(
            ["id", "representative_id", "first_published_at", "created_at", "updated_at"], processed
        )
    )
    op.execute(articles.update().where(articles.c.state == "matched").values(story_id=articles.c.id))
    if op.get_bind().dialect.name == "postgresql":  # ids were given explicitly: move the sequence past them
        op.execute(
            "SELECT setval(pg_get_serial_sequence('stories', 'id'), COALESCE(MAX(id), 0) + 1, false) "
            "FROM stories"
        )


def downgrade() -> None:
    op.drop_table("article_fingerprints")
    op.drop_index("ix_article_bands_article_id", table_name="article_bands")
    op.drop_table("article_bands")
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.drop_constraint("fk_articles_story_id_stories", type_="foreignkey")
        batch_op.drop_index("ix_articles_story_id")
        batch_op.drop_index("ix_articles_content_hash")
        batch_op.drop_index("ix_articles_site")
        for column in ("republished_from", "story_id", "content_hash", "site", "page_url"):
            batch_op.drop_column(column)
    op.drop_table("site_lines")
    op.drop_table("sites")
    op.drop_table("stories")
