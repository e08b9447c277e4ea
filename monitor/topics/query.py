"""The watch-topic query language: a hand-written lexer and recursive-descent parser.

Grammar (precedence NOT > NEAR > AND > OR; operators are upper-case keywords, ``and``/``or`` are words)::

    query    := or END
    or       := and ("OR" and)*
    and      := near (["AND"] near)*                   adjacent operands are ANDed
    near     := unary ("NEAR/n" unary)*                operands: literals (see below)
    unary    := ("NOT" | "-") unary | primary
    primary  := word | "phrase" | "(" or ")" | @alias | SENTENCE(or, or, ...)
              | title:primary | site:value | lang:value | feed:value
    literal  := word | "phrase" | @alias or (group) made of literals and OR

A word matches a whole token (``putin*`` is a prefix); a phrase matches consecutive tokens. ``@name`` stands
for the text of the alias ``name``, parsed as a parenthesised group in its place. ``SENTENCE(a, b, ...)``
needs every operand (a literal) within one sentence. Every error is one :class:`~monitor.errors.QueryError`
with a 1-based column and what was expected there; an error inside an alias is reported at the ``@`` that
uses it and names the alias and the column in its text.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from monitor.errors import QueryError
from monitor.topics.text import is_cjk, join_tokens, words

KNOWN_FIELDS = ("title", "site", "lang", "feed")
MAX_QUERY_LENGTH = 2000
MAX_DEPTH = 32
#: terms, field filters and alias uses in a query with its aliases expanded: aliases using aliases
#: could otherwise grow a short query exponentially
MAX_EXPANDED_OPERANDS = 2000
_OPERAND = "a term, phrase or '('"
_ALIAS_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_LITERAL = "a term, phrase, @alias or (a OR b) group"


def _col() -> int:
    """A node's column (1-based, in the text it was written in); ignored when comparing trees."""
    return dataclasses.field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Term:
    """A word or a phrase: ``tokens`` must occur consecutively; ``prefix[i]`` makes token i a prefix.

    ``order`` numbers the terms of a compiled query in reading order, aliases expanded in place; it orders
    explanations and tells two terms apart.
    """

    source: str
    tokens: tuple[str, ...]
    prefix: tuple[bool, ...]
    column: int = _col()
    order: int = dataclasses.field(default=0, compare=False)


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
class Sentence:
    """Every child (a literal) occurs within one sentence: ``SENTENCE(a, b, ...)``."""

    children: tuple[Node, ...]
    column: int = _col()


@dataclass(frozen=True, slots=True)
class Alias:
    """``@name``: the alias's own query, parsed in its place; the child's columns are in the alias's text."""

    name: str
    child: Node
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


Node = Term | Not | And | Or | Near | Sentence | Alias | InTitle | FieldFilter


class _Tok(NamedTuple):
    kind: str  # WORD PHRASE LP RP AND OR NOT MINUS NEAR SENTENCE COMMA ALIAS FIELD END
    text: str
    column: int
    value: str = ""


_FIELD_RE = re.compile(r"([A-Za-z]+):(.*)", re.DOTALL)
_STOP = '()"\u201c'  # a word ends at these or at whitespace; a stray closing quote is just punctuation
_STOP_IN_SENTENCE = _STOP + ","  # directly inside SENTENCE( ), a comma separates operands
_OPEN_QUOTES = '"\u201c'
_CLOSE_QUOTES = '"\u201d'


