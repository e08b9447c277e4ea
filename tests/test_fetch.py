"""The fetcher against real loopback servers that misbehave on command: one clear error of a known kind per
failure, bounded memory, and connections only to addresses the policy checked."""

import asyncio
import gzip
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from contextlib import suppress
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from monitor.config import NetworkConfig
from monitor.errors import AddressNotAllowedError, FetchError, HTTPStatusError, ResponseTooLargeError
from monitor.fetch import AddressPolicy, Fetcher
from monitor.loopback import LoopbackSite
from monitor.types import Fetched, NotModified

from conftest import LOOPBACK

FEED = b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title></channel></rss>"
#: a 1 MB cap; and a short timeout for the tests that wait for one (only those: a loaded machine is slow)
CAPPED = LOOPBACK.model_copy(update={"max_body_bytes": 1_000_000})
FAST = CAPPED.model_copy(update={"timeout": 0.5})
MB = 1024 * 1024

Answer = Callable[[BaseHTTPRequestHandler], None]


def fetch_feed(config, url, **kwargs):
    async def go():
        async with Fetcher(config) as fetcher:
            return await fetcher.fetch_feed(url, **kwargs)

    return asyncio.run(go())


def fetch_error(config, url, kind):
    """The FetchError fetching ``url`` raises; it has ``kind`` and names the URL."""
    with pytest.raises(FetchError) as caught:
        fetch_feed(config, url)
    assert caught.value.kind == kind, caught.value
    assert str(caught.value).startswith(url + ": ")
    return caught.value


class Server:
    """A loopback HTTP server that answers each path with a function of the request handler."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.routes: dict[str, Answer] = {}
        self.requests: list[tuple[str, str]] = []  # (path, Host header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Host", "")))
                answer = server.routes.get(self.path, reply(404, b"not found"))
                with suppress(BrokenPipeError, ConnectionResetError):  # the fetcher hung up: as it should
                    answer(self)

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://{host}:{self.port}"

    def route(self, path: str, answer: Answer) -> str:
        self.routes[path] = answer
        return self.base_url + path

    def __enter__(self) -> "Server":
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def reply(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


def endless(block: bytes, total: int) -> Answer:
    """A 200 feed body of ``total`` bytes without a Content-Length, written a block at a time."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/rss+xml")
        handler.end_headers()
        for _ in range(total // len(block)):
            handler.wfile.write(block)

    return answer


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as served:
        yield served


def test_conditional_get_gets_a_304(site):
    url = site.put("/feed.xml", "<rss version='2.0'><channel><title>t</title></channel></rss>")
    first = fetch_feed(LOOPBACK, url)
    assert isinstance(first, Fetched) and first.status == 200 and first.etag
    second = fetch_feed(LOOPBACK, url, etag=first.etag, last_modified=first.last_modified)
    assert isinstance(second, NotModified)
    assert site.requests[-1][1]["if-none-match"] == first.etag
    assert "monitor" in site.requests[-1][1]["user-agent"]


def test_a_host_name_is_fetched_from_its_checked_addresses(site):
    """A plain name (not an IP literal) still works: the Host header keeps the name."""
    url = site.put("/feed.xml", FEED).replace("127.0.0.1", "localhost")
    config = LOOPBACK.model_copy(
        update={"allow_private": [*LOOPBACK.allow_private, ipaddress.ip_network("::1")]}
    )
    result = fetch_feed(config, url)
    assert isinstance(result, Fetched) and result.content == FEED
    assert site.requests[-1][1]["host"] == url.split("/")[2]


def test_loopback_is_refused_unless_allowed(site):
    url = site.put("/feed.xml", "<rss/>")
    with pytest.raises(AddressNotAllowedError, match="allow_private") as caught:
        fetch_feed(NetworkConfig(), url)
    assert caught.value.kind == "address_not_allowed"
    assert site.requests == []  # refused before connecting


def test_address_policy():
    policy = AddressPolicy([ipaddress.ip_network("10.1.0.0/16")])
    for refused in (
        "127.0.0.1",
        "10.2.0.1",
        "169.254.169.254",
        "192.168.1.1",
        "::1",
        "fe80::1",
        "224.0.0.1",
        "::ffff:127.0.0.1",
        "0.0.0.0",
    ):
        assert not policy.permits(ipaddress.ip_address(refused)), refused
    for allowed in ("10.1.2.3", "93.184.216.34", "2606:4700::1111"):
        assert policy.permits(ipaddress.ip_address(allowed)), allowed


def test_redirects_are_followed_recorded_and_checked(site, server):
    target = site.put("/new.xml", "<rss/>")
    ok = server.route("/ok", reply(301, headers={"Location": target}))
    metadata = server.route("/metadata", reply(301, headers={"Location": "http://169.254.169.254/latest"}))
    result = fetch_feed(LOOPBACK, ok)
    assert isinstance(result, Fetched)
    assert result.final_url == target and result.redirects == (target,)
    error = fetch_error(LOOPBACK, metadata, "address_not_allowed")
    assert isinstance(error, AddressNotAllowedError)
    assert "redirected to http://169.254.169.254/latest: 169.254.169.254 resolves to" in str(error)
    assert "more than 0 redirects" in str(
        fetch_error(LOOPBACK.model_copy(update={"max_redirects": 0}), ok, "redirect_loop")
    )


def test_an_endless_redirect_loop_stops_at_the_limit(server):
    url = server.route("/loop", reply(302, headers={"Location": "/loop"}))
    assert "more than 5 redirects" in str(fetch_error(CAPPED, url, "redirect_loop"))
    assert len(server.requests) == 6


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [
        (404, {}, None),
        (410, {}, None),
        (500, {}, None),
        (429, {"Retry-After": "120"}, 120.0),
        (503, {"Retry-After": "in-a-while"}, None),  # unusable: ignored
    ],
)
def test_error_statuses(server, status, headers, retry_after):
    url = server.route("/feed.xml", reply(status, b"<html>nope</html>", headers))
    error = fetch_error(CAPPED, url, "http_status")
    assert isinstance(error, HTTPStatusError) and str(error) == f"{url}: HTTP {status}"
    assert error.status == status and error.retry_after == retry_after


