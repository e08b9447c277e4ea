"""Article URLs: the canonical key an article is stored under, whichever feed, wrapper or link led to it.

A feed's link may be wrapped (Google Alerts' ``google.com/url?url=…``, ``archive.is/newest/<url>``, the
Wayback Machine, Facebook's link shim) and carry tracking parameters. The article's identity is the
unwrapped, normalised original; the page is fetched from the link as the feed gave it, except that a pure
redirect wrapper is skipped (an archive link is kept: it may hold the text a paywalled original does not).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import courlan

#: query parameters that only track where a click came from, beyond those courlan already strips
#: (utm_*, fbclid, gclid, msclkid, mc_*, *_campaign, *source, *medium, ref, …)
TRACKING_PARAMS = frozenset(
    {"ocid", "cmpid", "smid", "ito", "ns_mchannel", "ns_linkname", "spm", "feedtype", "feedname", "_ga"}
)
#: hosts whose /url?q=… or ?u=… only redirects to the target
_REDIRECT_WRAPPERS = {
    "google.com": ("url", "q"),
    "l.facebook.com": ("u",),
    "lm.facebook.com": ("u",),
    "l.instagram.com": ("u",),
    "t.umblr.com": ("z",),
}
_ARCHIVE_HOSTS = frozenset(
    {"archive.is", "archive.ph", "archive.today", "archive.li", "archive.vn", "archive.md", "archive.fo"}
)
#: archive.is/newest/<url>, archive.ph/2024.01.02-030405/<url>, archive.is/o/AbCd/<url>
_ARCHIVE_PATH = re.compile(r"^/(?:newest|oldest|o/[A-Za-z0-9]+|\d[\d.\-]*)/(?P<target>https?:/.+)$")
#: web.archive.org/web/20240102030405/<url>, also with an id_/if_/… flag after the timestamp
_WAYBACK_PATH = re.compile(r"^/web/\d{1,14}(?:[a-z]{2}_)?/(?P<target>https?:/.+)$")


def unwrap_url(url: str) -> str:
    """The original article URL behind redirect and archive wrappers (as many layers as there are)."""
    for _ in range(5):
        target = _wrapped_target(url.strip())
        if target is None:
            return url.strip()
        url = target
    return url.strip()


def _wrapped_target(url: str) -> str | None:
    parts = urlsplit(url)
    host = (parts.hostname or "").removeprefix("www.")
    if host in _REDIRECT_WRAPPERS and (host != "google.com" or parts.path == "/url"):
        params = dict(parse_qsl(parts.query))
        for name in _REDIRECT_WRAPPERS[host]:
            if params.get(name, "").startswith(("http://", "https://")):
                return params[name]
        return None
    if host in _ARCHIVE_HOSTS:
        found = _ARCHIVE_PATH.match(parts.path + (f"?{parts.query}" if parts.query else ""))
    elif host == "web.archive.org":
        found = _WAYBACK_PATH.match(parts.path + (f"?{parts.query}" if parts.query else ""))
    else:
        return None
    if found is None:
        return None
    target = found["target"]
    target = re.sub(r"^(https?):/(?!/)", r"\1://", target)  # archives sometimes collapse the //
    return unquote(target) if target.startswith(("http%3A", "https%3A")) else target


def canonical_url(url: str) -> str:
    """The article's identity: unwrapped; scheme and host lower-cased, default port, fragment and tracking
    parameters dropped, query sorted (courlan's normalisation plus a few trackers it does not know)."""
    url = unwrap_url(url)
    try:
        normalised = courlan.normalize_url(url, strict=False)
    except (ValueError, AttributeError):
        normalised = url
    parts = urlsplit(normalised)
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() not in TRACKING_PARAMS
    ]
    host = (parts.netloc or "").rstrip(".")
    return urlunsplit((parts.scheme, host, parts.path or "/", urlencode(query), ""))


def page_url(link: str) -> str:
    """Where to fetch (and link) an article: its canonical URL, or the archive link the feed gave."""
    link = link.strip()
    while (target := _wrapped_target(link)) is not None and not _is_archive(link):
        link = target
    return link if _is_archive(link) else canonical_url(link)


def _is_archive(url: str) -> bool:
    host = (urlsplit(url).hostname or "").removeprefix("www.")
    return host in _ARCHIVE_HOSTS or host == "web.archive.org"


def site_of(url: str) -> str:
    """The site an article belongs to, for learning its chrome: the host without ``www.``."""
    return (urlsplit(url).hostname or "").removeprefix("www.")
