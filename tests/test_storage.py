import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from monitor.config import FeedConfig, Settings, SubscriptionConfig
from monitor.demo import DEMO_QUERY, PLACEHOLDER, SITE
from monitor.digest import deliver_digest
from monitor.errors import AlreadyExistsError, NotFoundError, QueryError, SchemaNotCurrentError
from monitor.storage import NewArticle, Storage, ensure_current, make_engine, upgrade
from monitor.storage.engine import current_revision, downgrade, head_revision
from monitor.storage.models import metadata
from monitor.types import ExtractedArticle, FeedEntry, TopicMatch

from conftest import record_entries, run_pipeline, serve_kremlin

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


def test_upgrade_empty_database_to_head_without_drift(db_url):
    engine = make_engine(db_url)
    with engine.begin() as conn:  # start from an empty database, not the template
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        else:
            conn.exec_driver_sql("DROP TABLE IF EXISTS articles_fts")
            for table in [*reversed(metadata.sorted_tables), sa.table("alembic_version")]:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table.name}")
    with pytest.raises(SchemaNotCurrentError, match="monitor db upgrade"):
        ensure_current(engine)
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    ensure_current(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": _not_full_text_search}
        )
        diff = compare_metadata(context, metadata)
    assert diff == []
    engine.dispose()


def _not_full_text_search(obj, name, type_, reflected, compare_to):
    """The search index lives outside the models: SQLite's FTS5 tables, PostgreSQL's tsvector column."""
    return not (name or "").startswith(("articles_fts", "search_vector", "ix_articles_search_vector"))


def test_datetimes_come_back_aware_utc(storage):
    storage.sync_feeds([FeedConfig(name="f", url="https://example.org/rss")], NOW)
    [feed] = storage.feeds_due(NOW)
    [status] = storage.feed_statuses()
    assert status.next_poll_at == NOW and status.next_poll_at.tzinfo is not None
    assert feed.interval == timedelta(minutes=30)


def test_sync_feeds_follows_the_file(storage):
    storage.sync_feeds(
        [
            FeedConfig(name="a", url="https://a.example/rss"),
            FeedConfig(name="b", url="https://b.example/rss"),
        ],
        NOW,
    )
    storage.sync_feeds([FeedConfig(name="a", url="https://a.example/new-rss", interval="2h")], NOW)
    statuses = {f.name: f for f in storage.feed_statuses()}
    assert statuses["a"].url == "https://a.example/new-rss" and statuses["a"].active
    assert not statuses["b"].active
    assert [f.name for f in storage.feeds_due(NOW)] == ["a"]
    with pytest.raises(NotFoundError):
        storage.feeds_due(NOW, name="nope")


def _entry(key: str, url: str, title: str = "A title") -> NewArticle:
    return NewArticle(
        FeedEntry(key=key, url=url, title=title, summary="summary", author=None, published=NOW), url, url
    )


def test_entries_are_recorded_once_and_articles_shared_across_feeds(storage):
    storage.sync_feeds(
        [
            FeedConfig(name="a", url="https://a.example/rss"),
            FeedConfig(name="b", url="https://b.example/rss"),
        ],
        NOW,
    )
    a, b = storage.feeds_due(NOW)
    new = [_entry("1", "https://x.example/1"), _entry("2", "https://x.example/2")]
    assert record_entries(storage, a.id, new, NOW) == 2
    assert record_entries(storage, a.id, [_entry("1", "https://x.example/1")], NOW) == 0
    assert record_entries(storage, b.id, [_entry("other-guid", "https://x.example/1")], NOW) == 1
    assert storage.article_count() == {"discovered": 2}
    assert len(storage.articles_to_process(NOW)) == 2
    # two new guids in one poll pointing at the same page: two entries, one article
    assert (
        record_entries(
            storage, a.id, [_entry("3", "https://x.example/3"), _entry("4", "https://x.example/3")], NOW
        )
        == 2
    )
    assert storage.article_count() == {"discovered": 3}


