"""feeds.yaml edited from the command line, feed lists in and out as OPML, and feeds found on a site.

Edits go through ruamel.yaml's round-trip mode, so the user's comments, order and layout survive. The edited
text is validated as a whole before it replaces the file (atomically), so a bad edit changes nothing.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import lxml.etree
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from monitor.config import FeedConfig, MonitorConfig, parse_config
from monitor.errors import AlreadyExistsError, ConfigError, FeedParseError, FetchError, NotFoundError
from monitor.feeds import linked_feeds, parse_feed
from monitor.fetch import Fetcher

#: where sites commonly serve a feed without announcing it in their HTML
COMMON_FEED_PATHS = (
    "/feed",
    "/rss",
    "/feed.xml",
    "/rss.xml",
    "/atom.xml",
    "/index.xml",
    "/feeds/posts/default",
)


_PLAIN = re.compile(r"[A-Za-z0-9][^\s,\[\]{}#'\"]*")


def _scalar(value: str) -> str:
    """A YAML scalar for ``value``: plain when that is unambiguous, else double-quoted (JSON is YAML)."""
    return value if _PLAIN.fullmatch(value) and not value.endswith(":") else json.dumps(value)


@dataclass(slots=True)
class _FeedsFile:
    """feeds.yaml as lines, edited line by line where its feeds list is, so that everything else (comments,
    blank lines, quoting, alignment) stays byte for byte."""

    path: Path
    lines: list[str]
    tree: Any

    @classmethod
    def load(cls, path: Path) -> _FeedsFile:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read: {exc}", path=str(path)) from None
        parse_config(text, path)  # the file must be valid before it is edited
        if text and not text.endswith("\n"):
            text += "\n"
        return cls(path, text.splitlines(keepends=True), YAML(typ="rt").load(text) or CommentedMap())

    @property
    def feeds(self) -> list[Any]:
        feeds = self.tree.get("feeds")
        return list(feeds) if isinstance(feeds, CommentedSeq) else []

    def _span(self, index: int) -> tuple[int, int]:
        """Lines [start, end) of feed ``index``, without the blank and comment lines that follow it."""
        seq = self.tree["feeds"]
        start = seq.lc.item(index)[0]
        if index + 1 < len(seq):
            end = seq.lc.item(index + 1)[0]
        else:
            keys = list(self.tree)
            later = keys[keys.index("feeds") + 1 :]
            end = self.tree.lc.key(later[0])[0] if later else len(self.lines)
        while end > start + 1 and self.lines[end - 1].strip()[:1] in ("", "#"):
            end -= 1
        return start, end

    def insert(self, entries: Sequence[dict[str, Any]]) -> None:
        if self.feeds:
            seq = self.tree["feeds"]
            pad = " " * (seq.lc.item(0)[1] - 2)
            at = self._span(len(seq) - 1)[1]
        else:
            pad = "  "
            if "feeds" in self.tree:  # `feeds:` or `feeds: []`
                at = self.tree.lc.key("feeds")[0]
                del self.lines[at]
            else:
                at = len(self.lines)
            self.lines.insert(at, "feeds:\n")
            at += 1
        rendered = []
        for entry in entries:
            rendered.append(f"{pad}- name: {_scalar(entry['name'])}\n")
            rendered.append(f"{pad}  url: {_scalar(entry['url'])}\n")
            if entry.get("interval"):
                rendered.append(f"{pad}  interval: {_scalar(entry['interval'])}\n")
            if entry.get("tags"):
                rendered.append(f"{pad}  tags: [{', '.join(_scalar(t) for t in entry['tags'])}]\n")
        self.lines[at:at] = rendered

    def delete(self, index: int) -> None:
        start, end = self._span(index)
        del self.lines[start:end]

    def save(self) -> MonitorConfig:
        """Validate the edited text, then replace the file with it in one step."""
        text = "".join(self.lines)
        config = parse_config(text, self.path)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            if self.path.exists():
                os.chmod(tmp, self.path.stat().st_mode & 0o777)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return config


def feed_name(hint: str, taken: Iterable[str]) -> str:
    """A feeds.yaml name made from a title or a URL's host, unique among ``taken``."""
    if hint.startswith(("http://", "https://")):
        hint = (urlsplit(hint).hostname or "feed").removeprefix("www.")
    base = re.sub(r"[^a-z0-9]+", "-", hint.lower()).strip("-")[:90] or "feed"
    taken = set(taken)
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def add_feed(
    path: Path,
    url: str,
    *,
    name: str | None = None,
    tags: Sequence[str] = (),
    interval: str | None = None,
) -> FeedConfig:
    """Append a feed to feeds.yaml; its name is made from the URL when not given."""
    file = _FeedsFile.load(path)
    names = [str(f.get("name")) for f in file.feeds]
    if name is not None and name in names:
        raise AlreadyExistsError("feed", name)
    for existing in file.feeds:
        if existing.get("url") == url:
            raise ConfigError(f"{url} is already in feeds.yaml as {existing.get('name')!r}", path=str(path))
    name = name or feed_name(url, names)
    file.insert([{"name": name, "url": url, "interval": interval, "tags": list(tags)}])
    added = file.save().feed(name)
    assert added is not None
    return added


