"""Tests of monitor.topics: the watch-topic query language, matching, scores and snippets."""

from __future__ import annotations

import bisect
import dataclasses
import functools
import json
import math
import random
import re
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import monitor.topics
import monitor.topics.index
from monitor.errors import QueryError
from monitor.topics import (
    Alias,
    And,
    Clause,
    Document,
    FieldFilter,
    InTitle,
    Match,
    Near,
    Not,
    Or,
    Sentence,
    Term,
    TopicIndex,
    check_alias,
    compile_query,
    evaluate,
    parse_query,
    prepare,
)
from monitor.topics.index import KEY_BYTES, _halves, _KeyTable, _TokenSearch, requirements
from monitor.topics.match import FALSE, PreparedDocument, _Presearch, final_score, final_scores, trigger
from monitor.topics.text import line_breaks, sentence_breaks, token_texts, tokenize, word_starts

#: the demo/test "Xi–Putin" topic, and the score a page must reach to count as about a Xi–Putin meeting
XI_PUTIN_QUERY = '("xi jinping" OR xi OR 习近平 OR "си цзиньпин") AND putin*'
XI_PUTIN_MIN_SCORE = 0.4

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def run(
    query: str, text: str = "", title: str = "", aliases: dict[str, str] | None = None, **attrs: str
) -> Match | None:
    return evaluate(compile_query(query, aliases), prepare(Document(title=title, text=text, **attrs)))


def hits(
    query: str, text: str = "", title: str = "", aliases: dict[str, str] | None = None, **attrs: str
) -> bool:
    return run(query, text, title, aliases, **attrs) is not None


# --- words, normalisation ---------------------------------------------------------------------------


def test_bare_word_matches_whole_words_only():
    assert hits("putin", "Vladimir Putin arrived.")
    assert not hits("putin", "Rasputin arrived.")
    assert not hits("put", "Vladimir Putin arrived.")


def test_case_and_accent_insensitive():
    assert hits("zurich", "Talks in Zürich ended.")
    assert hits("Zürich", "talks in ZURICH ended")
    assert hits("путин", "ПУТИН ПРИБЫЛ В ПЕКИН")
    assert hits("ПУТИН", "путин прибыл")
    assert hits("αθηνα", "Στην Αθήνα σήμερα")
    assert hits("strasse", "Straße 5")
    assert not hits("zurich", "Talks in Bern ended.")


def test_apostrophes_keep_words_whole_and_drop_possessives():
    assert not hits("xi", "A factory in Xi'an opened.")
    assert not hits("xi", "A factory in Xi’an opened.")
    assert hits("xi'an", "A factory in Xi’an opened.")
    assert hits("putin", "Putin's visit")
    assert hits("putin", "Putin’s visit")
    assert hits("Putin's", "Putin visited")


def test_prefix():
    assert hits("putin*", "Vladimir Putina and Putinu")
    assert hits("putin*", "Putin's visit")
    assert hits("путин*", "Встреча с Путиным")
    assert not hits("putin*", "Rasputin")
    m = run("putin*", "Putina met Putinu.")
    assert m is not None and m.snippet == "«Putina» met «Putinu»."


def test_phrase_is_consecutive_words():
    assert hits('"xi jinping"', "President Xi Jinping said")
    assert hits('"xi jinping"', "President XI  JINPING, said")
    assert not hits('"xi jinping"', "Jinping Xi said")
    assert not hits('"xi jinping"', "Xi said Jinping")
    assert not hits('"xi jin"', "Xi Jinping said")
    assert hits('"xi jin*"', "Xi Jinping said")
    assert hits("jong-un", "Kim Jong-un arrived")
    assert hits('"kim jong un"', "Kim Jong-un arrived")


def test_cjk_terms_match_as_substrings():
    text = "国家主席习近平今天在北京会见了俄罗斯总统普京。"
    assert hits("习近平", text)
    assert hits('"习近平"', text)
    assert hits("习近平 AND 普京", text)
    assert not hits("习近平", "国家主席习近今天在北京")
    m = run("普京", text + "普京说。")
    assert m is not None and m.snippet.count("«普京»") == 2
    assert hits("대통령", "윤석열 대통령은 오늘")


# --- operators ----------------------------------------------------------------------------------------


def test_and_or_not():
    text = "Putin met Xi in Moscow."
    assert hits("putin AND xi", text)
    assert hits("putin xi", text)
    assert not hits("putin AND modi", text)
    assert hits("modi OR xi", text)
    assert not hits("modi OR trump", text)
    assert hits("putin NOT modi", text)
    assert hits("putin -modi", text)
    assert not hits("putin NOT xi", text)
    assert not hits("putin -xi", text)
    assert hits("putin -(modi OR trump)", text)
    assert not hits('putin -"met xi"', text)


def test_lowercase_operators_are_words():
    assert not hits("xi and putin", "Xi, Putin")
    assert hits("xi and putin", "Xi and Putin")
    assert not hits("xi or putin", "Xi met")


def test_precedence():
    assert parse_query("a OR b c") == parse_query("a OR (b AND c)")
    assert parse_query("a OR b c") == Or(
        (Term("a", ("a",), (False,)), And((Term("b", ("b",), (False,)), Term("c", ("c",), (False,)))))
    )
    assert parse_query("NOT a b") == parse_query("(NOT a) AND b")
    assert isinstance(parse_query("a b NEAR/3 c"), And)
    assert isinstance(parse_query("a b NEAR/3 c").children[1], Near)  # type: ignore[union-attr]
    assert hits("a OR b c", "a")
    assert not hits("a OR b c", "b")


def test_near_in_and_out_of_range():
    text = "Putin said on Tuesday that Xi would visit. " + "filler " * 30 + "Modi came."
    assert hits("putin NEAR/5 xi", text)
    assert hits("xi NEAR/5 putin", text)
    assert not hits("putin NEAR/3 xi", text)
    assert not hits("putin NEAR/10 modi", text)
    assert hits('(xi OR "narendra modi") NEAR/2 visit', text)
    assert not hits("putin NEAR/5 putin", "putin")
    close = run("putin NEAR/10 xi", "Putin Xi")
    far = run("putin NEAR/10 xi", "Putin a b c d e f g h Xi")
    assert close is not None and far is not None and close.score > far.score
    assert parse_query("a NEAR/3 b").distance == 3  # type: ignore[union-attr]


def test_title_restriction():
    assert hits("title:putin", "", title="Putin in Beijing")
    assert not hits("title:putin", "Putin in Beijing", title="Talks")
    assert hits('title:"putin in"', "", title="Putin in Beijing")
    assert hits("title:(xi OR putin) beijing", "Beijing talks", title="Putin in Beijing")
    assert not hits("title:(xi OR modi)", "Xi", title="Putin in Beijing")
    assert parse_query("title:putin*") == InTitle(Term("putin*", ("putin",), (True,)))


