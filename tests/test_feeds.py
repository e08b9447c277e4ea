"""Feed documents → entries, on real feeds from ../shared/corpus."""

import asyncio

import pytest

from monitor.errors import FeedParseError
from monitor.feeds import html_to_text, parse_feed
from monitor.fetch import Fetcher
from monitor.urls import canonical_url

from conftest import LOOPBACK, corpus_path


def parse(*parts, url="https://example.org/feed.xml", content_type=None):
    return parse_feed(corpus_path("feeds", *parts).read_bytes(), url=url, content_type=content_type)


def test_guid_is_the_key_and_dates_are_utc():
    feed = parse("timeseries", "wsj_world", "2025-08-26T041532Z.xml")
    first = feed.entries[0]
    assert first.key == "WP-WSJ-0002882886"
    assert (
        first.url
        == "https://archive.is/newest/https://www.wsj.com/world/ukraine-kyiv-jellyfish-museum-868e50b3"
    )
    assert first.published.isoformat() == "2025-08-26T03:00:00+00:00"
    assert first.author == "Isabel Coles" and feed.title == "WSJ.com: World News"


def test_no_guid_falls_back_to_the_canonical_link():
    feed = parse("news", "miniflux", "heise_online_rdf_utf8.xml")
    assert len(feed.entries) == 60
    assert all(e.key == canonical_url(e.url) for e in feed.entries)
    assert len({e.key for e in feed.entries}) == 60
    assert all(e.published is None for e in feed.entries)  # the feed carries no dates at all


def test_relative_links_are_resolved_against_the_feed():
    feed = parse("quirks", "relative_urls_1.xml", url="https://insanity.industries/index.xml")
    assert all(e.url.startswith("https://insanity.industries/") for e in feed.entries)


def test_feedburner_origlink_beats_the_tracking_link():
    feed = parse("news", "react-native-rss-parser", "reuters_world_news.xml")
    assert feed.entries and all("feedproxy" not in e.url for e in feed.entries)


def test_legacy_charsets_are_decoded():
    golem = parse("news", "miniflux", "golem_de_iso-8859-1.xml")
    assert any(ch in e.title + e.summary for e in golem.entries for ch in "äöüß")
    qq = parse("news", "rss-parser", "qq_news_gb2312.xml")
    assert any("\u4e00" <= ch <= "\u9fff" for e in qq.entries for ch in e.title)


def test_a_bozo_feed_with_entries_is_accepted_with_a_warning():
    feed = parse("news", "feedjira", "techcrunch.xml")
    assert len(feed.entries) == 20 and feed.warning


def test_entry_text_is_plain_text_without_scripts():
    feed = parse("news", "kremlin", "kremlin_president_news_feed.atom")
    summary = feed.entries[0].summary
    assert summary.startswith("During his working trip") and "<" not in summary
    assert html_to_text("<p>One</p><p>Two<script>x()</script></p>") == "One\n\nTwo"


def test_titles_given_as_html_are_text_and_scripts_leave_no_text():
    escaped = parse("feedparser", "wellformed", "atom10", "entry_title_escaped_markup.xml")
    assert escaped.entries[0].title == "Example Atom"
    xhtml = parse("feedparser", "wellformed", "base", "malformed_base.xml")
    assert xhtml.entries[0].title == "Example test"
    atom = b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><title type="text">The &lt;blink&gt; tag'
    plain = parse_feed(atom + b"</title></entry></feed>", url="https://example.org/feed.xml")
    assert plain.entries[0].title == "The <blink> tag"  # a plain-text title keeps its brackets
    crazy = parse("feedparser", "wellformed", "sanitize", "item_description_crazy.xml").entries[0]
    assert "Javascript Execute" in crazy.summary and "executeMe" not in crazy.summary + crazy.title


def ingest(url):
    """Fetch a feed URL and parse what comes back, as the poll stage does."""

    async def fetch():
        async with Fetcher(LOOPBACK) as fetcher:
            return await fetcher.fetch_feed(url)

    fetched = asyncio.run(fetch())
    return parse_feed(fetched.content, url=fetched.final_url, content_type=fetched.content_type)


def test_an_html_page_offers_the_feeds_it_links_to(site):
    page = (
        b"<!DOCTYPE html><html><head><title>Eastwire</title>"
        b'<link rel="alternate" type="application/rss+xml" title="Top" href="/eastwire/feed.xml">'
        b'<link rel="alternate" type="application/atom+xml" href="https://cdn.example.org/atom">'
        b'<link rel="stylesheet" href="/x.css"></head><body><p>News</p></body></html>'
    )
    url = site.put("/eastwire/", page, "text/html; charset=utf-8")
    with pytest.raises(FeedParseError) as caught:
        ingest(url)
    linked = (site.url("/eastwire/feed.xml"), "https://cdn.example.org/atom")
    assert str(caught.value) == (
        f"{url}: not a usable feed: an HTML page, not an RSS/Atom feed; it links to these feeds: "
        + ", ".join(linked)
    )
    assert caught.value.kind == "html" and caught.value.linked_feeds == linked


@pytest.mark.parametrize(
    ("body", "kind", "reason"),
    [
        (b"", "empty", "the response body is empty"),
        (b" \r\n\t ", "empty", "the response body is empty"),
        (
            b"<!DOCTYPE html><html><head><title>Home</title></head><body><p>Hello</p></body></html>",
            "html",
            "an HTML page, not an RSS/Atom feed",
        ),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "parse", "malformed XML"),
        (b'{"version": "https://jsonfeed.org/version/1"}', "parse", "malformed XML"),
    ],
)
def test_unusable_documents_raise_a_clear_error(body, kind, reason):
    """(Served over HTTP, these and others are in test_pipeline.py::test_an_unusable_feed_fails_alone.)"""
    with pytest.raises(FeedParseError, match=reason) as caught:
        parse_feed(body, url="https://example.org/feed")
    assert caught.value.kind == kind and str(caught.value).startswith(
        "https://example.org/feed: not a usable"
    )


def test_an_entity_expansion_bomb_is_not_expanded():
    """A billion-laughs DTD: expat refuses the amplification, and the loose parse leaves it unexpanded."""
    levels = b"".join(
        b'<!ENTITY %s "%s">' % (bytes([98 + i]), (b"&" + bytes([97 + i]) + b";") * 10) for i in range(9)
    )
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "' + b"x" * 100 + b'">' + levels + b"]>"
        b'<rss version="2.0"><channel><title>&j;</title>'
        b"<item><title>Putin meets Xi</title><link>https://example.org/a</link></item></channel></rss>"
    )
    feed = parse_feed(bomb, url="https://example.org/feed")  # 10^9 x's would be a gigabyte
    assert [e.title for e in feed.entries] == ["Putin meets Xi"]
    assert len(feed.title or "") < 100 and "amplification" in (feed.warning or "")


def test_invalid_utf8_is_read_as_a_fallback_charset_with_a_warning():
    body = (
        b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
        b"<item><title>caf\xe9 talks</title><link>https://example.org/a</link></item></channel></rss>"
    )
    feed = parse_feed(body, url="https://example.org/feed")
    assert [e.title for e in feed.entries] == ["café talks"] and "windows-1252" in (feed.warning or "")


def test_an_external_entity_is_not_read():
    body = (
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>'
        b'<rss version="2.0"><channel><title>t</title><item><title>a &xxe;</title>'
        b"<link>https://example.org/a</link><description>b &xxe;</description></item></channel></rss>"
    )
    feed = parse_feed(body, url="https://example.org/feed")
    assert [(e.title, e.summary) for e in feed.entries] == [("a", "b")]
