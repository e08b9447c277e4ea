from pathlib import Path

import pytest

from monitor.config import load_config, load_settings, parse_duration
from monitor.errors import ConfigError

GOOD = """\
feeds:
  - name: bbc-world
    url: https://feeds.bbci.co.uk/news/world/rss.xml
    interval: 15m
    tags: [world]
subscriptions:
  - name: morning
    recipients: [me@example.org]
    topics: [xi-putin]
    time: "07:00"
    timezone: Europe/Berlin
    min_score: 0.3
network:
  allow_private: [127.0.0.0/8]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(text)
    return path


def test_valid_file_loads(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    assert config.feeds[0].interval.total_seconds() == 900
    assert config.subscriptions[0].zone.key == "Europe/Berlin"
    assert str(config.network.allow_private[0]) == "127.0.0.0/8"


def test_shipped_feeds_yaml_is_valid():
    config = load_config(Path(__file__).resolve().parents[1] / "feeds.yaml")
    assert len(config.feeds) >= 5
    assert all(f.url.startswith("https://") for f in config.feeds)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("interval: 15m", "interval: soon", "line 4, feeds[0].interval: invalid duration 'soon'"),
        ("url: https://feeds", "url: ftp://feeds", "line 3, feeds[0].url: not an http(s) URL"),
        (
            "timezone: Europe/Berlin",
            "timezone: Mars/Olympus",
            "line 11, subscriptions[0].timezone: unknown time zone",
        ),
        ('time: "07:00"', 'time: "7 am"', "line 10, subscriptions[0].time: invalid time '7 am'"),
        ("[me@example.org]", "[not-an-address]", "line 8, subscriptions[0].recipients: not an email address"),
        ("min_score: 0.3", "min_score: 3", "line 12, subscriptions[0].min_score"),
        ("allow_private: [127.0.0.0/8]", "allow_private: [localhost]", "line 14, network.allow_private"),
        ("    tags: [world]", "    tags: [world]\n    colour: blue", "line 6, feeds[0].colour: unknown key"),
        ("interval: 15m", "interval: 30s", "line 4, feeds[0].interval: must be between"),
        (
            "interval: 15m",
            "min_interval: 2h\n    max_interval: 1h",
            "line 2, feeds[0]: min_interval is longer than max_interval",
        ),
    ],
)
def test_a_wrong_line_gets_one_message_naming_key_and_line(tmp_path, old, new, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, GOOD.replace(old, new)))
    assert expected in str(caught.value)
    assert str(caught.value).startswith(str(tmp_path / "feeds.yaml"))


def test_duplicate_names_and_broken_yaml(tmp_path):
    twice = GOOD.replace(
        "subscriptions:", "  - name: bbc-world\n    url: https://example.org/rss\nsubscriptions:"
    )
    with pytest.raises(ConfigError, match="'bbc-world' is used twice"):
        load_config(write(tmp_path, twice))
    with pytest.raises(ConfigError, match=r"line 3: not valid YAML"):
        load_config(write(tmp_path, "feeds:\n  - name: [x\n  url: y\n"))
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.yaml")


def test_unquoted_time_is_read_as_a_time(tmp_path):
    config = load_config(write(tmp_path, GOOD.replace('time: "07:00"', "time: 07:30")))
    assert config.subscriptions[0].time.hour == 7 and config.subscriptions[0].time.minute == 30


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("MONITOR_SMTP_HOST", "mail.example.org")
    monkeypatch.setenv("MONITOR_SMTP_SENDER", "monitor@example.org")
    monkeypatch.setenv("MONITOR_SMTP_SECURITY", "tls")
    settings = load_settings(database_url="sqlite:///x.db")
    assert settings.smtp_enabled and settings.smtp_port_or_default == 465
    assert settings.database_url == "sqlite:///x.db"
    monkeypatch.setenv("MONITOR_SMTP_SECURITY", "maybe")
    with pytest.raises(ConfigError, match="MONITOR_SMTP_SECURITY"):
        load_settings()


def test_parse_duration():
    assert parse_duration("90s").total_seconds() == 90
    assert parse_duration("7d").days == 7
    with pytest.raises(ValueError):
        parse_duration("7 weeks")


SCHEDULES = """\
subscriptions:
  - name: weekly
    recipients: [me@example.org]
    topics: [xi-putin, energy]
    schedule: weekly
    weekday: Friday
    time: "08:30"
    urgent_topics: [xi-putin]
    alerts_per_hour: 2
  - name: desk
    topics: [xi-putin]
    schedule: as-it-happens
    webhook:
      url_env: MONITOR_DESK_HOOK
      secret_env: MONITOR_DESK_SECRET
