"""HTTP fetching for feeds and article pages: conditional GET, limits, and no way into private networks.

Redirects are followed by hand so that every hop is checked against the address policy and recorded. The
connection of each hop goes to an address the policy checked, never to a second DNS answer (see
``_PinnedBackend``). A 304 is a ``NotModified`` value; every failure is a ``FetchError`` naming the URL,
with a ``kind`` for backoff and metrics.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import cast
from urllib.parse import urljoin, urlsplit

import aiohttp
import aiohttp.abc
import certifi
import yarl
from isal import isal_zlib

from monitor.config import Network, NetworkConfig
from monitor.errors import (
    AddressNotAllowedError,
    FetchError,
    FetchErrorKind,
    HTTPStatusError,
    ResponseTooLargeError,
)
from monitor.types import Fetched, NotModified

FEED_ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
_REDIRECTS = {301, 302, 303, 307, 308}
#: media types neither a feed nor a web page is ever sent as: refused before the body is read
_BINARY_TOP_LEVEL = ("image/", "audio/", "video/", "font/", "model/")
_BINARY_APPLICATION = frozenset(
    "application/" + subtype
    for subtype in ("pdf", "zip", "gzip", "x-gzip", "x-tar", "x-7z-compressed", "vnd.rar", "wasm")
)

#: the longest header line an answer may have (aiohttp's default, 8 KiB, is below what some sites send)
_MAX_HEADER_LINE = 64 * 1024

log = logging.getLogger(__name__)

#: the host of the request being sent and the addresses the policy checked for it; only these are dialled
_PINNED: ContextVar[tuple[str, tuple[str, ...]] | None] = ContextVar("monitor_fetch_pinned", default=None)


@dataclass(frozen=True, slots=True)
class Answer:
    """What ``_follow`` needs of an HTTP answer once its connection is released."""

    status: int
    headers: Mapping[str, str]


def _redirected(url: str, target: str) -> str:
    """How a message about ``target`` begins when fetching ``url`` led there by redirects."""
    return "" if target == url else f"redirected to {target}: "


class AddressPolicy:
    """Refuses hosts that resolve to private, loopback, link-local, multicast or reserved addresses,
    unless an allowed network covers them."""

    def __init__(self, allowed: Sequence[Network] = ()) -> None:
        self.allowed = list(allowed)

    def permits(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if any(address in net for net in self.allowed if net.version == address.version):
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            return self.permits(address.ipv4_mapped)
        return address.is_global and not address.is_multicast

    async def check(self, target: str, *, url: str | None = None) -> tuple[str, tuple[str, ...]]:
        """The host of ``target`` as sent on the wire and the addresses it resolves to, all permitted;
        errors name ``url`` (the URL asked for, when ``target`` is a redirect), else ``target``."""
        url = url or target
        lead = _redirected(url, target)
        try:
            parts = urlsplit(target)
            if parts.scheme not in ("http", "https"):
                raise FetchError(url, f"{lead}not an HTTP URL", kind="invalid_url")
            if not parts.hostname:
                raise FetchError(url, f"{lead}no host in URL", kind="invalid_url")
            host = yarl.URL(target).raw_host or ""  # IDNA-encoded, as the connection looks it up
        except (ValueError, UnicodeError) as exc:
            raise FetchError(url, f"{lead}not a valid URL: {exc}", kind="invalid_url") from None
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as exc:
                raise FetchError(url, f"{lead}cannot resolve host {host!r}: {exc}", kind="dns") from None
            addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        for address in addresses:
            if not self.permits(address):
                raise AddressNotAllowedError(
                    url,
                    f"{lead}{host} resolves to {address}, a private/reserved address; "
                    "add its network to network.allow_private in feeds.yaml to allow it",
                )
        return host, tuple(dict.fromkeys(str(a) for a in addresses))


class _PinnedResolver(aiohttp.abc.AbstractResolver):
    """Answers a connection's name lookup with the addresses the policy checked for the request's host, in
    order, and never resolves the name again: a DNS server that answers the check with a public address
    and the connection with a private one (DNS rebinding) gets nowhere. The URL keeps its host name, so the
    Host header, TLS SNI and certificate checks, and the connection pool all stay keyed by name."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        pinned = _PINNED.get()
        if pinned is None or pinned[0] != host:
            raise OSError(f"{host} was not checked against the address policy")
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in pinned[1]
        ]

    async def close(self) -> None:
        pass


