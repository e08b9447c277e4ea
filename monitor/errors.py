"""The one exception tree of monitor.

Every error names the thing it concerns (a config key and line, a URL, a topic, a subscription), so a
message shown to the user or stored on a feed is enough to act on::

    MonitorError                       catch this to handle anything monitor raises
    ├── ConfigError                    feeds.yaml or a MONITOR_* setting is wrong (file, line, key)
    ├── StorageError                   the database failed or is unreachable
    │   └── SchemaNotCurrentError      the database is not at the newest migration
    ├── FetchError                     an HTTP fetch failed (url, kind); recorded on the feed or article
    │   ├── AddressNotAllowedError     the host resolves to a private/loopback address not allowed
    │   ├── ResponseTooLargeError      the body exceeded the size cap
    │   └── HTTPStatusError            the server answered with an error status
    ├── FeedParseError                 the body is not a usable feed (url, kind)
    ├── QueryError                     a topic query is malformed (column, what was expected)
    ├── NotFoundError                  a named topic, feed or subscription does not exist
    ├── AlreadyExistsError             a named topic already exists
    ├── DeliveryError                  a digest or alert could not be delivered (subscription, channel)
    └── WorkerDiedError                an extraction worker process died holding the task

``FetchError.kind`` and ``FeedParseError.kind`` say what went wrong in a word, for backoff and metrics
(see ``FetchErrorKind`` and ``FeedParseErrorKind``); the message says it in a sentence.

Expected outcomes are not errors: a 304 is a ``NotModified`` value, a page with no usable body gives
``None`` from extraction.
"""

from __future__ import annotations

from typing import Literal

#: why a fetch failed:
#: invalid_url — not an http(s) URL with a host; dns — the host does not resolve (or not in time);
#: address_not_allowed — it resolves to a private/reserved address; refused — nothing listens there;
#: connect — another failure to connect (unreachable, reset); tls — TLS handshake or certificate failure;
#: connect_timeout — no connection in time; network — the connection broke after it was made;
#: timeout — the answer stalled or did not complete in time;
#: protocol — not valid HTTP, or an answer that makes no sense for the request; decode — a broken or
#: unsupported Content-Encoding; too_large — the body is over the cap; http_status — a 4xx/5xx answer
#: (``status``, ``retry_after``); redirect_loop — more redirects than allowed; redirect — a redirect
#: without a usable target; content_type — the body is of a type that cannot be what was asked for
FetchErrorKind = Literal[
    "invalid_url",
    "dns",
    "address_not_allowed",
    "refused",
    "connect",
    "tls",
    "connect_timeout",
    "network",
    "timeout",
    "protocol",
    "decode",
    "too_large",
    "http_status",
    "redirect_loop",
    "redirect",
    "content_type",
]
#: why a fetched body is not a feed: empty — nothing but whitespace; html — a web page (``linked_feeds``
#: lists the feeds it announces); parse — anything else that is neither RSS nor Atom
FeedParseErrorKind = Literal["empty", "html", "parse"]


class MonitorError(Exception):
    """Base of every error monitor raises on purpose."""

    def __reduce__(self) -> tuple[object, ...]:
        """Pickle as the message and the attributes, whatever the class's own arguments: errors raised in
        a worker process (parsing a feed, extracting a page) reach the daemon intact."""
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(cls: type[MonitorError], args: tuple[object, ...], state: dict[str, object]) -> MonitorError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ConfigError(MonitorError):
    """A configuration file or setting is invalid."""

    def __init__(
        self, message: str, *, path: str | None = None, line: int | None = None, key: str | None = None
    ) -> None:
        self.path, self.line, self.key, self.message = path, line, key, message
        where = path or "configuration"
        if line is not None:
            where += f", line {line}"
        if key:
            where += f", {key}"
        super().__init__(f"{where}: {message}")


class StorageError(MonitorError):
    """The database failed; the message says which operation."""


class SchemaNotCurrentError(StorageError):
    """The database schema is not at the newest Alembic revision."""

    def __init__(self, current: str | None, head: str, url: str) -> None:
        self.current, self.head = current, head
        super().__init__(
            f"database {url} is at revision {current or '(empty)'}, not at {head}; "
            "run `monitor db upgrade` first"
        )


class FetchError(MonitorError):
    """Fetching a URL failed; ``kind`` says how."""

    kind: FetchErrorKind

    def __init__(self, url: str, reason: str, *, kind: FetchErrorKind) -> None:
        self.url, self.reason, self.kind = url, reason, kind
        super().__init__(f"{url}: {reason}")


class AddressNotAllowedError(FetchError):
    """The URL's host resolves to a private, loopback or link-local address not on the allow-list."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(url, reason, kind="address_not_allowed")


class ResponseTooLargeError(FetchError):
    """The response body is larger than the configured cap."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(url, reason, kind="too_large")


class HTTPStatusError(FetchError):
    """The server answered with an error status (4xx/5xx)."""

    def __init__(self, url: str, status: int, retry_after: float | None = None) -> None:
        self.status, self.retry_after = status, retry_after
        super().__init__(url, f"HTTP {status}", kind="http_status")


class FeedParseError(MonitorError):
    """A fetched body is not a usable RSS/Atom feed; ``kind`` says why."""

    def __init__(
        self,
        url: str,
        reason: str,
        *,
        kind: FeedParseErrorKind = "parse",
        linked_feeds: tuple[str, ...] = (),
    ) -> None:
        self.url, self.reason, self.kind, self.linked_feeds = url, reason, kind, linked_feeds
        super().__init__(f"{url}: not a usable feed: {reason}")


class QueryError(MonitorError):
    """A topic query could not be parsed or can never match."""

    def __init__(self, query: str, column: int, message: str) -> None:
        self.query, self.column, self.message = query, column, message
        super().__init__(f"column {column}: {message}\n  {query}\n  {' ' * (column - 1)}^")


class NotFoundError(MonitorError):
    """A named object does not exist."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name = kind, name
        super().__init__(f"no {kind} named {name!r}")


class AlreadyExistsError(MonitorError):
    """A named object exists already."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name = kind, name
        super().__init__(f"a {kind} named {name!r} exists already")


class DeliveryError(MonitorError):
    """A digest or alert could not be delivered; ``retry_after`` is how long the server asked to wait."""

    def __init__(self, subscription: str, reason: str, *, retry_after: float | None = None) -> None:
        self.subscription, self.reason, self.retry_after = subscription, reason, retry_after
        super().__init__(f"subscription {subscription!r}: delivery failed: {reason}")


class WorkerDiedError(MonitorError):
    """The worker process running a task (a page's extraction, a feed's parse) exited before answering."""
