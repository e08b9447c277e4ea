"""Memory: peak RSS of the daemon with 10,000 feeds and 100,000 stored articles.

Measured: a real `monitor run` process (its own feeds.yaml of 10,000 feeds, allowed onto loopback; 100
watch topics made by bench/matching.py's TopicMaker; its extraction pool of one process per core) on a
SQLite database that already holds 100,000 processed articles with their text, story and MinHash bands
(distinct texts mixed from corpus sentences, stored in bulk by bench/dedup_quality.py's ``fill_database``).
The feeds are served by bench/feed_server.py in another process: real WSJ captures cut to 2 items each, on
1,000 loopback sites, every tenth feed changing between requests; during the run 500 new items appear,
each linking to a real Kremlin page, so the daemon polls, fetches, extracts, deduplicates, matches and
stores the whole time. The daemon runs until its first poll cycle and the articles it found are done (and
at least ``--seconds``), then gets SIGTERM. Sampled every 0.2 s: the daemon's RSS, and the RSS of the
daemon with its pool workers. Target (issue 7): the daemon under 300 MB.

Usage: python bench/memory.py [--quick] [--seconds S]

The last line printed is one JSON object (``peak_rss_mb_daemon``, ``peak_rss_mb_with_workers``,
``target_daemon_under_300_mb``, ...). ``--quick`` uses 1,000 feeds and 10,000 stored articles and takes
under 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import feed_server
from dedup_quality import fill_database, load_originals, mixed_texts
from ingest import add_topics, status_kib
from polling import LOOPBACK

from monitor.config import NetworkConfig
from monitor.storage import Storage, make_engine

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parents[1] / "shared" / "corpus"
TARGET_MB = 300
SEED = 20261204
TOPICS = 100
NEW_ITEMS = 500


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as found:
            return [int(c) for c in found.read().split()]
    except OSError:
        return []


class Sampler(threading.Thread):
    """Samples the RSS of a process and of it with its children, every 0.2 s, keeping the peaks."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.peak_tree = pid, 0, 0
        self.stopped = threading.Event()
        #: the daemon's RSS in MB every 5 s
        self.timeline: list[int] = []

    def run(self) -> None:
        ticks = 0
        while not self.stopped.wait(0.2):
            own = status_kib(self.pid, "VmRSS")
            if ticks % 25 == 0:
                self.timeline.append(own // 1024)
            ticks += 1
            self.peak = max(self.peak, own, status_kib(self.pid, "VmHWM"))
            self.peak_tree = max(
                self.peak_tree, own + sum(status_kib(c, "VmRSS") for c in children(self.pid))
            )


def feeds_yaml(path: Path, urls: list[str], network: NetworkConfig) -> None:
    lines = ["feeds:"]
    lines += [f"  - name: feed-{n:05d}\n    url: {url}" for n, url in enumerate(urls)]
    lines += ["network:", f"  allow_private: [{','.join(str(n) for n in network.allow_private)}]"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 feeds, 10,000 stored articles (< 60 s)")
    parser.add_argument("--seconds", type=float, help="run the daemon at least this long (default 60; 15)")
    args = parser.parse_args()
    if not (CORPUS / "feeds" / "timeseries" / "wsj_world").is_dir():
        print(f"needs the shared corpus at {CORPUS}; skipped")
        print(json.dumps({"skipped": True}))
        return
    feeds, stored = (1_000, 10_000) if args.quick else (10_000, 100_000)
    at_least = args.seconds or (15.0 if args.quick else 60.0)
    sites = feeds // 10
    began = time.perf_counter()
    network = NetworkConfig(allow_private=[LOOPBACK])
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        database = f"sqlite:///{workdir / 'memory.db'}"
        filled = time.perf_counter()
        storage, _ = fill_database(database, mixed_texts(load_originals(None), stored, SEED))
        add_topics(storage, TOPICS, SEED, datetime.now(UTC))
        storage.engine.dispose()
        filled = time.perf_counter() - filled
        rng = random.Random(SEED)
        schedule = workdir / "schedule.json"
        window = at_least * 0.8
        schedule.write_text(
            json.dumps([[rng.randrange(feeds), rng.uniform(5, window)] for _ in range(NEW_ITEMS)])
        )
        server, listening = feed_server.launch(
            feeds=feeds, hosts=sites, items=2, changing_every=10, schedule=schedule
        )
        assert server.stdin is not None
        urls = listening["feeds"]
        config = workdir / "feeds.yaml"
        feeds_yaml(config, urls, network)
        env = {**os.environ, "MONITOR_CONFIG": str(config), "MONITOR_DATABASE_URL": database}
        daemon = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run"], env=env, stderr=subprocess.PIPE, text=True
        )
        sampler = Sampler(daemon.pid)
        sampler.start()
        started = time.perf_counter()
        watcher = Storage(make_engine(database))
        while daemon.poll() is None:
            time.sleep(1)
            elapsed = time.perf_counter() - started
            if elapsed < at_least:
                continue
            statuses = watcher.feed_statuses()
            counts = watcher.article_count()
            if all(f.last_polled_at for f in statuses if f.active) and not counts.get("discovered"):
                break
        seconds = time.perf_counter() - started
        daemon.send_signal(signal.SIGTERM)
        _, errors = daemon.communicate(timeout=120)
        sampler.stopped.set()
        sampler.join()
        counts = watcher.article_count()
        hits = len(watcher.hits(limit=100_000))
        server.stdin.close()
        server.wait()
    peak, tree = sampler.peak / 1024, sampler.peak_tree / 1024
    print(
        f"`monitor run` with {feeds:,} feeds on {sites:,} loopback sites, {TOPICS} topics, a SQLite database "
        f"filled with {stored:,} processed articles ({filled:.0f} s to fill); ran {seconds:.0f} s "
        f"(exit {daemon.returncode}); articles now {counts}, {hits:,} hits"
    )
    print(
        f"peak RSS: the daemon {peak:.0f} MB (target under {TARGET_MB}); with its pool workers {tree:.0f} MB"
    )
    print(f"the daemon's RSS every 5 s, MB: {sampler.timeline}")
    if daemon.returncode != 0:
        print(errors[-2000:])
    print(
        json.dumps(
            {
                "quick": args.quick,
                "feeds": feeds,
                "stored_articles": stored,
                "topics": TOPICS,
                "daemon_seconds": round(seconds, 1),
                "articles": counts,
                "peak_rss_mb_daemon": round(peak, 1),
                "peak_rss_mb_with_workers": round(tree, 1),
                "rss_mb_every_5_s": sampler.timeline,
                "target_daemon_under_300_mb": peak < TARGET_MB and daemon.returncode == 0,
                "load_average": os.getloadavg()[0],
                "seconds": round(time.perf_counter() - began, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
