"""The command line, run as a user runs it, on temporary databases and a loopback site."""

import json
import logging
import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path
from unittest.mock import patch

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from monitor.cli import app
from monitor.demo import DEMO_QUERY, PLACEHOLDER, SITE

from conftest import corpus_path, free_port

CONFIG = """\
feeds:
  - name: eastwire
    url: {base}/eastwire/feed.xml
  - name: harbourpost
    url: {base}/harbourpost/atom.xml
subscriptions:
  - name: morning
    recipients: [me@example.org]
    topics: [xi-putin, not-yet-added]
    time: "07:00"
    timezone: Europe/Berlin
network:
  allow_private: [127.0.0.0/8]
  per_host_spacing: 0
"""


@pytest.fixture
def cli(db_url, site, tmp_path, monkeypatch):
    """Invoke `monitor ...` with a fresh database and a feeds.yaml of the demo outlets on loopback."""
    site.put_tree(SITE, replace={PLACEHOLDER: site.base_url.encode()})
    config = tmp_path / "feeds.yaml"
    config.write_text(CONFIG.format(base=site.base_url))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None):
        # the CLI points logging at the stream CliRunner captures, then closes: put the handlers back, or
        # servers on other threads (aiosmtpd) log into the closed stream later
        root = logging.getLogger()
        with patch.object(root, "handlers", root.handlers[:]), patch.object(root, "level", root.level):
            return _invoke(*args, env=env)

    def _invoke(*args: str, env: dict[str, str] | None = None):
        return runner.invoke(
            app,
            list(args),
            env={
                "MONITOR_DATABASE_URL": db_url,
                "MONITOR_CONFIG": str(config),
                "COLUMNS": "200",
                **(env or {}),
            },
        )

    invoke.env = {"MONITOR_DATABASE_URL": db_url, "MONITOR_CONFIG": str(config)}  # type: ignore[attr-defined]
    return invoke


def test_every_command_has_help_with_an_example():
    def walk(command, path):
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield path, command

    commands = list(walk(get_command(app), []))
    assert {" ".join(path) for path, _ in commands} >= {
        "demo",
        "run",
        "poll",
        "db upgrade",
        "db current",
        "feeds list",
        "topics add",
        "topics list",
        "topics show",
        "topics remove",
        "topics test",
        "hits list",
        "digest preview",
        "digest send",
        "digest export",
    }
    for path, command in commands:
        assert command.help and "Example: monitor" in command.help, path


def test_a_user_session(cli, tmp_path):
    assert cli("db", "current").output.endswith("(head)\n")

    bad = cli("topics", "add", "broken", '"xi jinping AND putin')
    assert bad.exit_code == 1 and "column 1" in bad.output and "Traceback" not in bad.output
    added = cli("topics", "add", "xi-putin", DEMO_QUERY, "--min-score", "0.4")
    assert added.exit_code == 0, added.output
    assert cli("topics", "add", "xi-putin", "xi").exit_code == 1

    polled = cli("poll")
    assert polled.exit_code == 0, polled.output
    assert "2 feeds polled (2 updated" in polled.output and "3 hits" in polled.output
    assert "warning: subscription 'morning' names topic 'not-yet-added'" in polled.output  # not an error

    feeds = json.loads(cli("feeds", "list", "--json").stdout)
    assert {f["name"] for f in feeds} == {"eastwire", "harbourpost"}
    assert all(f["last_error"] is None and f["articles"] == 5 for f in feeds)

    hits = json.loads(cli("hits", "list", "--json", "--since", "1h").stdout)
    assert len(hits) == 3
    for hit in hits:
        assert {"topic", "url", "title", "source", "published", "score", "matched"} <= set(hit)
        assert hit["topic"] == "xi-putin" and hit["published"].endswith("Z") and hit["matched"]
    assert json.loads(cli("hits", "list", "--json", "--topic", "xi-putin").stdout) == hits
    assert cli("hits", "list", "--topic", "nope").exit_code == 1

    topics = json.loads(cli("topics", "list", "--json").stdout)
    assert [(t["name"], t["hits"]) for t in topics] == [("xi-putin", 3)]
    shown = cli("topics", "show", "xi-putin")
    assert "Xi and Putin" in shown.output and "terms:" in shown.output

    again = cli("poll", "--feed", "eastwire")
    assert "1 feeds polled (0 updated, 1 not modified" in again.output

    preview = cli("digest", "preview", "--out", str(tmp_path / "d.html"))
    assert preview.exit_code == 0 and "3 new stories (xi-putin 3)" in preview.output
    assert "next digest" in preview.output and "(daily)" in preview.output
    assert "Putin" in (tmp_path / "d.html").read_text()
    dry = cli("digest", "send", "--dry-run")
    assert dry.exit_code == 0 and "morning: dry-run" in dry.output

    removed = cli("topics", "remove", "xi-putin")
    assert removed.exit_code == 0 and cli("hits", "list", "--json").stdout.strip() == "[]"