def test_field_filters():
    q = "putin site:kremlin.ru"
    assert parse_query(q) == And((Term("putin", ("putin",), (False,)), FieldFilter("site", "kremlin.ru")))
    assert hits(q, "Putin", site="en.kremlin.ru")
    assert hits(q, "Putin", site="https://www.kremlin.ru/events")
    assert not hits(q, "Putin", site="notkremlin.ru")
    assert not hits(q, "Putin")
    assert hits("putin lang:en", "Putin", lang="en-GB")
    assert not hits("putin lang:en", "Putin", lang="ru")
    assert hits('putin feed:"Kremlin News"', "Putin", feed="kremlin news")
    assert hits("putin -site:tass.ru", "Putin", site="kremlin.ru")


# --- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "column", "message"),
    [
        ("putin AND", 10, "expected a term, phrase or '(' after AND"),
        ("xi AND OR putin", 8, "expected a term, phrase or '(' after AND, found 'OR'"),
        ('putin "xi jinping', 7, "unclosed quote"),
        ("(xi OR putin", 1, "never closed"),
        ("xi OR putin)", 12, "unbalanced ')'"),
        ("", 1, "empty query"),
        ("   ", 1, "empty query"),
        ("xi NEAR/x putin", 4, "NEAR/n with n a positive whole number"),
        ("xi NEAR/0 putin", 4, "NEAR/n with n a positive whole number"),
        ("xi NEAR putin", 4, "NEAR/n"),
        ("url:putin", 1, "unknown field 'url'; known fields are title:, site:, lang:, feed:"),
        ("xi *", 4, "'*' alone"),
        ("xi p*", 4, "too short"),
        ("pu*tin", 3, "only allowed at the end"),
        ("xi ()", 5, "empty parentheses"),
        ("OR xi", 1, "at the start"),
        ('xi ""', 4, "empty phrase"),
        ("xi - putin", 4, "after '-'"),
        ("(a AND b) NEAR/3 c", 2, "NEAR/3 needs a term"),
        ("title:", 7, "after title:"),
    ],
)
def test_errors_name_column_and_expectation(query, column, message):
    with pytest.raises(QueryError) as info:
        compile_query(query)
    assert info.value.column == column, info.value
    assert message in info.value.message
    assert str(info.value).startswith(f"column {column}: ")


@pytest.mark.parametrize("query", ["-putin", "NOT putin", "NOT a AND NOT b", "putin OR -xi", "site:a.ru"])
def test_negation_only_is_refused(query):
    with pytest.raises(QueryError, match="positive term"):
        compile_query(query)


@pytest.mark.parametrize(
    "query",
    [
        "xi " * 1000,
        "(" * 5000 + "x" + ")" * 5000,
        "(" * 40 + "x" + ")" * 40,
        "NOT " * 40 + "x",
        "- " * 1500,
        '"' * 1999,
        "title:(" * 40 + "x",
    ],
)
def test_huge_or_deep_query_refused_quickly(query):
    started = time.perf_counter()
    with pytest.raises(QueryError):
        compile_query(query)
    assert time.perf_counter() - started < 0.5


def test_deep_but_allowed_query():
    assert hits("(" * 30 + "x" + ")" * 30, "x")


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_compile_only_raises_query_error(query):
    try:
        compiled = compile_query(query)
    except QueryError as exc:
        assert 1 <= exc.column <= len(query) + 1
        return
    assert compiled.terms()
    evaluate(compiled, prepare(Document(title=query, text=query)))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "xi",
                "Putin*",
                '"xi jinping"',
                "AND",
                "OR",
                "NOT",
                "-",
                "(",
                ")",
                "NEAR/2",
                "title:",
                "site:x.org",
                "习近平",
                "-a",
                '"',
            ]
        )
    ).map(" ".join)
)
def test_fuzz_operator_soup(query):
    try:
        compiled = compile_query(query)
    except QueryError:
        return
    evaluate(compiled, prepare(Document(title="Xi Jinping", text="Putin met 习近平 and Xi. a")))


# --- evaluation, scores, snippets ---------------------------------------------------------------------


def test_match_explains_terms_and_snippet():
    m = run('("xi jinping" OR xi) putin* -modi', "Vladimir Putin met President Xi Jinping in Moscow today.")
    assert m is not None
    assert m.matched == ['"xi jinping"', "xi", "putin*"]
    assert "«Putin»" in m.snippet and "«Xi Jinping»" in m.snippet
    assert 0 < m.score <= 1


def test_snippet_is_a_window_of_the_original_body():
    body = "Opening words.   " + "word " * 200 + "Here\n\n Putin   spoke at length. " + "tail " * 200
    m = run("putin", body, title="Unrelated")
    assert m is not None
    assert m.snippet.startswith("…") and m.snippet.endswith("…")
    assert "«Putin» spoke at length." in m.snippet
    assert "  " not in m.snippet and "\n" not in m.snippet
    assert 150 <= len(m.snippet) <= 230
    title_only = run("putin", "Nothing here.", title="Putin speaks")
    assert title_only is not None and title_only.snippet == "«Putin» speaks"


def test_title_and_early_matches_score_higher_than_a_passing_mention():
    query = "xi AND putin"
    short = run(query, "Putin and Xi met in Moscow to discuss trade.", title="Putin meets Xi")
    passing = run(
        query,
        "The economy grew. " * 600 + "Putin and Xi were mentioned once. " + "More. " * 300,
        title="Quarterly economic report",
    )
    assert short is not None and passing is not None
    assert short.score > passing.score
    assert passing.score < 0.3
    assert short.score > 0.6
    once = run("putin", "Putin spoke.")
    assert once is not None and 0.3 <= once.score < 0.5


def test_repetition_raises_the_score_with_diminishing_returns():
    scores = [
        run("putin", "Putin spoke. " + "Words go here and there today. Putin again. " * i) for i in range(4)
    ]
    values = [m.score for m in scores if m is not None]
    assert values == sorted(values) and len(set(values)) == 4 and values[-1] < 0.8


def test_terms_for_prefilter():
    q = compile_query('("Xi Jinping" OR 习近平) AND Putin* -Modi title:Zürich')
    assert q.terms() == ["xi jinping", "习近平", "putin", "zurich"]
    assert q.source.startswith('("Xi')


def test_prepared_document_is_reusable_across_queries():
    doc = prepare(Document(title="Putin meets Xi", text="Talks in Moscow."))
    assert evaluate(compile_query("putin"), doc) is not None
    assert evaluate(compile_query("moscow"), doc) is not None
    assert evaluate(compile_query("beijing"), doc) is None
    tree = parse_query("-a b")
    assert isinstance(tree, And) and isinstance(tree.children[0], Not)


# --- real text ----------------------------------------------------------------------------------------


def test_xi_putin_topic_on_kremlin_pages():
    truth_file = CORPUS / "articles" / "kremlin" / "ground-truth.json"
    if not truth_file.exists():
        pytest.skip(f"shared corpus not present at {CORPUS}: the kremlin ground truth lives outside the repo")
    truth = json.loads(truth_file.read_text(encoding="utf-8"))
    query = compile_query(XI_PUTIN_QUERY)
    wrong = []
    for page, item in truth.items():
        m = evaluate(query, prepare(Document(title=item["title"], text=item["articleBody"])))
        score = m.score if m else 0.0
        wanted = "xi_putin" in item["roles"]
        if wanted != (score >= XI_PUTIN_MIN_SCORE):
            wrong.append((page, item["roles"], score, item["title"]))
    assert len(truth) == 42
    assert not wrong


