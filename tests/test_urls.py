"""Canonical article URLs: wrappers unwrapped, trackers dropped, one identity per article."""

import pytest

from monitor.feeds import parse_feed
from monitor.urls import canonical_url, page_url, site_of, unwrap_url

from conftest import corpus_path


@pytest.mark.parametrize(
    ("link", "identity"),
    [
        (
            "https://www.google.com/url?rct=j&sa=t&url=https://investorplace.com/2019/07/slack/&ct=ga&usg=AF",
            "https://investorplace.com/2019/07/slack/",
        ),
        (
            "https://archive.is/newest/https://www.wsj.com/world/russia/drone-attack-2f14c1aa",
            "https://www.wsj.com/world/russia/drone-attack-2f14c1aa",
        ),
        ("https://archive.ph/2024.01.02-030405/https://example.org/a", "https://example.org/a"),
        (
            "http://web.archive.org/web/20200101000000id_/http://example.com/a?utm_source=x&b=1",
            "http://example.com/a?b=1",
        ),
        (
            "https://l.facebook.com/l.php?u=https%3A%2F%2Fexample.org%2Fstory&h=AT0",
            "https://example.org/story",
        ),
        (
            "HTTPS://Example.ORG:443/world/story?b=2&a=1&utm_medium=rss&fbclid=zz&ocid=feed#comments",
            "https://example.org/world/story?a=1&b=2",
        ),
        ("http://www.reuters.com/article/x-idUSKBN1FJ23Z?feedType=RSS&feedName=worldNews", None),
    ],
)
def test_one_identity_per_article_whatever_the_wrapper(link, identity):
    expected = identity or "http://www.reuters.com/article/x-idUSKBN1FJ23Z"
    assert canonical_url(link) == expected
    assert canonical_url(expected) == expected  # canonical URLs are a fixed point


def test_pages_are_fetched_past_redirects_but_from_the_archive_the_feed_chose():
    google = "https://www.google.com/url?rct=j&sa=t&url=https://example.org/a&ct=ga"
    assert page_url(google) == "https://example.org/a"
    archived = "https://archive.is/newest/https://www.wsj.com/world/a-868e50b3"
    assert page_url(archived) == archived  # the archive may hold what a paywall hides
    assert unwrap_url(archived) == "https://www.wsj.com/world/a-868e50b3"
    assert site_of(canonical_url(archived)) == "wsj.com"


def test_a_short_archive_link_is_its_own_identity():
    assert canonical_url("https://archive.is/AbCdE") == "https://archive.is/AbCdE"
    assert canonical_url("https://www.google.com/search?q=putin") == "https://www.google.com/search?q=putin"


def test_real_feeds_unwrap_to_the_publishers():
    alerts = parse_feed(
        corpus_path("feeds", "news", "feedjira", "google_alerts_atom.xml").read_bytes(),
        url="https://www.google.com/alerts/feeds/1/2",
    )
    assert alerts.entries and all("google.com" not in canonical_url(e.url) for e in alerts.entries)
    reuters = parse_feed(
        corpus_path("feeds", "news", "react-native-rss-parser", "reuters_world_news.xml").read_bytes(),
        url="http://feeds.reuters.com/Reuters/worldNews",
    )
    # FeedBurner's origLink, not its feeds.reuters.com/~r/ tracking redirect, with the feed's params dropped
    assert all(canonical_url(e.url).startswith("http://www.reuters.com/article/") for e in reuters.entries)
    assert not any("feedType" in canonical_url(e.url) for e in reuters.entries)