def test_topics_test_on_text_file_and_url(cli, site):
    query = '"xi jinping" AND putin*'
    yes = cli("topics", "test", query, "--text", "Vladimir Putin met Xi Jinping in Beijing.")
    assert yes.exit_code == 0 and "match" in yes.output and '"xi jinping"' in yes.output
    no = cli("topics", "test", query, "--text", "Putin visited Xi'an.")
    assert no.exit_code == 1 and "no match" in no.output
    page = corpus_path("articles", "kremlin", "html", "63621.html")
    from_file = cli("topics", "test", query, "--file", str(page))
    assert from_file.exit_code == 0 and "Telephone conversation" in from_file.output
    url = site.url("/harbourpost/news/2026/11/xi-putin-pipeline-phone-call.html")
    from_url = cli("topics", "test", query, "--url", url)
    assert from_url.exit_code == 0 and "«" in from_url.output
    assert cli("topics", "test", query).exit_code == 2  # one of --url/--file/--text is required


def test_digest_send_over_smtp(cli, smtp):
    sink, port = smtp
    cli("topics", "add", "xi-putin", DEMO_QUERY)
    cli("poll")
    env = {
        "MONITOR_SMTP_HOST": "127.0.0.1",
        "MONITOR_SMTP_PORT": str(port),
        "MONITOR_SMTP_SENDER": "monitor@example.org",
        "MONITOR_SMTP_SECURITY": "none",
    }
    sent = cli("digest", "send", "--subscription", "morning", env=env)
    assert sent.exit_code == 0 and "morning: sent" in sent.output and len(sink.messages) == 1
    assert "morning: empty" in cli("digest", "send", env=env).output and len(sink.messages) == 1
    unknown = cli("digest", "send", "--subscription", "evening", env=env)
    assert unknown.exit_code == 1 and "no subscription named 'evening'" in unknown.output


def test_status_shows_failing_feeds_stuck_articles_and_undelivered_digests(cli, site):
    cli("topics", "add", "xi-putin", DEMO_QUERY)
    site.put("/harbourpost/atom.xml", "overloaded", "text/plain", status=503)
    assert cli("poll").exit_code == 0
    secret = "hunter2-do-not-log"
    env = {
        "MONITOR_SMTP_HOST": "127.0.0.1",
        "MONITOR_SMTP_PORT": str(free_port()),  # nobody listens: the SMTP server is down
        "MONITOR_SMTP_SENDER": "monitor@example.org",
        "MONITOR_SMTP_SECURITY": "none",
        "MONITOR_SMTP_USERNAME": "monitor",
        "MONITOR_SMTP_PASSWORD": secret,
    }
    failed = cli("-v", "digest", "send", env=env)
    assert failed.exit_code == 1 and "Connection refused" in failed.output

    shown = cli("status", env=env)
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert "eastwire │ ok" in text and "harbourpost │ failing since" in text and "HTTP 503" in text
    assert "Articles: 5 matched" in text
    assert "failing (1×)" in text and "Connection refused" in text and "retry at" in text
    assert "Database:" in text and "MB" in text

    report = json.loads(cli("status", "--json", env=env).stdout)
    feeds = {f["name"]: f for f in report["feeds"]}
    assert feeds["eastwire"]["failing_since"] is None and feeds["harbourpost"]["consecutive_errors"] == 1
    assert report["articles"] == {"matched": 5} and report["unfinished"] == []
    [morning] = report["subscriptions"]
    assert morning["last"]["status"] == "sending" and morning["last"]["attempts"] == 1
    assert morning["last"]["next_attempt_at"] < morning["next_digest_at"]
    assert report["database_bytes"] > 0
    for output in (failed.output, shown.output, json.dumps(report)):
        assert secret not in output