def _lex(query: str) -> list[_Tok]:
    """Split ``query`` into tokens; unclosed quotes, bad NEAR/n, unknown fields and bad @names fail here."""
    toks: list[_Tok] = []
    #: for each open '(', whether it opened SENTENCE( ): only there is a comma a token of its own
    opened_sentence: list[bool] = []
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        col = i + 1
        in_sentence = bool(opened_sentence) and opened_sentence[-1]
        if c.isspace():
            i += 1
        elif c == "(":
            opened_sentence.append(bool(toks) and _names_sentence(toks[-1]))
            toks.append(_Tok("LP", c, col))
            i += 1
        elif c == ")":
            if opened_sentence:
                opened_sentence.pop()
            toks.append(_Tok("RP", c, col))
            i += 1
        elif c == "," and in_sentence:
            toks.append(_Tok("COMMA", c, col))
            i += 1
        elif c in _OPEN_QUOTES:
            end = min((j for j in (query.find(q, i + 1) for q in _CLOSE_QUOTES) if j >= 0), default=-1)
            if end < 0:
                raise QueryError(query, col, "unclosed quote: expected a closing '\"' for this phrase")
            toks.append(_Tok("PHRASE", query[i : end + 1], col, query[i + 1 : end]))
            i = end + 1
        elif c == "-" and i + 1 < n and not query[i + 1].isspace() and query[i + 1] not in "),":
            toks.append(_Tok("MINUS", c, col))
            i += 1
        else:
            stop = _STOP_IN_SENTENCE if in_sentence else _STOP
            j = i
            while j < n and query[j] not in stop and not query[j].isspace():
                j += 1
            if j == i:
                raise QueryError(query, col, f"unexpected {c!r}")
            toks.append(_classify(query, query[i:j], col))
            i = j
    toks.append(_Tok("END", "", n + 1))
    return toks


def _names_sentence(tok: _Tok) -> bool:
    """Whether a '(' after ``tok`` opens ``SENTENCE(`` (or ``title:SENTENCE(``)."""
    return tok.kind == "SENTENCE" or (tok.kind == "FIELD" and tok.text == "title" and tok.value == "SENTENCE")


def _classify(query: str, word: str, col: int) -> _Tok:
    if word in ("AND", "OR", "NOT", "SENTENCE"):
        return _Tok(word, word, col)
    if word == "-":
        raise QueryError(query, col, f"expected {_OPERAND} right after '-' (write -word to exclude a word)")
    if word == "NEAR" or word.startswith("NEAR/"):
        dist = word[5:]
        if not (dist.isascii() and dist.isdigit() and int(dist) > 0):
            raise QueryError(query, col, f"expected NEAR/n with n a positive whole number, found {word!r}")
        return _Tok("NEAR", word, col, dist)
    if word.startswith("@"):
        return _Tok("ALIAS", word, col, _alias_name(query, word[1:], col + 1))
    m = _FIELD_RE.fullmatch(word)
    if m:
        name = m.group(1).lower()
        if name not in KNOWN_FIELDS:
            known = ", ".join(f"{f}:" for f in KNOWN_FIELDS)
            raise QueryError(query, col, f"unknown field {m.group(1)!r}; known fields are {known}")
        return _Tok("FIELD", name, col, m.group(2))
    return _Tok("WORD", word, col)


def _alias_name(query: str, name: str, column: int) -> str:
    if not _ALIAS_NAME_RE.fullmatch(name):
        raise QueryError(
            query,
            column,
            f"expected an alias name after '@', found {name!r}: a letter or digit, "
            "then letters, digits, '_' or '-'",
        )
    return name


_STARTS_OPERAND = {"WORD", "PHRASE", "LP", "NOT", "MINUS", "FIELD", "ALIAS", "SENTENCE"}


def _describe(tok: _Tok) -> str:
    return "the end of the query" if tok.kind == "END" else repr(tok.text)


@dataclass(slots=True)
class _Budget:
    """Shared by a query's parser and those of the aliases it uses: what the expanded query may still hold,
    and the terms made so far (numbering them in reading order)."""

    operands_left: int = MAX_EXPANDED_OPERANDS
    terms: int = 0


class _AliasCycleError(QueryError):
    """An alias that uses itself; raised unchanged up to the query, where it becomes a QueryError."""


