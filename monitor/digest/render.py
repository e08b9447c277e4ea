"""Rendering a digest with Jinja2: HTML (all article-derived text escaped) and plain text."""

from __future__ import annotations

import re
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from monitor.digest.build import Digest, one_line
from monitor.topics import Clause, summarize

_MARKED = re.compile(r"«([^«»\n]{1,200})»")


def _highlight(snippet: str) -> Markup:
    """Escape a snippet, then turn the matcher's «term» marks into <mark> elements."""
    return Markup(_MARKED.sub(r"<mark>\1</mark>", str(escape(snippet))))


def _plain_marks(snippet: str) -> str:
    return _MARKED.sub(r"*\1*", snippet)


def _why(explanation: list[dict[str, Any]], matched: list[str]) -> str:
    """One line of why a hit matched: each term and where it occurred."""
    if not explanation:  # hits stored before explanations were kept
        return "matched " + ", ".join(matched)
    return summarize(Clause(**clause) for clause in explanation)


def _local(value: datetime | None, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%d %b %Y %H:%M %Z") if value else "date unknown"


def _local_date(value: datetime, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%d %b %Y")


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("monitor.digest", "templates"),
        autoescape=select_autoescape(["html.j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["highlight"] = _highlight
    env.filters["plain_marks"] = _plain_marks
    env.filters["one_line"] = one_line
    env.filters["local"] = _local
    env.filters["local_date"] = _local_date
    env.globals["why"] = _why
    return env


def render_html(digest: Digest) -> str:
    return _environment().get_template("digest.html.j2").render(digest=digest)


def render_text(digest: Digest) -> str:
    return _environment().get_template("digest.txt.j2").render(digest=digest)


def compose_message(digest: Digest, *, sender: str, recipients: list[str]) -> EmailMessage:
    """A multipart/alternative message: plain text first, HTML preferred."""
    message = EmailMessage()
    message["Subject"] = digest.subject
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(digest.window_end.timestamp(), localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(
        idstring=f"digest.{digest.subscription}", domain=sender.rpartition("@")[2].strip(">") or None
    )
    message.set_content(render_text(digest), charset="utf-8")
    message.add_alternative(render_html(digest), subtype="html", charset="utf-8")
    return message