# --- tokenising fast, sentences ---------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("ab Z'’ʼ_-.!?\n“”é習近平\u0301ßﬁ9…。Mr"), max_size=60)
    | st.text(max_size=60)
)
def test_fast_token_texts_are_the_tokens(text):
    assert token_texts(text) == [t.text for t in tokenize(text)]


def test_fast_token_texts_on_the_corpus():
    texts = [item["text"] for name in ("articles.jsonl", "feed_items.jsonl") for item in _corpus_items(name)]
    for text in texts:
        assert token_texts(text) == [t.text for t in tokenize(text)]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(["Mr", "U", ".", " ", "!", "?", "…", "ab", "B", "\n", "。", "'"])).map("".join)
)
def test_sentence_breaks_never_cut_a_word(text):
    breaks = sentence_breaks(text)
    assert breaks == sorted(set(breaks)) and all(0 < b < len(text) for b in breaks)
    pieces = [text[a:b] for a, b in zip([0, *breaks], [*breaks, len(text)], strict=True)]
    assert [t for piece in pieces for t in token_texts(piece)] == token_texts(text)


def test_sentence_splits_on_stops_and_lines_but_not_abbreviations():
    text = (
        "Mr. Putin met Xi in the U.S. capital. They spoke about gas! J. K. Rowling wrote… and wrote.\n"
        "A new line 习近平说。普京说"
    )
    breaks = sentence_breaks(text)
    pieces = [text[a:b].strip() for a, b in zip([0, *breaks], [*breaks, len(text)], strict=True)]
    pieces = [p for p in pieces if p]  # a line break after a full stop is a second break
    assert pieces == [
        "Mr. Putin met Xi in the U.S. capital.",
        "They spoke about gas!",
        "J. K. Rowling wrote… and wrote.",
        "A new line 习近平说。",
        "普京说",
    ]


def _sentences_of_the_whole_text(text: str) -> list[int]:
    """The first token of each sentence, then one past the last token: from the breaks of the whole text."""
    breaks = sentence_breaks(text)
    pieces = [text[a:b] for a, b in zip([0, *breaks], [*breaks, len(text)], strict=True)]
    starts = [0]
    for piece in pieces[:-1]:
        count = starts[-1] + len(token_texts(piece))
        if count > starts[-1]:
            starts.append(count)
    return [*dict.fromkeys(starts), len(token_texts(text)) + 1]


def _same_sentences_line_by_line(text: str) -> None:
    bounds = _sentences_of_the_whole_text(text)
    sentences = prepare(Document(title="", text=text)).sentences(1)
    for position in range(bounds[-1] - 1):
        i = bisect.bisect_right(bounds, position) - 1
        assert sentences.around(position) == (bounds[i], bounds[i + 1]), position


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(["a", " ", "\n", "\r", "é", "习", "\u2028", ".", "\U0001f600"])))
def test_line_breaks_are_the_runs_of_line_break_characters(text):
    starts, ends = line_breaks(text)
    expected = [m.span() for m in re.finditer("[\r\n\u2028\u2029]+", text)]
    if expected and expected[-1][1] == len(text):
        expected.pop()
    assert list(zip(starts.tolist(), ends.tolist(), strict=True)) == expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(["Mr", "U", ".", " ", "!", "?", "…", "ab", "B", "\n", "\r\n", "。", "'", "é", "Ж"])
    ).map("".join)
)
def test_sentences_found_line_by_line_are_those_of_the_whole_text(text):
    _same_sentences_line_by_line(text)


def test_sentences_found_line_by_line_on_the_corpus():
    for item in _corpus_items("articles.jsonl")[::7]:
        _same_sentences_line_by_line(item["text"])


# --- SENTENCE ---------------------------------------------------------------------------------------------


def test_sentence_needs_all_operands_in_one_sentence():
    text = "Mr. Putin met Xi Jinping in the U.S. capital. Gas was discussed later.\\nXi left."
    text = text.replace("\\\\n", "\\n")
    assert hits("SENTENCE(putin, xi)", text)
    assert hits("SENTENCE(putin, capital, xi)", text)
    assert not hits("SENTENCE(putin, gas)", text)
    assert hits("putin gas", text)
    assert not hits("SENTENCE(gas, left)", "Gas was discussed.\nXi left.")
    assert hits('SENTENCE("xi jinping", putin*, (capital OR city))', text)
    assert hits("SENTENCE(@xi, putin)", text, aliases={"xi": 'xi OR "xi jinping"'})
    assert hits("title:SENTENCE(putin, xi)", "", title="Putin meets Xi")
    assert not hits("title:SENTENCE(putin, xi)", "Putin meets Xi", title="Talks")
    assert hits("SENTENCE(习近平, 普京)", "习近平会见普京。") and not hits(
        "SENTENCE(习近平, 普京)", "习近平说。普京说"
    )


def test_sentence_scores_like_near_closer_is_higher():
    close = run("SENTENCE(putin, xi)", "Putin and Xi spoke. Filler words here.")
    far = run("SENTENCE(putin, xi)", "Putin said many things to reporters on the day that Xi arrived.")
    both = run("putin xi", "Putin and Xi spoke. Filler words here.")
    assert close is not None and far is not None and both is not None
    assert close.score > far.score >= both.score
    assert parse_query("SENTENCE(a, b, c)") == Sentence(
        (Term("a", ("a",), (False,)), Term("b", ("b",), (False,)), Term("c", ("c",), (False,)))
    )


def test_commas_separate_only_inside_sentence():
    assert hits("xi,putin", "Xi Putin")  # outside SENTENCE( ) a comma is part of the word, as before
    assert not hits("xi,putin", "Xi met Putin")
    assert parse_query("SENTENCE((a OR b), c)").children[0] == Or(  # type: ignore[union-attr]
        (Term("a", ("a",), (False,)), Term("b", ("b",), (False,)))
    )


@pytest.mark.parametrize(
    ("query", "column", "message"),
    [
        ("SENTENCE(putin)", 1, "two or more operands"),
        ("SENTENCE(a b, c)", 10, "a SENTENCE operand must be a term, phrase, @alias or (a OR b) group"),
        ("SENTENCE(a, -b)", 13, "a SENTENCE operand must be"),
        ("SENTENCE xi", 10, "expected '(' after SENTENCE"),
        ("SENTENCE(xi,", 13, "after ','"),
        ("SENTENCE(xi, putin", 1, "never closed"),
        ("SENTENCE()", 10, "after SENTENCE("),
        ("SENTENCE(a, @x)", 13, "(@x is more than that)"),
        ("SENTENCE(a, b) NEAR/2 c", 1, "NEAR/2 needs a term"),
    ],
)
def test_sentence_errors(query, column, message):
    with pytest.raises(QueryError) as info:
        compile_query(query, {"x": "a b"})
    assert info.value.column == column, info.value
    assert message in info.value.message


