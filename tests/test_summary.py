"""A story's summary: the article's lead, not the site's chrome, with the matched terms marked."""

from datetime import UTC, datetime, timedelta

from monitor.config import FeedConfig, SubscriptionConfig
from monitor.demo import DEMO_MIN_SCORE, DEMO_QUERY, PLACEHOLDER, SITE
from monitor.digest import prepare_digest
from monitor.digest.summary import SUMMARY_CHARS, highlights, lead, shorten, unmark

from conftest import corpus_path, run_pipeline, serve_kremlin


def marked(text: str, terms: list[str]) -> list[str]:
    return [text[a:b] for a, b in highlights(text, terms)]


def test_the_lead_skips_furniture_titles_bylines_and_datelines():
    text = (
        "Xi and Putin meet\n"
        "Join our Telegram channel for the latest updates\n"
        "By Anna Petrova\n"
        "BEIJING, Nov 12 (Eastwire) — Chinese President Xi Jinping and Russian President Vladimir Putin "
        "agreed on Thursday to expand energy supplies.\n"
        "Chinese President Xi Jinping and Russian President Vladimir Putin agreed on Thursday, "
        "officials said.\n"
        "The two leaders signed a joint statement."
    )
    assert lead(text, title="Xi and Putin meet") == (
        "Chinese President Xi Jinping and Russian President Vladimir Putin agreed on Thursday to expand "
        "energy supplies. The two leaders signed a joint statement."  # the repeated first sentence skipped
    )
    photo_credit = "Photo: Reuters / Maxim Shemetov, a long caption that the site repeats everywhere"
    assert lead(f"{photo_credit}\nThe talks lasted four hours.", furniture=[photo_credit]) == (
        "The talks lasted four hours."
    )
    long = lead("word " * 200)
    assert len(long) <= SUMMARY_CHARS and long.endswith("…") and not long.endswith(" …")
    assert shorten("short enough", 40) == "short enough"


def test_highlights_fold_case_and_accents_and_read_prefixes_phrases_and_cjk():
    text = "PUTIN met Xi Jinping; Putina and Zürich, 习近平会见普京. Xi'an is a city."
    assert marked(text, ["putin*", '"xi jinping"', "zurich", "习近平"]) == [
        "PUTIN",
        "Xi Jinping",
        "Putina",
        "Zürich",
        "习近平",
    ]
    assert marked(text, ["xi"]) == ["Xi"]  # not "Xi'an"
    assert marked(text, ["title:putin"]) == ["PUTIN"]
    assert marked("Путин и Си Цзиньпин", ["путин*", '"си цзиньпин"']) == ["Путин", "Си Цзиньпин"]
    assert unmark("… «Xi» met «Putin» in <b>Moscow</b>") == (
        "… Xi met Putin in <b>Moscow</b>",
        [(2, 4), (9, 14)],
    )


def test_real_pages_give_leads_without_chrome(storage, site):
    """The demo outlets (a content farm wraps its reposts in calls to action) and the Kremlin pages of the
    corpus, through the stream: every summary is the article's own first sentences."""
    corpus_path("articles", "kremlin")
    site.put_tree(SITE, replace={PLACEHOLDER: site.base_url.encode()})
    serve_kremlin(site)
    now = datetime.now(UTC)
    storage.sync_feeds(
        [
            FeedConfig(name="dailyhub", url=site.url("/dailyhub/feed.xml")),
            FeedConfig(name="eastwire", url=site.url("/eastwire/feed.xml")),
            FeedConfig(name="selection", url=site.url("/selection.rss")),
        ],
        now,
    )
    storage.add_topic("xi-putin", DEMO_QUERY, DEMO_MIN_SCORE, now)
    sub = SubscriptionConfig(
        name="s", recipients=["a@example.org"], topics=["xi-putin"], exclude_reposts_older_than=None
    )
    storage.sync_subscriptions([sub], now - timedelta(days=1))
    run_pipeline(storage, lambda: now)
    digest = prepare_digest(storage, sub, now=now + timedelta(minutes=1))
    stories = [s for section in digest.sections for s in section.stories]
    assert len(stories) >= 12
    for story in stories:
        assert 60 <= len(story.summary) <= SUMMARY_CHARS, story.summary
        assert "Telegram" not in story.summary and "(Eastwire) —" not in story.summary
        assert story.summary != story.hit.title
        assert highlights(story.summary, story.hit.matched), story.summary  # it says why it matched
    repost = next(s for s in stories if s.hit.source == "Daily Hub")
    assert repost.summary.startswith(
        "Chinese President Xi Jinping and Russian President Vladimir Putin held talks"
    )
