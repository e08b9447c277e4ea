"""The digest as mail clients and people see it: HTML with inlined CSS and no remote resources, rendered by
headless Chromium (Debian's /usr/bin/chromium) at desktop and phone widths; the screenshots must show
something and nothing may stick out past the screen's edge.

Set MONITOR_UPDATE_SCREENSHOTS=1 to write docs/digest-desktop.png and docs/digest-phone.png from this run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from monitor.config import FeedConfig, SubscriptionConfig
from monitor.demo import DEMO_MIN_SCORE, DEMO_QUERY, PLACEHOLDER, SITE
from monitor.digest import prepare_digest, render_html, render_text

from conftest import run_pipeline, serve_kremlin

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DOCS = Path(__file__).resolve().parents[1] / "docs"
#: (name, viewport width); the height follows the page
WIDTHS = {"desktop": 1280, "phone": 390}
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # nothing may load from the network
]
#: headless Chromium's window is at least 500 px wide: narrower screens are an iframe of that width
MIN_WINDOW = 500
MEASURE = """<script>
parent.postMessage(JSON.stringify({
  width: document.documentElement.scrollWidth,
  height: document.documentElement.scrollHeight,
  viewport: window.innerWidth,
  sticking_out: Array.from(document.body.querySelectorAll("*"))
    .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)
    .map(e => e.tagName + "." + e.className),
}), "*");
</script></body>"""
FRAME = """<!DOCTYPE html><html><head><title>not measured</title></head><body style="margin:0">
<iframe src="{src}" width="{width}" height="{height}" style="border:0;display:block"></iframe>
<script>addEventListener("message", event => {{ document.title = event.data; }});</script></body></html>"""


def showcase_digest(storage, site, *, kremlin: bool = False):
    """The demo outlets (and with ``kremlin``, the Kremlin selection of the corpus) through the stream, and
    the digest of two topics a subscription in Berlin would get, stale reposts shown labelled."""
    site.put_tree(SITE, replace={PLACEHOLDER: site.base_url.encode()})
    feeds = [
        FeedConfig(name="eastwire", url=site.url("/eastwire/feed.xml")),
        FeedConfig(name="harbourpost", url=site.url("/harbourpost/atom.xml")),
        FeedConfig(name="dailyhub", url=site.url("/dailyhub/feed.xml")),
    ]
    if kremlin:
        serve_kremlin(site)
        feeds.append(FeedConfig(name="selection", url=site.url("/selection.rss")))
    now = datetime.now(UTC)
    storage.sync_feeds(feeds, now - timedelta(days=1))
    storage.add_topic("xi-putin", DEMO_QUERY, DEMO_MIN_SCORE, now - timedelta(days=1))
    storage.add_topic("russia-trade", "(trade OR oil OR fertiliser) AND (russia* OR putin*)", 0.3, now)
    sub = SubscriptionConfig(
        name="morning",
        recipients=["desk@example.org"],
        topics=["xi-putin", "russia-trade"],
        timezone="Europe/Berlin",
        exclude_reposts_older_than=None,
    )
    storage.sync_subscriptions([sub], now - timedelta(days=1))
    run_pipeline(storage, lambda: now)
    return prepare_digest(storage, sub, now=now + timedelta(minutes=1))


class _Resources(HTMLParser):
    """Every URL the document would load or link to."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "srcset", "background", "poster", "data") or (
                tag == "link" and name == "href"
            ):
                self.loads.append(f"{tag} {name}={value}")
            elif name == "href":
                self.links.append(value or "")
        if tag in ("img", "script", "iframe", "object", "embed", "video", "audio", "form"):
            self.loads.append(tag)


