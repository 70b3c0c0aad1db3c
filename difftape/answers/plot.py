"""``difftape plot``: the target and its derivatives over a range of one scalar input.

The program is compiled once for a scalar ``x`` (the batch machinery: :class:`BatchProgram`
compiles it per input signature, :class:`BatchGraph` runs it with ``x`` batched, one row per
point) and evaluated for every point at once under nested tapes: the innermost tape gives the
first derivative for every point, and each outer tape, having recorded the backward pass
inside it, differentiates that again. Points are independent, so the derivative of the sum
over the batch is each point's own derivative.

The result also says where a curve must not be joined up (:func:`breaks`): at a non-finite
value, and where the chord between neighbouring points is far steeper than the curve's own
derivative allows (a jump: ``floor``, ``1/x`` through 0, or a kink of ``abs`` seen in its
derivative). For that, one derivative more than is drawn is computed. The renderers
(``io/plot_text.py``, ``io/plot_image.py``) only draw.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from difftape.errors import DifftapeError

#: The most points a plot may have.
MAX_POINTS = 1_000_000
#: Points per vectorised run.
CHUNK = 1 << 15
#: The names of the curves by order: the value, then each derivative (the --csv header).
COLUMNS = ("f", "df", "d2f", "d3f")


class Sweep:
    """A table over ``x``: ``curves[k]`` is the k-th derivative (0: the value), ``gaps[k]`` its breaks.

    ``gaps[k][i]`` is True when the segment from point i to point i+1 is not to be drawn.
    ``failed`` counts the points that could not be evaluated (their values are nan), and
    ``error`` is the first such point's message.
    """

    def __init__(self, of: str, name: str, x: np.ndarray, curves: list[np.ndarray], gaps: list[np.ndarray],
                 failed: int = 0, error: str | None = None) -> None:
        self.of = of
        self.name = name
        self.x = x
        self.curves = curves
        self.gaps = gaps
        self.failed = failed
        self.error = error

    @property
    def order(self) -> int:
        return len(self.curves) - 1

    def labels(self) -> list[str]:
        """Curve labels for people: ``f``, ``f'``, ``f''``."""
        return ["f" + "'" * k for k in range(len(self.curves))]

    def table_columns(self) -> list[str]:
        return ["x", *COLUMNS[: len(self.curves)]]


def parse_range(text: str, *, seed: int = 0, dtype: str = "float64") -> tuple[str | None, float, float]:
    """``"x=-3:3"`` -> ("x", -3.0, 3.0); ``"-pi:pi"`` -> (None, -pi, pi). Bounds are constant expressions."""
    from difftape.answers.program import parse_value

    name: str | None = None
    body = text
    head, eq, rest = text.partition("=")
    if eq and head.strip().isidentifier():
        name, body = head.strip(), rest
    depth = 0
    split = -1
    for i, ch in enumerate(body):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == ":" and depth == 0:
            split = i
            break
    if split < 0:
        raise DifftapeError("usage", f"--range {text!r}: write NAME=LO:HI, e.g. --range x=-3:3")
    bounds = []
    for part in (body[:split], body[split + 1:]):
        if not part.strip():
            raise DifftapeError("usage", f"--range {text!r}: a bound is missing; write NAME=LO:HI, e.g. x=-3:3")
        try:
            value = parse_value(part, seed=seed, dtype=dtype)
        except DifftapeError as err:
            raise DifftapeError(err.kind, f"in --range {text!r}: {err.message}") from None
        if value.shape != () or value.dtype.kind not in "biuf":
            raise DifftapeError("value", f"--range {text!r}: each bound must be a real number")
        bounds.append(float(value))
    lo, hi = bounds
    if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
        raise DifftapeError("value", f"--range {text!r}: the bounds must be finite with LO < HI")
    return name, lo, hi


