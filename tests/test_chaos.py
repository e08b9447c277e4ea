"""Chaos: kill -9 the daemon again and again while a feed keeps publishing; nothing is lost, nothing doubled.

The test runs, on a SQLite file and on PostgreSQL:

* a feed server on loopback that replays the 56 real polls of the WSJ World feed
  (../shared/corpus/feeds/timeseries/wsj_world/) in order as virtual time passes, each item's link rewritten
  to an article page the same server generates (title, description, a few paragraphs made from them; about a
  quarter of the items, and the real ones naming both leaders, open with Xi Jinping meeting Vladimir Putin).
  Feed answers carry an ETag and a conditional GET gets its 304;
* an SMTP server on loopback (aiosmtpd) that keeps every message it accepts;
* the daemon (tests/chaos_daemon.py: `monitor run` on a virtual clock,
  ``virtual = V0 + (time.time() - R0) * SPEED``, the same for the server and every daemon process, so time
  goes on while the daemon is down), with a daily 07:00 Europe/Berlin digest of a Xi–Putin topic.

About two weeks of virtual time pass in about 50 s. The daemon is killed with SIGKILL ``len(KILL_PLAN)``
times and restarted each time: at random moments, and at moments picked from its log (just after it received
a feed, just after it received an article page, as an article's matching begins) or from the SMTP server (as
a digest's DATA arrives, before it is accepted; as the client says QUIT after the message was accepted, before
the daemon can record it). Each kill is then classified by the last line the killed process logged. After the
last kill the daemon runs until the replay is over and one more digest is recorded, and is stopped by SIGTERM.

Then every invariant is checked, and all failures are reported together with a summary (printed, and written
as JSON to $MONITOR_CHAOS_REPORT when set):

* every item the server published (every guid in a feed answer the daemon got) is stored once: one entry per
  guid, one article per canonical URL, every article finished (matched). An item listed only in the one feed
  answer a killed daemon had not recorded yet is excused when missing (it may have left the feed before the
  next poll; no program could know it): such items are counted;
* every expected hit exists exactly once: the same topic over the same pages, run in-process on a fresh
  database with monitor.pipeline.Pipeline, gives the (topic, url) set to compare with;
* the done digests (sent or empty) chain from the subscription's start to the end, with no gap or overlap;
  each answers a scheduled 07:00 (one digest may answer several when the daemon was down across a whole
  day: counted as catch-ups); no digest is left in any other state; no hit is carried by two of them and
  every hit stored before the last one is carried by one;
* the SMTP server received one distinct Message-ID per sent digest, exactly those the database recorded
  (a message arriving twice must carry the same Message-ID: counted); the stories listed in the messages are
  hits their digest carried, none listed twice;
* the database passes an integrity check (SQLite: integrity_check and foreign_key_check; PostgreSQL:
  amcheck's bt_index_check on every index when available) and, on both, no orphan rows and no duplicates
  where a unique constraint should hold;
* every killed run died of the kill, the last one exited 0 on SIGTERM, no run logged an error.

So that a change in the daemon's log lines cannot quietly weaken the test, it also fails when a run got more
than one feed answer it did not log recording, or when no kill landed in one of polling, extraction, matching
and digest sending.

The launcher works around one product bug (see tests/chaos_daemon.py): Daemon.run gives APScheduler the
injected clock's time as the jobs' first run time.
"""

from __future__ import annotations

import bisect
import email
import email.policy
import hashlib
import html
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from monitor.config import FeedConfig, SubscriptionConfig
from monitor.demo import DEMO_MIN_SCORE, DEMO_QUERY
from monitor.scheduler import last_scheduled
from monitor.storage import Storage, make_engine
from monitor.storage.models import Article, Delivery, Digest, DigestItem, Entry, Hit, Subscription, Topic
from monitor.types import utc_now
from monitor.urls import canonical_url

from conftest import corpus_path, free_port, run_pipeline

LAUNCHER = Path(__file__).resolve().parent / "chaos_daemon.py"
SEED = 20250903
TOPIC = "xi-putin"
SUBSCRIPTION = SubscriptionConfig(
    name="morning",
    recipients=["desk@example.org"],
    topics=[TOPIC],
    time="07:00",
    timezone="Europe/Berlin",
)
FEED_PATH = "/wsj/world.xml"
ALL_PATH = "/all.xml"
#: the item links' prefix in the corpus; the rest of the link is the path the page is served at
ORIGINAL_PREFIX = b"https://archive.is/newest/https://www.wsj.com"
#: real seconds from the virtual start to the digest after the last poll
REPLAY_SECONDS = 48.0
TICK_SECONDS = 0.25
DIGEST_CHECK_SECONDS = 0.2
#: how each kill is chosen; shuffled with SEED
KILL_PLAN = (
    ["random"] * 8
    + ["polling"] * 4
    + ["extraction"] * 4
    + ["matching"] * 4
    + ["smtp-data"] * 2
    + ["smtp-quit"] * 2
)
#: how long a kill waits for the moment it looks for before killing anyway
TRIGGER_TIMEOUT = {"polling": 3.0, "extraction": 3.0, "matching": 3.0, "smtp-data": 5.0, "smtp-quit": 5.0}
FINAL_TIMEOUT = 30.0
#: the daemon's log lines saying a feed answer was recorded (after its transaction)
POLL_RECORDED = ("feed polled", "feed not modified", "feed failed", "feed disabled")
#: the stages the kills must reach (else the harness missed them: the daemon's log lines changed?)
PHASES = ("polling", "extraction", "matching", "digest")
#: a run late on the plan still lives this long (real seconds) before its kill is armed
MIN_UPTIME = 0.2
DONE_STATES = ("sent", "empty")
FINISHED_ARTICLE_STATES = ("matched",)

# -- the corpus and the generated pages ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Item:
    guid: str
    #: the path its page is served at (the original WSJ path)
    path: str
    title: str
    description: str
    published: str


@dataclass(frozen=True, slots=True)
class Poll:
    at: float
    #: the feed as captured, its item links pointing at ``PLACEHOLDER``
    body: bytes
    items: tuple[Item, ...]