class _Parser:
    """Parses one text: a query, or an alias's text when a query (or another alias) uses it."""

    def __init__(
        self,
        query: str,
        aliases: Mapping[str, str],
        *,
        expanding: tuple[str, ...] = (),
        depth: int = 0,
        budget: _Budget | None = None,
    ) -> None:
        if len(query) > MAX_QUERY_LENGTH:
            raise QueryError(
                query[: MAX_QUERY_LENGTH + 1],
                MAX_QUERY_LENGTH + 1,
                f"query is {len(query)} characters long; the limit is {MAX_QUERY_LENGTH}",
            )
        self.query = query
        self.aliases = aliases
        #: the aliases whose text this is, outermost first, to find cycles
        self.expanding = expanding
        self.toks = _lex(query)
        self.pos = 0
        self.depth = depth
        self.budget = budget if budget is not None else _Budget()

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

    def spend(self, column: int) -> None:
        self.budget.operands_left -= 1
        if self.budget.operands_left < 0:
            raise self.error(
                column,
                f"the query is too large: more than {MAX_EXPANDED_OPERANDS} operands, aliases expanded",
            )

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
        return children[0] if len(children) == 1 else Or(tuple(children), children[0].column)

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
        return children[0] if len(children) == 1 else And(tuple(children), children[0].column)

    def parse_near(self) -> Node:
        left = self.parse_unary()
        while self.peek().kind == "NEAR":
            op = self.take()
            if not _is_literal(left):
                raise self.error(left.column, f"{op.text} needs {_LITERAL} before it{_why_not(left)}")
            self.expect_operand(op.text)
            right = self.parse_unary()
            if not _is_literal(right):
                raise self.error(right.column, f"{op.text} needs {_LITERAL} after it{_why_not(right)}")
            left = Near(left, right, int(op.value), left.column)
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
            return self.term(tok.text, tok.column)
        if tok.kind == "PHRASE":
            return self.phrase(tok)
        if tok.kind == "ALIAS":
            return self.alias(tok.value, tok.column)
        if tok.kind == "SENTENCE":
            return self.parse_sentence(tok)
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

    def parse_sentence(self, tok: _Tok) -> Node:
        """``SENTENCE(a, b, ...)``: two or more literals separated by commas."""
        if self.peek().kind != "LP":
            raise self.error(self.peek().column, "expected '(' after SENTENCE, as in SENTENCE(a, b)")
        self.take()
        self.enter(tok.column)
        operands: list[Node] = []
        after = "SENTENCE("
        while True:
            self.expect_operand(after)
            operand = self.parse_or()
            if not _is_literal(operand):
                raise self.error(operand.column, f"a SENTENCE operand must be {_LITERAL}{_why_not(operand)}")
            operands.append(operand)
            nxt = self.take()
            if nxt.kind == "RP":
                break
            if nxt.kind != "COMMA":
                if nxt.kind == "END":
                    raise self.error(tok.column, "this SENTENCE( is never closed: expected ')'")
                raise self.error(nxt.column, f"expected ',' or ')' in SENTENCE( ), found {nxt.text!r}")
            after = "','"
        if len(operands) < 2:
            raise self.error(
                tok.column, "SENTENCE needs two or more operands separated by commas: SENTENCE(a, b)"
            )
        self.depth -= 1
        return Sentence(tuple(operands), tok.column)

    def parse_field(self, tok: _Tok) -> Node:
        name, value = tok.text, tok.value
        value_col = tok.column + len(name) + 1
        if value.startswith("-"):
            raise self.error(value_col, f"write -{name}:{value[1:]} to exclude, not {name}:{value}")
        if name == "title":
            if value == "SENTENCE" and self.peek().kind == "LP":
                return InTitle(self.parse_sentence(_Tok("SENTENCE", value, value_col)), tok.column)
            if value.startswith("@"):
                return InTitle(
                    self.alias(_alias_name(self.query, value[1:], value_col + 1), value_col), tok.column
                )
            if value:
                return InTitle(self.term(value, value_col), tok.column)
            if self.peek().kind not in ("WORD", "PHRASE", "LP", "ALIAS", "SENTENCE"):
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
        self.spend(tok.column)
        return FieldFilter(name, value, tok.column)

    def term(self, word: str, column: int) -> Term:
        """A bare word (maybe ``prefix*``); several tokens (``jong-un``, ``习近平``) act as a phrase."""
        self.spend(column)
        tokens, prefix = _word_tokens(self.query, word, column)
        return Term(word, tuple(tokens), tuple(prefix), column, self.next_order())

    def phrase(self, tok: _Tok) -> Term:
        """A quoted phrase: its words in order, each whole unless it ends in '*'."""
        self.spend(tok.column)
        tokens: list[str] = []
        prefix: list[bool] = []
        for m in re.finditer(r"\S+", tok.value):
            t, p = _word_tokens(self.query, m.group(), tok.column + 1 + m.start())
            tokens += t
            prefix += p
        if not tokens:
            raise self.error(tok.column, "empty phrase: expected words between the quotes")
        return Term(tok.text, tuple(tokens), tuple(prefix), tok.column, self.next_order())

    def next_order(self) -> int:
        self.budget.terms += 1
        return self.budget.terms

    def alias(self, name: str, column: int) -> Alias:
        """``@name``: the alias's text parsed by a parser of its own, as a group in this place."""
        self.spend(column)
        if name in self.expanding:
            cycle = " → ".join(f"@{n}" for n in (*self.expanding[self.expanding.index(name) :], name))
            raise _AliasCycleError(self.query, column, f"aliases use each other in a cycle: {cycle}")
        text = self.aliases.get(name)
        if text is None:
            raise self.error(column, _unknown_alias(name, self.aliases))
        self.enter(column)
        try:
            inner = _Parser(
                text, self.aliases, expanding=(*self.expanding, name), depth=self.depth, budget=self.budget
            )
            child = inner.parse()
        except _AliasCycleError as exc:
            raise _AliasCycleError(self.query, column, exc.message) from None
        except QueryError as exc:
            raise self.error(column, f"in alias @{name}, column {exc.column}: {exc.message}") from None
        self.depth -= 1
        return Alias(name, child, column)


