"""The daemon's optional HTTP endpoint (``monitor run --http 127.0.0.1:9108``): /healthz, /metrics and each
subscription's digests as a feed, /feeds/NAME.atom (or .json).

A small threaded server from the standard library: it only answers GETs on a few paths, runs beside the
event loop without touching it, and reads the database through Storage like everything else.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from monitor.digest.feed import ATOM_CONTENT_TYPE, JSON_CONTENT_TYPE
from monitor.errors import ConfigError, MonitorError

#: (subscription name, "atom" or "json", this URL) → the document, or None for an unknown subscription
FeedSource = Callable[[str, str, str | None], str | None]
_FEED_PATH = re.compile(r"^/feeds/([A-Za-z0-9][A-Za-z0-9_.-]{0,99})\.(atom|json)$")


def parse_address(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9108`` for IPv6) as a bindable address."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"not a host:port address: {value!r}", key="--http")
    return host.strip("[]") or "127.0.0.1", int(port)


log = logging.getLogger(__name__)


class StatusServer:
    """Serves ``health()`` at /healthz (200 when healthy, 503 with the reasons when not), the metrics of
    ``registry`` at /metrics and, given ``feeds``, each subscription's digests at /feeds/NAME.atom and
    /feeds/NAME.json, on a background thread; use as a context manager."""

    def __init__(
        self,
        address: tuple[str, int],
        health: Callable[[], dict[str, Any]],
        registry: CollectorRegistry,
        *,
        feeds: FeedSource | None = None,
    ) -> None:
        self.health, self.registry, self.feeds = health, registry, feeds
        self.host = address[0]
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    report = server.health()
                    body = json.dumps(report, default=str).encode()
                    self._answer(200 if report["healthy"] else 503, body, "application/json")
                elif path == "/metrics":
                    self._answer(200, generate_latest(server.registry), CONTENT_TYPE_LATEST)
                elif server.feeds is not None and (found := _FEED_PATH.match(path)):
                    self._feed(found.group(1), found.group(2))
                else:
                    self._answer(
                        404, b"not found: try /healthz, /metrics or /feeds/NAME.atom\n", "text/plain"
                    )

            def _feed(self, name: str, fmt: str) -> None:
                assert server.feeds is not None
                host = self.headers.get("Host") or f"{server.host}:{server.port}"
                try:
                    body = server.feeds(name, fmt, f"http://{host}{self.path}")
                except MonitorError as exc:
                    log.error("feed %s not served: %s", self.path, exc)
                    self._answer(503, f"{exc}\n".encode(), "text/plain; charset=utf-8")
                    return
                if body is None:
                    self._answer(
                        404, f"no subscription named {name!r}\n".encode(), "text/plain; charset=utf-8"
                    )
                    return
                content_type = ATOM_CONTENT_TYPE if fmt == "atom" else JSON_CONTENT_TYPE
                self._answer(200, body.encode("utf-8"), content_type)

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # scrapes are not worth a log line
                pass

        try:
            self._httpd = ThreadingHTTPServer(address, Handler)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {address[0]}:{address[1]}: {exc}", key="--http") from None
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="monitor-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def __enter__(self) -> StatusServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