def test_near_works_across_phrases_groups_and_aliases():
    text = "President Xi Jinping met Vladimir Putin in Moscow."
    aliases = {"xi": 'xi OR "xi jinping" OR 习近平', "leaders": "@xi OR putin*"}
    assert hits('"xi jinping" NEAR/3 "vladimir putin"', text)
    assert hits("@xi NEAR/3 putin", text, aliases=aliases)
    assert not hits("@xi NEAR/1 moscow", text, aliases=aliases)
    assert hits("(moscow OR beijing) NEAR/2 @leaders", text, aliases=aliases)
    with pytest.raises(QueryError, match=r"NEAR/3 needs .* \(@both is more than that\)"):
        compile_query("@both NEAR/3 x", {"both": "a AND b"})


# --- aliases ----------------------------------------------------------------------------------------------

ALIASES = {
    "xi": 'xi OR "xi jinping" OR 习近平 OR "си цзиньпин"',
    "putin": "putin* OR путин*",
    "leaders": "@xi OR @putin",
    "spam": "casino OR lottery",
}


def test_alias_stands_for_its_query_as_a_group():
    query = compile_query("@xi AND putin*", ALIASES)
    assert query.root == And((Alias("xi", parse_query(ALIASES["xi"])), parse_query("putin*")))
    assert query.aliases_used == frozenset({"xi"})
    assert hits("@xi AND putin*", "Си Цзиньпин и Putin", aliases=ALIASES)
    assert hits("@xi AND @putin", "Си Цзиньпин и Путин", aliases=ALIASES)
    assert hits("@xi AND putin*", "国家主席习近平会见Putin", aliases=ALIASES)
    assert not hits("@xi AND putin*", "Xi Jinping spoke", aliases=ALIASES)
    # the group binds tighter than the AND around it: @spam is "(casino OR lottery)"
    assert hits("putin -@spam", "Putin spoke", aliases=ALIASES)
    assert not hits("putin -@spam", "Putin spoke at the lottery", aliases=ALIASES)
    assert hits("title:@xi", "", title="Xi speaks", aliases=ALIASES)
    assert not hits("title:@xi", "Xi speaks", title="Talks", aliases=ALIASES)


def test_aliases_may_use_aliases():
    query = compile_query("@leaders gas", ALIASES)
    assert query.aliases_used == frozenset({"leaders", "xi", "putin"})
    assert hits("@leaders gas", "Путин about gas", aliases=ALIASES)
    assert not hits("@leaders gas", "Modi about gas", aliases=ALIASES)
    assert compile_query("putin", ALIASES).aliases_used == frozenset()


@pytest.mark.parametrize(
    ("aliases", "query", "cycle"),
    [
        ({"a": "x OR @a"}, "@a", "@a → @a"),
        ({"a": "@b", "b": "x @c", "c": "y OR @a"}, "putin @a", "@a → @b → @c → @a"),
        ({"a": "@b", "b": "(x OR @b)"}, "@a", "@b → @b"),
    ],
)
def test_alias_cycle_is_named(aliases, query, cycle):
    with pytest.raises(QueryError) as info:
        compile_query(query, aliases)
    assert "cycle" in info.value.message and cycle in info.value.message
    assert info.value.column == query.index("@") + 1


def test_unknown_alias_is_reported_at_its_at_sign_with_close_names():
    with pytest.raises(QueryError) as info:
        compile_query("putin AND @leader", ALIASES)
    assert info.value.column == 11
    assert info.value.message == "unknown alias @leader; did you mean @leaders?"
    with pytest.raises(QueryError, match=r"^column 1: unknown alias @zzz\n"):
        compile_query("@zzz", ALIASES)
    with pytest.raises(QueryError, match="no aliases are defined"):
        compile_query("@xi putin")


def test_error_inside_an_alias_names_it_and_its_column():
    aliases = {**ALIASES, "broken": 'xi OR "xi jinping', "outer": "a OR @broken"}
    with pytest.raises(QueryError) as info:
        compile_query("putin @broken", aliases)
    assert info.value.column == 7
    assert info.value.message.startswith("in alias @broken, column 7: unclosed quote")
    with pytest.raises(QueryError) as info:
        compile_query("@outer", aliases)
    assert info.value.column == 1
    assert info.value.message.startswith("in alias @outer, column 6: in alias @broken, column 7: unclosed")
    with pytest.raises(
        QueryError, match=r"in alias @bad, column 1: expected a term, phrase or '\(' at the start"
    ):
        compile_query("@bad", {"bad": "OR x"})


@pytest.mark.parametrize("query", ["@", "@_x", "@x's", "title:@-x"])
def test_alias_names_are_checked(query):
    with pytest.raises(QueryError, match="alias name"):
        compile_query(query, ALIASES)


def test_alias_expansion_is_bounded():
    aliases = {f"a{i}": f"@a{i + 1} @a{i + 1}" for i in range(20)} | {"a20": "x"}
    started = time.perf_counter()
    with pytest.raises(QueryError):
        compile_query("@a0", aliases)
    assert time.perf_counter() - started < 0.5
    aliases = {f"f{i}": f"@f{i + 1} @f{i + 1}" for i in range(20)} | {"f20": "site:x.org"}
    with pytest.raises(QueryError):
        compile_query("putin @f0", aliases)


def test_negation_only_alias_is_fine_inside_a_query_but_not_alone():
    assert hits("putin @nospam", "Putin", aliases={"nospam": "-casino"})
    with pytest.raises(QueryError, match="positive term"):
        compile_query("@nospam", {"nospam": "-casino"})
    with pytest.raises(QueryError, match="@either has an OR alternative that only excludes"):
        compile_query("putin OR @either", {"either": "x OR -y"})


def test_check_alias():
    checked = check_alias("xi", ALIASES["xi"], ALIASES)
    assert checked.source == ALIASES["xi"]
    assert check_alias("leaders2", "@leaders OR modi", ALIASES).aliases_used == frozenset(
        {"leaders", "xi", "putin"}
    )
    with pytest.raises(QueryError, match="positive term"):
        check_alias("nospam", "-casino -lottery", ALIASES)
    with pytest.raises(QueryError) as info:
        check_alias("xi", "@leaders OR x", ALIASES)  # xi is used by leaders: redefining it this way loops
    assert "@xi → @leaders → @xi" in info.value.message and info.value.column == 1
    with pytest.raises(QueryError) as info:
        check_alias("new", 'a OR "b', ALIASES)
    assert info.value.column == 6 and info.value.query == 'a OR "b'
    with pytest.raises(QueryError, match="alias name"):
        check_alias("bad name", "x", ALIASES)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["a", "b", "c", "xi"]),
        st.lists(
            st.sampled_from(["x", "@a", "@b", "@c", "@xi", "@d", "OR", "AND", "-", "(", ")", '"p q"']),
            max_size=6,
        ).map(" ".join),
        max_size=4,
    ),
    st.lists(
        st.sampled_from(
            ["putin", "@a", "@b", "@xi", "OR", "NOT", "NEAR/2", "SENTENCE(", ",", ")", "title:", "("]
        ),
        max_size=8,
    ).map(" ".join),
)
def test_fuzz_compile_with_aliases_only_raises_query_error(aliases, query):
    try:
        compiled = compile_query(query, aliases)
    except QueryError as exc:
        assert 1 <= exc.column <= len(query) + 1
        return
    assert compiled.aliases_used <= set(aliases)
    assert compiled.terms()
    evaluate(compiled, prepare(Document(title="Putin", text="x p q putin, x. p q")))