def test_sites_take_turns_among_the_articles_to_process(storage):
    """One site's backlog must not keep another site's articles behind its politeness limits."""
    storage.sync_feeds(
        [
            FeedConfig(name="big", url="https://big.example/rss"),
            FeedConfig(name="small", url="https://s.example/rss"),
        ],
        NOW,
    )
    big, small = storage.feeds_due(NOW)
    record_entries(storage, big.id, [_entry(f"b{i}", f"https://big.example/{i}") for i in range(6)], NOW)
    record_entries(storage, small.id, [_entry(f"s{i}", f"https://small.example/{i}") for i in range(2)], NOW)
    queued = storage.articles_to_process(NOW, limit=4)
    assert [a.url.split("/")[2] for a in queued] == ["big.example", "small.example"] * 2
    assert [a.url for a in queued[::2]] == ["https://big.example/0", "https://big.example/1"]  # oldest first
    rest = storage.articles_to_process(NOW, exclude=[a.id for a in queued])
    assert [a.url for a in rest] == [f"https://big.example/{i}" for i in range(2, 6)]


def test_article_results_hits_and_digest_bookkeeping(storage):
    storage.sync_feeds([FeedConfig(name="a", url="https://a.example/rss")], NOW)
    [feed] = storage.feeds_due(NOW)
    record_entries(storage, feed.id, [_entry("1", "https://x.example/1")], NOW)
    topic = storage.add_topic("t", "xi AND putin", 0.3, NOW)
    with pytest.raises(AlreadyExistsError):
        storage.add_topic("t", "x", 0.3, NOW)
    sub = SubscriptionConfig(name="s", recipients=["a@example.org"], topics=["t"])
    storage.sync_subscriptions([sub], NOW - timedelta(days=1))
    [item] = storage.articles_to_process(NOW)
    extracted = ExtractedArticle(
        title="Xi meets Putin",
        text="body",
        author="A",
        site_name="Site",
        language="en",
        published=None,
        source="page",
    )
    match = TopicMatch(topic_id=topic.id, topic_version=1, score=0.8, matched=["xi", "putin"], snippet="«Xi»")
    for _ in range(2):  # idempotent: saving twice keeps one hit
        storage.save_article(item.id, extracted=extracted, matches=[match], fetch_error=None, now=NOW)
    [hit] = storage.hits()
    assert (hit.topic, hit.title, hit.source, hit.score, hit.matched) == (
        "t",
        "Xi meets Putin",
        "Site",
        0.8,
        ["xi", "putin"],
    )
    assert storage.articles_to_process(NOW) == []

    start, owed = storage.undelivered_hits(sub, until=NOW)
    assert [h.id for h in owed] == [hit.id] and start == NOW - timedelta(days=1)
    storage.record_digest(
        "s",
        status="sending",
        window_start=start,
        window_end=NOW,
        hit_ids=[hit.id],
        now=NOW,
        message_id="<1@x>",
        document="{}",
        deliveries=[("email", "m"), ("webhook", "{}")],
    )
    assert storage.undelivered_hits(sub, until=NOW)[1] == []  # the outbox carries it...
    assert not storage.topic_hits(storage.get_topic("t").id)[item.id].delivered  # ...undelivered
    email, webhook = storage.outbox()
    assert storage.outbox_size() == 2
    storage.delivery_failed(email.id, error="SMTP down", retry_at=NOW + timedelta(minutes=2))
    assert not storage.delivery_sent(webhook.id, NOW)  # one channel of two: not sent yet
    [pending] = storage.outbox()
    assert (pending.channel, pending.attempts, pending.error, pending.payload) == (
        "email",
        1,
        "SMTP down",
        "m",
    )
    assert pending.next_attempt_at == NOW + timedelta(minutes=2)
    assert storage.last_digests()["s"].error == "email: SMTP down"
    assert storage.delivery_sent(pending.id, NOW + timedelta(minutes=2))
    assert storage.outbox() == [] and storage.topic_hits(storage.get_topic("t").id)[item.id].delivered
    assert [d.document for d in storage.published_digests("s")] == ["{}"]
    start, owed = storage.undelivered_hits(sub, until=NOW + timedelta(hours=1))
    assert owed == [] and start == NOW
    assert storage.last_digest_time("s") == NOW

    storage.remove_topic("t")
    assert storage.hits() == [] and storage.topics() == []


