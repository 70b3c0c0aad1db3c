"""Every operation of the table as a package-level function, by its numpy name.

``difftape.sin(x)``, ``difftape.sum(x, axis=0)``, ``difftape.matmul(a, b)``: each takes
tensors, arrays or numbers, binds its arguments the way numpy would (tensor inputs
first, then the op's parameters, positionally or by keyword) and runs through
``tape.apply`` so that active tapes record it. ``NAMESPACE`` holds the same functions
for the VJPs of ``ops.py`` when they run on tensors (higher-order derivatives).
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

from difftape.engine.tape import _EMPTY, apply, binary, unary
from difftape.errors import DifftapeError
from difftape.ops import OPS, Op


def _binder(op: Op) -> Callable[..., Any]:
    n = len(op.args)
    if n == 1 and not op.params and not op.variadic:
        fn = unary(op)
    elif n == 2 and not op.params and not op.variadic:
        fn = binary(op)
    elif not op.params and not op.variadic:

        def fixed(*args: Any) -> Any:
            if len(args) != n:
                raise DifftapeError("arity", f"{op.name}() takes {n} argument{'s' * (n != 1)}, got {len(args)}")
            return apply(op, args, _EMPTY)

        fn = fixed
    else:
        names = [p for p, _ in op.params]
        defaults = dict(op.params)

        lead = len(op.lead)  # parameters written before the tensors (Op.lead)
        later = [p for p in names if p not in op.lead]

        def bound(*args: Any, **kwargs: Any) -> Any:
            if lead:  # parameters written before the tensors, unless given by keyword
                given = [p for p in op.lead if p not in kwargs]
                first, args = args[: len(given)], args[len(given):]
            if op.variadic:
                if not args and not op.spread:
                    raise DifftapeError("arity", f"{op.name}() needs a sequence of arrays")
                tensors, rest = (tuple(args), ()) if op.spread else (tuple(args[0]), args[1:])
            else:
                tensors, rest = args[:n], args[n:]
                if len(tensors) < n:
                    missing = [a for a in op.args[len(tensors):]]
                    if all(m in kwargs for m in missing[: len(missing) - op.optional]):
                        tensors = tensors + tuple(kwargs.pop(m, None) for m in missing)
                    else:
                        raise DifftapeError("arity", f"{op.name}() missing argument(s): {', '.join(missing)}")
                while op.optional and len(tensors) > n - op.optional and tensors[-1] is None:
                    tensors = tensors[:-1]  # an optional input left out (or given as None)
            if len(rest) > len(later):
                raise DifftapeError("arity", f"{op.name}() takes at most {n + len(names)} arguments")
            params = dict(defaults)
            if lead:
                params.update(zip(given, first))
            params.update(zip(later, rest))
            for k, v in kwargs.items():
                if k not in defaults:
                    raise DifftapeError("arity", f"{op.name}() got an unexpected keyword {k!r}")
                params[k] = v
            return apply(op, tensors, params)

        fn = bound
    fn.__name__ = fn.__qualname__ = op.name
    fn.__doc__ = op.doc or f"difftape's ``{op.name}``: numpy semantics, differentiable through tapes."
    return fn


def _full_binder(op: Op) -> Callable[..., Any]:
    """``full(shape, fill_value, dtype=None)`` in numpy's order (the table's tensor input is the fill value)."""

    def full(shape: Any = None, fill_value: Any = None, dtype: Any = None) -> Any:
        if shape is None or fill_value is None:
            raise DifftapeError("arity", "full() needs a shape and a fill value: full((2, 3), 7.0)")
        return apply(op, (fill_value,), {"shape": shape, "dtype": dtype})

    full.__doc__ = "numpy's ``full(shape, fill_value, dtype=None)``; differentiable in the fill value."
    return full


FUNCTIONS: dict[str, Callable[..., Any]] = {
    name: _full_binder(op) if name == "full" else _binder(op) for name, op in OPS.items()
}
NAMESPACE = SimpleNamespace(**FUNCTIONS)
globals().update(FUNCTIONS)

# numpy ufunc name -> our function, for Tensor.__array_ufunc__ (np.sin(t) is recorded).
UFUNCS: dict[str, Callable[..., Any]] = {
    name: fn for name, fn in FUNCTIONS.items() if isinstance(getattr(np, name, None), np.ufunc)
}
UFUNCS.update(absolute=FUNCTIONS["abs"], true_divide=FUNCTIONS["divide"], divide=FUNCTIONS["divide"],
              mod=FUNCTIONS["remainder"])