# --- explanations ---------------------------------------------------------------------------------------


def test_explanation_counts_each_matched_term_in_title_and_body_in_query_order():
    m = run(
        "@xi AND putin* -modi",
        "President Xi Jinping met Putin. Xi said so. Putin agreed. Putin's aide too.",
        title="Xi Jinping and Putin",
        aliases=ALIASES,
    )
    assert m is not None
    assert m.explanation == [Clause("xi", 1, 2), Clause('"xi jinping"', 1, 1), Clause("putin*", 1, 3)]
    assert m.matched == ["xi", '"xi jinping"', "putin*"]
    assert m.summary() == 'xi: title + 2× body; "xi jinping": title + body; putin*: title + 3× body'
    assert dataclasses.asdict(m.explanation[0]) == {"term": "xi", "title": 1, "body": 2}


def test_explanation_under_near_counts_the_close_occurrences_and_same_term_once():
    m = run("putin NEAR/2 xi OR putin", "Putin and Xi. " + "filler " * 20 + "Putin alone. Putin again.")
    assert m is not None
    assert m.explanation == [Clause("putin", 0, 3), Clause("xi", 0, 1)]
    near = run("putin NEAR/2 xi", "Putin and Xi. " + "filler " * 20 + "Putin alone.")
    assert near is not None and near.explanation == [Clause("putin", 0, 1), Clause("xi", 0, 1)]


def test_explanation_and_snippet_are_worked_out_when_first_read():
    doc = prepare(Document(title="", text="Vladimir Putin arrived."))
    m = evaluate(compile_query("putin"), doc)
    assert m is not None and m.score > 0
    assert doc.spans(1) == [(0, 8), (9, 14), (15, 22)]
    assert m.snippet == "Vladimir «Putin» arrived." and m.snippet is m.snippet
    assert m.explanation is m.explanation
    assert repr(m) == f"Match(score={m.score}, explanation={m.explanation})"


# --- the presearcher: TopicIndex ----------------------------------------------------------------------------


def test_triggers_and_requirements():
    assert trigger(Term('"xi jinping"', ("xi", "jinping"), (False, False))) == " xi jinping "
    assert trigger(Term("putin*", ("putin",), (True,))) == " putin"
    assert trigger(Term('"xi* jinping"', ("xi", "jinping"), (True, False))) == " xi"
    assert requirements(parse_query('(xi OR "xi jinping") AND putin* -modi site:x.org')) == [
        frozenset({" xi ", " xi jinping "}),
        frozenset({" putin"}),
    ]
    assert requirements(parse_query("(a b) OR c")) in (
        [frozenset({" a ", " c "})],
        [frozenset({" b ", " c "})],
    )
    assert requirements(parse_query("title:(@x NEAR/2 y)", {"x": "a OR b"})) == [
        frozenset({" a ", " b "}),
        frozenset({" y "}),
    ]


@pytest.mark.parametrize("arrays_from", [0, 10**9])
def test_topic_index_add_remove_and_order(monkeypatch, arrays_from):
    monkeypatch.setattr(monitor.topics.index, "ARRAYS_FROM", arrays_from)
    index: TopicIndex[str] = TopicIndex()
    for key, query in [
        ("xi-putin", "@xi AND putin*"),
        ("gas", "gas"),
        ("title", "title:putin"),
        ("gas2", "gas"),
    ]:
        index.add(key, compile_query(query, ALIASES))
    numbered: TopicIndex[int] = TopicIndex()  # integer keys, the same topics one more time each
    for key, query in enumerate(["gas", "title:putin", "gas", "putin* AND talks", "gas"]):
        numbered.add(key, compile_query(query))
    assert [k for k, _ in numbered.match(prepare(Document(title="Putin", text="Gas talks")))] == [
        0,
        1,
        2,
        3,
        4,
    ]
    doc = prepare(Document(title="Putin meets Xi", text="Talks on gas in Moscow."))
    assert [k for k, _ in index.match(doc)] == ["xi-putin", "gas", "title", "gas2"]
    assert index.candidates(doc) == {"xi-putin", "gas", "title", "gas2"}
    assert index.candidates(prepare(Document(title="Modi", text="Trade talks."))) == set()
    index.remove("gas")
    assert "gas" not in index and len(index) == 3
    assert [k for k, _ in index.match(doc)] == ["xi-putin", "title", "gas2"]
    index.add("xi-putin", compile_query("moscow"))  # replaces the query, keeps nothing of the old one
    assert [k for k, _ in index.match(doc)] == ["title", "gas2", "xi-putin"]
    index.add("new", compile_query("tehran OR ankara"))  # a new trigger: the automaton is rebuilt
    assert [k for k, _ in index.match(prepare(Document(title="", text="In Ankara.")))] == ["new"]
    with pytest.raises(KeyError):
        index.remove("gas")
    for key in ["title", "gas2", "xi-putin", "new"]:
        index.remove(key)
    assert len(index) == 0 and index.candidates(doc) == set() and index.match(doc) == []


@pytest.mark.parametrize("arrays_from", [0, 10**9])
def test_topic_index_after_topics_come_and_go(monkeypatch, arrays_from):
    monkeypatch.setattr(monitor.topics.index, "ARRAYS_FROM", arrays_from)
    # the query first indexed for "a1" outlives it through "a2", added after "b1": its first topic is now
    # younger than "b1"'s, and the index must still find each query through its own triggers
    index: TopicIndex[str] = TopicIndex()
    for key, query in [("a1", "gas"), ("b1", "oil"), ("a2", "gas"), ("c1", "xi AND putin")]:
        index.add(key, compile_query(query))
    index.remove("a1")
    index.add("c1", compile_query("xi"))
    gas, oil = prepare(Document(title="", text="Gas.")), prepare(Document(title="", text="Oil and Xi."))
    assert [k for k, _ in index.match(gas)] == ["a2"]
    assert [k for k, _ in index.match(oil)] == ["b1", "c1"]
    index.add("a1", compile_query("oil"))
    assert [k for k, _ in index.match(prepare(Document(title="", text="Oil and gas.")))] == ["b1", "a2", "a1"]


def test_topic_index_finds_title_only_phrase_prefix_and_cjk_terms():
    queries = [
        'title:"xi jinping"',
        "putin*",
        '"kim jong un"',
        "习近平 AND 普京",
        "jong-un",
        "SENTENCE(a, b)",
    ]
    index: TopicIndex[int] = TopicIndex()
    for i, q in enumerate(queries):
        index.add(i, compile_query(q))
    doc = prepare(Document(title="Xi Jinping", text="Putina met Kim Jong-un. 习近平会见普京。 A b."))
    assert [k for k, _ in index.match(doc)] == [0, 1, 2, 3, 4, 5]


