"""Topics and aliases: checked changes, versions, backtests and per-topic limits, on stored articles."""

import asyncio
import ipaddress
from datetime import UTC, datetime, timedelta

import pytest

from monitor import watchlist
from monitor.config import FeedConfig, NetworkConfig
from monitor.demo import DEMO_MIN_SCORE, PLACEHOLDER, SITE
from monitor.errors import ConfigError, MonitorError, QueryError
from monitor.fetch import Fetcher
from monitor.match import TopicMatcher
from monitor.pipeline import Pipeline
from monitor.storage import TopicSpec
from monitor.types import ExtractedArticle

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
XI = 'xi OR "xi jinping" OR 习近平 OR "си цзиньпин"'


def test_aliases_are_checked_and_changing_one_changes_its_topics(storage):
    assert watchlist.set_alias(storage, "xi", XI, NOW) == (True, [])
    watchlist.set_alias(storage, "putin", "putin* OR путин*", NOW)
    watchlist.add_topic(storage, "xi-putin", "@xi AND @putin", 0.4, NOW)
    watchlist.add_topic(storage, "xi-only", "@xi", 0.4, NOW)
    watchlist.add_topic(storage, "other", "modi", 0.4, NOW)
    with pytest.raises(QueryError, match="nope"):
        watchlist.add_topic(storage, "broken", "@nope AND putin", 0.4, NOW)
    with pytest.raises(QueryError):
        watchlist.set_alias(storage, "loop", "@loop OR x", NOW)

    created, affected = watchlist.set_alias(storage, "xi", XI + ' OR "chinese president"', NOW + timedelta(1))
    assert not created and sorted(affected) == ["xi-only", "xi-putin"]
    versions = {t.name: t.version for t in storage.topics()}
    assert versions == {"xi-putin": 2, "xi-only": 2, "other": 1}

    with pytest.raises(MonitorError, match="used by topic"):
        watchlist.remove_alias(storage, "putin")
    storage.remove_topic("xi-putin")
    watchlist.remove_alias(storage, "putin")
    assert set(storage.aliases()) == {"xi"}


@pytest.mark.parametrize("name", ["evil\r\nBcc: victim@example.org", "two words", "x\n", ""])
def test_a_topic_name_that_could_break_a_header_or_feeds_yaml_is_refused(storage, name):
    with pytest.raises(ConfigError, match="invalid topic name"):
        watchlist.add_topic(storage, name, "xi", 0.3, NOW)
    assert storage.topics() == []


def test_editing_a_topic_bumps_its_version(storage):
    watchlist.add_topic(storage, "t", "xi AND putin", 0.4, NOW)
    assert watchlist.edit_topic(storage, "t", NOW, min_score=0.4).version == 1  # no change, no bump
    edited = watchlist.edit_topic(storage, "t", NOW, query='"xi jinping" AND putin*', languages=["en"])
    assert (edited.version, edited.query, edited.languages) == (2, '"xi jinping" AND putin*', ("en",))
    with pytest.raises(QueryError):
        watchlist.edit_topic(storage, "t", NOW, query="xi AND (putin")
    assert storage.get_topic("t").version == 2


def _ingest_demo(storage, site):
    site.put_tree(SITE, replace={PLACEHOLDER: site.base_url.encode()})
    storage.sync_feeds(
        [
            FeedConfig(name="eastwire", url=site.url("/eastwire/feed.xml")),
            FeedConfig(name="harbourpost", url=site.url("/harbourpost/atom.xml")),
        ],
        NOW,
    )

    async def go():
        network = NetworkConfig(allow_private=[ipaddress.ip_network("127.0.0.0/8")])
        async with Fetcher(network) as fetcher:
            return await Pipeline(storage, fetcher, clock=lambda: NOW).run_once(all_feeds=True)

    return asyncio.run(go())


