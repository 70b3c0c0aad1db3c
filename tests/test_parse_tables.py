"""The generated LALR tables: in step with the grammar, and parsing exactly as Lark parses.

``difftape/language/parse_tables.py`` is generated from ``grammar/difftape.lark`` by
``grammar/build_tables.py``; ``difftape/language/parser.py`` runs it with its own driver. Lark stays
the reference: the same token streams go through Lark's LALR parser (with the same tree
builder) and through ours, and the trees, or the errors, must be the same.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from difftape.errors import DifftapeError
from difftape.language import parser
from difftape.language.syntax import dump

ROOT = Path(__file__).resolve().parent.parent


def _build_module():
    spec = importlib.util.spec_from_file_location("build_tables", ROOT / "grammar" / "build_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tables_are_generated_from_the_current_grammar():
    build = _build_module()
    fresh = build.build((ROOT / "grammar" / "difftape.lark").read_text(encoding="utf-8"))
    assert fresh == (ROOT / "difftape" / "language" / "parse_tables.py").read_text(encoding="utf-8"), (
        "difftape/language/parse_tables.py is stale: run python grammar/build_tables.py"
    )


def test_the_shipped_grammar_is_the_source_grammar():
    assert parser.GRAMMAR_PATH.read_text(encoding="utf-8") == (ROOT / "grammar" / "difftape.lark").read_text(
        encoding="utf-8"
    )


@pytest.fixture(scope="module")
def lark_parse():
    """Lark's own LALR parser over our lexer's tokens, building the tree with our builder."""
    from lark import Lark
    from lark.lexer import Lexer

    class Tokens(Lexer):
        def __init__(self, conf):
            pass

        def lex(self, data):
            return parser._LEXER.lex(data)

    lark = Lark(
        parser.GRAMMAR_PATH.read_text(encoding="utf-8"), parser="lalr", lexer=Tokens,
        transformer=parser._Builder(), maybe_placeholders=True,
    )
    return lark.parse


def _outcome(run, source):
    """The tree (dumped), or where and what the parser did not expect, or a DifftapeError's message."""
    from lark.exceptions import UnexpectedToken

    try:
        return ("tree", [dump(s) for s in run(source)])
    except (UnexpectedToken, parser._UnexpectedTokenError) as err:
        return ("unexpected", err.token.type, err.token.start_pos, sorted(err.expected))
    except DifftapeError as err:
        return ("error", err.kind, err.message, err.line, err.column)


_PROGRAMS = [
    "", "x", "y = x**2; x = 1", "f(x, k=2)", "a[1:, ::2, 0]", "-x**-2", "(1,)", "()", "(1, 2,)", "[]",
    "[1, [2, 3],]", "a < b", "a < b < c", "x.T @ y", "1 +", "= 3", "a = = 2", "f(,)", "[1 2]", "(x", "x)",
    "a[:]", "a[1:2:3]", "sum(x, axis=0, keepdims=1)", "x\n\ny = 2\n", "# only a comment\n", "x;;y", "1e3 + .5",
    "a = b = c", "f(x=1, 2)", "x[1,]", "-+-x", "2 ** 3 ** 2", "a // b % c @ d / e * f",
]


@pytest.mark.parametrize("source", _PROGRAMS)
def test_known_programs_parse_as_lark_parses_them(source, lark_parse):
    assert _outcome(parser._parse_statements, source) == _outcome(lark_parse, source)


_PIECES = ["x", "y", "f", "1", "2.5", "(", ")", "[", "]", ",", ":", "+", "-", "*", "**", "/", "//", "@", "<",
           "==", "=", ";", "\n", ".T", " ", "sum(", "k=", "#c\n"]


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.sampled_from(_PIECES), max_size=14))
def test_random_token_soup_parses_as_lark_parses_it(pieces, lark_parse):
    source = "".join(pieces)
    assert _outcome(parser._parse_statements, source) == _outcome(lark_parse, source)


# ----------------------------------------------------------------------------------------
# the statement-by-statement parse (templates) against the one-pass parse, and the lexer against Lark's


def _one_pass(source):
    return parser._run_tables(parser._LEXER.lex(source))


def _full(run, source):
    """The statements with every field and span (repr), or that the parse failed (any parse error)."""
    try:
        return ("tree", [repr(s) for s in run(source)])
    except (DifftapeError, parser._UnexpectedTokenError):
        return ("failed",)


def _repeated(source):
    """``source`` as several statements of the same tokens, so that its parse is replayed, then compiled."""
    return "\n".join([source] * (parser._COMPILE_AT + 2))


@pytest.mark.parametrize("source", _PROGRAMS + [_repeated(p) for p in _PROGRAMS])
def test_statement_by_statement_parse_is_the_one_pass_parse(source):
    assert _full(parser._parse_by_statement, source) == _full(_one_pass, source)


@settings(max_examples=200, deadline=None)
@given(pieces=st.lists(st.sampled_from(_PIECES), max_size=14))
def test_random_soup_by_statement_is_the_one_pass_parse(pieces):
    source = "".join(pieces)
    for text in (source, _repeated(source), f"{source}; {source}; {source}; {source}; {source}"):
        assert _full(parser._parse_by_statement, text) == _full(_one_pass, text)


def test_a_later_statement_of_the_same_tokens_gives_its_own_error():
    # `if = 1` has the tokens of `a = 1`, whose parse is replayed: the builder's error still comes, and first
    with pytest.raises(DifftapeError, match="'if' is Python"):
        parser.parse("; ".join(["a = 1"] * 6 + ["if = 1", "b = $"]))
    with pytest.raises(DifftapeError, match="unexpected character '\\$'"):
        parser.parse("; ".join(["a = 1"] * 6 + ["b = $", "if = 1"]))


_LEXER_PIECES = ["x", "π", "2", "2.5", ".5", "1.", "1e3", "3E-2", "'ab'", '"c"', "+", "-", "−", "*", "**", "/", "//",
                 "%", "@", "<", "<=", ">", ">=", "==", "!=", "=", ",", ":", ";", ".", "²", "³", " ", "\t", "\n",
                 "\r\n", "#c", "sum", "_y1", "$", "!", "'"]


@pytest.fixture(scope="module")
def lark_lex():
    from lark import Lark

    return Lark(parser.GRAMMAR_PATH.read_text(encoding="utf-8"), parser="lalr", lexer="basic").lex


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.sampled_from(_LEXER_PIECES), max_size=16))
def test_the_lexer_finds_the_tokens_larks_lexer_finds(pieces, lark_lex):
    # (brackets left out: the lexer also matches them, and drops the newlines inside them)
    source = "".join(pieces)

    def tokens(lex, **options):
        try:
            return [(t.type, str(t.value), t.start_pos, t.line, t.column) for t in lex(source, **options)]
        except Exception:  # noqa: BLE001 - a character no token has: both must refuse it
            return "refused"

    ours = tokens(parser._LEXER.lex)
    assert ours == tokens(lark_lex)
    if ours != "refused":  # the stand-ins only change what the tree never holds
        shared = tokens(parser._LEXER.lex, stand_ins=True)
        assert [t[:2] for t in shared] == [t[:2] for t in ours]