def _corpus_items(name: str) -> list[dict[str, str]]:
    path = CORPUS / "news_texts" / name
    if not path.exists():
        pytest.skip(f"shared corpus not present at {path}")
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def _generated_queries(texts: list[str], count: int, seed: int) -> list[str]:
    """Queries of every kind, built from words and word pairs of ``texts``."""
    rng = random.Random(seed)
    words = sorted({w for t in texts for w in re.findall(r"[A-Za-z]{3,}", t)})
    pairs = sorted({m for t in texts for m in re.findall(r"[A-Z][a-z]+ [A-Z][a-z]+", t)})

    def w() -> str:
        return rng.choice(words)

    def p() -> str:
        return f'"{rng.choice(pairs)}"'

    makers = [
        lambda: w(),
        lambda: p(),
        lambda: f"{w()} AND {w()}",
        lambda: f"({w()} OR {p()}) {w()}",
        lambda: f"{w()} -{w()}",
        lambda: f"{w()} NEAR/{rng.randint(1, 8)} {w()}",
        lambda: f"{w()[:4]}* AND {w()}",
        lambda: f"title:{w()}",
        lambda: f"title:({w()} OR {w()}) {w()}",
        lambda: f"SENTENCE({w()}, {w()})",
        lambda: f"@group AND {w()}",
        lambda: f"({w()} {w()}) OR {w()}",
        lambda: f"{w()} lang:en",
        lambda: f"NOT ({w()} OR {w()}) AND {p()}",
    ]
    return [rng.choice(makers)() for _ in range(count)]


def _same_as_evaluating_every_query(
    queries: list[str], docs: list[Document], aliases: dict[str, str]
) -> None:
    """The index gives what evaluating every query gives, whether it scores its candidates one by one or
    (those it can) as arrays, whatever it makes lists of at once, and whether its token search looks the
    document's tokens up one by one or its words as arrays, two-word keys by a binary search or a hash,
    occurrences ordered by one sort or radix sorts."""
    compiled = [compile_query(q, aliases) for q in queries]
    index: TopicIndex[int] = TopicIndex()
    for i, query in enumerate(compiled):
        index.add(i, query)
    for doc in docs:
        alone = prepare(doc)  # evaluated without the presearch's positions
        expected = [(i, m) for i, q in enumerate(compiled) if (m := evaluate(q, alone)) is not None]
        for arrays_from, listed, words_from, hashed_from in (
            (0, 4096, 0, 0),
            (10**9, 0, 10**9, 10**9),
            (10**9, 4096, 0, 10**9),
            (0, 0, 10**9, 0),
        ):
            prepared = prepare(doc)
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(monitor.topics.index, "ARRAYS_FROM", arrays_from)
                patch.setattr(monitor.topics.index, "WORDS_FROM", words_from)
                patch.setattr(_TokenSearch, "HASHED_FROM", hashed_from)
                patch.setattr(_TokenSearch, "RADIX_FROM", hashed_from)
                patch.setattr(_Presearch, "LISTED", listed)
                found = index.match(prepared)
            assert [(i, m.score, m.matched, m.explanation, m.snippet) for i, m in found] == [
                (i, m.score, m.matched, m.explanation, m.snippet) for i, m in expected
            ], (doc.title, arrays_from, words_from)
        assert {i for i, _ in expected} <= index.candidates(prepared)


def test_topic_index_gives_exactly_what_evaluating_every_query_gives_on_the_corpus():
    items = _corpus_items("articles.jsonl")[::9] + _corpus_items("feed_items.jsonl")[::20]
    docs = [Document(title=i["title"] or "", text=i["text"], lang=i.get("lang")) for i in items]
    queries = _generated_queries([d.text for d in docs], 400, seed=11)
    aliases = {"group": f"{_generated_queries([d.text for d in docs], 1, seed=12)[0]} OR putin*"}
    _same_as_evaluating_every_query(queries, docs, aliases)


def test_term_values_are_bit_for_bit_those_worked_out_term_by_term():
    # every located term of many topics, on real texts (long transcripts too: deep and repeated mentions),
    # scored as arrays from the presearch and one by one from the tokens, without rounding
    items = _corpus_items("articles.jsonl")[::5]
    docs = [Document(title=i["title"] or "", text=i["text"]) for i in items]
    index: TopicIndex[int] = TopicIndex()
    for i, query in enumerate(_generated_queries([d.text for d in docs], 1500, seed=3)):
        index.add(i, compile_query(query, {"group": "putin* OR kremlin"}))
    index.prepare_search()
    plan = index._plan
    assert plan is not None and len(plan.nodes) > 1000
    for doc in docs:
        prepared, alone = prepare(doc), prepare(doc)
        index.match(prepared)
        values = prepared.term_values(plan.slot_trigger[2:], plan.slot_title[2:]).tolist()
        expected = [
            alone.evidence(n.term, n.fields) if any(alone.find(n.term, f) for f in n.fields) else FALSE
            for n in plan.nodes
        ]
        assert values == expected, doc.title


def test_term_values_order_mentions_heaviest_first_whatever_their_place(monkeypatch):
    # weights fade along the body, so mentions come heaviest first in their order of appearance; with a fading
    # that goes up and down, they are sorted as evaluating the term sorts them
    real_exp = math.exp
    monkeypatch.setattr(math, "exp", lambda x: (1.0 + math.sin(37.0 * x)) / 2.0 if x else real_exp(x))
    lead = "Words here and there. " * 500  # the mentions counted (the first 16) are all past the lead
    text = lead + " ".join(f"Putin spoke. {'Words here and there. ' * (i % 7)}" for i in range(40))
    doc = Document(title="Putin", text=text)
    index: TopicIndex[int] = TopicIndex()
    index.add(0, compile_query("putin AND spoke"))
    index.add(1, compile_query("title:putin"))
    index.prepare_search()
    plan = index._plan
    assert plan is not None
    prepared, alone = prepare(doc), prepare(doc)
    index.match(prepared)
    values = prepared.term_values(plan.slot_trigger[2:], plan.slot_title[2:]).tolist()
    assert values == [alone.evidence(n.term, n.fields) for n in plan.nodes]


def test_final_scores_round_as_final_score():
    rng = random.Random(4)
    values = [rng.random() for _ in range(5000)] + [0.0, 1.0, 1.5, -0.5, 2**-60, 1 - 2**-53]
    values += [k / 1000 + 0.0005 + d for k in range(1000) for d in (-1e-12, 0.0, 1e-12)]
    assert final_scores(np.array(values)).tolist() == [final_score(v) for v in values]


