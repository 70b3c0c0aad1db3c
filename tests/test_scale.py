"""Issue 18 item 2: compiling grows linearly with the program, and depth does not crash anything.

Timing tests compare CPU time of the same work at two sizes (best of three), so that a loaded
machine slows both alike; the bound (25x for 10x the program) is far from linear (10x) and far
below what the quadratic parser did (a list of 30,000 items took hundreds of times as long as one of 3,000).
"""

from __future__ import annotations

import gc
import time

import pytest

from difftape.answers.program import Program
from difftape.language import parser
from difftape.language.compiler import compile_program
from difftape.language.parser import parse


def _chain(n: int) -> str:
    return "; ".join(f"a{i + 1} = a{i} + 1" for i in range(n)) + "; a0 = 1.0"


def _best_cpu(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def _ratio(fn, small: int, large: int) -> float:
    return _best_cpu(lambda: fn(large)) / max(_best_cpu(lambda: fn(small)), 1e-4)


def test_parsing_a_chain_of_statements_is_linear():
    assert _ratio(lambda n: parse(_chain(n)), 1_000, 10_000) < 25


def test_compiling_a_chain_of_statements_is_linear():
    assert _ratio(lambda n: compile_program(_chain(n)), 1_000, 10_000) < 25


def test_a_long_list_literal_and_a_long_call_are_linear():
    def make(n: int) -> str:
        return "sum([" + ", ".join(str(i) for i in range(n)) + "])"

    assert _ratio(lambda n: parse(make(n)), 3_000, 30_000) < 25


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