def test_retry_after_as_an_http_date_counts_from_the_server_clock(server):
    def answer(handler):
        # the server's clock is a day off ours: only the difference of its own two dates counts
        now = time.time() - 86_400
        handler.send_response_only(503)
        handler.send_header("Date", formatdate(now, usegmt=True))
        handler.send_header("Retry-After", formatdate(now + 90, usegmt=True))
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    error = fetch_error(CAPPED, server.route("/feed.xml", answer), "http_status")
    assert isinstance(error, HTTPStatusError) and error.status == 503 and error.retry_after == 90.0


def test_refused_and_too_large(site):
    big = site.put("/big.xml", b"x" * 5000)
    error = fetch_error(LOOPBACK.model_copy(update={"max_body_bytes": 1000}), big, "too_large")
    assert isinstance(error, ResponseTooLargeError) and "5000 bytes is over the 1000-byte cap" in str(error)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/feed.xml"
    assert str(fetch_error(LOOPBACK, url, "refused")) == f"{url}: cannot connect: connection refused"


@pytest.mark.parametrize(
    ("url", "problem"),
    [("ftp://example.org/feed.xml", "not an HTTP URL"), ("http://:8080/feed.xml", "no host in URL")],
)
def test_a_url_that_cannot_be_fetched(url, problem):
    assert str(fetch_error(CAPPED, url, "invalid_url")) == f"{url}: {problem}"


def test_a_name_that_does_not_resolve():
    url = "http://feed.invalid/rss"
    assert "cannot resolve host 'feed.invalid'" in str(fetch_error(FAST, url, "dns"))


