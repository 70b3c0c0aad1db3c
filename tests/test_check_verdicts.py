"""``check``'s verdicts next to kinks, jumps and rounding: no false MISMATCH, and wrong gradients still caught.

Each point here once got a wrong verdict. A correct gradient reported MISMATCH: a kink of another
element closer than every step tried gives a flat, "converged" tableau (``min``, ``max``, ``sort``,
``floor``, ``%``, ``abs`` along a direction of many elements), or a small term absorbed by a large sum
gives central differences of exactly 0 with error 0. A wrong gradient reported ok: one element's large
numerical error widened every element's tolerance, a wrong analytic element hid in a derivative along
a direction, and a direction's tolerance grew with the sum of its terms' sizes (~sqrt(n) too lax).
"""

from __future__ import annotations

import numpy as np
import pytest

from difftape.answers.batch import BatchProgram
from difftape.answers.program import Program
from difftape.ops import OPS


def randn(seed: int, n: int, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n) * scale


def check(source: str, x: np.ndarray, dtype: str = "float64", **options):
    with np.errstate(all="ignore"):
        return Program(source, at={"x": np.asarray(x, dtype=dtype)}, dtype=dtype).check(**options)


def literal(values: np.ndarray) -> str:
    return "[" + ", ".join(repr(float(v)) for v in np.reshape(values, -1)) + "]"


@pytest.fixture
def wrong_vjp(monkeypatch):
    """Make ``op``'s VJP wrong by ``factor`` (a wrong gradient of the tape, as a bug in an op would be)."""

    def make(op: str, factor: float) -> None:
        entry = OPS[op]
        old = entry.vjps

        def wrap(fn):
            return lambda F, g, y, *a, **k: fn(F, g, y, *a, **k) * factor

        monkeypatch.setattr(entry, "vjps", tuple(None if f is None else wrap(f) for f in old))

    return make


# (program, point, options): correct gradients that were reported MISMATCH
KINKS = [
    # another element's min 0.011 away: both sides of the step see the other one, a tableau of zeros
    ("min(x * x - x)", np.array([0.5012, 0.49, 1.3, -0.7]), {"mode": "full"}),
    # the max and its neighbour 7e-6 apart (randn * 1e-3), closer than the smallest step tried
    ("max(x)", np.array([0.0021466, 0.0021393, -0.001, 0.0005]), {"mode": "full"}),
    # a jump of floor 5e-6 away
    ("sum(floor(x) * x)", np.array([0.999995, 2.5, -1.3]), {"mode": "full"}),
    ("sum(x % 1.0)", randn(346406244, 150, 10.0), {"mode": "full"}),
    # exp(36) absorbs the change of the other terms: differences of exactly 0
    ("sum(exp(abs(x) * 3))", np.array([12.46, 0.5, -1.0]), {"mode": "full"}),
    # along random directions of 1,500-2,000 elements near 0: kinks 1e-7 away
    ("sum(abs(x))", randn(251911998, 2000, 1e-3), {"mode": "auto"}),
    ("sum(where(x > 0, x**2, -x))", randn(937170235, 1500, 1e-3), {"mode": "directional"}),
    # second order: the gradient jumps at kinks nearer than the steps (Hessian rows, and products)
    ("sum(sort(x) * linspace(-1, 2, 60))", randn(515301484, 60, 1e-3), {"mode": "full", "order": 2}),
    ("sum(abs(x * 1e4))", randn(811971985, 100, 1e-3), {"mode": "auto", "order": 2}),
]


@pytest.mark.parametrize("source,x,options", KINKS, ids=[f"{s}-{o.get('order', 1)}" for s, _, o in KINKS])
def test_a_right_gradient_next_to_a_kink_is_ok(source, x, options):
    res = check(source, x, **options)
    assert res.ok, {n: (r.max_abs_err, r.max_rel_err, r.numeric_error) for n, r in res.inputs.items()}


@pytest.mark.parametrize("source,x,options", KINKS[:7], ids=[s for s, _, _ in KINKS[:7]])
def test_a_wrong_expectation_next_to_a_kink_is_still_caught(source, x, options):
    with np.errstate(all="ignore"):
        g = np.asarray(Program(source, at={"x": x}).grad().grad["x"], dtype=np.float64)
    one = g.copy()
    i = int(np.argmax(np.abs(one)))
    one[i] *= 1 + 1e-3  # one element wrong by 1e-3
    for wrong in (one, -g):
        res = check(source, x, expect={"x": literal(wrong)}, **options)
        assert not res.ok


def test_one_element_with_a_large_numerical_error_does_not_widen_the_others(wrong_vjp):
    # d/dx 1/x at 1e-6 is -1e12, known to ~1e-3 absolute; abs's gradient wrong by 1e-3 must still be
    # caught at the other elements (it was not when every element got the largest error as slack)
    wrong_vjp("abs", 1 + 1e-3)
    res = check("sum(1 / x) + sum(abs(x))", np.array([1e-6, 0.7, -1.3]), mode="full")
    assert not res.ok


def test_a_wrong_vjp_next_to_kinks_is_still_caught(wrong_vjp):
    wrong_vjp("abs", 1 + 1e-3)
    assert not check("sum(abs(x))", randn(251911998, 2000, 1e-3), mode="directional").ok
    assert not check("min(x * x - x) + sum(abs(x))", np.array([0.5012, 0.49, 1.3, -0.7]), mode="full").ok


def test_a_gradient_wrong_everywhere_by_1_percent_is_caught_along_directions_in_float32(wrong_vjp):
    # the error of the derivative along v is ~1e-2 |g . v|, the old tolerance 1e-3 * sum |g_i v_i|
    wrong_vjp("tanh", 1 + 1e-2)
    res = check("sum(tanh(x) ** 2)", randn(3, 1500), dtype="float32", mode="directional")
    assert not res.ok


def test_a_wrong_analytic_element_is_caught_along_directions():
    x = randn(4, 2000)
    wrong = np.cos(x)
    wrong[7] *= 1.001
    res = check("sum(sin(x))", x, mode="directional", expect={"x": literal(wrong)})
    assert not res.ok
    assert check("sum(sin(x))", x, mode="directional", expect={"x": "cos(x)"}).ok


@pytest.mark.parametrize("source,x,options", [k for k in KINKS if k[2].get("order", 1) == 1],
                         ids=[s for s, _, o in KINKS if o.get("order", 1) == 1])
def test_check_batch_gives_the_same_verdicts_next_to_kinks(source, x, options):
    points = [{"x": x.tolist()}, {"x": (x * 1.5).tolist()}, {"x": (-x).tolist()}]
    with np.errstate(all="ignore"):
        got = BatchProgram(source).check(points, **options)
    for point, res in zip(points, got):
        want = check(source, np.asarray(point["x"]), **options)
        assert res.ok == want.ok
        assert res.inputs["x"].numeric_error == pytest.approx(want.inputs["x"].numeric_error, rel=1e-6, abs=1e-300)
    assert got[0].ok
