"""The daemon the chaos test (tests/test_chaos.py) kills: `monitor run` on a virtual clock, logging to stderr.

Not a test module (pytest collects only test_*.py). Two ways to start it:

    python tests/chaos_daemon.py run      # one daemon; SIGTERM stops it
    python tests/chaos_daemon.py zygote   # imports everything once, then forks one daemon per request

The zygote exists for the time budget only: importing monitor (SQLAlchemy, trafilatura, APScheduler, aiohttp)
takes 1.5-2 s, which 20+ restarts could not afford. It reads ``spawn LOGFILE`` lines on stdin, forks a daemon
with stdout and stderr sent to LOGFILE and answers ``spawned PID`` (``env KEY VALUE`` sets a variable for the
daemons forked after it); it reaps its children and reports
``exited PID RETURNCODE`` (-9 after a kill -9). A forked daemon starts from freshly imported modules, with no
connection, thread or event loop inherited: what a restart after a crash starts from. End of stdin ends it.

The environment configures it: MONITOR_* as for `monitor run`, and the virtual clock,
``virtual now = CHAOS_V0 + (time.time() - CHAOS_R0) * CHAOS_SPEED`` (epoch seconds), which is continuous
across restarts; CHAOS_TICK and CHAOS_DIGEST_CHECK are the daemon's periods in real seconds.

Beside `monitor run`'s own logging (-v), the daemon logs what the chaos test needs to tell which stage a
kill interrupted: every HTTP answer (monitor.fetch at DEBUG), ``chaos: settle`` as an article's matching and
storing begins, and ``chaos: smtp ...`` for each SMTP step (from the interpreter's audit events, not by
patching).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from monitor.config import load_config, load_settings
from monitor.fetch import Fetcher
from monitor.logs import configure_logging
from monitor.pipeline import Pipeline
from monitor.scheduler import Daemon
from monitor.storage import Storage, ensure_current, make_engine

log = logging.getLogger("chaos")


def virtual_clock() -> Callable[[], datetime]:
    """The test's clock: V0 + (now - R0) * SPEED, all from the environment."""
    v0, r0 = float(os.environ["CHAOS_V0"]), float(os.environ["CHAOS_R0"])
    speed = float(os.environ["CHAOS_SPEED"])

    def now() -> datetime:
        return datetime.fromtimestamp(v0 + (time.time() - r0) * speed, UTC)

    return now


class TracingPipeline(Pipeline):
    """The product's pipeline, logging one line as each article's last stages (chrome, story, match, store)
    begin, so that a kill there can be told from one during fetching and extraction."""

    def settle(self, *args: Any, **kwargs: Any) -> Any:
        item = args[0] if args else kwargs.get("item")
        log.info("chaos: settle", extra={"url": getattr(item, "url", "?")})
        return super().settle(*args, **kwargs)


def _smtp_audit(event: str, args: tuple[Any, ...]) -> None:
    """Log each SMTP step (smtplib raises audit events for its connection and everything it sends)."""
    if not event.startswith("smtplib."):
        return
    if event == "smtplib.connect":
        log.info("chaos: smtp connect")
    elif event == "smtplib.send" and len(args) > 1:
        data = args[1]
        raw = bytes(data) if isinstance(data, bytes | bytearray) else str(data).encode()
        word = raw[:5].split(b" ")[0].strip().lower().decode("ascii", "replace")
        if word in SMTP_COMMANDS:
            log.info("chaos: smtp %s", word)
        else:
            log.info("chaos: smtp message (%d bytes)", len(raw))


SMTP_COMMANDS = frozenset(
    {"ehlo", "helo", "mail", "rcpt", "data", "quit", "rset", "noop", "auth", "starttls"}
)


def run_daemon() -> int:
    """Build the daemon as `monitor -v run` does, on the virtual clock, and run it until SIGTERM."""
    configure_logging(1)
    logging.getLogger("monitor.fetch").setLevel(logging.DEBUG)
    sys.addaudithook(_smtp_audit)
    clock = virtual_clock()
    settings = load_settings()
    config = load_config(settings.config)
    engine = make_engine(settings.database_url)
    ensure_current(engine)
    storage = Storage(engine)
    now = clock()
    storage.sync_feeds(config.feeds, now)
    storage.sync_subscriptions(config.subscriptions, now)
    tick = float(os.environ.get("CHAOS_TICK", "0.25"))
    digest_check = float(os.environ.get("CHAOS_DIGEST_CHECK", "0.2"))

    async def main() -> None:
        async with Fetcher(config.network) as fetcher:
            daemon = Daemon(
                TracingPipeline(storage, fetcher, clock=clock),
                storage,
                config,
                settings,
                tick_seconds=tick,
                digest_check_seconds=digest_check,
                clock=clock,
            )
            await daemon.run()

    asyncio.run(main())
    engine.dispose()
    return 0


def _child(log_path: str) -> None:
    """In a forked child: send output to the run's log file, run the daemon, never return."""
    code = 1
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        code = run_daemon()
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with suppress(Exception):
                stream.flush()
        os._exit(code)


def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def zygote() -> int:
    """Fork a daemon per ``spawn LOGFILE`` line (``env KEY VALUE`` sets a variable for the next ones);
    report spawns and exits; stop at the end of stdin."""
    for driver in ("psycopg", "sqlalchemy.dialects.postgresql.psycopg", "sqlalchemy.dialects.sqlite"):
        with suppress(ImportError):
            importlib.import_module(driver)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the test's terminal is the test's to handle
    children: set[int] = set()
    buffer = b""
    _say("ready")
    open_input = True
    while open_input or children:
        if open_input:
            ready, _, _ = select.select([0], [], [], 0.01)
            if ready:
                chunk = os.read(0, 4096)
                if not chunk:
                    open_input = False
                    for pid in children:  # the test is gone: leave nothing running behind it
                        os.kill(pid, signal.SIGKILL)
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    command, _, argument = line.decode().strip().partition(" ")
                    if command == "env":  # set for the daemons forked from now on
                        key, _, value = argument.partition(" ")
                        os.environ[key] = value
                    elif command == "spawn":
                        sys.stdout.flush()
                        sys.stderr.flush()
                        pid = os.fork()
                        if pid == 0:
                            _child(argument)
                        children.add(pid)
                        _say(f"spawned {pid}")
        else:
            time.sleep(0.01)
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                children.clear()
                break
            if pid == 0:
                break
            children.discard(pid)
            _say(f"exited {pid} {os.waitstatus_to_exitcode(status)}")
    return 0


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "run"
    if mode == "zygote":
        sys.exit(zygote())
    if mode == "run":
        sys.exit(run_daemon())
    sys.exit(f"usage: {sys.argv[0]} run|zygote")
