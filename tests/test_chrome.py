"""Site chrome learned per site and removed: on real pages, and on real pages reposted inside known chrome."""

from datetime import UTC, datetime
from xml.sax.saxutils import escape

from monitor.chrome import MIN_ARTICLES, LineSeen, line_keys, strip_lines
from monitor.config import FeedConfig
from monitor.demo import DEMO_MIN_SCORE, DEMO_QUERY
from monitor.extract import extract_page
from monitor.loopback import LoopbackSite

from conftest import corpus_path, run_pipeline, serve_kremlin

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
CHROME = [
    "Join our Telegram channel for the latest updates",
    "Subscribe to our newsletter and never miss a story.",
    "Source link",
    "© 2026 Daily News Hub. All rights reserved.",
]


def run(storage):
    return run_pipeline(storage, lambda: NOW, all_feeds=True)


def stored_texts(storage, host_part: str) -> dict[str, str]:
    """Stored text of every article whose URL contains ``host_part``, by page id."""
    stories = storage.stories()
    texts = storage.article_texts([c.article_id for s in stories for c in s.copies])
    return {
        c.url.rsplit("/", 1)[1].removesuffix(".html"): texts[c.article_id].split("\n", 1)[1]
        for s in stories
        for c in s.copies
        if host_part in c.url
    }


def test_a_line_is_chrome_when_most_of_a_sites_articles_repeat_it():
    assert LineSeen(articles=MIN_ARTICLES, site_articles_since=MIN_ARTICLES).is_chrome
    assert not LineSeen(articles=MIN_ARTICLES - 1, site_articles_since=MIN_ARTICLES - 1).is_chrome
    assert not LineSeen(articles=11, site_articles_since=42).is_chrome  # "Thank you." in transcripts
    text = "Source link\nThe talks went on.\n\nSource  LINK\nThey agreed."
    keys = line_keys(text)
    assert len(keys) == 3  # a line's key ignores case and spacing
    chrome = {k for k, line in keys.items() if line.lower().startswith("source")}
    assert strip_lines(text, chrome) == "The talks went on.\n\nThey agreed."


def test_real_pages_reposted_inside_chrome_lose_the_chrome_and_keep_their_text(storage, site):
    """The Kremlin's own pages, and a content farm reposting them inside its menus and calls to action:
    the farm's chrome is learned and removed (from its first copies too, once learned), the Kremlin's text
    is left whole (its recurring lines, such as "Thank you." in transcripts, are not chrome)."""
    truth = serve_kremlin(site)
    storage.add_topic("xi-putin", DEMO_QUERY, DEMO_MIN_SCORE, NOW)
    root = corpus_path("articles", "kremlin", "html")
    with LoopbackSite("127.0.0.2") as farm:
        items = []
        for pid, page in sorted(truth.items()):
            if page["roles"] != ["xi_putin"]:
                continue
            html = (root / f"{pid}.html").read_text(encoding="utf-8")
            head = "".join(f"<p>{line}</p>" for line in CHROME[:2])
            foot = "".join(f"<p>{escape(line)}</p>" for line in CHROME[2:])
            html = html.replace('itemprop="articleBody">', f'itemprop="articleBody">{head}', 1)
            last_paragraph = html.rfind("</p>", 0, html.index("read__bottommeta")) + len("</p>")
            html = html[:last_paragraph] + foot + html[last_paragraph:]
            url = farm.put(f"/repost/{pid}.html", html, "text/html; charset=utf-8")
            items.append(f"<item><title>{escape(page['title'])}</title><link>{url}</link></item>")
        feed = f"<?xml version='1.0'?><rss version='2.0'><channel><title>F</title>{''.join(items)}</channel>"
        feed += "</rss>"
        farm.put("/feed.xml", feed, "application/rss+xml")
        storage.sync_feeds(
            [
                FeedConfig(name="kremlin", url=site.url("/kremlin.atom")),
                FeedConfig(name="selection", url=site.url("/selection.rss")),
                FeedConfig(name="farm", url=farm.url("/feed.xml")),
            ],
            NOW,
        )
        report = run(storage)
    assert report.articles == 42 + 12 and not report.failed_feeds

    kremlin, reposts = stored_texts(storage, "127.0.0.1"), stored_texts(storage, "127.0.0.2")
    assert len(reposts) == 12
    for pid, text in reposts.items():
        assert not any(line in text for line in CHROME), pid
        assert text == kremlin[pid]  # chrome gone, the article's own text whole
    for pid, text in kremlin.items():  # nothing of the real site's text was taken for chrome
        page = (root / f"{pid}.html").read_bytes()
        extracted = extract_page(page, url=f"http://en.kremlin.ru/events/president/news/{pid}")
        assert extracted is not None and text == extracted.text, pid
    farm_hits = [h for h in storage.hits() if "127.0.0.2" in h.url]
    assert len(farm_hits) == 12 and not any("Telegram" in h.snippet for h in farm_hits)
    # each repost, once its chrome is gone, is an exact copy of the Kremlin's page: one story
    assert all(len(s.copies) == 2 for s in storage.stories(topic="xi-putin"))
