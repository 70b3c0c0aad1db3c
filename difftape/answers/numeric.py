"""Numerical derivatives for gradient checks: the most accurate a checker can get in float64.

Two methods, each with an error estimate:

- complex step: ``Im f(x + ih) / h`` with ``h = 1e-30`` has no subtractive cancellation,
  so it is exact to rounding; it needs a program made only of complex-analytic
  operations (``ANALYTIC_OPS``), which the caller decides.
- central differences with Richardson extrapolation (Ridders' scheme): a tableau of
  central differences at shrinking steps, extrapolated to step 0; the step starts
  from the scale of each input element, and the tableau's own convergence gives the
  error estimate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from difftape.ops import ANALYTIC

# Operations whose numpy forward accepts complex input and is complex-analytic there (so the
# complex step gives the real derivative): the registry entries that say so (``Op.analytic``).
ANALYTIC_OPS = ANALYTIC

Scalar = Callable[[np.ndarray], float]


Tick = Callable[[int, int], Any]


def complex_step(f: Callable[[np.ndarray], complex], x: np.ndarray, h: float = 1e-30,
                 tick: Tick | None = None) -> tuple[np.ndarray, float]:
    """Gradient of real-analytic ``f`` at real ``x`` by the complex step; error ~ rounding.

    ``tick(done, total)`` is called after each element (for a progress bar)."""
    x = np.asarray(x, dtype=np.float64)
    grad = np.empty(x.shape, dtype=np.float64)
    flat = grad.reshape(-1)
    base = x.astype(np.complex128)
    for i in range(x.size):
        z = base.copy()
        # h must be tiny next to x itself (sqrt at x = 1e-300 needs h << 1e-300)
        hi = max(min(h, h * abs(float(x.reshape(-1)[i]))), 1e-310) if x.reshape(-1)[i] != 0 else h
        z.reshape(-1)[i] += 1j * hi
        flat[i] = np.imag(f(z)) / hi
        if tick is not None:
            tick(i + 1, x.size)
    err = float(np.max(np.abs(grad), initial=0.0)) * 4 * np.finfo(np.float64).eps
    return grad, err


def roundoff(fp: Any, fm: Any, h: Any) -> Any:
    """The least error of a central difference of ``f(x + h)`` and ``f(x - h)`` at step ``h``: their rounding.

    The tableau's own convergence cannot see it where the differences are exactly equal (``f`` absorbs
    the change of a small term in a large sum, or is flat between two kinks of other elements): a
    derivative below ``eps * |f| / h`` is not resolved, and its estimate must not claim it is.
    """
    return _EPS * (np.abs(fp) + np.abs(fm)) / h


_EPS = float(np.finfo(np.float64).eps)


#: Ridders' tableau: each row's step is the last one's over SHRINK, for LEVELS rows.
SHRINK, LEVELS = 1.4, 10


def ridders(
    f: Callable[[float], float], x: float, h: float, shrink: float = SHRINK, levels: int = LEVELS
) -> tuple[float, float]:
    """Derivative of scalar ``f`` at ``x`` by extrapolated central differences; (estimate, error).

    The error is the tableau's convergence, at least the rounding of the differences (:func:`roundoff`)."""
    c2 = shrink * shrink
    for _ in range(12):  # start inside the domain: shrink while either side is not finite
        if np.isfinite(f(x + h)) and np.isfinite(f(x - h)):
            break
        h /= 10
    table = [[(f(x + h) - f(x - h)) / (2 * h)]]
    best, err = table[0][0], np.inf
    for i in range(1, levels):
        h /= shrink
        fp, fm = f(x + h), f(x - h)
        row = [(fp - fm) / (2 * h)]
        floor = roundoff(fp, fm, h)
        fac = c2
        for j in range(1, i + 1):
            row.append((row[j - 1] * fac - table[i - 1][j - 1]) / (fac - 1))
            fac *= c2
            e = max(abs(row[j] - row[j - 1]), abs(row[j] - table[i - 1][j - 1]), floor)
            if e <= err:
                err, best = e, row[j]
        table.append(row)
        if abs(row[i] - table[i - 1][i - 1]) >= 2 * err:
            break
    if not np.isfinite(err):
        err = abs(table[-1][0] - table[0][0])
    return float(best), float(err)