def sweep(
    source: str,
    *,
    name: str | None,
    lo: float,
    hi: float,
    points: int = 1000,
    order: int = 1,
    of: str | None = None,
    at: Mapping[str, Any] | None = None,
    seed: int = 0,
    dtype: str = "float64",
) -> Sweep:
    """The target and its derivatives up to ``order`` at ``points`` evenly spaced values of ``name``."""
    from difftape.answers.batch import BatchProgram, Group

    if isinstance(points, bool) or not isinstance(points, int) or not 2 <= points <= MAX_POINTS:
        raise DifftapeError("value", f"points must be an int from 2 to {MAX_POINTS:,}, not {points!r}")
    if order not in (1, 2):
        raise DifftapeError("value", f"order must be 1 or 2, not {order!r}")
    at = dict(at or {})
    bp = BatchProgram(source, of=of, at=at, seed=seed, dtype=dtype)
    graph = bp.base.graph
    leaves = [*graph.inputs, *(n for n in graph.variables if n not in graph.inputs),
              *(n for n in graph.consts if n not in graph.variables)]
    name = _plotted_name(name, leaves, at, graph)
    problem = bp._check_names(frozenset({name}))
    if problem is not None:
        raise problem
    x = np.linspace(lo, hi, points, dtype=np.float64)
    x[-1] = hi
    xs = x.astype(bp.base.float_dtype)
    runner = bp.runner(Group(np.arange(1), {name: xs[:1]}))
    shape = tuple(runner.graph.nodes[runner.graph.target].shape or ())
    if shape != ():
        raise DifftapeError("shape", f"plot needs a scalar target, but {bp.of} has shape {shape} at each point; "
                                     f"plot sum({bp.of}) or one element of it")
    want = order + 1  # one more derivative than drawn: it finds the jumps of the last curve drawn
    curves = [np.empty(points) for _ in range(want + 1)]
    state = {"failed": 0, "error": None, "want": want}
    with np.errstate(all="ignore"):
        for start in range(0, points, CHUNK):
            stop = min(points, start + CHUNK)
            _fill(runner, name, xs, start, stop, curves, state)
    have = state["want"]
    drawn = curves[: order + 1]
    gaps = []
    for k in range(order + 1):
        slope = curves[k + 1] if k + 1 <= have else None
        gaps.append(breaks(x, drawn[k], slope))
    return Sweep(bp.of, name, x, drawn, gaps, state["failed"], state["error"])


def _plotted_name(name: str | None, leaves: list[str], at: Mapping[str, Any], graph: Any) -> str:
    from difftape.errors import did_you_mean

    if name is None:
        free = [n for n in graph.inputs if n not in at]
        if len(free) != 1:
            listed = ", ".join(free) or "none"
            raise DifftapeError("usage", f"--range LO:HI without a name needs exactly one input without a value; "
                                         f"this program has {len(free)} ({listed}): write --range NAME=LO:HI")
        return free[0]
    if name not in leaves:
        if name in graph.bindings:
            raise DifftapeError("name", f"--range {name}: {name} is computed from other names; plot over an "
                                        f"input or a variable ({', '.join(leaves) or 'none'})")
        raise DifftapeError("name", f"--range {name}: the program has no input or variable named "
                                    f"{name!r}{did_you_mean(name, leaves)}")
    return name


def _fill(runner: Any, name: str, xs: np.ndarray, start: int, stop: int, curves: list[np.ndarray],
          state: dict[str, Any]) -> None:
    """Fill rows start:stop of every curve; a failing run is halved until the failing points stand alone."""
    try:
        got = derivatives(runner, name, xs[start:stop], state["want"])
    except Exception as err:  # noqa: BLE001 - some point failed, or the last derivative is not available
        if state["want"] > len(curves) - 2:  # first try without the extra derivative (gap finding only)
            try:
                got = derivatives(runner, name, xs[start:stop], state["want"] - 1)
                state["want"] -= 1
            except Exception:  # noqa: BLE001
                got = None
        else:
            got = None
        if got is None:
            if stop - start == 1:
                for c in curves:
                    c[start] = math.nan
                state["failed"] += 1
                if state["error"] is None:
                    state["error"] = getattr(err, "message", None) or f"{type(err).__name__}: {err}"
                return
            mid = (start + stop) // 2
            _fill(runner, name, xs, start, mid, curves, state)
            _fill(runner, name, xs, mid, stop, curves, state)
            return
    for k, values in enumerate(got):
        curves[k][start:stop] = values
    for k in range(len(got), len(curves)):
        curves[k][start:stop] = math.nan


