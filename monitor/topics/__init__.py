"""Watch topics: the query language, and matching articles against it.

``compile_query`` parses a query once, aliases expanded (raising :class:`~monitor.errors.QueryError`),
``prepare`` tokenises an article once, and ``evaluate`` combines the two by dictionary lookups, returning a
scored, explained :class:`Match` or None. A :class:`TopicIndex` holds many topics and evaluates, per article,
only those its presearch finds can match.
"""

from monitor.topics.index import TopicIndex
from monitor.topics.match import Clause, Document, Match, PreparedDocument, evaluate, prepare, summarize
from monitor.topics.query import (
    KNOWN_FIELDS,
    Alias,
    And,
    CompiledQuery,
    FieldFilter,
    InTitle,
    Near,
    Node,
    Not,
    Or,
    Sentence,
    Term,
    check_alias,
    compile_query,
    parse_query,
)
from monitor.topics.text import normalize, tokenize

__all__ = [
    "KNOWN_FIELDS",
    "Alias",
    "And",
    "Clause",
    "CompiledQuery",
    "Document",
    "FieldFilter",
    "InTitle",
    "Match",
    "Near",
    "Node",
    "Not",
    "Or",
    "PreparedDocument",
    "Sentence",
    "Term",
    "TopicIndex",
    "check_alias",
    "compile_query",
    "evaluate",
    "normalize",
    "parse_query",
    "prepare",
    "summarize",
    "tokenize",
]
