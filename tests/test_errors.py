"""The exception tree: every error survives the trip back from a worker process."""

from __future__ import annotations

import pickle

import pytest

from monitor import errors

EXAMPLES = [
    errors.ConfigError("must be a duration", path="feeds.yaml", line=7, key="feeds[2].interval"),
    errors.StorageError("database error: disk I/O error"),
    errors.SchemaNotCurrentError("0006", "0007", "sqlite:///monitor.db"),
    errors.FetchError("https://f.example/rss", "timed out", kind="timeout"),
    errors.AddressNotAllowedError("http://10.0.0.1/", "10.0.0.1 is a private address"),
    errors.ResponseTooLargeError("https://f.example/big", "body is over the cap"),
    errors.HTTPStatusError("https://f.example/rss", 503, 120.0),
    errors.FeedParseError(
        "https://f.example/", "an HTML page", kind="html", linked_feeds=("https://f.example/rss",)
    ),
    errors.QueryError("putin AND (", 12, "a term or '('"),
    errors.NotFoundError("topic", "xi-putin"),
    errors.AlreadyExistsError("topic", "xi-putin"),
    errors.DeliveryError("morning", "SMTP smtp.example.org:587: connection refused"),
    errors.WorkerDiedError("extraction worker 4242 died (exit code -9)"),
]


def test_every_error_class_has_an_example():
    covered = {type(e) for e in EXAMPLES}
    every = {c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.MonitorError)}
    assert every - {errors.MonitorError} <= covered


@pytest.mark.parametrize("error", EXAMPLES, ids=lambda e: type(e).__name__)
def test_an_error_pickles_with_its_message_and_attributes(error):
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)
