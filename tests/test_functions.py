"""User-defined functions (`f(t) = t**2 + 1`) and string literals (einsum's subscripts), issue 14.

Each behaviour is checked through click's CliRunner and, for the main ones, through the real
``difftape`` command in a subprocess. Gradients through functions are compared with finite
differences in float64.
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
from difftape.language.compiler import MAX_CALL_DEPTH, compile_program


def run(*args: str, code: int = 0, stdin: str | None = None) -> str:
    res = CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)
    assert res.exit_code == code, (res.exit_code, res.output)
    return res.output


def real(*args: str, code: int = 0, stdin: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "difftape", *args], input=stdin, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc


def grad_json(*args: str) -> dict:
    return json.loads(run("grad", *args, "--json"))


# ----------------------------------------------------------------------------------------
# functions


def test_the_issue_example_gives_the_gradient_of_the_inlined_program():
    out = grad_json("f(t) = t**2 + 1; y = f(x) + f(2*x)", "--at", "x=1.5")
    assert out["of"] == "y"
    assert out["value"] == (1.5**2 + 1) + (3.0**2 + 1)
    assert out["grad"]["x"] == 2 * 1.5 + 8 * 1.5


def test_the_issue_example_through_the_real_command():
    proc = real("grad", "f(t) = t**2 + 1; y = f(x) + f(2*x)", "--at", "x=1.5", "--json")
    assert json.loads(proc.stdout)["grad"] == {"x": 15.0}


@pytest.mark.parametrize("source", [
    "g(a, b) = a * f(b) + sin(a); f(t) = exp(t) / (1 + t**2); y = g(x, z) + f(x*z)",
    "y = h(x, z); h(u, v) = sum(u * v) + f(u); f(w) = sum(w**3)",  # use before definition
    "sq(t) = t*t; y = sum(sq(sq(x)) * z) + sq(sum(z))",
])
def test_gradients_through_functions_match_finite_differences(source):
    x = np.array([0.3, -1.2, 0.7])
    z = np.array([1.1, 0.4, -0.6])
    prog = Program(source, at={"x": x, "z": z})
    res = prog.grad()

    def total(*xs):
        return float(np.sum(Program(source, at={"x": xs[0], "z": xs[1]}).evaluate()))

    for i, name in enumerate(["x", "z"]):
        assert_close(res.grad[name], numeric_grad(total, [x, z], i), what=f"{source}: d/d{name}")


def test_a_function_may_use_the_programs_bindings_and_inputs():
    out = grad_json("f(t) = a * t + b; a = 3.0; y = f(x)", "--at", "x=2.0", "--at", "b=1.0")
    assert out["value"] == 7.0 and out["grad"] == {"a": 2.0, "x": 3.0, "b": 1.0}


def test_parameters_shadow_bindings():
    out = json.loads(run("eval", "t = 100; f(t) = 2 * t; y = f(3) + t", "--json"))
    assert out["value"] == 106


def test_literal_arguments_used_twice_are_not_folded_away():
    # t*t folds to a literal: t must still be there for "+ t"
    assert json.loads(run("eval", "f(t) = t*t + t; f(2)", "--json"))["value"] == 6
    assert json.loads(run("eval", "f(t) = [t, [3, 4]]; y = f([1, 2]) + f([5, 6])[0, 1]", "--json"))["value"] == [
        [7, 8], [9, 10]]


def test_the_target_is_the_binding_no_other_uses_when_functions_use_bindings():
    out = json.loads(run("eval", "f(t) = t * k; k = 3; y = f(2)", "--json"))
    assert out["of"] == "y" and out["value"] == 6


def test_diff_prints_in_terms_of_the_inputs():
    out = run("diff", "f(t) = t**2 + 1; y = f(x) + f(2*x)")
    assert "d/dx  10*x" in out


def test_check_through_a_function():
    out = real("check", "f(t) = sin(t) * w; w = 2.0; f(x)", "--at", "x=0.3", "--json").stdout
    assert json.loads(out)["ok"] is True


def test_graph_shows_calls_inlined_with_the_span_of_the_call():
    source = "f(t) = t**2 + 1; y = f(x) + f(2*x)"
    graph = compile_program(source, values={"x": 1.5})
    ops = [n.op for n in graph.nodes]
    assert ops.count("power") == 2 and ops.count("add") == 3
    first = next(n for n in graph.nodes if n.op == "power")
    assert first.span.text(source) == "f(x)"
    second = [n for n in graph.nodes if n.op == "power"][1]
    assert second.span.text(source) == "f(2*x)"
    text = run("graph", source, "--at", "x=1.5")
    assert "1:22-1:26" in text and "1:29-1:35" in text


@pytest.mark.parametrize(("source", "kind", "message", "caret"), [
    ("f(t) = t; f(1, 2)", "arity", "f() takes 1 argument (t), got 2", "f(1, 2)"),
    ("f(t, u) = t; y = f(1)", "arity", "f() takes 2 arguments (t, u), got 1", "f(1)"),
    ("f(t) = t; f + 1", "name", "'f' is a function: call it", "f"),
    ("f(t) = t + g; g(u) = u; f(1)", "name", "'g' is a function: call it", "g"),
    ("f(t) = g(t); g(u) = f(u) + 1; f(x)", "cycle", "g() calls f() here, and f() calls g() at 1:8", "f(u)"),
    ("f(t) = f(t) + 1; f(1)", "cycle", "f() calls itself", "f(t)"),
    ("f(t) = t + [1, 2]; f([1, 2, 3])", "shape", "(in f(), called at 1:20)", "+"),
    ("f(1) = 2; f(2)", "syntax", "must be plain names", "1"),
    ("f(t, t) = t; f(1, 2)", "name", "parameter 't' is given twice", "t"),
    ("sin(t) = 2; sin(1)", "name", "cannot define 'sin'", "sin"),
    ("f(pi) = 1; f(2)", "name", "cannot name a parameter 'pi'", "pi"),
    ("f = 2; f(t) = t; f(1)", "name", "'f' is defined twice (first at 1:1)", "f"),
    ("f(t) = t; f = 2; f(1)", "name", "is the function defined at 1:1", "f"),
    ("f(t) = t; f(t=1)", "arity", "by position, not by keyword", "t"),
    ("f(t) = t(1); f(2)", "name", "'t' is a parameter of f(), not a function", "t"),
    ("f(t) = 2 * t", "syntax", "only defines functions", "f"),
])
def test_function_errors_have_a_caret(source, kind, message, caret):
    with pytest.raises(DifftapeError) as info:
        compile_program(source)
    err = info.value
    assert err.kind == kind and message in err.message, err.render()
    line = source.split("\n")[err.line - 1]
    assert line[err.column - 1:].startswith(caret), err.render()
    out = run("eval", source, code=2)
    assert f"error[{kind}]" in out and "^" in out


def test_function_errors_through_the_real_command():
    proc = real("eval", "f(t) = t; f(1, 2)", code=2)
    assert "error[arity] at 1:11" in proc.stderr and "^^^^^^^" in proc.stderr


def test_calls_nested_deeper_than_the_limit_are_a_limit_error():
    n = MAX_CALL_DEPTH + 5
    source = "; ".join(f"f{i}(t) = f{i + 1}(t) + 1" for i in range(n)) + f"; f{n}(t) = t; f0(x)"
    with pytest.raises(DifftapeError) as info:
        compile_program(source, values={"x": 1.0})
    assert info.value.kind == "limit"
    shallow = "; ".join(f"f{i}(t) = f{i + 1}(t) + 1" for i in range(50)) + "; f50(t) = t; f0(x)"
    assert Program(shallow, at={"x": 1.0}).evaluate() == 51.0


def test_inputs_used_only_in_functions_that_are_never_called_are_not_inputs():
    graph = compile_program("unused(t) = t * q; y = 2 * x", values={"x": 1.0})
    assert graph.inputs == ["x"]


# ----------------------------------------------------------------------------------------
# strings: einsum's subscripts


def test_einsum_in_a_program_matches_numpy_and_its_gradient_finite_differences():
    A = np.array([[1.0, 2.0, -1.0], [3.0, 4.0, 0.5]])
    x = np.array([0.5, -1.0, 2.0])
    source = 'sum(einsum("ij,j->i", A, x) ** 2)'
    prog = Program(source, at={"A": A, "x": x})
    assert_close(prog.evaluate(), np.sum(np.einsum("ij,j->i", A, x) ** 2))
    res = prog.grad()

    def total(*xs):
        return float(np.sum(np.einsum("ij,j->i", xs[0], xs[1]) ** 2))

    assert_close(res.grad["A"], numeric_grad(total, [A, x], 0))
    assert_close(res.grad["x"], numeric_grad(total, [A, x], 1))


def test_einsum_through_the_real_command_with_either_quote():
    for quote in ('"', "'"):
        proc = real("eval", f"einsum({quote}ij,j->i{quote}, A, x); A = [[1, 2], [3, 4]]; x = [1, 1]", "--json")
        assert json.loads(proc.stdout)["value"] == [3, 7]
    out = json.loads(run("eval", 'einsum(A, subscripts="ii->"); A = [[1, 2], [3, 4]]', "--json"))
    assert out["value"] == 5


@pytest.mark.parametrize(("source", "kind", "message", "caret"), [
    ('"ab" + 1', "type", "a string is not a value", '"ab"'),
    ('sum(x, axis="a")', "value", "a string is only ever einsum's subscripts", '"a"'),
    ("einsum(x, x)", "type", "must be a string written out", "x"),
    ('einsum("i,i->", x, "j")', "type", "only the subscripts may be a string", '"j"'),
    ('einsum("i->")', "arity", "at least one array", "einsum"),
    ('einsum("ij,j->i", x, x)', "shape", "", "einsum"),
    ('f(t) = t; f("a")', "type", "a string is not a value", '"a"'),
])
def test_string_errors(source, kind, message, caret):
    with pytest.raises(DifftapeError) as info:
        compile_program(source, values={"x": np.ones(2)})
    err = info.value
    assert err.kind == kind and message in err.message, err.render()
    assert source[err.column - 1:].startswith(caret), err.render()


def test_a_string_never_reaches_eval(monkeypatch):
    import builtins

    def refuse(*_a, **_k):
        raise AssertionError("eval was called")

    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", refuse)
    with pytest.raises(DifftapeError):
        compile_program('einsum("__import__(\'os\')", x)', values={"x": np.ones(2)})
    out = run("eval", 'einsum("i->", x)', "--at", "x=[1, 2]", "--json")
    assert json.loads(out)["value"] == 3


def test_an_unterminated_string_is_a_syntax_error():
    out = run("eval", 'einsum("ij, A)', code=2)
    assert "error[syntax] at 1:8" in out and "same quote" in out


def test_calls_that_multiply_the_programs_size_are_a_limit_error(monkeypatch):
    from difftape.language import compiler

    monkeypatch.setattr(compiler, "MAX_INLINED_NODES", 5_000)
    source = "; ".join(f"f{i}(t) = f{i + 1}(t) + f{i + 1}(t)" for i in range(40)) + "; f40(t) = t; f0(x)"
    with pytest.raises(DifftapeError) as info:
        compile_program(source, values={"x": 1.0})
    assert info.value.kind == "limit" and "5,000 operations" in info.value.message
    # the same shape, small enough, compiles (2**10 additions)
    small = "; ".join(f"f{i}(t) = f{i + 1}(t) + f{i + 1}(t)" for i in range(10)) + "; f10(t) = t; f0(x)"
    assert Program(small, at={"x": 1.0}).evaluate() == 1024.0
