"""``difftape minimize``: the scalar target of a program minimised over its variables.

The program's differentiated leaves (its variables, or ``--wrt``) start from their bindings
and ``--at`` values; they are packed into one flat float64 vector, which
:func:`difftape.optimize.run` moves (L-BFGS by default). Each evaluation runs the program on
a tape, as ``difftape grad`` does, with the leaves replaced by the current point. The result
and one line per step (``--trace``) are rendered here, as text or strict JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from difftape.answers.program import Program, _Record
from difftape.engine.tape import Tape
from difftape.errors import DifftapeError

#: Variables up to this many elements are shown on a --trace text line (larger ones by shape).
TRACE_ELEMENTS = 6


class MinimizeResult(_Record):
    of: str
    method: str
    value: np.ndarray
    argmin: dict[str, np.ndarray]
    steps: int
    converged: bool
    reason: str
    grad_norm: float

    _field_names = ("of", "method", "value", "argmin", "steps", "converged", "reason", "grad_norm")

    def __init__(self, of: str, method: str, value: np.ndarray, argmin: dict[str, np.ndarray], steps: int,
                 converged: bool, reason: str, grad_norm: float) -> None:
        self.of = of
        self.method = method
        self.value = value
        self.argmin = argmin
        self.steps = steps
        self.converged = converged
        self.reason = reason
        self.grad_norm = grad_norm


class Problem:
    """A program's target as a function of one flat vector: the names, their shapes, and (value, gradient)."""

    def __init__(self, prog: Program, wrt: Iterable[str] | None = None, watch: Iterable[str] = ()) -> None:
        shape = prog.target_shape
        if shape != ():
            raise DifftapeError(
                "shape",
                f"minimize needs a scalar target, but {prog.of} has shape {shape}; minimise sum({prog.of}) "
                "or another scalar of it instead",
            )
        names, watched = prog.sources(list(wrt) if wrt is not None else None, watch)
        for name in names:
            if name not in watched:
                raise DifftapeError("name", f"--wrt {name}: {name} is a const; add --watch {name} to minimise "
                                            "over it")
        _, leaves = prog._run([], watched)
        self.names = [n for n in names if n in leaves and n in watched]
        if not self.names:
            raise DifftapeError("usage", f"{prog.of} has nothing to minimise over: it has no variables "
                                         "(give --wrt NAMES, or bind a name to a number)")
        self.prog = prog
        self.watched = watched
        self.shapes = {n: tuple(leaves[n].shape) for n in self.names}
        self.sizes = [int(np.prod(self.shapes[n], dtype=np.int64)) for n in self.names]
        self.x0 = np.concatenate([np.asarray(leaves[n]._value, dtype=np.float64).reshape(-1)
                                  for n in self.names]) if self.names else np.zeros(0)
        self.float_dtype = prog.float_dtype

    def unpack(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The flat vector as {name: array of its shape, in the program's float dtype}."""
        out = {}
        start = 0
        for n, size in zip(self.names, self.sizes):
            out[n] = x[start:start + size].reshape(self.shapes[n]).astype(self.float_dtype)
            start += size
        return out

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """(value, gradient) of the target at the flat point ``x``."""
        with np.errstate(all="ignore"):
            try:
                with Tape() as tape:
                    out, leaves = self.prog._run([tape], self.watched, overrides=self.unpack(x))
                sources = [leaves[n] for n in self.names]
                grads = tape.gradient(out, sources)
            except np.linalg.LinAlgError as err:
                raise DifftapeError("value", f"the target is not defined here: a singular matrix ({err})") from None
        value = np.asarray(out._value)
        if value.dtype.kind == "c":
            raise DifftapeError("value", f"{self.prog.of} is complex here; minimize needs a real target")
        parts = [np.zeros(size) if g is None else np.asarray(g._value, dtype=np.float64).reshape(-1)
                 for g, size in zip(grads, self.sizes)]
        return float(value), (np.concatenate(parts) if parts else np.zeros(0))


def minimize_program(
    prog: Program,
    *,
    wrt: Iterable[str] | None = None,
    watch: Iterable[str] = (),
    method: str = "lbfgs",
    lr: float | None = None,
    steps: int = 1000,
    tol: float = 1e-6,
    callback: Callable[[int, dict[str, np.ndarray], float, float], None] | None = None,
) -> MinimizeResult:
    """Minimise the program's scalar target; ``callback(step, point, value, grad_norm)`` after each step."""
    from difftape.optimize import run

    problem = Problem(prog, wrt, watch)
    step_cb = None
    if callback is not None:
        def step_cb(k: int, x: np.ndarray, f: float, gnorm: float) -> None:
            callback(k, problem.unpack(x), f, gnorm)

    res = run(problem, problem.x0, method=method, lr=lr, steps=steps, tol=tol, callback=step_cb)
    value = np.asarray(res.fun, dtype=prog.float_dtype)
    return MinimizeResult(prog.of, method, value, problem.unpack(res.x), res.steps, res.converged, res.reason,
                          res.grad_norm)


# ----------------------------------------------------------------------------------------
# rendering


def result_json(res: MinimizeResult) -> dict[str, Any]:
    """``{"of", "value", "argmin": {name: value}, "steps", "converged", "reason"}``."""
    from difftape.io.render import jsonable

    return {"of": res.of, "value": jsonable(res.value), "argmin": {n: jsonable(v) for n, v in res.argmin.items()},
            "steps": int(res.steps), "converged": bool(res.converged), "reason": res.reason}


def result_text(res: MinimizeResult) -> str:
    """The value, each variable's argmin, the steps taken and why the run stopped."""
    from difftape.io.render import describe, format_array

    rows: list[tuple[str, str] | str] = [("of", " ".join(res.of.split())), ("method", res.method),
                                         ("value", format_array(res.value))]
    for name, v in res.argmin.items():
        rows.append((f"argmin {name}", describe(v)))
        rows.append(format_array(v))
    rows.append(("steps", str(res.steps)))
    rows.append(("stopped", ("converged: " if res.converged else "NOT converged: ") + res.reason))
    width = max(len(r[0]) for r in rows if isinstance(r, tuple))
    return "\n".join(f"{r[0].ljust(width)}  {r[1]}" if isinstance(r, tuple) else r for r in rows)


def trace_json(step: int, point: dict[str, np.ndarray], value: float, grad_norm: float) -> dict[str, Any]:
    """One --trace --json line: ``{"step", "value", "grad_norm", "at": {name: value}}``."""
    from difftape.io.render import jsonable

    return {"step": step, "value": jsonable(float(value)), "grad_norm": jsonable(float(grad_norm)),
            "at": {n: jsonable(v) for n, v in point.items()}}


def trace_text(step: int, point: dict[str, np.ndarray], value: float, grad_norm: float) -> str:
    """One --trace line: ``step 3  value 0.25  grad_norm 1.0  x=0.5`` (large variables by shape)."""
    parts = [f"step {step}", f"value {float(value)!r}", f"grad_norm {float(grad_norm):.6g}"]
    for n, v in point.items():
        arr = np.asarray(v)
        if arr.size <= TRACE_ELEMENTS:
            text = repr(float(arr)) if arr.ndim == 0 else np.array2string(arr.reshape(-1), separator=",",
                                                                          floatmode="unique", max_line_width=10**6)
            parts.append(f"{n}={text}")
        else:
            parts.append(f"{n}=<shape {arr.shape}>")
    return "  ".join(parts)
