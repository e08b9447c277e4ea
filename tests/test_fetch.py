import asyncio
import ipaddress
import socket
import threading
import time

import pytest

from monitor.config import NetworkConfig
from monitor.errors import AddressNotAllowedError, FetchError, HTTPStatusError, ResponseTooLargeError
from monitor.fetch import AddressPolicy, Fetcher
from monitor.types import Fetched, NotModified

from conftest import LOOPBACK


def fetch_feed(config, url, **kwargs):
    async def go():
        async with Fetcher(config) as fetcher:
            return await fetcher.fetch_feed(url, **kwargs)

    return asyncio.run(go())


def test_conditional_get_gets_a_304(site):
    url = site.put("/feed.xml", "<rss version='2.0'><channel><title>t</title></channel></rss>")
    first = fetch_feed(LOOPBACK, url)
    assert isinstance(first, Fetched) and first.status == 200 and first.etag
    second = fetch_feed(LOOPBACK, url, etag=first.etag, last_modified=first.last_modified)
    assert isinstance(second, NotModified)
    assert site.requests[-1][1]["if-none-match"] == first.etag
    assert "monitor" in site.requests[-1][1]["user-agent"]


def test_loopback_is_refused_unless_allowed(site):
    url = site.put("/feed.xml", "<rss/>")
    with pytest.raises(AddressNotAllowedError, match="allow_private"):
        fetch_feed(NetworkConfig(), url)
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


def test_redirects_are_followed_recorded_and_checked(site):
    target = site.put("/new.xml", "<rss/>")
    # a server that only redirects: to the feed above, or to the cloud metadata address
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(301)
            self.send_header("Location", target if self.path == "/ok" else "http://169.254.169.254/latest")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        result = fetch_feed(LOOPBACK, base + "/ok")
        assert isinstance(result, Fetched)
        assert result.final_url == target and result.redirects == (target,)
        with pytest.raises(AddressNotAllowedError, match=r"169\.254\.169\.254"):
            fetch_feed(LOOPBACK, base + "/metadata")
        with pytest.raises(FetchError, match="more than 0 redirects"):
            fetch_feed(LOOPBACK.model_copy(update={"max_redirects": 0}), base + "/ok")
    finally:
        server.shutdown()


def test_errors_name_the_url(site):
    url = site.put("/broken.xml", b"oops", status=503)
    with pytest.raises(HTTPStatusError) as caught:
        fetch_feed(LOOPBACK, url)
    assert caught.value.status == 503 and url in str(caught.value)
    big = site.put("/big.xml", b"x" * 5000)
    with pytest.raises(ResponseTooLargeError, match="cap"):
        fetch_feed(LOOPBACK.model_copy(update={"max_body_bytes": 1000}), big)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FetchError, match="cannot connect"):
        fetch_feed(LOOPBACK, f"http://127.0.0.1:{port}/feed.xml")


def test_timeout_is_a_fetch_error():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts the connection but never answers
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/slow.xml"
        with pytest.raises(FetchError, match="timed out"):
            fetch_feed(LOOPBACK.model_copy(update={"timeout": 0.5}), url)
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
        with pytest.raises(FetchError, match=r"no complete answer within 2 s"):
            fetch_feed(LOOPBACK.model_copy(update={"timeout": 0.5}), url)
        assert time.monotonic() - started < 4
    finally:
        stop.set()
        listener.close()


def test_retry_after_in_seconds_or_as_a_date_of_the_server_clock():
    from monitor.fetch import _retry_after

    assert _retry_after("120", None) == 120.0
    assert _retry_after("Mon, 23 Nov 2026 07:01:00 GMT", "Mon, 23 Nov 2026 07:00:00 GMT") == 60.0
    assert _retry_after("Mon, 23 Nov 2026 06:00:00 GMT", "Mon, 23 Nov 2026 07:00:00 GMT") == 0.0
    assert _retry_after("soon", None) is None and _retry_after(None, None) is None
