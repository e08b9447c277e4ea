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
