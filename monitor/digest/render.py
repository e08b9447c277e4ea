"""Rendering a digest document with Jinja2: HTML for mail clients (CSS inlined, tables, dark mode, no
remote resources; all article-derived text escaped), plain text, and the email message around them."""

from __future__ import annotations

import secrets
import textwrap
from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr
from functools import cache
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import css_inline
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from monitor.digest.build import Digest, one_line
from monitor.digest.document import to_document

#: how the plain-text part is wrapped
TEXT_WIDTH = 76


def _marked(text: str, spans: Sequence[Sequence[int]]) -> Markup:
    """Escape ``text`` and wrap the given character spans in <mark>."""
    out, pos = [], 0
    for start, end in sorted((int(s), int(e)) for s, e in spans):
        if start < pos or end > len(text):
            continue
        out += [str(escape(text[pos:start])), "<mark>", str(escape(text[start:end])), "</mark>"]
        pos = end
    out.append(str(escape(text[pos:])))
    return Markup("".join(out))


def _starred(text: str, spans: Sequence[Sequence[int]]) -> str:
    """``text`` with the spans shown as *word* for the plain-text part."""
    out, pos = [], 0
    for start, end in sorted((int(s), int(e)) for s, e in spans):
        if start < pos or end > len(text):
            continue
        out += [text[pos:start], "*", text[start:end], "*"]
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _when(value: str | None, zone: str, style: str = "full") -> str:
    """An ISO timestamp in the subscriber's zone: "Thu 12 Nov, 10:00 CET" (or a date: "8 May 2025")."""
    if not value:
        return "date unknown"
    local = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(ZoneInfo(zone))
    if style == "date":
        return f"{local.day} {local:%b %Y}"
    if style == "long":
        return f"{local:%a} {local.day} {local:%b %Y %H:%M %Z}"
    return f"{local:%a} {local.day} {local:%b, %H:%M %Z}"


def _wrap(text: str, indent: str = "  ", first: str | None = None) -> str:
    """One paragraph of the plain-text part, wrapped and indented (``first``: the first line's start)."""
    return textwrap.fill(
        one_line(text),
        TEXT_WIDTH,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_on_hyphens=False,
        break_long_words=False,
    )


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
    env.filters["marked"] = _marked
    env.filters["starred"] = _starred
    env.filters["one_line"] = one_line
    env.filters["when"] = _when
    env.filters["wrap"] = _wrap
    return env


@cache
def _inliner() -> css_inline.CSSInliner:
    # @media rules (dark mode, narrow screens) cannot be inlined: they stay in the <style> element
    return css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


def _document(digest: Digest | dict[str, Any]) -> dict[str, Any]:
    return digest if isinstance(digest, dict) else to_document(digest)


def render_html(digest: Digest | dict[str, Any], *, unsubscribe: str | None = None) -> str:
    """The digest as an HTML email body: table layout, CSS inlined, no remote images or trackers."""
    html = (
        _environment().get_template("digest.html.j2").render(doc=_document(digest), unsubscribe=unsubscribe)
    )
    return str(_inliner().inline(html))


def render_text(digest: Digest | dict[str, Any], *, unsubscribe: str | None = None) -> str:
    """The same content as plain text."""
    return _environment().get_template("digest.txt.j2").render(doc=_document(digest), unsubscribe=unsubscribe)


def render_fragment(document: dict[str, Any]) -> str:
    """The digest as simple HTML for a feed reader's entry (readers apply their own styles)."""
    return _environment().get_template("entry.html.j2").render(doc=document)


def unsubscribe_target(subscription: str, *, sender: str, url: str | None) -> str:
    """Where List-Unsubscribe points: the configured URL (``{subscription}`` filled in), else a mail to the
    sender asking to be taken off the subscription."""
    if url:
        return url.replace("{subscription}", quote(subscription, safe=""))
    address = parseaddr(sender)[1] or sender
    return f"mailto:{address}?subject={quote(f'unsubscribe {subscription}')}"


def _domain(sender: str) -> str:
    return (parseaddr(sender)[1] or sender).rpartition("@")[2].strip("<> ") or "monitor.invalid"


def thread_message_id(message_id: str) -> str:
    """A Message-ID as it appears in In-Reply-To and References."""
    return message_id if message_id.startswith("<") else f"<{message_id}>"


def compose_message(
    document: dict[str, Any],
    *,
    message_id: str,
    sender: str,
    recipients: list[str],
    sent_at: datetime,
    sender_name: str = "monitor",
    unsubscribe_url: str | None = None,
    thread: tuple[str, str] | None = None,
) -> EmailMessage:
    """A multipart/alternative message (plain text first, HTML preferred), UTF-8, with the headers mail
    clients and list tools read: a stable From, Message-ID, Date, List-Id, List-Unsubscribe; an alert
    replies to its topic's earlier alerts (``thread``: the first and the latest Message-ID)."""
    subscription = document["subscription"]
    address = parseaddr(sender)[1] or sender
    name = parseaddr(sender)[0] or sender_name
    unsubscribe = unsubscribe_target(subscription, sender=address, url=unsubscribe_url)
    message = EmailMessage()
    message["Subject"] = one_line(document["subject"])
    message["From"] = formataddr((name, address))
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(sent_at.timestamp(), localtime=False, usegmt=True)
    message["Message-ID"] = message_id
    message["List-Id"] = f'"monitor: {subscription}" <{subscription}.{_domain(address)}>'
    message["List-Unsubscribe"] = f"<{unsubscribe}>"
    message["Auto-Submitted"] = "auto-generated"
    if thread is not None:
        first, latest = (thread_message_id(m) for m in thread)
        message["In-Reply-To"] = latest
        message["References"] = first if first == latest else f"{first} {latest}"
    message.set_content(render_text(document, unsubscribe=unsubscribe), charset="utf-8")
    message.add_alternative(render_html(document, unsubscribe=unsubscribe), subtype="html", charset="utf-8")
    return message


def new_message_id(*, kind: str, subscription: str, topic: str | None, sender: str) -> str:
    """A fresh Message-ID naming what it is: <…digest.morning@example.org>, <…alert.morning.xi@…>."""
    parts = [secrets.token_hex(8), kind, subscription, *([topic] if topic else [])]
    return f"<{'.'.join(parts)}@{_domain(sender)}>"