def test_feeds_add_remove_discover_and_opml(cli, site, tmp_path):
    config = tmp_path / "feeds.yaml"
    found = cli("feeds", "discover", site.url("/eastwire/2026/11/wildfire-evacuations.html"))
    assert found.exit_code == 0 and site.url("/eastwire/feed.xml") in found.output

    page = cli("feeds", "add", site.url("/eastwire/2026/11/wildfire-evacuations.html"))
    assert page.exit_code == 1 and site.url("/eastwire/feed.xml") in page.output  # it names the real feed
    added = cli("feeds", "add", site.url("/dailyhub/feed.xml"), "--name", "dailyhub", "--tag", "farm")
    assert added.exit_code == 0, added.output
    assert "  - name: dailyhub\n" in config.read_text() and "tags: [farm]" in config.read_text()
    assert "dailyhub" in cli("feeds", "list").output

    opml = cli("feeds", "export-opml").stdout
    assert opml.count('<outline type="rss"') == 3 and site.url("/dailyhub/feed.xml") in opml
    assert cli("feeds", "remove", "dailyhub").exit_code == 0 and "dailyhub" not in config.read_text()
    (tmp_path / "list.opml").write_text(opml)
    imported = cli("feeds", "import-opml", str(tmp_path / "list.opml"))
    assert "1 feeds added, 2 skipped" in imported.output and "name: dailyhub" in config.read_text()


def test_clear_errors_instead_of_tracebacks(cli, tmp_path):
    (tmp_path / "feeds.yaml").write_text("feeds:\n  - name: x\n    url: gopher://x\n")
    bad_config = cli("poll")
    assert bad_config.exit_code == 1 and "line 3, feeds[0].url: not an http(s) URL" in bad_config.output
    empty_db = f"sqlite:///{tmp_path / 'new.db'}"
    shipped = str(Path(__file__).resolve().parents[1] / "feeds.yaml")
    refused = cli("run", env={"MONITOR_DATABASE_URL": empty_db, "MONITOR_CONFIG": shipped})
    assert refused.exit_code == 1 and "run `monitor db upgrade` first" in refused.output
    upgraded = cli("db", "upgrade", env={"MONITOR_DATABASE_URL": empty_db})
    assert upgraded.exit_code == 0 and "(head)" in upgraded.output
    unreachable = cli(
        "feeds", "list", env={"MONITOR_DATABASE_URL": "postgresql://nobody:s3cret@127.0.0.1:1/x"}
    )
    assert unreachable.exit_code == 1 and "cannot reach database" in unreachable.output
    assert "s3cret" not in unreachable.output


def test_python_dash_m_works():
    result = subprocess.run(
        [sys.executable, "-m", "monitor", "--help"], capture_output=True, text=True, check=True
    )
    assert "topics" in result.stdout and "digest" in result.stdout


