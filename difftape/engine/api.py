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

from difftape.engine.tape import _ACTIVE, _EMPTY, Tape, _recorders, apply, binary, unary
from difftape.engine.tensor import _TRACING, Tensor, Variable, as_array
from difftape.errors import DifftapeError, did_you_mean
from difftape.ops import OPS, Op

# what numpy raises for inputs an op cannot take (AttributeError: a ufunc on objects, np.arctan2(None, None))
_FAILURES = (TypeError, ValueError, IndexError, OverflowError, AttributeError)


def eager_error(op: Op, args: Any, params: dict[str, Any], exc: Exception) -> DifftapeError:
    """Why ``op`` failed on ``args``: numpy's exception as a DifftapeError, worded by the table.

    An input that is no number or array is a "type" error; otherwise the op's static shape rule
    (the one the compiler checks programs with) says what does not fit, naming the shapes
    (``matmul: inner dimensions differ: (2, 3) @ (2, 3)``); numpy refusing a dtype or a parameter's
    type is a "type" error, and what passes the shape rule (a singular matrix) a "value" error,
    each with numpy's reason.
    """
    if isinstance(exc, DifftapeError):
        return exc
    values = []
    for i, a in enumerate(args):
        try:
            values.append(a if isinstance(a, (np.ndarray, np.generic)) else as_array(a))
        except DifftapeError as bad:
            where = f" {op.args[i]!r}" if not op.variadic and i < len(op.args) else f" {i}"
            return DifftapeError(bad.kind, f"{op.name}(): argument{where}: {bad.message}")
    if isinstance(exc, OverflowError):  # a Python int beyond int64 among the parameters
        return DifftapeError("value", _named(op, exc))
    if isinstance(exc, (TypeError, AttributeError)):  # numpy refuses the dtypes (``True - False``), a parameter
        return DifftapeError("type", _named(op, exc))
    shapes = [np.shape(v) for v in values]
    try:
        op.shape(*shapes, **params)
    except (TypeError, ValueError, IndexError) as rule:
        return DifftapeError("shape", _named(op, rule))
    described = ", ".join(f"{v.dtype} of shape {s}" for v, s in zip(values, shapes))
    message = f"{op.name} failed: {exc}" + (f" (inputs: {described})" if described else "")
    if isinstance(exc, np.linalg.LinAlgError):
        return SingularMatrixError("value", message)
    return DifftapeError("value", message)


def _named(op: Op, exc: Exception) -> str:
    """``exc``'s text led by the op's name (the table's own messages already start with it)."""
    text = str(exc)
    return text if text.startswith(f"{op.name}:") else f"{op.name}: {text}"


class SingularMatrixError(DifftapeError, np.linalg.LinAlgError):
    """numpy's LinAlgError (a singular matrix) as difftape's error: still catchable as LinAlgError,
    so that code waiting for numpy's (``program.py``: "the derivative is not defined here") sees it."""


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
            try:
                return apply(op, args, _EMPTY)
            except _FAILURES as exc:
                raise eager_error(op, args, _EMPTY, exc) from None

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
                try:
                    tensors, rest = (tuple(args), ()) if op.spread else (tuple(args[0]), args[1:])
                except TypeError:  # not iterable, or a 0-d tensor
                    raise DifftapeError("type", f"{op.name}() takes a sequence of arrays, got {args[0]!r}") from None
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
            try:
                return apply(op, tensors, params)
            except _FAILURES as exc:
                raise eager_error(op, tensors, params, exc) from None

        fn = bound
    fn.__name__ = fn.__qualname__ = op.name
    fn.__doc__ = op.doc or f"difftape's ``{op.name}``: numpy semantics, differentiable through tapes."
    return fn


def _full_binder(op: Op) -> Callable[..., Any]:
    """``full(shape, fill_value, dtype=None)`` in numpy's order (the table's tensor input is the fill value)."""

    def full(shape: Any = None, fill_value: Any = None, dtype: Any = None) -> Any:
        if shape is None or fill_value is None:
            raise DifftapeError("arity", "full() needs a shape and a fill value: full((2, 3), 7.0)")
        params = {"shape": shape, "dtype": dtype}
        try:
            return apply(op, (fill_value,), params)
        except _FAILURES as exc:
            raise eager_error(op, (fill_value,), params, exc) from None

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


