"""Logging for the CLI and the daemon. The library modules only log; this is the one place that configures it.

Events carry fixed keys (feed, url, status, topic, subscription, ...) passed as ``extra``. The text format
prints them as key=value after the message, to grep; the JSON format writes one object per line with the
keys ``time``, ``level``, ``logger``, ``message``, those fields when present and ``error`` for a traceback,
for a log collector.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

FIELDS = ("feed", "url", "status", "topic", "subscription", "new", "hits", "score", "due")


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        pairs = [f"{key}={getattr(record, key)}" for key in FIELDS if hasattr(record, key)]
        return f"{line} {' '.join(pairs)}" if pairs else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        event.update({key: getattr(record, key) for key in FIELDS if hasattr(record, key)})
        if record.exc_info:
            event["error"] = self.formatException(record.exc_info)
        return json.dumps(event, ensure_ascii=False, default=str)


def configure_logging(verbosity: int, log_format: str = "text") -> None:
    """0: warnings and errors; 1 (-v): what the stream does; 2 (-vv): debug, including libraries.
    ``log_format`` is "text" (key=value pairs after the message) or "json" (one object per line)."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if log_format == "json"
        else KeyValueFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "aiohttp", "trafilatura", "htmldate", "apscheduler", "charset_normalizer"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbosity < 2 else logging.DEBUG)