def test_backtest_reports_then_applies(storage, site):
    watchlist.set_alias(storage, "xi", XI, NOW)
    watchlist.add_topic(storage, "xi-putin", "@xi AND putin*", DEMO_MIN_SCORE, NOW)
    _ingest_demo(storage, site)
    assert len(storage.hits(topic="xi-putin")) == 3

    watchlist.edit_topic(storage, "xi-putin", NOW, query="(@xi AND putin*) OR (putin* AND modi)")
    report = watchlist.backtest(storage, "xi-putin", since=None, clock=lambda: NOW)
    assert report.articles == 10 and not report.applied
    assert [a.title for a, _ in report.added.values()] == [
        "Putin hosts Modi for talks on oil, fertiliser and shipping routes"
    ]
    assert len(report.still_matching) == 3 and report.removed == []
    assert len(storage.hits(topic="xi-putin")) == 3  # nothing changed without --apply

    applied = watchlist.backtest(storage, "xi-putin", since=None, clock=lambda: NOW, apply=True)
    assert applied.applied and len(storage.hits(topic="xi-putin")) == 4
    assert {h.topic_version for h in storage.hits(topic="xi-putin")} == {2}

    watchlist.edit_topic(storage, "xi-putin", NOW, query="putin* AND modi")
    narrowed = watchlist.backtest(storage, "xi-putin", since=None, clock=lambda: NOW, apply=True)
    assert len(narrowed.removed) == 3 and len(storage.hits(topic="xi-putin")) == 1
    [hit] = storage.hits(topic="xi-putin")
    assert hit.explanation and {c["term"] for c in hit.explanation} >= {"modi"}


def _spec(**limits) -> TopicSpec:
    return TopicSpec(
        id=1, name="t", query="putin*", min_score=0.0, version=1, created_at=NOW, updated_at=NOW, **limits
    )


@pytest.mark.parametrize(
    ("limits", "url", "feed", "language", "expected"),
    [
        ({}, "https://x.example/a", "f", "en", True),
        ({"languages": ("en", "ru")}, "https://x.example/a", "f", "en-GB", True),
        ({"languages": ("ru",)}, "https://x.example/a", "f", "en", False),
        ({"languages": ("ru",)}, "https://x.example/a", "f", None, True),
        ({"feeds": ("tass",)}, "https://x.example/a", "reuters", "en", False),
        ({"feeds": ("tass",)}, "https://x.example/a", "tass", "en", True),
        ({"sites": ("kremlin.ru",)}, "http://en.kremlin.ru/events/1", "f", "en", True),
        ({"sites": ("kremlin.ru",)}, "http://notkremlin.ru/events/1", "f", "en", False),
    ],
)
def test_topic_limits_on_language_feed_and_site(limits, url, feed, language, expected):
    article = ExtractedArticle(
        title="Putin speaks",
        text="Vladimir Putin said.",
        author=None,
        site_name=None,
        language=language,
        published=None,
        source="page",
    )
    assert bool(TopicMatcher([_spec(**limits)]).match(article, url=url, feed=feed)) is expected


def test_watchlist_export_import_round_trip(storage, tmp_path):
    watchlist.set_alias(storage, "xi", XI, NOW)
    watchlist.add_topic(storage, "xi-putin", "@xi AND putin*", 0.4, NOW, languages=["en", "ru"])
    watchlist.add_topic(storage, "energy", '"gas pipeline" NEAR/5 (russia OR china)', 0.3, NOW)
    text = watchlist.export_watchlist(storage)
    assert "xi-putin" in text and "习近平" in text

    again = watchlist.import_watchlist(storage, text, NOW, source="w.yaml")
    assert again.created == again.updated == [] and sorted(again.unchanged) == ["@xi", "energy", "xi-putin"]

    edited = text.replace("min_score: 0.4", "min_score: 0.5")
    report = watchlist.import_watchlist(storage, edited, NOW, source="w.yaml")
    assert report.updated == ["xi-putin"]
    topic = storage.get_topic("xi-putin")
    assert (topic.min_score, topic.version, topic.languages) == (0.5, 2, ("en", "ru"))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("topics: [{name: t, query: 'xi AND'}]", "expected"),
        ("topics: [{name: 'two words', query: xi}]", "topics.0.name"),
        ("topics: [{name: t, query: '@nobody'}]", "nobody"),
        ("aliases: {xi: '(xi'}\ntopics: [{name: t, query: xi}]", "expected"),
        ("topics: [{name: t, query: xi, colour: red}]", "topics.0.colour"),
        ("topics: [unclosed", "not valid YAML"),
    ],
)
def test_a_bad_watchlist_changes_nothing(storage, text, problem):
    with pytest.raises(MonitorError, match=problem):
        watchlist.import_watchlist(storage, text, NOW, source="w.yaml")
    assert storage.topics() == [] and storage.aliases() == {}
