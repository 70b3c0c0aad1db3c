"""Deterministic minimisation: L-BFGS with a strong-Wolfe line search, and the loop ``minimize`` runs.

``lbfgs(f, x0)`` minimises a scalar function of one array: ``f`` is called with a difftape
Tensor of ``x0``'s shape and its gradient comes from a tape (or, with ``jac=True``, ``f`` takes
a numpy array and returns ``(value, gradient)`` itself)::

    res = difftape.optimize.lbfgs(lambda x: (1 - x[0])**2 + 100*(x[1] - x[0]**2)**2, [-1.2, 1.0])
    res.x, res.fun, res.converged, res.reason

:func:`run` is the loop behind ``difftape minimize``: one of ``lbfgs``, ``gd`` (steepest descent
with the same line search), ``adam`` or ``sgd`` (the optimisers of :mod:`difftape.optimizers`,
fixed learning rate), over a function of a flat float64 vector, stopping when the gradient's
2-norm is at most ``tol`` (converged), after ``steps`` steps, or when no lower value can be
found or the value stops being finite (not converged; ``reason`` says which).

Everything here is deterministic: the same inputs give the same iterates, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from difftape.errors import DifftapeError

__all__ = ["METHODS", "OptimizeResult", "lbfgs", "run"]

#: The methods of :func:`run` (and of ``difftape minimize --method``).
METHODS = ("lbfgs", "gd", "adam", "sgd")

#: A (value, gradient) function of a flat float64 vector.
ValueAndGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]
#: Called after each step: (step, x, value, gradient norm).
Callback = Callable[[int, np.ndarray, float, float], None]


class OptimizeResult:
    """The outcome of a minimisation.

    ``x`` (shaped as ``x0``), ``fun`` (the value there), ``grad``, ``grad_norm`` (2-norm),
    ``steps`` (iterations taken), ``evaluations`` (calls of the function), ``converged``
    (the gradient norm reached ``tol``) and ``reason`` (why it stopped, in words).
    """

    def __init__(self, x: np.ndarray, fun: float, grad: np.ndarray, steps: int, evaluations: int,
                 converged: bool, reason: str) -> None:
        self.x = x
        self.fun = fun
        self.grad = grad
        self.grad_norm = float(np.linalg.norm(grad)) if np.all(np.isfinite(grad)) else math.nan
        self.steps = steps
        self.evaluations = evaluations
        self.converged = converged
        self.reason = reason

    def __repr__(self) -> str:
        return (f"OptimizeResult(fun={self.fun!r}, steps={self.steps}, converged={self.converged}, "
                f"reason={self.reason!r}, x={self.x!r})")


class _StopError(Exception):
    """Raised inside the loop to end it with a reason (the best point so far is the answer)."""

    def __init__(self, reason: str, converged: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.converged = converged


# ----------------------------------------------------------------------------------------
# evaluations


class _Objective:
    """Counts evaluations and turns a failing evaluation into a non-finite value (the line search backs off)."""

    def __init__(self, fg: ValueAndGrad) -> None:
        self.fg = fg
        self.evaluations = 0
        self.last_error: DifftapeError | None = None

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        self.evaluations += 1
        try:
            f, g = self.fg(x)
        except DifftapeError as err:  # e.g. a singular matrix at a trial point: not a value there
            self.last_error = err
            return math.nan, np.full_like(x, math.nan)
        f = float(f)
        g = np.asarray(g, dtype=np.float64).reshape(x.shape)
        return f, g


def _finite(f: float, g: np.ndarray) -> bool:
    return math.isfinite(f) and bool(np.all(np.isfinite(g)))


# ----------------------------------------------------------------------------------------
# the line search (Nocedal and Wright, Algorithms 3.5 and 3.6)


def _cubic_min(a: float, fa: float, da: float, b: float, fb: float, db: float) -> float | None:
    """The minimiser of the cubic through (a, fa, da) and (b, fb, db), or None if it has none."""
    d1 = da + db - 3 * (fa - fb) / (a - b)
    disc = d1 * d1 - da * db
    if disc < 0 or not math.isfinite(disc):
        return None
    d2 = math.copysign(math.sqrt(disc), b - a)
    den = db - da + 2 * d2
    if den == 0:
        return None
    t = b - (b - a) * (db + d2 - d1) / den
    return t if math.isfinite(t) else None


def _interpolate(lo: float, flo: float, dlo: float, hi: float, fhi: float, dhi: float) -> float:
    """A trial step between lo and hi: the cubic's minimiser when it lies well inside, else the midpoint."""
    left, right = min(lo, hi), max(lo, hi)
    width = right - left
    if math.isfinite(fhi) and math.isfinite(dhi):
        t = _cubic_min(lo, flo, dlo, hi, fhi, dhi)
        if t is not None and left + 0.1 * width <= t <= right - 0.1 * width:
            return t
    return 0.5 * (lo + hi)


