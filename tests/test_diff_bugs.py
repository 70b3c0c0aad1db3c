"""Printed derivatives that were wrong (difftape issue 10), and a property test that looks for more.

Every printed derivative is a difftape program: evaluated with ``difftape eval``'s machinery
(:class:`Program`) at the original program's leaf values, it must give the tape's gradient
(``grad``), and ``check``, which uses it as its analytic reference, must agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from difftape.answers.program import Program
from difftape.cli import cli
from difftape.language.compiler import compile_program
from difftape.transforms.symbolic import derive


def leaf_values(prog: Program) -> dict[str, np.ndarray]:
    """The value of every leaf of a run of ``prog`` (inputs, variables, const bindings)."""
    leaves: dict[str, np.ndarray] = {}

    def keep(name: str, value: Any) -> Any:
        leaves[name] = np.asarray(getattr(value, "_value", value))
        return value

    prog.graph.run(seed=prog.seed, leaf=keep)
    return leaves


def eval_text(text: str, env: dict[str, np.ndarray], seed: int = 0) -> np.ndarray:
    """``difftape eval TEXT --at ...`` for the names the text uses (a derivative may use fewer)."""
    names = compile_program(text).named_nodes()
    prog = Program(text, at={k: v for k, v in env.items() if k in names}, seed=seed)
    return np.asarray(prog.evaluate())


def printed_and_tape(source: str, at: dict[str, Any]) -> tuple[dict[str, str], dict[str, np.ndarray], dict]:
    """(printed derivative texts, their values, the tape's gradients)."""
    names = compile_program(source).named_nodes()
    prog = Program(source, at={k: v for k, v in at.items() if k in names})
    texts = derive(source, values=prog.at).diff
    env = leaf_values(prog)
    tape = prog.grad(wrt=list(texts), unconnected="zero").grad
    values = {n: eval_text(t, env) for n, t in texts.items()}
    return texts, values, tape


def assert_printed_is_grad(source: str, at: dict[str, Any]) -> dict[str, str]:
    texts, values, tape = printed_and_tape(source, at)
    for name, got in values.items():
        want = np.asarray(tape[name], dtype=np.float64)
        assert got.shape == want.shape, f"{source!r} d/d{name} = {texts[name]}: shape {got.shape}, want {want.shape}"
        assert np.allclose(got.astype(np.float64), want, rtol=1e-9, atol=1e-12), (
            f"{source!r} d/d{name} = {texts[name]}\n got  {got}\n want {want}")
    return texts


# ----------------------------------------------------------------------------------------
# the reported cases


@pytest.mark.parametrize(
    ("source", "at", "name", "expected"),
    [
        # a scattered index plus the ones of a sum: the number was dropped when it joined an array
        ("p[1] + sum(p)", {"p": [0.5, 0.7]}, "p", "[1, 2]"),
        ("sum(z + z[1])", {"z": [1.0, 2.0, 3.0]}, "z", "[1, 4, 1]"),
        ("sum(x[1:] * 2) + sum(x)", {"x": [1.0, 2.0, 3.0]}, "x", "[1, 3, 3]"),
        # a constant list plus a number, folded
        ("sum(y * ([1.0, 2.0] + 1))", {"y": [0.1, 0.2]}, "y", "[2, 3]"),
        ("sum(y * ([1.0, 2.0] + 1))", {"y": 0.5}, "y", "5"),
        # an array exponent: b*y**(b - 1), with b - 1 folded
        ("sum(y ** [0.5, 2.0])", {"y": [1.5, 2.5]}, "y", "y**[-0.5, 1]*[0.5, 2]"),
    ],
)
def test_reported_derivatives(source: str, at: dict, name: str, expected: str) -> None:
    texts = assert_printed_is_grad(source, at)
    assert texts[name] == expected


def test_sum_without_values_is_the_scalar_derivative() -> None:
    # no --at: y is a scalar input, and d/dy sum(y * [2, 3]) is 5
    assert derive("sum(y * ([1.0, 2.0] + 1))").diff == {"y": "5"}


def test_check_agrees_on_slices_and_sums() -> None:
    result = CliRunner().invoke(cli, ["check", "sum(x[1:] * 2) + sum(x)", "--at", "x=[1.0, 2.0, 3.0]"])
    assert result.exit_code == 0, result.output
    assert "[1, 3, 3] (derived)" in result.output
    assert "MISMATCH" not in result.output


# ----------------------------------------------------------------------------------------
# masks: numbers in a derivative, booleans in the program


@pytest.mark.parametrize("y", [1.0, -1.0])
@pytest.mark.parametrize(
    "source",
    [
        "(1.0 - x) * (y > 0)",  # was -(y > 0): numpy cannot negate a boolean
        "-x * (y > 0) * (z < 0)",
        "x*(y > 0) + x*(z < 0)",  # was (y > 0) + (z < 0): numpy's + on booleans is `or`
        "x*(y > 0) - x*(z < 0)",  # was (y > 0) - (z < 0): numpy cannot subtract booleans
        "x*(y > 0) + x*(z < 0) + x",
        "x*(y > 0)*sin(z) - x*(z < 0)",
    ],
)
def test_masks_print_as_numbers(source: str, y: float) -> None:
    assert_printed_is_grad(source, {"x": 0.5, "y": y, "z": -2.0})


@pytest.mark.parametrize("y", [2.0, 0.5, -1.0])
def test_the_programs_plus_on_masks_is_or(y: float) -> None:
    # in the program, (y > 0) + (y > 1) is numpy's `or` (True, not 2), and so is its derivative
    texts = assert_printed_is_grad("x*((y > 0) + (y > 1))", {"x": 0.5, "y": y})
    assert texts["x"] == "logical_or(y > 0, y > 1)"
    assert_printed_is_grad("x*((y > 0)*(y < 3) + (y > 1))", {"x": 0.5, "y": y})


def test_unary_minus_texts_evaluate() -> None:
    assert derive("(1.0 - x) * (y > 0)").diff["x"] == "-1*(y > 0)"


def test_derivative_sums_of_masks_add_as_numbers() -> None:
    from difftape.transforms.symbolic.evaluate import evaluate
    from difftape.transforms.symbolic.expr import const, var

    a, b = var("a", (2,), np.dtype(bool)), var("b", (2,), np.dtype(bool))
    env = {"a": np.array([True, False]), "b": np.array([True, True])}
    assert evaluate(a + b, env).tolist() == [2, 1]
    folded = const(np.array([True, False])) + const(np.array([True, True]))
    assert folded.op == "const" and np.asarray(folded.value).tolist() == [2, 1]