def starting_steps(xi: float) -> tuple[list[float], list[float]]:
    """The starting steps of Ridders' scheme at ``xi``: those always tried, and smaller ones for when
    none of those converged.

    One step from the scale of the value (away from 0 and domain edges it avoids roundoff), one from
    |x| itself (resolves features near 0 such as a kink at 0 when x is tiny). A kink (max, abs, where,
    ...) closer than the starting step spoils the whole tableau, and the scheme's early stop can trust
    a tableau whose error estimate is too small: smaller steps (down to 1e-4 of the scale) are tried
    until one converges, and the best-converged tableau wins.
    """
    first = [0.1 * max(abs(xi), 1.0)]
    if 0.0 < abs(xi) < 1.0:
        first.append(0.1 * abs(xi))
    return first, [first[0] * 10.0**-k for k in (1, 2, 3)]


def ridders_tried(run: Callable[[float], tuple[Any, Any]], steps: tuple[list[float], list[float]],
                  rel: float = 1e-10) -> tuple[Any, Any]:
    """Ridders' scheme ``run(h)`` from each starting step: per element the estimate with the smallest
    error; the smaller steps only while some element has not converged (error over ``rel`` of its size)."""
    first, smaller = steps
    best: Any = np.nan
    err: Any = np.inf
    for k, h in enumerate(first + smaller):
        if k >= len(first) and np.all(err <= rel * np.maximum(np.abs(best), 1.0)):
            break
        est, est_err = run(h)
        if np.ndim(est) == 0:
            if est_err < err:
                best, err = est, est_err
        else:
            better = est_err < err
            best, err = np.where(better, est, best), np.where(better, est_err, err)
    return best, err