def _stream_occurrences(doc: PreparedDocument, patterns: dict[str, int]) -> set[tuple[int, int]]:
    """(trigger id, token position) wherever a pattern occurs in the document's stream: the presearch's
    definition of a trigger being there, worked out by brute force."""
    title, body = doc.tokens
    starts: dict[int, int] = {}  # offset of the space before a token -> its position, title first
    offset = 0
    for position, token in enumerate([*title, None, *body]):
        if token is None:  # the line break between the fields, a space on both sides
            offset += 2 if title else 3
            continue
        starts[offset] = position - (position > len(title))
        offset += len(token) + 1
    found = set()
    for pattern, trigger_id in patterns.items():
        at = doc.stream.find(pattern)
        while at >= 0:
            found.add((trigger_id, starts[at]))
            at = doc.stream.find(pattern, at + 1)
    return found


#: words about the 8 and 16 bytes a key of the search by words holds, in two scripts
_LONG_WORDS = [
    "abcdefgh",
    "abcdefghi",
    "abcdefghijklmnop",
    "abcdefghijklmnopq",
    "abcdefghijklmnopqrs",
    "Internationalisation's",
    "internationalisationsprocesses",
    "государственной",
    "Государственная",
    "думы",
]
_LONG_WORD_QUERIES = [
    "abcdefgh abcdefghi* abcdefghijklmno* abcdefghijklmnop* abcdefghijklmnopq* abcdefghijklmnopqr*",
    '"abcdefghijklmnop abcdefghijklmnopq" "abcdefgh abcdefghijklmnopqr*" abcdefghijklmnopq',
    'internationalisation internationalisationsprocess* "государственной думы" государственн* госуд*',
    '"думы abcdefgh abcdefghi abcdefghijklmnop" "abcdefghijklmnopq abcdefghijklmnopqrs"',
]


def test_token_search_finds_every_trigger_where_the_stream_has_it():
    items = _corpus_items("articles.jsonl")[::25] + _corpus_items("feed_items.jsonl")[::40]
    texts = [i["text"] for i in items]
    queries = [
        *_generated_queries(texts, 600, seed=5),
        '"vladimir putin" putin* "vladimir put*" "vladimir vladimirovich putin" "president of russia"',
        '"vladimir vladimirovich put*" "put* vladimir" xi jinp* 习近平 "习 近" ﷺ "صلى الله" russian*',
        '"russian federation" russ* russia "the russian" rus*',
        *_LONG_WORD_QUERIES,
    ]
    index: TopicIndex[int] = TopicIndex()
    for i, query in enumerate(queries):
        index.add(i, compile_query(query, {"group": "kremlin"}))
    index.prepare_search()
    search = index._search_
    assert search is not None
    docs = [prepare(Document(title=i["title"] or "", text=i["text"])) for i in items] + [
        prepare(
            Document(title="", text="Vladimir Putin met 习近平. Vladimir Vladimirovich Putina, the Russian")
        ),
        prepare(Document(title="Putin", text="")),
        prepare(Document(title="صلى الله عليه وسلم ﷺ", text="Putin ﷺ Vladimir")),
        prepare(Document(title="Internationalisation", text=" ".join(_LONG_WORDS * 2))),
    ]
    for doc in docs:
        pieces, aligned = doc.search_tokens()
        text, also_aligned, spaced = doc.search_words()
        assert also_aligned == aligned
        by_words, starts = search.find_words(text, spaced)
        count = len(starts)
        for found in (search.find(pieces), by_words):
            expected = _stream_occurrences(doc, index._searched) if aligned else set()
            if not aligned:  # positions of pieces, not tokens: only which triggers are there is compared
                present = {t for p, t in index._searched.items() if p in doc.stream}
                assert found is not None and set(found[0].tolist()) == present
                continue
            assert count == len(pieces)
            got: set[tuple[int, int]] = set()
            if found is not None:
                present, firsts, positions = found
                titles = len(doc.tokens[0])
                for i, trigger_id in enumerate(present.tolist()):
                    starts = positions[firsts[i] : firsts[i + 1]].tolist()
                    got |= {(trigger_id, p - (p > titles)) for p in starts}
            assert got == expected, doc.document.title


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [*_LONG_WORDS, "x", "xi", "xia", "jinping", "习", "近平", "'s", "d'or", ",", "\n", " "]
        ),
        max_size=60,
    )
)
def test_token_search_by_words_finds_what_it_finds_token_by_token(parts):
    _same_search_by_words(prepare(Document(title=" ".join(parts[:3]), text=" ".join(parts[3:]))))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["abcdefgh", "Abcdefghi's", "x", "xi", "xi's's", "Xi'an", "d'or", "'s", "s'", "\n", ","]
        ),
        max_size=60,
    ).map(" ".join),
    st.sampled_from(["", "Xi", "Abcdefgh's visit"]),
)
def test_token_search_over_spaced_out_text_drops_possessives_and_keeps_where_words_start(text, title):
    doc = prepare(Document(title=title, text=text))
    _same_search_by_words(doc)
    searched, _, spaced = doc.search_words()
    assert spaced
    _, starts = _long_word_search().find_words(searched, spaced)
    titles = len(doc.tokens[0])
    assert (starts[titles + 1 :] - len(title) - 4).tolist() == word_starts(doc._body.pieces).tolist()


def _same_search_by_words(doc: PreparedDocument) -> None:
    search = _long_word_search()
    pieces, aligned = doc.search_tokens()
    text, _, spaced = doc.search_words()
    found, starts = search.find_words(text, spaced)
    expected = search.find(pieces)
    assert len(starts) == len(pieces) and aligned
    assert (found is None) == (expected is None)
    if found is not None and expected is not None:
        assert [a.tolist() for a in found] == [a.tolist() for a in expected]


@functools.cache
def _long_word_search() -> _TokenSearch:
    index: TopicIndex[int] = TopicIndex()
    queries = [*_LONG_WORD_QUERIES, '"xi jinping" xia* "xi jin*" "习 近" 习 "d\'or xi" "xi\'s" "abcdefghi x"']
    for i, query in enumerate(queries):
        index.add(i, compile_query(query))
    index.prepare_search()
    assert index._search_ is not None
    return index._search_


@pytest.mark.parametrize("load", [4, 0.01])
def test_key_table_finds_each_string_held_and_no_other(monkeypatch, load):
    # at a load of 0.01 nearly every string lands on a taken slot and is found by the binary search
    monkeypatch.setattr(_KeyTable, "LOAD", load)
    rng = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyzабв习'"
    strings = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 9))).encode() for _ in range(3000)}
    held = sorted(s for s in strings if len(s) <= KEY_BYTES)
    values = np.arange(1, len(held) + 1)
    table = _KeyTable(*_halves(held), values)
    # absent: the held strings one byte shorter or longer (same first eight bytes for many)
    absent = sorted({s[:-1] for s in held if len(s) > 1} | {s + b"x" for s in held if len(s) < KEY_BYTES})
    absent = [s for s in absent if s not in strings]
    assert table.get(*_halves(held)).tolist() == values.tolist()
    assert not table.get(*_halves(absent)).any()
    # halves of no string held that mix as one held does: the same slot, and the same place apart
    first, second = _halves(held)
    other = second + np.uint64(1)
    assert not table.get(first ^ (second * table.mix) ^ (other * table.mix), other).any()
    firsts = np.unique(_halves([s[:8] for s in held])[0])  # one half only (a second of None)
    heads = _KeyTable(firsts, None, np.arange(1, len(firsts) + 1))
    others = np.setdiff1d(_halves(absent)[0], firsts)
    assert heads.get(firsts).tolist() == list(range(1, len(firsts) + 1))
    assert len(others) > 100 and not heads.get(others).any()


