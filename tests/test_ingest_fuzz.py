"""Fuzzing feed ingest: whatever bytes arrive, parse_feed returns a ParsedFeed or raises FeedParseError.

Inputs are real feeds from ../shared/corpus mutated (byte flips, truncation, splices, inserted entities,
markup and control characters) and generated feed-like XML in assorted encodings.
"""

from html import escape

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.errors import FeedParseError
from monitor.feeds import parse_feed
from monitor.types import ParsedFeed

from conftest import corpus_path

URL = "https://example.org/feeds/news.xml"
#: corpus feeds up to this size are mutated (bigger ones only slow the run down)
MAX_SEED_BYTES = 64 * 1024
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/rss+xml",
        "application/atom+xml; charset=utf-8",
        "text/xml; charset=iso-8859-1",
        "application/xml; charset=utf-16",
        "text/html",
        "text/plain; charset=bogus",
        "application/octet-stream",
    ]
)
#: what gets inserted into a feed: entities (defined, undefined, out of range, expanding), markup that
#: opens or closes things, byte-order marks, control characters and invalid UTF-8
INSERTIONS = st.sampled_from(
    [
        b"&amp;",
        b"&nosuch;",
        b"&#0;",
        b"&#x110000;",
        b"&#xD800;",
        b"&#99999999999999999999;",
        b"&#x1B;",
        b'<!DOCTYPE rss [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>',
        b'<!DOCTYPE rss [<!ENTITY x SYSTEM "file:///etc/passwd">]>&x;',
        b"<!ENTITY e 'x'>",
        b"<![CDATA[",
        b"]]>",
        b"<!--",
        b"-->",
        b"<item>",
        b"</item>",
        b"<entry><title>t</title></entry>",
        b"</channel></rss>",
        b"<?xml version='1.0' encoding='utf-16'?>",
        b"<?xml version='1.0' encoding='no-such-charset'?>",
        b"<html><head><link rel='alternate' type='application/rss+xml' href='javascript:x'>",
        b"<script>alert(1)</script>",
        b'<a href="javascript:alert(1)" onclick="x()">',
        b"\x00",
        b"\x01\x02\x03",
        b"\x0b\x0c",
        b"\x1b[31m",
        b"\x7f",
        b"\xef\xbb\xbf",
        b"\xff\xfe",
        b"\xfe\xff\x00<",
        b"\xc3\x28",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\r\n\r\n",
        b"\xe2\x80\xa8",
    ]
)


@pytest.fixture(scope="module")
def seeds() -> tuple[list[bytes], list[bytes]]:
    """The corpus feeds to mutate: real publishers' feeds, and feedparser's (many, tiny) test documents."""
    root = corpus_path("feeds")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.stat().st_size <= MAX_SEED_BYTES)
    tests = [p.read_bytes() for p in files if p.relative_to(root).parts[0] == "feedparser"]
    return [p.read_bytes() for p in files if p.relative_to(root).parts[0] != "feedparser"], tests


def ingest(content: bytes, content_type: str | None) -> None:
    """parse_feed either succeeds or says why the body is not a feed; anything else fails the test."""
    try:
        feed = parse_feed(content, url=URL, content_type=content_type)
    except FeedParseError as exc:
        assert exc.url == URL and exc.kind in ("empty", "html", "parse")
        return
    assert isinstance(feed, ParsedFeed)
    for entry in feed.entries:  # one line each: safe in a mail header or a log line
        assert entry.key and (entry.url is None or entry.url.startswith(("http://", "https://")))
        for line in (entry.title, entry.author or "", feed.title or ""):
            assert "\n" not in line and "\r" not in line


#: where in a document a mutation happens, as a fraction of its length (integers would favour the start)
POSITIONS = st.floats(0, 1, exclude_max=True)


@st.composite
def mutated(draw: st.DrawFn, pools: tuple[list[bytes], list[bytes]]) -> bytes:
    """A corpus feed, from either pool with even odds, mutated one to four times."""
    seeds = draw(st.sampled_from(pools))
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        at = int(draw(POSITIONS) * len(data))
        operation = draw(st.sampled_from(["flip", "truncate", "splice", "insert", "bytes", "repeat"]))
        if operation == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif operation == "truncate":
            del data[at:]
        elif operation == "splice":
            other = draw(st.sampled_from(seeds))
            data[at:] = other[int(draw(POSITIONS) * len(other)) :]
        elif operation == "insert":
            data[at:at] = draw(INSERTIONS)
        elif operation == "bytes":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        elif operation == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 200))] * draw(st.integers(2, 50))
    return bytes(data)


