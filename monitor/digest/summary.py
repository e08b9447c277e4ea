"""A story's summary in a digest: the lead of the article (not the site's chrome), with the matched terms
marked. Pure functions over text."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence

from monitor.topics import tokenize

#: about two lines of the digest at desktop width
SUMMARY_CHARS = 240
#: a lead this long says what the story is; the next paragraph would mostly say it again
_ENOUGH_CHARS = 140
#: a line shorter than this that does not end a sentence is furniture ("Join our Telegram channel",
#: "Photo: Reuters", a byline), not a lead
_MIN_SENTENCE_CHARS = 60
_ENDS_SENTENCE = re.compile(r"[.!?…。！？][\"'”’»)\]]*$")
#: "BEIJING, Nov 12 (Eastwire) — ", "MOSCOW — ": the dateline before a wire story's first sentence
_DATELINE = re.compile(r"^[A-ZÀ-ÖØ-Þ][A-ZÀ-ÖØ-Þ .'’-]{2,40}(?:,[^—–\n]{1,40})?\s+[—–]\s+(?=\S)")
_MARK = re.compile(r"«([^«»\n]{1,200})»")


def lead(text: str, *, title: str = "", furniture: Collection[str] = ()) -> str:
    """The first sentences of ``text`` that are the article's own, up to about two lines.

    Skipped: lines that repeat the title, lines in ``furniture`` (lines the site shows in other articles
    too: calls to action, captions, credits), and short lines that end no sentence (bylines, labels). A
    wire dateline is dropped. The cut falls at a word, marked with an ellipsis.
    """
    title_key = " ".join(title.casefold().split())
    repeated = {" ".join(line.casefold().split()) for line in furniture}
    picked: list[str] = []
    for raw in text.split("\n"):
        line = " ".join(raw.split())
        key = line.casefold()
        if not line or key == title_key or key in repeated:
            continue
        if len(line) < _MIN_SENTENCE_CHARS and not _ENDS_SENTENCE.search(line):
            continue
        line = _DATELINE.sub("", line)
        if picked and _same_sentence(picked[-1], line):
            continue  # a standfirst followed by the body's first paragraph that says it again
        picked.append(line)
        if sum(len(p) + 1 for p in picked) >= _ENOUGH_CHARS:
            break
    return shorten(" ".join(picked), SUMMARY_CHARS)


def _same_sentence(a: str, b: str) -> bool:
    """Whether two leads open with the same words (a standfirst and the paragraph that repeats it)."""
    words_a, words_b = a.casefold().split()[:8], b.casefold().split()[:8]
    return len(words_a) >= 5 and words_a == words_b


def shorten(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, with an ellipsis when cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:—–-") + "…"


def _term_tokens(term: str) -> tuple[list[str], bool] | None:
    """A matched term as written in a query (``xi``, ``putin*``, ``"xi jinping"``, ``title:xi``) as the
    tokens it matches and whether the last one is a prefix."""
    term = term.strip()
    if ":" in term and not term.startswith('"'):
        term = term.split(":", 1)[1]
    prefix = term.endswith("*")
    tokens = [t.text for t in tokenize(term.strip('"*'))]
    return (tokens, prefix) if tokens else None


def highlights(text: str, terms: Iterable[str]) -> list[tuple[int, int]]:
    """The character spans of ``text`` where any of the matched ``terms`` occurs (whole words, case and
    accents folded as the matcher folds them; ``word*`` as a prefix; phrases as runs of words), merged."""
    tokens = tokenize(text)
    wanted = [t for t in (_term_tokens(term) for term in terms) if t]
    spans: list[tuple[int, int]] = []
    for i in range(len(tokens)):
        for words, prefix in wanted:
            end = i + len(words)
            if end > len(tokens):
                continue
            here = [t.text for t in tokens[i:end]]
            if here[:-1] != words[:-1]:
                continue
            last = here[-1]
            if last == words[-1] or (prefix and last.startswith(words[-1])):
                spans.append((tokens[i].start, tokens[end - 1].end))
    return _merge(spans)


def _merge(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping spans, and spans one space apart ("Xi" "Jinping"), become one."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def unmark(snippet: str) -> tuple[str, list[tuple[int, int]]]:
    """The matcher's snippet («term» marks) as plain text and the spans that were marked."""
    plain: list[str] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    length = 0
    for found in _MARK.finditer(snippet):
        before = snippet[pos : found.start()]
        plain.append(before)
        length += len(before)
        plain.append(found.group(1))
        spans.append((length, length + len(found.group(1))))
        length += len(found.group(1))
        pos = found.end()
    plain.append(snippet[pos:])
    return "".join(plain), spans
