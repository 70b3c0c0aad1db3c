"""The grammar and the syntax tree: every construct, the precedence table, spans, size."""

from __future__ import annotations

import subprocess
import sys

import pytest

from difftape.language.parser import MAX_NESTING, parse
from difftape.language.syntax import Assign, Binary, Call, Index, Name, Number, Paren, Slice, dump, walk


def tree(source: str) -> str:
    return dump(parse(source))


# ----------------------------------------------------------------------------------------
# precedence and associativity (Python's table)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("-x**2", "(- (** x 2))"),
        ("2**-1", "(** 2 (- 1))"),
        ("2**3**2", "(** 2 (** 3 2))"),
        ("a@b+c", "(+ (@ a b) c)"),
        ("a+b@c", "(+ a (@ b c))"),
        ("a-b-c", "(- (- a b) c)"),
        ("a/b/c", "(/ (/ a b) c)"),
        ("a*b+c*d", "(+ (* a b) (* c d))"),
        ("a+b*c", "(+ a (* b c))"),
        ("(a+b)*c", "(* (+ a b) c)"),
        ("-a*b", "(* (- a) b)"),
        ("--a", "(- (- a))"),
        ("+-a", "(+ (- a))"),
        ("-2**-2**-1", "(- (** 2 (- (** 2 (- 1)))))"),
        ("a//b%c", "(% (// a b) c)"),
        ("a < b + 1", "(< a (+ b 1))"),
        ("a + 1 >= b * 2", "(>= (+ a 1) (* b 2))"),
        ("a == b", "(== a b)"),
        ("a != -b", "(!= a (- b))"),
        ("-x[0]", "(- ([] x 0))"),
        ("x**y[0]", "(** x ([] y 0))"),
        ("x.T**2", "(** (.T x) 2)"),
        ("-x.T", "(- (.T x))"),
    ],
)
def test_precedence(source: str, expected: str) -> None:
    assert tree(source) == expected


# ----------------------------------------------------------------------------------------
# constructs


def test_numbers_are_python_ints_and_floats() -> None:
    program = parse("2 + 2.0 + .5 + 2e-3 + 1E5 + 3.")
    numbers = [n for n in walk(program.statements[0]) if isinstance(n, Number)]
    assert [n.value for n in numbers] == [2, 2.0, 0.5, 0.002, 100000.0, 3.0]
    assert [type(n.value) for n in numbers] == [int, float, float, float, float, float]


def test_names_and_booleans_are_names() -> None:
    assert tree("True + false + x_1 + _y") == "(+ (+ (+ True false) x_1) _y)"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("x[0]", "([] x 0)"),
        ("x[1:3]", "([] x (: 1 3 _))"),
        ("x[:, 0]", "([] x (: _ _ _) 0)"),
        ("x[-1]", "([] x (- 1))"),
        ("x[::2]", "([] x (: _ _ 2))"),
        ("x[::-1]", "([] x (: _ _ (- 1)))"),
        ("x[1:]", "([] x (: 1 _ _))"),
        ("x[:3:]", "([] x (: _ 3 _))"),
        ("x[0][1]", "([] ([] x 0) 1)"),
        ("x[0, 1,]", "([] x 0 1)"),
        ("x.T", "(.T x)"),
        ("x.T[0]", "([] (.T x) 0)"),
        ("[1, 2]", "(list 1 2)"),
        ("[[1, 2], [3, 4]]", "(list (list 1 2) (list 3 4))"),
        ("[x, 2*x,]", "(list x (* 2 x))"),
        ("[]", "list"),
        ("(2, 3)", "(tuple 2 3)"),
        ("(2,)", "(tuple 2)"),
        ("()", "tuple"),
        ("(x)", "x"),
        ("f()", "call f"),
        ("sin(x)", "(call sin x)"),
        ("sum(x, axis=(0, 1), keepdims=True)", "(call sum x (= axis (tuple 0 1)) (= keepdims True))"),
        ("zeros(2, 3)", "(call zeros 2 3)"),
        ("reshape(x, (-1,))", "(call reshape x (tuple (- 1)))"),
        ("const(x * 2)", "(call const (* x 2))"),
        ("f(x,)", "(call f x)"),
        ("sum(x)[0]", "([] (call sum x) 0)"),
        ("[1, 2][0]", "([] (list 1 2) 0)"),
    ],
)
def test_constructs(source: str, expected: str) -> None:
    assert tree(source) == expected


