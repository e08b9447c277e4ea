"""Editing feeds.yaml from the CLI (comments and order kept), OPML in and out, finding a site's feeds."""

import asyncio
import shutil
from pathlib import Path

import pytest

from monitor import feedlist
from monitor.config import load_config
from monitor.demo import PLACEHOLDER, SITE
from monitor.errors import AlreadyExistsError, ConfigError, FeedParseError, NotFoundError
from monitor.fetch import Fetcher

from conftest import LOOPBACK

SHIPPED = Path(__file__).resolve().parents[1] / "feeds.yaml"

OPML = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="1.0">
  <head><title>Exported from a feed reader</title></head>
  <body>
    <outline text="World News" title="World News">
      <outline type="rss" text="BBC News - World" title="BBC News - World"
               xmlUrl="https://feeds.bbci.co.uk/news/world/rss.xml" htmlUrl="https://www.bbc.co.uk/news"/>
      <outline type="rss" text="Le Monde" xmlUrl="https://www.lemonde.fr/international/rss_full.xml"/>
    </outline>
    <outline type="rss" text="Hacker News" xmlUrl="https://news.ycombinator.com/rss"/>
    <outline type="rss" text="Old gopher" xmlUrl="gopher://example.org/feed"/>
    <outline text="An empty folder"/>
  </body>
</opml>
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "feeds.yaml"
    shutil.copy(SHIPPED, path)
    return path


def _comments(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("#")]


def test_add_and_remove_keep_comments_order_and_layout(config_file):
    before = config_file.read_text()
    names_before = [f.name for f in load_config(config_file).feeds]
    added = feedlist.add_feed(config_file, "https://www.example.com/rss.xml", tags=["world"], interval="1h")
    assert added.name == "example-com" and added.tags == ["world"]
    after = config_file.read_text()
    assert _comments(after) == _comments(before)
    assert [f.name for f in load_config(config_file).feeds] == [*names_before, "example-com"]
    assert after.startswith(before.split("subscriptions:")[0].rstrip("\n"))  # untouched up to the new feed

    feedlist.remove_feed(config_file, "example-com")
    assert config_file.read_text() == before


def test_a_bad_edit_changes_nothing(config_file):
    before = config_file.read_bytes()
    with pytest.raises(AlreadyExistsError):
        feedlist.add_feed(config_file, "https://x.example/rss", name="bbc-world")
    with pytest.raises(ConfigError, match=r"already in feeds\.yaml as 'bbc-world'"):
        feedlist.add_feed(config_file, "https://feeds.bbci.co.uk/news/world/rss.xml")
    with pytest.raises(ConfigError, match=r"line \d+, feeds\[\d+\]\.url: not an http\(s\) URL"):
        feedlist.add_feed(config_file, "ftp://x.example/rss", name="x")
    with pytest.raises(ConfigError, match="interval"):
        feedlist.add_feed(config_file, "https://x.example/rss", name="x", interval="1s")
    with pytest.raises(NotFoundError):
        feedlist.remove_feed(config_file, "no-such-feed")
    assert config_file.read_bytes() == before


def test_opml_import_takes_folders_as_tags_and_skips_what_it_cannot_use(tmp_path):
    path = tmp_path / "feeds.yaml"
    path.write_text("# my feeds\nfeeds:\n  - name: hn\n    url: https://news.ycombinator.com/rss\n")
    result = feedlist.import_opml(path, OPML, source="reader.opml")
    assert [(f.name, f.url, f.tags) for f in result.added] == [
        ("bbc-news-world", "https://feeds.bbci.co.uk/news/world/rss.xml", ["world-news"]),
        ("le-monde", "https://www.lemonde.fr/international/rss_full.xml", ["world-news"]),
    ]
    assert result.skipped == [
        ("https://news.ycombinator.com/rss", "already in feeds.yaml"),
        ("gopher://example.org/feed", "not an http(s) URL"),
    ]
    assert path.read_text().startswith("# my feeds\n")
    with pytest.raises(FeedParseError, match=r"reader.opml: .*not OPML: the document is <rss>"):
        feedlist.import_opml(path, b"<rss/>", source="reader.opml")
    with pytest.raises(FeedParseError, match="not valid OPML"):
        feedlist.import_opml(path, b"<opml><body>", source="reader.opml")


def test_opml_export_then_import_gives_the_same_feeds(config_file, tmp_path):
    config = load_config(config_file)
    opml = feedlist.export_opml(config)
    fresh = tmp_path / "fresh.yaml"
    result = feedlist.import_opml(fresh, opml, source="export")
    assert [(f.url, f.tags[:1]) for f in result.added] == [(f.url, f.tags[:1]) for f in config.feeds]
    assert [f.name for f in result.added] == [f.name for f in config.feeds]


def test_discover_finds_announced_feeds_or_the_usual_places(site):
    site.put_tree(SITE, replace={PLACEHOLDER: site.base_url.encode()})
    site.put("/plain/", "<html><body><p>No feed links here.</p></body></html>", "text/html")
    site.put("/plain/feed.xml", (SITE / "eastwire" / "feed.xml").read_bytes(), "application/rss+xml")

    async def discover(url):
        async with Fetcher(LOOPBACK) as fetcher:
            return await feedlist.discover_feeds(fetcher, url)

    [announced] = asyncio.run(discover(site.url("/eastwire/2026/11/wildfire-evacuations.html")))
    assert announced.url == site.url("/eastwire/feed.xml") and announced.entries == 5
    [probed] = asyncio.run(discover(site.url("/plain/")))
    assert probed.url == site.url("/plain/feed.xml")
    [itself] = asyncio.run(discover(site.url("/eastwire/feed.xml")))
    assert itself.title and itself.entries == 5