def test_a_digest_waits_for_the_batch_that_stamped_hits_before_its_time(storage):
    """A batch stamps its hits when it begins and commits when it ends; a digest read in between waits for
    it, so what was stamped before the digest's time is in that digest, not left to the next one."""
    storage.sync_feeds([FeedConfig(name="a", url="https://a.example/rss")], NOW)
    [feed] = storage.feeds_due(NOW)
    record_entries(storage, feed.id, [_entry("1", "https://x.example/1")], NOW)
    topic = storage.add_topic("t", "xi AND putin", 0.3, NOW)
    sub = SubscriptionConfig(name="s", recipients=["a@example.org"], topics=["t"])
    storage.sync_subscriptions([sub], NOW - timedelta(days=1))
    [item] = storage.articles_to_process(NOW)
    extracted = ExtractedArticle("Xi meets Putin", "body", None, None, "en", None, "page")
    match = TopicMatch(topic_id=topic.id, topic_version=1, score=0.8, matched=["xi"], snippet="«Xi»")
    stamped = threading.Event()

    def settle() -> None:
        with storage.article_batch() as batch:
            batch.save_article(item.id, extracted=extracted, matches=[match], fetch_error=None, now=NOW)
            stamped.set()
            time.sleep(0.5)  # matching the rest of the batch

    settling = threading.Thread(target=settle)
    settling.start()
    stamped.wait(10)
    _, owed = storage.undelivered_hits(sub, until=NOW + timedelta(seconds=1))
    settling.join()
    assert [h.title for h in owed] == ["Xi meets Putin"]


def test_storage_errors_are_wrapped(tmp_path):
    storage = Storage(make_engine(f"sqlite:///{tmp_path / 'empty.db'}"))
    from monitor.errors import StorageError

    with pytest.raises(StorageError, match="no such table"):
        storage.topics()


def test_migrations_go_down_and_up_with_data_in_the_tables(storage):
    from monitor.storage.engine import downgrade

    storage.sync_feeds([FeedConfig(name="a", url="https://a.example/rss")], NOW)
    [feed] = storage.feeds_due(NOW)
    record_entries(storage, feed.id, [_entry("1", "https://x.example/1")], NOW)
    topic = storage.add_topic("t", "xi", 0.3, NOW, languages=["en"])
    storage.set_alias("xi", "xi OR 习近平", NOW)
    [item] = storage.articles_to_process(NOW)
    extracted = ExtractedArticle("Xi", "body", None, None, "en", None, "page")
    match = TopicMatch(topic.id, 1, 0.5, ["xi"], "«xi»", [{"term": "xi", "title": 1, "body": 0}])
    storage.save_article(item.id, extracted=extracted, matches=[match], fetch_error=None, now=NOW)

    downgrade(storage.engine, "0001")
    assert current_revision(storage.engine) == "0001"
    with storage.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM hits").scalar() == 1
    upgrade(storage.engine)
    if storage.engine.dialect.name == "sqlite":
        with storage.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    [hit] = storage.hits()
    assert hit.title == "Xi" and hit.explanation == []  # the column came back empty, the hit survived
    assert storage.get_topic("t").languages == () and storage.aliases() == {}
    # 0003 made each processed article a story of its own and kept its URL as the page to fetch
    story = storage.get_story(hit.story_id)
    assert [c.url for c in story.copies] == ["https://x.example/1"] and hit.url == "https://x.example/1"
    record_entries(storage, feed.id, [_entry("2", "https://x.example/2")], NOW)
    [item] = storage.articles_to_process(NOW)
    saved = storage.save_article(item.id, extracted=extracted, matches=[], fetch_error=None, now=NOW)
    assert saved.story_id != hit.story_id  # new ids start past the migrated ones (PostgreSQL's sequence too)