PLACEHOLDER = b"http://chaos.invalid"


def load_polls(folder: Path) -> list[Poll]:
    polls = []
    for file in sorted(folder.glob("*.xml")):
        at = datetime.strptime(file.stem, "%Y-%m-%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
        raw = file.read_bytes()
        items = []
        for node in ET.fromstring(raw).iter("item"):
            link = (node.findtext("link") or "").encode()
            assert link.startswith(ORIGINAL_PREFIX), link
            items.append(
                Item(
                    guid=node.findtext("guid") or "",
                    path=link[len(ORIGINAL_PREFIX) :].decode(),
                    title=node.findtext("title") or "",
                    description=node.findtext("description") or "",
                    published=node.findtext("pubDate") or "",
                )
            )
        polls.append(Poll(at, raw.replace(ORIGINAL_PREFIX, PLACEHOLDER), tuple(items)))
    return polls


def about_xi_and_putin(item: Item) -> bool:
    """The items whose page opens with the two leaders' meeting: those naming both, and a quarter of the
    others (chosen by their guid, so the same on every run)."""
    text = f"{item.title} {item.description}"
    chosen = int(hashlib.sha256(item.guid.encode()).hexdigest(), 16) % 4 == 0
    return ("Xi" in text and "Putin" in text) or chosen


def article_page(item: Item) -> bytes:
    """A plain news page made from the item: every paragraph carries something of its own (a repeated line
    would be learnt as the site's chrome), the meeting paragraph first so that the names are in the lead."""
    words = item.description.split()
    paragraphs = [
        item.description,
        f"Reporting for “{item.title}” continued through {item.published or 'the day'}, and editors said "
        f"the account would be updated as more became known. {item.description}",
        f"People familiar with the matter described the background to “{item.title}” in detail, saying "
        f"that {' '.join(words[: max(4, len(words) // 2)])} was only part of a longer story.",
        f"This page stands in for item {item.guid}, whose summary has {len(words)} words.",
    ]
    if about_xi_and_putin(item):
        paragraphs.insert(
            0,
            "Chinese leader Xi Jinping met Russian President Vladimir Putin in Beijing this week, and the "
            f"two leaders discussed {item.title.rstrip('.').lower()}, officials briefed on the talks said. "
            "Putin told reporters afterwards that his friendship with Xi had never been stronger, and aides "
            "to Xi said Putin would return. Both Xi and Putin described the meeting as a success.",
        )
    esc = html.escape
    body = "".join(f"<p>{esc(p)}</p>\n" for p in paragraphs)
    return (
        f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>{esc(item.title)}</title>"
        f"<meta name='description' content='{esc(item.description)}'></head>\n<body><article>"
        f"<h1>{esc(item.title)}</h1>\n{body}</article></body></html>\n"
    ).encode()


def all_items_feed(pages: dict[str, Item], base: str) -> bytes:
    """Every page as one feed (each under its own guid): what the expected hits are computed from."""
    entries = "".join(
        f"<item><title>{html.escape(item.title)}</title><link>{base}{path}</link>"
        f"<description>{html.escape(item.description)}</description><guid>{html.escape(path)}</guid>"
        f"<pubDate>{item.published}</pubDate></item>"
        for path, item in sorted(pages.items())
    )
    channel = f"<channel><title>All</title>{entries}</channel>"
    return f"<?xml version='1.0'?><rss version='2.0'>{channel}</rss>".encode()


# -- the feed server -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedAnswer:
    #: real time the request arrived
    at: float
    poll: int
    status: int


class VirtualTime:
    """``V0 + (time.time() - R0) * SPEED``; R0 is set when the first daemon starts (until then: V0)."""

    def __init__(self, v0: float, speed: float) -> None:
        self.v0, self.speed = v0, speed
        self.r0: float | None = None

    def now(self) -> float:
        return self.v0 if self.r0 is None else self.v0 + (time.time() - self.r0) * self.speed

    def real(self, virtual: float) -> float:
        assert self.r0 is not None
        return self.r0 + (virtual - self.v0) / self.speed

    def at(self, real: float) -> datetime:
        """The virtual time at real time ``real``."""
        assert self.r0 is not None
        return self.dt(self.v0 + (real - self.r0) * self.speed)

    def dt(self, virtual: float | None = None) -> datetime:
        return datetime.fromtimestamp(self.now() if virtual is None else virtual, UTC)


class FeedServer:
    """The publisher: the poll current at the virtual time at FEED_PATH (poll 0 before the first), pages at
    their paths, every page as one feed at ALL_PATH. Records every feed answer."""

    def __init__(self, polls: list[Poll], clock: VirtualTime) -> None:
        self.polls, self.clock = polls, clock
        self.times = [p.at for p in polls]
        self.pages: dict[str, Item] = {}
        for poll in polls:
            for item in poll.items:
                self.pages.setdefault(item.path, item)
        self.answers: list[FeedAnswer] = []
        self.page_requests = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                arrived = time.time()
                path = self.path.split("?", 1)[0]
                if path == FEED_PATH:
                    index = max(0, bisect.bisect_right(server.times, server.clock.now()) - 1)
                    body = server.feed(index)
                    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
                    status = 304 if self.headers.get("If-None-Match") == etag else 200
                    with server._lock:
                        server.answers.append(FeedAnswer(arrived, index, status))
                    self.answer(status, body, "application/rss+xml; charset=utf-8", etag)
                elif path == ALL_PATH:
                    self.answer(200, all_items_feed(server.pages, server.base), "application/rss+xml")
                elif path in server.pages:
                    with server._lock:
                        server.page_requests += 1
                    self.answer(200, article_page(server.pages[path]), "text/html; charset=utf-8")
                else:
                    self.answer(404, b"not found", "text/plain")

            def answer(self, status: int, body: bytes, content_type: str, etag: str | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                if etag:
                    self.send_header("ETag", etag)
                self.send_header("Content-Length", str(0 if status == 304 else len(body)))
                self.end_headers()
                if status != 304:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._feeds: dict[int, bytes] = {}
        self._thread = threading.Thread(target=self._server.serve_forever, name="chaos-feed", daemon=True)

    def feed(self, index: int) -> bytes:
        if index not in self._feeds:
            self._feeds[index] = self.polls[index].body.replace(PLACEHOLDER, self.base.encode())
        return self._feeds[index]

    def __enter__(self) -> FeedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# -- the SMTP server -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    at: float
    message_id: str
    subject: str
    #: the article URLs the plain-text part lists
    urls: tuple[str, ...]


class ChaosSMTP:
    """An aiosmtpd handler keeping every accepted message; armed, it kills the daemon at a chosen step:
    ``smtp-data`` as the message arrives, before it is accepted (the message is then not kept);
    ``smtp-quit`` as the client says QUIT after the message was accepted, before its answer."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._armed: tuple[str, Callable[[], None]] | None = None
        self.fired: list[str] = []

    def arm(self, kind: str, kill: Callable[[], None]) -> None:
        with self._lock:
            self._armed = (kind, kill)

    def disarm(self) -> bool:
        """True when it was still armed (had not fired)."""
        with self._lock:
            armed, self._armed = self._armed, None
        return armed is not None

    def _take(self, kind: str, session: Any) -> Callable[[], None] | None:
        with self._lock:
            if self._armed is None or self._armed[0] != kind:
                return None
            if kind == "smtp-quit" and not getattr(session, "chaos_accepted", False):
                return None
            kill = self._armed[1]
            self._armed = None
            self.fired.append(kind)
            return kill

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        kill = self._take("smtp-data", session)
        if kill is not None:
            kill()
            return "451 4.3.0 Not accepted: the client was killed"
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        text = message.get_body(preferencelist=("plain",))
        content = text.get_content() if text is not None else ""
        with self._lock:
            self.received.append(
                Received(
                    at=time.time(),
                    message_id=str(message["Message-ID"] or "").strip(),
                    subject=str(message["Subject"] or ""),
                    urls=tuple(re.findall(r"^  (https?://\S+)\r?$", content, re.MULTILINE)),
                )
            )
        session.chaos_accepted = True
        return "250 OK"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        kill = self._take("smtp-quit", session)
        if kill is not None:
            kill()
        return "221 Bye"


@pytest.fixture
def chaos_smtp() -> Iterator[tuple[ChaosSMTP, int]]:
    from aiosmtpd.controller import Controller

    sink = ChaosSMTP()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield sink, controller.port
    controller.stop()


# -- the daemon processes ------------------------------------------------------------------------------------


class Zygote:
    """tests/chaos_daemon.py in zygote mode: forks daemons on request, reports their exits."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self._stderr = (workdir / "zygote.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(LAUNCHER), "zygote"],
            env=env,
            cwd=workdir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._spawned: queue.Queue[int] = queue.Queue()
        self._exits: dict[int, int] = {}
        self._ready = threading.Event()
        self._changed = threading.Condition()
        threading.Thread(target=self._read, name="chaos-zygote", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            words = raw.decode().split()
            if words == ["ready"]:
                self._ready.set()
            elif words[:1] == ["spawned"]:
                self._spawned.put(int(words[1]))
            elif words[:1] == ["exited"]:
                with self._changed:
                    self._exits[int(words[1])] = int(words[2])
                    self._changed.notify_all()

    def wait_ready(self, timeout: float = 120.0) -> None:
        if not self._ready.wait(timeout):
            raise RuntimeError("the chaos daemon launcher did not start")

    def setenv(self, key: str, value: str) -> None:
        """Set a variable for the daemons forked from now on."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"env {key} {value}\n".encode())
        self.proc.stdin.flush()

    def spawn(self, log: Path) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"spawn {log}\n".encode())
        self.proc.stdin.flush()
        return self._spawned.get(timeout=30)

    def exit_code(self, pid: int) -> int | None:
        with self._changed:
            return self._exits.get(pid)

    def wait_exit(self, pid: int, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while pid not in self._exits and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)
            return self._exits.get(pid)

    def close(self) -> None:
        with suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # the zygote kills whatever still runs, then exits
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


class LogTail:
    """The complete lines appended to a file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.partial = path, 0, b""

    def lines(self) -> list[str]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *complete, self.partial = (self.partial + data).split(b"\n")
        return [line.decode("utf-8", "replace") for line in complete]


_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ (?P<level>[A-Z]+) (?P<logger>\S+): (?P<message>.*)$")


def phase_of(line: str | None) -> str:
    """Which stage a daemon was in, from the last line it logged:

    * polling: a feed's answer arrived (it is being parsed and recorded);
    * extraction: a feed was recorded, or an article page arrived (pages are fetched and extracted);
    * matching: an article's last stages began (chrome, story, match, store), or a hit was logged;
    * digest: an SMTP step of a digest was under way;
    * idle: a stream pass or a digest was done (between jobs, or preparing a digest);
    * startup: nothing logged yet, or only the schema check."""
    found = _LOG_LINE.match(line or "")
    if found is None:
        return "startup" if not line else "other"
    logger, message = found["logger"], found["message"]
    if logger.startswith("alembic"):
        return "startup"
    if logger == "monitor.fetch":
        return "polling" if FEED_PATH in message else "extraction"
    if message.startswith("chaos: smtp"):
        return "digest"
    if message.startswith(("chaos: settle", "hit ")) or message == "hit":
        return "matching"
    if message.startswith(("feed polled", "feed not modified", "page not fetched", "page has no usable")):
        return "extraction"
    if message.startswith(("feed failed", "stream pass", "digest", "monitor running")):
        return "idle"
    return "other"


@dataclass(slots=True)
class Run:
    index: int
    log: Path
    pid: int
    started: float
    plan: str = "final"
    ended: float = 0.0
    returncode: int | None = None
    triggered: bool = False
    last_line: str | None = None
    phase: str = ""
    acknowledged_polls: int = 0
    lines: list[str] = field(default_factory=list)


# -- the test ------------------------------------------------------------------------------------------------

_EXPECTED_HIT_PATHS: dict[str, frozenset[str]] = {}


def expected_hit_paths(server: FeedServer, sqlite_template: Path, workdir: Path) -> frozenset[str]:
    """The paths of the pages the topic hits, by the product's own pipeline in-process, on a fresh database
    (computed once: the pages and the topic are the same for both databases)."""
    if "paths" not in _EXPECTED_HIT_PATHS:
        path = workdir / "expected.db"
        shutil.copy(sqlite_template, path)
        engine = make_engine(f"sqlite:///{path}")
        storage = Storage(engine)
        now = utc_now()
        storage.sync_feeds([FeedConfig(name="all", url=server.base + ALL_PATH)], now)
        storage.add_topic(TOPIC, DEMO_QUERY, DEMO_MIN_SCORE, now)
        run_pipeline(storage, utc_now, all_feeds=True)
        assert storage.article_count() == {"matched": len(server.pages)}, storage.article_count()
        _EXPECTED_HIT_PATHS["paths"] = frozenset(urlsplit(h.url).path for h in storage.hits(limit=100_000))
        engine.dispose()
    return _EXPECTED_HIT_PATHS["paths"]


def test_kill_9_at_random_moments_loses_nothing_and_doubles_nothing(
    db_url: str, tmp_path: Path, sqlite_template: Path, chaos_smtp: tuple[ChaosSMTP, int]
) -> None:
    began = time.monotonic()
    polls = load_polls(corpus_path("feeds", "timeseries", "wsj_world"))
    sink, smtp_port = chaos_smtp
    kind = "sqlite" if db_url.startswith("sqlite") else "postgresql"

    # virtual time: from just after the 07:00 before the first poll to the 07:00 after the last one
    v0 = last_scheduled(SUBSCRIPTION, datetime.fromtimestamp(polls[0].at, UTC)) + timedelta(minutes=30)
    last_due = last_scheduled(SUBSCRIPTION, datetime.fromtimestamp(polls[-1].at, UTC)) + timedelta(days=1)
    clock = VirtualTime(v0.timestamp(), (last_due - v0).total_seconds() / REPLAY_SECONDS)

    with FeedServer(polls, clock) as server:
        expected_paths = expected_hit_paths(server, sqlite_template, tmp_path)
        server.page_requests = 0  # count only what the daemon fetches
        config = tmp_path / "feeds.yaml"
        config.write_text(
            f"feeds:\n  - name: wsj-world\n    url: {server.base}{FEED_PATH}\n    interval: 30m\n"
            f"subscriptions:\n  - name: {SUBSCRIPTION.name}\n    recipients: [{SUBSCRIPTION.recipients[0]}]\n"
            f'    topics: [{TOPIC}]\n    time: "07:00"\n    timezone: {SUBSCRIPTION.timezone}\n'
            "network:\n  allow_private: [127.0.0.0/8]\n  timeout: 10\n  per_host_spacing: 0\n",
            encoding="utf-8",
        )
        engine = make_engine(db_url)
        storage = Storage(engine)
        storage.sync_feeds([FeedConfig(name="wsj-world", url=server.base + FEED_PATH, interval="30m")], v0)
        storage.sync_subscriptions([SUBSCRIPTION], v0)
        storage.add_topic(TOPIC, DEMO_QUERY, DEMO_MIN_SCORE, v0)

        env = {k: v for k, v in os.environ.items() if not k.startswith(("MONITOR_", "CHAOS_"))}
        env |= {
            "MONITOR_DATABASE_URL": db_url,
            "MONITOR_CONFIG": str(config),
            "MONITOR_SMTP_HOST": "127.0.0.1",
            "MONITOR_SMTP_PORT": str(smtp_port),
            "MONITOR_SMTP_SENDER": "monitor@example.org",
            "MONITOR_SMTP_SECURITY": "none",
            "MONITOR_SMTP_TIMEOUT": "10",
            "CHAOS_V0": repr(clock.v0),
            "CHAOS_SPEED": repr(clock.speed),
            "CHAOS_TICK": str(TICK_SECONDS),
            "CHAOS_DIGEST_CHECK": str(DIGEST_CHECK_SECONDS),
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(LAUNCHER.parents[1]), os.environ.get("PYTHONPATH")])
            ),
        }
        zygote = Zygote(env, tmp_path)
        runs: list[Run] = []
        try:
            zygote.wait_ready()
            clock.r0 = time.time()
            zygote.setenv("CHAOS_R0", repr(clock.r0))
            stop = chaos(zygote, sink, server, clock, storage, last_due, random.Random(SEED), tmp_path, runs)
        finally:
            for run in runs:
                if run.returncode is None:
                    with suppress(ProcessLookupError):
                        os.kill(run.pid, signal.SIGKILL)
            zygote.close()
        report, problems = check(engine, kind, server, sink, runs, clock, expected_paths, stop=stop)
        engine.dispose()

    report["runtime_seconds"] = round(time.monotonic() - began, 1)
    publish(report, problems)
    assert len(runs) - 1 >= 20, f"only {len(runs) - 1} kills"
    assert not problems, f"{len(problems)} invariants broken:\n" + "\n".join(problems)