def test_token_search_orders_occurrences_by_trigger_whatever_the_ids(monkeypatch):
    # ids past 16 bits (topics come and go, ids are not reused) take a second radix pass
    ids = {
        " xi ": 70_000,
        " putin ": 5,
        " xi putin ": 140_000,
        " pu": 65_536,
        " jinping ": 65_535,
        " xi jin": 3,
    }
    search = _TokenSearch(ids)
    text = "Putin met Xi Jinping; Xi Putin, Putin Xi putin's xi jinping pub. " * 40
    doc = prepare(Document(title="Xi", text=text))
    pieces, _ = doc.search_tokens()
    words, _, spaced = doc.search_words()
    found = []
    for radix_from in (0, 10**9):
        monkeypatch.setattr(_TokenSearch, "RADIX_FROM", radix_from)
        found += [search.find(pieces), search.find_words(words, spaced)[0]]
    assert all(f is not None for f in found)
    assert len({tuple(tuple(a.tolist()) for a in f) for f in found if f is not None}) == 1
    present, firsts, _ = found[0]
    assert present.tolist() == sorted(ids.values()) and firsts[-1] > 500


def test_token_search_gives_codes_to_the_many_tokens_short_prefixes_match():
    # few words of their own, so the codes of the tokens the prefixes match outgrow the first arrays; "co*"
    # and "con*" both match "control" (one prefix found by the arrays, the other one by one)
    items = _corpus_items("articles.jsonl")[::40]
    docs = [Document(title=i["title"] or "", text=i["text"]) for i in items]
    queries = ["co* AND pr*", "th*", "re* -con*", "con* NEAR/3 co*", '"the pr*"', "SENTENCE(wi*, co*)"]
    _same_as_evaluating_every_query(queries, docs, {})


def test_token_search_takes_no_token_only_prefixes_match_for_the_third_word_of_a_phrase():
    # the words get codes 1 to 5 (xa xb; ya yb w), the tokens qq* matches 6, 7, ... as they come: the sixth
    # of them, after "xa xb", once made the key of "ya yb w" (two-word keys are 0 and 1, the third word's code
    # added to the key's index times 6) and a phrase that is not there matched
    queries = ['"xa xb"', '"ya yb w"', "qq*"]
    _same_as_evaluating_every_query(queries, [Document(title="", text="qq1 qq2 qq3 qq4 qq5 xa xb qq6")], {})


def test_token_search_forgets_tokens_beyond_its_memory(monkeypatch):
    monkeypatch.setattr(_TokenSearch, "MEMORY", 3)
    items = _corpus_items("articles.jsonl")[::60]
    docs = [Document(title=i["title"] or "", text=i["text"]) for i in items]
    queries = [*_generated_queries([d.text for d in docs], 300, seed=6), "russ* OR vladim*", "kreml*"]
    _same_as_evaluating_every_query(queries, docs, {"group": "putin*"})


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "xi",
                "putin*",
                '"xi jinping"',
                "AND",
                "OR",
                "NOT",
                "-",
                "(",
                ")",
                "NEAR/2",
                "title:",
                "gas",
                "习近平",
                "SENTENCE(xi,",
                "@x",
                "lang:en",
                "mosc*",
            ]
        ),
        min_size=1,
        max_size=10,
    ).map(" ".join),
    st.integers(0, 2**16),
)
def test_topic_index_equivalence_on_generated_text(query, seed):
    try:
        compile_query(query, {"x": "gas OR oil"})
    except QueryError:
        return
    rng = random.Random(seed)
    vocabulary = ["Xi", "Jinping", "Putin", "Putina", "gas", "oil", "Moscow", "习近平", "and", ".", "\n"]
    docs = [
        Document(
            title=" ".join(rng.choices(vocabulary, k=rng.randint(0, 4))),
            text=" ".join(rng.choices(vocabulary, k=rng.randint(0, 30))),
            lang=rng.choice(["en", "ru", None]),
        )
        for _ in range(5)
    ]
    _same_as_evaluating_every_query([query, "xi", "gas AND oil"], docs, {"x": "gas OR oil"})


def test_topic_index_shares_sub_expressions_without_changing_any_match():
    # the same sub-expressions at different places (term numbering), under title:, NOT, NEAR, SENTENCE and
    # aliases, in many topics at once; a shared node must give each topic exactly what evaluating it gives
    aliases = {"gas": "gas OR oil", "people": '"xi jinping" OR putin*'}
    parts = [
        "xi",
        "putin*",
        '"xi jinping"',
        "gas OR oil",
        "@gas",
        "title:xi",
        "-moscow",
        "xi NEAR/3 putin",
        "SENTENCE(xi, gas)",
        "(@people)",
        "lang:en",
        "title:(gas OR putin*)",
    ]
    rng = random.Random(7)
    queries = []
    while len(queries) < 300:
        query = " AND ".join(rng.sample(parts, rng.randint(1, 4)))
        try:
            compile_query(query, aliases)
        except QueryError:
            continue
        queries.append(query)
    words = [
        "Xi",
        "Jinping",
        "Putin",
        "Putina",
        "gas",
        "oil",
        "Moscow",
        "and",
        ".",
        "\n",
        "met",
        "Xi Jinping",
    ]
    docs = [
        Document(
            title=" ".join(rng.choices(words, k=rng.randint(0, 5))),
            text=" ".join(rng.choices(words, k=rng.randint(0, 200))),
            lang=rng.choice(["en", "ru", None]),
        )
        for _ in range(40)
    ]
    _same_as_evaluating_every_query(queries, docs, aliases)


def test_topic_index_forgets_shared_sub_expressions_with_their_last_topic():
    index: TopicIndex[int] = TopicIndex()
    queries = ["xi AND putin*", "putin* AND xi", "title:xi AND (gas OR oil)", "xi NEAR/2 gas", "xi -gas"]
    for i, query in enumerate(queries * 2):
        index.add(i, compile_query(query))
    shared = len(index._shared)
    doc = Document(title="Xi", text="Xi met Putin. Gas and oil.")
    before = [(k, m.score, m.explanation, m.snippet) for k, m in index.match(prepare(doc))]
    for i in range(len(queries)):
        index.remove(i)
    assert len(index._shared) == shared
    assert [(k, m.score, m.explanation, m.snippet) for k, m in index.match(prepare(doc))] == [
        row for row in before if row[0] >= len(queries)
    ]
    for i in range(len(queries), 2 * len(queries)):
        index.remove(i)
    assert len(index._shared) == 0


def test_public_names():
    assert set(monitor.topics.__all__) >= {
        "Alias",
        "Clause",
        "Sentence",
        "TopicIndex",
        "check_alias",
        "compile_query",
        "evaluate",
        "prepare",
    }