# ------------------------------------------------------------------------------------------------
# numpy functions on tensors (Tensor.__array_function__, NEP 18)

# numpy function object -> (the op of the same name, numpy's signature: read on first use)
_NUMPY_OPS: dict[Any, list[Any]] | None = None


def _numpy_ops() -> dict[Any, list[Any]]:
    """Every numpy function named like an op of the table (``np.dot``, ``np.linalg.norm``) -> [op, None].

    Constructors that make a value from a shape (``zeros``, ``full``) are left out: numpy hands
    them to a tensor only through ``like=``, and their numpy arguments are not the op's inputs.
    """
    global _NUMPY_OPS
    if _NUMPY_OPS is None:
        found: dict[Any, list[Any]] = {}
        for name, op in OPS.items():
            if not op.args or (op.kind == "constructor" and op.vjps is not None):
                continue
            for module in (np, np.linalg):
                fn = getattr(module, name, None)
                if callable(fn) and not isinstance(fn, np.ufunc):  # ufuncs come through __array_ufunc__
                    found[fn] = [op, None]
        _NUMPY_OPS = found
    return _NUMPY_OPS


def _numpy_name(func: Any) -> str:
    module = getattr(func, "__module__", None) or "numpy"
    return f"{module}.{getattr(func, '__name__', func)}"