def test_a_connection_that_is_never_accepted_times_out():
    """A listener whose accept queue is full drops further SYNs: the connection never completes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    try:
        for _ in range(8):  # fill the queue until a connection attempt gets no answer
            filler = socket.socket()
            fillers.append(filler)
            filler.settimeout(0.2)
            try:
                filler.connect(address)
            except TimeoutError:
                break
        else:
            pytest.skip("this system completes connections beyond the listen backlog")
        started = time.monotonic()
        url = f"http://127.0.0.1:{address[1]}/feed.xml"
        assert "timed out: not connected within 0.5 s" in str(fetch_error(FAST, url, "connect_timeout"))
        assert time.monotonic() - started < 3  # the 0.5 s connect timeout, not the 10 s default
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_timeout_is_a_fetch_error():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts the connection but never answers
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/slow.xml"
        assert "timed out: no data for 0.5 s" in str(fetch_error(FAST, url, "timeout"))
    finally:
        listener.close()


def test_a_slowly_dripping_body_hits_the_deadline():
    """Each byte comes before the read timeout, so only a deadline on the whole answer stops it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def drip():
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n\r\n<rss>")
            while not stop.wait(0.1):
                try:
                    conn.sendall(b" ")
                except OSError:
                    return

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/drip.xml"
        started = time.monotonic()
        assert "no complete answer within 2 s" in str(fetch_error(FAST, url, "timeout"))
        assert time.monotonic() - started < 4
    finally:
        stop.set()
        listener.close()


def peak_memory(fetch: Callable[[], object]) -> int:
    """The peak of memory traced while ``fetch`` runs."""
    tracemalloc.start()
    try:
        fetch()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_an_endless_body_stops_at_the_cap_in_bounded_memory(server):
    """64 MB with no Content-Length: reading stops past the 1 MB cap, and so does memory."""
    url = server.route("/feed.xml", endless(b"<rss>" + b" " * (64 * 1024 - 5), 64 * MB))
    caught = []
    peak = peak_memory(lambda: caught.append(fetch_error(CAPPED, url, "too_large")))
    assert "body is over the 1000000-byte cap" in str(caught[0])
    assert peak < 8 * MB, peak


