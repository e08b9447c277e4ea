"""A digest as a plain JSON document: one shape for every channel.

The email's HTML and text parts, the Atom feed, the JSON export and the webhook body are all made from
this document, and it is stored with the digest, so a digest sent last week is shown in the feed exactly
as it was sent. The shape is versioned and documented in docs/digest-format.md; a change that breaks a
reader raises ``DOCUMENT_VERSION``.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from monitor.digest.build import Digest, StoryEntry, StoryUpdate
from monitor.digest.summary import highlights, unmark
from monitor.topics import Clause, summarize

DOCUMENT_VERSION = 1
#: digest ids are UUIDs derived from this namespace and the Message-ID, so one digest has one id everywhere
_NAMESPACE = uuid.UUID("6f1d2a0e-4b5c-5d7e-8f90-a1b2c3d4e5f6")


def digest_id(message_id: str) -> str:
    """The digest's id in the feed and the export: a URN derived from its Message-ID."""
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, message_id)}"


def iso(value: datetime | None) -> str | None:
    """A UTC timestamp as ISO 8601 with a Z."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def why(explanation: list[dict[str, Any]], matched: list[str]) -> str:
    """One line of why a hit matched: each term and where it occurred."""
    if not explanation:  # hits stored before explanations were kept
        return "matched " + ", ".join(matched)
    return summarize(Clause(**clause) for clause in explanation)


def to_document(digest: Digest, *, id: str = "") -> dict[str, Any]:
    """The digest as the documented JSON shape (see docs/digest-format.md)."""
    return {
        "version": DOCUMENT_VERSION,
        "id": id,
        "kind": digest.kind,
        "subscription": digest.subscription,
        "schedule": digest.schedule,
        "topic": digest.topic,
        "subject": digest.subject,
        "timezone": digest.zone.key,
        "window": {
            "start": iso(digest.window_start),
            "end": iso(digest.window_end),
            "label": digest.window,
        },
        "counts": {"stories": digest.count, "topics": digest.topic_counts},
        "topics": [
            {
                "name": section.topic,
                "stories": [_story(entry) for entry in section.stories],
                "more_sources": [_update(update) for update in section.updates],
            }
            for section in digest.sections
        ],
    }


def _story(entry: StoryEntry) -> dict[str, Any]:
    hit = entry.hit
    snippet, snippet_marks = unmark(hit.snippet)
    return {
        "story_id": hit.story_id,
        "hit_ids": entry.hit_ids,
        "title": hit.title,
        "url": hit.url,
        "source": hit.source,
        "published": iso(hit.published),
        "score": round(hit.score, 4),
        "summary": entry.summary,
        "summary_highlights": [list(s) for s in highlights(entry.summary, hit.matched)],
        "snippet": snippet,
        "snippet_highlights": [list(s) for s in snippet_marks],
        "matched": list(hit.matched),
        "why": why(hit.explanation, hit.matched),
        "text_source": hit.text_source,
        "republished_from": iso(hit.republished_from),
        "also_reported_by": [
            {"source": c.source, "title": c.title, "url": c.url, "published": iso(c.published)}
            for c in entry.also
        ],
    }


def _update(update: StoryUpdate) -> dict[str, Any]:
    return {"title": update.title, "url": update.url, "sources": update.sources}


def dumps(document: dict[str, Any]) -> str:
    """The document as compact UTF-8 JSON text, keys in a fixed order."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def loads(text: str) -> dict[str, Any]:
    found = json.loads(text)
    assert isinstance(found, dict)
    return found
