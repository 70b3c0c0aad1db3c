"""Whole derivative arrays of Python functions: ``jacobian(f, x)`` and ``hessian(f, x)``.

``x`` is one input (a tensor, array, number, or a nested list of numbers such as
``[1.0, 2.0]``, which is one vector, as TensorFlow and JAX read it), or a
list/tuple of tensors or arrays, passed to ``f`` as separate arguments. A Jacobian
block has shape ``out.shape + in.shape``; a Hessian block ``in_i.shape + in_j.shape``.
Both are built on nested tapes, so what they answer is exactly what ``Tape.gradient`` answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from difftape.engine.tape import Tape
from difftape.engine.tensor import Tensor, constant
from difftape.errors import DifftapeError


def _sources(x: Any) -> tuple[list[Tensor], bool]:
    """The inputs as tensors, and whether there are several (a list/tuple holding a tensor or an array)."""
    many = isinstance(x, (list, tuple)) and any(isinstance(e, (Tensor, np.ndarray)) for e in x)
    xs = list(x) if many else [x]
    out = [t if isinstance(t, Tensor) else constant(t) for t in xs]
    return out, many


def jacobian(f: Callable[..., Any], x: Any) -> Any:
    """The Jacobian of ``f`` at ``x``: one array (or a list, one per argument)."""
    xs, many = _sources(x)
    with Tape(persistent=True) as tape:
        tape.watch(xs)
        y = f(*xs)
    jac = tape.jacobian(y, xs, unconnected="zero")
    return jac if many else jac[0]


def hessian(f: Callable[..., Any], x: Any) -> Any:
    """The Hessian of scalar ``f`` at ``x``: one array, or a list of lists of blocks."""
    xs, many = _sources(x)
    with Tape(persistent=True) as outer:
        outer.watch(xs)
        with Tape() as inner:
            inner.watch(xs)
            y = f(*xs)
        if not isinstance(y, Tensor):
            y = constant(y)
        if y.ndim != 0:
            raise DifftapeError("shape", f"hessian needs a scalar function, got shape {y.shape}; use jacobian")
        grads = inner.gradient(y, xs, unconnected="zero")
    blocks = [outer.jacobian(g, xs, unconnected="zero") for g in grads]
    return blocks if many else blocks[0][0]
