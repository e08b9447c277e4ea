"""Shared fixtures: real databases (a SQLite file, a PostgreSQL database), the corpus, a loopback site."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
import sqlalchemy as sa

from monitor.config import NetworkConfig
from monitor.fetch import Fetcher
from monitor.loopback import LoopbackSite
from monitor.pipeline import Pipeline, RunReport
from monitor.storage import FeedUpdated, Storage, make_engine, upgrade

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
# pytest-xdist's workers run with COLUMNS=80, which Rich takes as the CLI console's fixed width when
# monitor.cli is imported; the CLI tests set the width they want per command
os.environ.pop("COLUMNS", None)
PG_ADMIN_URL = os.environ.get("MONITOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def corpus_path(*parts: str) -> Path:
    """A path in ../shared/corpus; the test is skipped, saying why, when the corpus is absent."""
    path = CORPUS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs the shared corpus at {path} (../shared/corpus beside the checkout)")
    return path


def _pg_admin() -> sa.Engine | None:
    engine = sa.create_engine(
        PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    try:
        with engine.connect():
            return engine
    except sa.exc.OperationalError:
        return None


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str | None]:
    """A PostgreSQL database migrated to head, cloned for each test (fast: CREATE DATABASE ... TEMPLATE)."""
    admin = _pg_admin()
    if admin is None:
        yield None
        return
    name = f"monitor_tpl_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine = make_engine(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    upgrade(engine)
    engine.dispose()
    yield name
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tpl") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path, pg_template: str | None
) -> Iterator[str]:
    """A fresh database at head: a SQLite file, and a PostgreSQL database on 127.0.0.1:5432."""
    if request.param == "sqlite":
        path = tmp_path / "monitor.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    if pg_template is None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but not reachable at {PG_ADMIN_URL}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}")
    admin = _pg_admin()
    assert admin is not None
    name = f"monitor_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def storage(db_url: str) -> Iterator[Storage]:
    engine = make_engine(db_url)
    yield Storage(engine)
    engine.dispose()


@pytest.fixture
def site() -> Iterator[LoopbackSite]:
    with LoopbackSite() as served:
        yield served


class SMTPSink:
    """A real SMTP server (aiosmtpd) on loopback that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[SMTPSink, int]]:
    from aiosmtpd.controller import Controller

    sink = SMTPSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield sink, controller.port
    controller.stop()


def record_entries(storage: Storage, feed_id: int, articles: list[Any], now: Any) -> int:
    """Record a successful poll of ``feed_id`` that listed ``articles`` (NewArticle values)."""
    [new] = storage.record_polls(
        [
            FeedUpdated(
                feed_id,
                now,
                status=200,
                title=None,
                etag=None,
                last_modified=None,
                final_url="https://feed.example/rss",
                articles=articles,
                next_poll_at=now,
            )
        ]
    )
    return new


def serve_kremlin(site: LoopbackSite) -> dict[str, Any]:
    """The captured Kremlin feed and its pages, plus a generated feed of the Xi–Putin and near-miss pages."""
    root = corpus_path("articles", "kremlin")
    truth: dict[str, Any] = json.loads((root / "ground-truth.json").read_text())
    for page in (root / "html").glob("*.html"):
        site.put(f"/events/president/news/{page.stem}", page.read_bytes(), "text/html; charset=utf-8")
    feed = corpus_path("feeds", "news", "kremlin", "kremlin_president_news_feed.atom").read_bytes()
    site.put(
        "/kremlin.atom", feed.replace(b"http://en.kremlin.ru", site.base_url.encode()), "application/atom+xml"
    )
    items = "".join(
        f"<item><title>{escape(t['title'])}</title><link>{site.base_url}/events/president/news/{pid}</link>"
        f"<guid>kremlin-{pid}</guid><pubDate>{t['date']}</pubDate><description>{escape(t['title'])}</description>"
        "</item>"
        for pid, t in truth.items()
        if t["roles"] != ["in_feed"]
    )
    site.put(
        "/selection.rss",
        f"<?xml version='1.0'?><rss version='2.0'><channel><title>Selection</title>{items}</channel></rss>",
        "application/rss+xml",
    )
    return truth


#: the fetcher's network settings for tests: loopback addresses allowed, no spacing between requests
LOOPBACK = NetworkConfig(allow_private=[ipaddress.ip_network("127.0.0.0/8")], per_host_spacing=0)


def run_pipeline(storage: Storage, clock: Callable[[], datetime], **kwargs: Any) -> RunReport:
    """One pass of the stream (Pipeline.run_once with ``kwargs``) with the loopback fetcher."""

    async def go() -> RunReport:
        async with Fetcher(LOOPBACK) as fetcher:
            return await Pipeline(storage, fetcher, clock=clock).run_once(**kwargs)

    return asyncio.run(go())
