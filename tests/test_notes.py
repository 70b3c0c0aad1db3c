"""Notes on stderr when a result is off (issue 14, item 8): non-finite values or derivatives, and an
int64 result of eval that wrapped around. The answer stands: exit 0, stdout unchanged."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from difftape.answers.notes import nonfinite, wrapped
from difftape.answers.program import Program
from difftape.cli import cli


def invoke(*args: str):
    res = CliRunner().invoke(cli, list(args))
    assert res.exit_code == 0, res.output
    return res


def test_a_nan_gradient_is_noted_on_stderr():
    res = invoke("grad", "sqrt(x)", "--at", "x=[1.0, -1.0, 4.0]")
    assert "note: grad x has nan at [1]" in res.stderr
    assert "note: value has nan at [1]" in res.stderr
    assert "note:" not in res.stdout.replace("note: sqrt(x) is not a scalar", "")


def test_json_output_stays_one_object_and_the_note_goes_to_stderr():
    res = invoke("grad", "log(x)", "--at", "x=0.0", "--json")
    assert json.loads(res.stdout)["grad"] == {"x": "inf"}
    assert "note: grad x is inf" in res.stderr and "note: value is -inf" in res.stderr


@pytest.mark.parametrize(("args", "note"), [
    (["jacobian", "1/x", "--at", "x=[0.0, 1.0]"], "note: jacobian x has -inf at [0, 0]"),
    (["hessian", "log(x)", "--at", "x=0.0"], "note: hessian x x is -inf"),
    (["jvp", "sqrt(x)", "--at", "x=0.0", "--tangent", "1.0"], "note: jvp is inf"),
    (["vjp", "sqrt(x)", "--at", "x=[0.0, 1.0]", "--cotangent", "[1.0, 1.0]"], "note: vjp x has inf at [0]"),
    (["hvp", "sqrt(x)", "--at", "x=0.0", "--tangent", "1.0"], "note: hvp x is -inf"),
    (["eval", "x/0", "--at", "x=[1.0, 0.0]"], "note: value has inf at [0] (and 1 more non-finite element)"),
])
def test_every_command_notes_non_finite_results(args, note):
    assert note in invoke(*args).stderr


def test_finite_results_have_no_note():
    assert invoke("grad", "x**2", "--at", "x=[1.0, 2.0]").stderr == ""
    assert invoke("eval", "x * 3", "--at", "5").stderr == ""


def test_int64_wrap_around_is_noted_with_a_float_hint():
    res = invoke("eval", "x**40", "--at", "3")
    assert res.stdout.splitlines()[-1] == str(np.int64(3) ** 40)  # the wrapped value, as numpy gives it
    assert "note: the result wrapped around" in res.stderr and "float literal" in res.stderr
    assert f"{3.0**40:.6g}" in res.stderr
    res = invoke("eval", "2**62 * n", "--at", "n=[1, 2]")
    assert "at [1]" in res.stderr


def test_no_wrap_note_for_exact_integers():
    assert wrapped(Program("x * 2**40", at={"x": 3}), Program("x * 2**40", at={"x": 3}).evaluate()) is None
    assert invoke("eval", "sum(arange(10) * 7)").stderr == ""


def test_nonfinite_helper():
    assert nonfinite("grad x", np.array([1.0, 2.0])) is None
    assert nonfinite("grad x", np.array([1, 2])) is None
    assert nonfinite("grad x", None) is None
    assert nonfinite("grad x", np.array([[1.0, np.nan], [-np.inf, 1.0]])) == (
        "note: grad x has nan at [0, 1] (and 1 more non-finite element)")


def test_the_real_command():
    proc = subprocess.run([sys.executable, "-m", "difftape", "grad", "sqrt(x)", "--at", "x=[1.0, -1.0]"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "note: grad x has nan at [1]" in proc.stderr and "nan" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "difftape", "eval", "x**40", "--at", "3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "wrapped around" in proc.stderr
