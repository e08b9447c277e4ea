"""Watch topics: the query language, and matching articles against it.

``compile_query`` parses a query once (raising :class:`~monitor.errors.QueryError`), ``prepare`` tokenises an
article once, and ``evaluate`` combines the two by dictionary lookups, returning a scored, explained
:class:`Match` or None.
"""

from monitor.topics.match import Document, Match, PreparedDocument, evaluate, prepare
from monitor.topics.query import (
    KNOWN_FIELDS,
    And,
    CompiledQuery,
    FieldFilter,
    InTitle,
    Near,
    Node,
    Not,
    Or,
    Term,
    compile_query,
    parse_query,
)
from monitor.topics.text import normalize, tokenize

__all__ = [
    "KNOWN_FIELDS",
    "And",
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
    "Term",
    "compile_query",
    "evaluate",
    "normalize",
    "parse_query",
    "prepare",
    "tokenize",
]
