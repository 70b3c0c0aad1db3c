"""``--batch`` for every command that takes points (issue 14, item 9): hessian, jvp, vjp and hvp;
blank lines skipped; ``--ignore-extra``; ``--echo``. Every batch line must equal the command's own
``--json`` answer for that point."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from difftape.cli import cli


def invoke(*args: str, stdin: str, code: int = 0) -> list[dict]:
    res = CliRunner().invoke(cli, list(args), input=stdin)
    assert res.exit_code == code, res.output
    return [json.loads(line) for line in res.stdout.splitlines()]


def single(*args: str) -> dict:
    res = CliRunner().invoke(cli, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


POINTS = [{"x": [1.0, 2.0], "y": 0.5}, {"x": [-0.5, 3.0], "y": 2.0}, {"x": [0.0, 0.25], "y": -1.0}]


@pytest.mark.parametrize(("command", "program", "extra"), [
    ("hessian", "sum(x**3 * y)", []),
    ("jvp", "sin(x) * y", ["--tangent", "x=[1.0, -1.0]"]),
    ("vjp", "sin(x) * y", ["--cotangent", "[1.0, 2.0]"]),
    ("hvp", "sum(x**3 * y)", ["--tangent", "x=[1.0, 1.0]"]),
    ("hessian", "sum(x**3 * y)", ["--wrt", "x"]),
])
def test_each_line_is_the_commands_own_answer(command, program, extra):
    stdin = "".join(json.dumps(p) + "\n" for p in POINTS)
    out = invoke(command, program, *extra, "--batch", stdin=stdin)
    assert len(out) == len(POINTS)
    for line, point in zip(out, POINTS):
        ats = [f"{k}={json.dumps(v)}" for k, v in point.items()]
        assert line == single(command, program, *extra, *[a for at in ats for a in ("--at", at)])


def test_hessian_batch_errors_are_lines_with_their_numbers():
    stdin = '{"x": 1.0}\n{"x": [1.0, 2.0]}\n{"q": 1}\n{"x": 2.0}\n'
    out = invoke("hessian", "x**3", "--batch", stdin=stdin, code=2)
    assert out[0]["hessian"] == {"x": {"x": 6.0}} and out[3]["hessian"] == {"x": {"x": 12.0}}
    assert out[1]["error"]["kind"] == "shape" and out[1]["error"]["line"] == 2
    assert out[2]["error"]["kind"] == "name" and out[2]["error"]["line"] == 3


def test_a_forward_command_checks_its_options_before_reading():
    res = CliRunner().invoke(cli, ["vjp", "x**2", "--batch"], input='{"x": 1.0}\n')
    assert res.exit_code == 2 and "--cotangent" in res.output


@pytest.mark.parametrize("command", ["eval", "grad", "jacobian", "hessian"])
def test_blank_lines_are_skipped_and_error_lines_keep_their_input_numbers(command):
    stdin = '{"x": 1.0}\n\n   \n\r\n{"x": "bad"}\n\n{"x": 3.0}\n'
    out = invoke(command, "x**2", "--batch", stdin=stdin, code=2)
    assert len(out) == 3
    assert out[1]["error"]["line"] == 5
    assert out[2]["value"] == 9.0 and out[0]["value"] == 1.0


def test_only_blank_lines_answer_nothing():
    assert invoke("grad", "x**2", "--batch", stdin="\n\n  \n") == []


def test_an_extra_key_is_an_error_unless_ignored():
    stdin = '{"x": 2.0, "note": "first"}\n{"x": 3.0}\n'
    out = invoke("grad", "x**2", "--batch", stdin=stdin, code=2)
    assert out[0]["error"]["kind"] == "name" and out[1]["grad"] == {"x": 6.0}
    out = invoke("grad", "x**2", "--batch", "--ignore-extra", stdin=stdin)
    assert [o["grad"] for o in out] == [{"x": 4.0}, {"x": 6.0}]
    out = invoke("hvp", "x**3", "--tangent", "1.0", "--batch", "--ignore-extra", stdin=stdin)
    assert [o["hvp"] for o in out] == [{"x": 12.0}, {"x": 18.0}]


@pytest.mark.parametrize(("command", "extra"), [("eval", []), ("grad", []), ("jacobian", []), ("hessian", []),
                                                 ("jvp", ["--tangent", "1.0"])])
def test_echo_copies_the_input_point_under_at(command, extra):
    stdin = '{"x": 0.5, "other": [1, 2]}\n{"x": "oops"}\n{"x": 1.5}\n'
    out = invoke(command, "x**2", *extra, "--batch", "--echo", "--ignore-extra", stdin=stdin, code=2)
    assert [o["at"] for o in out] == [{"x": 0.5, "other": [1, 2]}, {"x": "oops"}, {"x": 1.5}]
    assert "error" in out[1] and out[2]["value"] == 2.25
    plain = invoke(command, "x**2", *extra, "--batch", stdin='{"x": 1.5}\n')
    assert out[2] == {**plain[0], "at": {"x": 1.5}}


def test_echo_of_a_line_that_does_not_parse_is_null():
    out = invoke("grad", "x**2", "--batch", "--echo", stdin='{"x": 1.0\n{"x": 2.0}\n', code=2)
    assert out[0]["at"] is None and out[1]["at"] == {"x": 2.0}


def test_the_real_command():
    proc = subprocess.run([sys.executable, "-m", "difftape", "hessian", "x**3", "--batch", "--echo"],
                          input='{"x": 1.0}\n\n{"x": 2.0}\n', capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [o["hessian"]["x"]["x"] for o in out] == [6.0, 12.0] and out[1]["at"] == {"x": 2.0}
