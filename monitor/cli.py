"""The command line: a thin Typer app; each command parses options, calls the library, prints."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from monitor import demo as demo_module
from monitor.config import (
    MonitorConfig,
    Settings,
    SubscriptionConfig,
    load_config,
    load_settings,
    parse_duration,
)
from monitor.digest import deliver_digest, prepare_digest, render_html
from monitor.errors import ConfigError, MonitorError, NotFoundError
from monitor.extract import extract_page
from monitor.fetch import Fetcher
from monitor.pipeline import Pipeline, RunReport, utc_now
from monitor.scheduler import DEFAULT_TICK_SECONDS, Daemon
from monitor.storage import HitView, Storage, ensure_current, make_engine, upgrade
from monitor.storage.engine import current_revision, head_revision
from monitor.topics import Document, compile_query, evaluate, prepare

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
digest_app = typer.Typer(help="Digests of hits, by subscription.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(feeds_app, name="feeds")
app.add_typer(topics_app, name="topics")
app.add_typer(hits_app, name="hits")
app.add_typer(digest_app, name="digest")

console = Console()
errors = Console(stderr=True)

DEFAULT_MIN_SCORE = 0.3


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
        Path | None, typer.Option("--config", help="feeds.yaml to use [env MONITOR_CONFIG].")
    ] = None,
    db: Annotated[str | None, typer.Option("--db", help="Database URL [env MONITOR_DATABASE_URL].")] = None,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="-v: log activity; -vv: debug.")
    ] = 0,
) -> None:
    """Example: monitor --config feeds.yaml --db sqlite:///monitor.db poll"""
    from monitor.logs import configure_logging

    configure_logging(verbose)
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
) -> None:
    """Run the daemon: poll feeds when due, process articles, send digests on schedule. Stops on SIGTERM.

    Example: monitor --config /etc/monitor/feeds.yaml run
    """
    state = _state(ctx)
    config, storage = state.config(), state.storage()
    _sync(config, storage)

    async def main() -> None:
        async with Fetcher(config.network) as fetcher:
            await Daemon(Pipeline(storage, fetcher), storage, config, state.settings, tick_seconds=tick).run()

    asyncio.run(main())


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

    async def main() -> RunReport:
        async with Fetcher(config.network) as fetcher:
            return await Pipeline(storage, fetcher).run_once(feed=feed, all_feeds=True, progress=progress)

    with progress_bar() as progress:
        report = asyncio.run(main())
    _print_report(report)
    if report.failed_feeds and len(report.failed_feeds) == len(report.polls):
        raise typer.Exit(1)


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
        status = (
            "[dim]removed[/]"
            if not f.active
            else f"[red]failing ×{f.consecutive_errors}[/]"
            if f.consecutive_errors
            else "[green]ok[/]"
            if f.last_success_at
            else "new"
        )
        table.add_row(
            f.name,
            status,
            _when(f.last_polled_at),
            _when(f.next_poll_at),
            str(f.articles),
            f.last_error or "",
        )
    console.print(table)


# -- topics ------------------------------------------------------------------------------------------------


@topics_app.command("add")
@handle_errors
def topics_add(
    ctx: typer.Context,
    name: str,
    query: str,
    min_score: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Hits below this score are dropped.")
    ] = DEFAULT_MIN_SCORE,
) -> None:
    """Add a watch topic. The query is checked before it is stored.

    Example: monitor topics add xi-putin '(xi OR "xi jinping") AND putin*' --min-score 0.3
    """
    compile_query(query)
    topic = _state(ctx).storage().add_topic(name, query, min_score, utc_now())
    console.print(f"added topic {topic.name!r}: {topic.query}  (min score {topic.min_score})")


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
    table = Table("topic", "query", "min score", "version", "hits")
    for t in topics:
        table.add_row(t.name, t.query, f"{t.min_score:.2f}", str(t.version), str(counts.get(t.name, 0)))
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
    console.print(f"query: {topic.query}", highlight=False)
    console.print(f"terms: {', '.join(compile_query(topic.query).terms())}", highlight=False)
    _print_hits(storage.hits(topic=name, limit=10))


