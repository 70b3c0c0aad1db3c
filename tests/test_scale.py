"""Issue 18 item 2: compiling grows linearly with the program, and depth does not crash anything.

Growth is judged by work, not time (benchmarks/bench_parse.py times it): the number of Python and
builtin function calls the same job makes at two sizes, counted with a profile hook, is the same on
any machine under any load. Linear work grows 10x for 10x the program; the bound, 12x, leaves room
for fixed costs and is far below what a quadratic step would make (100x).
"""

from __future__ import annotations

import gc
import sys

import pytest

from difftape.answers.program import Program
from difftape.language import parser
from difftape.language.compiler import compile_program
from difftape.language.parser import parse


def _chain(n: int) -> str:
    return "; ".join(f"a{i + 1} = a{i} + 1" for i in range(n)) + "; a0 = 1.0"


def _calls(fn) -> int:
    """How many function calls (Python and builtin) ``fn()`` makes."""
    count = 0

    def hook(_frame, event, _arg):
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(hook)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return count


def _growth(fn, small: int, large: int) -> float:
    fn(small)  # first use: lazy imports and compiled templates are not the program's work
    return _calls(lambda: fn(large)) / _calls(lambda: fn(small))


def test_parsing_a_chain_of_statements_is_linear():
    assert _growth(lambda n: parse(_chain(n)), 1_000, 10_000) < 12


def test_compiling_a_chain_of_statements_is_linear():
    assert _growth(lambda n: compile_program(_chain(n)), 1_000, 10_000) < 12


def test_evaluating_and_differentiating_a_chain_is_linear():
    assert _growth(lambda n: Program(_chain(n)).grad(), 1_000, 10_000) < 12


def test_a_long_list_literal_and_a_long_call_are_linear():
    def make(n: int) -> str:
        return "sum([" + ", ".join(str(i) for i in range(n)) + "])"

    assert _growth(lambda n: parse(make(n)), 3_000, 30_000) < 12


def test_statements_keep_their_order_and_values():
    src = _chain(3_000)
    prog = parse(src)
    assert [s.name for s in prog.statements[:3]] == ["a1", "a2", "a3"]
    assert len(prog.statements) == 3_001
    assert float(Program(src).evaluate()) == 3_001.0
    grad = Program(src).grad()
    assert float(grad.grad["a0"]) == 1.0


def test_parsing_leaves_the_collector_as_it_was():
    assert gc.isenabled()
    compile_program("x + 1", values={"x": 1.0})
    assert gc.isenabled()
    gc.disable()
    try:
        compile_program("x + 1", values={"x": 1.0})
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_failed_compile_turns_the_collector_back_on():
    with pytest.raises(Exception):  # noqa: B017 - any DifftapeError; the point is the collector
        compile_program("x +* 1")
    assert gc.isenabled()


@pytest.mark.parametrize(
    ("source", "value", "slope"),
    [
        ("+".join(["x"] * 10_000), 10_000.0, 10_000.0),  # a tree 10,000 deep on the left
        ("x" + "**x" * 2_000, 1.0, 1.0),  # right-associative: deep on the right (d/dx x**f at 1 is f(1))
        ("-" * 10_000 + "x", 1.0, 1.0),  # an even number of signs
        ("(" * 3_000 + "x" + ")" * 3_000, 1.0, 1.0),  # brackets
    ],
    ids=["sum", "power", "signs", "brackets"],
)
def test_deep_programs_evaluate_and_differentiate(source, value, slope):
    assert float(Program(source, at={"x": 1.0}).evaluate()) == value
    assert float(Program(source, at={"x": 1.0}).grad().grad["x"]) == slope


def test_tokens_know_where_they_end():
    toks = list(parser._LEXER.lex("ab + 12\n  cd"))
    ab, plus, twelve, nl, cd = toks
    assert (ab.end_line, ab.end_column, ab.end_pos) == (1, 3, 2)
    assert (twelve.column, twelve.end_column) == (6, 8)
    assert (cd.line, cd.column, cd.end_column, cd.end_pos) == (2, 3, 5, 12)


