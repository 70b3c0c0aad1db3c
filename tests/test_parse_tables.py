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
