"""Programs that start with '-' (issue 14, item 5): a PROGRAM word that is not one of the command's
options is the program, even if it starts with '-'; '--' works too, and options may follow it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from difftape.cli import cli

LOSS = "-sum(y*log(p))"
AT = ["--at", "y=[0.0, 1.0]", "--at", "p=[0.3, 0.7]"]


def invoke(*args: str, code: int = 0):
    res = CliRunner().invoke(cli, list(args))
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    return res


def test_the_issue_example_as_written():
    out = json.loads(invoke("grad", LOSS, *AT, "--json").stdout)
    assert out["of"] == LOSS
    assert out["value"] == pytest.approx(-np.log(0.7))
    assert out["grad"]["p"] == pytest.approx([0.0, -1 / 0.7])


def test_the_issue_example_through_the_real_command():
    proc = subprocess.run([sys.executable, "-m", "difftape", "grad", LOSS, *AT, "--json"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["grad"]["y"] == pytest.approx([-np.log(0.3), -np.log(0.7)])


@pytest.mark.parametrize("args", [
    ["eval", "-x**2", "--at", "x=2"],
    ["eval", "--at", "x=2", "-x**2"],
    ["eval", "--at", "x=2", "--", "-x**2"],
    ["eval", "--", "-x**2", "--at", "x=2"],  # options after '--' are still options
    ["eval", "-x**2", "--at=x=2"],
    ["eval", "--json", "-x**2", "--at", "x=2"],
])
def test_where_the_program_and_options_may_go(args):
    res = invoke(*args)
    last = res.stdout.strip().splitlines()[-1]
    assert last == "-4" or json.loads(last)["value"] == -4


def test_an_options_value_may_start_with_a_dash():
    out = json.loads(invoke("eval", "-x", "--at", "-3", "--json").stdout)
    assert out["value"] == 3
    out = json.loads(invoke("jvp", "-x*2", "--at", "x=1.0", "--tangent", "-1.0", "--json").stdout)
    assert out["jvp"] == 2.0


def test_every_command_takes_a_program_starting_with_dash():
    for command, extra in [("grad", []), ("jacobian", []), ("hessian", []), ("check", []), ("diff", []),
                           ("graph", []), ("hvp", ["--tangent", "1.0"]), ("vjp", ["--cotangent", "1.0"])]:
        invoke(command, "-x**2", "--at", "x=1.5", *extra)


def test_an_unknown_long_option_says_how_to_pass_such_a_program():
    res = invoke("eval", "--x", "--at", "x=1", code=2)
    assert "No such option" in res.output and "put the program after `--`, and the options before it" in res.output
    proc = subprocess.run([sys.executable, "-m", "difftape", "eval", "--at", "x=1", "--", "--x"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("1")


def test_an_option_without_its_value_is_still_a_usage_error():
    res = invoke("eval", "-x", "--at", code=2)
    assert "requires an argument" in res.output
    res = invoke("eval", "-x", "-y", code=2)
    assert "unexpected extra argument" in res.output