# ----------------------------------------------------------------------------------------
# big programs give exact answers (issue 18: speed is benchmarks/bench_parse.py's, not a test's)


def _issue_chain(n: int, first: str = "1.0") -> str:
    """The issue's program: ``a0 = 1.0; a1 = a0 + 1; ...; a{n-1}``."""
    return "; ".join([f"a0 = {first}"] + [f"a{i} = a{i - 1} + 1" for i in range(1, n)]) + f"; a{n - 1}"


def test_a_chain_of_10000_statements_has_its_exact_value_and_gradient():
    prog = Program(_issue_chain(10_000))
    assert prog.of == "a9999" and prog.variables == ["a0"]
    assert float(prog.evaluate()) == 10_000.0
    result = prog.grad()
    assert float(result.value) == 10_000.0 and float(result.grad["a0"]) == 1.0


def test_a_chain_of_10000_statements_from_an_input():
    prog = Program(_issue_chain(10_000, "x"), at={"x": 0.5})
    assert prog.inputs == ["x"]
    result = prog.grad()
    assert float(result.value) == 9_999.5 and float(result.grad["x"]) == 1.0
    assert float(Program(_issue_chain(10_000, "x**2"), at={"x": 3.0}).grad().grad["x"]) == 6.0


def test_10000_constant_bindings_one_a_line():
    source = "\n".join(f"c{i} = {i}.5" for i in range(10_000)) + "\nc7 * c9998 - c0"
    prog = Program(source)
    assert len(prog.variables) == 10_000
    result = prog.grad(wrt=["c0", "c7", "c9998", "c5"])
    assert float(result.value) == 7.5 * 9998.5 - 0.5
    assert {k: None if v is None else float(v) for k, v in result.grad.items()} == {
        "c0": -1.0, "c7": 9998.5, "c9998": 7.5, "c5": None}


def test_statements_of_one_shape_keep_their_own_names_numbers_and_spans():
    # the parse of the first is replayed (then compiled) for the others: each has its own tokens
    source = "\n".join(f"b{i} = a{i} * {i}" for i in range(20))
    statements = parse(source).statements
    assert [(s.name, s.value.left.id, s.value.right.value) for s in statements] == [
        (f"b{i}", f"a{i}", i) for i in range(20)
    ]
    last = statements[-1]
    assert (last.span.line, last.span.column, last.value.right.span.start) == (20, 1, source.rindex("19"))


def test_one_statement_of_100000_terms_evaluates_and_differentiates():
    # a tree 100,000 deep: every walk (parse, compile, run, backward) is iterative
    prog = Program(" + ".join(["x"] * 100_000), at={"x": 1.0})
    result = prog.grad()
    assert float(result.value) == 100_000.0 and float(result.grad["x"]) == 100_000.0


@pytest.mark.slow
def test_the_command_line_differentiates_100000_terms_and_refuses_too_deep_brackets(tmp_path):
    import json
    import subprocess
    import sys

    deep = tmp_path / "deep.dt"
    deep.write_text(" + ".join(["x * 2"] * 100_000), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "difftape", "grad", "-f", str(deep), "--at", "x=1", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["value"] == 200_000.0 and answer["grad"] == {"x": 200_000.0}
    nested = tmp_path / "nested.dt"
    nested.write_text("(" * 20_000 + "x" + ")" * 20_000, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "difftape", "eval", "-f", str(nested), "--at", "x=1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "error[limit]" in done.stderr and "Traceback" not in done.stderr


def test_parse_leaves_the_collector_as_it_was():
    assert gc.isenabled()
    parse("x + 1; y = 2")
    assert gc.isenabled()
    with pytest.raises(Exception):  # noqa: B017 - any DifftapeError; the point is the collector
        parse("x +* 1")
    assert gc.isenabled()
    gc.disable()
    try:
        parse("x + 1")
        assert not gc.isenabled()
    finally:
        gc.enable()