def wolfe_search(
    obj: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x: np.ndarray,
    f0: float,
    g0: np.ndarray,
    p: np.ndarray,
    alpha: float = 1.0,
    c1: float = 1e-4,
    c2: float = 0.9,
    max_evals: int = 40,
) -> tuple[float, float, np.ndarray] | None:
    """A step ``a`` along ``p`` satisfying the strong Wolfe conditions, as (a, f(x+a p), g(x+a p)).

    Sufficient decrease ``f(x+a p) <= f0 + c1 a g0.p`` and curvature ``|g(x+a p).p| <= c2 |g0.p|``.
    Near a minimum, differences of values drown in rounding before gradients do, so sufficient
    decrease is also granted by its derivative form (Hager and Zhang's approximate Wolfe
    condition: the slope ``g.p <= (2 c1 - 1) g0.p``, with the value within rounding of f0).
    A trial point whose value is not finite counts as too far (the step is shortened); a value
    of -inf ends the search with that point. None when no acceptable step is found.
    """
    d0 = float(g0 @ p)
    if not d0 < 0:
        return None
    search = _Search(f0, d0, c1, c2)
    a_prev, f_prev, d_prev = 0.0, f0, d0
    a = alpha
    best: tuple[float, float, np.ndarray] | None = None
    for i in range(max_evals):
        f, g = obj(x + a * p)
        if f == -math.inf:
            return a, f, g
        d = float(g @ p) if np.all(np.isfinite(g)) else math.nan
        decrease, approx = search.decrease(a, f, d)
        if not decrease or (i > 0 and f >= f_prev and not approx):
            return _zoom(obj, x, p, search, a_prev, f_prev, d_prev, a, f, d, max_evals - i - 1, best)
        if abs(d) <= -c2 * d0:
            return a, f, g
        best = (a, f, g)
        if d >= 0:
            return _zoom(obj, x, p, search, a, f, d, a_prev, f_prev, d_prev, max_evals - i - 1, best)
        a_prev, f_prev, d_prev = a, f, d
        a = a * 2.0
        if not math.isfinite(a):
            break
    if best is not None:
        raise _UnboundedError(best[0] * float(np.linalg.norm(p)), best[1])
    return best


class _Search:
    """The conditions of one line search from f0 with slope d0 < 0."""

    #: Values within this relative distance of f0 are equal as far as rounding can tell.
    NOISE = 1e-10

    def __init__(self, f0: float, d0: float, c1: float, c2: float) -> None:
        self.f0, self.d0, self.c1, self.c2 = f0, d0, c1, c2
        self.slack = self.NOISE * abs(f0)

    def decrease(self, a: float, f: float, d: float) -> tuple[bool, bool]:
        """(sufficient decrease, by the approximate form) for a trial step ``a``."""
        if not (math.isfinite(f) and math.isfinite(d)):
            return False, False
        approx = f <= self.f0 + self.slack and d <= (2 * self.c1 - 1) * self.d0
        return f <= self.f0 + self.c1 * a * self.d0 or approx, approx


