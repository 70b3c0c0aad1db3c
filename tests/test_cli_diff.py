"""`difftape diff`: derivatives printed as expressions, text and JSON, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from difftape.answers.program import Program
from difftape.cli import cli


def _strict(text: str) -> dict:
    def reject(token: str) -> None:
        raise ValueError(f"non-strict JSON token {token}")

    return json.loads(text, parse_constant=reject)


def run(*args: str, code: int = 0):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, (result.output, getattr(result, "stderr", ""))
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize(
    "program, expected",
    [
        ("x**3", "3*x**2"),
        ("log(x)", "1/x"),
        ("sigmoid(x)", "sigmoid(x)*(1 - sigmoid(x))"),
        ("sin(x)*exp(x)", "exp(x)*(cos(x) + sin(x))"),
    ],
)
def test_diff_prints_the_simplified_derivative(program, expected):
    obj = _strict(run("diff", program, "--json").output)
    assert obj == {"of": program, "diff": {"x": expected}, "order": 1}
    assert f"d/dx  {expected}" in run("diff", program).output


def test_diff_second_order_and_every_variable():
    assert _strict(run("diff", "sin(x)", "--order", "2", "--json").output)["diff"] == {"x": {"x": "-sin(x)"}}
    assert "d2/dx2  -sin(x)" in run("diff", "sin(x)", "--order", "2").output
    obj = _strict(run("diff", "x**2*y", "--json").output)
    assert list(obj["diff"]) == ["x", "y"]


def test_diff_wrt_and_watch():
    assert list(_strict(run("diff", "x**2*y", "--wrt", "y", "--json").output)["diff"]) == ["y"]
    obj = _strict(run("diff", "a*x; a = const(2.0)", "--watch", "a", "--json").output)
    assert obj["diff"] == {"x": "a", "a": "x"}


def test_diff_of_a_matrix_program_evaluates_to_grad():
    source = "sum(W @ x); W = randn(2, 3)"
    obj = _strict(run("diff", source, "--at", "x=[1.0, 2.0, 3.0]", "--seed", "4", "--json").output)
    prog = Program(source, at={"x": np.array([1.0, 2.0, 3.0])}, seed=4)
    grad = prog.grad()
    for name, text in obj["diff"].items():
        assert np.allclose(prog._analytic(text, name, _leaves(prog)), grad.grad[name], rtol=1e-12)


def _leaves(prog: Program) -> dict:
    _, leaves = prog._run([], set(prog.variables))
    return leaves


@pytest.mark.parametrize(
    "args, kind",
    [
        (("foo(x)",), "name"),
        (("x**3", "--wrt", "z"), "name"),
        (("x +",), "syntax"),
        (("sum(x); x = [1.0, 2.0]", "--order", "3"), "shape"),
    ],
)
def test_diff_errors_exit_two_with_json(args, kind):
    result = run("diff", *args, "--json", code=2)
    assert _strict(result.stdout.strip().splitlines()[-1])["error"]["kind"] == kind


def test_diff_order_must_be_positive():
    run("diff", "x**2", "--order", "0", code=2)