def chaos(
    zygote: Zygote,
    sink: ChaosSMTP,
    server: FeedServer,
    clock: VirtualTime,
    storage: Storage,
    last_due: datetime,
    rng: random.Random,
    workdir: Path,
    runs: list[Run],
) -> datetime:
    """Start, kill -9 and restart the daemon as KILL_PLAN says (appending to ``runs``); then let it run to
    the end of the replay and one more digest, and stop it with SIGTERM. Returns the virtual stop time."""
    assert clock.r0 is not None
    plan = list(KILL_PLAN)
    rng.shuffle(plan)
    first_arm, last_arm = clock.r0 + 1.0, clock.real(server.times[-1]) - 1.5
    spacing = (last_arm - first_arm) / len(plan)
    # every random draw is made up front: the plan does not depend on how the run goes
    moments = [
        (kind, first_arm + spacing * (k + rng.uniform(0.0, 0.4)), rng.uniform(0.0, 1.0))
        for k, kind in enumerate(plan)
    ]

    def spawn(plan: str) -> tuple[Run, LogTail]:
        log = workdir / f"run-{len(runs):02d}.log"
        started = time.time()
        run = Run(index=len(runs), log=log, pid=zygote.spawn(log), started=started, plan=plan)
        runs.append(run)
        return run, LogTail(log)

    def alive(run: Run) -> bool:
        return zygote.exit_code(run.pid) is None

    def kill(run: Run) -> None:
        with suppress(ProcessLookupError):
            os.kill(run.pid, signal.SIGKILL)
        zygote.wait_exit(run.pid, 10)

    for kind, planned, draw in moments:
        run, tail = spawn(kind)
        arm = max(planned, run.started + MIN_UPTIME)
        while time.time() < arm and alive(run):
            tail.lines()
            time.sleep(0.005)
        if not alive(run):  # it stopped by itself: a crash, which check() reports
            finish(run, zygote)
            continue
        if kind == "random":
            until = arm + draw * spacing * 0.6
            while time.time() < until and alive(run):
                time.sleep(0.005)
            kill(run)
        elif kind.startswith("smtp-"):
            sink.arm(kind, partial(kill, run))
            deadline = arm + TRIGGER_TIMEOUT[kind]
            while time.time() < deadline and alive(run):
                time.sleep(0.005)
            if sink.disarm():
                kill(run)
            else:
                run.triggered = True
        else:
            deadline = arm + TRIGGER_TIMEOUT[kind]
            while time.time() < deadline and alive(run):
                if any(_looks_like(kind, line) for line in tail.lines()):
                    run.triggered = True
                    time.sleep(draw * 0.01)  # up to 10 ms: into the stage, not past it
                    break
                time.sleep(0.002)
            kill(run)
        finish(run, zygote)

    run, _ = spawn("final")
    deadline = max(time.time(), clock.real(last_due.timestamp())) + FINAL_TIMEOUT
    while time.time() < deadline and alive(run):
        if clock.now() >= last_due.timestamp() and finished(storage, last_due):
            break
        time.sleep(0.1)
    stop = clock.dt()
    with suppress(ProcessLookupError):
        os.kill(run.pid, signal.SIGTERM)
    finish(run, zygote, timeout=30)
    return stop


