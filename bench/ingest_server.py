"""The sites bench/ingest.py polls: real article pages and RSS feeds built from them, on loopback.

Run by bench/ingest.py as a subprocess, so that serving never takes the measured process's GIL. The pages
are the real ones of ../shared/corpus/articles/ (aeb, trafilatura_eval, kremlin: 270 pages), repeated under
distinct URLs up to ``--articles``; every ``--per-feed`` consecutive articles make one RSS feed, and each
feed is a site of its own, on its own loopback address (127.0.0.10, .11, ...), so no site shows one page
twice and the fetcher's per-host limits apply as they would across many publishers. Pages are sent
gzip-compressed when the client accepts it (compressed once at start), over HTTP/1.1 keep-alive.

Usage: python bench/ingest_server.py --articles N --per-feed M

It prints one JSON line, {"bases": [base URL of each feed's site], "feeds": [feed URLs]}, once every site
listens, then serves until its standard input is closed.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import html
import json
import os
import re
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "articles"
#: the first loopback address a feed's site is served on; feed n is on 127.0.0.(FIRST_HOST + n)
FIRST_HOST = 10
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.S | re.I)
_DESCRIPTION = re.compile(
    rb"<meta[^>]+(?:name|property)\s*=\s*[\"'](?:og:)?description[\"'][^>]*content\s*=\s*\"([^\"]*)\"",
    re.S | re.I,
)


@dataclass(frozen=True, slots=True)
class RealPage:
    slug: str
    body: bytes
    title: str
    summary: str


def load_pages() -> list[RealPage]:
    """The real article pages of the corpus, in a fixed order."""
    files = sorted((CORPUS / "aeb" / "html").glob("*.html.gz"))
    files += sorted((CORPUS / "trafilatura_eval" / "html").glob("*.html"))
    files += sorted((CORPUS / "kremlin" / "html").glob("*.html"))
    pages = []
    for file in files:
        body = gzip.decompress(file.read_bytes()) if file.suffix == ".gz" else file.read_bytes()
        slug = re.sub(r"[^A-Za-z0-9]+", "-", file.name.removesuffix(".gz").removesuffix(".html"))[:40]
        pages.append(RealPage(slug.strip("-"), body, _meta(_TITLE, body), _meta(_DESCRIPTION, body)))
    return pages


def _meta(pattern: re.Pattern[bytes], body: bytes) -> str:
    found = pattern.search(body[:200_000])
    return " ".join(html.unescape(found.group(1).decode("utf-8", "replace")).split()) if found else ""


def host(feed: int) -> str:
    return f"127.0.0.{FIRST_HOST + feed}"


def feed_count(articles: int, per_feed: int) -> int:
    return -(-articles // per_feed)


def article_path(article: int, pages: list[RealPage], per_feed: int) -> str:
    """Where article number ``article`` (page ``article % len(pages)``) is served on its feed's site."""
    return f"/news/{article // per_feed}/{article}-{pages[article % len(pages)].slug}.html"


def feed_xml(
    feed: int, base: str, articles: int, per_feed: int, pages: list[RealPage], now: datetime
) -> bytes:
    items = []
    for article in range(feed * per_feed, min(articles, (feed + 1) * per_feed)):
        page = pages[article % len(pages)]
        url = base + article_path(article, pages, per_feed)
        published = format_datetime(now - timedelta(minutes=article), usegmt=True)
        items.append(
            f"<item><title>{html.escape(page.title or page.slug)}</title><link>{url}</link>"
            f'<guid isPermaLink="true">{url}</guid><pubDate>{published}</pubDate>'
            f"<description>{html.escape(page.summary)}</description></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>Bench site {feed}</title><link>{base}/</link><description>bench feed {feed}</description>"
        + "".join(items)
        + "</channel></rss>\n"
    ).encode()


class Site:
    """Every page and feed, by path (paths are unique across the sites), plain and gzip-compressed."""

    def __init__(self) -> None:
        self.paths: dict[str, tuple[bytes, bytes, bytes]] = {}

    def put(self, path: str, body: bytes, content_type: str, compressed: bytes | None = None) -> None:
        self.paths[path] = (body, compressed or gzip.compress(body, 6), content_type.encode())

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request, _, headers = head.partition(b"\r\n")
                target = request.split(b" ")[1].split(b"?", 1)[0].decode("latin-1")
                found = self.paths.get(target)
                if found is None:
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                else:
                    plain, compressed, content_type = found
                    gzipped = re.search(rb"(?im)^accept-encoding:[^\r\n]*gzip", headers) is not None
                    body = compressed if gzipped else plain
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: "
                        + content_type
                        + (b"\r\nContent-Encoding: gzip" if gzipped else b"")
                        + b"\r\nContent-Length: "
                        + str(len(body)).encode()
                        + b"\r\n\r\n"
                        + body
                    )
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()


async def serve(articles: int, per_feed: int) -> None:
    pages = load_pages()
    site = Site()
    feeds = feed_count(articles, per_feed)
    servers = [await asyncio.start_server(site.handle, host(f), 0) for f in range(feeds)]
    bases = [f"http://{host(f)}:{s.sockets[0].getsockname()[1]}" for f, s in enumerate(servers)]
    compressed = [gzip.compress(p.body, 6) for p in pages]
    for article in range(articles):
        index = article % len(pages)
        path = article_path(article, pages, per_feed)
        site.put(path, pages[index].body, "text/html", compressed[index])
    now = datetime.now(UTC).replace(microsecond=0)
    for f, base in enumerate(bases):
        site.put(f"/feeds/{f}.xml", feed_xml(f, base, articles, per_feed, pages, now), "application/rss+xml")
    print(json.dumps({"bases": bases, "feeds": [f"{b}/feeds/{f}.xml" for f, b in enumerate(bases)]}))
    sys.stdout.flush()
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, required=True)
    parser.add_argument("--per-feed", type=int, default=50)
    args = parser.parse_args()
    # serve until the benchmark closes our standard input (or dies)
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    asyncio.run(serve(args.articles, args.per_feed))


if __name__ == "__main__":
    main()