def gzip_bomb(size: int) -> bytes:
    """``size`` zero bytes gzip-compressed, about a thousand times smaller, compressed a block at a time."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(MB)
    return b"".join(packer.compress(block) for _ in range(size // MB)) + packer.flush()


def test_a_gzip_bomb_is_not_inflated_past_the_cap(server):
    bomb = gzip_bomb(64 * MB)
    assert len(bomb) < 100_000
    headers = {"Content-Type": "application/rss+xml", "Content-Encoding": "gzip"}
    url = server.route("/feed.xml", reply(200, bomb, headers))
    caught = []
    peak = peak_memory(lambda: caught.append(fetch_error(CAPPED, url, "too_large")))
    assert "body is over the 1000000-byte cap" in str(caught[0])
    assert peak < 8 * MB, peak  # httpx's own decoder would inflate each 64 kB read to 64 MB


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),  # as the standard says: zlib-wrapped
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # as some servers send it: raw
    ],
)
def test_compressed_bodies_are_decoded(server, encoding, compress):
    headers = {"Content-Type": "application/rss+xml", "Content-Encoding": encoding}
    result = fetch_feed(CAPPED, server.route("/feed.xml", reply(200, compress(FEED * 100), headers)))
    assert isinstance(result, Fetched) and result.content == FEED * 100


@pytest.mark.parametrize(
    ("encoding", "body", "problem"),
    [
        ("gzip", b"\x1f\x8b\x08\x00 definitely not deflate data", "cannot decode the response"),
        ("br", b"\x0b\x02\x80hello", "unsupported Content-Encoding 'br'"),
    ],
)
def test_an_undecodable_body(server, encoding, body, problem):
    headers = {"Content-Type": "application/rss+xml", "Content-Encoding": encoding}
    url = server.route("/feed.xml", reply(200, body, headers))
    assert problem in str(fetch_error(CAPPED, url, "decode"))


def test_a_feed_of_the_wrong_content_type_is_refused(site):
    url = site.put("/feed.xml", b"\x89PNG\r\n\x1a\n" + bytes(1000), "image/png")
    assert "Content-Type image/png is not a feed" in str(fetch_error(CAPPED, url, "content_type"))


# ---- DNS rebinding: the connection goes to the address that was checked, not to a second answer


@pytest.fixture
def two_sites() -> Iterator[tuple[Server, Server]]:
    """Two servers on one port, at 127.0.0.1 and 127.0.0.2: one URL, two places a resolver can send it."""
    for _ in range(5):
        first = Server("127.0.0.1")
        try:
            second = Server("127.0.0.2", first.port)
        except OSError:  # the port is taken on 127.0.0.2: try another
            first._httpd.server_close()
            continue
        with first, second:
            yield first, second
        return
    pytest.fail("no port free on both 127.0.0.1 and 127.0.0.2")


class Resolver:
    """A DNS whose answers change from one lookup to the next: ``answers`` maps a name to addresses, one per
    lookup (the last repeats); ``lookups`` records each lookup. Other names resolve as usual."""

    def __init__(self) -> None:
        self.answers: dict[str, list[str]] = {}
        self.lookups: list[str] = []

    def answer(self, name: str) -> str:
        self.lookups.append(name)
        queue = self.answers[name]
        return queue.pop(0) if len(queue) > 1 else queue[0]


@pytest.fixture
def resolver(monkeypatch) -> Resolver:
    dns = Resolver()
    real = asyncio.base_events.BaseEventLoop.getaddrinfo

    async def getaddrinfo(self, host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in dns.answers:
            return await real(self, host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (dns.answer(name), port or 0))]

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", getaddrinfo)
    return dns


def test_a_rebinding_answer_after_the_check_is_never_dialled(two_sites, resolver):
    """The check sees 127.0.0.1 (allowed), a second lookup would give 127.0.0.2 (not allowed)."""
    allowed, private = two_sites
    allowed.route("/feed.xml", reply(200, FEED, {"Content-Type": "application/rss+xml"}))
    private.route("/feed.xml", reply(200, b"<rss>secret</rss>", {"Content-Type": "application/rss+xml"}))
    resolver.answers["rebind.test"] = ["127.0.0.1", "127.0.0.2"]
    config = CAPPED.model_copy(update={"allow_private": [ipaddress.ip_network("127.0.0.1/32")]})
    result = fetch_feed(config, f"http://rebind.test:{allowed.port}/feed.xml")
    assert isinstance(result, Fetched) and result.content == FEED
    assert allowed.requests == [("/feed.xml", f"rebind.test:{allowed.port}")] and private.requests == []
    assert resolver.lookups == ["rebind.test"]  # resolved once, for the check; never at connect


def test_every_redirect_hop_is_dialled_at_its_checked_address(two_sites, resolver):
    """feed.test is checked at 127.0.0.1, which redirects to next.test, checked at 127.0.0.2; lookups at
    connect time would swap them (and loop for ever)."""
    first, second = two_sites
    port = first.port
    next_url = f"http://next.test:{port}/feed.xml"
    first.route("/feed.xml", reply(302, headers={"Location": next_url}))
    second.route("/feed.xml", reply(200, FEED, {"Content-Type": "application/rss+xml"}))
    resolver.answers["feed.test"] = ["127.0.0.1", "127.0.0.2"]
    resolver.answers["next.test"] = ["127.0.0.2", "127.0.0.1"]
    result = fetch_feed(CAPPED, f"http://feed.test:{port}/feed.xml")
    assert isinstance(result, Fetched) and result.content == FEED and result.redirects == (next_url,)
    assert first.requests == [("/feed.xml", f"feed.test:{port}")]
    assert second.requests == [("/feed.xml", f"next.test:{port}")]
    assert resolver.lookups == ["feed.test", "next.test"]


def test_tls_to_the_checked_address_still_names_and_verifies_the_host(tmp_path, resolver):
    """SNI carries the host name though the connection goes to the pinned address, and the certificate is
    verified (this one is self-signed: refused, kind "tls")."""
    openssl = shutil.which("openssl") or pytest.skip("needs the openssl command to make a certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    request = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=feed.test -days 1"
    subprocess.run(
        [openssl, *request.split(), "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names = []
    context.sni_callback = lambda _socket, name, _context: names.append(name)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def handshake():
        conn, _ = listener.accept()
        with suppress(OSError), context.wrap_socket(conn, server_side=True):
            pass

    thread = threading.Thread(target=handshake, daemon=True)
    thread.start()
    resolver.answers["feed.test"] = ["127.0.0.1", "127.0.0.2"]
    try:
        url = f"https://feed.test:{listener.getsockname()[1]}/feed.xml"
        assert "certificate verify failed" in str(fetch_error(CAPPED, url, "tls"))
        thread.join(5)
        assert names == ["feed.test"] and resolver.lookups == ["feed.test"]
    finally:
        listener.close()


def test_retry_after_in_seconds_or_as_a_date_of_the_server_clock():
    from monitor.fetch import _retry_after

    assert _retry_after("120", None) == 120.0
    assert _retry_after("Mon, 23 Nov 2026 07:01:00 GMT", "Mon, 23 Nov 2026 07:00:00 GMT") == 60.0
    assert _retry_after("Mon, 23 Nov 2026 06:00:00 GMT", "Mon, 23 Nov 2026 07:00:00 GMT") == 0.0
    assert _retry_after("soon", None) is None and _retry_after(None, None) is None


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Cache-Control": "public, max-age=900"}, 900.0),
        ({"Cache-Control": "max-age=60, s-maxage=600"}, 600.0),
        ({"Cache-Control": "no-cache, max-age=900"}, None),
        ({"Expires": "in an hour"}, 3600.0),  # counted from the server's own Date
        ({}, None),
    ],
)
def test_how_long_an_answer_stays_fresh(server, headers, seconds):
    if headers.get("Expires") == "in an hour":
        headers = {"Expires": formatdate(time.time() + 3600, usegmt=True)}
    url = server.route("/feed.xml", reply(200, b"<rss version='2.0'><channel/></rss>", headers))

    async def fetch():
        async with Fetcher(LOOPBACK) as fetcher:
            return await fetcher.fetch_feed(url)

    assert asyncio.run(fetch()).max_age == (None if seconds is None else pytest.approx(seconds, abs=2))


def test_requests_to_one_host_are_spaced_and_other_hosts_do_not_wait(site):
    pages = [site.put(f"/p{i}.html", "<html><body>x</body></html>", "text/html") for i in range(5)]
    spaced = LOOPBACK.model_copy(update={"per_host_spacing": 0.2, "per_host_concurrency": 5})

    async def fetch_all(other):
        async with Fetcher(spaced) as fetcher:
            started = time.monotonic()
            await asyncio.gather(*(fetcher.fetch_page(p) for p in pages))
            one_host = time.monotonic() - started
            started = time.monotonic()
            await fetcher.fetch_page(other)
            return one_host, time.monotonic() - started

    with LoopbackSite("127.0.0.2") as second:
        one_host, other_host = asyncio.run(fetch_all(second.put("/p.html", "<html>y</html>", "text/html")))
    assert one_host >= 0.8  # five requests to one host start 0.2 s apart
    assert other_host < 0.2  # another host has its own slots


def test_a_kept_alive_connection_the_server_closed_is_not_reused():
    """The server answers with keep-alive, then hangs up: the next request sees the pooled connection is
    closed and dials a new one instead of failing on the dead one."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted = []

    def serve():
        for _ in range(2):
            conn, _ = listener.accept()
            accepted.append(conn)
            with conn:
                conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(FEED), FEED)
                )

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/feed.xml"

    async def twice():
        async with Fetcher(LOOPBACK) as fetcher:
            first = await fetcher.fetch_feed(url)
            await asyncio.sleep(0.2)  # the server has closed the connection by now
            return first, await fetcher.fetch_feed(url)

    try:
        first, second = asyncio.run(twice())
    finally:
        listener.close()
    assert isinstance(first, Fetched) and isinstance(second, Fetched)
    assert first.content == second.content == FEED and len(accepted) == 2