def _unknown_alias(name: str, aliases: Mapping[str, str]) -> str:
    by_folded = {a.casefold(): a for a in aliases}
    close = difflib.get_close_matches(name.casefold(), list(by_folded), n=3, cutoff=0.5)
    if not close:
        return f"unknown alias @{name}" + ("" if aliases else ": no aliases are defined")
    return f"unknown alias @{name}; did you mean {' or '.join('@' + by_folded[c] for c in close)}?"


def _is_literal(node: Node) -> bool:
    """Whether ``node`` can be a NEAR or SENTENCE operand: terms, maybe in OR groups or aliases."""
    if isinstance(node, Term):
        return True
    if isinstance(node, Alias):
        return _is_literal(node.child)
    return isinstance(node, Or) and all(_is_literal(c) for c in node.children)


def _why_not(node: Node) -> str:
    return f" (@{node.name} is more than that)" if isinstance(node, Alias) else ""


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


def _positive(node: Node) -> bool:
    """Whether ``node`` can only be true when some term occurs (negations and filters alone cannot)."""
    if isinstance(node, Term | Near | Sentence):
        return True
    if isinstance(node, Not | FieldFilter):
        return False
    if isinstance(node, InTitle | Alias):
        return _positive(node.child)
    if isinstance(node, And):
        return any(_positive(c) for c in node.children)
    return all(_positive(c) for c in node.children)


def _negative_alternative(node: Node) -> Node | None:
    """The first OR alternative without a positive term, if that is why the query is not positive.

    The search stops at an alias: its nodes' columns are in its own text, so the alias itself is named.
    """
    if isinstance(node, Or):
        return next((c for c in node.children if not _positive(c)), None)
    if isinstance(node, InTitle):
        return _negative_alternative(node.child)
    if isinstance(node, Alias):
        return node if _negative_alternative(node.child) is not None else None
    if isinstance(node, And):
        for c in node.children:
            found = _negative_alternative(c)
            if found is not None:
                return found
    return None