def array_function(func: Any, types: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``func(*args, **kwargs)`` with tensors among the arguments: recorded as the op of the same
    name when there is one and numpy's arguments mean the op's, else computed on the values
    (``detached``, which refuses when that would cut a tape)."""
    if not all(issubclass(t, (Tensor, np.ndarray)) for t in types):
        return NotImplemented
    name = _numpy_name(func)
    entry = _numpy_ops().get(func)
    if entry is None:
        return detached(name, func, args, kwargs, hint=getattr(func, "__name__", ""))
    call, why = _as_op_call(entry, func, args, kwargs)
    if call is None:
        return detached(name, func, args, kwargs, why)
    return call()


def _as_op_call(entry: list[Any], func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, str]:
    """``(a call of the op for numpy's func(*args, **kwargs), "")``, or ``(None, why not)`` when numpy's
    call is another function than the op (``np.where(c)`` alone, ``np.clip(x, None, 1)``: computed on
    the values, see ``detached``). An argument the op lacks (``out=``, ``dtype=``) is an error."""
    import inspect

    op, sig = entry
    if sig is None:
        try:
            sig = entry[1] = inspect.signature(func)
        except (TypeError, ValueError):  # no signature to read: numpy computes it (detached)
            sig = entry[1] = False
    if sig is False:
        return None, ""
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError:  # not a valid numpy call: numpy says why
        return None, ""
    names = list(sig.parameters)
    if names and sig.parameters[names[0]].kind is inspect.Parameter.VAR_POSITIONAL:
        # numpy's f(*operands) (einsum('ij,jk', a, b)): its positional arguments are the op's whole call,
        # which the op's binder reads as it does difftape's (Op.lead, Op.spread)
        inputs = list(bound.arguments.get(names[0], ()))
        n = 1
        if not inputs:
            return None, f"difftape.{op.name} needs arguments"
    elif op.lead:
        return None, ""  # parameters before the tensors in a signature that names them: not read here
    else:
        n = 1 if op.variadic else len(op.args)
        required = n - op.optional  # the last Op.optional tensor inputs may be left out (None)
        missing = [name for name in names[:required] if bound.arguments.get(name) is None]
        if missing:
            return None, f"difftape.{op.name} needs {', '.join(repr(m) for m in missing)}"
        inputs = [bound.arguments.get(name) for name in names[:n]]
    ours = dict(op.params)
    params: dict[str, Any] = {}
    for name in names[n:]:
        if name not in bound.arguments:
            continue
        value = bound.arguments[name]
        if name in ours:
            if value is not np._NoValue:
                params[name] = value
        elif not _is_default(value, sig.parameters[name]):
            raise DifftapeError(
                "usage", f"{_numpy_name(func)}(..., {name}=...) on tensors: difftape.{op.name}, which records it, "
                f"takes no {name}= (tensors are immutable and keep their dtype); call it without {name}=, "
                "or on the value (np.asarray(t)) if no gradient is needed",
            )
    fn = FUNCTIONS[op.name]
    return (lambda: fn(*inputs, **params)), ""


def _is_default(value: Any, param: Any) -> bool:
    """Whether numpy's argument ``value`` is the parameter's default (so the op may ignore it)."""
    if param.kind is param.VAR_KEYWORD or param.kind is param.VAR_POSITIONAL:
        return not value
    default = param.default
    if value is default or value is None or value is np._NoValue:
        return True
    return type(value) in (bool, int, float, str) and type(value) is type(default) and value == default


def detached(name: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], why: str = "",
             hint: str = "") -> Any:
    """``fn`` on the values of the tensors among ``args``: a plain numpy result, which no tape follows.

    That is right when no recorder tracks those tensors (the value is all there is to them), and
    for results that carry no gradient (bools, ints, shapes: ``np.shape``, ``np.argmax``,
    ``np.allclose``). A float result computed from a tracked tensor would silently cut the tape
    (its gradient would be None, or a difftape.function would freeze the value): that raises,
    saying ``why`` the op of that name does not take this call, or else suggesting an op named
    like ``hint``.
    """
    found: list[Tensor] = []
    raw_args = _values(args, found)
    raw_kwargs = _values(kwargs, found)
    out = fn(*raw_args, **raw_kwargs)
    if _ACTIVE and _inexact(out):
        for t in found:
            by = tracker(t)
            if by:
                raise _cut_error(name, t, by, why, hint)
    if _TRACING:  # the body used these values as numpy arrays: the trace guards them (replays check them)
        for t in found:
            _TRACING[-1].used(t, "array")
    return out


def _values(x: Any, found: list[Tensor]) -> Any:
    """``x`` with every tensor in it (in lists, tuples, dicts) replaced by its value; the tensors go to ``found``."""
    if isinstance(x, Tensor):
        found.append(x)
        return np.asarray(x._value)
    if type(x) in (list, tuple):
        return type(x)(_values(e, found) for e in x)
    if type(x) is dict:
        return {k: _values(v, found) for k, v in x.items()}
    return x


def _inexact(out: Any) -> bool:
    """Whether a result holds numbers a gradient could flow through (floats, complex; objects to be safe)."""
    if isinstance(out, (np.ndarray, np.generic)):
        return out.dtype.kind in "fcO"
    if isinstance(out, (float, complex)):
        return True
    if isinstance(out, (list, tuple)):
        return any(_inexact(e) for e in out)
    return False


def tracker(t: Tensor) -> str:
    """Who among the active recorders follows ``t`` ("" for nobody): a tape that tracks it (or would
    watch it: a trainable Variable), or ``difftape.function`` tracing it (its inputs, what it computed,
    captured Variables, which it reads again at each call). This thread's recorders only."""
    for rec in _recorders():
        if rec.__class__ is Tape:
            if rec._slot(t) is not None or (isinstance(t, Variable) and t.trainable and rec.watch_accessed_variables):
                return "a tape is watching"
        else:  # a trace: its inputs and what the body computed from anything (ids), captured Variables
            ids = getattr(rec, "ids", None)
            if ids is None or id(t) in ids or isinstance(t, Variable):
                return "difftape.function is tracing"
    return ""


def _cut_error(name: str, t: Tensor, by: str, why: str, hint: str) -> DifftapeError:
    what = f"the Variable {t.name!r}" if isinstance(t, Variable) else "a tensor"
    if why:
        head, instead = f"{name}() with these arguments is not recorded ({why})", "call difftape's own function"
    else:
        head = f"{name}() is not one of difftape's operations{did_you_mean(hint, FUNCTIONS) if hint else ''}"
        instead = "write it with difftape's operations (dir(difftape) lists them)"
    return DifftapeError(
        "unsupported",
        f"{head}: on {what}, which {by}, its result would silently lose the gradient. Instead {instead}, "
        "or take the value on purpose first with np.asarray(t) or t.numpy() (no gradient flows through it)",
    )
