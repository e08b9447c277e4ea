"""Configuration: secrets and paths from the environment (MONITOR_*), feeds and subscriptions from feeds.yaml.

Every option has one place here with its default and its validator. A wrong value in feeds.yaml becomes one
``ConfigError`` naming the file, line and key, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from monitor.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("feeds.yaml")
DEFAULT_DATABASE_URL = "sqlite:///./monitor.db"
#: a feed's first interval, before its publishing rhythm is known; then it adapts within the bounds
DEFAULT_POLL_INTERVAL = timedelta(minutes=30)
DEFAULT_MIN_INTERVAL = timedelta(minutes=5)
DEFAULT_MAX_INTERVAL = timedelta(hours=24)
MIN_POLL_INTERVAL = timedelta(minutes=1)
MAX_POLL_INTERVAL = timedelta(days=1)
DEFAULT_TIMEOUT_SECONDS = 20.0
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_REDIRECTS = 5
DEFAULT_USER_AGENT = "monitor/0.1 (self-hosted news monitor)"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_EMAIL_RE = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
#: as-it-happens alerts of one topic: at most this many an hour by default; more stories wait for the next
DEFAULT_ALERTS_PER_HOUR = 4
DEFAULT_WEBHOOK_TIMEOUT = 10.0


def parse_duration(value: str) -> timedelta:
    """Parse '90s', '15m', '2h', '7d' into a timedelta."""
    found = _DURATION_RE.match(value)
    if not found:
        raise ValueError(f"invalid duration {value!r} (use a number and a unit: 90s, 15m, 2h, 7d)")
    return timedelta(**{_DURATION_UNITS[found.group(2)]: int(found.group(1))})


def check_name(kind: str, name: str) -> str:
    """A name as feeds.yaml accepts it (topics are named there by subscriptions): no spaces, no newlines."""
    if not _NAME_RE.fullmatch(name):
        raise ConfigError(
            f"invalid {kind} name {name!r}: use up to 100 letters, digits, '_', '.' and '-', "
            "starting with a letter or digit"
        )
    return name


def _duration(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str) else value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
Name = Annotated[str, Field(pattern=_NAME_RE.pattern)]


class Settings(BaseSettings):
    """Settings from the environment (MONITOR_*): where things are, and the secrets."""

    # an empty MONITOR_SMTP_PORT= line in an env file means "not set", as it does to a person
    model_config = SettingsConfigDict(env_prefix="MONITOR_", extra="ignore", env_ignore_empty=True)

    config: Path = DEFAULT_CONFIG_PATH
    database_url: str = DEFAULT_DATABASE_URL
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_sender: str | None = None
    smtp_security: Literal["none", "starttls", "tls"] = "starttls"
    smtp_timeout: float = 30.0
    #: the display name of the sender (From: "monitor" <MONITOR_SMTP_SENDER>)
    smtp_sender_name: str = "monitor"
    #: where List-Unsubscribe points (``{subscription}`` is replaced by its name); by default a mail to the
    #: sender with the subject "unsubscribe NAME"
    unsubscribe_url: str | None = None

    @field_validator("unsubscribe_url")
    @classmethod
    def _unsubscribe(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(https?://[^/\s]+|mailto:[^@\s]+@[^@\s]+)", value):
            raise ValueError(f"not an http(s) or mailto: URL: {value!r}")
        return value

    @property
    def smtp_enabled(self) -> bool:
        """Mail can be sent only when a host and a sender are set."""
        return bool(self.smtp_host and self.smtp_sender)

    @property
    def smtp_port_or_default(self) -> int:
        if self.smtp_port:
            return self.smtp_port
        return {"none": 25, "starttls": 587, "tls": 465}[self.smtp_security]


def load_settings(**overrides: Any) -> Settings:
    """Read the environment, letting command-line values (not None) win."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        key = "MONITOR_" + str(first["loc"][0]).upper()
        raise ConfigError(first["msg"], path="environment", key=key) from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeedConfig(_Strict):
    """One feed to poll."""

    name: Name
    url: str
    #: poll at exactly this interval; when unset, the interval follows how often the feed publishes,
    #: between min_interval and max_interval
    interval: Duration | None = None
    min_interval: Duration = DEFAULT_MIN_INTERVAL
    max_interval: Duration = DEFAULT_MAX_INTERVAL
    tags: list[str] = []

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"not an http(s) URL: {value!r}")
        return value.strip()

    @field_validator("interval", "min_interval", "max_interval")
    @classmethod
    def _clamp(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and not MIN_POLL_INTERVAL <= value <= MAX_POLL_INTERVAL:
            raise ValueError(f"must be between {MIN_POLL_INTERVAL} and {MAX_POLL_INTERVAL}")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> FeedConfig:
        if self.min_interval > self.max_interval:
            raise ValueError("min_interval is longer than max_interval")
        return self

    @property
    def interval_bounds(self) -> tuple[timedelta, timedelta]:
        """The shortest and longest polling interval: both the fixed interval when one is set."""
        if self.interval is not None:
            return self.interval, self.interval
        return self.min_interval, self.max_interval


class WebhookConfig(_Strict):
    """A JSON POST of each digest and alert to a URL, beside (or instead of) email."""

    #: the URL, or the name of an environment variable holding it (chat webhook URLs are secrets)
    url: str | None = None
    url_env: str | None = None
    #: an environment variable holding a key: each request is signed with HMAC-SHA256 of its body
    secret_env: str | None = None
    timeout: float = Field(default=DEFAULT_WEBHOOK_TIMEOUT, gt=0, le=300)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"not an http(s) URL: {value!r}")
        return value.strip() if value else value

    @field_validator("url_env", "secret_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME_RE.match(value):
            raise ValueError(f"not an environment variable name: {value!r}")
        return value

    @model_validator(mode="after")
    def _one_url(self) -> WebhookConfig:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give either url or url_env (the name of an environment variable holding it)")
        return self

    def target(self) -> str:
        """The URL to post to (read from the environment when ``url_env`` names it)."""
        if self.url is not None:
            return self.url
        value = os.environ.get(self.url_env or "", "").strip()
        if not re.match(r"^https?://[^/\s]+", value):
            raise ConfigError(
                f"environment variable {self.url_env} must hold the webhook's http(s) URL",
                key="webhook.url_env",
            )
        return value

    def secret(self) -> bytes | None:
        """The signing key, when ``secret_env`` names a variable that is set."""
        if self.secret_env is None:
            return None
        value = os.environ.get(self.secret_env)
        if not value:
            raise ConfigError(f"environment variable {self.secret_env} is not set", key="webhook.secret_env")
        return value.encode("utf-8")


Schedule = Literal["daily", "weekly", "as-it-happens"]


class SubscriptionConfig(_Strict):
    """Who gets a digest of which topics, and when (local time in ``timezone``)."""

    name: Name
    #: email addresses; a subscription needs recipients, a webhook, or both
    recipients: list[str] = []
    topics: list[str] = Field(min_length=1)
    #: daily at ``time``; weekly on ``weekday`` at ``time``; or as-it-happens: an alert per new story of
    #: every topic, and no periodic digest
    schedule: Schedule = "daily"
    time: dt.time = dt.time(7, 0)
    weekday: str | None = None
    timezone: str = "UTC"
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)
    send_empty: bool = False
    #: leave out stale reposts of stories first published longer ago than this before the repost (null:
    #: include them, labelled "republished")
    exclude_reposts_older_than: Duration | None = timedelta(days=7)
    #: topics that alert as they happen (a short message per new story), left out of the periodic digest
    urgent_topics: list[str] = []
    #: at most this many alerts per topic in any hour; stories beyond wait and go together in the next one
    alerts_per_hour: int = Field(default=DEFAULT_ALERTS_PER_HOUR, ge=1, le=60)
    webhook: WebhookConfig | None = None

    @field_validator("recipients")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        for address in value:
            if not _EMAIL_RE.match(address):
                raise ValueError(f"not an email address: {address!r}")
        return value

    @field_validator("time", mode="before")
    @classmethod
    def _hh_mm(cls, value: Any) -> Any:
        if isinstance(value, int):  # YAML 1.1 reads an unquoted 07:00 as sexagesimal 420
            return dt.time(value // 60 % 24, value % 60)
        if isinstance(value, str) and not re.match(r"^\d{1,2}:\d{2}$", value):
            raise ValueError(f'invalid time {value!r} (use HH:MM, e.g. "07:00")')
        return value

    @field_validator("weekday", mode="before")
    @classmethod
    def _weekday(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in WEEKDAYS:
            return value.strip().lower()
        if value is not None:
            raise ValueError(f"invalid weekday {value!r} (use {', '.join(WEEKDAYS)})")
        return value

    @field_validator("timezone")
    @classmethod
    def _iana(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)"
            ) from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SubscriptionConfig:
        if not self.recipients and self.webhook is None:
            raise ValueError("needs recipients, a webhook, or both")
        if self.weekday is not None and self.schedule != "weekly":
            raise ValueError(f"weekday is for schedule: weekly (this one is {self.schedule})")
        unknown = [t for t in self.urgent_topics if t not in self.topics]
        if unknown:
            raise ValueError(f"urgent_topics must be among its topics: {', '.join(unknown)}")
        if self.urgent_topics and self.schedule == "as-it-happens":
            raise ValueError("with schedule: as-it-happens every topic alerts; leave out urgent_topics")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def weekday_number(self) -> int:
        """Monday 0 … Sunday 6: the day of a weekly digest."""
        return WEEKDAYS.index(self.weekday or "monday")

    @property
    def alert_topics(self) -> list[str]:
        """The topics that alert as they happen."""
        return list(self.topics) if self.schedule == "as-it-happens" else list(self.urgent_topics)

    @property
    def digest_topics(self) -> list[str]:
        """The topics of the periodic digest (none for as-it-happens)."""
        alerting = set(self.alert_topics)
        return [t for t in self.topics if t not in alerting]

    @property
    def periodic(self) -> bool:
        """Whether it has a daily or weekly digest."""
        return self.schedule != "as-it-happens"


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class NetworkConfig(_Strict):
    """How the fetcher behaves; ``allow_private`` opens private ranges (tests, intranet feeds)."""

    allow_private: list[Network] = []
    timeout: float = Field(default=DEFAULT_TIMEOUT_SECONDS, gt=0)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, gt=0)
    max_redirects: int = Field(default=DEFAULT_MAX_REDIRECTS, ge=0)
    user_agent: str = DEFAULT_USER_AGENT
    concurrency: int = Field(default=10, ge=1)
    per_host_concurrency: int = Field(default=2, ge=1)
    #: seconds between the starts of two requests to one host: a site is never hammered
    per_host_spacing: float = Field(default=0.25, ge=0)

    @field_validator("allow_private", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        try:
            return [ipaddress.ip_network(str(item), strict=False) for item in value]
        except ValueError as exc:
            raise ValueError(f"not an IP network: {exc}") from None


class MonitorConfig(_Strict):
    """The whole of feeds.yaml."""

    feeds: list[FeedConfig] = []
    subscriptions: list[SubscriptionConfig] = []
    network: NetworkConfig = NetworkConfig()

    @model_validator(mode="after")
    def _unique_names(self) -> MonitorConfig:
        for kind, items in (("feeds", self.feeds), ("subscriptions", self.subscriptions)):
            seen: set[str] = set()
            for item in items:
                if item.name in seen:
                    raise ValueError(f"{kind}: the name {item.name!r} is used twice")
                seen.add(item.name)
        return self

    def feed(self, name: str) -> FeedConfig | None:
        return next((f for f in self.feeds if f.name == name), None)

    def subscription(self, name: str) -> SubscriptionConfig | None:
        return next((s for s in self.subscriptions if s.name == name), None)


def load_config(path: Path) -> MonitorConfig:
    """Read and validate feeds.yaml; any problem is one ConfigError naming file, line and key."""
    try:
        raw_text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            "file not found (create it, pass --config FILE or set MONITOR_CONFIG)", path=str(path)
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", path=str(path)) from None
    return parse_config(raw_text, path)


def parse_config(raw_text: str, path: Path) -> MonitorConfig:
    """Validate the text of feeds.yaml (read from ``path``, named in errors)."""
    try:
        tree = YAML(typ="rt").load(raw_text)
    except MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ConfigError(f"not valid YAML: {exc.problem}", path=str(path), line=line) from None
    if tree is None:
        tree = CommentedMap()
    if not isinstance(tree, dict):
        raise ConfigError(
            "the top level must be a mapping with feeds:, subscriptions:, network:", path=str(path)
        )
    try:
        return MonitorConfig.model_validate(_plain(tree))
    except ValidationError as exc:
        messages = []
        first_line = None
        for error in exc.errors():
            loc = tuple(error["loc"])
            line = _line_of(tree, loc)
            first_line = first_line or line
            key = _dotted(loc)
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key"
            where = f"line {line}, " if line else ""
            messages.append(f"{where}{key}: {message}" if key else f"{where}{message}")
        raise ConfigError("; ".join(messages), path=str(path)) from None


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _line_of(tree: Any, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line in feeds.yaml of the value at ``loc`` (as deep as the YAML tree goes)."""
    node, line = tree, None
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    return line


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not str(part).startswith(("function-", "value_error")):
            out += ("." if out else "") + str(part)
    return out