def test_statements_bindings_comments_and_separators() -> None:
    source = "# a comment line\ny = x**2  # trailing comment\n\nx = 3; z = y\n;;\nz + 1\n"
    program = parse(source)
    assert dump(program) == "(= y (** x 2)); (= x 3); (= z y); (+ z 1)"
    first = program.statements[0]
    assert isinstance(first, Assign) and first.name == "y"
    assert (first.name_span.line, first.name_span.column) == (2, 1)


def test_empty_programs_parse_to_no_statements() -> None:
    for source in ("", "\n\n", "# only a comment", " ; ; ", "\r\n"):
        assert parse(source).statements == ()


def test_newlines_inside_brackets_continue_the_line() -> None:
    source = "y = sum(\n  [[1, 2],   # first row\n   [3, 4]],\n  axis=0\n)\ny"
    assert dump(parse(source)) == "(= y (call sum (list (list 1 2) (list 3 4)) (= axis 0))); y"


def test_crlf_line_endings() -> None:
    program = parse("a = 1\r\nb = a + 1\r\nb")
    assert dump(program) == "(= a 1); (= b (+ a 1)); b"
    assert program.statements[1].span.line == 2


# ----------------------------------------------------------------------------------------
# spans


def test_spans_are_exact() -> None:
    source = "y = (a + b) * c\nz = f(x, k=2)[1:3]"
    program = parse(source)
    y, z = program.statements
    assert isinstance(y, Assign) and isinstance(z, Assign)
    mul = y.value
    assert isinstance(mul, Binary)
    assert mul.span.text(source) == "(a + b) * c"
    assert (mul.op_span.line, mul.op_span.column, mul.op_span.end_column) == (1, 13, 14)
    assert isinstance(mul.left, Paren) and mul.left.inner.span.text(source) == "a + b"
    index = z.value
    assert isinstance(index, Index)
    assert str(index.span) == "2:5-2:19"
    assert index.bracket_span.text(source) == "[1:3]"
    call = index.value
    assert isinstance(call, Call) and call.span.text(source) == "f(x, k=2)"
    assert call.name_span.text(source) == "f"
    assert call.keywords[0].span.text(source) == "k=2"
    (item,) = index.items
    assert isinstance(item, Slice) and item.span.text(source) == "1:3"


def test_span_of_multiline_expression() -> None:
    source = "(a +\n b)"
    (expr,) = parse(source).statements
    assert str(expr.span) == "1:1-2:4"  # end column is exclusive
    assert expr.span.text(source) == source


def test_walk_visits_every_name_in_source_order() -> None:
    (expr,) = parse("f(a, b[c], d=e) + [g, h.T]").statements
    assert [n.id for n in walk(expr) if isinstance(n, Name)] == list("abcegh")  # d is a keyword, not a use


# ----------------------------------------------------------------------------------------
# size: nothing recursive anywhere


def test_sum_of_100000_terms_parses() -> None:
    program = parse("+".join(["x"] * 100_000))
    (expr,) = program.statements
    assert isinstance(expr, Binary)
    assert sum(1 for _ in walk(expr)) == 199_999
    assert dump(parse("+".join(["x"] * 3))) == "(+ (+ x x) x)"


def test_deep_unary_power_and_parentheses_parse() -> None:
    parse("-" * 100_000 + "x")
    parse("2**" * 50_000 + "x")
    deep = "(" * MAX_NESTING + "x" + ")" * MAX_NESTING
    (expr,) = parse(deep).statements
    assert isinstance(expr, Paren)
    text = dump(parse(deep))
    assert text == "x"


def test_deep_brackets_up_to_the_limit_parse() -> None:
    parse("[" * MAX_NESTING + "1" + "]" * MAX_NESTING)


def test_long_dumps_do_not_recurse() -> None:
    assert len(dump(parse("-" * 50_000 + "x"))) > 100_000


def test_parsing_needs_neither_lark_nor_its_cache() -> None:
    # The LALR tables are generated at build time (grammar/build_tables.py): the command line
    # imports no Lark and reads no pickle at start-up.
    code = "import sys, difftape.language.parser as p; p.parse('y = x**2; x = 1'); print('lark' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_grammar_ships_next_to_the_package() -> None:
    from difftape.language.parser import GRAMMAR_PATH

    assert GRAMMAR_PATH.name == "difftape.lark" and GRAMMAR_PATH.parent.name == "language"
    assert GRAMMAR_PATH.is_file()
    assert "start:" in GRAMMAR_PATH.read_text(encoding="utf-8")
