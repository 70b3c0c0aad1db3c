"""``--wrt h`` where ``h`` is a binding computed from others: d target / d h (issue 14, item 2).

The derivative with respect to an intermediate is the one through the paths that go through it
(TensorFlow's gradient w.r.t. any watched tensor): the same as making ``h`` an input of the rest of
the program, which is how the finite differences here compute it. The other names' gradients stay
total derivatives.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from gradcheck import assert_close, numeric_grad

from difftape.answers.program import Program
from difftape.cli import cli
from difftape.errors import DifftapeError

X = np.array([0.4, -1.3, 2.1])
SOURCE = "y = sum(h * x) + sum(h**2) * z; h = sin(x) * z"
REST = "y = sum(h * x) + sum(h**2) * z"  # the program after h, with h an input


def run(*args: str, code: int = 0) -> str:
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert res.exit_code == code, res.output
    return res.output


def test_gradient_wrt_an_intermediate_matches_finite_differences_of_the_rest():
    z = 0.7
    h = np.sin(X) * z
    res = Program(SOURCE, at={"x": X, "z": z}).grad(wrt=["h", "x", "z"])

    def rest(*xs):
        return float(Program(REST, at={"h": xs[0], "x": xs[1], "z": z}).evaluate())

    assert_close(res.grad["h"], numeric_grad(rest, [h, X], 0), what="d y / d h")

    def whole(*xs):
        return float(Program(SOURCE, at={"x": xs[0], "z": xs[1]}).evaluate())

    # x's and z's gradients are still total derivatives (through h too)
    assert_close(res.grad["x"], numeric_grad(whole, [X, np.array(z)], 0), what="d y / d x")
    assert_close(res.grad["z"], numeric_grad(whole, [X, np.array(z)], 1), what="d y / d z")


def test_the_cli_example():
    out = json.loads(run("grad", "y = h + x; h = x**2", "--at", "x=3.0", "--wrt", "h,x", "--json"))
    assert out["grad"] == {"h": 1.0, "x": 7.0}
    text = run("grad", "y = h + x; h = x**2", "--at", "x=3.0", "--wrt", "h")
    assert "grad h" in text and "grad x" not in text


def test_the_real_command():
    proc = subprocess.run([sys.executable, "-m", "difftape", "grad", "y = sum(h**2); h = W @ x; W = ones(2, 2)",
                           "--at", "x=[1.0, 2.0]", "--wrt", "h", "--json"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["grad"] == {"h": [6.0, 6.0]}


def test_jacobian_and_hessian_wrt_an_intermediate():
    jac = Program("y = h * 2 + x; h = x**2", at={"x": np.array([1.0, 2.0])}).jacobian(wrt=["h"])
    assert_close(jac.jacobian["h"], 2 * np.eye(2))
    hess = Program("y = h**3; h = 2 * x", at={"x": 1.0}).hessian(wrt=["h"])
    assert_close(hess.hessian["h"]["h"], 6 * 2.0)
    out = json.loads(run("hessian", "y = h**3 + x; h = 2 * x", "--at", "x=1.0", "--wrt", "h", "--json"))
    assert out["hessian"] == {"h": {"h": 12.0}}


def test_an_integer_intermediate_is_differentiated_as_a_float():
    out = json.loads(run("grad", "y = h * 3; h = 2 * n", "--at", "n=2", "--wrt", "h", "--json"))
    assert out["grad"] == {"h": 3.0}


def test_a_function_call_bound_to_a_name_is_an_intermediate():
    out = json.loads(run("grad", "f(t) = t**2; h = f(x); y = 3 * h", "--at", "x=2.0", "--wrt", "h", "--json"))
    assert out["grad"] == {"h": 3.0}


@pytest.mark.parametrize("command", ["check", "jvp", "vjp", "hvp"])
def test_other_commands_say_they_do_not_take_an_intermediate(command):
    extra = {"check": [], "jvp": ["--tangent", "x=1.0"], "vjp": ["--cotangent", "1.0"],
             "hvp": ["--tangent", "x=1.0"]}[command]
    out = run(command, "y = h * 2; h = x**2", "--at", "x=1.0", "--wrt", "h", *extra, code=2)
    assert "error[usage]" in out and "intermediate" in out


def test_unknown_names_are_still_an_error():
    with pytest.raises(DifftapeError) as info:
        Program("y = h + x; h = x**2", at={"x": 1.0}).grad(wrt=["hh"])
    assert info.value.kind == "name" and "did you mean 'h'" in info.value.message