def richardson_gradient(f: Scalar, x: np.ndarray, tick: Tick | None = None, tape: np.ndarray | None = None,
                        bound: Callable[[Any], Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of scalar ``f`` at ``x`` element by element; (gradient, error estimate of each element).

    With the ``tape``'s gradient and the tolerance ``bound(reference)``, an element that disagrees gets
    a :func:`second_opinion`. ``tick(done, total)`` is called after each element (for a progress bar)."""
    x = np.asarray(x, dtype=np.float64)
    grad = np.empty(x.shape, dtype=np.float64)
    errs = np.empty(x.shape, dtype=np.float64)
    flat_g, flat_e = grad.reshape(-1), errs.reshape(-1)
    for i in range(x.size):
        xi = float(x.reshape(-1)[i])
        steps = starting_steps(xi)
        run = lambda h, i=i, xi=xi: ridders(along(f, x, i), xi, h)  # noqa: E731
        est, err = ridders_tried(run, steps)
        if tape is not None and bound is not None:
            est, err = second_opinion(run, second_steps(steps), float(np.reshape(tape, -1)[i]), bound, est, err)
        flat_g[i], flat_e[i] = est, err
        if tick is not None:
            tick(i + 1, x.size)
    return grad, errs


def along(f: Scalar, x: np.ndarray, i: int) -> Callable[[float], float]:
    """``f`` as a function of element ``i`` of ``x`` alone."""

    def at(t: float) -> float:
        z = x.copy()
        z.reshape(-1)[i] = t
        return float(f(z))

    return at


#: A second opinion on a disagreement tries this many more decades of smaller steps.
SECOND_DECADES = 5


def second_steps(steps: tuple[list[float], list[float]]) -> list[float]:
    """The steps of a second opinion: decades below the smallest step of ``steps`` (Ridders' starts)."""
    first, smaller = steps
    last = (smaller or first)[-1]
    return [last * 10.0**-k for k in range(1, SECOND_DECADES + 1)]


def second_opinion(run: Callable[[float], tuple[Any, Any]], steps: list[float], tape: Any,
                   bound: Callable[[Any], Any], best: Any, err: Any) -> tuple[Any, Any]:
    """Where the estimate ``(best, err)`` disagrees with ``tape``, Ridders' scheme ``run(h)`` from smaller steps.

    A kink or a jump of the function nearer than every step tried (of another element along a direction,
    of ``floor``, ``%``, ``where``; a neighbour of a ``max`` closer than the steps) spoils every estimate
    tried so far, and a spoiled tableau can look converged (a flat stretch between kinks gives exactly 0
    with error 0). Smaller steps see the function where it is smooth: the first estimate that agrees
    with the tape within the tolerance ``bound(estimate)`` and its own error replaces the spoiled one,
    element by element, if that error is within the tolerance, no larger than the spoiled estimate's,
    or at most a quarter of the disagreement it settles (next to a kink closer than 1e-6, the rounding
    of the differences limits any estimate). Estimates that disagree are never taken, and an estimate
    whose error is honest overrules a disagreement only if the tape is within twice the window it
    had to be in (tolerance plus error): a wrong gradient is still reported.
    """
    def agrees(est: Any, e: Any) -> Any:
        with np.errstate(invalid="ignore"):
            return np.abs(np.asarray(tape, dtype=np.float64) - est) <= bound(est) + e

    todo = ~np.asarray(agrees(best, err), dtype=bool)
    if not np.any(todo):
        return best, err
    scalar = np.ndim(best) == 0
    best, err = np.array(best, dtype=np.float64), np.array(err, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        gap = np.abs(np.asarray(tape, dtype=np.float64) - best) / 4
    for h in steps:
        est, e = run(h)
        with np.errstate(invalid="ignore"):
            e = np.asarray(e)
            precise = (e <= bound(est)) | (e <= err) | (e <= gap)
            taken = todo & precise & agrees(est, e)
        best, err = np.where(taken, est, best), np.where(taken, e, err)
        todo = todo & ~taken
        if not np.any(todo):
            break
    return (float(best), float(err)) if scalar else (best, err)


def directional(f: Scalar, x: np.ndarray, v: np.ndarray, tape: float | None = None,
                bound: Callable[[Any], Any] | None = None) -> tuple[float, float]:
    """Derivative of ``f`` at ``x`` along direction ``v``; (estimate, error).

    With the tape's derivative along ``v`` and the tolerance ``bound(reference)``, a disagreement gets a
    :func:`second_opinion`."""
    x = np.asarray(x, dtype=np.float64)
    scale = 0.1 * max(float(np.max(np.abs(x), initial=0.0)), 1.0)
    steps = directional_steps(scale)

    def run(h: float) -> tuple[float, float]:
        return ridders(lambda t: float(f(x + t * v)), 0.0, h)

    est, err = ridders_tried(run, steps)
    if tape is not None and bound is not None:
        est, err = second_opinion(run, second_steps(steps), tape, bound, est, err)
    return est, err


#: How many decades below the first step a directional derivative tries: along a random direction of
#: many elements the nearest kink of abs/maximum/where is often only 1e-3..1e-4 of the scale away.
DIRECTIONAL_DECADES = 5


def directional_steps(scale: float) -> tuple[list[float], list[float]]:
    """The starting steps of a derivative along a direction: the scale, then decades below it."""
    return [scale], [scale * 10.0**-k for k in range(1, DIRECTIONAL_DECADES + 1)]


def ridders_vector(f: Callable[[float], np.ndarray], h: float, shrink: float = SHRINK,
                   levels: int = LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """Derivative at 0 of a vector-valued ``f(t)`` by Ridders' scheme, element by element.

    Each element keeps the tableau entry with its smallest error estimate; (estimate, error).
    """
    c2 = shrink * shrink
    for _ in range(12):  # start inside the domain
        if np.all(np.isfinite(f(h))) and np.all(np.isfinite(f(-h))):
            break
        h /= 10
    table = [[(np.asarray(f(h), dtype=np.float64) - np.asarray(f(-h), dtype=np.float64)) / (2 * h)]]
    best = table[0][0].copy()
    err = np.full(best.shape, np.inf)
    for i in range(1, levels):
        h /= shrink
        fp, fm = np.asarray(f(h), dtype=np.float64), np.asarray(f(-h), dtype=np.float64)
        row = [(fp - fm) / (2 * h)]
        floor = roundoff(fp, fm, h)
        fac = c2
        for j in range(1, i + 1):
            row.append((row[j - 1] * fac - table[i - 1][j - 1]) / (fac - 1))
            fac *= c2
            e = np.maximum(np.maximum(np.abs(row[j] - row[j - 1]), np.abs(row[j] - table[i - 1][j - 1])), floor)
            better = e <= err
            err = np.where(better, e, err)
            best = np.where(better, row[j], best)
        table.append(row)
        if np.all(np.abs(row[i] - table[i - 1][i - 1]) >= 2 * err):
            break
    err = np.where(np.isfinite(err), err, np.abs(table[-1][0] - table[0][0]))
    return best, err