def test_full_text_search_ranks_titles_marks_snippets_and_reads_web_search_syntax(storage, site):
    serve_kremlin(site)
    now = datetime.now(UTC)
    storage.sync_feeds([FeedConfig(name="selection", url=site.url("/selection.rss"))], now)
    run_pipeline(storage, lambda: now)

    found = storage.search("Xi Jinping")
    assert len(found) >= 8 and all(r.feed == "selection" for r in found)
    assert all("Xi Jinping" in r.title for r in found[:4])  # title matches rank first
    assert "«Xi»" in found[0].snippet or "«Jinping»" in found[0].snippet
    zoo = storage.search('"Moscow Zoo"')
    assert zoo[0].title == "Vladimir Putin and Xi Jinping visited Moscow Zoo"
    assert {r.article_id for r in storage.search("Jintao")}.isdisjoint(
        r.article_id for r in storage.search("Jintao -Hu")
    )
    either = storage.search("Jintao OR zoo", limit=50)
    assert len(either) > len(storage.search("zoo", limit=50)) > 0
    assert storage.search("Jinpin*")[0].title == found[0].title
    assert storage.search("Xi", since=now + timedelta(minutes=1)) == []
    with pytest.raises(QueryError, match="nothing to search for"):
        storage.search('OR "" -')
    assert storage.search("NEAR(xi putin) title:xi ^Jinping {a} (b) AND: 'x") == []  # no operators


