"""`monitor demo`: the whole stream, offline, on sample outlets written for the project.

Three fictional outlets (monitor/demo_data/site/) are served on a loopback port: two newsrooms and a content
farm that reposts one of their stories inside its own chrome and re-runs a story from last year under a new
date. Their feeds are polled, the pages fetched and extracted, grouped into stories, matched against a sample
Xi–Putin topic and stored in a fresh SQLite file, and the digest is written as HTML. Nothing leaves the
machine.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from monitor.config import load_config
from monitor.digest import prepare_digest, render_html
from monitor.fetch import Fetcher
from monitor.loopback import LoopbackSite
from monitor.pipeline import Pipeline, Progress, RunReport
from monitor.storage import HitView, Storage, make_engine, upgrade
from monitor.types import utc_now

SITE = Path(__file__).resolve().parent / "demo_data" / "site"
#: the host the sample feeds and pages are written with; replaced by the loopback server's address
PLACEHOLDER = b"http://demo.invalid"
DEMO_TOPIC = "xi-putin"
DEMO_QUERY = '("xi jinping" OR xi OR 习近平 OR "си цзиньпин") AND (putin* OR путин*)'
DEMO_MIN_SCORE = 0.4

CONFIG_TEMPLATE = """\
# Written by `monitor demo`: the sample outlets, served on a loopback port for the length of the run.
feeds:
  - name: eastwire
    url: {base}/eastwire/feed.xml
    tags: [demo]
  - name: harbourpost
    url: {base}/harbourpost/atom.xml
    tags: [demo]
  - name: dailyhub
    url: {base}/dailyhub/feed.xml
    tags: [demo]
subscriptions:
  - name: demo
    recipients: [you@example.org]
    topics: [{topic}]
    time: "07:00"
    timezone: Europe/Berlin
network:
  allow_private: [127.0.0.0/8]
  per_host_spacing: 0   # the three outlets are one local server
"""


@dataclass(frozen=True, slots=True)
class DemoResult:
    report: RunReport
    hits: list[HitView]
    digest_path: Path
    database_url: str
    config_path: Path


def run_demo(workdir: Path, *, progress: Progress | None = None) -> DemoResult:
    """Run the demo into ``workdir`` (its database is made afresh each time)."""
    workdir.mkdir(parents=True, exist_ok=True)
    database = workdir / "demo.db"
    for stale in (database, workdir / "demo.db-wal", workdir / "demo.db-shm"):
        stale.unlink(missing_ok=True)
    database_url = f"sqlite:///{database.resolve()}"
    engine = make_engine(database_url)
    upgrade(engine)
    storage = Storage(engine)

    with LoopbackSite() as site:
        site.put_tree(SITE, replace={PLACEHOLDER: site.base_url.encode()})
        config_path = workdir / "feeds.yaml"
        config_path.write_text(CONFIG_TEMPLATE.format(base=site.base_url, topic=DEMO_TOPIC), encoding="utf-8")
        config = load_config(config_path)
        now = utc_now()
        storage.sync_feeds(config.feeds, now)
        storage.sync_subscriptions(config.subscriptions, now - timedelta(days=1))  # a day's digest
        storage.add_topic(DEMO_TOPIC, DEMO_QUERY, DEMO_MIN_SCORE, now)

        async def stream() -> RunReport:
            async with Fetcher(config.network) as fetcher:
                return await Pipeline(storage, fetcher).run_once(all_feeds=True, progress=progress)

        report = asyncio.run(stream())

    digest = prepare_digest(storage, config.subscriptions[0], now=utc_now())
    digest_path = (workdir / "digest.html").resolve()
    digest_path.write_text(render_html(digest), encoding="utf-8")
    engine.dispose()
    return DemoResult(
        report=report,
        hits=storage.hits(),
        digest_path=digest_path,
        database_url=database_url,
        config_path=config_path.resolve(),
    )
