"""Finite-difference helpers for the engine tests (not a test module).

Derivatives are checked in float64 against the five-point central difference
``(-f(x+2h) + 8 f(x+h) - 8 f(x-h) + f(x-2h)) / 12h`` with ``h = 1e-3`` (truncation
error ~h**4, rounding ~1e-13 / h): accurate to about 1e-9 for smooth functions, so
inputs are kept at least 0.05 away from every kink and domain boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import difftape as dt

H = 1e-3


def numeric_grad(f: Callable[..., float], xs: Sequence[np.ndarray], i: int, h: float = H) -> np.ndarray:
    """d f(*xs) / d xs[i] by five-point central differences (f returns a float)."""
    base = list(xs)
    x0 = np.array(xs[i], dtype=np.float64)
    out = np.zeros(x0.shape)
    for j in np.ndindex(x0.shape):
        vals = []
        for step in (2, 1, -1, -2):
            x = x0.copy()
            x[j] += step * h
            vals.append(f(*base[:i], x, *base[i + 1 :]))
        out[j] = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * h)
    return out


def numeric_jvp(g: Callable[[np.ndarray], np.ndarray], x: np.ndarray, v: np.ndarray, h: float = H) -> np.ndarray:
    """Directional derivative of an array-valued ``g`` at ``x`` along ``v`` (five-point)."""
    x = np.asarray(x, dtype=np.float64)
    gs = [np.asarray(g(x + s * h * v), dtype=np.float64) for s in (2, 1, -1, -2)]
    return (-gs[0] + 8 * gs[1] - 8 * gs[2] + gs[3]) / (12 * h)


def assert_close(actual: Any, expected: Any, rtol: float = 1e-6, atol: float = 1e-7, what: str = "") -> None:
    """|actual - expected| <= atol * scale + rtol * |expected| elementwise, scale = max(1, max|expected|)."""
    a = np.asarray(actual._value if isinstance(actual, dt.Tensor) else actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != expected {e.shape}"
    scale = max(1.0, float(np.max(np.abs(e)))) if e.size else 1.0
    err = np.abs(a - e)
    ok = err <= atol * scale + rtol * np.abs(e)
    assert np.all(ok), f"{what}: max error {err.max():.3g}\nactual\n{a}\nexpected\n{e}"


def tape_grads(fn: Callable[..., Any], xs: Sequence[np.ndarray], weights: np.ndarray | None, wrt: Sequence[int]):
    """Gradients of sum(fn(*xs) * weights) w.r.t. xs[i] for i in wrt, by a Tape; also the output."""
    ts = [dt.constant(x) for x in xs]
    with dt.Tape() as tape:
        tape.watch([ts[i] for i in wrt])
        out = fn(*ts)
        loss = dt.sum(out * weights) if weights is not None else dt.sum(out)
    return tape.gradient(loss, [ts[i] for i in wrt]), out


def check_gradients(
    fn: Callable[..., Any],
    np_fn: Callable[..., Any],
    xs: Sequence[np.ndarray],
    wrt: Sequence[int] | None = None,
    rng: np.random.Generator | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-7,
    what: str = "",
) -> None:
    """Tape gradients of ``fn`` (on tensors) against finite differences of ``np_fn`` (on arrays).

    Both are contracted with the same random weights so that every output element matters.
    """
    rng = rng or np.random.default_rng(0)
    wrt = list(range(len(xs))) if wrt is None else list(wrt)
    xs = [np.asarray(x, dtype=np.float64) if i in wrt else x for i, x in enumerate(xs)]
    out_shape = np.shape(np_fn(*xs))
    weights = rng.uniform(0.5, 1.5, out_shape) * rng.choice([-1.0, 1.0], out_shape)
    grads, out = tape_grads(fn, xs, weights, wrt)
    assert_close(out, np_fn(*xs), rtol=1e-12, atol=1e-12, what=f"{what} value")

    def loss(*arrays: np.ndarray) -> float:
        return float(np.sum(np.asarray(np_fn(*arrays)) * weights))

    for k, i in enumerate(wrt):
        assert grads[k] is not None, f"{what}: no gradient for input {i}"
        assert grads[k].shape == xs[i].shape, f"{what}: gradient shape {grads[k].shape} != input {xs[i].shape}"
        assert_close(grads[k], numeric_grad(loss, xs, i), rtol=rtol, atol=atol, what=f"{what} d/dx{i}")