def remove_feed(path: Path, name: str) -> None:
    """Remove a feed from feeds.yaml (its stored articles and hits stay; the feed is no longer polled)."""
    file = _FeedsFile.load(path)
    for index, entry in enumerate(file.feeds):
        if entry.get("name") == name:
            file.delete(index)
            file.save()
            return
    raise NotFoundError("feed", name)


@dataclass(slots=True)
class OpmlImport:
    added: list[FeedConfig] = field(default_factory=list)
    #: (url, why) of the outlines not added
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _parse_opml(opml: bytes, source: str) -> Any:
    parser = lxml.etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = lxml.etree.fromstring(opml, parser=parser)
    except lxml.etree.XMLSyntaxError as exc:
        raise FeedParseError(source, f"not valid OPML: {exc}") from None
    if root.tag != "opml":
        raise FeedParseError(source, f"not OPML: the document is <{root.tag}>, expected <opml>")
    return root


def import_opml(path: Path, opml: bytes, *, source: str) -> OpmlImport:
    """Add every feed of an OPML subscription list (as exported by feed readers) to feeds.yaml. Folders
    become tags; feeds already there (same URL) and URLs that are not http(s) are skipped."""
    root = _parse_opml(opml, source)
    file = _FeedsFile.load(path)
    names = [str(f.get("name")) for f in file.feeds]
    urls = {str(f.get("url")) for f in file.feeds}
    result, entries = OpmlImport(), []
    for outline in root.iter("outline"):
        url = (outline.get("xmlUrl") or "").strip()
        if not url:
            continue
        if not url.startswith(("http://", "https://")):
            result.skipped.append((url, "not an http(s) URL"))
            continue
        if url in urls:
            result.skipped.append((url, "already in feeds.yaml"))
            continue
        name = feed_name(outline.get("title") or outline.get("text") or url, names)
        folders = [o.get("text") or o.get("title") for o in outline.iterancestors("outline")]
        entries.append({"name": name, "url": url, "tags": [feed_name(f, ()) for f in reversed(folders) if f]})
        names.append(name)
        urls.add(url)
    if entries:
        file.insert(entries)
        added = {e["name"] for e in entries}
        result.added = [f for f in file.save().feeds if f.name in added]
    return result


def export_opml(config: MonitorConfig) -> bytes:
    """The feeds as an OPML 2.0 subscription list, grouped in folders by their first tag."""
    root = lxml.etree.Element("opml", version="2.0")
    head = lxml.etree.SubElement(root, "head")
    lxml.etree.SubElement(head, "title").text = "monitor feeds"
    lxml.etree.SubElement(head, "dateCreated").text = format_datetime(datetime.now(UTC), usegmt=True)
    body = lxml.etree.SubElement(root, "body")
    folders: dict[str, Any] = {}
    for feed in config.feeds:
        parent = body
        if feed.tags:
            tag = feed.tags[0]
            if tag not in folders:
                folders[tag] = lxml.etree.SubElement(body, "outline", text=tag, title=tag)
            parent = folders[tag]
        outline = lxml.etree.SubElement(parent, "outline", type="rss", text=feed.name, title=feed.name)
        outline.set("xmlUrl", feed.url)
        if len(feed.tags) > 1:
            outline.set("category", ",".join(feed.tags))
    return bytes(lxml.etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


@dataclass(frozen=True, slots=True)
class FoundFeed:
    url: str
    title: str | None
    entries: int


async def check_feed(fetcher: Fetcher, url: str) -> FoundFeed:
    """Fetch and parse a feed; a FetchError or FeedParseError says why it is not a working feed (a web
    page's error names the feeds it links to)."""
    fetched = await fetcher.fetch_page(url)
    parsed = parse_feed(fetched.content, url=fetched.final_url, content_type=fetched.content_type)
    return FoundFeed(fetched.final_url, parsed.title, len(parsed.entries))


async def discover_feeds(fetcher: Fetcher, site_url: str) -> list[FoundFeed]:
    """The feeds a site offers: the URL itself if it is a feed, else those its page links to, else those
    found at the usual places. Each is fetched and parsed, so only working feeds are returned."""
    page = await fetcher.fetch_page(site_url)
    try:
        parsed = parse_feed(page.content, url=page.final_url, content_type=page.content_type)
        return [FoundFeed(page.final_url, parsed.title, len(parsed.entries))]
    except FeedParseError:
        pass
    candidates = linked_feeds(page.content, page.final_url) or list(
        dict.fromkeys(  # below the page's own path first (a blog in a folder), then at the site's root
            [urljoin(page.final_url, p.lstrip("/")) for p in COMMON_FEED_PATHS]
            + [urljoin(page.final_url, p) for p in COMMON_FEED_PATHS]
        )
    )
    found = []
    for url in candidates:
        try:
            found.append(await check_feed(fetcher, url))
        except (FetchError, FeedParseError):
            continue
    return found