@topics_app.command("remove")
@handle_errors
def topics_remove(ctx: typer.Context, name: str) -> None:
    """Remove a topic and its hits.

    Example: monitor topics remove xi-putin
    """
    _state(ctx).storage().remove_topic(name)
    console.print(f"removed topic {name!r}")


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
    compiled = compile_query(query)
    title, body = "", text or ""
    if url is not None:
        title, body = _fetch_for_test(_state(ctx), url)
    elif file is not None:
        content = file.read_bytes()
        article = (
            extract_page(content, url=file.resolve().as_uri()) if file.suffix in (".html", ".htm") else None
        )
        title, body = (article.title, article.text) if article else ("", content.decode("utf-8", "replace"))
    found = evaluate(compiled, prepare(Document(title=title, text=body)))
    if title:
        console.print(f"title: {title}", highlight=False)
    if found is None:
        console.print("[yellow]no match[/]")
        raise typer.Exit(1)
    console.print(
        f"[green]match[/], score {found.score:.2f}; matched: {', '.join(found.matched)}", highlight=False
    )
    console.print(f"snippet: {found.snippet}", highlight=False)


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
    try:
        cutoff = utc_now() - parse_duration(since) if since else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    hits = _state(ctx).storage().hits(topic=topic, since=cutoff)
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
                }
                for h in hits
            ]
        )
        return
    _print_hits(hits)


# -- digest ------------------------------------------------------------------------------------------------


@digest_app.command("preview")
@handle_errors
def digest_preview(
    ctx: typer.Context,
    subscription: Annotated[str | None, typer.Option(help="Subscription name (default: the first).")] = None,
    out: Annotated[Path, typer.Option(help="Where to write the HTML.")] = Path("digest-preview.html"),
) -> None:
    """Write the digest a subscription would get now to an HTML file, without sending or recording it.

    Example: monitor digest preview --subscription morning --out /tmp/digest.html
    """
    state = _state(ctx)
    sub = _subscription(state, subscription)
    digest = prepare_digest(state.storage(), sub, now=utc_now())
    out.write_text(render_html(digest), encoding="utf-8")
    console.print(f"{digest.subject}\nwritten to {out.resolve()}", highlight=False)


@digest_app.command("send")
@handle_errors
def digest_send(
    ctx: typer.Context,
    subscription: Annotated[str | None, typer.Option(help="Only this subscription (default: all).")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be sent; send nothing.")
    ] = False,
) -> None:
    """Send the due digest of every subscription (or one) now.

    Example: monitor digest send --subscription morning --dry-run
    """
    state = _state(ctx)
    config, storage = state.config(), state.storage()
    subs = [_subscription(state, subscription)] if subscription else config.subscriptions
    failed = False
    for sub in subs:
        try:
            result = deliver_digest(storage, sub, state.settings, now=utc_now(), dry_run=dry_run)
        except MonitorError as exc:
            errors.print(f"[bold red]error:[/] {exc}", highlight=False)
            failed = True
            continue
        console.print(f"{sub.name}: {result.status}: {result.digest.subject}", highlight=False)
    if failed:
        raise typer.Exit(1)


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


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M") if value else "-"


def _print_hits(hits: list[HitView]) -> None:
    if not hits:
        console.print("no hits")
        return
    table = Table("topic", "score", "title", "source", "published", "matched")
    for h in hits:
        table.add_row(h.topic, f"{h.score:.2f}", h.title, h.source, _when(h.published), ", ".join(h.matched))
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
    """A Rich progress display on a terminal (silent otherwise), updated as (stage, done, total)."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=errors,
        transient=True,
        disable=not errors.is_terminal,
    ) as progress:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

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