def derivatives(runner: Any, name: str, xs: np.ndarray, k: int) -> list[np.ndarray]:
    """[f, f', ..., f^(k)] at the points ``xs`` of the scalar leaf ``name``, by k nested tapes."""
    from difftape.answers.batch import _raw
    from difftape.engine.tape import Tape

    B = len(xs)
    tapes = [Tape() for _ in range(k)]
    box: dict[str, Any] = {}

    def nested(level: int) -> list[Any]:
        if level == k:
            out, batched, leaves = runner.run(B, {name: xs}, {name}, tapes)
            box["x"] = leaves[name][0]
            box["batched"] = batched
            return [out]
        with tapes[level]:
            values = nested(level + 1)
        last = values[-1]
        g = None if last is None else tapes[level].gradient(last, box["x"])
        return [*values, g]

    if k == 0:
        out, batched, _ = runner.run(B, {name: xs})
        values: list[Any] = [out]
    else:
        # the outermost tape must be entered before the run: nested() enters them in order
        values = nested(0)
    result = []
    for i, v in enumerate(values):
        if v is None:  # the curve does not depend on x: its derivative is 0
            result.append(np.zeros(B))
            continue
        arr = np.asarray(_raw(v))
        if arr.dtype.kind == "c":
            raise DifftapeError("value", "the target is complex here; plot needs a real target")
        arr = arr.astype(np.float64)
        if arr.shape != (B,):
            arr = np.broadcast_to(arr, (B,)).copy()
        result.append(arr if i == 0 or box.get("batched", True) else np.zeros(B))
    return result


# ----------------------------------------------------------------------------------------
# where a curve is not to be joined up


def limits(y: np.ndarray) -> tuple[float, float]:
    """The y-range to draw ``y`` in: its finite extent, unless a few points dwarf the rest (a pole).

    Then the 1st to 99th percentile range, widened by half, is used and the poles leave the picture.
    """
    finite = y[np.isfinite(y)]
    if finite.size == 0:
        return -1.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    if finite.size >= 20:
        qlo, qhi = (float(v) for v in np.percentile(finite, [1, 99]))
        if qhi > qlo and hi - lo > 4 * (qhi - qlo):
            pad = 0.5 * (qhi - qlo)
            lo, hi = max(lo, qlo - pad), min(hi, qhi + pad)
    if hi - lo <= 1e-12 * max(abs(lo), abs(hi), 1e-300):  # constant, up to rounding: centre it
        mid = 0.5 * (lo + hi)
        half = 0.1 * abs(mid) if mid != 0 else 1.0
        return mid - half, mid + half
    pad = 0.04 * (hi - lo)
    return lo - pad, hi + pad


def breaks(x: np.ndarray, y: np.ndarray, slope: np.ndarray | None = None) -> np.ndarray:
    """Which of the segments (i, i+1) of the curve y(x) cross a jump, a pole or a non-finite value.

    With ``slope`` (the curve's derivative), a segment breaks where its chord is steeper than
    the derivative at both ends allows: for a smooth curve the chord's slope is the derivative
    somewhere in between, so it lies between the two, up to a margin for rounding and for a
    derivative that peaks inside the segment (as much as it changes over the neighbouring ones).
    Without it, a segment breaks where its rise dwarfs both neighbouring rises.
    """
    n = len(x)
    if n < 2:
        return np.zeros(0, dtype=bool)
    y0, y1 = y[:-1], y[1:]
    gap = ~(np.isfinite(y0) & np.isfinite(y1))
    lo, hi = limits(y)
    span = hi - lo
    dx = np.diff(x)
    with np.errstate(all="ignore"):
        rise = y1 - y0
        if slope is not None:
            s0, s1 = slope[:-1], slope[1:]
            chord = rise / dx
            smin, smax = np.minimum(s0, s1), np.maximum(s0, s1)
            scale = span / (x[-1] - x[0])
            # the derivative may peak inside a segment (tanh(40*x) at 0): allow for as much curvature as the
            # neighbouring segments show
            ds = np.abs(np.diff(slope))
            ds = np.where(np.isfinite(ds), ds, 0.0)
            bend = np.maximum(np.concatenate([[0.0], ds[:-1]]), np.concatenate([ds[1:], [0.0]]))
            margin = 0.5 * (smax - smin) + bend + 1e-3 * scale + 1e-6 * np.maximum(np.abs(s0), np.abs(s1))
            known = np.isfinite(s0) & np.isfinite(s1)
            jump = known & ((chord > smax + margin) | (chord < smin - margin))
            # a rise of less than a millionth of the picture is invisible: not worth a gap
            jump &= np.abs(rise) > 1e-6 * span
            gap |= jump
            unknown = ~known
        else:
            unknown = np.ones(n - 1, dtype=bool)
        if unknown.any():
            a = np.abs(rise)
            a = np.where(np.isfinite(a), a, 0.0)
            left = np.concatenate([[0.0], a[:-1]])
            right = np.concatenate([a[1:], [0.0]])
            steep = (a > 8 * np.maximum(left, right)) & (a > 0.02 * span)
            gap |= unknown & steep
    return gap