"""


def test_schedules_alerts_and_webhooks(tmp_path):
    weekly, desk = load_config(write(tmp_path, SCHEDULES)).subscriptions
    assert (weekly.schedule, weekly.weekday_number, weekly.time.hour) == ("weekly", 4, 8)
    assert weekly.alert_topics == ["xi-putin"] and weekly.digest_topics == ["energy"]
    assert desk.alert_topics == ["xi-putin"] and desk.digest_topics == [] and not desk.periodic
    assert desk.recipients == [] and desk.webhook is not None and desk.webhook.url_env == "MONITOR_DESK_HOOK"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("weekday: Friday", "weekday: Fryday", "line 6, subscriptions[0].weekday: invalid weekday 'Fryday'"),
        ("schedule: weekly", "schedule: hourly", "line 5, subscriptions[0].schedule: Input should be"),
        ("schedule: weekly", "schedule: daily", "line 2, subscriptions[0]: weekday is for schedule: weekly"),
        (
            "[xi-putin]\n    alerts",
            "[war]\n    alerts",
            "subscriptions[0]: urgent_topics must be among its topics: war",
        ),
        ("alerts_per_hour: 2", "alerts_per_hour: 0", "line 9, subscriptions[0].alerts_per_hour"),
        (
            "    webhook:\n      url_env: MONITOR_DESK_HOOK\n      secret_env: MONITOR_DESK_SECRET\n",
            "",
            "line 10, subscriptions[1]: needs recipients, a webhook",
        ),
        (
            "url_env: MONITOR_DESK_HOOK",
            "url: ftp://x",
            "line 14, subscriptions[1].webhook.url: not an http(s) URL",
        ),
        (
            "url_env: MONITOR_DESK_HOOK",
            "url_env: not a name",
            "subscriptions[1].webhook.url_env: not an environment",
        ),
        (
            "url_env: MONITOR_DESK_HOOK",
            "timeout: 5",
            "line 13, subscriptions[1].webhook: give either url or url_env",
        ),
        (
            "schedule: as-it-happens",
            "schedule: as-it-happens\n    urgent_topics: [xi-putin]",
            "leave out urgent_topics",
        ),
    ],
)
def test_schedule_mistakes_name_their_line(tmp_path, old, new, expected):
    assert old in SCHEDULES
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, SCHEDULES.replace(old, new)))
    assert expected in str(caught.value)


def test_a_webhook_url_from_the_environment_must_be_set(monkeypatch):
    from monitor.config import WebhookConfig

    hook = WebhookConfig(url_env="MONITOR_DESK_HOOK", secret_env="MONITOR_DESK_SECRET")
    monkeypatch.delenv("MONITOR_DESK_HOOK", raising=False)
    with pytest.raises(ConfigError, match="MONITOR_DESK_HOOK must hold the webhook's http"):
        hook.target()
    monkeypatch.setenv("MONITOR_DESK_HOOK", "https://chat.example.org/hooks/abc")
    assert hook.target() == "https://chat.example.org/hooks/abc"
    with pytest.raises(ConfigError, match="MONITOR_DESK_SECRET is not set"):
        hook.secret()


def test_unsubscribe_url_setting(monkeypatch):
    monkeypatch.setenv("MONITOR_UNSUBSCRIBE_URL", "https://example.org/unsubscribe/{subscription}")
    assert load_settings().unsubscribe_url == "https://example.org/unsubscribe/{subscription}"
    monkeypatch.setenv("MONITOR_UNSUBSCRIBE_URL", "ftp://x")
    with pytest.raises(ConfigError, match=r"MONITOR_UNSUBSCRIBE_URL.*not an http"):
        load_settings()


def test_the_readme_example_is_a_valid_feeds_yaml(tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = load_config(write(tmp_path, example))
    assert [s.schedule for s in config.subscriptions] == ["daily", "weekly"]
    assert config.subscriptions[1].webhook is not None
