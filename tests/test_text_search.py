"""Text search: the SPEC B §2.5 query grammar and the D6 matching semantics."""

from __future__ import annotations

import random

import pytest

from localevents.events._text import MAX_QUERY_LENGTH, TextQuery, parse_text_query

# (query, include, exclude, required)
PARSE_CASES = [
    ("", (), (), ()),
    ("   \t\n ", (), (), ()),
    ("error", ("error",), (), ()),
    ("error   debug", ("error", "debug"), (), ()),
    ("error\tdebug\nwarn\r\x0bfatal\u3000x", ("error", "debug", "warn", "fatal", "x"), (), ()),
    ("Error DEBUG", ("Error", "DEBUG"), (), ()),
    ("error -debug +flow", ("error",), ("debug",), ("flow",)),
    ("!debug", (), ("debug",), ()),
    ("error - debug", ("error", "debug"), (), ()),
    ("-", (), (), ()),
    ("!", (), (), ()),
    ("+", (), (), ()),
    ("- ! +", (), (), ()),
    ("error -", ("error",), (), ()),
    ("-\terror", ("error",), (), ()),
    ("--term", (), ("-term",), ()),
    ("!-term", (), ("-term",), ()),
    ("++term", (), (), ("+term",)),
    ("-!term", (), ("!term",), ()),
    ("task-run", ("task-run",), (), ()),
    ("task!exclaim", ("task!exclaim",), (), ()),
    ("value+plus", ("value+plus",), (), ()),
    ("prefix-", ("prefix-",), (), ()),
    ('"connection timeout"', ("connection timeout",), (), ()),
    ('-"connection timeout" +"flow run"', (), ("connection timeout",), ("flow run",)),
    ('"hello  world again "', ("hello  world again ",), (), ()),
    ('" padded"', (" padded",), (), ()),
    (r'"say \"hi\""', ('say "hi"',), (), ()),
    (r'"back\\slash"', ("back\\slash",), (), ()),
    (r'"C:\path\n"', ("C:\\path\\n",), (), ()),
    ('"trailing\\', ("trailing\\",), (), ()),
    ('"unclosed phrase  ', ("unclosed phrase  ",), (), ()),
    ('error -"unclosed', ("error",), ("unclosed",), ()),
    ('""', (), (), ()),
    ('"   "', (), (), ()),
    ('-"" +"  " x', ("x",), (), ()),
    ('-"', (), (), ()),
    ('""error""', ("error",), (), ()),
    ('"phrase with "inner" quotes"', ("phrase with ", "inner", " quotes"), (), ()),
    ('word"quoted"', ("word", "quoted"), (), ()),
    ('"a"-b', ("a",), ("b",), ()),
    ("'single quotes'", ("'single", "quotes'"), (), ()),
    ('back\\slash \\"', ("back\\slash", "\\"), (), ()),
    ("café -Straße", ("café",), ("Straße",), ()),
    ("错误 +数据库", ("错误",), (), ("数据库",)),
    ('"中文 短语"', ("中文 短语",), (), ()),
]


@pytest.mark.parametrize(("query", "include", "exclude", "required"), PARSE_CASES)
def test_parse_text_query_follows_the_grammar(
    query: str, include: tuple[str, ...], exclude: tuple[str, ...], required: tuple[str, ...]
) -> None:
    """Each §2.5 rule and quoted example parses into the expected three term lists."""
    expected = TextQuery(include=include, exclude=exclude, required=required)
    assert parse_text_query(query) == expected


@pytest.mark.parametrize(
    ("query", "empty"), [("", True), (" - ", True), ('""', True), ("x", False)]
)
def test_is_empty_reports_a_query_without_terms(query: str, empty: bool) -> None:
    """is_empty is true exactly when the parsed query has no terms at all."""
    assert parse_text_query(query).is_empty is empty


MATCH_CASES = [
    ("", "anything at all", True),
    ("", "", True),
    ("error debug", "an error happened", True),
    ("error debug", "debug output", True),
    ("error debug", "all fine", False),
    ("-debug", "an error", True),
    ("-debug", "debug output", False),
    ("error -debug", "error in debug", False),
    ("+flow +run", "flow run completed", True),
    ("+flow +run", "flow completed", False),
    ("error +flow", "flow error", True),
    ("error +flow", "flow ok", False),
    ("ERROR", "an error", True),
    ("error", "AN ERROR", True),
    ("ÉCOLE", "une école", True),
    ("école", "UNE ÉCOLE", True),
    ("-ÉCOLE", "une école", False),
    ("错误", "数据库错误发生", True),
    ("café", "CAFÉ au lait", True),
    ('"world again "', "hello world again and more", True),
    ('"world again "', "hello world again", False),
    ('"world again "', "hello world againx", False),
    ('-"world again "', "hello world again", True),
    ("task-run", "a task-run started", True),
    ("task-run", "a task run started", False),
    ("50%", "cpu at 50% load", True),
    ("50%", "cpu at 500 load", False),
]


@pytest.mark.parametrize(("query", "text", "expected"), MATCH_CASES)
def test_matches_applies_or_not_and_case_insensitively(
    query: str, text: str, expected: bool
) -> None:
    """Include terms are ORed, exclude NOTed, required ANDed, all case-insensitive substrings."""
    assert parse_text_query(query).matches(text) is expected


def test_matches_with_a_directly_built_query() -> None:
    """A TextQuery built by hand (mixed case, not from the parser) matches case-insensitively."""
    query = TextQuery(include=("Alpha",), exclude=("BETA",), required=("Gamma",))
    assert query.matches("ALPHA gamma")
    assert not query.matches("alpha beta gamma")
    assert not query.matches("alpha")


def test_max_query_length_is_200() -> None:
    """The longest accepted text query is 200 characters, as in the filter schema."""
    assert MAX_QUERY_LENGTH == 200


def test_random_queries_parse_into_non_empty_terms() -> None:
    """Parsing never raises on arbitrary input, and every parsed term has non-space text."""
    rng = random.Random(0)
    alphabet = ['"', "\\", "-", "!", "+", "'", " ", "\t", "\n", "a", "B", "é", "中"]
    for _ in range(200):
        query = "".join(rng.choices(alphabet, k=rng.randint(0, 30)))
        parsed = parse_text_query(query)
        for term in parsed.include + parsed.exclude + parsed.required:
            assert term.strip(), query
