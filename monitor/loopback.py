"""A small HTTP site on the loopback interface, for the offline demo and the tests.

It serves pages from memory with real HTTP semantics a feed poller relies on: ETag and Last-Modified
validators, 304 answers to conditional GETs, chosen error statuses, and pages that can change between polls.
"""

from __future__ import annotations

import hashlib
import mimetypes
import threading
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType


@dataclass(slots=True)
class Page:
    body: bytes
    content_type: str
    status: int = 200
    last_modified: float = 0.0

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:20] + '"'


class LoopbackSite:
    """Serve ``pages`` (path → Page) on a loopback address (127.0.0.1, or another of 127.0.0.0/8 to stand
    for a second site) at a free port; use as a context manager."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.pages: dict[str, Page] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                with site._lock:
                    site.requests.append((path, {k.lower(): v for k, v in self.headers.items()}))
                    page = site.pages.get(path)
                if page is None:
                    self._answer(404, b"not found", "text/plain")
                    return
                if page.status != 200:
                    self._answer(page.status, page.body, page.content_type)
                    return
                if self.headers.get("If-None-Match") == page.etag:
                    self._answer(304, b"", None, page)
                    return
                self._answer(200, page.body, page.content_type, page)

            def _answer(
                self, status: int, body: bytes, content_type: str | None, page: Page | None = None
            ) -> None:
                self.send_response(status)
                if content_type:
                    self.send_header("Content-Type", content_type)
                if page is not None:
                    self.send_header("ETag", page.etag)
                    self.send_header("Last-Modified", formatdate(page.last_modified, usegmt=True))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if status != 304:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # quiet: the caller logs what matters
                pass

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="loopback-site", daemon=True)

    def put(
        self,
        path: str,
        body: bytes | str,
        content_type: str | None = None,
        *,
        status: int = 200,
        last_modified: float = 1_700_000_000.0,
    ) -> str:
        """Serve ``body`` at ``path`` from now on; returns its full URL."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        guessed = mimetypes.guess_type(path)[0] or "application/octet-stream"
        if guessed.startswith("text/") or guessed in ("application/xml", "application/rss+xml"):
            guessed += "; charset=utf-8"
        with self._lock:
            self.pages[path] = Page(data, content_type or guessed, status, last_modified)
        return self.url(path)

    def put_tree(self, root: Path, *, replace: dict[bytes, bytes] | None = None) -> None:
        """Serve every file below ``root`` at its relative path, substituting byte strings in text files."""
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            body = file.read_bytes()
            if file.suffix in (".xml", ".html", ".atom", ".rss") and replace:
                for old, new in replace.items():
                    body = body.replace(old, new)
            self.put("/" + file.relative_to(root).as_posix(), body)

    def url(self, path: str) -> str:
        return self.base_url + path

    def __enter__(self) -> LoopbackSite:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