def _zoom(
    obj: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x: np.ndarray, p: np.ndarray, search: _Search,
    lo: float, flo: float, dlo: float, hi: float, fhi: float, dhi: float,
    budget: int, best: tuple[float, float, np.ndarray] | None,
) -> tuple[float, float, np.ndarray] | None:
    """Shrink [lo, hi] (lo: the best step with sufficient decrease) until a strong-Wolfe step is found."""
    d0 = search.d0
    for _ in range(max(budget, 0)):
        a = _interpolate(lo, flo, dlo, hi, fhi, dhi)
        if a == lo or a == hi:  # the interval is below float resolution
            break
        f, g = obj(x + a * p)
        if f == -math.inf:
            return a, f, g
        d = float(g @ p) if np.all(np.isfinite(g)) else math.nan
        decrease, approx = search.decrease(a, f, d)
        if not decrease or (f >= flo and not approx):
            hi, fhi, dhi = a, f, d
            continue
        if abs(d) <= -search.c2 * d0:
            return a, f, g
        if best is None or f < best[1]:
            best = (a, f, g)
        if d * (hi - lo) >= 0:
            hi, fhi, dhi = lo, flo, dlo
        lo, flo, dlo = a, f, d
    if best is not None and best[1] < search.f0:  # no strong-Wolfe point, but a decrease: take it
        return best
    return None


class _UnboundedError(Exception):
    """The line search doubled its step to the limit and the value still fell at the same rate."""

    def __init__(self, distance: float, value: float) -> None:
        super().__init__(f"still decreasing after a step of length {distance:.3g} (value {value:.6g})")
        self.distance = distance
        self.value = value


# ----------------------------------------------------------------------------------------
# the methods


def _lbfgs_loop(obj: _Objective, x: np.ndarray, f: float, g: np.ndarray, steps: int, tol: float,
                memory: int, on_step: Callable[[int, np.ndarray, float, np.ndarray], None]) -> tuple:
    s_list: list[np.ndarray] = []
    y_list: list[np.ndarray] = []
    rho_list: list[float] = []
    for k in range(1, steps + 1):
        # the two-loop recursion: p = -H g
        q = g.copy()
        alphas = []
        for s, y, rho in zip(reversed(s_list), reversed(y_list), reversed(rho_list)):
            a = rho * float(s @ q)
            alphas.append(a)
            q -= a * y
        if s_list:
            s, y = s_list[-1], y_list[-1]
            q *= float(s @ y) / float(y @ y)
        for (s, y, rho), a in zip(zip(s_list, y_list, rho_list), reversed(alphas)):
            b = rho * float(y @ q)
            q += (a - b) * s
        p = -q
        if not float(p @ g) < 0:  # not a descent direction (rounding): restart from steepest descent
            s_list.clear()
            y_list.clear()
            rho_list.clear()
            p = -g
        first = not s_list
        alpha0 = min(1.0, 1.0 / max(float(np.linalg.norm(g)), 1e-300)) if first else 1.0
        found = wolfe_search(obj, x, f, g, p, alpha0)
        if found is None and not first:  # the quasi-Newton direction failed: try steepest descent once
            s_list.clear()
            y_list.clear()
            rho_list.clear()
            p = -g
            found = wolfe_search(obj, x, f, g, p, min(1.0, 1.0 / max(float(np.linalg.norm(g)), 1e-300)))
        if found is None:
            raise _StopError(_no_decrease(obj, g), False)
        a, f_new, g_new = found
        x_new = x + a * p
        if f_new == -math.inf:
            x, f, g = x_new, f_new, g_new
            on_step(k, x, f, g)
            raise _StopError(f"the value went to -inf at step {k}: the function is unbounded below")
        s, y = x_new - x, g_new - g
        sy = float(s @ y)
        if sy > 1e-12 * float(np.linalg.norm(s)) * float(np.linalg.norm(y)):
            s_list.append(s)
            y_list.append(y)
            rho_list.append(1.0 / sy)
            if len(s_list) > memory:
                del s_list[0], y_list[0], rho_list[0]
        x, f, g = x_new, f_new, g_new
        on_step(k, x, f, g)
        if float(np.linalg.norm(g)) <= tol:
            raise _StopError(_converged(g, tol), True)
    raise _StopError(_out_of_steps(steps, g, tol))


def _gd_loop(obj: _Objective, x: np.ndarray, f: float, g: np.ndarray, steps: int, tol: float, lr: float,
             on_step: Callable[[int, np.ndarray, float, np.ndarray], None]) -> tuple:
    step = lr
    for k in range(1, steps + 1):
        found = wolfe_search(obj, x, f, g, -g, step)
        if found is None:
            raise _StopError(_no_decrease(obj, g), False)
        a, f, g_new = found
        x = x - a * g
        g = g_new
        step = a  # the next search starts from the step that worked
        on_step(k, x, f, g)
        if f == -math.inf:
            raise _StopError(f"the value went to -inf at step {k}: the function is unbounded below")
        if float(np.linalg.norm(g)) <= tol:
            raise _StopError(_converged(g, tol), True)
    raise _StopError(_out_of_steps(steps, g, tol))


