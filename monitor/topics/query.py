"""The watch-topic query language: a hand-written lexer and recursive-descent parser.

Grammar (precedence NOT > NEAR > AND > OR; operators are upper-case keywords, ``and``/``or`` are words)::

    query   := or END
    or      := and ("OR" and)*
    and     := near (["AND"] near)*                    adjacent operands are ANDed
    near    := unary ("NEAR/n" unary)*                 operands: terms, phrases, (a OR "b c") groups
    unary   := ("NOT" | "-") unary | primary
    primary := word | "phrase" | "(" or ")" | title:primary | site:value | lang:value | feed:value

A word matches a whole token (``putin*`` is a prefix); a phrase matches consecutive tokens. Every error is
one :class:`~monitor.errors.QueryError` with a 1-based column and what was expected there.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import NamedTuple

from monitor.errors import QueryError
from monitor.topics.text import is_cjk, join_tokens, words

KNOWN_FIELDS = ("title", "site", "lang", "feed")
MAX_QUERY_LENGTH = 2000
MAX_DEPTH = 32
_OPERAND = "a term, phrase or '('"


def _col() -> int:
    """A node's column (1-based, for messages); ignored when comparing trees."""
    return dataclasses.field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Term:
    """A word or a phrase: ``tokens`` must occur consecutively; ``prefix[i]`` makes token i a prefix."""

    source: str
    tokens: tuple[str, ...]
    prefix: tuple[bool, ...]
    column: int = _col()


@dataclass(frozen=True, slots=True)
class Not:
    """True when ``child`` is false; contributes no evidence."""

    child: Node
    column: int = _col()


@dataclass(frozen=True, slots=True)
class And:
    """True when every child is."""

    children: tuple[Node, ...]
    column: int = _col()


@dataclass(frozen=True, slots=True)
class Or:
    """True when any child is."""

    children: tuple[Node, ...]
    column: int = _col()


@dataclass(frozen=True, slots=True)
class Near:
    """``left`` and ``right`` occur within ``distance`` words of each other, in either order."""

    left: Node
    right: Node
    distance: int
    column: int = _col()


@dataclass(frozen=True, slots=True)
class InTitle:
    """``child`` evaluated against the title only (``title:``)."""

    child: Node
    column: int = _col()


@dataclass(frozen=True, slots=True)
class FieldFilter:
    """``site:``, ``lang:`` or ``feed:``: gates on a document attribute, contributes no evidence."""

    field: str
    value: str
    column: int = _col()


Node = Term | Not | And | Or | Near | InTitle | FieldFilter


class _Tok(NamedTuple):
    kind: str  # WORD PHRASE LP RP AND OR NOT MINUS NEAR FIELD END
    text: str
    column: int
    value: str = ""


_FIELD_RE = re.compile(r"([A-Za-z]+):(.*)", re.DOTALL)
_STOP = '()"\u201c'  # a word ends at these or at whitespace; a stray closing quote is just punctuation
_OPEN_QUOTES = '"\u201c'
_CLOSE_QUOTES = '"\u201d'


def _lex(query: str) -> list[_Tok]:
    """Split ``query`` into tokens; unclosed quotes, bad NEAR/n and unknown fields fail here."""
    toks: list[_Tok] = []
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        col = i + 1
        if c.isspace():
            i += 1
        elif c in "()":
            toks.append(_Tok("LP" if c == "(" else "RP", c, col))
            i += 1
        elif c in _OPEN_QUOTES:
            end = min((j for j in (query.find(q, i + 1) for q in _CLOSE_QUOTES) if j >= 0), default=-1)
            if end < 0:
                raise QueryError(query, col, "unclosed quote: expected a closing '\"' for this phrase")
            toks.append(_Tok("PHRASE", query[i : end + 1], col, query[i + 1 : end]))
            i = end + 1
        elif c == "-" and i + 1 < n and not query[i + 1].isspace() and query[i + 1] != ")":
            toks.append(_Tok("MINUS", c, col))
            i += 1
        else:
            j = i
            while j < n and query[j] not in _STOP and not query[j].isspace():
                j += 1
            if j == i:  # pragma: no cover - every stop character is handled above
                raise QueryError(query, col, f"unexpected {c!r}")
            toks.append(_classify(query, query[i:j], col))
            i = j
    toks.append(_Tok("END", "", n + 1))
    return toks


def _classify(query: str, word: str, col: int) -> _Tok:
    if word in ("AND", "OR", "NOT"):
        return _Tok(word, word, col)
    if word == "-":
        raise QueryError(query, col, f"expected {_OPERAND} right after '-' (write -word to exclude a word)")
    if word == "NEAR" or word.startswith("NEAR/"):
        dist = word[5:]
        if not (dist.isascii() and dist.isdigit() and int(dist) > 0):
            raise QueryError(query, col, f"expected NEAR/n with n a positive whole number, found {word!r}")
        return _Tok("NEAR", word, col, dist)
    m = _FIELD_RE.fullmatch(word)
    if m:
        name = m.group(1).lower()
        if name not in KNOWN_FIELDS:
            known = ", ".join(f"{f}:" for f in KNOWN_FIELDS)
            raise QueryError(query, col, f"unknown field {m.group(1)!r}; known fields are {known}")
        return _Tok("FIELD", name, col, m.group(2))
    return _Tok("WORD", word, col)


