"""Engine factory and schema migrations (Alembic owns the schema on SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from alembic import command
from monitor.errors import SchemaNotCurrentError, StorageError

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: page cache a SQLite connection may keep (the default is 2 MiB): the duplicate check reads the LSH bands'
#: index, and warm pages halve its cost
SQLITE_CACHE_BYTES = 64 * 2**20
#: SQLite's memory in the whole process (a soft limit: past it, connections reuse their cache pages instead
#: of growing). Without it each pooled connection (the daemon uses several threads) kept its own 64 MiB.
SQLITE_MEMORY_BYTES = 32 * 2**20
#: WAL pages written before a commit copies them into the database (SQLite's default is 1,000): the settle
#: stage rewrites the same index pages in commit after commit, and each checkpoint copied them again (the
#: WAL file grows to about 64 MiB between checkpoints)
SQLITE_CHECKPOINT_PAGES = 16_000


def normalize_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs given without a driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> sa.Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout (daemon + CLI share it)."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = sa.make_url(url).database
        if path and path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # last in, first out: the connection used most recently, whose cache is warm, is used again
        engine = sa.create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, pool_use_lifo=True
        )

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_BYTES // 1024}")
            cursor.execute(f"PRAGMA soft_heap_limit={SQLITE_MEMORY_BYTES}")
            cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def _script_location() -> Path:
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_alembic", package.parent / "alembic"):
        if (candidate / "env.py").exists():
            return candidate
    raise StorageError(f"Alembic scripts not found next to {package}")


def alembic_config(engine: sa.Engine) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(_script_location()))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config(sa.create_engine("sqlite://"))).get_current_head()
    assert head is not None
    return head


def current_revision(engine: sa.Engine) -> str | None:
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"cannot reach database {engine.url!r}: {_short(exc)}") from None


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default: the newest)."""
    try:
        command.upgrade(alembic_config(engine), revision)
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"upgrading {engine.url!r} failed: {_short(exc)}") from None


def ensure_current(engine: sa.Engine) -> None:
    """Refuse to work on a database that is not at the newest revision."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaNotCurrentError(current, head, engine.url.render_as_string(hide_password=True))


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0]


def downgrade(engine: sa.Engine, revision: str) -> None:
    """Take the schema back to ``revision`` (for rolling back a release)."""
    try:
        command.downgrade(alembic_config(engine), revision)
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"downgrading {engine.url!r} failed: {_short(exc)}") from None
