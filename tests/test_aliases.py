"""Aliases and hints people type (issue 14, item 3): ln, log(x, b), π, x², U+2212 minus; hints for
|x|, np. and math. prefixes."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from gradcheck import assert_close

from difftape.answers.program import Program
from difftape.cli import cli
from difftape.errors import DifftapeError
from difftape.language.compiler import compile_program


def value(source: str, x: float = 8.0) -> float:
    return float(Program(source, at={"x": x}).evaluate())


@pytest.mark.parametrize(("alias", "plain"), [
    ("ln(x)", "log(x)"),
    ("log(x, 2)", "log(x) / log(2)"),
    ("log(x, b)", "log(x) / log(b)"),
    ("π * x", "pi * x"),
    ("2*π*x", "2*pi*x"),
    ("x² + x³", "x**2 + x**3"),
    ("(x + 1)²", "(x + 1)**2"),
    ("-x²", "-x**2"),
    ("x − 1", "x - 1"),
    ("−x", "-x"),
    ("2**−1 * x", "2**-1 * x"),
])
def test_an_alias_means_what_it_stands_for(alias, plain):
    at = {"x": 8.0, "b": 3.0}
    a = Program(alias, at={k: v for k, v in at.items() if k in alias}).evaluate()
    p = Program(plain, at={k: v for k, v in at.items() if k in plain}).evaluate()
    assert_close(a, p)
    ga = Program(alias, at={"x": 8.0, **({"b": 3.0} if "b" in alias else {})}).grad(wrt=["x"]).grad["x"]
    gp = Program(plain, at={"x": 8.0, **({"b": 3.0} if "b" in plain else {})}).grad(wrt=["x"]).grad["x"]
    assert_close(ga, gp)


def test_log_base_b_and_its_gradient():
    res = Program("log(x, b)", at={"x": 8.0, "b": 2.0}).grad()
    assert_close(res.value, 3.0)
    assert_close(res.grad["x"], 1 / (8.0 * math.log(2.0)))
    assert_close(res.grad["b"], -math.log(8.0) / (2.0 * math.log(2.0) ** 2))


def test_aliases_through_the_real_command():
    proc = subprocess.run([sys.executable, "-m", "difftape", "eval", "ln(x) + log(x, 2) + π − x²", "--at", "x=4.0",
                           "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert_close(json.loads(proc.stdout)["value"], math.log(4.0) + 2.0 + math.pi - 16.0)


@pytest.mark.parametrize(("source", "message", "caret"), [
    ("np.sin(x)", "drop the 'np.': write sin(...)", "np.sin"),
    ("y = 2*numpy.exp(x)", "drop the 'numpy.': write exp(...)", "numpy.exp"),
    ("math.pi * x", "drop the 'math.': write pi", "math.pi"),
    ("math.sqrt(x)", "drop the 'math.': write sqrt(...)", "math.sqrt"),
    ("|x|", "for an absolute value write abs(x)", "|"),
])
def test_hints(source, message, caret):
    with pytest.raises(DifftapeError) as info:
        compile_program(source, values={"x": 1.0})
    err = info.value
    assert err.kind == "syntax" and message in err.message, err.render()
    assert source[err.column - 1:].startswith(caret)
    out = CliRunner().invoke(cli, ["eval", source, "--at", "x=1.0"])
    assert out.exit_code == 2 and message in out.output


def test_ln_cannot_be_defined_as_a_function():
    with pytest.raises(DifftapeError) as info:
        compile_program("ln(t) = t; ln(2)")
    assert info.value.kind == "name" and "another name of log" in info.value.message


def test_x_dot_t_is_still_the_transpose():
    out = Program("x.T", at={"x": np.ones((2, 3))}).evaluate()
    assert out.shape == (3, 2)