def finish(run: Run, zygote: Zygote, timeout: float = 15.0) -> None:
    """Wait for a run's end; read its log: its last line, the stage it was in, the polls it recorded."""
    run.returncode = zygote.wait_exit(run.pid, timeout)
    run.ended = time.time()
    run.lines = []
    with suppress(FileNotFoundError):  # killed before it opened its log
        run.lines = run.log.read_text(encoding="utf-8", errors="replace").splitlines()
    # APScheduler's "skipped: maximum number of running instances reached" says nothing of the daemon's stage
    logged = [m for line in run.lines if (m := _LOG_LINE.match(line)) and not m["logger"].startswith("apsch")]
    run.last_line = logged[-1].group(0) if logged else None
    run.phase = phase_of(run.last_line)
    run.acknowledged_polls = sum(1 for m in logged if m["message"].startswith(POLL_RECORDED))


def finished(storage: Storage, last_due: datetime) -> bool:
    """The digest due after the last poll is done and no article is waiting."""
    with storage.engine.connect() as conn:
        done = conn.execute(
            sa.select(sa.func.max(_table(Digest).c.window_end)).where(
                _table(Digest).c.status.in_(DONE_STATES)
            )
        ).scalar()
        waiting = conn.execute(
            sa.select(sa.func.count())
            .select_from(_table(Article))
            .where(_table(Article).c.state.not_in(FINISHED_ARTICLE_STATES))
        ).scalar()
    return done is not None and done >= last_due and not waiting


