"""HTTP fetching for feeds and article pages: conditional GET, limits, and no way into private networks.

Redirects are followed by hand so that every hop is checked against the address policy and recorded.
A 304 is a ``NotModified`` value; every failure is a ``FetchError`` naming the URL.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import httpx

from monitor.config import Network, NetworkConfig
from monitor.errors import AddressNotAllowedError, FetchError, HTTPStatusError, ResponseTooLargeError
from monitor.types import Fetched, NotModified

FEED_ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
_REDIRECTS = {301, 302, 303, 307, 308}


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

    async def check(self, url: str) -> None:
        host = urlsplit(url).hostname
        if not host:
            raise FetchError(url, "no host in URL")
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as exc:
                raise FetchError(url, f"cannot resolve host {host!r}: {exc}") from None
            addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        for address in addresses:
            if not self.permits(address):
                raise AddressNotAllowedError(
                    url,
                    f"{host} resolves to {address}, a private/reserved address; "
                    "add its network to network.allow_private in feeds.yaml to allow it",
                )


#: a whole answer (headers and body) must arrive within this many times the network timeout
DEADLINE_FACTOR = 4


class Fetcher:
    """An async HTTP client with monitor's limits; use as ``async with Fetcher(config) as fetcher``."""

    def __init__(self, config: NetworkConfig) -> None:
        self.config = config
        self.policy = AddressPolicy(config.allow_private)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout, connect=min(config.timeout, 10.0)),
            headers={"User-Agent": config.user_agent, "Accept-Encoding": "gzip, deflate"},
            follow_redirects=False,
            trust_env=False,
        )
        self._global = asyncio.Semaphore(config.concurrency)
        self._per_host: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(config.per_host_concurrency)
        )

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
        return await self._get(url, headers)

    async def fetch_page(self, url: str) -> Fetched:
        """GET an article page."""
        result = await self._get(url, {"Accept": PAGE_ACCEPT})
        if isinstance(result, NotModified):  # not asked for, but a server may still say it
            raise FetchError(url, "unexpected 304 Not Modified")
        return result

    async def _get(self, url: str, headers: dict[str, str]) -> Fetched | NotModified:
        host = urlsplit(url).hostname or ""
        async with self._global, self._per_host[host]:
            redirects: list[str] = []
            current = url
            while True:
                await self.policy.check(current)
                response, body = await self._request(current, headers)
                if response.status_code in _REDIRECTS and "location" in response.headers:
                    if len(redirects) >= self.config.max_redirects:
                        raise FetchError(url, f"more than {self.config.max_redirects} redirects")
                    current = urljoin(current, response.headers["location"])
                    if urlsplit(current).scheme not in ("http", "https"):
                        raise FetchError(url, f"redirect to a non-HTTP URL {current!r}")
                    redirects.append(current)
                    continue
                break
        if response.status_code == 304:
            return NotModified(
                url=url,
                etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"),
            )
        if response.status_code >= 400:
            raise HTTPStatusError(
                url,
                response.status_code,
                _retry_after(response.headers.get("retry-after"), response.headers.get("date")),
            )
        if response.status_code >= 300:
            raise FetchError(url, f"HTTP {response.status_code} without a usable Location")
        return Fetched(
            url=url,
            final_url=current,
            status=response.status_code,
            content=body,
            content_type=response.headers.get("content-type"),
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
            redirects=tuple(redirects),
        )

    async def _request(self, url: str, headers: dict[str, str]) -> tuple[httpx.Response, bytes]:
        cap = self.config.max_body_bytes
        # httpx's timeouts are per read: a server dripping a byte a second would never trip them
        deadline = self.config.timeout * DEADLINE_FACTOR
        try:
            async with (
                asyncio.timeout(deadline),
                self._client.stream("GET", url, headers=headers) as response,
            ):
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > cap:
                    raise ResponseTooLargeError(
                        url, f"body of {int(declared)} bytes is over the {cap}-byte cap"
                    )
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > cap:
                        raise ResponseTooLargeError(url, f"body is over the {cap}-byte cap")
                    chunks.append(chunk)
                return response, b"".join(chunks)
        except httpx.TimeoutException as exc:
            raise FetchError(url, f"timed out ({type(exc).__name__})") from None
        except TimeoutError:
            raise FetchError(url, f"timed out: no complete answer within {deadline:g} s") from None
        except httpx.ConnectError as exc:
            raise FetchError(url, f"cannot connect: {exc or 'connection failed'}") from None
        except httpx.DecodingError as exc:
            raise FetchError(url, f"cannot decode the response: {exc}") from None
        except httpx.HTTPError as exc:
            raise FetchError(url, f"{type(exc).__name__}: {exc}") from None


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
