"""HTTP fetching for feeds and article pages: conditional GET, limits, and no way into private networks.

Redirects are followed by hand so that every hop is checked against the address policy and recorded. The
connection of each hop goes to an address the policy checked, never to a second DNS answer (see
``_PinnedBackend``). A 304 is a ``NotModified`` value; every failure is a ``FetchError`` naming the URL,
with a ``kind`` for backoff and metrics.
"""

from __future__ import annotations

import asyncio
import ipaddress
import select
import socket
import ssl
import time
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

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

#: the host of the request being sent and the addresses the policy checked for it; only these are dialled
_PINNED: ContextVar[tuple[str, tuple[str, ...]] | None] = ContextVar("monitor_fetch_pinned", default=None)


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
            parsed = httpx.URL(target)
        except httpx.InvalidURL as exc:
            raise FetchError(url, f"{lead}not a valid URL: {exc}", kind="invalid_url") from None
        if parsed.scheme not in ("http", "https"):
            raise FetchError(url, f"{lead}not an HTTP URL", kind="invalid_url")
        host = parsed.raw_host.decode("ascii")
        if not host:
            raise FetchError(url, f"{lead}no host in URL", kind="invalid_url")
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


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Dials only the addresses the policy checked for the request's host, in order, and never resolves
    the name again: a DNS server that answers the check with a public address and the connection with a
    private one (DNS rebinding) gets nowhere. The URL keeps its host name, so the Host header, TLS SNI and
    certificate checks, and the connection pool all stay keyed by name."""

    def __init__(self) -> None:
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        pinned = _PINNED.get()
        if pinned is None or pinned[0] != host:
            raise httpcore.ConnectError(f"{host} was not checked against the address policy")
        failure: httpcore.ConnectError | None = None
        for address in pinned[1]:
            try:
                stream = await self._backend.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
                return _KnownStream(stream)
            except httpcore.ConnectError as exc:  # a timeout ends the attempt; a refusal tries the next
                failure = exc
        raise failure or httpcore.ConnectError(f"{host} has no address")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class _KnownStream(httpcore.AsyncNetworkStream):
    """A connection whose socket facts are read once. httpcore asks every pooled connection, several times a
    request, whether it is still usable, and anyio answers each question by building a table of the
    socket's facts with a ``getpeername`` call: about 1 of the 4.4 ms of CPU a page's fetch took."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._info: dict[str, Any] = {}

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _KnownStream(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # readable while idle: the server closed it, or sent what was not asked
            sock = self.get_extra_info("socket")
            if sock is None or sock.fileno() < 0:
                return True
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        if info not in self._info:
            self._info[info] = self._stream.get_extra_info(info)
        return self._info[info]


def _pinned_transport(connections: int) -> httpx.AsyncHTTPTransport:
    """httpx's transport with its connection pool dialling through ``_PinnedBackend``. httpx (0.28) takes
    no network backend, so its pool is replaced; an httpx that keeps the pool elsewhere fails loudly.

    The pool holds at most ``connections`` (the fetcher never has more requests under way): httpcore looks
    at every pooled connection for each request, so a pool larger than needed, filled with idle
    connections to the many sites of a feed list, costs more time than it saves."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    if not isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        raise RuntimeError("this httpx keeps no httpcore pool in ._pool: cannot pin checked addresses")
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=connections,
        max_keepalive_connections=connections,
        keepalive_expiry=5.0,
        network_backend=_PinnedBackend(),
    )
    return transport


#: a whole answer (headers and body) must arrive within this many times the network timeout
DEADLINE_FACTOR = 4


class Fetcher:
    """An async HTTP client with monitor's limits; use as ``async with Fetcher(config) as fetcher``."""

    def __init__(self, config: NetworkConfig) -> None:
        self.config = config
        self.policy = AddressPolicy(config.allow_private)
        self._connect_timeout = min(config.timeout, 10.0)
        self._client = httpx.AsyncClient(
            transport=_pinned_transport(config.concurrency),
            timeout=httpx.Timeout(config.timeout, connect=self._connect_timeout),
            headers={"User-Agent": config.user_agent, "Accept-Encoding": "gzip, deflate"},
            follow_redirects=False,
            trust_env=False,  # proxies from the environment would connect around the pinned transport
        )
        self._global = asyncio.Semaphore(config.concurrency)
        self._per_host: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(config.per_host_concurrency)
        )
        #: when each host may next be asked (monotonic seconds)
        self._next_slot: dict[str, float] = {}

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._client.aclose()

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
            if response.status_code in _REDIRECTS and "location" in response.headers:
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
        if response.status_code == 304:
            return NotModified(
                url=url,
                etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"),
                max_age=_max_age(response.headers),
            )
        if response.status_code >= 400:
            raise HTTPStatusError(
                url,
                response.status_code,
                _retry_after(response.headers.get("retry-after"), response.headers.get("date")),
            )
        if response.status_code >= 300:
            raise FetchError(url, f"HTTP {response.status_code} without a usable Location", kind="redirect")
        return Fetched(
            url=url,
            final_url=current,
            status=response.status_code,
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
    ) -> tuple[httpx.Response, bytes]:
        """GET ``target`` from its checked addresses; the body is read only for a 2xx answer."""
        lead = _redirected(url, target)
        # httpx's timeouts are per read: a server dripping a byte a second would never trip them
        deadline = self.config.timeout * DEADLINE_FACTOR
        token = _PINNED.set(pinned)
        try:
            async with (
                asyncio.timeout(deadline),
                self._client.stream("GET", target, headers=headers) as response,
            ):
                if not 200 <= response.status_code < 300:
                    return response, b""
                content_type = response.headers.get("content-type", "")
                media = content_type.split(";")[0].strip().lower()
                if media.startswith(_BINARY_TOP_LEVEL) or media in _BINARY_APPLICATION:
                    raise FetchError(url, f"{lead}Content-Type {media} is not {wanted}", kind="content_type")
                return response, await self._body(url, lead, response)
        except httpx.ConnectTimeout:
            raise FetchError(url, f"{lead}timed out (ConnectTimeout)", kind="connect_timeout") from None
        except httpx.TimeoutException as exc:
            raise FetchError(url, f"{lead}timed out ({type(exc).__name__})", kind="timeout") from None
        except TimeoutError:
            raise FetchError(
                url, f"{lead}timed out: no complete answer within {deadline:g} s", kind="timeout"
            ) from None
        except httpx.ConnectError as exc:
            kind, detail = _connect_failure(exc)
            raise FetchError(url, f"{lead}cannot connect: {detail}", kind=kind) from None
        except httpx.NetworkError as exc:
            raise FetchError(
                url, f"{lead}the connection broke: {exc or type(exc).__name__}", kind="network"
            ) from None
        except zlib.error as exc:
            raise FetchError(url, f"{lead}cannot decode the response: {exc}", kind="decode") from None
        except httpx.HTTPError as exc:
            raise FetchError(url, f"{lead}{type(exc).__name__}: {exc}", kind="protocol") from None
        finally:
            _PINNED.reset(token)

    async def _body(self, url: str, lead: str, response: httpx.Response) -> bytes:
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
        inflater: zlib._Decompress | None = None
        body = bytearray()
        async for raw in response.aiter_raw():
            if encoding in ("identity", ""):
                body += raw
            else:
                inflater = inflater or _inflater(encoding, raw)
                body += inflater.decompress(raw, cap + 1 - len(body))
                while inflater.unconsumed_tail and len(body) <= cap:
                    body += inflater.decompress(inflater.unconsumed_tail, cap + 1 - len(body))
            if len(body) > cap:
                raise ResponseTooLargeError(url, f"{lead}body is over the {cap}-byte cap")
        if inflater is not None:
            body += inflater.flush()
            if len(body) > cap:
                raise ResponseTooLargeError(url, f"{lead}body is over the {cap}-byte cap")
        return bytes(body)


def _inflater(encoding: str, first: bytes) -> zlib._Decompress:
    """A decompressor for a gzip or deflate body; "deflate" is zlib-wrapped by the standard but sent raw by
    some servers, which the first bytes tell apart (a zlib header is method 8 and a multiple of 31)."""
    if encoding == "deflate" and not (
        len(first) >= 2 and first[0] & 0x0F == 8 and int.from_bytes(first[:2], "big") % 31 == 0
    ):
        return zlib.decompressobj(-zlib.MAX_WBITS)
    return zlib.decompressobj(zlib.MAX_WBITS | 32)  # a gzip or zlib header, recognised by zlib


def _connect_failure(exc: BaseException) -> tuple[FetchErrorKind, str]:
    """The kind of a failed connection and what to say about it."""
    innermost, cause = exc, exc.__cause__ or exc.__context__
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "refused", "connection refused"
        if isinstance(cause, ssl.SSLError):
            return "tls", f"TLS failed: {cause}"
        innermost, cause = cause, cause.__cause__ or cause.__context__
    return "connect", str(innermost) or "connection failed"


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


def _max_age(headers: httpx.Headers) -> float | None:
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
