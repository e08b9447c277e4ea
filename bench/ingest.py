"""Ingest throughput: articles/s from feeds to stored hits, against trafilatura alone on the same pages.

Inputs: the real article pages of ../shared/corpus/articles/ (270 pages of many outlets), repeated under
distinct URLs up to ``--articles``, and RSS feeds of ``--per-feed`` items built from them, each feed a site
on its own loopback address; all served by bench/ingest_server.py in a subprocess (so serving never takes
this process's GIL), gzip-compressed, over keep-alive. Every site holds each page at most once, so no copy
is taken for site chrome; copies of one page on other sites are found as exact copies by the dedup stage.

Measured: one real ``Pipeline.run_once(all_feeds=True)`` on a fresh database (SQLite in a temporary
directory, or ``--database-url``) with 100 watch topics made by bench/matching.py's TopicMaker from the
names and phrases of these pages' texts, a Fetcher allowed onto loopback (per-host spacing 0; monitor's
default global and per-host concurrency), and ``extractor=monitor.extract.extraction_pool(N)``, N the number
of cores: from the first feed request to the last article stored with its story and hits. The floor, on the
same pages under the same URLs: ``monitor.extract.extract_page`` (trafilatura's ``bare_extraction`` with
monitor's parameters) of every page in a fresh ``extraction_pool(N)``, one task a page, two a worker in
flight (as the stream holds them); measured just before and just after the pipeline (from a spawned child
process, so this process never holds the pages), the mean of the two taken. Every pool is warmed (workers
started, trafilatura imported) before timing.

Also printed: peak RSS of this process (the daemon's stand-in), of each extraction worker, and of both
together (sampled every 0.1 s); CPU seconds per article of this process and of the workers, time they were
runnable but waiting for a core, and how many cores other processes of the machine kept busy (it is
shared: a busy neighbour shows there); the per-stage totals of monitor.metrics.STAGE_SECONDS; the wall time
of every Storage call. ``--profile`` runs the pipeline under cProfile and prints monitor's functions by
cumulative time (slower: its figures are not the benchmark's).

Usage: .venv/bin/python bench/ingest.py [--quick] [--articles N] [--database-url URL] [--profile]

The last line printed is one JSON object with the figures and whether the target is met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import gzip
import io
import json
import multiprocessing
import os
import pstats
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import ip_network
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from ingest_server import CORPUS, article_path, load_pages
from matching import TopicMaker, vocabulary

from monitor.config import FeedConfig, NetworkConfig
from monitor.extract import extract_page, extraction_pool
from monitor.fetch import Fetcher
from monitor.metrics import REGISTRY
from monitor.pipeline import Pipeline, RunReport
from monitor.pool import ProcessPool
from monitor.storage import ArticleBatch, Storage, make_engine, upgrade

SERVER = Path(__file__).resolve().with_name("ingest_server.py")
ARTICLES = 2_000
QUICK_ARTICLES = 300
#: pipeline runs, each measured against the floors just before and just after it: this machine's speed
#: drifts by 10-20% within minutes, and the median of three rounds is steadier than one
ROUNDS = 3
PER_FEED = 50
TOPICS = 100
#: as ``monitor topic add`` sets by default
MIN_SCORE = 0.3
TARGET_RATIO = 0.8
#: cores other processes may keep busy in a phase before the run is said to be disturbed
QUIET_CORES = 0.2
STAGES = ("poll", "fetch", "extract", "dedup", "match", "store")
_TICKS = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


def start_server(articles: int, per_feed: int) -> tuple[subprocess.Popen[str], list[str], list[str]]:
    """bench/ingest_server.py in a subprocess; returns it, each feed site's base URL and the feed URLs."""
    server = subprocess.Popen(
        [sys.executable, str(SERVER), "--articles", str(articles), "--per-feed", str(per_feed)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    if not line:
        server.wait()
        sys.exit(f"the page server exited ({server.returncode}) before it listened")
    info = json.loads(line)
    return server, info["bases"], info["feeds"]


def topic_texts() -> list[str]:
    """The article bodies of the served pages (ground truth of aeb and kremlin), for making topics."""
    texts = []
    for name in ("aeb", "kremlin"):
        truth = json.loads((CORPUS / name / "ground-truth.json").read_text(encoding="utf-8"))
        texts += [page["articleBody"] for page in truth.values()]
    return texts


def add_topics(storage: Storage, count: int, seed: int, now: datetime) -> list[str]:
    """``count`` watch topics, made as bench/matching.py makes them (monitoring mix), with their aliases."""
    maker = TopicMaker(vocabulary(topic_texts()), seed)
    queries = maker.make(count)
    for name in sorted({n for q in queries for n in q.aliases_used}):
        storage.set_alias(name, maker.aliases[name], now)
    for i, query in enumerate(queries):
        storage.add_topic(f"bench-{i:03d}", query.source, MIN_SCORE, now)
    return [q.source for q in queries]


def status_kib(pid: int, field: str) -> int:
    """A /proc/<pid>/status figure in KiB (VmRSS, VmHWM); 0 if the process is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def thread_cpu_seconds() -> dict[int, tuple[str, float]]:
    """Each live thread of this process: its role (its Python name without numbers: the event loop is
    MainThread, settling runs in asyncio_N, the process pool's hand-off in its manager and feeder threads)
    and its user + system CPU seconds so far."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    threads = {}
    for tid in map(int, os.listdir("/proc/self/task")):
        try:
            with open(f"/proc/self/task/{tid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # it ended
            continue
        role = re.sub(r"\d+", "N", names.get(tid, "unnamed"))
        threads[tid] = role, (int(fields[11]) + int(fields[12])) / _TICKS
    return threads


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores, every process), from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / _TICKS


def cpu_wait_seconds(pid: int) -> float:
    """Seconds the threads of a process have spent runnable but waiting for a CPU (0 if it is gone)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def workers(pool: ProcessPool) -> list[int]:
    return pool.pids


class RssSampler(threading.Thread):
    """Samples the RSS of this process and of the pool's workers every 0.1 s; keeps the peaks."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids, self.peak_tree, self._done = pids, 0, threading.Event()
        #: this process's threads as last sampled (the event loop's to_thread threads end with it)
        self._threads_at_start = thread_cpu_seconds()
        self.threads: dict[int, tuple[str, float]] = {}

    def cpu_by_role(self) -> dict[str, float]:
        """CPU seconds this process's threads spent since the sampler was made, by role (a thread that
        ended loses what it spent after its last sample, at most 0.1 s)."""
        roles: dict[str, float] = {}
        for tid, (role, seconds) in self.threads.items():
            roles[role] = roles.get(role, 0.0) + seconds - self._threads_at_start.get(tid, (role, 0.0))[1]
        return roles

    def run(self) -> None:
        while not self._done.wait(0.1):
            self.sample()

    def sample(self) -> None:
        total = status_kib(os.getpid(), "VmRSS") + sum(status_kib(p, "VmRSS") for p in self.pids)
        self.peak_tree = max(self.peak_tree, total)
        self.threads.update(thread_cpu_seconds())

    def stop(self) -> None:
        self._done.set()
        self.join()
        self.sample()


def warm(pool: ProcessPool, size: int, page: bytes) -> None:
    """Have every worker import trafilatura and extract once, as a running daemon's have."""
    asyncio.run(extract_all(pool, size, [(f"http://warm.example/{i}", page) for i in range(4 * size)]))
    assert len(workers(pool)) == size, f"{len(workers(pool))} workers started, {size} wanted"


async def extract_all(pool: ProcessPool, size: int, items: list[tuple[str, bytes]]) -> int:
    """extract_page of every (url, page), two a worker at a time (as the stream holds them); how many gave
    an article."""
    slots = asyncio.Semaphore(2 * size)

    async def one(url: str, page: bytes) -> bool:
        async with slots:
            return await pool.run(extract_page, page, url=url) is not None

    return sum(await asyncio.gather(*(one(url, page) for url, page in items)))


def stage_totals() -> dict[str, tuple[float, float]]:
    """Each stage's (count, seconds) so far, from monitor_stage_seconds."""
    totals = {}
    for stage in STAGES:
        count = REGISTRY.get_sample_value("monitor_stage_seconds_count", {"stage": stage}) or 0.0
        seconds = REGISTRY.get_sample_value("monitor_stage_seconds_sum", {"stage": stage}) or 0.0
        totals[stage] = (count, seconds)
    return totals


class StorageTimer:
    """Wall time of every Storage call, per method: the database side of this process's work (Storage is
    called synchronously from the event loop, so these calls take turns with everything else in it)."""

    def __init__(self, storage: Storage) -> None:
        self.totals: dict[str, list[float]] = {}
        for name in dir(storage):
            method = getattr(storage, name)
            if not name.startswith("_") and callable(method) and name not in ("engine", "article_batch"):
                setattr(storage, name, self._timed(name, method))
        #: the settle stage's statements, in the transaction of a batch (ArticleBatch methods, timed for
        #: the duration of the run; ``restore`` puts them back)
        self._patched = {
            name: method
            for name, method in vars(ArticleBatch).items()
            if not name.startswith("_") and callable(method)
        }
        for name, method in self._patched.items():
            setattr(ArticleBatch, name, self._timed(f"batch.{name}", method))

    def restore(self) -> None:
        for name, method in self._patched.items():
            setattr(ArticleBatch, name, method)

    def _timed(self, name: str, method: Callable[..., T]) -> Callable[..., T]:
        total = self.totals.setdefault(name, [0, 0.0])

        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> T:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                total[0] += 1
                total[1] += time.perf_counter() - started

        return timed


@dataclass
class Run:
    """What the measured pipeline run did and cost."""

    report: RunReport
    seconds: float
    cpu_main: float
    cpu_workers: float
    cpu_server: float
    #: this process's CPU seconds by thread role (see thread_cpu_seconds)
    cpu_threads: dict[str, float]
    wait_main: float
    wait_workers: float
    others: float
    peak_main: int
    peak_workers: list[int]
    peak_tree: int
    stages: dict[str, tuple[float, float]]
    storage_calls: dict[str, list[float]]
    profile: str | None


async def ingest(storage: Storage, config: NetworkConfig, pool: ProcessPool) -> tuple[RunReport, float]:
    async with Fetcher(config) as fetcher:
        pipeline = Pipeline(storage, fetcher, extractor=pool)
        started = time.perf_counter()
        report = await pipeline.run_once(all_feeds=True)
        return report, time.perf_counter() - started


def measure(
    storage: Storage, network: NetworkConfig, size: int, warm_page: bytes, server: int, profile: bool
) -> Run:
    """One Pipeline.run_once over every feed, in a warmed extraction_pool(size), with its costs."""
    timer = StorageTimer(storage)
    with extraction_pool(size) as pool:
        warm(pool, size, warm_page)
        pids = workers(pool)
        sampler = RssSampler(pids)
        stages_before = stage_totals()
        cpu_before = {pid: cpu_seconds(pid) for pid in [os.getpid(), *pids, server]}
        wait_before = {pid: cpu_wait_seconds(pid) for pid in [os.getpid(), *pids]}
        machine_before = machine_busy_seconds()
        profiler = cProfile.Profile() if profile else None
        sampler.start()
        if profiler:
            profiler.enable()
        report, seconds = asyncio.run(ingest(storage, network, pool))
        if profiler:
            profiler.disable()
        sampler.stop()
        cpu = {pid: cpu_seconds(pid) - before for pid, before in cpu_before.items()}
        waits = {pid: cpu_wait_seconds(pid) - before for pid, before in wait_before.items()}
        others = (machine_busy_seconds() - machine_before - sum(cpu.values())) / seconds
        stages_after = stage_totals()
        peak_workers = [status_kib(p, "VmHWM") for p in pids]
    timer.restore()
    profile_text = None
    if profiler:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(r"monitor[/\\]", 40)  # monitor's own functions
        stats.sort_stats("tottime").print_stats(25)
        profile_text = re.sub(r"\n{3,}", "\n\n", out.getvalue())
    return Run(
        report=report,
        seconds=seconds,
        cpu_main=cpu[os.getpid()],
        cpu_workers=sum(cpu[p] for p in pids),
        cpu_server=cpu[server],
        cpu_threads={role: seconds for role, seconds in sampler.cpu_by_role().items() if seconds > 0},
        wait_main=waits[os.getpid()],
        wait_workers=sum(waits[p] for p in pids),
        others=others,
        peak_main=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        peak_workers=peak_workers,
        peak_tree=sampler.peak_tree,
        stages={
            stage: (after[0] - stages_before[stage][0], after[1] - stages_before[stage][1])
            for stage, after in stages_after.items()
        },
        storage_calls={name: total for name, total in timer.totals.items() if total[0]},
        profile=profile_text,
    )


@dataclass(frozen=True)
class Floor:
    """What extracting every page in a bare pool took."""

    seconds: float
    extracted: int
    cpu_workers: float
    others: float


def floor(bases: list[str], articles: int, per_feed: int, size: int) -> tuple[float, int, float, float]:
    """extract_page of every page, under its URL, in a fresh extraction_pool(size), one task a page, two a
    worker in flight: seconds, how many gave an article, the workers' CPU seconds, and how many cores
    other processes of the machine kept busy meanwhile."""
    pages = load_pages()
    items = [
        (bases[a // per_feed] + article_path(a, pages, per_feed), pages[a % len(pages)].body)
        for a in range(articles)
    ]
    with extraction_pool(size) as pool:
        warm(pool, size, pages[0].body)
        pids = [os.getpid(), *workers(pool)]
        before, machine_before = [cpu_seconds(p) for p in pids], machine_busy_seconds()
        started = time.perf_counter()
        extracted = asyncio.run(extract_all(pool, size, items))
        seconds = time.perf_counter() - started
        used = [cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]
        others = (machine_busy_seconds() - machine_before - sum(used)) / seconds
        return seconds, extracted, sum(used[1:]), others


def _floor_child(conn: Connection, *args: Any) -> None:
    conn.send(floor(*args))
    conn.close()


def measure_floor(bases: list[str], articles: int, per_feed: int, size: int) -> Floor:
    """The floor, run from a spawned child process: this process, whose RSS is reported, never holds the
    pages, and the floor can be measured both before and after the pipeline."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_floor_child, args=(send, bases, articles, per_feed, size))
    child.start()
    send.close()
    result = receive.recv()
    child.join()
    return Floor(*result)


def _reset(url: str) -> None:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    engine.dispose()


def _mb(kib: float) -> float:
    return round(kib / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ARTICLES} articles (under 60 s)")
    parser.add_argument("--articles", type=int, help=f"articles to ingest (default {ARTICLES:,})")
    parser.add_argument("--per-feed", type=int, default=PER_FEED, help="items per feed (each feed a site)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="extraction processes")
    parser.add_argument("--concurrency", type=int, help="the fetcher's global limit (default: monitor's)")
    parser.add_argument("--seed", type=int, default=20240601, help="for the topics")
    parser.add_argument("--database-url", help="run on this (empty) database instead of a SQLite file")
    parser.add_argument("--profile", action="store_true", help="cProfile the pipeline run (slows it)")
    parser.add_argument(
        "--rounds", type=int, help=f"pipeline runs, each between two floors (default {ROUNDS}; --quick 1)"
    )
    args = parser.parse_args()
    if not (CORPUS / "aeb" / "html").is_dir():
        print(f"skipped: the shared corpus is not at {CORPUS} (it lives beside the repository)")
        print(json.dumps({"skipped": f"no corpus at {CORPUS}"}))
        return
    run_started = time.perf_counter()
    articles = args.articles or (QUICK_ARTICLES if args.quick else ARTICLES)
    size = args.workers
    network = NetworkConfig(allow_private=[ip_network("127.0.0.0/8")], per_host_spacing=0)
    if args.concurrency:
        network = network.model_copy(update={"concurrency": args.concurrency})
    warm_page = gzip.decompress(min((CORPUS / "aeb" / "html").glob("*.gz")).read_bytes())
    load_before = os.getloadavg()[0]

    server, bases, feed_urls = start_server(articles, args.per_feed)
    rounds = args.rounds or (1 if args.quick else ROUNDS)
    runs: list[tuple[Run, int, dict[str, int]]] = []
    try:
        floors = [measure_floor(bases, articles, args.per_feed, size)]
        for round_ in range(rounds):
            with tempfile.TemporaryDirectory(prefix="ingest-bench-") as workdir:
                url = args.database_url or f"sqlite:///{Path(workdir) / 'ingest.db'}"
                if args.database_url:
                    _reset(url)
                engine = make_engine(url)
                upgrade(engine)
                storage = Storage(engine)
                now = datetime.now(UTC)
                feeds = [FeedConfig(name=f"site{i:03d}", url=u) for i, u in enumerate(feed_urls)]
                storage.sync_feeds(feeds, now)
                topics = add_topics(storage, TOPICS, args.seed, now)
                if round_ == 0:
                    print(
                        f"{articles:,} articles in {len(feed_urls)} RSS feeds of {args.per_feed} (each feed "
                        f"a loopback site), {TOPICS} topics (e.g. {' | '.join(topics[:3])}), "
                        f"{engine.dialect.name}; {size} extraction processes on {os.cpu_count()} cores; "
                        f"fetcher concurrency {network.concurrency}, {network.per_host_concurrency} per "
                        f"host, no per-host spacing; load average {load_before:.2f}; {rounds} round(s)"
                    )
                # the measured process holds no pages but those it fetches, as the daemon
                run = measure(storage, network, size, warm_page, server.pid, args.profile)
                runs.append((run, sum(storage.topic_hit_counts().values()), storage.article_count()))
                engine.dispose()
            floors.append(measure_floor(bases, articles, args.per_feed, size))
    finally:
        server.communicate("")  # closing its standard input stops it

    # each round's pipeline against the floors just before and just after it; the median round is shown
    round_ratios = [
        r.report.articles / r.seconds / ((articles / before.seconds + articles / after.seconds) / 2)
        for (r, _, _), before, after in zip(runs, floors, floors[1:], strict=False)
    ]
    median = sorted(range(rounds), key=lambda i: round_ratios[i])[(rounds - 1) // 2]
    run, stored_hits, states = runs[median]
    floors = floors[median : median + 2]
    if rounds > 1:
        print(
            "\nrounds (pipeline against the floors just before and after it): "
            + ", ".join(f"{r:.3f}" for r in round_ratios)
            + f"; the median round, {median + 1}, in detail:"
        )
    report, seconds = run.report, run.seconds
    floor_rates = [articles / f.seconds for f in floors]
    rate, floor_rate = report.articles / seconds, sum(floor_rates) / len(floor_rates)
    ratio = rate / floor_rate
    per = 1000 / max(report.articles, 1)
    print(
        f"\npipeline: {report.articles:,} articles in {seconds:.1f} s = {rate:,.1f} articles/s "
        f"({report.articles - report.from_feed:,} from their pages, {report.from_feed} from feed text; "
        f"{report.hits:,} hits, {stored_hits:,} stored; article states {states})"
    )
    print(
        f"floor:    {floor_rate:,.1f} articles/s, the mean of {floor_rates[0]:,.1f} before and "
        f"{floor_rates[1]:,.1f} after (monitor.extract.extract_page of the same {articles:,} pages in "
        f"extraction_pool({size}); "
        f"{floors[0].extracted:,} gave an article)"
    )
    print(f"ratio:    {ratio:.2f} (target at least {TARGET_RATIO})")
    busy = [run.others, *(f.others for f in floors)]
    quiet = max(busy) <= QUIET_CORES
    if not quiet:
        print(
            "WARNING: other processes kept "
            + ", ".join(f"{b:.2f}" for b in (busy[1], busy[0], busy[2]))
            + " cores busy during the floor before, the pipeline and the floor after: the ratio compares "
            "unequal conditions (the ratio the CPU cost allows, below, does not depend on them)"
        )
    if report.articles != articles or set(states) != {"matched"}:
        print(
            f"WARNING: {articles:,} articles served, {report.articles:,} processed, states {states} "
            "(failures are logged above)"
        )
    print(
        f"\nCPU, pipeline run: this process {run.cpu_main:.1f} s ({run.cpu_main * per:.1f} ms/article, "
        f"{run.cpu_main / seconds:.0%} of a core), extraction workers {run.cpu_workers:.1f} s "
        f"({run.cpu_workers * per:.1f} ms/article, {run.cpu_workers / seconds / size:.0%} of their {size} "
        f"cores), page server {run.cpu_server:.1f} s; runnable but waiting for a core: this process "
        f"{run.wait_main:.1f} s, workers {run.wait_workers:.1f} s; other processes of the machine kept "
        f"{run.others:.2f} cores busy"
        + (" (the database server among them)" if engine.dialect.name != "sqlite" else "")
    )
    floor_ms = sum(f.cpu_workers for f in floors) * 1000 / articles / len(floors)
    pipeline_ms = (run.cpu_main + run.cpu_workers + run.cpu_server) * per
    print(
        f"CPU per article: the pipeline {pipeline_ms:.1f} ms (all its processes), the floor {floor_ms:.1f} "
        f"ms: on cores nothing else used, the pipeline could reach at most {floor_ms / pipeline_ms:.2f} of "
        "the floor"
    )
    for when, f in zip(("before", "after"), floors, strict=True):
        print(
            f"CPU, floor {when}: workers {f.cpu_workers * 1000 / articles:.1f} ms/page, "
            f"{f.cpu_workers / f.seconds / size:.0%} of their {size} cores; other processes of the machine "
            f"kept {f.others:.2f} cores busy"
        )
    print(
        f"peak RSS: this process {_mb(run.peak_main)} MB, extraction workers "
        f"{' + '.join(str(_mb(p)) for p in run.peak_workers)} MB, this process and workers together "
        f"(sampled every 0.1 s) {_mb(run.peak_tree)} MB"
    )
    print(f"\n{'stage':<8} {'count':>7} {'total s':>9} {'ms/item':>8}   (monitor_stage_seconds)")
    for stage, (count, total) in run.stages.items():
        print(f"{stage:<8} {count:>7,.0f} {total:>9.2f} {total / count * 1000 if count else 0:>8.2f}")
    print(
        "poll, fetch and extract are waits that overlap (extract: from submitting a page to the pool to "
        "its result, queueing included); dedup, match and store run one at a time in this process."
    )
    print(f"\n{'Storage call':<22} {'calls':>7} {'total s':>9} {'ms/call':>8}   (wall, this process)")
    for name, (calls, total) in sorted(run.storage_calls.items(), key=lambda kv: -kv[1][1]):
        print(f"{name:<22} {calls:>7,.0f} {total:>9.2f} {total / calls * 1000:>8.2f}")
    if run.profile:
        print("\n" + run.profile)

    results = {
        "quick": args.quick,
        "articles": report.articles,
        "feeds": len(feed_urls),
        "topics": TOPICS,
        "workers": size,
        "database": engine.dialect.name,
        "articles_per_s": round(rate, 1),
        "floor_articles_per_s": round(floor_rate, 1),
        "floor_articles_per_s_before_after": [round(r, 1) for r in floor_rates],
        "ratio": round(ratio, 3),
        "round_ratios": [round(r, 3) for r in round_ratios],
        "target_at_least_0_8_of_floor": ratio >= TARGET_RATIO,
        "machine_quiet": quiet,
        "peak_rss_mb_main": _mb(run.peak_main),
        "peak_rss_mb_workers": [_mb(p) for p in run.peak_workers],
        "peak_rss_mb_tree": _mb(run.peak_tree),
        "from_feed_text": report.from_feed,
        "hits": report.hits,
        "article_states": states,
        "cpu_ms_per_article_main": round(run.cpu_main * per, 2),
        "cpu_ms_per_article_workers": round(run.cpu_workers * per, 2),
        "cpu_ms_per_page_floor_workers": round(floor_ms, 2),
        "ratio_allowed_by_cpu_cost": round(floor_ms / pipeline_ms, 3),
        "cpu_ms_per_article_main_by_thread": {
            role: round(seconds * per, 2)
            for role, seconds in sorted(run.cpu_threads.items(), key=lambda kv: -kv[1])
        },
        "cpu_s_server": round(run.cpu_server, 2),
        "cpu_wait_s_main": round(run.wait_main, 2),
        "cpu_wait_s_workers": round(run.wait_workers, 2),
        "other_processes_cores_busy": round(run.others, 2),
        "other_processes_cores_busy_floor": [round(f.others, 2) for f in floors],
        "stage_seconds": {stage: round(total, 2) for stage, (_, total) in run.stages.items()},
        "storage_seconds": {name: round(total, 2) for name, (_, total) in run.storage_calls.items()},
        "load_average_before": round(load_before, 2),
        "seconds": round(time.perf_counter() - run_started, 1),
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