def _optimizer_loop(obj: _Objective, x: np.ndarray, f: float, g: np.ndarray, steps: int, tol: float,
                    optimizer: Any, on_step: Callable[[int, np.ndarray, float, np.ndarray], None],
                    state: dict[str, Any]) -> tuple:
    from difftape.engine.tensor import Variable

    var = Variable(x.copy())
    for k in range(1, steps + 1):
        optimizer.apply_gradients([(g, var)])
        x_new = np.array(var._value, dtype=np.float64).reshape(x.shape)
        f_new, g_new = obj(x_new)
        if not _finite(f_new, g_new):
            what = "value" if not math.isfinite(f_new) else "gradient"
            shown = f_new if not math.isfinite(f_new) else "not finite"
            why = f" ({obj.last_error.message})" if obj.last_error is not None and math.isnan(f_new) else ""
            raise _StopError(f"the {what} became {shown} at step {k}{why}; the answer is the point of step {k - 1} "
                        f"(try a smaller --lr)")
        x, f, g = x_new, f_new, g_new
        state["x"], state["f"], state["g"] = x, f, g
        on_step(k, x, f, g)
        if float(np.linalg.norm(g)) <= tol:
            raise _StopError(_converged(g, tol), True)
    raise _StopError(_out_of_steps(steps, g, tol))


def _converged(g: np.ndarray, tol: float) -> str:
    return f"gradient norm {float(np.linalg.norm(g)):.3g} <= tol {tol:.3g}"


def _out_of_steps(steps: int, g: np.ndarray, tol: float) -> str:
    return (f"reached the step limit ({steps}) with gradient norm {float(np.linalg.norm(g)):.3g} > tol "
            f"{tol:.3g}")


def _no_decrease(obj: _Objective, g: np.ndarray) -> str:
    why = f"; the last failing evaluation: {obj.last_error.message}" if obj.last_error is not None else ""
    return (f"the line search found no lower value (gradient norm {float(np.linalg.norm(g)):.3g}: "
            f"at the limit of float precision, or the function is not smooth here){why}")


# ----------------------------------------------------------------------------------------
# the driver


