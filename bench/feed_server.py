"""Many feeds on many loopback sites, for bench/polling.py and bench/latency.py.

Run by those benchmarks as a subprocess, so that serving never takes the measured process's time. Every
feed is built from a real feed: the 56 captures of the Wall Street Journal's World News RSS in
../shared/corpus/feeds/timeseries/wsj_world/ (4 a day, so consecutive captures share most items), cut to
``--items`` items, with each item's link made the feed's own (feed n's items are its own articles). Feed n is
served at /feeds/n.xml on site n % --hosts, each site a loopback address of its own (127.1.x.y), so that the
fetcher's per-site limits apply as across many publishers.

* A steady feed always serves the same capture, with an ETag, and answers a conditional GET with 304.
* With ``--changing-every M``, every M-th feed (n % M == 0) is updated between any two requests: each
  request gets the next capture (new items in, old ones out) under a new ETag.
* With ``--schedule FILE`` (JSON: [[feed, seconds], ...]), new items appear during the run: an item appears
  in its feed's document (first in the list, under a new ETag) once that many seconds have passed since the
  server started; its link is an article page (the real Kremlin pages of
  ../shared/corpus/articles/kremlin/, in turn), served like the feeds. New items are published at the
  second they appear.

Usage: python bench/feed_server.py --feeds N --hosts H [--items K] [--changing-every M] [--schedule FILE]

It prints one JSON line once every site listens: {"started": epoch seconds the schedule counts from,
"feeds": [feed URLs]}, then serves until its standard input is closed. HTTP/1.1 with keep-alive; no gzip
(the pages are small, and compression is not what these benchmarks measure).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
CAPTURES = CORPUS / "feeds" / "timeseries" / "wsj_world"
PAGES = CORPUS / "articles" / "kremlin" / "html"
_ITEM = re.compile(rb"<item>.*?</item>", re.S)
_LINK = re.compile(rb"<link>(.*?)</link>", re.S)
_GUID = re.compile(rb"<guid[^>]*>(.*?)</guid>", re.S)
_PAGE_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.S | re.I)


def host(site: int) -> str:
    """The loopback address of site ``site`` (127.1.0.0 and up)."""
    return f"127.1.{site // 256}.{site % 256}"


@dataclass(frozen=True, slots=True)
class Capture:
    """One capture of the real feed: the channel around its items, and its items."""

    head: bytes
    items: list[bytes]
    tail: bytes


def load_captures(items: int) -> list[Capture]:
    captures = []
    for path in sorted(CAPTURES.glob("*.xml")):
        document = path.read_bytes()
        found = list(_ITEM.finditer(document))
        captures.append(
            Capture(
                document[: found[0].start()],
                [m.group() for m in found[:items]],
                document[found[-1].end() :],
            )
        )
    return captures


def own_item(item: bytes, base: str, feed: int) -> bytes:
    """The item made the feed's own: its link on the feed's site, its guid prefixed with the feed."""

    def link(m: re.Match[bytes]) -> bytes:
        slug = m.group(1).strip().decode("utf-8", "replace").rstrip("/").rsplit("/", 1)[-1]
        return b"<link>" + escape(f"{base}/f{feed}/{slug}").encode() + b"</link>"

    def guid(m: re.Match[bytes]) -> bytes:
        return m.group().replace(m.group(1), f"f{feed}-".encode() + m.group(1).strip())

    return _GUID.sub(guid, _LINK.sub(link, item))


@dataclass
class Feed:
    number: int
    base: str
    capture: int
    changing: bool
    #: items that appeared during the run, newest first: (seconds after start, item XML)
    appeared: list[bytes] = field(default_factory=list)
    version: int = 0


class Server:
    def __init__(self, args: argparse.Namespace, bases: list[str]) -> None:
        self.captures = load_captures(args.items)
        self.feeds = [
            Feed(
                n,
                bases[n % args.hosts],
                n % len(self.captures),
                bool(args.changing_every) and n % args.changing_every == 0,
            )
            for n in range(args.feeds)
        ]
        self.pages = [p.read_bytes() for p in sorted(PAGES.glob("*.html"))]
        self.schedule: list[tuple[float, int]] = []
        if args.schedule:
            self.schedule = sorted((float(s), int(f)) for f, s in json.loads(Path(args.schedule).read_text()))
        self.started = time.time()
        #: article pages of items that appeared: path → page
        self.articles: dict[str, bytes] = {}
        self._due = 0

    def _publish_due(self) -> None:
        """Put every scheduled item whose time has come into its feed."""
        now = time.time() - self.started
        while self._due < len(self.schedule) and self.schedule[self._due][0] <= now:
            at, number = self.schedule[self._due]
            feed = self.feeds[number]
            page = self.pages[self._due % len(self.pages)]
            path = f"/f{number}/new/{self._due}.html"
            self.articles[path] = page
            title = _PAGE_TITLE.search(page)
            published = format_datetime(datetime.fromtimestamp(self.started + at, UTC), usegmt=True)
            feed.appeared.insert(
                0,
                b"<item><title>"
                + (title.group(1).strip() if title else b"News")
                + b"</title><link>"
                + f"{feed.base}{path}".encode()
                + b"</link><guid>"
                + f"{feed.base}{path}".encode()
                + b"</guid><pubDate>"
                + published.encode()
                + b"</pubDate></item>",
            )
            feed.version += 1
            self._due += 1

    def document(self, feed: Feed) -> tuple[bytes, bytes]:
        """The feed's document now, and its ETag."""
        if feed.changing:
            feed.capture = (feed.capture + 1) % len(self.captures)
            feed.version += 1
        capture = self.captures[feed.capture]
        items = [own_item(i, feed.base, feed.number) for i in capture.items]
        body = capture.head + b"".join(feed.appeared) + b"".join(items) + capture.tail
        return body, f'"{feed.number}-{feed.capture}-{feed.version}"'.encode()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request, _, headers = head.partition(b"\r\n")
                target = request.split(b" ")[1].split(b"?", 1)[0].decode("latin-1")
                self._publish_due()
                writer.write(self.answer(target, headers))
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    def answer(self, target: str, headers: bytes) -> bytes:
        if target.startswith("/feeds/") and target.endswith(".xml"):
            number = int(target[7:-4])
            if 0 <= number < len(self.feeds):
                body, etag = self.document(self.feeds[number])
                asked = re.search(rb"(?im)^if-none-match:\s*([^\r\n]*)", headers)
                if asked is not None and asked.group(1).strip() == etag:
                    return b"HTTP/1.1 304 Not Modified\r\nETag: " + etag + b"\r\nContent-Length: 0\r\n\r\n"
                return _ok(body, b"application/rss+xml", etag)
        if (page := self.articles.get(target)) is not None:
            return _ok(page, b"text/html; charset=utf-8")
        return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


