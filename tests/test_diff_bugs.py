"""Printed derivatives that were wrong (difftape issue 10), and a property test that looks for more.

Every printed derivative is a difftape program: evaluated with ``difftape eval``'s machinery
(:class:`Program`) at the original program's leaf values, it must give the tape's gradient
(``grad``), and ``check``, which uses it as its analytic reference, must agree.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from difftape.answers.program import Program
from difftape.cli import cli
from difftape.transforms.symbolic import derive


def leaf_values(prog: Program) -> dict[str, np.ndarray]:
    """The value of every leaf of a run of ``prog`` (inputs, variables, const bindings)."""
    leaves: dict[str, np.ndarray] = {}

    def keep(name: str, value: Any) -> Any:
        leaves[name] = np.asarray(getattr(value, "_value", value))
        return value

    prog.graph.run(seed=prog.seed, leaf=keep)
    return leaves


def _used(env: dict[str, Any], text: str) -> dict[str, Any]:
    """The values of the names ``text`` mentions (``--at`` refuses names a program does not have)."""
    words = set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", text))
    return {k: v for k, v in env.items() if k in words}


def eval_text(text: str, env: dict[str, np.ndarray], seed: int = 0) -> np.ndarray:
    """``difftape eval TEXT --at ...`` for the names the text uses (a derivative may use fewer)."""
    prog = Program(text, at=_used(env, text), seed=seed)
    return np.asarray(prog.evaluate())


def printed_and_tape(source: str, at: dict[str, Any]) -> tuple[dict[str, str], dict[str, np.ndarray], dict]:
    """(printed derivative texts, their values, the tape's gradients)."""
    prog = Program(source, at=_used(at, source))
    texts = derive(source, values=prog.at).diff
    env = leaf_values(prog)
    tape = prog.grad(wrt=list(texts), unconnected="zero").grad
    values = {n: eval_text(t, env) for n, t in texts.items()}
    return texts, values, tape


def assert_printed_is_grad(source: str, at: dict[str, Any]) -> dict[str, str]:
    texts, values, tape = printed_and_tape(source, at)
    for name, got in values.items():
        want = np.asarray(tape[name], dtype=np.float64)
        assert got.shape == want.shape, f"{source!r} d/d{name} = {texts[name]}: shape {got.shape}, want {want.shape}"
        assert np.allclose(got.astype(np.float64), want, rtol=1e-9, atol=1e-12), (
            f"{source!r} d/d{name} = {texts[name]}\n got  {got}\n want {want}")
    return texts


# ----------------------------------------------------------------------------------------
# the reported cases


@pytest.mark.parametrize(
    ("source", "at", "name", "expected"),
    [
        # a scattered index plus the ones of a sum: the number was dropped when it joined an array
        ("p[1] + sum(p)", {"p": [0.5, 0.7]}, "p", "[1, 2]"),
        ("sum(z + z[1])", {"z": [1.0, 2.0, 3.0]}, "z", "[1, 4, 1]"),
        ("sum(x[1:] * 2) + sum(x)", {"x": [1.0, 2.0, 3.0]}, "x", "[1, 3, 3]"),
        # a constant list plus a number, folded
        ("sum(y * ([1.0, 2.0] + 1))", {"y": [0.1, 0.2]}, "y", "[2, 3]"),
        ("sum(y * ([1.0, 2.0] + 1))", {"y": 0.5}, "y", "5"),
        # an array exponent: b*y**(b - 1), with b - 1 folded
        ("sum(y ** [0.5, 2.0])", {"y": [1.5, 2.5]}, "y", "y**[-0.5, 1]*[0.5, 2]"),
    ],
)
def test_reported_derivatives(source: str, at: dict, name: str, expected: str) -> None:
    texts = assert_printed_is_grad(source, at)
    assert texts[name] == expected


def test_sum_without_values_is_the_scalar_derivative() -> None:
    # no --at: y is a scalar input, and d/dy sum(y * [2, 3]) is 5
    assert derive("sum(y * ([1.0, 2.0] + 1))").diff == {"y": "5"}


def test_check_agrees_on_slices_and_sums() -> None:
    result = CliRunner().invoke(cli, ["check", "sum(x[1:] * 2) + sum(x)", "--at", "x=[1.0, 2.0, 3.0]"])
    assert result.exit_code == 0, result.output
    assert "[1, 3, 3] (derived)" in result.output
    assert "MISMATCH" not in result.output


# ----------------------------------------------------------------------------------------
# masks: numbers in a derivative, booleans in the program


@pytest.mark.parametrize("y", [1.0, -1.0])
@pytest.mark.parametrize(
    "source",
    [
        "(1.0 - x) * (y > 0)",  # was -(y > 0): numpy cannot negate a boolean
        "-x * (y > 0) * (z < 0)",
        "x*(y > 0) + x*(z < 0)",  # was (y > 0) + (z < 0): numpy's + on booleans is `or`
        "x*(y > 0) - x*(z < 0)",  # was (y > 0) - (z < 0): numpy cannot subtract booleans
        "x*(y > 0) + x*(z < 0) + x",
        "x*(y > 0)*sin(z) - x*(z < 0)",
    ],
)
def test_masks_print_as_numbers(source: str, y: float) -> None:
    assert_printed_is_grad(source, {"x": 0.5, "y": y, "z": -2.0})


@pytest.mark.parametrize("y", [2.0, 0.5, -1.0])
def test_the_programs_plus_on_masks_is_or(y: float) -> None:
    # in the program, (y > 0) + (y > 1) is numpy's `or` (True, not 2), and so is its derivative
    texts = assert_printed_is_grad("x*((y > 0) + (y > 1))", {"x": 0.5, "y": y})
    assert texts["x"] == "logical_or(y > 0, y > 1)"
    assert_printed_is_grad("x*((y > 0)*(y < 3) + (y > 1))", {"x": 0.5, "y": y})


def test_unary_minus_texts_evaluate() -> None:
    assert derive("(1.0 - x) * (y > 0)").diff["x"] == "-1*(y > 0)"


def test_nested_where_keeps_the_shape_of_the_branch_it_drops() -> None:
    # where(c, where(c, 1/3, zeros(3)), 0) was where(c, 1/3, 0): shape () where u has shape (3,)
    assert_printed_is_grad("where(a >= 0, mean(u + [2, 0, 1]), b)", {"a": 1.0, "b": 0.5, "u": [1.0, 2.0, 3.0]})
    assert_printed_is_grad("where(a >= 0, b, mean(u + [2, 0, 1]))", {"a": -1.0, "b": 0.5, "u": [1.0, 2.0, 3.0]})


def test_derivative_sums_of_masks_add_as_numbers() -> None:
    from difftape.transforms.symbolic.evaluate import evaluate
    from difftape.transforms.symbolic.expr import const, var

    a, b = var("a", (2,), np.dtype(bool)), var("b", (2,), np.dtype(bool))
    env = {"a": np.array([True, False]), "b": np.array([True, True])}
    assert evaluate(a + b, env).tolist() == [2, 1]
    folded = const(np.array([True, False])) + const(np.array([True, True]))
    assert folded.op == "const" and np.asarray(folded.value).tolist() == [2, 1]


# ----------------------------------------------------------------------------------------
# property: random small programs, printed derivative == tape gradient

#: Names by shape: two scalars and two vectors of length 3.
NAMES = {(): ["a", "b"], (3,): ["u", "v"]}
LISTS = {
    (3,): ["[1.0, 2.0, 3.0]", "[0.5, -1.0, 2.0]", "[2, 0, 1]"],
    (2,): ["[1.0, -2.0]", "[0.5, 3.0]"],
}
EXPONENTS = {(3,): ["[0.5, 2.0, 3.0]", "[2, 1, 3]", "[-1.0, 2.0, 0.5]"], (2,): ["[0.5, 2.0]", "[3, -1]"]}
SLICES = {(2,): ["[1:]", "[:2]", "[::2]", "[2:0:-1]"], (3,): ["[::-1]", "[:]"], (): ["[0]", "[1]", "[-1]"]}


def _paren(text: str) -> str:
    return f"({text})"


@st.composite
def programs(draw: Any, shape: tuple[int, ...] = (), depth: int = 3) -> str:
    """A program text of the given shape: names, constants, lists, arithmetic with broadcasting,
    powers with number and array exponents, indexing and slicing, sums, masks multiplied in, where."""
    leaves = [f"{draw(st.sampled_from(['0.5', '2', '1.5', '-1']))}"] if shape == () else []
    leaves += NAMES.get(shape, []) + LISTS.get(shape, [])
    if shape == (2,):  # slices of the vectors
        leaves += [n + s for n in NAMES[(3,)] for s in SLICES[(2,)]]
    if depth <= 0:
        return draw(st.sampled_from(leaves))
    sub = depth - 1
    kind = draw(st.sampled_from(
        ["leaf", "arith", "arith", "broadcast", "unary", "power", "apower", "index", "sum", "mask", "where"]))
    if kind == "leaf":
        return draw(st.sampled_from(leaves))
    if kind == "arith":
        op = draw(st.sampled_from(["+", "-", "*", "/"]))
        left, right = draw(programs(shape, sub)), draw(programs(shape, sub))
        if op == "/":
            right = f"(({right})**2 + 1)"  # a divisor away from 0
        return f"({left} {op} {right})"
    if kind == "broadcast":  # a scalar with an array, or an array with a constant list
        op = draw(st.sampled_from(["+", "-", "*"]))
        other = draw(programs((), sub)) if shape == () or draw(st.booleans()) else draw(
            st.sampled_from(LISTS[shape]))
        first = draw(programs(shape, sub))
        return f"({other} {op} {first})" if draw(st.booleans()) else f"({first} {op} {other})"
    if kind == "unary":
        fn = draw(st.sampled_from(["sin", "cos", "tanh", "exp", "-", "abs", "sigmoid"]))
        inner = draw(programs(shape, sub))
        if fn in ("exp", "sin", "cos"):
            inner = f"tanh({inner})"  # no overflow, and no cos(u**27): that is ill-conditioned
        return f"(-{_paren(inner)})" if fn == "-" else f"{fn}({inner})"
    if kind == "power":
        k = draw(st.sampled_from(["2", "3", "0.5", "-1"]))
        base = draw(programs(shape, sub))
        if k in ("0.5", "-1"):
            base = f"(({base})**2 + 0.5)"
        return f"({base})**{k}" if k[0] != "-" else f"({base})**({k})"
    if kind == "apower":  # an array exponent, or an array raised to a name
        if shape == ():
            return f"(({draw(programs((), sub))})**2 + 1)**{draw(st.sampled_from(NAMES[()]))}"
        return f"(({draw(programs(shape, sub))})**2 + 0.5)**{draw(st.sampled_from(EXPONENTS[shape]))}"
    if kind == "index":
        if shape == ():
            src = draw(st.sampled_from([(3,), (2,)]))
            return f"{_paren(draw(programs(src, sub)))}{draw(st.sampled_from(SLICES[()]))}"
        if shape == (2,):
            return f"{_paren(draw(programs((3,), sub)))}{draw(st.sampled_from(SLICES[(2,)]))}"
        return f"{_paren(draw(programs((3,), sub)))}{draw(st.sampled_from(SLICES[(3,)]))}"
    if kind == "sum":
        if shape == ():
            src = draw(st.sampled_from([(3,), (2,)]))
            return f"{draw(st.sampled_from(['sum', 'mean']))}({draw(programs(src, sub))})"
        return f"(sum({draw(programs(shape, sub))}) * {draw(programs(shape, sub))})"
    cond = draw(conditions(shape, sub))
    if kind == "mask":
        if draw(st.booleans()):  # two masks: or-ed by the program's +, and-ed by *
            cond = f"({cond}) {draw(st.sampled_from(['+', '*']))} ({draw(conditions(shape, sub))})"
        return f"({draw(programs(shape, sub))} * ({cond}))"
    # a branch may be a scalar (broadcast by where), the condition too
    branch = [shape, shape, ()] if shape else [()]
    return (f"where({cond if draw(st.booleans()) else draw(conditions((), sub))}, "
            f"{draw(programs(draw(st.sampled_from(branch)), sub))}, {draw(programs(shape, sub))})")


@st.composite
def conditions(draw: Any, shape: tuple[int, ...], depth: int) -> str:
    """A comparison of that shape: with a number, a constant list or another program."""
    cmp_ = draw(st.sampled_from([">", "<", ">=", "<="]))
    right = draw(st.sampled_from(["0", "0.5", "other"] + LISTS.get(shape, [])))
    if right == "other":
        right = _paren(draw(programs(draw(st.sampled_from([shape, ()])), depth)))
    return f"{_paren(draw(programs(shape, depth)))} {cmp_} {right}"


def _close(got: np.ndarray, want: np.ndarray) -> bool:
    ok = np.isfinite(want)
    scale = max(1.0, float(np.max(np.abs(want[ok]), initial=0.0)))
    return bool(np.allclose(got[ok], want[ok], rtol=1e-9, atol=1e-12 * scale))


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from([(), (3,), (2,)]).flatmap(lambda s: programs(s, 3)),
       seed=st.integers(0, 2**31 - 1))
def test_printed_derivatives_of_random_programs_are_the_gradient(source: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    at = {n: rng.uniform(-2, 2, shape) if shape else float(rng.uniform(-2, 2))
          for shape, group in NAMES.items() for n in group}
    texts, values, tape = printed_and_tape(source, at)
    for name, got in values.items():
        want = np.asarray(tape[name], dtype=np.float64)
        assert got.shape == want.shape, (source, name, texts[name], got.shape, want.shape)
        assert _close(got.astype(np.float64), want), (source, at, name, texts[name], got, want)


def test_a_mask_list_times_a_number_is_a_number() -> None:
    from difftape.transforms.symbolic.derive import derivative_exprs

    _, exprs = derivative_exprs("sum(x * ([1, 0] == 1))", values={"x": [1.0, 2.0]})
    d = exprs["x"]
    assert d.op == "const" and np.asarray(d.value).tolist() == [1, 0]
    assert np.dtype(d.dtype).kind == np.asarray(d.value).dtype.kind == "i"  # not labelled a mask