def run(
    fg: ValueAndGrad,
    x0: Any,
    *,
    method: str = "lbfgs",
    lr: float | None = None,
    steps: int = 1000,
    tol: float = 1e-6,
    memory: int = 10,
    callback: Callback | None = None,
) -> OptimizeResult:
    """Minimise ``fg`` (x -> (value, gradient), x a flat float64 vector) from ``x0`` with ``method``.

    ``lr``: the learning rate of adam/sgd (default: TensorFlow's, 0.001 and 0.01), the first trial
    step of gd (default 1); lbfgs takes none. ``callback(step, x, value, grad_norm)`` is called
    for the starting point (step 0) and after each step. A starting point whose value or gradient
    is not finite is an error (DifftapeError); later ones end the run with the reason.
    """
    from difftape import optimizers

    if method not in METHODS:
        raise DifftapeError("usage", f"unknown method {method!r}: choose {', '.join(METHODS)}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise DifftapeError("value", f"steps must be an int >= 0, not {steps!r}")
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
        raise DifftapeError("value", f"tol must be a finite number >= 0, not {tol!r}")
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise DifftapeError("value", f"the learning rate must be a finite number > 0, not {lr!r}")
    if method == "lbfgs" and lr is not None:
        raise DifftapeError("usage", "lbfgs chooses its own steps (a line search): it takes no learning rate")
    x = np.array(x0, dtype=np.float64).reshape(-1)
    obj = _Objective(fg)
    f, g = obj(x)
    if not _finite(f, g):
        if obj.last_error is not None:
            raise obj.last_error
        what = f"value is {f}" if not math.isfinite(f) else "gradient is not finite"
        raise DifftapeError("value", f"at the starting point the {what}: start somewhere else")
    state: dict[str, Any] = {"x": x, "f": f, "g": g, "k": 0}

    def on_step(k: int, xk: np.ndarray, fk: float, gk: np.ndarray) -> None:
        state.update(x=xk, f=fk, g=gk, k=k)
        if callback is not None:
            callback(k, xk, fk, float(np.linalg.norm(gk)))

    on_step(0, x, f, g)
    try:
        if float(np.linalg.norm(g)) <= tol:
            raise _StopError(_converged(g, tol), True)
        if steps == 0:
            raise _StopError(_out_of_steps(0, g, tol))
        if method == "lbfgs":
            _lbfgs_loop(obj, x, f, g, steps, tol, memory, on_step)
        elif method == "gd":
            _gd_loop(obj, x, f, g, steps, tol, 1.0 if lr is None else lr, on_step)
        else:
            opt = optimizers.Adam(lr or 0.001) if method == "adam" else optimizers.SGD(lr or 0.01)
            _optimizer_loop(obj, x, f, g, steps, tol, opt, on_step, state)
    except _UnboundedError as unbounded:
        stop = _StopError(f"the function seems unbounded below: along the search direction the value was {unbounded}")
        return OptimizeResult(state["x"], state["f"], state["g"], state["k"], obj.evaluations, False, stop.reason)
    except _StopError as stop:
        return OptimizeResult(state["x"], state["f"], state["g"], state["k"], obj.evaluations,
                              stop.converged, stop.reason)
    raise AssertionError("unreachable: every loop ends with _StopError")  # pragma: no cover


def lbfgs(
    f: Callable[..., Any],
    x0: Any,
    *,
    jac: bool = False,
    tol: float = 1e-6,
    max_steps: int = 1000,
    memory: int = 10,
    callback: Callback | None = None,
) -> OptimizeResult:
    """Minimise the scalar ``f`` from ``x0`` with L-BFGS (a strong-Wolfe line search; deterministic).

    ``f`` takes a Tensor shaped as ``x0`` and returns a scalar; the gradient comes from a tape.
    With ``jac=True``, ``f`` takes a numpy array and returns ``(value, gradient)``. Stops when
    the gradient's 2-norm is at most ``tol`` (``converged``), after ``max_steps`` steps, or when
    no lower value can be found; the result says which in ``reason``. ``memory``: the number of
    (step, gradient change) pairs kept.
    """
    if isinstance(memory, bool) or not isinstance(memory, int) or memory < 1:
        raise DifftapeError("value", f"memory must be an int >= 1, not {memory!r}")
    shape = np.shape(np.asarray(x0))
    fg = _wrap_jac(f, shape) if jac else _taped(f, shape)
    with np.errstate(all="ignore"):
        res = run(fg, x0, method="lbfgs", steps=max_steps, tol=tol, memory=memory, callback=callback)
    res.x = res.x.reshape(shape)
    res.grad = res.grad.reshape(shape)
    return res


def _wrap_jac(f: Callable[..., Any], shape: tuple[int, ...]) -> ValueAndGrad:
    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        out = f(x.reshape(shape))
        try:
            value, grad = out
        except (TypeError, ValueError):
            raise DifftapeError("usage", "with jac=True, f must return (value, gradient)") from None
        return _scalar(value), np.asarray(grad, dtype=np.float64).reshape(-1)

    return fg


def _taped(f: Callable[..., Any], shape: tuple[int, ...]) -> ValueAndGrad:
    from difftape.engine.tape import Tape
    from difftape.engine.tensor import Tensor

    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        t = Tensor(x.reshape(shape).copy())
        with Tape() as tape:
            tape.watch(t)
            out = f(t)
        value = _scalar(out)
        grad = tape.gradient(out, t) if isinstance(out, Tensor) else None
        if grad is None:  # f does not depend on x: a zero gradient
            return value, np.zeros(x.size)
        return value, np.asarray(grad._value, dtype=np.float64).reshape(-1)

    return fg


def _scalar(value: Any) -> float:
    arr = np.asarray(value._value if hasattr(value, "_value") else value)
    if arr.shape != ():
        raise DifftapeError("shape", f"the function to minimise must return a scalar, not shape {arr.shape}")
    if arr.dtype.kind == "c":
        raise DifftapeError("value", "the function to minimise must return a real number, not a complex one")
    return float(arr)
