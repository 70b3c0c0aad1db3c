"""Malformed programs: each gives its intended message, kind and exact line:column.

Nothing but :class:`DifftapeError` may come out of the parser or the compiler, for any
text at all (the hypothesis tests at the end).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from difftape.errors import DifftapeError
from difftape.language.compiler import compile_program
from difftape.language.parser import MAX_NESTING, parse

# (program, kind, line, column, message substring)
MALFORMED = [
    ("x +", "syntax", 1, 4, "expected an expression after '+'"),
    ("x + )", "syntax", 1, 5, "unexpected ')'"),
    ("(x + 1", "syntax", 1, 7, "unclosed '(' opened at 1:1"),
    ("y = sin(x", "syntax", 1, 10, "unclosed '(' opened at 1:8"),
    ("f(x]", "syntax", 1, 4, "expected ')' to close '(' opened at 1:2"),
    ("[1, 2", "syntax", 1, 6, "unclosed '[' opened at 1:1"),
    ("x[1", "syntax", 1, 4, "unclosed '[' opened at 1:2"),
    ("x]", "syntax", 1, 2, "unexpected ']'"),
    ("$", "syntax", 1, 1, "unexpected character '$'"),
    ("x = 2 $ 3", "syntax", 1, 7, "unexpected character '$'"),
    ("x.__class__", "syntax", 1, 3, "the only attribute is '.T'"),
    ("x.shape", "syntax", 1, 3, "unknown attribute '.shape'"),
    ("import os", "syntax", 1, 1, "'import' is Python, not difftape"),
    ('"unterminated', "syntax", 1, 1, "a string ends on the same line with the same quote"),
    ("x = 'a", "syntax", 1, 5, "a string ends on the same line with the same quote"),
    ("2 = x", "syntax", 1, 3, "'=' needs a name on its left"),
    ("x + 1 = 3", "syntax", 1, 7, "'=' needs a name on its left"),
    ("x = y = 2", "syntax", 1, 7, "binds one name"),
    ("a < b < c", "syntax", 1, 7, "use where(...)"),
    ("a == b != c", "syntax", 1, 8, "chained comparison"),
    ("2x", "syntax", 1, 2, "write '2*x' to multiply"),
    ("x y", "syntax", 1, 3, "separate statements with ';' or a new line"),
    ("x; y", "syntax", 1, 4, "only one bare expression"),
    ("f(a=1, 2)", "syntax", 1, 8, "a positional argument cannot follow a keyword argument"),
    ("f(a=1, a=2)", "arity", 1, 8, "keyword argument 'a' is given twice"),
    ("x if y else z", "syntax", 1, 3, "use where(condition, a, b)"),
    ("99999999999999999999", "value", 1, 1, "does not fit in 64 bits"),
    ("x[]", "syntax", 1, 3, "expected an expression after '['"),
    ("x : 3", "syntax", 1, 3, "slices like 'a:b' are only allowed inside [ ]"),
    ("x **", "syntax", 1, 5, "expected an expression after '**'"),
    ("*x", "syntax", 1, 1, "expected an expression, found '*'"),
    ("f(,)", "syntax", 1, 3, "expected an expression after '('"),
    ("x..T", "syntax", 1, 3, "unexpected '.'"),
    ("None", "syntax", 1, 1, "'None' is Python"),
    ("x ^ 2", "syntax", 1, 3, "for powers use '**'"),
    (
        "y = 1\nz = (y +\n  2\nw = 3",
        "syntax",
        4,
        1,
        "expected an operator, ',' or ')' to close '(' opened at 2:5",
    ),
    ("a = 1\nb = a +\nc = 2", "syntax", 2, 8, "expected an expression after '+'"),
    ("x[1:2:3:4]", "syntax", 1, 8, "unexpected ':'"),
    ("x = \n", "syntax", 1, 4, "expected an expression after '='"),
    ("lambda x: x", "syntax", 1, 1, "'lambda' is Python"),
    ("x = {1}", "syntax", 1, 5, "braces are not part of difftape"),
    ("x!", "syntax", 1, 2, "did you mean '!='?"),
    ("\t\tx $", "syntax", 1, 5, "unexpected character '$'"),
    ("x  # fine\ny = (  # open\n", "syntax", 2, 6, "unclosed '(' opened at 2:5"),
    ("x = 1 = 2", "syntax", 1, 7, "'=' needs a name on its left"),
    ("[1 2]", "syntax", 1, 4, "expected an operator, ',' or ']' to close '[' opened at 1:1"),
    ("sum(x, axis=)", "syntax", 1, 13, "expected an expression after '='"),
    ("1.T", "syntax", 1, 3, "unexpected name 'T'"),
    ("x and y", "syntax", 1, 3, "'and' is Python"),
    ("y = x\n\n  \t@ 2", "syntax", 3, 4, "expected an expression, found '@'"),
]


def test_the_table_is_big_enough() -> None:
    assert len(MALFORMED) >= 30


@pytest.mark.parametrize(("source", "kind", "line", "column", "message"), MALFORMED)
def test_malformed_program(source: str, kind: str, line: int, column: int, message: str) -> None:
    with pytest.raises(DifftapeError) as info:
        parse(source)
    err = info.value
    assert message in err.message
    assert (err.kind, err.line, err.column) == (kind, line, column), err.render()
    assert err.source == source
    if err.end_column is not None:
        assert err.end_column > err.column


@pytest.mark.parametrize(("source", "kind", "line", "column", "message"), MALFORMED)
def test_compile_reports_the_same_error(source: str, kind: str, line: int, column: int, message: str) -> None:
    with pytest.raises(DifftapeError) as info:
        compile_program(source)
    assert (info.value.kind, info.value.line, info.value.column) == (kind, line, column)


def test_caret_covers_the_offending_token() -> None:
    with pytest.raises(DifftapeError) as info:
        parse("y = x.__class__")
    assert info.value.render() == (
        "error[syntax] at 1:7: unknown attribute '.__class__': the only attribute is '.T' (transpose)\n"
        "1 | y = x.__class__\n"
        "          ^^^^^^^^^"
    )


def test_caret_for_a_chained_comparison_points_at_the_second_operator() -> None:
    with pytest.raises(DifftapeError) as info:
        parse("ok = 0 <= x <= 1")
    lines = info.value.render().splitlines()
    assert lines[1] == "1 | ok = 0 <= x <= 1"
    assert lines[2] == "    " + " " * 12 + "^^"


def test_caret_on_a_later_line() -> None:
    with pytest.raises(DifftapeError) as info:
        parse("a = 1\nb = a +\n")
    assert info.value.render().splitlines()[1:] == ["2 | b = a +", "           ^"]


def test_nesting_beyond_the_limit_is_a_limit_error() -> None:
    deep = "(" * (MAX_NESTING + 1) + "x" + ")" * (MAX_NESTING + 1)
    with pytest.raises(DifftapeError) as info:
        parse(deep)
    assert info.value.kind == "limit"
    assert (info.value.line, info.value.column) == (1, MAX_NESTING + 1)
    assert str(MAX_NESTING) in info.value.message


def test_bracket_nesting_beyond_the_limit_is_a_limit_error() -> None:
    with pytest.raises(DifftapeError) as info:
        parse("[" * 20_000)
    assert info.value.kind == "limit"


def test_non_text_is_a_type_error() -> None:
    with pytest.raises(DifftapeError) as info:
        parse(b"x")  # type: ignore[arg-type]
    assert info.value.kind == "type"


# ----------------------------------------------------------------------------------------
# anything at all: only DifftapeError, always with a sensible position


def _check(source: str) -> None:
    try:
        compile_program(source, values={"x": 2.0, "y": [1.0, 2.0, 3.0]})
    except DifftapeError as err:
        assert err.kind and err.message
        if err.line is not None:
            assert 1 <= err.line <= source.count("\n") + 1
            assert err.column is not None and err.column >= 1
            err.render()


PIECES = st.sampled_from(
    [
        "x",
        "y",
        "a",
        "b",
        "=",
        "+",
        "-",
        "*",
        "**",
        "/",
        "//",
        "%",
        "@",
        "<",
        "<=",
        "==",
        "!=",
        "(",
        ")",
        "[",
        "]",
        ",",
        ":",
        ";",
        "\n",
        ".",
        "T",
        ".T",
        "1",
        "2.5",
        ".5",
        "1e3",
        "0",
        "-1",
        "pi",
        "True",
        "sum(",
        "sin(",
        "const(",
        "randn(",
        "zeros(",
        "reshape(",
        "concatenate(",
        "axis=",
        "keepdims=",
        "#",
        " ",
        "\t",
        "$",
        "'",
        '"',
        "import",
        "if",
        "{",
        "!",
        "x[",
        "::",
        "::-1",
        "sinn(",
        "e",
    ]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(PIECES, max_size=30).map("".join))
def test_token_soup_only_raises_difftape_errors(source: str) -> None:
    _check(source)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_random_text_only_raises_difftape_errors(source: str) -> None:
    _check(source)
