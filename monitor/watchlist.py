"""The user's watch topics and aliases: checked changes, and backtests against the stored archive.

Every query is compiled (with the current aliases) before it is stored, so a stored topic always parses.
Redefining an alias changes every topic that uses it, so those topics' versions are bumped.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from monitor.config import Name, check_name
from monitor.errors import ConfigError, MonitorError
from monitor.match import TopicMatcher
from monitor.storage import ArchivedArticle, Storage, StoredHit, TopicSpec
from monitor.topics import check_alias, compile_query
from monitor.types import Clock, TopicMatch, utc_now


def add_topic(
    storage: Storage,
    name: str,
    query: str,
    min_score: float,
    now: datetime,
    *,
    languages: Sequence[str] = (),
    feeds: Sequence[str] = (),
    sites: Sequence[str] = (),
) -> TopicSpec:
    check_name("topic", name)
    compile_query(query, aliases=storage.aliases())
    return storage.add_topic(name, query, min_score, now, languages=languages, feeds=feeds, sites=sites)


def edit_topic(
    storage: Storage,
    name: str,
    now: datetime,
    *,
    query: str | None = None,
    min_score: float | None = None,
    languages: Sequence[str] | None = None,
    feeds: Sequence[str] | None = None,
    sites: Sequence[str] | None = None,
) -> TopicSpec:
    if query is not None:
        compile_query(query, aliases=storage.aliases())
    return storage.edit_topic(
        name, now, query=query, min_score=min_score, languages=languages, feeds=feeds, sites=sites
    )


def topics_using(storage: Storage, alias: str, aliases: dict[str, str] | None = None) -> list[str]:
    """Names of the topics whose query uses the alias, directly or through another alias."""
    aliases = storage.aliases() if aliases is None else aliases
    return [t.name for t in storage.topics() if alias in compile_query(t.query, aliases=aliases).aliases_used]


def set_alias(storage: Storage, name: str, query: str, now: datetime) -> tuple[bool, list[str]]:
    """Define or redefine an alias; returns (created, topics affected). Every topic must still parse."""
    aliases = {**storage.aliases(), name: query}
    check_alias(name, query, aliases)
    affected = topics_using(storage, name, aliases)
    created = storage.set_alias(name, query, now)
    if not created and affected:
        storage.bump_topic_versions(affected, now)
    return created, affected


def remove_alias(storage: Storage, name: str) -> None:
    """Remove an alias no topic uses."""
    users = topics_using(storage, name)
    if users:
        raise MonitorError(f"alias {name!r} is used by topic(s) {', '.join(users)}; change them first")
    storage.remove_alias(name)


@dataclass(slots=True)
class BacktestReport:
    """What re-matching the archive against a topic would change (or changed, when applied)."""

    topic: TopicSpec
    articles: int = 0
    #: article → new match, for articles with no hit of this topic yet
    added: dict[int, tuple[ArchivedArticle, TopicMatch]] = field(default_factory=dict)
    #: hits of this topic that no longer match, and no sent digest carried
    removed: list[tuple[ArchivedArticle, StoredHit]] = field(default_factory=list)
    #: hits that no longer match but were already delivered: kept, as the record of what was sent
    kept_delivered: int = 0
    #: existing hits that still match (their score and explanation are refreshed on apply)
    still_matching: dict[int, TopicMatch] = field(default_factory=dict)
    applied: bool = False


def backtest(
    storage: Storage,
    name: str,
    *,
    since: datetime | None,
    clock: Clock = utc_now,
    apply: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> BacktestReport:
    """Re-match stored articles against a topic as it is now; store the difference only when ``apply``."""
    topic = storage.get_topic(name)
    matcher = TopicMatcher([topic], storage.aliases())
    existing = storage.topic_hits(topic.id)
    report = BacktestReport(topic=topic)
    total = storage.count_archived_articles(since)
    for batch in storage.archived_articles(since):
        for article in batch:
            matches = matcher.match(article.extracted, url=article.url, feed=article.feed)
            stored = existing.get(article.id)
            if matches and stored is None:
                report.added[article.id] = (article, matches[0])
            elif matches:
                report.still_matching[article.id] = matches[0]
            elif stored is not None and stored.delivered:
                report.kept_delivered += 1
            elif stored is not None:
                report.removed.append((article, stored))
        report.articles += len(batch)
        if progress is not None:
            progress("backtest", report.articles, total)
    if apply:
        rematched = {**report.still_matching, **{aid: m for aid, (_, m) in report.added.items()}}
        storage.apply_backtest(
            topic.id, matches=rematched, remove=[h.id for _, h in report.removed], clock=clock
        )
        report.applied = True
    return report


class _TopicEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    query: str
    min_score: float = Field(default=0.3, ge=0, le=1)
    languages: list[str] = []
    feeds: list[str] = []
    sites: list[str] = []


class _Watchlist(BaseModel):
    model_config = ConfigDict(extra="forbid")

    aliases: dict[str, str] = {}
    topics: list[_TopicEntry] = []


def export_watchlist(storage: Storage) -> str:
    """Every alias and topic as YAML, to keep in git and load elsewhere with :func:`import_watchlist`."""
    document = {
        "aliases": storage.aliases(),
        "topics": [
            {
                "name": t.name,
                "query": t.query,
                "min_score": t.min_score,
                **{
                    k: list(v)
                    for k, v in (("languages", t.languages), ("feeds", t.feeds), ("sites", t.sites))
                    if v
                },
            }
            for t in storage.topics()
        ],
    }
    out = io.StringIO()
    yaml = YAML(typ="rt")  # keeps the order of keys as given
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    yaml.dump(document, out)
    return out.getvalue()


@dataclass(slots=True)
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def import_watchlist(storage: Storage, text: str, now: datetime, *, source: str) -> ImportReport:
    """Create or update the aliases and topics of an exported watchlist (others are left alone). All of it is
    checked first (names, queries with the merged aliases), so a bad file changes nothing. Entries are named
    ``@alias`` and ``topic`` in the report."""
    try:
        raw = YAML(typ="safe", pure=True).load(text) or {}
        wanted = _Watchlist.model_validate(raw)
    except YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", path=source) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where}: {first['msg']}", path=source) from None
    aliases = {**storage.aliases(), **wanted.aliases}
    for name, query in wanted.aliases.items():
        check_alias(name, query, aliases)
    for topic in wanted.topics:
        compile_query(topic.query, aliases=aliases)
    report = ImportReport()
    current_aliases = storage.aliases()
    for name, query in wanted.aliases.items():
        if current_aliases.get(name) == query:
            report.unchanged.append(f"@{name}")
            continue
        created, _ = set_alias(storage, name, query, now)
        (report.created if created else report.updated).append(f"@{name}")
    current = {t.name: t for t in storage.topics()}
    for topic in wanted.topics:
        limits = {"languages": topic.languages, "feeds": topic.feeds, "sites": topic.sites}
        existing = current.get(topic.name)
        if existing is None:
            add_topic(storage, topic.name, topic.query, topic.min_score, now, **limits)
            report.created.append(topic.name)
        elif (existing.query, existing.min_score, existing.languages, existing.feeds, existing.sites) == (
            topic.query,
            topic.min_score,
            tuple(topic.languages),
            tuple(topic.feeds),
            tuple(topic.sites),
        ):
            report.unchanged.append(topic.name)
        else:
            edit_topic(storage, topic.name, now, query=topic.query, min_score=topic.min_score, **limits)
            report.updated.append(topic.name)
    return report
