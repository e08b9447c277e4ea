"""Logging for the CLI and the daemon. The library modules only log; this is the one place that configures it.

Events carry fixed keys (feed, url, status, topic, subscription, ...) passed as ``extra``; the formatter
prints them as key=value after the message, so logs can be grepped and parsed.
"""

from __future__ import annotations

import logging
import sys

FIELDS = ("feed", "url", "status", "topic", "subscription", "new", "hits", "score", "due")


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        pairs = [f"{key}={getattr(record, key)}" for key in FIELDS if hasattr(record, key)]
        return f"{line} {' '.join(pairs)}" if pairs else line


def configure_logging(verbosity: int) -> None:
    """0: warnings and errors; 1 (-v): what the stream does; 2 (-vv): debug, including libraries."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "trafilatura", "htmldate", "apscheduler", "charset_normalizer"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbosity < 2 else logging.DEBUG)