def _looks_like(kind: str, line: str) -> bool:
    found = _LOG_LINE.match(line)
    if found is None:
        return False
    logger, message = found["logger"], found["message"]
    if kind == "polling":  # an answer with content: parsing and recording it takes a while
        return logger == "monitor.fetch" and FEED_PATH in message and message.endswith(" 200")
    if kind == "extraction":
        return logger == "monitor.fetch" and FEED_PATH not in message
    return message.startswith("chaos: settle")


def _table(model: Any) -> sa.Table:
    table: sa.Table = model.__table__
    return table


# -- the checks ----------------------------------------------------------------------------------------------


def scheduled_between(start: datetime, end: datetime) -> list[datetime]:
    """The subscription's 07:00s in (start, end]."""
    found = []
    due = last_scheduled(SUBSCRIPTION, end)
    while due > start:
        found.append(due)
        due = last_scheduled(SUBSCRIPTION, due - timedelta(microseconds=1))
    return sorted(found)


def check(
    engine: sa.Engine,
    kind: str,
    server: FeedServer,
    sink: ChaosSMTP,
    runs: list[Run],
    clock: VirtualTime,
    expected_paths: frozenset[str],
    *,
    stop: datetime,
) -> tuple[dict[str, Any], list[str]]:
    """Every invariant, each failure one line; and the figures."""
    problems: list[str] = []
    killed = runs[:-1]

    def run_of(real: float) -> str:
        for run in runs:
            if run.started <= real <= run.ended:
                return f"run {run.index} (killed as planned: {run.plan}; last line: {run.last_line})"
        return "no run"

    # the processes
    for run in killed:
        if run.returncode != -signal.SIGKILL:
            problems.append(
                f"run {run.index} ended by itself (return code {run.returncode}): {run.last_line}"
            )
    final = runs[-1]
    if final.returncode != 0 or not any("monitor stopped" in line for line in final.lines):
        problems.append(f"the final run did not stop cleanly on SIGTERM: return code {final.returncode}")
    for run in runs:
        bad = [line for line in run.lines if "Traceback" in line or " ERROR " in line or " CRITICAL " in line]
        if bad:
            problems.append(f"run {run.index} ({run.log.name}) logged errors: {' | '.join(bad[:3])}")

    # what was published: every guid of every feed answer a run got; excused when the only answers listing
    # it were the last ones of a run that did not log recording them (killed between answer and commit)
    owed: dict[str, set[str]] = {}
    maybe: dict[str, set[str]] = {}
    attributed = 0
    for run in runs:
        answers = [a for a in server.answers if run.started <= a.at <= run.ended]
        attributed += len(answers)
        recorded = answers[: run.acknowledged_polls]
        if len(answers) - run.acknowledged_polls > 1 or len(answers) < run.acknowledged_polls:
            problems.append(
                f"harness: run {run.index} got {len(answers)} feed answers but logged "
                f"{run.acknowledged_polls} recorded polls (did the daemon's log lines change?)"
            )
        for answer in answers:
            if answer.status != 200:
                continue
            target = owed if answer in recorded else maybe
            for item in server.polls[answer.poll].items:
                target.setdefault(item.guid, set()).add(item.path)
    if attributed != len(server.answers):
        problems.append(f"{len(server.answers) - attributed} feed answers went to no daemon run (harness)")
    for guid in owed:
        maybe.pop(guid, None)

    def url(path: str) -> str:
        return canonical_url(server.base + path)

    with engine.connect() as conn:
        articles = conn.execute(
            sa.select(
                _table(Article).c.id,
                _table(Article).c.url,
                _table(Article).c.state,
                _table(Article).c.last_error,
            )
        ).all()
        entries = conn.execute(sa.select(_table(Entry).c.key, _table(Entry).c.article_id)).all()
        hits = conn.execute(
            sa.select(
                _table(Hit).c.id,
                _table(Topic).c.name,
                _table(Article).c.url,
                sa.func.coalesce(_table(Article).c.page_url, _table(Article).c.url),
                _table(Hit).c.created_at,
            )
            .join_from(_table(Hit), _table(Topic), _table(Topic).c.id == _table(Hit).c.topic_id)
            .join(_table(Article), _table(Article).c.id == _table(Hit).c.article_id)
        ).all()
        sub_id, sub_start = conn.execute(
            sa.select(_table(Subscription).c.id, _table(Subscription).c.created_at).where(
                _table(Subscription).c.name == SUBSCRIPTION.name
            )
        ).one()
        digests = conn.execute(
            sa.select(
                _table(Digest).c.id,
                _table(Digest).c.status,
                _table(Digest).c.window_start,
                _table(Digest).c.window_end,
                _table(Digest).c.message_id,
                sa.select(sa.func.max(_table(Delivery).c.error))
                .where(_table(Delivery).c.digest_id == _table(Digest).c.id)
                .scalar_subquery()
                .label("error"),
            )
            .where(_table(Digest).c.subscription_id == sub_id)
            .order_by(_table(Digest).c.window_start, _table(Digest).c.id)
        ).all()
        carried_rows = conn.execute(
            sa.select(_table(DigestItem).c.digest_id, _table(DigestItem).c.hit_id)
        ).all()

    # every published item stored once, finished
    article_url = {a.id: a.url for a in articles}
    entry_count = Counter(e.key for e in entries)
    entry_article = {e.key: e.article_id for e in entries}
    lost = 0
    for guid, paths in sorted({**owed, **maybe}.items()):
        n = entry_count.get(guid, 0)
        if n == 0 and guid in maybe:
            lost += 1
            continue
        if n != 1:
            problems.append(f"item {guid} ({sorted(paths)[0]}) has {n} entries, not 1")
            continue
        if article_url.get(entry_article[guid]) not in {url(p) for p in paths}:
            problems.append(f"item {guid} is stored as {article_url.get(entry_article[guid])}, not {paths}")
    stray = set(entry_count) - set(owed) - set(maybe)
    if stray:
        problems.append(f"{len(stray)} entries for items never published, e.g. {sorted(stray)[:3]}")
    doubled = [u for u, n in Counter(a.url for a in articles).items() if n > 1]
    if doubled:
        problems.append(f"{len(doubled)} articles stored more than once, e.g. {doubled[:3]}")
    orphans = set(article_url) - set(entry_article.values())
    if orphans:
        problems.append(
            f"{len(orphans)} articles no entry leads to, e.g. {[article_url[i] for i in orphans][:3]}"
        )
    states = Counter(a.state for a in articles)
    unfinished = [a for a in articles if a.state not in FINISHED_ARTICLE_STATES]
    if unfinished:
        problems.append(
            f"{len(unfinished)} articles unfinished ({dict(states)}), e.g. "
            + "; ".join(f"{a.url} {a.state}: {a.last_error}" for a in unfinished[:3])
        )

    # every expected hit exactly once
    actual = Counter((h.name, h.url) for h in hits)
    expected = {(TOPIC, a.url) for a in articles if urlsplit(a.url).path in expected_paths}
    for pair, n in actual.items():
        if n > 1:
            problems.append(f"hit {pair} stored {n} times")
    missing, unexpected = expected - set(actual), set(actual) - expected
    if missing:
        problems.append(f"{len(missing)} expected hits missing, e.g. {sorted(missing)[:3]}")
    if unexpected:
        problems.append(f"{len(unexpected)} hits not expected, e.g. {sorted(unexpected)[:3]}")

    # digests: a chain of done windows from the subscription's start, each answering a 07:00
    statuses = Counter(d.status for d in digests)
    for d in digests:
        if d.status not in DONE_STATES:
            problems.append(f"digest {d.id} left {d.status!r} ({d.window_start:%m-%d %H:%M}): {d.error}")
    done = [d for d in digests if d.status in DONE_STATES]
    start, catch_ups = sub_start, 0
    for d in done:
        if d.window_start != start:
            what = "a gap" if d.window_start > start else "an overlap"
            problems.append(f"digest {d.id}: {what}, its window starts {d.window_start}, not {start}")
        answered = scheduled_between(d.window_start, d.window_end)
        if not answered:
            problems.append(f"digest {d.id} ({d.window_start} to {d.window_end}) answers no scheduled 07:00")
        catch_ups += max(0, len(answered) - 1)
        start = d.window_end
    days = scheduled_between(sub_start, stop)
    if done and last_scheduled(SUBSCRIPTION, stop) > done[-1].window_end:
        problems.append(f"the digest due {last_scheduled(SUBSCRIPTION, stop)} was never done")
    if not done:
        problems.append("no digest was done at all")

    done_ids = {d.id for d in done}
    carried = Counter(hit for digest, hit in carried_rows if digest in done_ids)
    for hit, n in carried.items():
        if n > 1:
            problems.append(f"hit {hit} carried by {n} digests")
    if done:
        owed_hits = [h for h in hits if sub_start < h.created_at <= done[-1].window_end]
        undelivered = [h for h in owed_hits if h.id not in carried]
        if undelivered:
            problems.append(
                f"{len(undelivered)} hits stored before the last digest were never carried, e.g. "
                f"{[h.url for h in undelivered[:3]]}"
            )

    # messages: one distinct Message-ID per sent digest, exactly those recorded
    sent = [d for d in digests if d.status == "sent"]
    recorded_ids = Counter(d.message_id for d in sent)
    for message_id, n in recorded_ids.items():
        if message_id is None or n > 1:
            problems.append(f"{n} sent digests recorded with Message-ID {message_id!r}")
    received = list(sink.received)
    by_id = Counter(r.message_id for r in received)
    duplicates = sum(n - 1 for n in by_id.values())
    # which kill made each message go out again: the one that ended the run its first copy reached
    resent_after = Counter(
        next((f"{r.plan} kill at {r.phase}" for r in runs if r.started <= first.at <= r.ended), "?")
        for message_id, n in by_id.items()
        if n > 1
        for first in [next(x for x in received if x.message_id == message_id)]
    )
    for message_id in set(recorded_ids) - set(by_id):
        problems.append(f"sent digest with Message-ID {message_id} never reached the SMTP server")
    for message_id in set(by_id) - set(recorded_ids):
        r = next(r for r in received if r.message_id == message_id)
        problems.append(
            f"the SMTP server got a message no sent digest records (a digest delivered twice under "
            f"different Message-IDs?): {message_id}, {r.subject!r}, {len(r.urls)} stories, "
            f"received at virtual {clock.at(r.at):%m-%d %H:%M} from {run_of(r.at)}"
        )
    hit_urls = {h.id: h[3] for h in hits}
    digest_of = {d.message_id: d.id for d in sent}
    listed: Counter[str] = Counter()
    for message_id in by_id:
        if message_id not in digest_of:
            continue
        message = next(r for r in received if r.message_id == message_id)
        own = {hit_urls.get(hit) for digest, hit in carried_rows if digest == digest_of[message_id]}
        for story in message.urls:
            listed[story] += 1
            if story not in own:
                problems.append(f"message {message_id} lists {story}, not a hit its digest carries")
    for story, n in listed.items():
        if n > 1:
            problems.append(f"{story} is listed in {n} digests")

    reached = Counter(r.phase for r in killed)
    for phase in PHASES:
        if not reached[phase]:
            problems.append(f"harness: no kill landed in {phase} (did the daemon's log lines change?)")

    integrity, integrity_notes = integrity_problems(engine, kind)
    problems += integrity

    statuses_served = Counter(a.status for a in server.answers)
    report: dict[str, Any] = {
        "database": kind,
        "speed": round(clock.speed),
        "replay_real_seconds": REPLAY_SECONDS,
        "virtual_window": [clock.dt(clock.v0).isoformat(), stop.isoformat()],
        "kills": len(killed),
        "kills_by_phase": dict(Counter(r.phase for r in killed)),
        "kills_by_plan": dict(Counter(r.plan for r in killed)),
        "kills_at_their_trigger": sum(r.triggered for r in killed),
        "smtp_kills": dict(Counter(sink.fired)),
        "restarts": len(runs) - 1,
        "final_exit_code": final.returncode,
        "feed_answers": {str(k): v for k, v in sorted(statuses_served.items())},
        "polls_served": len({a.poll for a in server.answers if a.status == 200}),
        "polls_in_corpus": len(server.polls),
        "page_requests": server.page_requests,
        "items_published": len(owed) + len(maybe),
        "items_lost_with_an_unrecorded_poll": lost,
        "items_checked": len(owed) + len(maybe) - lost,
        "articles": len(articles),
        "article_states": dict(states),
        "expected_hits": len(expected),
        "hits": sum(actual.values()),
        "digest_days": len(days),
        "digests": dict(statuses),
        "catch_up_digests": catch_ups,
        "messages_received": len(received),
        "distinct_message_ids": len(by_id),
        "duplicate_deliveries": duplicates,
        "duplicate_deliveries_after": dict(resent_after),
        "stories_listed": sum(listed.values()),
        "integrity": integrity_notes,
        "problems": len(problems),
        "runs": [
            {
                "run": r.index,
                "plan": r.plan,
                "at_trigger": r.triggered,
                "phase": r.phase,
                "uptime_seconds": round(r.ended - r.started, 2),
                "virtual_end": clock.at(r.ended).isoformat(),
                "return_code": r.returncode,
                "last_line": r.last_line,
            }
            for r in runs
        ],
    }
    return report, problems