def test_html_is_inlined_and_loads_nothing(storage, site):
    digest = showcase_digest(storage, site)
    html = render_html(digest, unsubscribe="mailto:monitor@example.org?subject=unsubscribe%20morning")
    resources = _Resources()
    resources.feed(html)
    assert resources.loads == []  # no remote images, pixels, scripts or stylesheets
    assert "url(" not in html and "@import" not in html
    article_urls = {s.hit.url for section in digest.sections for s in section.stories}
    article_urls |= {c.url for section in digest.sections for s in section.stories for c in s.also}
    for link in resources.links:  # links go straight to the articles: no redirect or click tracking
        assert link in article_urls or link.startswith(("#topic-", "mailto:monitor@example.org")), link
    # the stylesheet is in style attributes (Gmail and Outlook drop <style>); only @media rules stay there
    assert re.search(r'<td class="story" style="[^"]*padding: 14px 32px 18px 32px', html)
    style = re.search(r"<style>(.*?)</style>", html, re.S)
    assert style and set(re.findall(r"@(\w+)", style.group(1))) == {"media"}
    assert "prefers-color-scheme: dark" in style.group(1) and 'name="color-scheme"' in html
    assert html.count('role="presentation"') >= 2  # table layout
    republished = next(s for section in digest.sections for s in section.stories if s.hit.republished_from)
    assert "Republished · originally 8 May 2025" in html and republished.hit.source == "Daily Hub"
    text = render_text(digest)
    flowing = " ".join(text.split())
    assert "republished, originally 8 May 2025" in flowing and "Also reported by: Daily Hub" in flowing
    assert all(len(line) <= 80 for line in text.splitlines() if not line.startswith("  http"))


def chromium(*args: str, cwd: Path) -> str:
    profile = cwd / f"profile-{len(list(cwd.glob('profile-*')))}"
    result = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Chromium: apt-get install -y chromium")
@pytest.mark.parametrize("kremlin", [False, True], ids=["demo", "kremlin"])
def test_chromium_renders_the_digest_at_desktop_and_phone_width(storage, site, tmp_path, kremlin):
    if kremlin and "postgresql" in str(storage.engine.url):
        pytest.skip("the Kremlin pages render the same from either database; SQLite is enough")
    digest = showcase_digest(storage, site, kremlin=kremlin)
    assert digest.count >= (15 if kremlin else 5)
    html = render_html(digest, unsubscribe="mailto:monitor@example.org?subject=unsubscribe%20morning")
    page = tmp_path / "digest.html"
    page.write_text(html, encoding="utf-8")
    measured = tmp_path / "measured.html"
    measured.write_text(html.replace("</body>", MEASURE), encoding="utf-8")

    for name, width in WIDTHS.items():
        window = max(width, MIN_WINDOW)
        frame = tmp_path / f"measure-{name}.html"
        frame.write_text(FRAME.format(src=measured.name, width=width, height=900), encoding="utf-8")
        dom = chromium(
            "--dump-dom",
            "--virtual-time-budget=5000",
            f"--window-size={window},900",
            frame.as_uri(),
            cwd=tmp_path,
        )
        title = re.search(r"<title>(.*?)</title>", dom, re.S)
        assert title and title.group(1) != "not measured", dom[:500]
        layout = json.loads(title.group(1).replace("&quot;", '"').replace("&amp;", "&"))
        assert layout["viewport"] == width
        assert layout["width"] <= width and layout["sticking_out"] == [], (name, layout)  # no overflow

        shot = tmp_path / f"{name}.png"
        height = min(layout["height"], 16000)
        frame.write_text(FRAME.format(src=page.name, width=width, height=height), encoding="utf-8")
        chromium(f"--screenshot={shot}", f"--window-size={window},{height}", frame.as_uri(), cwd=tmp_path)
        image = Image.open(shot).convert("RGB").crop((0, 0, width, height))
        small = image.resize((width // 4, height // 4))
        colours = small.getcolors(maxcolors=1_000_000) or []
        background = max(colours)[1]
        ink = sum(n for n, colour in colours if colour != background) / (small.width * small.height)
        assert len(colours) > 50 and ink > 0.1, (name, len(colours), ink)  # text and cards, not a blank page
        if os.environ.get("MONITOR_UPDATE_SCREENSHOTS") and not kremlin:
            image.save(DOCS / f"digest-{name}.png", optimize=True)
