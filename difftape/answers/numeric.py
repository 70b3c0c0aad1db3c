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


def ridders(
    f: Callable[[float], float], x: float, h: float, shrink: float = 1.4, levels: int = 10
) -> tuple[float, float]:
    """Derivative of scalar ``f`` at ``x`` by extrapolated central differences; (estimate, error)."""
    c2 = shrink * shrink
    for _ in range(12):  # start inside the domain: shrink while either side is not finite
        if np.isfinite(f(x + h)) and np.isfinite(f(x - h)):
            break
        h /= 10
    table = [[(f(x + h) - f(x - h)) / (2 * h)]]
    best, err = table[0][0], np.inf
    for i in range(1, levels):
        h /= shrink
        row = [(f(x + h) - f(x - h)) / (2 * h)]
        fac = c2
        for j in range(1, i + 1):
            row.append((row[j - 1] * fac - table[i - 1][j - 1]) / (fac - 1))
            fac *= c2
            e = max(abs(row[j] - row[j - 1]), abs(row[j] - table[i - 1][j - 1]))
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


def richardson_gradient(f: Scalar, x: np.ndarray, tick: Tick | None = None) -> tuple[np.ndarray, float]:
    """Gradient of scalar ``f`` at ``x`` element by element; (gradient, max error estimate).

    ``tick(done, total)`` is called after each element (for a progress bar)."""
    x = np.asarray(x, dtype=np.float64)
    grad = np.empty(x.shape, dtype=np.float64)
    flat_g = grad.reshape(-1)
    worst = 0.0
    for i in range(x.size):
        xi = float(x.reshape(-1)[i])

        def along(t: float, i: int = i) -> float:
            z = x.copy()
            z.reshape(-1)[i] = t
            return float(f(z))

        flat_g[i], err = ridders_tried(lambda h, along=along, xi=xi: ridders(along, xi, h), starting_steps(xi))
        worst = max(worst, err)
        if tick is not None:
            tick(i + 1, x.size)
    return grad, worst


def directional(f: Scalar, x: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    """Derivative of ``f`` at ``x`` along direction ``v``; (estimate, error)."""
    x = np.asarray(x, dtype=np.float64)
    scale = 0.1 * max(float(np.max(np.abs(x), initial=0.0)), 1.0)
    return ridders_tried(lambda h: ridders(lambda t: float(f(x + t * v)), 0.0, h), directional_steps(scale))


#: How many decades below the first step a directional derivative tries: along a random direction of
#: many elements the nearest kink of abs/maximum/where is often only 1e-3..1e-4 of the scale away.
DIRECTIONAL_DECADES = 5


def directional_steps(scale: float) -> tuple[list[float], list[float]]:
    """The starting steps of a derivative along a direction: the scale, then decades below it."""
    return [scale], [scale * 10.0**-k for k in range(1, DIRECTIONAL_DECADES + 1)]


def ridders_vector(f: Callable[[float], np.ndarray], h: float, shrink: float = 1.4,
                   levels: int = 10) -> tuple[np.ndarray, np.ndarray]:
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
        row = [(np.asarray(f(h), dtype=np.float64) - np.asarray(f(-h), dtype=np.float64)) / (2 * h)]
        fac = c2
        for j in range(1, i + 1):
            row.append((row[j - 1] * fac - table[i - 1][j - 1]) / (fac - 1))
            fac *= c2
            e = np.maximum(np.abs(row[j] - row[j - 1]), np.abs(row[j] - table[i - 1][j - 1]))
            better = e <= err
            err = np.where(better, e, err)
            best = np.where(better, row[j], best)
        table.append(row)
        if np.all(np.abs(row[i] - table[i - 1][i - 1]) >= 2 * err):
            break
    err = np.where(np.isfinite(err), err, np.abs(table[-1][0] - table[0][0]))
    return best, err
