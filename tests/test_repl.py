"""``difftape repl`` (issue 14, item 10): a session over one growing program, driven from a pipe
(as scripts and tests do) or a terminal."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from difftape.cli import cli


def session(text: str, code: int = 0, *args: str):
    res = CliRunner().invoke(cli, ["repl", *args], input=text)
    assert res.exit_code == code, (res.exit_code, res.output)
    assert "Traceback" not in res.output
    return res


def test_the_issue_example_prints_the_gradient_6():
    res = session("y = x**2\n:at x=3\n:grad y\n")
    assert res.stdout.splitlines() == ["of y    shape ()  float64", "9.0", "grad x  shape ()  float64", "6.0"]


def test_the_issue_example_through_the_real_command():
    proc = subprocess.run([sys.executable, "-m", "difftape", "repl"], input="y = x**2\n:at x=3\n:grad y\n",
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "6.0" and "grad x" in proc.stdout


def test_bindings_and_functions_persist_and_expressions_print():
    res = session("f(t) = t**2 + 1\ny = f(x) + f(2*x)\n:at x=1.5\ny\nf(2) * 10\n")
    out = res.stdout.splitlines()
    assert out[:2] == ["of y  shape ()  float64", "13.25"]
    assert out[-1] == "50"


def test_rebinding_replaces_and_values_can_change():
    res = session("y = x**2\n:at x=2\n:grad y\ny = x**3\n:grad y\n:at x=1\n:eval y\n")
    grads = [line for i, line in enumerate(res.stdout.splitlines()) if i and "grad x" in
             res.stdout.splitlines()[i - 1]]
    assert grads == ["4.0", "12.0"]
    assert res.stdout.splitlines()[-1] == "1"


def test_diff_check_graph_jacobian_hessian():
    res = session("y = sin(x) * x\n:at x=0.5\n:diff y\n:check y\n:graph\n:hessian y\n:jacobian y\n")
    out = res.stdout
    assert "d/dx" in out and "ok: every gradient agrees" in out and "=> y" in out
    assert "hessian x x" in out and "jacobian x" in out


def test_errors_have_carets_and_the_session_goes_on():
    res = session("y = 2*x +* 1\n:bogus\nz = q\n:grad nothing\n:at x=\n:at x=1\ny = x + 1\n:eval y\n", code=2)
    assert "error[syntax] at 1:10" in res.stderr and "^" in res.stderr
    assert "unknown command ':bogus'" in res.stderr
    assert res.stdout.splitlines()[-1] == "2"


def test_a_cycle_is_refused_and_the_session_is_kept():
    res = session("w = 2\nw = w + 1\n:eval w\n", code=2)
    assert "error[cycle]" in res.stderr and res.stdout.splitlines()[-1] == "2"


def test_list_del_precision_help_and_quit():
    res = session("a = 1\nb = a + x\n:at x=2\n:list\n:del a\n:list\n:precision 3\nx / 3\n:precision full\n"
                  "x / 3\n:help\n:quit\n:eval b\n")
    out = res.stdout
    assert "a = 1\nb = a + x\n:at x=2\nb = a + x\n:at x=2" in out
    assert "0.667" in out and "0.6666666666666666" in out and ":grad NAME" in out
    assert out.count("of b") == 0  # nothing after :quit


@pytest.mark.parametrize("junk", ["\x00\x01\x02", "((((((((", "]" * 50, ":at " + "[" * 20000, "x" * 10000 + "(",
                                  "é = 2", ":eval 1+", "\ufeffy = 1"])
def test_no_traceback_on_any_input(junk):
    res = CliRunner().invoke(cli, ["repl"], input=junk + "\n:eval y\n")
    assert "Traceback" not in res.output and res.exit_code in (0, 2)
    assert res.exception is None or isinstance(res.exception, SystemExit)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
@pytest.mark.parametrize("argv", [["repl"], []], ids=["repl", "bare difftape"])
def test_on_a_terminal_it_prompts(argv):
    master, slave = os.openpty()
    env = {**os.environ, "TERM": "dumb"}
    proc = subprocess.Popen([sys.executable, "-m", "difftape", *argv], stdin=slave, stdout=slave, stderr=slave,
                            env=env, close_fds=True)
    os.close(slave)
    os.write(master, b"y = x**2\n:at x=3\n:grad y\n:quit\n")
    chunks = []
    try:
        while True:
            data = os.read(master, 4096)
            if not data:
                break
            chunks.append(data)
    except OSError:
        pass
    proc.wait(timeout=60)
    os.close(master)
    out = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, out
    assert "dt> " in out and "6.0" in out


def test_commands_name_the_binding_they_need():
    res = session(":grad y\ny = 2*x\n:grad nothing\n:at x=\n:grad x\n", code=2)
    assert "no bindings yet" in res.stderr
    assert ":grad nothing: the session has no binding named 'nothing'; its bindings: y" in res.stderr
    assert ":at x=: give a value" in res.stderr and ":grad x: the session has no binding named 'x'" in res.stderr


def test_an_unrelated_binding_without_values_does_not_stop_another():
    res = session("z = q * 2\ny = x + 1\n:at x=1\n:grad y\n:graph\n")
    assert res.stdout.splitlines()[3] == "1.0" and "=> y" in res.stdout


def test_bare_difftape_without_a_terminal_is_the_usage_error():
    proc = subprocess.run([sys.executable, "-m", "difftape"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "repl" in proc.stderr and "Usage:" in proc.stderr


def test_diff_over_its_limit_names_the_sessions_way_to_raise_it():
    """The limit's message named --max-terms, which a session has no way to give: it names :max-terms,
    which raises (or lowers) the limit for the session's later :diff."""
    # a program no other test derives (derive counts the nodes it builds anew) and a limit of 1 node
    prog = "y = tanh(tanh(x**3 + 0.25)) * softplus(sigmoid(x) - 0.125)\n:at x=0.5\n"
    res = session(prog + ":max-terms 1\n:diff y\n:max-terms 100000\n:diff y\n", code=2)
    assert "error[limit]" in res.stderr and "raise the limit with :max-terms 10" in res.stderr
    assert "--max-terms" not in res.stderr
    x = 0.5
    z = np.tanh(x**3 + 0.25)
    s = 1 / (1 + np.exp(-x))
    soft = np.log1p(np.exp(s - 0.125))
    want = (1 - np.tanh(z) ** 2) * (1 - z**2) * 3 * x**2 * soft + np.tanh(z) * s * (1 - s) / (1 + np.exp(0.125 - s))
    assert "d/dx" in res.stdout  # the same :diff under the raised limit, with its value
    assert f"{want:.6f}"[:7] in res.stdout.replace("\n", " ")
    bad = session(":max-terms 0\n:max-terms lots\n", code=2)
    assert bad.stderr.count(":max-terms takes a positive whole number") == 2
    assert ":max-terms N" in session(":help\n").stdout


def test_a_sessions_precision_ends_with_it():
    """:precision full in one session (in this process) left every later session printing 17 digits."""
    assert session("y = x / 3\n:at x=1\n:precision full\n:eval y\n").stdout.splitlines()[-1] == "0.3333333333333333"
    assert session("y = x / 3\n:at x=1\n:eval y\n").stdout.splitlines()[-1] == "0.33333333"
