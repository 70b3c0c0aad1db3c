"""The command line end to end: every command, option and exit code (click's CliRunner and real processes).

The seed notebook's examples come first: they are what difftape must answer.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

import difftape.answers.program as program_module
from difftape.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def strict_loads(text: str):
    """json.loads that refuses NaN/Infinity tokens."""

    def refuse(token: str):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def run(*args: str, input: str | bytes | None = None, code: int | None = 0, env: dict | None = None):
    """Invoke the CLI in-process; check the exit code (unless None) and that no traceback escaped."""
    result = CliRunner().invoke(cli, list(args), input=input, env=env, prog_name="difftape")
    assert "Traceback" not in result.output, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exc_info
    if code is not None:
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    if result.exit_code == 2:
        assert result.stderr.strip()
    return result


def run_json(*args: str, code: int | None = 0, **kw) -> dict:
    result = run(*args[:1], "--json", *args[1:], code=code, **kw)
    obj = strict_loads(result.stdout)
    assert isinstance(obj, dict)
    return obj


def lines(result) -> list[str]:
    return result.stdout.splitlines()


def after(result, label: str) -> str:
    """The line after the header that starts with ``label`` (the value printed under it)."""
    out = lines(result)
    for i, line in enumerate(out):
        if line.split("  ")[0].strip() == label:
            return out[i + 1]
    raise AssertionError(f"no {label!r} in {result.stdout!r}")


# ----------------------------------------------------------------------------------------
# the seed notebook


def test_notebook_grad_of_cube():
    r = run("grad", "x**3", "--at", "2")
    assert after(r, "grad x") == "12.0"
    assert run_json("grad", "x**3", "--at", "2")["grad"] == {"x": 12.0}


def test_notebook_eval_of_cube_is_an_int():
    r = run("eval", "x**3", "--at", "2")
    assert lines(r)[-1] == "8"
    value = run_json("eval", "x**3", "--at", "2")["value"]
    assert value == 8 and type(value) is int


def test_notebook_forward():
    src = "W*x + b; W = ones(2,2); b = zeros(2); x = [1,0]"
    r = run("eval", src)
    assert r.stdout.splitlines()[-2:] == ["[[1. 0.]", " [1. 0.]]"]
    obj = run_json("eval", src)
    assert obj["value"] == [[1.0, 0.0], [1.0, 0.0]]
    assert all(type(v) is float for row in obj["value"] for v in row)
    assert obj["shape"] == [2, 2] and obj["dtype"] == "float64"


def test_notebook_gradient_of_square_is_exactly_two_x():
    src = "y = x**2; x = randn(2,2)"
    g = run_json("grad", src, "--seed", "7")
    x = run_json("eval", src, "--seed", "7", "--of", "x")
    assert g["of"] == "y"
    xs = np.array(x["value"], dtype=np.float64)
    gx = np.array(g["grad"]["x"], dtype=np.float64)
    assert gx.shape == (2, 2)
    assert np.max(np.abs(2 * xs - gx)) == 0.0
    assert (2 * xs).tobytes() == gx.tobytes()
    assert np.array(g["value"]).tobytes() == (xs**2).tobytes()
    # a scalar target is not summed; this one is (2, 2) and is
    assert g["summed"] is True


def test_notebook_unwatched_const_gives_null_and_watched_gives_one():
    src = "a*x; a = const(1.0); x = 1.0"
    assert run_json("grad", src, "--wrt", "a")["grad"] == {"a": None}
    r = run("grad", src, "--wrt", "a")
    assert "null" in r.stdout and "--watch a" in r.stdout
    assert run_json("grad", src, "--wrt", "a", "--watch", "a")["grad"] == {"a": 1.0}
    assert run_json("grad", src, "--watch", "a")["grad"] == {"x": 1.0, "a": 1.0}


def test_notebook_five_x_and_product():
    assert run_json("grad", "5*x; x = 1.0")["grad"] == {"x": 5.0}
    assert run_json("grad", "x1*x2; x1 = 1.0; x2 = 1.0")["grad"] == {"x1": 1.0, "x2": 1.0}
    r = run("grad", "x1*x2", "--at", "x1=1.0", "--at", "x2=1.0")
    assert after(r, "grad x1") == "1.0" and after(r, "grad x2") == "1.0"


# ----------------------------------------------------------------------------------------
# help, version, completion


def test_group_help_documents_completion_exit_codes_and_dashdash():
    r = run("--help")
    for needle in ("_DIFFTAPE_COMPLETE", "bash_source", "Exit status", "--", "eval", "grad", "jacobian",
                   "hessian", "check", "graph", "diff"):
        assert needle in r.stdout
    assert "diff " in r.stdout.split("Commands:")[1]
    assert run("-h").stdout == r.stdout


def test_every_command_makes_its_options_when_used_and_only_then():
    """Start-up makes the options of the command that runs only (ProgramCommand's deferred params); each
    command's options are made whole on first use, in their order, with no name given twice."""
    code = (
        "from difftape import cli\n"
        "made = [c for c in cli.cli.commands.values() if not c._deferred]\n"
        "print(len(cli.cli.commands), len(made))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    n, made = map(int, p.stdout.split())
    assert n >= 13 and made == 0
    for name, command in cli.commands.items():
        params = command.params
        assert params and all(isinstance(q, click.Parameter) for q in params), name
        names = [q.name for q in params]
        assert len(names) == len(set(names)), name
        r = run(name, "--help")
        assert r.exit_code == 0 and "Usage:" in r.stdout, (name, r.output)


@pytest.mark.parametrize("command", ["eval", "grad", "jacobian", "hessian", "check", "graph", "diff"])
def test_command_help_has_examples_and_dashdash(command):
    r = run(command, "--help")
    assert "Examples:" in r.stdout
    assert f"difftape {command} " in r.stdout
    assert "'--'" in r.stdout
    for option in ("--at", "--of", "--seed", "--dtype", "--json", "-f, --file"):
        assert option in r.stdout


def _help_examples() -> list[tuple[str, list[str]]]:
    """Every runnable ``difftape ...`` example line of every --help (not pipes or files)."""
    import shlex

    out = []
    for command in ["", "eval", "grad", "jacobian", "hessian", "check", "graph"]:
        text = CliRunner().invoke(cli, [command, "--help"] if command else ["--help"], prog_name="difftape").stdout
        for line in text.split("Examples:", 1)[1].splitlines():
            line = line.strip().split("   (")[0].split("  (")[0]
            if line.startswith("difftape ") and "|" not in line and " -f " not in line:
                out.append((command or "difftape", shlex.split(line)[1:]))
    return out


@pytest.mark.parametrize(("command", "argv"), _help_examples())
def test_help_examples_run(command, argv):
    r = run(*argv, code=None)
    assert r.exit_code == 0, (argv, r.stdout, r.stderr)


def test_check_help_states_default_tolerances():
    r = run("check", "--help")
    assert "1e-06" in r.stdout and "1e-08" in r.stdout


def test_version():
    import difftape

    assert run("--version").stdout.strip() == f"difftape {difftape.__version__}"


def test_no_command_is_a_usage_error():
    r = run(code=2)
    assert "Usage" in r.stderr


def test_shell_completion_script_and_candidates():
    r = run(env={"_DIFFTAPE_COMPLETE": "bash_source"})
    assert "_DIFFTAPE_COMPLETE" in r.stdout and "complete" in r.stdout
    r = run(env={"_DIFFTAPE_COMPLETE": "bash_complete", "COMP_WORDS": "difftape gr", "COMP_CWORD": "1"})
    assert "grad" in r.stdout and "graph" in r.stdout
    r = run(env={"_DIFFTAPE_COMPLETE": "bash_complete", "COMP_WORDS": "difftape eval --dtype f",
                 "COMP_CWORD": "3"})
    assert "float32" in r.stdout and "float64" in r.stdout


# ----------------------------------------------------------------------------------------
# reading the program


def test_program_from_file_and_stdin(tmp_path):
    f = tmp_path / "cube.dt"
    f.write_text("# a comment\ny = x**3\n", encoding="utf-8")
    assert run_json("eval", "-f", str(f), "--at", "2")["value"] == 8
    assert run_json("eval", "--file", str(f), "--at", "2")["value"] == 8
    assert run_json("eval", "-", "--at", "2", input="x**3")["value"] == 8
    assert run_json("eval", "-f", "-", "--at", "2", input="x**3")["value"] == 8


def test_program_errors_of_reading(tmp_path):
    r = run("eval", code=2)
    assert "no program" in r.stderr
    f = tmp_path / "p.dt"
    f.write_text("x", encoding="utf-8")
    assert "not both" in run("eval", "x", "-f", str(f), code=2).stderr
    assert run("eval", "-f", str(tmp_path / "missing.dt"), code=2).stderr
    bad = tmp_path / "bad.dt"
    bad.write_bytes(b"x\xff\xfe")
    assert "UTF-8" in run("eval", "-f", str(bad), code=2).stderr
    assert "UTF-8" in run("eval", "-", input=b"\xff", code=2).stderr


def test_program_starting_with_dash_after_double_dash():
    r = run("eval", "--at", "x=2", "--", "-x**2")
    assert lines(r)[-1] == "-4"
    assert run_json("grad", "--at", "x=2", "--", "-x**2")["grad"] == {"x": -4.0}
    # without '--' it is the program too (issue 14): a word that is no option of the command
    assert lines(run("eval", "--at", "x=2", "-x**2"))[-1] == "-4"


# ----------------------------------------------------------------------------------------
# --at, --of, --seed, --dtype


def test_at_values_are_constant_expressions():
    assert run_json("eval", "x", "--at", "x=[1,2]")["value"] == [1, 2]
    assert run_json("eval", "x", "--at", "pi/4")["value"] == pytest.approx(np.pi / 4)
    assert run_json("eval", "x", "--at", "x=randn(3)")["shape"] == [3]
    assert run_json("eval", "x + y", "--at", "x=1", "--at", "y=-3")["value"] == -2
    assert run_json("eval", "x", "--at=-1.5")["value"] == -1.5


def test_bare_at_needs_exactly_one_unbound_input():
    r = run("eval", "x + y", "--at", "1", code=2)
    assert "NAME=VALUE" in r.stderr
    assert "NAME=VALUE" in run("eval", "1 + 2", "--at", "1", code=2).stderr
    assert run_json("eval", "x + y", "--at", "x=1", "--at", "2")["value"] == 3
    run("eval", "x", "--at", "1", "--at", "2", code=2)
    assert "twice" in run("eval", "x", "--at", "x=1", "--at", "x=2", code=2).stderr


def test_bad_at_value_points_into_the_option():
    r = run("eval", "x", "--at", "x=[1,", code=2)
    assert "--at" in r.stderr and "^" in r.stderr
    obj = run_json("eval", "x", "--at", "x=foo(", code=2)
    assert obj["error"]["kind"] and "--at" in obj["error"]["message"]
    # a value must be constant
    assert run("eval", "x", "--at", "x=y+1", code=2).stderr


def test_of_selects_the_target():
    src = "y = x**2; z = 3*x"
    assert run_json("eval", src, "--at", "2", "--of", "z")["value"] == 6
    obj = run_json("grad", src, "--at", "x=2.0", "--of", "z")
    assert obj["of"] == "z" and obj["grad"] == {"x": 3.0}
    assert run("eval", src, "--at", "2", "--of", "nope", code=2).stderr


def test_seed_makes_results_reproducible():
    a = run_json("eval", "randn(3)")["value"]
    assert run_json("eval", "randn(3)", "--seed", "0")["value"] == a
    assert run_json("eval", "randn(3)", "--seed", "1")["value"] != a
    assert run_json("eval", "randn(3)", "--seed", "1")["value"] == run_json("eval", "randn(3)", "--seed", "1")["value"]
    run("eval", "randn(3)", "--seed", "-1", code=2)
    run("eval", "randn(3)", "--seed", "x", code=2)


def test_dtype_float32():
    obj = run_json("grad", "y = x**2; x = randn(2,2)", "--dtype", "float32")
    assert obj["dtype"] == "float32"
    x = np.array(run_json("eval", "x; x = randn(2,2)", "--dtype", "float32")["value"]).astype(np.float32)
    assert np.array(obj["grad"]["x"]).astype(np.float32).tobytes() == (2 * x).tobytes()
    assert "float32" in run("eval", "randn(2)", "--dtype", "float32").stdout
    run("eval", "x", "--dtype", "float16", code=2)


def test_numpy_warnings_are_values_not_noise():
    r = run("eval", "log(x)", "--at", "0.0")
    # no numpy warning; only difftape's own note (issue 14)
    assert r.stderr == "note: value is -inf\n" and lines(r)[-1] == "-inf"
    assert run_json("eval", "x/0", "--at", "1.0")["value"] == "inf"
    assert run_json("eval", "log(x)", "--at", "-1.0")["value"] == "nan"
    assert run_json("eval", "log(x)", "--at", "[0.0, 1.0, -1.0]")["value"] == ["-inf", 0.0, "nan"]


# ----------------------------------------------------------------------------------------
# grad


def test_grad_wrt_takes_comma_lists_and_repeats():
    src = "a*b*c; a = 2.0; b = 3.0; c = 5.0"
    assert run_json("grad", src)["grad"] == {"a": 15.0, "b": 10.0, "c": 6.0}
    assert run_json("grad", src, "--wrt", "c,a")["grad"] == {"c": 6.0, "a": 15.0}
    assert run_json("grad", src, "--wrt", "a", "--wrt", "b")["grad"] == {"a": 15.0, "b": 10.0}
    assert run("grad", src, "--wrt", "nope", code=2).stderr
    assert run("grad", src, "--wrt", "a,,b", code=2).stderr
    assert run("grad", src, "--wrt", "1x", code=2).stderr


def test_grad_watch_takes_comma_lists():
    src = "a*b*x; a = const(2.0); b = const(3.0); x = 1.0"
    assert run_json("grad", src, "--watch", "a,b")["grad"] == {"x": 6.0, "a": 3.0, "b": 2.0}
    assert run("grad", src, "--watch", "x", code=2).stderr  # x is a variable, not a const


def test_grad_unconnected():
    src = "2*x; x = 1.0; z = 3.0"
    obj = run_json("grad", src, "--wrt", "x,z")
    assert obj["grad"] == {"x": 2.0, "z": None}
    assert "does not depend on z" in run("grad", src, "--wrt", "x,z").stdout
    assert run_json("grad", src, "--wrt", "x,z", "--unconnected", "zero")["grad"] == {"x": 2.0, "z": 0.0}
    run("grad", src, "--unconnected", "maybe", code=2)


def test_grad_of_non_scalar_sums_and_says_so():
    r = run("grad", "x**2", "--at", "[1.0, 2.0]")
    assert "sum(" in r.stdout
    obj = run_json("grad", "x**2", "--at", "[1.0, 2.0]")
    assert obj["grad"] == {"x": [2.0, 4.0]} and obj["summed"] is True
    assert run_json("grad", "x**2", "--at", "3.0")["summed"] is False
    assert "sum(" not in run("grad", "x**2", "--at", "3.0").stdout


def test_grad_value_is_promoted_to_float():
    obj = run_json("grad", "x**3", "--at", "2")
    assert obj["value"] == 8.0 and type(obj["value"]) is float


# ----------------------------------------------------------------------------------------
# jacobian and hessian


def test_jacobian():
    obj = run_json("jacobian", "x**2", "--at", "[1.0, 2.0, 3.0]")
    assert obj["jacobian"]["x"] == [[2.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 6.0]]
    obj = run_json("jacobian", "A @ x; A = const([[1.0, 2.0], [3.0, 4.0]])", "--at", "x=[1.0, 1.0]")
    assert obj["jacobian"] == {"x": [[1.0, 2.0], [3.0, 4.0]]}
    r = run("jacobian", "x*y", "--at", "x=[1.0, 2.0]", "--at", "y=3.0")
    assert "jacobian x" in r.stdout and "jacobian y" in r.stdout and "shape (2, 2)" in r.stdout


def test_hessian():
    r = run("hessian", "x**3", "--at", "2")
    assert after(r, "hessian x x") == "12.0"
    obj = run_json("hessian", "sum(x**2 * y)", "--at", "x=[1.0, 2.0]", "--at", "y=3.0")
    assert obj["hessian"]["x"]["x"] == [[6.0, 0.0], [0.0, 6.0]]
    assert obj["hessian"]["x"]["y"] == [2.0, 4.0]
    assert obj["hessian"]["y"]["x"] == [2.0, 4.0]
    assert obj["hessian"]["y"]["y"] == 0.0


def test_jacobian_and_hessian_unconnected():
    src = "2*x; x = 1.0; z = [3.0, 4.0]"
    assert run_json("jacobian", src)["jacobian"] == {"x": 2.0, "z": [0.0, 0.0]}
    obj = run_json("jacobian", src, "--unconnected", "none")
    assert obj["jacobian"] == {"x": 2.0, "z": None}
    assert "null" in run("jacobian", src, "--unconnected", "none").stdout
    obj = run_json("hessian", src)
    assert obj["hessian"] == {"x": {"x": 0.0, "z": [0.0, 0.0]}, "z": {"x": [0.0, 0.0], "z": [[0.0, 0.0], [0.0, 0.0]]}}
    obj = run_json("hessian", src, "--wrt", "x,z", "--unconnected", "none")
    assert obj["hessian"]["z"]["z"] is None
    assert "null" in run("hessian", src, "--unconnected", "none").stdout


def test_hessian_of_non_scalar_points_to_jacobian():
    r = run("hessian", "x**2", "--at", "[1.0, 2.0]", code=2)
    assert "jacobian" in r.stderr
    obj = run_json("hessian", "x**2", "--at", "[1.0, 2.0]", code=2)
    assert obj["error"]["kind"] == "shape" and "jacobian" in obj["error"]["message"]


# ----------------------------------------------------------------------------------------
# check


def test_check_passes_and_names_the_method():
    r = run("check", "sin(x)", "--at", "x=0.5", "--expect", "cos(x)")
    assert "method" in r.stdout and "numeric_error" in r.stdout and "ok" in lines(r)[-1]
    obj = run_json("check", "sin(x)", "--at", "x=0.5")
    assert obj["ok"] is True and obj["method"]
    row = obj["inputs"]["x"]
    for key in ("max_abs_err", "max_rel_err", "numeric_error", "tape", "numeric", "analytic"):
        assert key in row
    assert row["analytic"] == pytest.approx(math.cos(0.5), rel=1e-15)  # derived: cos(x)


def test_check_mismatch_exits_one():
    r = run("check", "x**2", "--at", "3.0", "--expect", "3*x", code=1)
    assert "MISMATCH" in r.stdout
    obj = run_json("check", "x**2", "--at", "3.0", "--expect", "x=3*x", code=1)
    assert obj["ok"] is False and obj["inputs"]["x"]["max_abs_err"] == 3.0


def test_check_expect_per_input_and_tolerances():
    src = "x*y"
    obj = run_json("check", src, "--at", "x=2.0", "--at", "y=3.0", "--expect", "x=y", "--expect", "y=x")
    assert obj["ok"] is True and set(obj["inputs"]) == {"x", "y"}
    assert obj["rtol"] == 1e-6 and obj["atol"] == 1e-8
    # a bare --expect is ambiguous with two inputs
    run("check", src, "--at", "x=2.0", "--at", "y=3.0", "--expect", "y", code=2)
    run("check", src, "--at", "x=2.0", "--at", "y=3.0", "--expect", "x=y", "--expect", "x=y", code=2)
    # loose tolerances accept what strict ones reject
    run("check", "x**2", "--at", "1.0", "--expect", "2.001*x", code=1)
    obj = run_json("check", "x**2", "--at", "1.0", "--expect", "2.001*x", "--rtol", "1e-2", "--atol", "0")
    assert obj["ok"] is True and obj["rtol"] == 1e-2 and obj["atol"] == 0.0
    for bad in ("-1", "nan", "inf", "x"):
        run("check", "x**2", "--at", "1.0", "--rtol", bad, code=2)


def test_check_bad_expect_has_a_caret():
    r = run("check", "x**2", "--at", "1.0", "--expect", "2*", code=2)
    assert "^" in r.stderr
    obj = run_json("check", "x**2", "--at", "1.0", "--expect", "2*", code=2)
    assert obj["error"]["line"] == 1


# ----------------------------------------------------------------------------------------
# graph


def test_graph_text_and_dot():
    r = run("graph", "sin(x)*x", "--at", "1.0")
    assert r.stdout.strip()
    assert "sin" in r.stdout
    r = run("graph", "sin(x)*x", "--at", "1.0", "--dot")
    assert "digraph" in r.stdout
    obj = run_json("graph", "sin(x)*x", "--at", "1.0", "--dot")
    assert obj["format"] == "dot" and "digraph" in obj["graph"]


def test_graph_grad():
    if not hasattr(program_module.Program, "grad_graph"):
        r = run("graph", "sin(x)*x", "--at", "1.0", "--grad", code=2)
        assert "not available yet" in r.stderr
    else:
        r = run("graph", "sin(x)*x", "--at", "1.0", "--grad")
        assert len(lines(r)) > len(lines(run("graph", "sin(x)*x", "--at", "1.0")))


# ----------------------------------------------------------------------------------------
# errors and exit codes


def test_syntax_error_has_line_column_and_caret():
    r = run("eval", "x +", code=2)
    first, src_line, caret = r.stderr.splitlines()[:3]
    assert first.startswith("error[syntax] at 1:")
    assert src_line.endswith("x +") and caret.strip().startswith("^")
    assert r.stdout == ""


def test_error_on_second_line_points_there():
    r = run("eval", "y = 1\nz = y +* 2", code=2)
    assert "at 2:" in r.stderr and "2 | z = y +* 2" in r.stderr


def test_json_errors_go_to_stdout_too():
    obj = run_json("eval", "x +", code=2)
    err = obj["error"]
    assert list(err) == ["kind", "message", "line", "column"]
    assert err["kind"] == "syntax" and err["line"] == 1 and isinstance(err["column"], int)
    obj = run_json("eval", "undefined_fn(1)", code=2)
    assert obj["error"]["kind"] in ("name", "arity", "type")


@pytest.mark.parametrize(
    "args",
    [
        ["eval", "x", "--bogus"],
        ["eval"],
        ["eval", "x", "--at"],
        ["grad", "x", "--unconnected", "maybe"],
        ["nosuchcommand"],
        ["eval", "x", "y"],
    ],
)
def test_click_usage_errors_exit_two_with_json(args):
    r = run(*args, code=2)
    assert r.stderr
    obj = run_json(*args, code=2)
    assert obj["error"]["kind"] == "usage" and obj["error"]["message"]


def test_unexpected_exception_is_an_internal_error_not_a_traceback(monkeypatch):
    def boom(self):
        raise RuntimeError("kaput")

    monkeypatch.setattr(program_module.Program, "evaluate", boom)
    r = run("eval", "x", "--at", "1", code=2)
    assert "internal" in r.stderr and "kaput" in r.stderr and "Traceback" not in r.stderr
    obj = run_json("eval", "x", "--at", "1", code=2)
    assert obj["error"]["kind"] == "internal"


def test_memory_error_is_a_limit(monkeypatch):
    def hungry(self):
        raise MemoryError

    monkeypatch.setattr(program_module.Program, "evaluate", hungry)
    assert run_json("eval", "x", "--at", "1", code=2)["error"]["kind"] == "limit"


def test_a_missing_dependency_says_how_to_install(monkeypatch):
    def missing(self):
        raise ModuleNotFoundError("No module named 'lark'", name="lark")

    monkeypatch.setattr(program_module.Program, "evaluate", missing)
    obj = run_json("eval", "x", "--at", "1", code=2)
    assert obj["error"]["kind"] == "environment" and "'lark'" in obj["error"]["message"]
    assert "pip install" in run("eval", "x", "--at", "1", code=2).stderr


def test_recursion_error_is_caught(monkeypatch):
    def deep(self):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(program_module.Program, "evaluate", deep)
    assert "internal" in run("eval", "x", "--at", "1", code=2).stderr


def test_main_function_is_the_entry_point():
    from difftape.cli import main

    with pytest.raises(SystemExit) as info:
        main(["eval", "x**3", "--at", "2", "--json"])
    assert info.value.code == 0
    with pytest.raises(SystemExit) as info:
        main(["eval", "x +"])
    assert info.value.code == 2


# ----------------------------------------------------------------------------------------
# real processes


def _subprocess(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "difftape", *args], input=input, capture_output=True, env=env,
                          cwd=ROOT, timeout=60)


def test_subprocess_grad_of_cube():
    p = _subprocess("grad", "x**3", "--at", "2")
    assert p.returncode == 0, p.stderr
    assert b"12.0" in p.stdout.splitlines()
    assert p.stderr == b""


def test_subprocess_json_and_stdin():
    p = _subprocess("eval", "-", "--at", "2", "--json", input=b"x**3")
    assert p.returncode == 0 and strict_loads(p.stdout.decode())["value"] == 8


def test_subprocess_exit_codes():
    p = _subprocess("eval", "x +", "--json")
    assert p.returncode == 2 and b"error[syntax]" in p.stderr and b"Traceback" not in p.stderr
    assert strict_loads(p.stdout.decode())["error"]["kind"] == "syntax"
    p = _subprocess("check", "x**2", "--at", "3.0", "--expect", "3*x")
    assert p.returncode == 1 and b"MISMATCH" in p.stdout
    p = _subprocess("eval", "--nope", "--json")
    assert p.returncode == 2 and strict_loads(p.stdout.decode())["error"]["kind"] == "usage"


def test_subprocess_undecodable_arguments():
    """Bytes that are not UTF-8 in argv reach Python as lone surrogates; stdout must stay valid JSON."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8:strict"}
    for argv in ([b"x", b"--at", b"1", b"--of", b"\xff"], [b"x\xff+"], [b"x", b"--at", b"\xff=1"]):
        p = subprocess.run([sys.executable, "-m", "difftape", "eval", "--json", *argv], capture_output=True, env=env,
                           cwd=ROOT, timeout=60)
        assert p.returncode == 2 and b"Traceback" not in p.stderr, p.stderr
        assert strict_loads(p.stdout.decode("utf-8"))["error"]["message"]
    # a bare expression names the target by its text, comments and all
    for extra in ([], [b"--json"]):
        p = subprocess.run([sys.executable, "-m", "difftape", "eval", *extra, b"[1,\n # \xff\n 2]"],
                           capture_output=True, env=env, cwd=ROOT, timeout=60)
        assert p.returncode == 0 and p.stderr == b"", p.stderr
        p.stdout.decode("utf-8")


def test_subprocess_completion_uses_difftape_variable():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "_DIFFTAPE_COMPLETE": "bash_source"}
    p = subprocess.run([sys.executable, "-m", "difftape"], capture_output=True, env=env, cwd=ROOT, timeout=60)
    assert p.returncode == 0 and b"complete" in p.stdout


def test_subprocess_closed_pipe_is_quiet():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "difftape", "eval", "ones(300000)", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert b"Traceback" not in err and proc.returncode in (0, 2)


def test_derivatives_at_a_singular_matrix():
    # the gradient of det exists there (the cofactors); a derivative that needs inv of a singular
    # matrix is a value error with exit 2, not error[internal]
    out = run_json("grad", "det(A)", "--at", "[[1.0, 2.0], [2.0, 4.0]]")
    np.testing.assert_allclose(out["grad"]["A"], [[4.0, -2.0], [-2.0, 1.0]], atol=1e-12)
    # det is a polynomial: its Hessian exists there too (it used to be refused)
    out = run_json("hessian", "det(A)", "--at", "[[1.0, 2.0], [2.0, 4.0]]")
    np.testing.assert_allclose(np.reshape(out["hessian"]["A"]["A"], (4, 4)),
                               [[0, 0, 0, 1], [0, 0, -1, 0], [0, -1, 0, 0], [1, 0, 0, 0]], atol=1e-12)
    err = run_json("grad", "sum(inv(A))", "--at", "[[1.0, 2.0], [2.0, 4.0]]", code=2)["error"]
    assert err["kind"] == "value" and "singular" in err["message"].lower()


def test_jacobian_and_hessian_blocks_over_the_limit_are_refused_before_allocating(monkeypatch):
    # 100 inputs, 100 outputs: a 10,000-element block; with the limit at 5,000 it must be refused
    # (it was computed whatever its size: a 10,000-vector's Jacobian took 5 GB)
    import difftape.language.compiler as compiler_module

    monkeypatch.setattr(compiler_module, "MAX_ELEMENTS", 5_000)
    for cmd, prog in [("jacobian", "x*2"), ("hessian", "sum(x**3)")]:
        err = run_json(cmd, prog, "--at", "x=zeros(100)", code=2)["error"]
        assert err["kind"] == "limit" and "(100, 100)" in err["message"] and "10,000" in err["message"]
    out = run("jacobian", "x*2", "--batch", input=json.dumps({"x": [0.0] * 100}) + '\n{"x": [1.0]}\n', code=2)
    first, second = (json.loads(line) for line in out.stdout.splitlines())
    assert first["error"]["kind"] == "limit" and second["jacobian"] == {"x": [[2.0]]}
    assert run_json("jacobian", "x*2", "--at", "x=zeros(70)")["jacobian"]["x"][0][0] == 2.0