def _require_positive(query: str, root: Node, what: str = "query") -> None:
    if _positive(root):
        return
    culprit = _negative_alternative(root)
    if isinstance(culprit, Alias):
        raise QueryError(
            query,
            culprit.column,
            f"@{culprit.name} has an OR alternative that only excludes, so this {what} would match "
            "almost every article",
        )
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
        f"the {what} needs at least one positive term (a word or phrase that must "
        "occur); negations and field filters alone would match almost every article",
    )


def _parse(query: str, aliases: Mapping[str, str] | None, expanding: tuple[str, ...], what: str) -> Node:
    try:
        root = _Parser(query, aliases or {}, expanding=expanding).parse()
    except _AliasCycleError as exc:
        raise QueryError(exc.query, exc.column, exc.message) from None
    _require_positive(query, root, what)
    return root


def parse_query(query: str, aliases: Mapping[str, str] | None = None) -> Node:
    """Parse ``query`` into its syntax tree, aliases expanded; raise :class:`QueryError` if malformed or never
    selective."""
    return _parse(query, aliases, (), "query")


def walk(node: Node) -> Iterator[Node]:
    """``node`` and every node below it, parents first, in reading order (aliases expanded)."""
    yield node
    if isinstance(node, And | Or | Sentence):
        for c in node.children:
            yield from walk(c)
    elif isinstance(node, Near):
        yield from walk(node.left)
        yield from walk(node.right)
    elif isinstance(node, Not | InTitle | Alias):
        yield from walk(node.child)


def _positive_terms(node: Node, out: list[Term]) -> None:
    if isinstance(node, Term):
        out.append(node)
    elif isinstance(node, And | Or | Sentence):
        for c in node.children:
            _positive_terms(c, out)
    elif isinstance(node, Near):
        _positive_terms(node.left, out)
        _positive_terms(node.right, out)
    elif isinstance(node, InTitle | Alias):
        _positive_terms(node.child, out)


class CompiledQuery:
    """A parsed query, aliases expanded, ready to be evaluated against many prepared documents."""

    __slots__ = ("_terms", "aliases_used", "root", "source")

    def __init__(self, source: str, root: Node) -> None:
        self.source = source
        self.root = root
        found: list[Term] = []
        _positive_terms(root, found)
        self._terms = found
        #: the aliases the query uses, directly or through other aliases
        self.aliases_used = frozenset(n.name for n in walk(root) if isinstance(n, Alias))

    def terms(self) -> list[str]:
        """Normalised positive literals (prefixes without '*'), deduplicated, for a multi-pattern pre-filter.

        Tokens are joined by one space (none between CJK characters): compare against text normalised the
        same way, e.g. ``join_tokens(words(title + " " + text))``.
        """
        return list(dict.fromkeys(join_tokens(t.tokens) for t in self._terms))

    def __repr__(self) -> str:
        return f"CompiledQuery({self.source!r})"


def compile_query(query: str, aliases: Mapping[str, str] | None = None) -> CompiledQuery:
    """Parse ``query`` once for repeated evaluation, ``@name`` standing for ``aliases[name]``.

    Raises :class:`QueryError`: for a malformed query, an unknown alias (at its ``@``, with close names), an
    error inside an alias's text (at the ``@``, naming the alias and the column there), or aliases that use
    each other in a cycle.
    """
    return CompiledQuery(query, parse_query(query, aliases))


def check_alias(name: str, text: str, aliases: Mapping[str, str] | None = None) -> CompiledQuery:
    """Check an alias definition before storing it; returns its text compiled, raises :class:`QueryError`.

    The name must be a valid ``@name``; the text must parse on its own with the other ``aliases`` (which may
    hold this alias's old or new text: its own text is what counts), use no alias that leads back to it, and
    not be negation-only. Errors in the text give columns in the text.
    """
    if not _ALIAS_NAME_RE.fullmatch(name):
        raise QueryError(
            name,
            1,
            "an alias name is a letter or digit, then letters, digits, '_' or '-' (as in @xi-jinping)",
        )
    others = {**(aliases or {}), name: text}
    return CompiledQuery(text, _parse(text, others, (name,), "alias"))