def _ok(body: bytes, content_type: bytes, etag: bytes | None = None) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: "
        + content_type
        + (b"\r\nETag: " + etag if etag else b"")
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


async def serve(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.hosts + 1024)), hard))
    handler: list[Server] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await handler[0].handle(reader, writer)

    first = await asyncio.start_server(handle, host(0), 0)
    port = first.sockets[0].getsockname()[1]
    for site in range(1, args.hosts):
        await asyncio.start_server(handle, host(site), port)
    bases = [f"http://{host(site)}:{port}" for site in range(args.hosts)]
    server = Server(args, bases)
    handler.append(server)
    feeds = [f"{bases[n % args.hosts]}/feeds/{n}.xml" for n in range(args.feeds)]
    print(json.dumps({"started": server.started, "feeds": feeds}))
    sys.stdout.flush()
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, required=True)
    parser.add_argument("--hosts", type=int, required=True)
    parser.add_argument("--items", type=int, default=10)
    parser.add_argument("--changing-every", type=int, default=0)
    parser.add_argument("--schedule", type=Path)
    args = parser.parse_args()
    # serve until the benchmark closes our standard input (or dies)
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    asyncio.run(serve(args))


def launch(**options: object) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """This server in a subprocess, given ``--name=value`` for each option (``changing_every=10``), once
    every site listens; returns it and its first line (``started`` and ``feeds``). Closing its standard
    input stops it."""
    arguments = [f"--{name.replace('_', '-')}={value}" for name, value in options.items()]
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *arguments],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    return server, json.loads(server.stdout.readline())


if __name__ == "__main__":
    main()