def test_demo_runs_offline(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["demo", "--workdir", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "5 hits" in result.output and "Digest written to" in result.output
    digest = Path(tmp_path / "demo" / "digest.html").read_text()
    # the farm's repost of the summit is one story with the wire's; its re-run of a 2025 story is left out
    assert digest.count('class="story"') == 3 and "Beijing" in digest and "Moscow talks" not in digest
    assert "Also reported by" in digest and "Daily Hub" in digest

    env = {"MONITOR_DATABASE_URL": f"sqlite:///{tmp_path / 'demo' / 'demo.db'}", "COLUMNS": "200"}
    stories = json.loads(runner.invoke(app, ["stories", "list", "--json"], env=env).stdout)
    assert len(stories) == 4  # the three in the digest, and the stale repost
    summit = next(s for s in stories if len(s["copies"]) == 2)
    assert [c["source"] for c in summit["copies"]] == ["Eastwire News", "Daily Hub"]
    assert "utm_" not in summit["copies"][1]["url"]
    [stale] = [s for s in stories if s["copies"][0]["republished_from"]]
    assert stale["first_published"].startswith("2025-05-08")
    shown = runner.invoke(app, ["stories", "show", str(summit["id"])], env=env)
    assert shown.exit_code == 0 and "Daily Hub" in shown.output and "shown" in shown.output
    assert runner.invoke(app, ["stories", "show", "9999"], env=env).exit_code == 1


def test_aliases_edit_backtest_and_hit_explanations(cli):
    assert cli("aliases", "add", "xi", 'xi OR "xi jinping" OR 习近平').exit_code == 0
    assert cli("aliases", "add", "putin", "putin* OR путин*").exit_code == 0
    assert (
        cli("topics", "add", "xi-putin", "@xi AND @putin", "--min-score", "0.4", "--lang", "en").exit_code
        == 0
    )
    unknown = cli("topics", "add", "bad", "@ix AND putin")
    assert unknown.exit_code == 1 and "ix" in unknown.output and "column" in unknown.output
    assert json.loads(cli("aliases", "list", "--json").stdout) == [
        {"name": "putin", "query": "putin* OR путин*"},
        {"name": "xi", "query": 'xi OR "xi jinping" OR 习近平'},
    ]
    assert "used by: xi-putin" in cli("aliases", "show", "xi").output
    refused = cli("aliases", "remove", "xi")
    assert refused.exit_code == 1 and "used by topic(s) xi-putin" in refused.output

    cli("poll")
    hits = json.loads(cli("hits", "list", "--json").stdout)
    assert len(hits) == 3 and all(h["explanation"] for h in hits)
    shown = cli("hits", "show", str(hits[0]["id"]))
    assert shown.exit_code == 0 and "version 1" in shown.output and "in title" in shown.output
    assert cli("hits", "show", "999999").exit_code == 1

    changed = cli("aliases", "add", "putin", "putin* OR путин* OR modi")
    assert "topics changed with it: xi-putin" in changed.output
    edited = cli("topics", "edit", "xi-putin", "@putin AND modi")
    assert edited.exit_code == 0 and "version 3" in edited.output
    report = cli("topics", "backtest", "xi-putin")
    assert report.exit_code == 0 and "1 would be added, 3 would be removed" in report.output
    assert len(json.loads(cli("hits", "list", "--json").stdout)) == 3
    applied = json.loads(cli("topics", "backtest", "xi-putin", "--apply", "--json").stdout)
    assert applied["applied"] and len(applied["added"]) == 1 and len(applied["removed"]) == 3
    [hit] = json.loads(cli("hits", "list", "--json").stdout)
    assert "Modi" in hit["title"]
    assert "lang en" in cli("topics", "list").output


def test_topics_test_shows_the_explanation_without_a_database(cli, tmp_path):
    result = cli(
        "topics",
        "test",
        '"xi jinping" AND putin*',
        "--text",
        "Xi Jinping met Vladimir Putin. Putin and Xi Jinping spoke again.",
        env={"MONITOR_DATABASE_URL": f"sqlite:///{tmp_path / 'none.db'}"},
    )
    assert result.exit_code == 0, result.output
    assert '"xi jinping"' in result.output and "in body" in result.output


def test_topics_export_and_import(cli, tmp_path):
    cli("aliases", "add", "xi", 'xi OR "xi jinping"')
    cli("topics", "add", "xi-putin", "@xi AND putin*")
    exported = cli("topics", "export", "--out", str(tmp_path / "watchlist.yaml"))
    assert exported.exit_code == 0 and "@xi AND putin*" in (tmp_path / "watchlist.yaml").read_text()
    assert cli("topics", "remove", "xi-putin").exit_code == 0
    imported = cli("topics", "import", str(tmp_path / "watchlist.yaml"))
    assert imported.exit_code == 0 and "1 created, 0 updated, 1 unchanged" in imported.output
    assert "xi-putin" in cli("topics", "list").output


def test_article_text_is_printed_as_text_not_terminal_markup(cli, site):
    title = "[video] Xi Jinping and Putin [/] meet [bold]in Moscow"
    body = "Chinese President Xi Jinping met Russian President Vladimir Putin in Moscow for talks. " * 5
    site.put(
        "/harbourpost/story.html",
        f"<html><head><title>{title}</title></head><body><article><h1>{title}"
        f"</h1><p>{body}</p></article></body></html>",
        "text/html",
    )
    site.put(
        "/harbourpost/atom.xml",
        f"<rss version='2.0'><channel><title>H</title><item><title>{title}</title>"
        f"<link>{site.url('/harbourpost/story.html')}</link><guid>s1</guid></item></channel></rss>",
        "application/rss+xml",
    )
    cli("topics", "add", "xi-putin", DEMO_QUERY)
    assert cli("poll").exit_code == 0
    listed = " ".join(cli("hits", "list").output.split())
    assert "[video]" in listed and "[/]" in listed
    found = cli("search", "Moscow")
    assert found.exit_code == 0 and title in found.output, found.output
    [hit] = [h for h in json.loads(cli("hits", "list", "--json").stdout) if h["title"] == title]
    assert title in cli("hits", "show", str(hit["id"])).output


def test_prune_dry_run_then_for_real(cli):
    cli("topics", "add", "xi-putin", DEMO_QUERY)
    cli("poll")
    assert "would remove: 0 articles" in cli("prune", "--older-than", "90d", "--dry-run").output
    dry = cli("prune", "--older-than", "0s", "--dry-run")
    assert dry.exit_code == 0 and "would remove: 7 articles" in dry.output
    assert "3 old articles kept for undelivered digests" in dry.output  # the morning digest's hits
    assert "removed: 7 articles" in cli("prune", "--older-than", "0s").output
    assert json.loads(cli("status", "--json").stdout)["articles"] == {"matched": 3, "pruned": 7}
    bad = cli("prune", "--older-than", "soon")
    assert bad.exit_code == 1 and "invalid duration 'soon'" in bad.output


def test_json_logs_have_fixed_keys(cli):
    result = cli("--log-format", "json", "-v", "poll")
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    polled = [e for e in events if e["message"] == "feed polled"]
    assert {e["feed"] for e in polled} == {"eastwire", "harbourpost"}
    assert all({"time", "level", "logger", "message", "status"} <= e.keys() for e in polled)
    assert all(e["time"].endswith("+00:00") for e in events)


ALERTING = """\
feeds:
  - name: eastwire
    url: {base}/eastwire/feed.xml
  - name: harbourpost
    url: {base}/harbourpost/atom.xml
subscriptions:
  - name: weekly
    recipients: [me@example.org]
    topics: [xi-putin]
    schedule: weekly
    weekday: friday
    time: "08:00"
    timezone: Europe/Berlin
  - name: desk
    recipients: [desk@example.org]
    topics: [xi-putin]
    schedule: as-it-happens
    alerts_per_hour: 1
network:
  allow_private: [127.0.0.0/8]
  per_host_spacing: 0
"""


def test_digest_preview_open_send_alerts_and_export(cli, site, smtp, tmp_path):
    import feedparser

    sink, port = smtp
    (tmp_path / "feeds.yaml").write_text(ALERTING.format(base=site.base_url))
    cli("topics", "add", "xi-putin", DEMO_QUERY)
    assert cli("poll").exit_code == 0
    env = {
        "MONITOR_SMTP_HOST": "127.0.0.1",
        "MONITOR_SMTP_PORT": str(port),
        "MONITOR_SMTP_SENDER": "monitor@example.org",
        "MONITOR_SMTP_SECURITY": "none",
    }
    # --open hands each file to the browser the environment names (a real process, as a desktop would)
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    browser.chmod(0o755)
    preview = subprocess.run(
        [sys.executable, "-m", "monitor", "digest", "preview", "--out", str(tmp_path / "p.html"), "--open"],
        capture_output=True,
        text=True,
        env={**os.environ, **cli.env, "BROWSER": str(browser)},
        cwd=tmp_path,
        timeout=120,
    )
    assert preview.returncode == 0, preview.stderr
    out = " ".join(preview.stdout.split())
    next_weekly = re.search(r"weekly: next digest (\d{4}-\d\d-\d\d) 08:00 CES?T \(weekly\)", out)
    assert next_weekly and date.fromisoformat(next_weekly.group(1)).strftime("%a") == "Fri", out
    assert "3 new stories (xi-putin 3)" in out and "• Xi and Putin" in out
    assert (
        "desk: as it happens (no periodic digest)" in out and "alert xi-putin: 3 new stories waiting" in out
    )
    files = [tmp_path / "p-weekly.html", tmp_path / "p-desk.html"]
    assert all(f.exists() for f in files)
    assert opened.read_text().split() == [f.as_uri() for f in files]

    sent = cli("digest", "send", "--subscription", "desk", env=env)
    assert sent.exit_code == 0 and "desk: alert sent: Alert, xi-putin: 3 new stories" in sent.output
    assert len(sink.messages) == 1
    status = " ".join(cli("status", env=env).output.split())
    assert "as it happens (alerts: xi-putin)" in status and "; alerts" not in status

    atom = cli("digest", "export", "--subscription", "desk", "--format", "atom")
    assert atom.exit_code == 0
    parsed = feedparser.parse(atom.stdout)
    assert not parsed.bozo and [e.title for e in parsed.entries] == ["Alert, xi-putin: 3 new stories"]
    exported = json.loads(cli("digest", "export", "--subscription", "desk", "--format", "json").stdout)
    assert exported["digests"][0]["counts"]["stories"] == 3
    assert (
        json.loads(cli("digest", "export", "--subscription", "weekly", "--format", "json").stdout)["digests"]
        == []
    )
    unknown = cli("digest", "export", "--subscription", "evening")
    assert unknown.exit_code == 1 and "no subscription named 'evening'" in unknown.output
