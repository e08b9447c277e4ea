"""The command line: a thin Typer app; each command parses options, calls the library, prints."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, tzinfo
from enum import StrEnum
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from monitor import demo as demo_module
from monitor import feedlist, watchlist
from monitor.config import (
    MonitorConfig,
    Settings,
    SubscriptionConfig,
    load_config,
    load_settings,
    parse_duration,
)
from monitor.digest import (
    Preview,
    deliver_alerts,
    deliver_digest,
    export_digests,
    owed_hit_ids,
    preview_digest,
    render_html,
)
from monitor.errors import ConfigError, MonitorError, NotFoundError
from monitor.extract import extract_page, extraction_pool
from monitor.fetch import Fetcher
from monitor.http import parse_address
from monitor.pipeline import Pipeline, RunReport
from monitor.pool import ProcessPool
from monitor.scheduler import DEFAULT_TICK_SECONDS, Daemon
from monitor.status import collect_status
from monitor.storage import (
    FeedStatus,
    HitView,
    Storage,
    StoryView,
    TopicSpec,
    ensure_current,
    make_engine,
    upgrade,
)
from monitor.storage.engine import current_revision, head_revision
from monitor.topics import Document, compile_query, evaluate, prepare
from monitor.types import utc_now

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    help="monitor: watch news feeds for your topics and get one clear digest.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
feeds_app = typer.Typer(help="Feeds from feeds.yaml and their polling state.", no_args_is_help=True)
topics_app = typer.Typer(help="Watch topics: what to look for.", no_args_is_help=True)
hits_app = typer.Typer(help="Articles that matched a topic.", no_args_is_help=True)
stories_app = typer.Typer(
    help="Stories: an article and its copies on other sites, shown once.", no_args_is_help=True
)
digest_app = typer.Typer(help="Digests and alerts of hits, by subscription.", no_args_is_help=True)
aliases_app = typer.Typer(
    help="Aliases: named query fragments, used in topics as @name.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(feeds_app, name="feeds")
app.add_typer(topics_app, name="topics")
app.add_typer(hits_app, name="hits")
app.add_typer(stories_app, name="stories")
app.add_typer(digest_app, name="digest")
app.add_typer(aliases_app, name="aliases")

console = Console()
errors = Console(stderr=True)

DEFAULT_MIN_SCORE = 0.3


class LogFormat(StrEnum):
    text = "text"
    json = "json"


@dataclass
class State:
    settings: Settings
    verbose: int

    def config(self) -> MonitorConfig:
        return load_config(self.settings.config)

    def storage(self, *, check_schema: bool = True) -> Storage:
        engine = make_engine(self.settings.database_url)
        if check_schema:
            ensure_current(engine)
        return Storage(engine)


def _state(ctx: typer.Context) -> State:
    state = ctx.find_root().obj
    assert isinstance(state, State)
    return state


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Show a MonitorError as one clear line on stderr and exit 1, instead of a traceback."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except MonitorError as exc:
            errors.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", help="feeds.yaml to use (env MONITOR_CONFIG).")
    ] = None,
    db: Annotated[str | None, typer.Option("--db", help="Database URL (env MONITOR_DATABASE_URL).")] = None,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="-v: log activity; -vv: debug.")
    ] = 0,
    log_format: Annotated[
        LogFormat, typer.Option("--log-format", help="Logs as text lines or as one JSON object per line.")
    ] = LogFormat.text,
) -> None:
    """Example: monitor --config feeds.yaml --db sqlite:///monitor.db poll"""
    from monitor.logs import configure_logging

    configure_logging(verbose, log_format.value)
    try:
        settings = load_settings(config=config, database_url=db)
    except ConfigError as exc:
        errors.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    ctx.obj = State(settings=settings, verbose=verbose)


# -- running ---------------------------------------------------------------------------------------------


@app.command()
@handle_errors
def demo(
    workdir: Annotated[Path, typer.Option(help="Where the demo writes its database and digest.")] = Path(
        "monitor-demo"
    ),
) -> None:
    """Run the whole stream offline on sample feeds served on loopback, into a fresh SQLite file.

    Example: monitor demo
    """
    with progress_bar() as progress:
        result = demo_module.run_demo(workdir, progress=progress)
    _print_report(result.report)
    _print_hits(result.hits)
    console.print(f"\nDigest written to [bold]{result.digest_path}[/] (open it in a browser).")
    console.print(f"Database: {result.database_url}  ·  feeds.yaml: {result.config_path}")


@app.command()
@handle_errors
def run(
    ctx: typer.Context,
    tick: Annotated[float, typer.Option(help="Seconds between checks for due feeds.")] = DEFAULT_TICK_SECONDS,
    http: Annotated[
        str | None,
        typer.Option(help="Serve /healthz and /metrics (Prometheus) on this host:port, e.g. 127.0.0.1:9108."),
    ] = None,
) -> None:
    """Run the daemon: poll feeds when due, process articles, send digests on schedule. Stops on SIGTERM.

    Example: monitor --config /etc/monitor/feeds.yaml run --http 127.0.0.1:9108
    """
    state = _state(ctx)
    config, storage = state.config(), state.storage()
    address = parse_address(http) if http else None
    _sync(config, storage)

    async def main(extractor: ProcessPool) -> None:
        async with Fetcher(config.network) as fetcher:
            pipeline = Pipeline(storage, fetcher, extractor=extractor)
            await Daemon(pipeline, storage, config, state.settings, tick_seconds=tick, http=address).run()

    with extraction_pool() as pool:
        asyncio.run(main(pool))