#: (table, column, referenced table): a row whose reference leads nowhere is an orphan
_REFERENCES = [
    ("entries", "article_id", "articles"),
    ("entries", "feed_id", "feeds"),
    ("articles", "feed_id", "feeds"),
    ("articles", "story_id", "stories"),
    ("stories", "representative_id", "articles"),
    ("hits", "article_id", "articles"),
    ("hits", "topic_id", "topics"),
    ("digest_items", "digest_id", "digests"),
    ("digest_items", "hit_id", "hits"),
    ("digests", "subscription_id", "subscriptions"),
    ("article_bands", "article_id", "articles"),
    ("article_fingerprints", "article_id", "articles"),
    ("article_fingerprints", "story_id", "stories"),
]
#: (table, columns) that must be unique
_UNIQUE = [
    ("articles", "url_hash"),
    ("entries", "feed_id, key_hash"),
    ("hits", "topic_id, article_id"),
    ("digest_items", "digest_id, hit_id"),
    ("article_bands", "band_key, article_id"),
    ("article_fingerprints", "article_id"),
    ("feeds", "name"),
    ("topics", "name"),
    ("subscriptions", "name"),
]
#: (what, query counting offending rows): run on both databases
_CONSISTENCY = [
    *(
        (
            f"{table}.{column} pointing nowhere",
            f"SELECT count(*) FROM {table} x LEFT JOIN {parent} p ON p.id = x.{column} "
            f"WHERE x.{column} IS NOT NULL AND p.id IS NULL",
        )
        for table, column, parent in _REFERENCES
    ),
    *(
        (
            f"duplicate {table} ({columns})",
            f"SELECT count(*) FROM (SELECT {columns} FROM {table} GROUP BY {columns} HAVING count(*) > 1) x",
        )
        for table, columns in _UNIQUE
    ),
    (
        "stories with no article",
        "SELECT count(*) FROM stories s WHERE NOT EXISTS (SELECT 1 FROM articles a WHERE a.story_id = s.id)",
    ),
    (
        "matched articles without a story",
        "SELECT count(*) FROM articles WHERE state = 'matched' AND story_id IS NULL",
    ),
]


