"""The command line's forward-mode commands (jvp, vjp, hvp) and check's modes, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from difftape.cli import cli


def run(*args: str, code: int = 0) -> str:
    res = CliRunner().invoke(cli, list(args), prog_name="difftape")
    assert res.exit_code == code, (res.exit_code, res.output)
    return res.output


def run_json(*args: str, code: int = 0) -> dict:
    return json.loads(run(*args, "--json", code=code).strip().splitlines()[-1])


def test_jvp_is_the_jacobian_times_the_tangent():
    out = run_json("jvp", "W @ sin(x); W = [[1.0, 2.0], [3.0, 4.0]]", "--at", "x=[0.5, 1.5]",
                   "--tangent", "x=[1.0, -2.0]")
    jac = run_json("jacobian", "W @ sin(x); W = [[1.0, 2.0], [3.0, 4.0]]", "--at", "x=[0.5, 1.5]", "--wrt", "x")
    assert set(out) == {"of", "value", "jvp", "shape", "dtype"}
    np.testing.assert_allclose(out["jvp"], np.array(jac["jacobian"]["x"]) @ [1.0, -2.0], rtol=1e-14)


def test_jvp_with_a_nameless_tangent_and_inputs_held_fixed():
    out = run_json("jvp", "sin(x) * y", "--at", "x=2.0", "--at", "y=3.0", "--tangent", "x=1.0")
    assert out["jvp"] == pytest.approx(3 * np.cos(2.0), rel=1e-15)
    assert run_json("jvp", "sin(x) * x", "--at", "2.0", "--tangent", "1.0")["jvp"] == pytest.approx(
        np.cos(2.0) * 2 + np.sin(2.0), rel=1e-15)


def test_vjp_is_the_cotangent_weighted_gradient():
    out = run_json("vjp", "x**2 * y", "--at", "x=[1.0, 2.0]", "--at", "y=3.0", "--cotangent", "[1.0, -1.0]")
    assert set(out) == {"of", "value", "vjp", "shape", "dtype"}
    assert out["vjp"] == {"x": [6.0, -12.0], "y": -3.0}


def test_hvp_is_the_hessian_times_the_tangent():
    out = run_json("hvp", "sum(x**3 * y)", "--at", "x=[1.0, 2.0]", "--at", "y=0.5", "--tangent", "x=[1.0, 1.0]")
    hess = run_json("hessian", "sum(x**3 * y)", "--at", "x=[1.0, 2.0]", "--at", "y=0.5")["hessian"]
    assert set(out) == {"of", "value", "hvp", "shape", "dtype"}
    np.testing.assert_allclose(out["hvp"]["x"], np.array(hess["x"]["x"]) @ [1.0, 1.0], rtol=1e-14)
    np.testing.assert_allclose(out["hvp"]["y"], np.array(hess["y"]["x"]) @ [1.0, 1.0], rtol=1e-14)


@pytest.mark.parametrize("args,kind", [
    (["jvp", "x*2", "--at", "x=1.0"], "usage"),
    (["jvp", "x*2", "--at", "x=1.0", "--tangent", "z=1"], "name"),
    (["jvp", "sum(x)", "--at", "x=[1.0, 2.0]", "--tangent", "x=[1.0, 2.0, 3.0]"], "shape"),
    (["jvp", "x*y", "--at", "x=1.0", "--at", "y=2.0", "--tangent", "1.0"], "usage"),
    (["vjp", "x*2", "--at", "x=1.0"], "usage"),
    (["vjp", "x*2", "--at", "x=1.0", "--cotangent", "[1, 2]"], "shape"),
    (["hvp", "x*[1.0, 2.0]", "--at", "x=1.0", "--tangent", "1.0"], "shape"),
])
def test_bad_directions_are_clear_errors(args, kind):
    assert run_json(*args, code=2)["error"]["kind"] == kind


def test_check_modes_and_orders_through_the_command():
    ok = run_json("check", "sum(sin(x) * exp(x))", "--at", "x=randn(5)", "--mode", "directional")
    assert ok["ok"] and ok["mode"] == "directional" and ok["inputs"]["x"]["mode"].startswith("directional")
    assert len(ok["inputs"]["x"]["forward"]) == 3
    bad = run_json("check", "sum(sin(x) * exp(x))", "--at", "x=randn(5)", "--mode", "directional",
                   "--directions", "5", "--expect", "cos(x)*exp(x)", code=1)
    assert not bad["ok"] and len(bad["inputs"]["x"]["tape"]) == 5
    second = run_json("check", "sum(x**3 * y)", "--at", "x=[1.0, 2.0]", "--at", "y=0.5", "--order", "2")
    assert second["ok"] and second["order"] == 2


def test_check_defaults_follow_the_dtype():
    out = run_json("check", "sum(tanh(x) * x)", "--at", "x=[0.3, -1.2]", "--dtype", "float32")
    assert out["ok"] and (out["rtol"], out["atol"]) == (1e-3, 1e-5) and "float64 model" in out["method"]
    explicit = run_json("check", "sum(tanh(x) * x)", "--at", "x=[0.3, -1.2]", "--dtype", "float32", "--rtol", "0.01")
    assert explicit["rtol"] == 0.01


@pytest.mark.parametrize("program,at,kind", [
    ("log(x)", "-1.0", "domain"), ("sqrt(x)", "0.0", "domain"), ("2+3", None, "value"),
])
def test_check_gives_no_verdict_where_none_exists(program, at, kind):
    args = ["check", program] + (["--at", at] if at is not None else [])
    assert run_json(*args, code=2)["error"]["kind"] == kind


def test_large_check_as_a_real_process():
    # the case: a 300 x 300 W, checked directionally; a wrong --expect at that size is still caught
    base = [sys.executable, "-m", "difftape", "check", "sum(tanh(W@x)**2)", "--at", "W=randn(300,300)",
            "--at", "x=randn(300)", "--json"]
    good = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["mode"] == "directional"
    wrong = subprocess.run(base + ["--expect", "W=2*x"], capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 1 and not json.loads(wrong.stdout)["inputs"]["W"]["ok"]


def test_forward_commands_as_real_processes():
    out = subprocess.run([sys.executable, "-m", "difftape", "hvp", "x**2 * y", "--at", "x=1.0", "--at", "y=2.0",
                          "--tangent", "x=1.0"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "hvp x" in out.stdout and "4.0" in out.stdout, out.stderr


@pytest.mark.parametrize("source,at", [
    ("x * ones(7) * y", {"x": 2.0, "y": 3.0}),
    ("concatenate([sin(x), x**2, [sum(x)]]) * w", {"x": np.array([0.3, -1.0]), "w": 1.5}),
    ("outer(x, exp(x)) @ [1.0, 2.0, 3.0]", {"x": np.array([0.1, 0.2, 0.3])}),
    ("where(x > 0, sqrt(x), 0) * ones((2, 2))", {"x": -1.0}),
])
def test_jacobian_by_forward_mode_equals_reverse_mode(source, at):
    # fewer input elements than outputs: Program.jacobian runs forward mode (one pass per input element)
    from difftape.answers.program import Program

    prog = Program(source, at=at)
    fwd = prog.jacobian(unconnected="zero").jacobian
    from difftape.engine.tape import Tape

    names, watched = prog.sources(None, ())
    with Tape(persistent=True) as tape:
        out, leaves = prog._run([tape], watched)
    rev = tape.jacobian(out, [leaves[n] for n in names], unconnected="zero")
    for n, r in zip(names, rev):
        np.testing.assert_allclose(fwd[n], r.numpy(), rtol=1e-14, atol=0)


def test_a_tall_jacobian_takes_one_forward_pass_per_input():
    import time

    start = time.perf_counter()
    out = run_json("jacobian", "x * ones(100000)", "--at", "x=2.0")
    assert time.perf_counter() - start < 20 and len(out["jacobian"]["x"]) == 100000
    assert set(out["jacobian"]["x"]) == {1.0}
