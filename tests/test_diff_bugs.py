"""Printed derivatives that were wrong (difftape issue 10), and a property test that looks for more.

Every printed derivative is a difftape program: evaluated with ``difftape eval``'s machinery
(:class:`Program`) at the original program's leaf values, it must give the tape's gradient
(``grad``), and ``check``, which uses it as its analytic reference, must agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from difftape.answers.program import Program
from difftape.cli import cli
from difftape.language.compiler import compile_program
from difftape.transforms.symbolic import derive


def leaf_values(prog: Program) -> dict[str, np.ndarray]:
    """The value of every leaf of a run of ``prog`` (inputs, variables, const bindings)."""
    leaves: dict[str, np.ndarray] = {}

    def keep(name: str, value: Any) -> Any:
        leaves[name] = np.asarray(getattr(value, "_value", value))
        return value

    prog.graph.run(seed=prog.seed, leaf=keep)
    return leaves


def eval_text(text: str, env: dict[str, np.ndarray], seed: int = 0) -> np.ndarray:
    """``difftape eval TEXT --at ...`` for the names the text uses (a derivative may use fewer)."""
    names = compile_program(text).named_nodes()
    prog = Program(text, at={k: v for k, v in env.items() if k in names}, seed=seed)
    return np.asarray(prog.evaluate())


def printed_and_tape(source: str, at: dict[str, Any]) -> tuple[dict[str, str], dict[str, np.ndarray], dict]:
    """(printed derivative texts, their values, the tape's gradients)."""
    prog = Program(source, at=at)
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