#: a whole answer (headers and body) must arrive within this many times the network timeout
DEADLINE_FACTOR = 4


class Fetcher:
    """An async HTTP client with monitor's limits; use as ``async with Fetcher(config) as fetcher``."""

    def __init__(self, config: NetworkConfig) -> None:
        self.config = config
        self.policy = AddressPolicy(config.allow_private)
        self._connect_timeout = min(config.timeout, 10.0)
        self._session: aiohttp.ClientSession | None = None
        self._global = asyncio.Semaphore(config.concurrency)
        self._per_host: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(config.per_host_concurrency)
        )
        #: when each host may next be asked (monotonic seconds)
        self._next_slot: dict[str, float] = {}

    async def __aenter__(self) -> Fetcher:
        # the pool holds at most ``concurrency`` connections (never more requests are under way) and never
        # resolves a name itself (see _PinnedResolver); bodies are inflated by ``_body``, under the cap
        connector = aiohttp.TCPConnector(
            limit=self.config.concurrency,
            resolver=_PinnedResolver(),
            use_dns_cache=False,
            keepalive_timeout=5.0,
            ssl=ssl.create_default_context(cafile=certifi.where()),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": self.config.user_agent, "Accept-Encoding": "gzip, deflate"},
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=self._connect_timeout, sock_read=self.config.timeout
            ),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # feeds and articles need none; a jar would grow forever
            trust_env=False,  # proxies from the environment would connect around the pinned addresses
            max_line_size=_MAX_HEADER_LINE,
            max_field_size=_MAX_HEADER_LINE,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch_feed(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> Fetched | NotModified:
        """GET a feed, conditionally when validators from the previous answer are known."""
        headers = {"Accept": FEED_ACCEPT}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        return await self._get(url, headers, "a feed")

    async def fetch_page(self, url: str) -> Fetched:
        """GET an article page."""
        result = await self._get(url, {"Accept": PAGE_ACCEPT}, "a web page")
        if isinstance(result, NotModified):  # not asked for, but a server may still say it
            raise FetchError(url, "unexpected 304 Not Modified", kind="protocol")
        return result

    async def _get(self, url: str, headers: dict[str, str], wanted: str) -> Fetched | NotModified:
        host = urlsplit(url).hostname or ""
        async with self._per_host[host]:
            await self._space(host)
            async with self._global:
                return await self._follow(url, headers, wanted)

    async def _space(self, host: str) -> None:
        """Wait for the host's next slot, so requests to it start at least per_host_spacing apart."""
        now = time.monotonic()
        slot = max(now, self._next_slot.get(host, now))
        self._next_slot[host] = slot + self.config.per_host_spacing
        if slot > now:
            await asyncio.sleep(slot - now)

    async def _follow(self, url: str, headers: dict[str, str], wanted: str) -> Fetched | NotModified:
        """GET ``url``, following and checking redirects by hand."""
        redirects: list[str] = []
        current = url
        while True:
            pinned = await self._check(url, current)
            response, body = await self._request(url, current, pinned, headers, wanted)
            if response.status in _REDIRECTS and "location" in response.headers:
                if len(redirects) >= self.config.max_redirects:
                    raise FetchError(
                        url, f"more than {self.config.max_redirects} redirects", kind="redirect_loop"
                    )
                current = urljoin(current, response.headers["location"])
                if urlsplit(current).scheme not in ("http", "https"):
                    raise FetchError(url, f"redirect to a non-HTTP URL {current!r}", kind="redirect")
                redirects.append(current)
                continue
            break
        if response.status == 304:
            return NotModified(
                url=url,
                etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"),
                max_age=_max_age(response.headers),
            )
        if response.status >= 400:
            raise HTTPStatusError(
                url,
                response.status,
                _retry_after(response.headers.get("retry-after"), response.headers.get("date")),
            )
        if response.status >= 300:
            raise FetchError(url, f"HTTP {response.status} without a usable Location", kind="redirect")
        return Fetched(
            url=url,
            final_url=current,
            status=response.status,
            content=body,
            content_type=response.headers.get("content-type"),
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
            redirects=tuple(redirects),
            max_age=_max_age(response.headers),
        )

    async def _check(self, url: str, target: str) -> tuple[str, tuple[str, ...]]:
        """The policy's check of ``target``, with name resolution bounded by the connect timeout."""
        try:
            async with asyncio.timeout(self._connect_timeout):
                return await self.policy.check(target, url=url)
        except TimeoutError:
            raise FetchError(
                url,
                f"{_redirected(url, target)}cannot resolve host {urlsplit(target).hostname!r}: "
                f"no answer within {self._connect_timeout:g} s",
                kind="dns",
            ) from None

    async def _request(
        self, url: str, target: str, pinned: tuple[str, tuple[str, ...]], headers: dict[str, str], wanted: str
    ) -> tuple[Answer, bytes]:
        """GET ``target`` from its checked addresses; the body is read only for a 2xx answer."""
        if self._session is None:
            raise RuntimeError("use the Fetcher as `async with Fetcher(config) as fetcher`")
        lead = _redirected(url, target)
        # the read timeout is per read: a server dripping a byte a second would never trip it
        deadline = self.config.timeout * DEADLINE_FACTOR
        token = _PINNED.set(pinned)
        try:
            async with (
                asyncio.timeout(deadline),
                self._session.get(target, headers=headers, allow_redirects=False) as response,
            ):
                log.debug("GET %s %d", target, response.status)
                answer = Answer(response.status, response.headers)
                if not 200 <= response.status < 300:
                    return answer, b""
                media = answer.headers.get("content-type", "").split(";")[0].strip().lower()
                if media.startswith(_BINARY_TOP_LEVEL) or media in _BINARY_APPLICATION:
                    raise FetchError(url, f"{lead}Content-Type {media} is not {wanted}", kind="content_type")
                return answer, await self._body(url, lead, response)
        except aiohttp.ConnectionTimeoutError:
            raise FetchError(
                url,
                f"{lead}timed out: not connected within {self._connect_timeout:g} s",
                kind="connect_timeout",
            ) from None
        except aiohttp.ServerTimeoutError:
            raise FetchError(
                url, f"{lead}timed out: no data for {self.config.timeout:g} s", kind="timeout"
            ) from None
        except TimeoutError:
            raise FetchError(
                url, f"{lead}timed out: no complete answer within {deadline:g} s", kind="timeout"
            ) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise FetchError(
                url, f"{lead}cannot connect: TLS failed: {exc.certificate_error}", kind="tls"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            kind, detail = _connect_failure(exc.os_error)
            raise FetchError(url, f"{lead}cannot connect: {detail}", kind=kind) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as exc:
            raise FetchError(
                url, f"{lead}the connection broke: {exc or type(exc).__name__}", kind="network"
            ) from None
        except _INFLATE_ERROR as exc:
            raise FetchError(url, f"{lead}cannot decode the response: {exc}", kind="decode") from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise FetchError(url, f"{lead}{type(exc).__name__}: {exc}", kind="protocol") from None
        finally:
            _PINNED.reset(token)

    async def _body(self, url: str, lead: str, response: aiohttp.ClientResponse) -> bytes:
        """The decoded body, stopped as soon as it is over the cap: a compressed body is inflated a piece at
        a time with a bound on each piece, so a gzip bomb never grows in memory beyond the cap."""
        cap = self.config.max_body_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise ResponseTooLargeError(
                url, f"{lead}body of {int(declared)} bytes is over the {cap}-byte cap"
            )
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "", "gzip", "x-gzip", "deflate"):
            raise FetchError(url, f"{lead}unsupported Content-Encoding {encoding!r}", kind="decode")
        inflater: isal_zlib.Decompress | None = None
        pieces: list[bytes] = []
        size = 0
        async for raw in response.content.iter_any():
            if encoding in ("identity", ""):
                pieces.append(raw)
                size += len(raw)
            else:
                inflater = inflater or _inflater(encoding, raw)
                data = raw
                while data and size <= cap:  # at most one byte past the cap is ever inflated
                    pieces.append(inflater.decompress(data, cap + 1 - size))
                    size += len(pieces[-1])
                    data = inflater.unconsumed_tail
            if size > cap:
                raise ResponseTooLargeError(url, f"{lead}body is over the {cap}-byte cap")
        if inflater is not None:
            pieces.append(inflater.flush())
            if size + len(pieces[-1]) > cap:
                raise ResponseTooLargeError(url, f"{lead}body is over the {cap}-byte cap")
        return b"".join(pieces)


#: what ISA-L raises on a corrupt stream (its type stub declares it as an instance)
_INFLATE_ERROR = cast(type[Exception], isal_zlib.error)


def _inflater(encoding: str, first: bytes) -> isal_zlib.Decompress:
    """A decompressor for a gzip or deflate body; "deflate" is zlib-wrapped by the standard but sent raw by
    some servers, which the first bytes tell apart (a zlib header is method 8 and a multiple of 31).

    ISA-L's inflate (python-isal, zlib's interface) takes 0.13 ms for a typical 150 KB news page where zlib
    takes 0.31 ms: half of what fetching a page costs the daemon (see docs/design.md)."""
    if encoding == "deflate" and not (
        len(first) >= 2 and first[0] & 0x0F == 8 and int.from_bytes(first[:2], "big") % 31 == 0
    ):
        return isal_zlib.decompressobj(-isal_zlib.MAX_WBITS)
    return isal_zlib.decompressobj(isal_zlib.MAX_WBITS | 32)  # a gzip or zlib header, recognised by ISA-L


def _connect_failure(error: OSError) -> tuple[FetchErrorKind, str]:
    """The kind of a failed connection and what to say about it."""
    if isinstance(error, ConnectionRefusedError):
        return "refused", "connection refused"
    if isinstance(error, ssl.SSLError):
        return "tls", f"TLS failed: {error}"
    return "connect", error.strerror or str(error) or "connection failed"


def _retry_after(value: str | None, server_date: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds, or an HTTP date counted from the response's own
    Date header (the server's clock, so ours need not agree with it); None if it is unusable."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        until = parsedate_to_datetime(value)
        sent = parsedate_to_datetime(server_date) if server_date else datetime.now(UTC)
        return max(0.0, (until - sent).total_seconds())
    except (TypeError, ValueError):
        return None


def _max_age(headers: Mapping[str, str]) -> float | None:
    """How many seconds the answer stays fresh: Cache-Control's s-maxage or max-age, else Expires counted
    from the response's Date; None when it does not say (or says no-cache / no-store)."""
    directives = {
        name.strip().lower(): value.strip().strip('"')
        for name, _, value in (part.partition("=") for part in headers.get("cache-control", "").split(","))
    }
    if "no-cache" in directives or "no-store" in directives:
        return None
    for name in ("s-maxage", "max-age"):
        if directives.get(name, "").isdigit():
            return float(directives[name])
    if expires := headers.get("expires"):
        return _retry_after(expires, headers.get("date"))
    return None