def test_prune_keeps_what_digests_owe_and_leaves_stories_consistent(storage, site):
    serve_kremlin(site)
    old = datetime(2026, 6, 1, tzinfo=UTC)
    storage.sync_feeds([FeedConfig(name="selection", url=site.url("/selection.rss"))], old)
    storage.add_topic("xi-putin", '"xi jinping" AND putin', 0.1, old)
    sub = SubscriptionConfig(name="s", recipients=["a@example.org"], topics=["xi-putin"])
    storage.sync_subscriptions([sub], old - timedelta(days=1))
    run_pipeline(storage, lambda: old)
    hits = storage.hits()
    delivered, owed = hits[: len(hits) // 2], hits[len(hits) // 2 :]
    assert delivered and owed
    storage.record_digest(
        "s", status="sent", window_start=old, window_end=old, hit_ids=[h.id for h in delivered], now=old
    )
    owed_ids = {h.id for h in storage.undelivered_hits(sub, until=old + timedelta(days=1))[1]}
    assert owed_ids == {h.id for h in owed}
    counts, matched = storage.article_count(), storage.article_count()["matched"]

    dry = storage.prune(before=old + timedelta(days=1), owed_hit_ids=owed_ids, dry_run=True)
    assert dry.articles == matched - len(owed) and dry.hits == len(delivered) and dry.kept_owed == len(owed)
    assert storage.article_count() == counts and len(storage.hits()) == len(hits)  # a dry run changes nothing

    report = storage.prune(before=old + timedelta(days=1), owed_hit_ids=owed_ids)
    assert (report.articles, report.hits, report.kept_owed) == (dry.articles, dry.hits, dry.kept_owed)
    assert report.site_lines > 0
    assert storage.article_count() == {"matched": len(owed), "pruned": dry.articles}
    assert {h.id for h in storage.hits()} == owed_ids
    with storage.engine.connect() as conn:
        orphans = conn.exec_driver_sql(
            "SELECT count(*) FROM stories s LEFT JOIN articles a ON a.id = s.representative_id "
            "WHERE a.id IS NULL OR a.state = 'pruned'"
        ).scalar_one()
        assert orphans == 0  # every story shows a copy that still exists
    kept = {h.article_id for h in owed}  # a pruned article is found by its title only: its text is gone
    assert all("Jinping" in r.title for r in storage.search("Jinping", limit=100) if r.article_id not in kept)

    later = old + timedelta(days=2)  # the feed still lists the pruned articles: they are not new
    storage.sync_feeds([FeedConfig(name="selection", url=site.url("/selection.rss"))], later)
    assert run_pipeline(storage, lambda: later, all_feeds=True).articles == 0


def test_migrations_go_down_and_up_again_with_data_in_the_tables(storage, site, smtp):
    """From head down past the outbox and search migrations and back, on a database the stream filled."""
    site.put_tree(SITE, replace={PLACEHOLDER: site.base_url.encode()})
    now = datetime.now(UTC)
    sub = SubscriptionConfig(name="s", recipients=["a@example.org"], topics=["xi-putin"])
    storage.sync_feeds([FeedConfig(name="eastwire", url=site.url("/eastwire/feed.xml"))], now)
    storage.sync_subscriptions([sub], now - timedelta(days=1))
    storage.add_topic("xi-putin", DEMO_QUERY, 0.3, now)
    run_pipeline(storage, lambda: now)
    settings = Settings(
        smtp_host="127.0.0.1", smtp_port=smtp[1], smtp_sender="m@example.org", smtp_security="none"
    )
    assert deliver_digest(storage, sub, settings, now=now + timedelta(minutes=1)).status == "sent"
    tables = ("feeds", "articles", "stories", "hits", "digests", "digest_items", "entries", "article_bands")

    def counts() -> dict[str, int]:
        with storage.engine.connect() as conn:
            return {t: conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar_one() for t in tables}

    before = counts()
    assert all(before.values())
    downgrade(storage.engine, "0004")
    assert current_revision(storage.engine) == "0004" and counts() == before
    upgrade(storage.engine)
    assert current_revision(storage.engine) == head_revision() and counts() == before
    [digest] = storage.last_digests().values()
    assert digest.status == "sent" and digest.attempts == 0
    assert storage.search("Putin")  # the search index is rebuilt from the stored articles


def test_migration_0008_moves_the_outbox_to_deliveries_and_back(storage):
    sub = SubscriptionConfig(name="s", recipients=["a@example.org"], topics=["t"])
    storage.sync_subscriptions([sub], NOW)
    failing = storage.record_digest(
        "s",
        status="sending",
        window_start=NOW,
        window_end=NOW,
        hit_ids=[],
        now=NOW,
        message_id="<1@x>",
        document="{}",
        deliveries=[("email", "Subject: s\n\nbody")],
    )
    [delivery] = storage.outbox()
    storage.delivery_failed(delivery.id, error="SMTP down", retry_at=NOW + timedelta(minutes=2))
    storage.record_digest(
        "s", status="sent", window_start=NOW, window_end=NOW, hit_ids=[], now=NOW, kind="alert", topic="t"
    )

    downgrade(storage.engine, "0007")
    with storage.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT id, message, attempts, error, next_attempt_at FROM digests").all()
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [(failing, "Subject: s\n\nbody", 1, "SMTP down")]
    upgrade(storage.engine)
    [back] = storage.outbox()
    assert (back.digest_id, back.channel, back.attempts, back.error) == (failing, "email", 1, "SMTP down")
    assert back.next_attempt_at == NOW + timedelta(minutes=2) and back.payload == "Subject: s\n\nbody"


def test_topics_state_changes_with_every_change_to_a_topic_or_an_alias(storage):
    """The running stream rebuilds its compiled topics when this changes, so no change may go unseen:
    not even a topic removed and another added in its place between two looks (SQLite gives it the same
    id, and its version starts again at 1)."""
    states = [storage.topics_state()]

    def changed() -> bool:
        states.append(storage.topics_state())
        return states[-1] != states[-2]

    storage.add_topic("a", "xi", 0.3, NOW)
    assert changed()
    assert storage.topics_state() == states[-1]  # nothing changed, nothing differs
    storage.add_topic("b", "putin", 0.3, NOW)
    assert changed()
    for edit in ({"query": "xi AND putin"}, {"min_score": 0.5}, {"languages": ["en"]}, {"sites": ["x.ru"]}):
        storage.edit_topic("b", NOW, **edit)
        assert changed(), edit
    compiled = states[-1]
    storage.remove_topic("b")
    assert changed()
    storage.add_topic("b", "xi AND putin", 0.3, NOW)  # another "b", under the same id on SQLite
    assert changed() and states[-1] != compiled
    storage.set_alias("leaders", "xi OR putin", NOW)
    assert changed()
    storage.set_alias("leaders", "xi OR putin OR modi", NOW)
    assert changed()
    storage.remove_alias("leaders")
    assert changed()