def integrity_problems(engine: sa.Engine, kind: str) -> tuple[list[str], dict[str, Any]]:
    problems: list[str] = []
    notes: dict[str, Any] = {}
    with engine.connect() as conn:
        for what, query in _CONSISTENCY:
            n = conn.exec_driver_sql(query).scalar()
            if n:
                problems.append(f"integrity: {n} {what}")
        notes["consistency_queries"] = len(_CONSISTENCY)
        if kind == "sqlite":
            result = [row[0] for row in conn.exec_driver_sql("PRAGMA integrity_check").all()]
            if result != ["ok"]:
                problems.append(f"integrity: PRAGMA integrity_check says {result[:5]}")
            fk = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
            if fk:
                problems.append(f"integrity: PRAGMA foreign_key_check finds {len(fk)} rows, e.g. {fk[:3]}")
            notes["sqlite"] = "integrity_check, foreign_key_check"
    if kind == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            if conn.exec_driver_sql("SELECT 1 FROM pg_available_extensions WHERE name = 'amcheck'").first():
                conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS amcheck")
                indexes = (
                    conn.exec_driver_sql(
                        "SELECT c.oid::regclass::text FROM pg_index i "
                        "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE am.amname = 'btree' AND n.nspname = 'public'"
                    )
                    .scalars()
                    .all()
                )
                for index in indexes:
                    try:
                        conn.exec_driver_sql(f"SELECT bt_index_check('{index}'::regclass, true)")
                    except sa.exc.DBAPIError as exc:
                        problems.append(f"integrity: bt_index_check({index}): {str(exc).splitlines()[0]}")
                notes["amcheck_indexes"] = len(indexes)
            else:
                notes["amcheck_indexes"] = "amcheck not available"
    return problems, notes