@app.command()
@handle_errors
def status(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show feeds (ok, failing since, next retry), unfinished articles, each subscription's last and next
    digest with its delivery result, and the database size.

    Example: monitor status --json
    """
    state = _state(ctx)
    config, storage = state.config(), state.storage()
    _sync(config, storage)
    now = utc_now()
    report = collect_status(storage, config, now)
    if as_json:
        _print_json(asdict(report))
        return
    feeds = Table("feed", "state", "last poll", "next poll", "error", title="Feeds", title_justify="left")
    for f in report.feeds:
        feeds.add_row(
            f.name, _feed_state(f), _when(f.last_polled_at), _when(f.next_poll_at), Text(_feed_problem(f))
        )
    console.print(feeds)

    counts = ", ".join(f"{n} {state}" for state, n in sorted(report.articles.items())) or "none yet"
    console.print(f"\n[bold]Articles[/]: {counts}", highlight=False)
    if report.unfinished:
        queue = Table("article", "state", "attempts", "next attempt", "error")
        for a in report.unfinished:
            retry = _when(a.next_attempt_at) if a.next_attempt_at else "[red]given up[/]"
            queue.add_row(Text(a.url), a.state, str(a.attempts), retry, Text(a.error or ""))
        console.print(queue)

    digests = Table(
        "subscription", "last digest", "delivery", "next digest", title="\nDigests", title_justify="left"
    )
    for sub in report.subscriptions:
        zone = ZoneInfo(sub.timezone)
        last = sub.last
        upcoming = _next_digest(sub.next_digest_at, sub.alert_topics, zone)
        if last is None:
            digests.add_row(sub.name, "none yet", "", upcoming)
            continue
        delivery = (
            f"[red]failing ({last.attempts}×): {escape(last.error or '')}; "
            f"retry at {_when(last.next_attempt_at, zone)}[/]"
            if last.status == "sending" and last.attempts
            else "sending"
            if last.status == "sending"
            else f"sent {_when(last.sent_at, zone)}"
            if last.status == "sent"
            else "nothing to send"
        )
        digests.add_row(sub.name, f"{_when(last.window_end, zone)} ({last.hits} hits)", delivery, upcoming)
    console.print(digests)
    if report.outbox:
        outbox = Table(
            "subscription",
            "what",
            "channel",
            "attempts",
            "next attempt",
            "error",
            title="\nOutbox",
            title_justify="left",
        )
        for d in report.outbox:
            what = f"alert ({d.topic})" if d.kind == "alert" else d.kind
            outbox.add_row(
                d.subscription,
                what,
                d.channel,
                str(d.attempts),
                _when(d.next_attempt_at),
                Text(d.error or ""),
            )
        console.print(outbox)
    console.print(f"\n[bold]Database[/]: {report.database_bytes / 1e6:.1f} MB", highlight=False)


def _next_digest(at: datetime | None, alert_topics: list[str], zone: tzinfo) -> str:
    """When the next digest is due, and which topics alert as they happen."""
    alerts = f"alerts: {', '.join(alert_topics)}" if alert_topics else ""
    if at is None:
        return f"as it happens ({alerts})"
    return _when(at, zone) + (f"; {alerts}" if alerts else "")


def _feed_state(f: FeedStatus) -> str:
    if f.disabled_reason:
        return "[red]disabled[/]"
    if f.failing_since:
        return f"[red]failing since {_when(f.failing_since)} ({f.consecutive_errors}×)[/]"
    return "[green]ok[/]" if f.last_success_at else "new"


def _feed_problem(f: FeedStatus) -> str:
    return f.disabled_reason or f.last_error or ""


@app.command()
@handle_errors
def poll(
    ctx: typer.Context,
    feed: Annotated[str | None, typer.Option(help="Poll only this feed (by name).")] = None,
) -> None:
    """Run the whole stream once for all feeds (or one): poll, fetch new articles, extract, match, store.

    Example: monitor poll --feed bbc-world
    """
    state = _state(ctx)
    config, storage = state.config(), state.storage()
    _sync(config, storage)
    if feed is not None and config.feed(feed) is None:
        raise NotFoundError("feed", feed)

    async def main(extractor: ProcessPool) -> RunReport:
        async with Fetcher(config.network) as fetcher:
            pipeline = Pipeline(storage, fetcher, extractor=extractor)
            return await pipeline.run_once(feed=feed, all_feeds=True, progress=progress)

    with progress_bar() as progress, extraction_pool() as pool:
        report = asyncio.run(main(pool))
    _print_report(report)
    if report.failed_feeds and len(report.failed_feeds) == len(report.polls):
        raise typer.Exit(1)


@app.command()
@handle_errors
def search(
    ctx: typer.Context,
    query: str,
    since: Annotated[
        str | None, typer.Option(help="Only articles stored within this long, e.g. 24h, 30d.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many results.")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Search every stored article, hit or not: words, "exact phrases", OR, -excluded, prefix*.
    Title matches rank first.

    Example: monitor search '"Xi Jinping" Putin -Biden' --since 30d
    """
    results = _state(ctx).storage().search(query, limit=limit, since=_since(since))
    if as_json:
        _print_json([asdict(r) for r in results])
        return
    if not results:
        console.print("no articles found", highlight=False)
        return
    for r in results:
        console.print(
            f"[bold]{escape(r.title)}[/]  [dim]{r.feed} · {_when(r.published_at)}[/]", highlight=False
        )
        console.print(f"  {escape(r.url)}", highlight=False, soft_wrap=True)
        console.print(f"  {_marked(r.snippet)}\n", highlight=False)


@app.command()
@handle_errors
def prune(
    ctx: typer.Context,
    older_than: Annotated[
        str, typer.Option(help="Prune articles discovered longer ago than this, e.g. 90d.")
    ],
    dry_run: Annotated[bool, typer.Option(help="Only show what would go.")] = False,
) -> None:
    """Remove old articles' text, hits and fingerprints, except what an undelivered digest still needs.
    A pruned article's URL is kept, so a feed that still lists it does not bring it back.

    Example: monitor prune --older-than 90d --dry-run
    """
    state = _state(ctx)
    config, storage = state.config(), state.storage()
    _sync(config, storage)
    now = utc_now()
    try:
        before = now - parse_duration(older_than)
    except ValueError as exc:
        raise ConfigError(str(exc), key="--older-than") from None
    owed = owed_hit_ids(storage, config.subscriptions, now=now)
    report = storage.prune(before=before, owed_hit_ids=owed, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    console.print(
        f"{verb}: {report.articles} articles (discovered before {_when(before)}), {report.hits} hits, "
        f"{report.stories_removed} stories, {report.site_lines} lines of site chrome; "
        f"{report.stories_reassigned} stories keep a newer copy; "
        f"{report.kept_owed} old articles kept for undelivered digests",
        highlight=False,
    )


# -- db ----------------------------------------------------------------------------------------------------


@db_app.command("upgrade")
@handle_errors
def db_upgrade(ctx: typer.Context) -> None:
    """Create or upgrade the database schema to the newest revision.

    Example: monitor --db postgresql://monitor@localhost/monitor db upgrade
    """
    engine = make_engine(_state(ctx).settings.database_url)
    upgrade(engine)
    console.print(f"database at revision {current_revision(engine)} (head)")


@db_app.command("current")
@handle_errors
def db_current(ctx: typer.Context) -> None:
    """Show the database's schema revision and whether it is the newest.

    Example: monitor db current
    """
    engine = make_engine(_state(ctx).settings.database_url)
    current, head = current_revision(engine), head_revision()
    note = "(head)" if current == head else f"(not at head {head}: run `monitor db upgrade`)"
    console.print(f"{current or 'empty database'} {note}")


# -- feeds -------------------------------------------------------------------------------------------------


@feeds_app.command("list")
@handle_errors
def feeds_list(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List feeds with their last poll, status, error and next poll.

    Example: monitor feeds list --json
    """
    state = _state(ctx)
    storage = state.storage()
    _sync(state.config(), storage)
    feeds = storage.feed_statuses()
    if as_json:
        _print_json([asdict(f) for f in feeds])
        return
    table = Table("feed", "status", "last poll", "next poll", "articles", "error")
    for f in feeds:
        table.add_row(
            f.name,
            _feed_state(f) if f.active else "[dim]removed[/]",
            _when(f.last_polled_at),
            _when(f.next_poll_at),
            str(f.articles),
            _feed_problem(f),
        )
    console.print(table)


@feeds_app.command("add")
@handle_errors
def feeds_add(
    ctx: typer.Context,
    url: str,
    name: Annotated[str | None, typer.Option(help="Its name in feeds.yaml (default: from the URL).")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="A tag; repeat for more.")] = None,
    interval: Annotated[str | None, typer.Option(help="How often to poll it, e.g. 15m.")] = None,
    check: Annotated[bool, typer.Option(help="Fetch it first to make sure it is a working feed.")] = True,
) -> None:
    """Add a feed to feeds.yaml, keeping its comments and order. A web page's own feeds are named.

    Example: monitor feeds add https://www.example.com/rss.xml --name example --tag world
    """
    state = _state(ctx)
    config = state.config()
    if check:
        asyncio.run(_check(config, url))
    added = feedlist.add_feed(state.settings.config, url, name=name, tags=tag or (), interval=interval)
    console.print(f"added feed [bold]{added.name}[/] ({added.url})", highlight=False)


async def _check(config: MonitorConfig, url: str) -> feedlist.FoundFeed:
    async with Fetcher(config.network) as fetcher:
        return await feedlist.check_feed(fetcher, url)


@feeds_app.command("remove")
@handle_errors
def feeds_remove(ctx: typer.Context, name: str) -> None:
    """Remove a feed from feeds.yaml; its stored articles and hits stay.

    Example: monitor feeds remove example
    """
    state = _state(ctx)
    feedlist.remove_feed(state.settings.config, name)
    console.print(f"removed feed [bold]{name}[/] from {state.settings.config}", highlight=False)


@feeds_app.command("discover")
@handle_errors
def feeds_discover(ctx: typer.Context, site_url: str) -> None:
    """Find the feeds a site offers (announced in its HTML, or at the usual places) and check each works.

    Example: monitor feeds discover https://www.example.com/
    """
    found = asyncio.run(_discover(_state(ctx).config(), site_url))
    if not found:
        errors.print(f"no feeds found at {site_url}", highlight=False)
        raise typer.Exit(1)
    table = Table("feed", "title", "entries")
    for f in found:
        table.add_row(Text(f.url), Text(f.title or ""), str(f.entries))
    console.print(table)


async def _discover(config: MonitorConfig, url: str) -> list[feedlist.FoundFeed]:
    async with Fetcher(config.network) as fetcher:
        return await feedlist.discover_feeds(fetcher, url)


@feeds_app.command("import-opml")
@handle_errors
def feeds_import_opml(ctx: typer.Context, file: Path) -> None:
    """Add the feeds of an OPML file (exported by a feed reader) to feeds.yaml; folders become tags.

    Example: monitor feeds import-opml subscriptions.opml
    """
    state = _state(ctx)
    try:
        opml = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc}", path=str(file)) from None
    result = feedlist.import_opml(state.settings.config, opml, source=str(file))
    for feed in result.added:
        console.print(f"added {feed.name} ({feed.url})", highlight=False)
    for url, why in result.skipped:
        console.print(f"[dim]skipped {url}: {why}[/]", highlight=False)
    console.print(f"{len(result.added)} feeds added, {len(result.skipped)} skipped", highlight=False)


@feeds_app.command("export-opml")
@handle_errors
def feeds_export_opml(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of standard output.")] = None,
) -> None:
    """Write the feeds of feeds.yaml as OPML, for a feed reader.

    Example: monitor feeds export-opml --out feeds.opml
    """
    opml = feedlist.export_opml(_state(ctx).config())
    if out is None:
        sys.stdout.buffer.write(opml)
    else:
        out.write_bytes(opml)


# -- topics ------------------------------------------------------------------------------------------------


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [part.strip().lower() for part in value.split(",") if part.strip()]


LangOption = Annotated[str | None, typer.Option("--lang", help="Only these languages, e.g. en,ru,zh.")]
FeedsOption = Annotated[
    str | None, typer.Option("--feeds", help="Only these feeds (names), comma-separated.")
]
SitesOption = Annotated[
    str | None, typer.Option("--sites", help="Only these sites (hosts), comma-separated.")
]
MinScoreOption = Annotated[float, typer.Option(min=0.0, max=1.0, help="Hits below this score are dropped.")]


@topics_app.command("add")
@handle_errors
def topics_add(
    ctx: typer.Context,
    name: str,
    query: str,
    min_score: MinScoreOption = DEFAULT_MIN_SCORE,
    lang: LangOption = None,
    feeds: FeedsOption = None,
    sites: SitesOption = None,
) -> None:
    """Add a watch topic. The query is checked (with the aliases) before it is stored.

    Example: monitor topics add xi-putin '@xi AND @putin AND (talks OR meet*)' --min-score 0.4 --lang en,ru
    """
    topic = watchlist.add_topic(
        _state(ctx).storage(),
        name,
        query,
        min_score,
        utc_now(),
        languages=_csv(lang) or (),
        feeds=_csv(feeds) or (),
        sites=_csv(sites) or (),
    )
    console.print(
        f"added topic {topic.name!r}: {topic.query}  (min score {topic.min_score})", highlight=False
    )


@topics_app.command("edit")
@handle_errors
def topics_edit(
    ctx: typer.Context,
    name: str,
    query: Annotated[str | None, typer.Argument(help="The new query (default: unchanged).")] = None,
    min_score: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="New minimum score.")] = None,
    lang: LangOption = None,
    feeds: FeedsOption = None,
    sites: SitesOption = None,
) -> None:
    """Change a topic's query, minimum score or limits; its version goes up (hits record the version).

    Example: monitor topics edit xi-putin '@xi AND @putin AND SENTENCE(@xi, @putin)' --min-score 0.5
    """
    topic = watchlist.edit_topic(
        _state(ctx).storage(),
        name,
        utc_now(),
        query=query,
        min_score=min_score,
        languages=_csv(lang),
        feeds=_csv(feeds),
        sites=_csv(sites),
    )
    console.print(f"topic {topic.name!r} is now version {topic.version}: {topic.query}", highlight=False)
    console.print(f"re-match stored articles with: monitor topics backtest {topic.name}", highlight=False)


@topics_app.command("backtest")
@handle_errors
def topics_backtest(
    ctx: typer.Context,
    name: str,
    since: Annotated[
        str | None, typer.Option(help="Only articles stored within this long, e.g. 30d.")
    ] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Store the changes (default: only report).")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Re-match stored articles against a topic as it is now; report what would be added and removed.

    Example: monitor topics backtest xi-putin --since 30d --apply
    """
    cutoff = _since(since)
    with progress_bar() as progress:
        report = watchlist.backtest(_state(ctx).storage(), name, since=cutoff, apply=apply, progress=progress)
    if as_json:
        _print_json(
            {
                "topic": name,
                "version": report.topic.version,
                "articles": report.articles,
                "applied": report.applied,
                "kept_delivered": report.kept_delivered,
                "still_matching": len(report.still_matching),
                "added": [
                    {"url": a.url, "title": a.title, "score": m.score} for a, m in report.added.values()
                ],
                "removed": [{"url": a.url, "title": a.title, "score": h.score} for a, h in report.removed],
            }
        )
        return
    verb = "added" if report.applied else "would be added"
    console.print(
        f"{report.articles} stored articles re-matched against {name!r} (version {report.topic.version})"
    )
    console.print(
        f"{len(report.added)} {verb}, {len(report.removed)} {verb.replace('added', 'removed')}, "
        f"{len(report.still_matching)} still matching, {report.kept_delivered} no longer matching "
        "but kept (already delivered)",
        highlight=False,
    )
    table = Table("change", "score", "title", "url")
    for article, match in report.added.values():
        table.add_row("[green]+[/]", f"{match.score:.2f}", Text(article.title), Text(article.url))
    for article, hit in report.removed:
        table.add_row("[red]-[/]", f"{hit.score:.2f}", Text(article.title), Text(article.url))
    if table.rows:
        console.print(table)
    if not report.applied and (report.added or report.removed):
        console.print("nothing changed yet: run again with --apply to store this")


@topics_app.command("list")
@handle_errors
def topics_list(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List watch topics with their hit counts.

    Example: monitor topics list
    """
    storage = _state(ctx).storage()
    topics, counts = storage.topics(), storage.topic_hit_counts()
    if as_json:
        _print_json([{**asdict(t), "hits": counts.get(t.name, 0)} for t in topics])
        return
    table = Table("topic", "query", "min score", "limits", "version", "hits")
    for t in topics:
        table.add_row(
            t.name,
            Text(t.query),
            f"{t.min_score:.2f}",
            _limits(t),
            str(t.version),
            str(counts.get(t.name, 0)),
        )
    console.print(table)


@topics_app.command("show")
@handle_errors
def topics_show(ctx: typer.Context, name: str) -> None:
    """Show one topic and its newest hits.

    Example: monitor topics show xi-putin
    """
    storage = _state(ctx).storage()
    topic = storage.get_topic(name)
    console.print(f"[bold]{topic.name}[/] (version {topic.version}, min score {topic.min_score:.2f})")
    console.print(f"query: {escape(topic.query)}", highlight=False)
    compiled = compile_query(topic.query, aliases=storage.aliases())
    console.print(f"terms: {escape(', '.join(compiled.terms()))}", highlight=False)
    if compiled.aliases_used:
        console.print(
            f"aliases: {', '.join('@' + a for a in sorted(compiled.aliases_used))}", highlight=False
        )
    if limits := _limits(topic):
        console.print(f"limits: {limits}", highlight=False)
    _print_hits(storage.hits(topic=name, limit=10))


@topics_app.command("remove")
@handle_errors
def topics_remove(ctx: typer.Context, name: str) -> None:
    """Remove a topic and its hits.

    Example: monitor topics remove xi-putin
    """
    _state(ctx).storage().remove_topic(name)
    console.print(f"removed topic {name!r}")


@topics_app.command("export")
@handle_errors
def topics_export(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of standard output.")] = None,
) -> None:
    """Write every alias and topic as YAML, to keep them in git or move them to another monitor.

    Example: monitor topics export --out watchlist.yaml
    """
    text = watchlist.export_watchlist(_state(ctx).storage())
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")


@topics_app.command("import")
@handle_errors
def topics_import(ctx: typer.Context, file: Path) -> None:
    """Create or update the aliases and topics of a YAML file written by `topics export` (all of it is
    checked before anything changes; topics not in the file are left alone).

    Example: monitor topics import watchlist.yaml
    """
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", path=str(file)) from None
    report = watchlist.import_watchlist(_state(ctx).storage(), text, utc_now(), source=str(file))
    for label, names in (("created", report.created), ("updated", report.updated)):
        if names:
            console.print(f"{label}: {', '.join(names)}", highlight=False)
    console.print(
        f"{len(report.created)} created, {len(report.updated)} updated, {len(report.unchanged)} unchanged",
        highlight=False,
    )


@topics_app.command("test")
@handle_errors
def topics_test(
    ctx: typer.Context,
    query: str,
    url: Annotated[str | None, typer.Option(help="Fetch and extract this article page.")] = None,
    file: Annotated[Path | None, typer.Option(help="An HTML page or a text file.")] = None,
    text: Annotated[str | None, typer.Option(help="Text to test directly.")] = None,
) -> None:
    """Test a query against a page, a file or a text: does it match, with which terms and score.

    Example: monitor topics test '"xi jinping" AND putin*' --url https://en.kremlin.ru/events/president/news/63621
    """
    if [url, file, text].count(None) != 2:
        raise typer.BadParameter("give exactly one of --url, --file, --text")
    state = _state(ctx)
    compiled = compile_query(query, aliases=_aliases_if_any(state))
    title, body = "", text or ""
    if url is not None:
        title, body = _fetch_for_test(state, url)
    elif file is not None:
        content = file.read_bytes()
        is_html = file.suffix in (".html", ".htm")
        article = extract_page(content, url=file.resolve().as_uri()) if is_html else None
        title, body = (article.title, article.text) if article else ("", content.decode("utf-8", "replace"))
    found = evaluate(compiled, prepare(Document(title=title, text=body)))
    if title:
        console.print(f"title: {escape(title)}", highlight=False)
    if found is None:
        console.print("[yellow]no match[/]")
        raise typer.Exit(1)
    console.print(f"[green]match[/], score {found.score:.2f}", highlight=False)
    _print_explanation([asdict(c) for c in found.explanation], found.snippet)


def _aliases_if_any(state: State) -> dict[str, str]:
    """The stored aliases, or none when there is no database yet (testing a query needs no database)."""
    try:
        return state.storage().aliases()
    except MonitorError:
        return {}


def _marked(snippet: str) -> str:
    """A snippet as Rich markup: its text escaped, its «marked» terms in bold."""
    return re.sub(r"«([^«»]*)»", r"[bold yellow]«\1»[/]", escape(snippet))


def _print_explanation(explanation: list[dict[str, Any]], snippet: str) -> None:
    table = Table("matched term", "in title", "in body")
    for clause in explanation:
        table.add_row(Text(str(clause["term"])), str(clause["title"]), str(clause["body"]))
    console.print(table)
    console.print(f"snippet: {_marked(snippet)}", highlight=False)


def _fetch_for_test(state: State, url: str) -> tuple[str, str]:
    network = state.config().network if state.settings.config.exists() else MonitorConfig().network

    async def fetch() -> bytes:
        async with Fetcher(network) as fetcher:
            return (await fetcher.fetch_page(url)).content

    article = extract_page(asyncio.run(fetch()), url=url)
    if article is None:
        raise MonitorError(f"{url}: the page has no usable article body")
    return article.title, article.text


# -- hits --------------------------------------------------------------------------------------------------


@hits_app.command("list")
@handle_errors
def hits_list(
    ctx: typer.Context,
    topic: Annotated[str | None, typer.Option(help="Only this topic.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only hits stored within this long, e.g. 24h, 7d.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List stored hits, newest first.

    Example: monitor hits list --topic xi-putin --since 24h --json
    """
    hits = _state(ctx).storage().hits(topic=topic, since=_since(since))
    if as_json:
        _print_json(
            [
                {
                    "id": h.id,
                    "topic": h.topic,
                    "url": h.url,
                    "title": h.title,
                    "source": h.source,
                    "published": h.published,
                    "score": h.score,
                    "matched": h.matched,
                    "snippet": h.snippet,
                    "text_source": h.text_source,
                    "stored": h.created_at,
                    "explanation": h.explanation,
                    "story": h.story_id,
                    "republished_from": h.republished_from,
                }
                for h in hits
            ]
        )
        return
    _print_hits(hits)


@hits_app.command("show")
@handle_errors
def hits_show(ctx: typer.Context, hit_id: int) -> None:
    """Show one hit and why it matched: the terms, where they occurred, and the snippet.

    Example: monitor hits show 42
    """
    hit = _state(ctx).storage().get_hit(hit_id)
    console.print(f"[bold]{escape(hit.title)}[/]", highlight=False)
    console.print(
        f"{escape(hit.url)}\n{escape(hit.source)} · {_when(hit.published)} · topic {hit.topic} "
        f"(version {hit.topic_version}) · score {hit.score:.2f}",
        highlight=False,
    )
    if hit.text_source == "feed":
        console.print("matched on the feed's summary: the page could not be read")
    if hit.republished_from:
        console.print(f"republished, originally {_when(hit.republished_from)}", highlight=False)
    _print_explanation(hit.explanation, hit.snippet)
    if hit.story_id is not None:
        others = len(_state(ctx).storage().get_story(hit.story_id).copies) - 1
        console.print(
            f"story {hit.story_id}"
            + (
                f" ({others} other source{'s' if others != 1 else ''}: monitor stories show {hit.story_id})"
                if others
                else ""
            ),
            highlight=False,
        )


# -- stories ---------------------------------------------------------------------------------------------


@stories_app.command("list")
@handle_errors
def stories_list(
    ctx: typer.Context,
    topic: Annotated[str | None, typer.Option(help="Only stories that hit this topic.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only stories first hit within this long, e.g. 24h, 7d.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List stories that hit a topic, newest first, each once with how many sources reported it.

    Example: monitor stories list --topic xi-putin --since 7d
    """
    stories = _state(ctx).storage().stories(topic=topic, since=_since(since), limit=limit)
    if as_json:
        _print_json([_story_json(s) for s in stories])
        return
    if not stories:
        console.print("no stories")
        return
    table = Table("id", "title", "source", "published", "sources", "topics")
    for story in stories:
        first = story.copies[0] if story.copies else None
        table.add_row(
            str(story.id),
            Text(story.title),
            Text(first.source) if first else "-",
            _when(story.first_published),
            str(len({c.source for c in story.copies})),
            ", ".join(story.topics),
        )
    console.print(table)


@stories_app.command("show")
@handle_errors
def stories_show(
    ctx: typer.Context, story_id: int, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Show a story: the copy shown for it, then every other copy with its source and date.

    Example: monitor stories show 7
    """
    story = _state(ctx).storage().get_story(story_id)
    if as_json:
        _print_json(_story_json(story))
        return
    console.print(f"[bold]{escape(story.title)}[/]", highlight=False)
    console.print(
        f"first published {_when(story.first_published)} · topics: {', '.join(story.topics) or '-'}",
        highlight=False,
    )
    table = Table("", "source", "published", "title", "url")
    for i, copy in enumerate(story.copies):
        note = " (republished)" if copy.republished_from else ""
        table.add_row(
            "shown" if i == 0 else "",
            Text(copy.source),
            _when(copy.published) + note,
            Text(copy.title),
            Text(copy.url),
        )
    console.print(table)


def _story_json(story: StoryView) -> dict[str, Any]:
    return {
        "id": story.id,
        "title": story.title,
        "first_published": story.first_published,
        "topics": story.topics,
        "copies": [asdict(c) for c in story.copies],
    }


def _since(value: str | None) -> datetime | None:
    try:
        return utc_now() - parse_duration(value) if value else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None


# -- aliases -----------------------------------------------------------------------------------------------


@aliases_app.command("add")
@handle_errors
def aliases_add(ctx: typer.Context, name: str, query: str) -> None:
    """Define an alias, or redefine it: every topic using @NAME changes with it (and its version goes up).

    Example: monitor aliases add xi 'xi OR "xi jinping" OR 习近平 OR "си цзиньпин"'
    """
    created, affected = watchlist.set_alias(_state(ctx).storage(), name, query, utc_now())
    console.print(f"{'added' if created else 'changed'} alias @{name}: {query}", highlight=False)
    if affected and not created:
        console.print(
            f"topics changed with it: {', '.join(affected)} "
            "(re-match stored articles with `monitor topics backtest NAME`)",
            highlight=False,
        )


@aliases_app.command("list")
@handle_errors
def aliases_list(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List aliases.

    Example: monitor aliases list --json
    """
    aliases = _state(ctx).storage().aliases()
    if as_json:
        _print_json([{"name": n, "query": q} for n, q in aliases.items()])
        return
    table = Table("alias", "query")
    for name, query in aliases.items():
        table.add_row("@" + name, Text(query))
    console.print(table)


@aliases_app.command("show")
@handle_errors
def aliases_show(ctx: typer.Context, name: str) -> None:
    """Show an alias and the topics that use it.

    Example: monitor aliases show xi
    """
    storage = _state(ctx).storage()
    aliases = storage.aliases()
    if name not in aliases:
        raise NotFoundError("alias", name)
    console.print(f"@{name}: {escape(aliases[name])}", highlight=False)
    users = watchlist.topics_using(storage, name, aliases)
    console.print(f"used by: {', '.join(users) if users else 'no topic'}", highlight=False)


@aliases_app.command("remove")
@handle_errors
def aliases_remove(ctx: typer.Context, name: str) -> None:
    """Remove an alias that no topic uses.

    Example: monitor aliases remove xi
    """
    watchlist.remove_alias(_state(ctx).storage(), name)
    console.print(f"removed alias @{name}")


# -- digest ------------------------------------------------------------------------------------------------


class ExportFormat(StrEnum):
    atom = "atom"
    json = "json"


@digest_app.command("preview")
@handle_errors
def digest_preview(
    ctx: typer.Context,
    subscription: Annotated[
        str | None, typer.Option(help="Only this subscription (default: every one).")
    ] = None,
    out: Annotated[
        Path,
        typer.Option(help="Where to write the HTML (with several subscriptions: FILE-NAME.html beside it)."),
    ] = Path("digest-preview.html"),
    open_browser: Annotated[bool, typer.Option("--open", help="Open the file in a web browser.")] = False,
) -> None:
    """Show what the next scheduled digest of each subscription would contain (and the alerts waiting),
    and write it as HTML, without sending or recording anything.

    Example: monitor digest preview --subscription morning --out /tmp/digest.html --open
    """
    state = _state(ctx)
    config, storage = state.config(), state.storage()
    subs = [_subscription(state, subscription)] if subscription else config.subscriptions
    if not subs:
        raise ConfigError("no subscriptions defined", path=str(state.settings.config), key="subscriptions")
    now = utc_now()
    for sub in subs:
        preview = preview_digest(storage, sub, now=now)
        path = out if len(subs) == 1 else out.with_name(f"{out.stem}-{sub.name}{out.suffix or '.html'}")
        path.write_text(render_html(preview.digest), encoding="utf-8")
        _print_preview(preview, path.resolve())
        if open_browser and not webbrowser.open(path.resolve().as_uri()):
            errors.print(f"[yellow]warning:[/] no web browser found to open {path}", highlight=False)


def _print_preview(preview: Preview, path: Path) -> None:
    sub, digest = preview.subscription, preview.digest
    zone = sub.zone
    when = (
        f"next digest {_when(preview.next_at, zone)} ({sub.schedule})"
        if preview.next_at
        else "as it happens (no periodic digest)"
    )
    console.print(f"[bold]{escape(sub.name)}[/]: {when}", highlight=False)
    console.print(f"  {escape(digest.subject)}", highlight=False)
    for section in digest.sections:
        console.print(f"  [bold]{escape(section.topic)}[/] ({len(section.stories)} new)", highlight=False)
        for story in section.stories:
            console.print(
                f"    • {escape(story.hit.title)} [dim]({escape(story.hit.source)})[/]", highlight=False
            )
        if section.updates:
            console.print(
                f"    + more sources on {len(section.updates)} stories already sent", highlight=False
            )
    for topic, alert in preview.alerts.items():
        held = f", held back by the rate limit until {_when(alert.wait, zone)}" if alert.wait else ""
        console.print(
            f"  alert [bold]{escape(topic)}[/]: {alert.digest.count} new stories waiting{held}",
            highlight=False,
        )
    console.print(f"  written to {path}", highlight=False)


@digest_app.command("export")
@handle_errors
def digest_export(
    ctx: typer.Context,
    subscription: Annotated[str, typer.Option(help="The subscription whose digests to export.")],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="Atom feed or JSON.")] = ExportFormat.atom,
    limit: Annotated[
        int, typer.Option(min=1, max=1000, help="The latest this many digests and alerts.")
    ] = 20,
) -> None:
    """Write a subscription's latest digests and alerts to standard output, as an Atom feed or as JSON
    (the shape is in docs/digest-format.md). `monitor run --http` serves the same at /feeds/NAME.atom.

    Example: monitor digest export --subscription morning --format atom > morning.atom
    """
    state = _state(ctx)
    sub = _subscription(state, subscription)
    sys.stdout.write(export_digests(state.storage(), sub, fmt.value, now=utc_now(), limit=limit))
    if fmt is ExportFormat.json:
        sys.stdout.write("\n")


@digest_app.command("send")
@handle_errors
def digest_send(
    ctx: typer.Context,
    subscription: Annotated[str | None, typer.Option(help="Only this subscription (default: all).")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be sent; send nothing.")
    ] = False,
) -> None:
    """Send the digest of every subscription (or one) now, and the alerts of alerting topics that are
    owed; a delivery waiting in the outbox is retried now.

    Example: monitor digest send --subscription morning --dry-run
    """
    state = _state(ctx)
    config, storage = state.config(), state.storage()
    subs = [_subscription(state, subscription)] if subscription else config.subscriptions
    failed = False
    for sub in subs:
        try:
            if sub.periodic:
                result = deliver_digest(storage, sub, state.settings, now=utc_now(), dry_run=dry_run)
                console.print(f"{sub.name}: {result.status}: {result.subject}", highlight=False)
            if sub.alert_topics and not dry_run:
                for alert in deliver_alerts(storage, sub, state.settings, now=utc_now(), only_due=False):
                    console.print(f"{sub.name}: alert {alert.status}: {alert.subject}", highlight=False)
        except MonitorError as exc:
            errors.print(f"[bold red]error:[/] {exc}", highlight=False)
            failed = True
    if failed:
        raise typer.Exit(1)


def _limits(topic: TopicSpec) -> str:
    parts = [
        f"{label} {','.join(values)}"
        for label, values in (("lang", topic.languages), ("feeds", topic.feeds), ("sites", topic.sites))
        if values
    ]
    return "; ".join(parts)


def _subscription(state: State, name: str | None) -> SubscriptionConfig:
    config = state.config()
    if not config.subscriptions:
        raise ConfigError("no subscriptions defined", path=str(state.settings.config), key="subscriptions")
    if name is None:
        return config.subscriptions[0]
    sub = config.subscription(name)
    if sub is None:
        raise NotFoundError("subscription", name)
    return sub


# -- output helpers ----------------------------------------------------------------------------------------


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=_json_default, ensure_ascii=False, indent=2) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _when(value: datetime | None, zone: tzinfo | None = None) -> str:
    """A time for people: in the given zone (a subscription's), else the machine's local time."""
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if value else "-"


def _print_hits(hits: list[HitView]) -> None:
    if not hits:
        console.print("no hits")
        return
    table = Table("id", "topic", "score", "title", "source", "published", "story", "matched")
    for h in hits:
        published = _when(h.published) + (" (republished)" if h.republished_from else "")
        table.add_row(
            str(h.id),
            h.topic,
            f"{h.score:.2f}",
            Text(h.title),
            Text(h.source),
            published,
            str(h.story_id or "-"),
            ", ".join(h.matched),
        )
    console.print(table)


def _print_report(report: RunReport) -> None:
    updated = sum(p.status == "updated" for p in report.polls)
    unchanged = sum(p.status == "not_modified" for p in report.polls)
    console.print(
        f"{len(report.polls)} feeds polled ({updated} updated, {unchanged} not modified, "
        f"{len(report.failed_feeds)} failed); {report.articles} articles processed "
        f"({report.from_feed} from feed text); {report.hits} hits"
    )
    for failed in report.failed_feeds:
        errors.print(f"[red]feed {failed.feed}:[/] {failed.error}", highlight=False)


@contextmanager
def progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """A Rich progress display on a terminal (silent otherwise) with the rate and the time left, updated
    as (stage, done, total): `monitor poll` over a large feed list, backtests, the demo."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=errors,
        transient=True,
        disable=not errors.is_terminal,
    ) as progress:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total, rate="")
            speed = progress.tasks[tasks[stage]].speed
            rate = f"{speed:.1f}/s" if speed else ""
            progress.update(tasks[stage], completed=done, total=total, rate=rate)

        yield update


def _sync(config: MonitorConfig, storage: Storage) -> None:
    """Bring feeds.yaml's feeds and subscriptions into the database; warn of topics not added yet."""
    now = utc_now()
    storage.sync_feeds(config.feeds, now)
    storage.sync_subscriptions(config.subscriptions, now)
    known = {t.name for t in storage.topics()}
    for sub in config.subscriptions:
        for name in sub.topics:
            if name not in known:
                errors.print(
                    f"[yellow]warning:[/] subscription {sub.name!r} names topic {name!r}, which does "
                    f"not exist yet (add it with `monitor topics add {name} QUERY`)",
                    highlight=False,
                )


def main() -> None:
    app()
