"""``difftape diff`` as a mathematician reads it (issue 13), held to SymPy.

On the seeded set of tests/math_cases.py (about 400 programs: random scalar compositions,
multivariable programs with bindings, second and third derivatives, vector and matrix programs)
every printed derivative is evaluated with difftape at random points and compared with SymPy's
derivative evaluated in 30 digits (rtol 1e-9); no case may take 2 s; and on a seeded part of the
scalar cases the printed text is no longer than ``str(sympy.simplify(sympy.diff(...)))``
(benchmarks/bench_diff.py measures the whole set). SymPy's results are computed here, and kept
in pytest's cache between runs (keyed by SymPy's version), since SymPy is slow.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

sp = pytest.importorskip("sympy")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_diff as bd  # noqa: E402
import math_cases as mc  # noqa: E402

from difftape.answers.program import Program  # noqa: E402
from difftape.cli import cli  # noqa: E402
from difftape.language.compiler import compile_program  # noqa: E402
from difftape.transforms.symbolic import derive  # noqa: E402
from difftape.transforms.symbolic import simplify as S  # noqa: E402, N812
from difftape.transforms.symbolic.evaluate import evaluate  # noqa: E402
from difftape.transforms.symbolic.expr import var  # noqa: E402
from difftape.transforms.symbolic.simplify import F  # noqa: E402

CASES = mc.all_cases()
#: The scalar cases whose printed length is held to SymPy's here (every LENGTH_STEP-th one).
LENGTH_STEP = 3


def _cache_key(case: mc.Case) -> str:
    text = f"{sp.__version__}|{case.family}|{case.program}|{case.sympy}|{case.order}|{case.wrt}|{case.shapes}"
    return "difftape/diff_math/" + hashlib.sha1(text.encode()).hexdigest()[:16]


def _reference(case: mc.Case, cache: Any) -> dict[tuple[str, ...], Any]:
    """SymPy's derivatives of a case (from pytest's cache when it has them)."""
    key = _cache_key(case)
    stored = cache.get(key, None) if cache is not None else None
    if stored is not None:
        out: dict[tuple[str, ...], Any] = {}
        for k, v in stored["refs"]:
            if isinstance(v, dict):
                out[tuple(k)] = ([sp.sympify(t, locals=_symbols(case)) for t in v["items"]], tuple(v["shape"]))
            else:
                out[tuple(k)] = sp.sympify(v, locals=_symbols(case))
        return out
    refs = bd.sympy_derivatives(case)
    if cache is not None:
        enc = [[list(k), {"items": [sp.srepr(e) for e in v[0]], "shape": list(v[1])} if isinstance(v, tuple)
                else sp.srepr(v)] for k, v in refs.items()]
        cache.set(key, {"refs": enc})
    return refs


def _symbols(case: mc.Case) -> dict[str, Any]:
    names = {n: sp.Symbol(n, real=True) for n in ("x", "y", "z")}
    for name, shape in case.shapes.items():
        names[name] = sp.Symbol(name, real=True)
        for idx in np.ndindex(*shape):
            s = f"{name}_" + "_".join(str(i) for i in idx)
            names[s] = sp.Symbol(s, real=True)
    return names


@pytest.fixture(scope="module")
def cache(request: pytest.FixtureRequest) -> Any:
    return getattr(request.config, "cache", None)


# ----------------------------------------------------------------------------------------
# the set


def test_the_set_is_about_four_hundred_seeded_cases() -> None:
    assert len(CASES) >= 390
    assert [c.program for c in mc.all_cases()] == [c.program for c in CASES]  # the same every time
    assert {c.family for c in CASES} == {"scalar", "multi", "second", "array"}
    assert sum(c.order == 2 for c in CASES) >= 60 and any(c.order == 3 for c in CASES)
    assert sum(";" in c.program for c in CASES) >= 60  # programs with bindings


@pytest.mark.parametrize("case", CASES, ids=[f"{k}-{c.family}" for k, c in enumerate(CASES)])
def test_every_printed_derivative_is_right(case: mc.Case, cache: Any) -> None:
    rng = np.random.default_rng(zlib.crc32(case.program.encode()))
    pts = mc.points(case, rng, 8)
    start = time.perf_counter()
    res = derive(case.program, wrt=case.wrt, order=case.order, values=pts[0] if case.family == "array" else None)
    assert time.perf_counter() - start < 2.0, "diff took over 2 s"
    printed = bd._flat(res.printed)
    refs = _reference(case, cache)
    assert set(printed) == set(refs)
    checked = 0
    for pt in pts:
        wants = {k: bd.truth(r, case, pt) for k, r in refs.items()}
        if any(not np.all(np.isfinite(w)) or np.max(np.abs(w), initial=0) > 1e12 for w in wants.values()):
            continue  # outside the domain of the formula
        with np.errstate(all="ignore"):
            env = bd.leaf_values(case.program, pt)
        for key, want in wants.items():
            got = np.broadcast_to(bd.ours(printed[key], env), want.shape)
            assert np.all(np.abs(got - want) <= bd.RTOL * np.abs(want) + 1e-12), (
                f"{case.ident}: {'/'.join(key)} = {printed[key]} at {pt}\n got  {got}\n want {want}")
        checked += 1
        if checked == 3:
            break
    assert checked >= 1, "no point where SymPy's derivative is finite"


def _length_cases() -> list[mc.Case]:
    scalar = [c for c in CASES if c.family != "array"]
    return scalar[::LENGTH_STEP]


def test_printed_length_is_at_most_sympys(cache: Any) -> None:
    ours = theirs = 0
    for case in _length_cases():
        key = _cache_key(case) + "/simplified"
        n = cache.get(key, None) if cache is not None else None
        if n is None:
            n = sum(len(str(sp.simplify(e))) for e in _reference(case, cache).values())
            if cache is not None:
                cache.set(key, n)
        theirs += n
        ours += sum(len(t) for t in bd._flat(derive(case.program, wrt=case.wrt, order=case.order).printed).values())
    assert len(_length_cases()) >= 100
    assert ours <= theirs, f"printed {ours} characters, SymPy's simplify {theirs} ({ours / theirs:.3f}x)"


# ----------------------------------------------------------------------------------------
# the issue's table


def _printed(source: str, **kw: Any) -> dict[str, Any]:
    return derive(source, **kw).printed


@pytest.mark.parametrize(("source", "kw", "expected"), [
    ("x**x", {}, {"x": "x**x*(log(x) + 1)"}),
    ("x**y", {}, {"x": "y*x**(y - 1)", "y": "x**y*log(x)"}),
    ("norm(x)", {"values": {"x": [1.0, 2.0]}}, {"x": "x/norm(x)"}),
    ("arctan(1/x)", {}, {"x": "-1/(x**2 + 1)"}),
    ("log10(x)", {}, {"x": "1/(log(10)*x)"}),
    ("exp(x**2)", {"order": 3}, {"x": "exp(x**2)*(8*x**3 + 12*x)"}),
    ("mean((X@w - y)**2); X = randn(5, 3); y = randn(5)", {"values": {"w": [0.0, 1.0, 2.0]}, "wrt": ["w"]},
     {"w": "0.4*(X @ w - y) @ X"}),
    ("x*y", {"order": 2}, {"x": {"x": "0", "y": "1"}, "y": {"x": "1", "y": "0"}}),
    ("sum(x**2 * y)", {"order": 2, "values": {"x": [1.0, 2.0], "y": 3.0}},
     {"x": {"x": "2*y*eye(2)", "y": "2*x"}, "y": {"x": "2*x", "y": "0"}}),
    ("cosh(3)*x", {}, {"x": "cosh(3)"}),
])
def test_the_issues_examples(source: str, kw: dict, expected: dict) -> None:
    assert _printed(source, **kw) == expected


def test_the_programs_own_names_are_kept() -> None:
    source = "sum(h**2); h = tanh(W @ x + b); W = randn(2, 3); b = randn(2)"
    res = derive(source, values={"x": [1.0, 2.0, 3.0]})
    for name in ("W", "x", "b"):
        text = res.printed[name]
        assert text.startswith("h = tanh(b + W @ x); ") and text.count("tanh") == 1, text
    assert res.printed["x"] == "h = tanh(b + W @ x); 2*(h*(1 - h**2)) @ W"


def test_no_guard_is_printed_and_the_tape_keeps_its_own() -> None:
    for source in ("x**x", "x**y", "log(x)*x**y", "norm(x)"):
        res = derive(source, values={"x": [1.0, 2.0]} if source == "norm(x)" else None)
        for text in res.printed.values():
            assert "where" not in text, (source, text)
    res = derive("x**y")
    assert "where(x == 0, 1, x)" in res.diff["y"]  # check's reference: the tape's form
    assert res.notes == ["d/dy: where x = 0 the tape uses 0"]
    grad = Program("x**y", at={"x": 0.0, "y": 2.0}).grad().grad
    assert grad["y"] == 0.0  # what the note says


@pytest.mark.parametrize("source", ["x**y", "log(x)*y", "x*log(x)**2*y", "x**x", "sqrt(x**2 + y**2)*y"])
def test_printed_text_equals_grad_wherever_it_is_defined(source: str) -> None:
    res = derive(source)
    for x in (0.0, 1.5, -0.5, 2.0):
        for y in (0.0, 2.0, -1.0):
            at = {"x": x, "y": y} if "y" in source else {"x": x}
            with np.errstate(all="ignore"):
                grad = Program(source, at=at).grad(unconnected="zero").grad
            for name, text in res.printed.items():
                with np.errstate(all="ignore"):
                    got = float(compile_program(text, values=at).run()._value)
                if np.isfinite(got):
                    assert got == pytest.approx(float(grad[name]), rel=1e-12, abs=1e-300), (source, name, x, y)


def test_a_cancellation_is_said_in_a_note() -> None:
    res = derive("x**2/x")
    assert res.printed == {"x": "1"}
    assert res.notes and "x = 0" in res.notes[0] and "nan" in res.notes[0]
    with np.errstate(all="ignore"):
        assert np.isnan(float(Program("x**2/x", at={"x": 0.0}).grad().grad["x"]))  # the tape there


def test_x_over_x_is_recorded_where_the_simplifier_cancels_it() -> None:
    # the property test of tests/test_simplify.py skips the points this log names
    x = var("x", (), np.dtype(np.float64))
    with S.recording() as log:
        e = F.where(x / x > 0, 1.0, 2.0)
    assert evaluate(e, {"x": 0.0}) == 1.0  # kept: where x != 0 it is right
    assert any(b is x for b in log)


# ----------------------------------------------------------------------------------------
# values, formats, the command


def _cli(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_values_follow_each_derivative() -> None:
    out = _cli("diff", "x**y", "--at", "x=2", "--at", "y=3").output
    assert "d/dx  y*x**(y - 1)\n      = 12.0\n" in out
    obj = json.loads(_cli("diff", "sum(x**2 * y)", "--at", "x=[1.0, 2.0]", "--at", "y=3.0", "--order", "2",
                          "--json").output)
    assert list(obj) == ["of", "diff", "value", "order"]
    hess = Program("sum(x**2 * y)", at={"x": np.array([1.0, 2.0]), "y": 3.0}).hessian().hessian
    for a in ("x", "y"):
        for b in ("x", "y"):
            assert np.array_equal(np.asarray(obj["value"][a][b]), np.asarray(hess[a][b]))


def test_mixed_partials_and_higher_orders_on_the_command_line() -> None:
    out = _cli("diff", "x*y", "--order", "2").output
    assert "d2/dxdy  1" in out and "d2/dydx  1" in out
    assert "d3/dx3  exp(x**2)*(8*x**3 + 12*x)" in _cli("diff", "exp(x**2)", "--order", "3").output


@pytest.mark.parametrize("source", ["sin(x)/x", "x**x", "log10(x)*y", "arctan(1/x)", "sigmoid(x)*exp(y)",
                                    "sqrt(x**2 + y**2)", "u = x*y + sin(x); u**2 + exp(u)", "abs(x)*y"])
def test_sympy_format_parses_to_the_same_function(source: str) -> None:
    res = derive(source, fmt="sympy")
    text = derive(source).printed
    xs, ys = sp.Symbol("x", real=True), sp.Symbol("y", real=True)
    for name, s in res.printed.items():
        e = sp.sympify(s, locals={"x": xs, "y": ys})
        for x, y in ((0.7, 1.3), (1.9, -0.4)):
            want = float(compile_program(text[name], values={"x": x, "y": y}).run()._value)
            assert float(e.evalf(30, subs={xs: x, ys: y})) == pytest.approx(want, rel=1e-12)


def test_latex_format() -> None:
    assert derive("sin(x)/x", fmt="latex").printed == {"x": r"\frac{x \cdot \cos x - \sin x}{x^{2}}"}
    assert derive("log10(x)", fmt="latex").printed == {"x": r"\frac{1}{\ln 10 \cdot x}"}
    assert derive("exp(x)*sin(x)", fmt="latex").printed == {"x": r"e^{x} \cdot \left(\cos x + \sin x\right)"}
    out = _cli("diff", "sum(h**2); h = tanh(W @ x + b); W = randn(2, 3); b = randn(2)", "--wrt", "b",
               "--at", "x=[1.0, 2.0, 3.0]", "--format", "latex").output
    assert r"h = \tanh\left(b + W x\right)" in out


def test_sympy_format_refuses_arrays_clearly() -> None:
    result = CliRunner().invoke(cli, ["diff", "sum(W @ x); W = randn(2, 3)", "--at", "x=[1.0, 2.0, 3.0]",
                                      "--format", "sympy"])
    assert result.exit_code == 2 and "scalar" in result.output and "Traceback" not in result.output