def publish(report: dict[str, Any], problems: list[str]) -> None:
    """Print the figures (pytest -s shows them; a failure shows them too) and add them to the JSON report."""
    kills = ", ".join(f"{k} {v}" for k, v in sorted(report["kills_by_phase"].items()))
    print(
        f"\nchaos on {report['database']}: {report['kills']} kills -9 survived ({kills}; "
        f"{report['kills_at_their_trigger']} at the moment looked for, SMTP {report['smtp_kills']}), "
        f"final exit {report['final_exit_code']}\n"
        f"  {report['polls_served']}/{report['polls_in_corpus']} polls served, feed answers "
        f"{report['feed_answers']}, {report['page_requests']} page requests\n"
        f"  items: {report['items_published']} published, {report['items_checked']} checked stored once, "
        f"{report['items_lost_with_an_unrecorded_poll']} lost with a poll killed before it was recorded; "
        f"articles {report['article_states']}\n"
        f"  hits: {report['hits']} stored, {report['expected_hits']} expected\n"
        f"  digests: {report['digests']} over {report['digest_days']} days "
        f"({report['catch_up_digests']} days caught up by the next digest); messages: "
        f"{report['messages_received']} received, {report['distinct_message_ids']} distinct Message-IDs, "
        f"{report['duplicate_deliveries']} delivered twice ({report['duplicate_deliveries_after']}); "
        f"{report['stories_listed']} stories listed\n"
        f"  integrity: {report['integrity']}; runtime {report.get('runtime_seconds')} s; "
        f"{len(problems)} problems"
    )
    for problem in problems:
        print(f"  PROBLEM: {problem}")
    target = os.environ.get("MONITOR_CHAOS_REPORT")
    if target:
        path = Path(target)
        combined: dict[str, Any] = {}
        with suppress(FileNotFoundError, json.JSONDecodeError):
            combined = json.loads(path.read_text(encoding="utf-8"))
        combined[report["database"]] = {**report, "problem_list": problems}
        path.write_text(json.dumps(combined, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def test_the_kill_classification_reads_the_daemon_log() -> None:
    line = "2026-01-02 03:04:05,678 INFO {}: {}"
    assert phase_of(None) == "startup"
    assert phase_of(line.format("monitor.fetch", f"GET http://127.0.0.1:1{FEED_PATH} 200")) == "polling"
    assert phase_of(line.format("monitor.fetch", "GET http://127.0.0.1:1/world/a 200")) == "extraction"
    assert phase_of(line.format("chaos", "chaos: settle url=http://x/")) == "matching"
    assert phase_of(line.format("monitor.pipeline", "hit url=http://x/ topic=1 score=0.5")) == "matching"
    assert phase_of(line.format("chaos", "chaos: smtp data")) == "digest"
    assert phase_of(line.format("monitor.scheduler", "digest sent subscription=morning hits=2")) == "idle"