@FUZZ
@given(data=st.data(), content_type=CONTENT_TYPES)
def test_mutated_corpus_feeds(
    seeds: tuple[list[bytes], list[bytes]], data: st.DataObject, content_type: str | None
) -> None:
    ingest(data.draw(mutated(seeds)), content_type)


#: any text, control characters and all (surrogates cannot be encoded, so they are left out)
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)
LINKS = st.one_of(
    st.sampled_from(
        [
            "https://example.org/a?b=c&d=e#f",
            "/relative/path",
            "../up",
            "//cdn.example.org/x",
            "javascript:alert(1)",
            "mailto:editor@example.org",
            "http://[::1",
            "https://exa mple.org/",
            "http://例え.jp/記事",
            "",
        ]
    ),
    TEXT,
)
DATES = st.one_of(
    st.sampled_from(
        [
            "Mon, 23 Nov 2026 07:00:00 GMT",
            "2026-11-23T07:00:00+01:00",
            "2020/1/10 14:33:00",
            "Tue, 31 Feb 2026 25:61:61 +9999",
            "0000-00-00T00:00:00Z",
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "-1",
        ]
    ),
    TEXT,
)


def value(text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Element content: escaped, raw (markup and entities as they come), CDATA, or an HTML fragment."""
    return st.one_of(
        text.map(escape),
        text,
        text.map(lambda t: f"<![CDATA[{t}]]>"),
        text.map(lambda t: f"&lt;p&gt;{escape(t)}&lt;script&gt;x()&lt;/script&gt;&lt;/p&gt;"),
    )


@st.composite
def generated(draw: st.DrawFn) -> bytes:
    """An RSS 2.0, Atom or RDF document with random channel and items, declared in some encoding and
    encoded in the same or another one."""
    kind = draw(st.sampled_from(["rss", "atom", "rdf"]))
    items = []
    for _ in range(draw(st.integers(0, 4))):
        fields = draw(
            st.lists(
                st.sampled_from(["title", "link", "guid", "description", "pubDate", "author", "content"]),
                max_size=7,
                unique=True,
            )
        )
        parts = []
        for field in fields:
            text = {"link": LINKS, "guid": LINKS, "pubDate": DATES}.get(field, TEXT)
            content = draw(value(text))
            if kind == "atom":
                tag = {"guid": "id", "pubDate": "updated", "description": "summary"}.get(field, field)
                if tag == "link":
                    parts.append(f'<link rel="alternate" href="{escape(content)}"/>')
                    continue
                if tag == "author":
                    content = f"<name>{content}</name>"
            else:
                tag = {"content": "content:encoded"}.get(field, field)
            parts.append(f"<{tag}>{content}</{tag}>")
        items.append("".join(parts))
    title = draw(value(TEXT))
    if kind == "atom":
        body = (
            f'<feed xmlns="http://www.w3.org/2005/Atom"><title>{title}</title>'
            + "".join(f"<entry>{item}</entry>" for item in items)
            + "</feed>"
        )
    elif kind == "rss":
        body = (
            '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>'
            f"<title>{title}</title>" + "".join(f"<item>{item}</item>" for item in items) + "</channel></rss>"
        )
    else:
        body = (
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/">'
            f"<channel><title>{title}</title></channel>"
            + "".join(f"<item>{item}</item>" for item in items)
            + "</rdf:RDF>"
        )
    declared = draw(st.sampled_from(["utf-8", "iso-8859-1", "utf-16", "windows-1251", "gb2312", "bogus"]))
    actual = draw(st.sampled_from(["utf-8", declared, "utf-16-le", "koi8-r"]))
    document = f'<?xml version="1.0" encoding="{declared}"?>\n{body}'
    try:
        return document.encode(actual, errors="xmlcharrefreplace")
    except LookupError:  # "bogus" is declared, never used to encode
        return document.encode("utf-8")


@FUZZ
@given(generated(), CONTENT_TYPES)
def test_generated_feeds(content: bytes, content_type: str | None) -> None:
    ingest(content, content_type)
