"""The one exception tree of monitor.

Every error names the thing it concerns (a config key and line, a URL, a topic, a subscription), so a
message shown to the user or stored on a feed is enough to act on::

    MonitorError                       catch this to handle anything monitor raises
    ├── ConfigError                    feeds.yaml or a MONITOR_* setting is wrong (file, line, key)
    ├── StorageError                   the database failed or is unreachable
    │   └── SchemaNotCurrentError      the database is not at the newest migration
    ├── FetchError                     an HTTP fetch failed (url); recorded on the feed or article
    │   ├── AddressNotAllowedError     the host resolves to a private/loopback address not allowed
    │   ├── ResponseTooLargeError      the body exceeded the size cap
    │   └── HTTPStatusError            the server answered with an error status
    ├── FeedParseError                 the body is not a usable feed (url)
    ├── QueryError                     a topic query is malformed (column, what was expected)
    ├── NotFoundError                  a named topic, feed or subscription does not exist
    ├── AlreadyExistsError             a named topic already exists
    └── DeliveryError                  a digest could not be delivered (subscription)

Expected outcomes are not errors: a 304 is a ``NotModified`` value, a page with no usable body gives
``None`` from extraction.
"""

from __future__ import annotations


class MonitorError(Exception):
    """Base of every error monitor raises on purpose."""


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
    """Fetching a URL failed."""

    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
        super().__init__(f"{url}: {reason}")


class AddressNotAllowedError(FetchError):
    """The URL's host resolves to a private, loopback or link-local address not on the allow-list."""


class ResponseTooLargeError(FetchError):
    """The response body is larger than the configured cap."""


class HTTPStatusError(FetchError):
    """The server answered with an error status (4xx/5xx)."""

    def __init__(self, url: str, status: int, retry_after: float | None = None) -> None:
        self.status, self.retry_after = status, retry_after
        super().__init__(url, f"HTTP {status}")


class FeedParseError(MonitorError):
    """A fetched body is not a usable RSS/Atom feed."""

    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
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
    """A digest could not be delivered."""

    def __init__(self, subscription: str, reason: str) -> None:
        self.subscription, self.reason = subscription, reason
        super().__init__(f"subscription {subscription!r}: delivery failed: {reason}")
