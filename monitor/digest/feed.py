"""A subscription's digests as an Atom feed and as JSON: the same stored documents the emails were made
from, newest first."""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from monitor.digest.document import DOCUMENT_VERSION, iso, loads
from monitor.digest.render import render_fragment
from monitor.storage import PublishedDigest

ATOM_NS = "http://www.w3.org/2005/Atom"
ATOM_CONTENT_TYPE = "application/atom+xml; charset=utf-8"
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
#: how many of the latest digests and alerts a feed or an export lists by default
DEFAULT_ENTRIES = 20
_FEED_NAMESPACE = uuid.UUID("0e4f8f1c-3a8b-5c2e-9d41-7b6a5c4d3e2f")


def feed_id(subscription: str) -> str:
    """The feed's stable id: the same for a subscription on every run and machine."""
    return f"urn:uuid:{uuid.uuid5(_FEED_NAMESPACE, 'subscription:' + subscription)}"


def atom_feed(
    subscription: str,
    digests: Sequence[PublishedDigest],
    *,
    now: datetime,
    self_url: str | None = None,
) -> str:
    """An Atom 1.0 document: one entry per digest or alert, its content the digest as HTML."""
    ET.register_namespace("", ATOM_NS)

    def add(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        element = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
        element.text = text
        return element

    root = ET.Element(f"{{{ATOM_NS}}}feed")
    add(root, "id", feed_id(subscription))
    add(root, "title", f"monitor: {subscription}")
    add(root, "subtitle", f"The digests and alerts of the subscription {subscription!r}")
    newest = max((d.created_at for d in digests), default=now)
    add(root, "updated", iso(newest))
    author = add(root, "author")
    add(author, "name", "monitor")
    add(root, "generator", "monitor")
    if self_url:
        add(root, "link", rel="self", type="application/atom+xml", href=self_url)
    for digest in digests:
        document = loads(digest.document)
        entry = add(root, "entry")
        add(entry, "id", document.get("id") or f"{feed_id(subscription)}:{digest.id}")
        add(entry, "title", document["subject"])
        add(entry, "updated", iso(digest.created_at))
        add(entry, "published", iso(digest.created_at))
        add(entry, "summary", _summary(document))
        for section in document["topics"]:
            if section["stories"]:
                add(entry, "category", term=section["name"])
        first = next((s for section in document["topics"] for s in section["stories"]), None)
        if first is not None:
            add(entry, "link", rel="related", href=first["url"])
        add(entry, "content", render_fragment(document), type="html")
    body = ET.tostring(root, encoding="unicode", xml_declaration=False)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + body + "\n"


def _summary(document: dict[str, Any]) -> str:
    counts = document["counts"]
    topics = ", ".join(f"{name} {n}" for name, n in counts["topics"].items())
    noun = "story" if counts["stories"] == 1 else "stories"
    return (
        f"{counts['stories']} new {noun}"
        + (f" ({topics})" if topics else "")
        + f", {document['window']['label']}"
    )


def json_export(subscription: str, digests: Sequence[PublishedDigest], *, now: datetime) -> str:
    """The digests and alerts as one JSON object (shape in docs/digest-format.md), newest first."""
    return json.dumps(
        {
            "version": DOCUMENT_VERSION,
            "subscription": subscription,
            "generated_at": iso(now),
            "digests": [
                {**loads(d.document), "status": d.status, "created_at": iso(d.created_at)} for d in digests
            ],
        },
        ensure_ascii=False,
        indent=2,
    )