_STARTS_OPERAND = {"WORD", "PHRASE", "LP", "NOT", "MINUS", "FIELD"}


def _describe(tok: _Tok) -> str:
    return "the end of the query" if tok.kind == "END" else repr(tok.text)


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.toks = _lex(query)
        self.pos = 0
        self.depth = 0

    def error(self, column: int, message: str) -> QueryError:
        return QueryError(self.query, column, message)

    def peek(self) -> _Tok:
        return self.toks[self.pos]

    def take(self) -> _Tok:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def expect_operand(self, after: str) -> None:
        tok = self.peek()
        if tok.kind not in _STARTS_OPERAND:
            found = "" if tok.kind == "END" else f", found {tok.text!r}"
            raise self.error(tok.column, f"expected {_OPERAND} after {after}{found}")

    def enter(self, column: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(column, f"query is nested too deeply (more than {MAX_DEPTH} levels)")

    def parse(self) -> Node:
        tok = self.peek()
        if tok.kind == "END":
            raise self.error(1, f"empty query: expected {_OPERAND}")
        if tok.kind not in _STARTS_OPERAND:
            raise self.error(tok.column, f"expected {_OPERAND} at the start, found {tok.text!r}")
        node = self.parse_or()
        tok = self.peek()
        if tok.kind == "RP":
            raise self.error(tok.column, "unbalanced ')': there is no '(' before it")
        if tok.kind != "END":  # pragma: no cover - parse_or consumes everything else
            raise self.error(tok.column, f"unexpected {tok.text!r}")
        return node

    def parse_or(self) -> Node:
        children = [self.parse_and()]
        while self.peek().kind == "OR":
            self.take()
            self.expect_operand("OR")
            children.append(self.parse_and())
        return children[0] if len(children) == 1 else Or(tuple(children), _column(children[0]))

    def parse_and(self) -> Node:
        children = [self.parse_near()]
        while True:
            kind = self.peek().kind
            if kind == "AND":
                self.take()
                self.expect_operand("AND")
            elif kind not in _STARTS_OPERAND:
                break
            children.append(self.parse_near())
        return children[0] if len(children) == 1 else And(tuple(children), _column(children[0]))

    def parse_near(self) -> Node:
        left = self.parse_unary()
        while self.peek().kind == "NEAR":
            op = self.take()
            if not _nearable(left):
                raise self.error(_column(left), f"{op.text} needs a term, phrase or (a OR b) group before it")
            self.expect_operand(op.text)
            right = self.parse_unary()
            if not _nearable(right):
                raise self.error(_column(right), f"{op.text} needs a term, phrase or (a OR b) group after it")
            left = Near(left, right, int(op.value), _column(left))
        return left

    def parse_unary(self) -> Node:
        tok = self.peek()
        if tok.kind not in ("NOT", "MINUS"):
            return self.parse_primary()
        self.take()
        self.enter(tok.column)
        self.expect_operand("NOT" if tok.kind == "NOT" else "'-'")
        node = Not(self.parse_unary(), tok.column)
        self.depth -= 1
        return node

    def parse_primary(self) -> Node:
        tok = self.take()
        if tok.kind == "WORD":
            return _term(self.query, tok.text, tok.column)
        if tok.kind == "PHRASE":
            return _phrase(self.query, tok)
        if tok.kind == "LP":
            self.enter(tok.column)
            if self.peek().kind == "RP":
                raise self.error(self.peek().column, f"empty parentheses: expected {_OPERAND} inside")
            self.expect_operand("'('")
            node = self.parse_or()
            if self.peek().kind != "RP":
                raise self.error(tok.column, "this '(' is never closed: expected ')'")
            self.take()
            self.depth -= 1
            return node
        if tok.kind == "FIELD":
            return self.parse_field(tok)
        raise self.error(tok.column, f"expected {_OPERAND}, found {_describe(tok)}")  # pragma: no cover

    def parse_field(self, tok: _Tok) -> Node:
        name, value = tok.text, tok.value
        value_col = tok.column + len(name) + 1
        if value.startswith("-"):
            raise self.error(value_col, f"write -{name}:{value[1:]} to exclude, not {name}:{value}")
        if name == "title":
            if value:
                return InTitle(_term(self.query, value, value_col), tok.column)
            if self.peek().kind not in ("WORD", "PHRASE", "LP"):
                raise self.error(self.peek().column, f"expected {_OPERAND} after title:")
            self.enter(tok.column)
            node = InTitle(self.parse_primary(), tok.column)
            self.depth -= 1
            return node
        if not value:
            nxt = self.peek()
            if nxt.kind != "PHRASE":
                raise self.error(nxt.column, f"expected a value after {name}:, e.g. {name}:example")
            value = self.take().value
        value = " ".join(value.split()).casefold()
        if not value:
            raise self.error(value_col, f"expected a value after {name}:")
        return FieldFilter(name, value, tok.column)


def _column(node: Node) -> int:
    return node.column


def _nearable(node: Node) -> bool:
    if isinstance(node, Term):
        return True
    return isinstance(node, Or) and all(_nearable(c) for c in node.children)


def _term(query: str, word: str, column: int) -> Term:
    """A bare word (maybe ``prefix*``); several tokens (``jong-un``, ``习近平``) act as a phrase."""
    tokens, prefix = _word_tokens(query, word, column)
    return Term(word, tuple(tokens), tuple(prefix), column)


def _word_tokens(query: str, word: str, column: int) -> tuple[list[str], list[bool]]:
    is_prefix = word.endswith("*")
    body = word[:-1] if is_prefix else word
    star = body.find("*")
    if star >= 0:
        raise QueryError(query, column + star, "'*' is only allowed at the end of a word (putin*)")
    if is_prefix and not body:
        raise QueryError(query, column, "'*' alone matches everything: put at least 2 letters before it")
    tokens = words(body)
    if not tokens:
        raise QueryError(query, column, f"{word!r} has no letters or digits to match")
    prefix = [False] * len(tokens)
    if is_prefix and not is_cjk(tokens[-1]):  # CJK terms match as substrings already
        if len(tokens[-1]) < 2:
            raise QueryError(query, column, f"prefix {word!r} is too short: 2 letters or more before '*'")
        prefix[-1] = True
    return tokens, prefix


def _phrase(query: str, tok: _Tok) -> Term:
    """A quoted phrase: its words in order, each whole unless it ends in '*'."""
    tokens: list[str] = []
    prefix: list[bool] = []
    for m in re.finditer(r"\S+", tok.value):
        t, p = _word_tokens(query, m.group(), tok.column + 1 + m.start())
        tokens += t
        prefix += p
    if not tokens:
        raise QueryError(query, tok.column, "empty phrase: expected words between the quotes")
    return Term(tok.text, tuple(tokens), tuple(prefix), tok.column)


def _positive(node: Node) -> bool:
    """Whether ``node`` can only be true when some term occurs (negations and filters alone cannot)."""
    if isinstance(node, Term | Near):
        return True
    if isinstance(node, Not | FieldFilter):
        return False
    if isinstance(node, InTitle):
        return _positive(node.child)
    if isinstance(node, And):
        return any(_positive(c) for c in node.children)
    return all(_positive(c) for c in node.children)


def _negative_alternative(node: Node) -> Node | None:
    """The first OR alternative without a positive term, if that is why the query is not positive."""
    if isinstance(node, Or):
        return next((c for c in node.children if not _positive(c)), None)
    if isinstance(node, InTitle):
        return _negative_alternative(node.child)
    if isinstance(node, And):
        for c in node.children:
            found = _negative_alternative(c)
            if found is not None:
                return found
    return None


def parse_query(query: str) -> Node:
    """Parse ``query`` into its syntax tree; raise :class:`QueryError` if malformed or never selective."""
    if len(query) > MAX_QUERY_LENGTH:
        raise QueryError(
            query[: MAX_QUERY_LENGTH + 1],
            MAX_QUERY_LENGTH + 1,
            f"query is {len(query)} characters long; the limit is {MAX_QUERY_LENGTH}",
        )
    root = _Parser(query).parse()
    if not _positive(root):
        culprit = _negative_alternative(root)
        if culprit is not None:
            raise QueryError(
                query,
                culprit.column,
                "every OR alternative needs at least one positive term; "
                "this one only excludes, so it would match almost every article",
            )
        raise QueryError(
            query,
            1,
            "the query needs at least one positive term (a word or phrase that must "
            "occur); negations and field filters alone would match almost every article",
        )
    return root


def _positive_terms(node: Node, out: list[Term]) -> None:
    if isinstance(node, Term):
        out.append(node)
    elif isinstance(node, And | Or):
        for c in node.children:
            _positive_terms(c, out)
    elif isinstance(node, Near):
        _positive_terms(node.left, out)
        _positive_terms(node.right, out)
    elif isinstance(node, InTitle):
        _positive_terms(node.child, out)


class CompiledQuery:
    """A parsed query, ready to be evaluated against many prepared documents."""

    __slots__ = ("_terms", "root", "source")

    def __init__(self, source: str, root: Node) -> None:
        self.source = source
        self.root = root
        found: list[Term] = []
        _positive_terms(root, found)
        self._terms = found

    def positive_terms(self) -> list[Term]:
        """The terms not under a negation, in query order."""
        return list(self._terms)

    def terms(self) -> list[str]:
        """Normalised positive literals (prefixes without '*'), deduplicated, for a multi-pattern pre-filter.

        Tokens are joined by one space (none between CJK characters): compare against text normalised the
        same way, e.g. ``join_tokens(words(title + " " + text))``.
        """
        return list(dict.fromkeys(join_tokens(t.tokens) for t in self._terms))

    def __repr__(self) -> str:
        return f"CompiledQuery({self.source!r})"


def compile_query(query: str) -> CompiledQuery:
    """Parse ``query`` once for repeated evaluation; raises :class:`QueryError`."""
    return CompiledQuery(query, parse_query(query))
