"""difftape minimize: the command (in-process and as a real process) and answers/minimize.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from difftape.answers.minimize import minimize_program, trace_text
from difftape.answers.program import Program
from difftape.cli import cli
from difftape.errors import DifftapeError

ROOT = Path(__file__).resolve().parents[1]
KEYS = ["of", "value", "argmin", "steps", "converged", "reason"]


def run(*args: str, code: int | None = 0, input: str | None = None):
    result = CliRunner().invoke(cli, ["minimize", *args], input=input, prog_name="difftape")
    assert "Traceback" not in result.output, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exc_info
    if code is not None:
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    return result


def run_json(*args: str, code: int | None = 0) -> dict:
    obj = json.loads(run(*args, "--json", code=code).stdout)
    assert list(obj) == KEYS
    return obj


def _subprocess(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "difftape", "minimize", *args], capture_output=True, env=env,
                          cwd=ROOT, timeout=120, **kw)


# ----------------------------------------------------------------------------------------
# answers


def test_each_method_finds_the_minimum_of_a_bowl():
    source = "(x - 3)**2 + 2*(y + 1)**2; x = 0.0; y = 0.0"
    for method, lr, steps in (("lbfgs", None, 100), ("gd", None, 200), ("sgd", 0.1, 2000), ("adam", 0.05, 20000)):
        res = minimize_program(Program(source), method=method, lr=lr, steps=steps, tol=1e-8)
        assert res.converged, (method, res.reason)
        assert res.argmin["x"] == pytest.approx(3.0, abs=1e-7)
        assert res.argmin["y"] == pytest.approx(-1.0, abs=1e-7)


def test_least_squares_reaches_lstsq():
    rng = np.random.default_rng(3)
    A, b = rng.standard_normal((25, 4)), rng.standard_normal(25)
    ref = np.linalg.lstsq(A, b, rcond=None)[0]
    # inputs are variables too: --wrt w keeps A and b fixed
    prog = Program("sum((A @ w - b)**2); w = zeros(4)", at={"A": A, "b": b})
    res = minimize_program(prog, wrt=["w"], tol=1e-9)
    assert res.converged, res.reason
    assert list(res.argmin) == ["w"]
    np.testing.assert_allclose(res.argmin["w"], ref, rtol=0, atol=1e-8)
    # as consts they are fixed without --wrt
    source = "sum((A @ w - b)**2); A = const(randn(25, 4)); b = const(randn(25)); w = zeros(4)"
    A, b = Program(source, of="A").evaluate(), Program(source, of="b").evaluate()
    res = minimize_program(Program(source), tol=1e-9)
    assert list(res.argmin) == ["w"]
    np.testing.assert_allclose(res.argmin["w"], np.linalg.lstsq(A, b, rcond=None)[0], rtol=0, atol=1e-8)


def test_rosenbrock_through_the_program():
    prog = Program("(1 - a)**2 + 100*(b - a**2)**2", at={"a": np.float64(-1.2), "b": np.float64(1.0)})
    res = minimize_program(prog, tol=1e-10)
    assert res.converged
    assert res.argmin["a"] == pytest.approx(1.0, abs=1e-6) and res.argmin["b"] == pytest.approx(1.0, abs=1e-6)


def test_watched_const_and_float32():
    res = minimize_program(Program("(c - 2)**2 * k; c = const(5.0); k = const(3.0)"), wrt=["c"], watch=["c"])
    assert res.argmin == {"c": pytest.approx(2.0)}
    with pytest.raises(DifftapeError, match="add --watch c"):
        minimize_program(Program("(c - 2)**2; c = const(5.0)"), wrt=["c"])
    res = minimize_program(Program("(x - 0.5)**2; x = 2.0", dtype="float32"))
    assert res.argmin["x"].dtype == np.float32 and res.value.dtype == np.float32


def test_program_errors():
    with pytest.raises(DifftapeError, match="scalar target"):
        minimize_program(Program("x**2; x = [1.0, 2.0]"))
    with pytest.raises(DifftapeError, match="no value for input"):
        minimize_program(Program("x**2 + z", at={"x": np.float64(1.0)}))
    with pytest.raises(DifftapeError, match="nothing to minimise"):
        minimize_program(Program("2 + 3"))


def test_trace_text_shows_small_values_and_shapes_of_large():
    line = trace_text(3, {"x": np.float64(0.5), "W": np.zeros((3, 3))}, 0.25, 1.0)
    assert line == "step 3  value 0.25  grad_norm 1  x=0.5  W=<shape (3, 3)>"


# ----------------------------------------------------------------------------------------
# the command


def test_text_output():
    out = run("(x - 3)**2 + (y + 1)**2; x = 0.0; y = 0.0").stdout.splitlines()
    assert out[0].split() == ["of", "(x", "-", "3)**2", "+", "(y", "+", "1)**2"]
    assert out[1].split() == ["method", "lbfgs"]
    assert out[3].split()[:2] == ["argmin", "x"]
    assert float(out[4]) == pytest.approx(3.0)
    assert float(out[6]) == pytest.approx(-1.0)
    assert out[-1].startswith("stopped   converged: gradient norm")


def test_json_output_and_exit_codes():
    obj = run_json("(1 - a)**2 + 100*(b - a**2)**2", "--at", "a=-1.2", "--at", "b=1", "--tol", "1e-9")
    assert obj["converged"] is True
    assert obj["argmin"]["a"] == pytest.approx(1.0, abs=1e-6)
    assert obj["steps"] > 10
    obj = run_json("(1 - a)**2 + 100*(b - a**2)**2", "--at", "a=-1.2", "--at", "b=1", "--steps", "5", code=1)
    assert obj["converged"] is False and obj["steps"] == 5 and "step limit (5)" in obj["reason"]
    obj = run_json("sum((x - [1.0, 2.0])**2)", "--at", "x=[0.0, 0.0]")
    assert obj["argmin"]["x"] == [pytest.approx(1.0), pytest.approx(2.0)]


def test_wrt_fixes_the_others():
    obj = run_json("(x - y)**2 + (y - 1)**2; x = 5.0; y = 0.0", "--wrt", "x")
    assert list(obj["argmin"]) == ["x"] and obj["argmin"]["x"] == pytest.approx(0.0, abs=1e-6)


def test_methods_and_lr():
    for method, extra in (("gd", []), ("sgd", ["--lr", "0.1"]), ("adam", ["--lr", "0.1", "--steps", "20000"])):
        obj = run_json("(x - 3)**2", "--at", "x=0", "--method", method, *extra)
        assert obj["converged"], (method, obj)
        assert obj["argmin"]["x"] == pytest.approx(3.0, abs=1e-5)
    r = run("(x - 3)**2", "--at", "x=0", "--lr", "0.1", code=2)
    assert "lbfgs chooses its own steps" in r.stderr
    run("(x - 3)**2", "--at", "x=0", "--lr", "0", code=2)
    run("(x - 3)**2", "--at", "x=0", "--method", "newton", code=2)
    run("(x - 3)**2", "--at", "x=0", "--tol", "-1", code=2)


def test_trace_lines():
    r = run("(x - 3)**2", "--at", "x=0", "--method", "sgd", "--lr", "0.25", "--steps", "3", "--trace", code=1)
    out = r.stdout.splitlines()
    assert [line.split()[:2] for line in out[:4]] == [["step", str(k)] for k in range(4)]
    assert out[1] == "step 1  value 2.25  grad_norm 3  x=1.5"  # x - 0.25 * 2(x - 3) from 0
    r = run("(x - 3)**2", "--at", "x=0", "--method", "sgd", "--lr", "0.25", "--steps", "2", "--trace", "--json",
            code=1)
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    assert objs[0] == {"step": 0, "value": 9.0, "grad_norm": 6.0, "at": {"x": 0.0}}
    assert objs[2]["step"] == 2 and list(objs[-1]) == KEYS


def test_non_finite_value_stops_with_a_reason():
    obj = run_json("log(x)", "--at", "x=1", "--method", "sgd", "--lr", "2", code=1)
    assert obj["converged"] is False
    assert "became nan at step 1" in obj["reason"] and obj["argmin"]["x"] == 1.0
    obj = run_json("x", "--at", "x=0", code=1)
    assert "unbounded below" in obj["reason"]
    r = run("log(x)", "--at", "x=-1", code=2)
    assert r.stderr.startswith("error[value]: at the starting point the value is nan")


def test_bad_input_exits_2():
    for args in (["x**2", "--at", "x=[1.0, 2.0]"], ["x +"], ["x**2 + z", "--at", "x=1"], ["x**2", "--wrt", "y",
                                                                                             "--at", "x=1"]):
        r = run(*args, code=2)
        assert r.stderr.startswith("error[")
    obj = json.loads(run("x**2", "--at", "x=[1.0, 2.0]", "--json", code=2).stdout)
    assert obj["error"]["kind"] == "shape"


def test_progress_only_on_a_terminal(monkeypatch):
    from difftape.io.progress import Progress

    class Terminal:
        def __init__(self, tty):
            self.tty, self.text = tty, ""

        def isatty(self):
            return self.tty

        def write(self, s):
            self.text += s

        def flush(self):
            pass

    for tty in (True, False):
        stream = Terminal(tty)
        t = [0.0]
        p = Progress("minimize", unit="steps", total=100, bound=True, stream=stream, after=1.0,
                     clock=lambda t=t: t[0])
        p.update(1, note="value 1  grad_norm 1")  # too early: nothing
        assert stream.text == ""
        t[0] = 2.0
        p.update(50, note="value 0.5  grad_norm 0.1")
        p.close()
        if tty:
            assert "50/100 steps" in stream.text and "value 0.5  grad_norm 0.1" in stream.text
            assert "at most 0:02" in stream.text  # the step limit is a bound, not the end
            assert stream.text.endswith("\r\x1b[K")
        else:
            assert stream.text == ""


# ----------------------------------------------------------------------------------------
# real processes


def test_subprocess_converges_and_json():
    p = _subprocess("(1 - a)**2 + 100*(b - a**2)**2", "--at", "a=-1.2", "--at", "b=1", "--json")
    assert p.returncode == 0, p.stderr
    obj = json.loads(p.stdout)
    assert list(obj) == KEYS and obj["converged"] is True
    assert p.stderr == b""  # no progress line when stderr is not a terminal


def test_subprocess_not_converged_and_bad_input():
    p = _subprocess("(x - 3)**2", "--at", "x=0", "--method", "sgd", "--steps", "3")
    assert p.returncode == 1
    assert b"NOT converged: reached the step limit (3)" in p.stdout
    p = _subprocess("sqrt(x)", "--at", "x=-1")
    assert p.returncode == 2 and p.stderr.startswith(b"error[value]")
    assert b"Traceback" not in p.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_subprocess_ctrl_c_stops_cleanly():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "difftape", "minimize", "(x - 3)**2", "--at", "x=0", "--method", "sgd",
         "--lr", "1e-12", "--steps", "100000000", "--tol", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    time.sleep(3.0)  # well into the loop (start-up takes well under a second)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    lines = err.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("difftape: interrupted at step "), err
    assert b"Traceback" not in err and out == b""
