"""Tensors: an immutable numpy value with Python operators, and the mutable Variable.

A Tensor only holds a value. Which computations it took part in is the business of
the tapes that watched them (``tape.py``); the operators below all go through the
operation table (``ops.py``), so that every arithmetic a user writes is recorded.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from difftape.errors import DifftapeError

_PY_DTYPES = {bool: np.dtype(bool), int: np.dtype(np.int64), float: np.dtype(np.float64)}

#: The ``difftape.function`` trace running now, if any (``tracing.py`` sets it). A tensor used as a
#: Python value (bool, int, float, index, numpy array) tells it, so that its replays check that value.
_TRACING: list[Any] = []


_NUMERIC_KINDS = frozenset("biufc")  # bool, signed and unsigned int, float, complex


def as_array(value: Any, dtype: Any = None) -> np.ndarray:
    """Convert anything array-like to a numpy array, Python int -> int64, float -> float64.

    Whatever numpy cannot make a numeric array of (a ragged list, a string, a bad dtype, an
    int too large for int64) is a DifftapeError of kind "type" or "value", never numpy's own error.
    """
    if isinstance(value, Tensor):
        if _TRACING:
            _TRACING[-1].used(value, "array")
        value = value._value
    try:
        if dtype is not None:
            return np.asarray(value, dtype=as_dtype(dtype))
        if type(value) in _PY_DTYPES:
            return np.asarray(value, dtype=_PY_DTYPES[type(value)])
        arr = np.asarray(value)
    except TypeError as exc:  # an object numpy cannot read
        raise DifftapeError("type", f"cannot make a tensor from {_describe(value)}: {exc}") from None
    except (ValueError, OverflowError) as exc:  # a ragged list, an int beyond int64, "abc" as a float
        raise DifftapeError("value", f"cannot make a tensor from {_describe(value)}: {exc}") from None
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise DifftapeError("type", f"cannot make a tensor from {_describe(value)}: it is not numeric "
                            f"(numpy reads it as {arr.dtype}); tensors hold bools, ints, floats or complex numbers")
    return arr


def as_dtype(dtype: Any) -> np.dtype:
    """``dtype`` (a name, a type, a numpy dtype) as a numeric numpy dtype, or a DifftapeError of kind "type"."""
    try:
        want = np.dtype(dtype)
    except TypeError as exc:
        raise DifftapeError("type", f"unknown dtype {dtype!r}: {exc}") from None
    if want.kind not in _NUMERIC_KINDS:
        raise DifftapeError("type", f"dtype {want} is not numeric: tensors hold bools, ints, floats or complex numbers")
    return want


def _describe(value: Any) -> str:
    """``[1, [2]] (list)``, ``'abc' (str)``: how an error message names a value the user passed."""
    text = repr(value)
    return f"{text if len(text) <= 40 else text[:37] + '...'} ({type(value).__name__})"


def _cast(arr: np.ndarray, want: np.dtype, what: str) -> np.ndarray:
    """``arr`` as ``want`` when nothing is lost but rounding (TensorFlow refuses the rest).

    Allowed: the same kind or a wider one (int -> float, float64 -> float32); refused, as a
    DifftapeError: a float to an int (``Variable(3).assign(2.5)`` would truncate), complex to
    real, anything to bool, an int out of the target's range, a finite value that overflows.
    """
    if arr.dtype == want:
        return arr
    if not np.can_cast(arr.dtype, want, "same_kind"):
        raise DifftapeError("type", f"{what}: cannot convert {arr.dtype} to {want} without losing information "
                            f"(a tensor keeps its dtype; convert explicitly first if you mean it)")
    with np.errstate(all="ignore"):
        out = arr.astype(want)
        if want.kind in "iub":
            lost = not np.array_equal(out.astype(arr.dtype), arr)
        else:
            lost = bool(np.any(np.isfinite(arr) & ~np.isfinite(out)))
    if lost:
        raise DifftapeError("value", f"{what}: a value does not fit in {want}")
    return out


_UNCOPIED = frozenset({"_tok", "_idx", "__weakref__"})


def numpy_value(value: Any) -> Any:
    """``value`` as a tensor holds it: a numpy array or numpy scalar (a Python number becomes numpy's).

    Every tensor's value is one (the operators of tape.unary/binary rely on it: on numpy values,
    Python's operators are numpy's ufuncs)."""
    if value.__class__ is np.ndarray or isinstance(value, np.generic):
        return value
    return as_array(value)[()]


class Tensor:
    """An immutable array value that difftape's operations accept and tapes can record.

    Numpy applied to a tensor: a ufunc (``np.sin(t)``) or numpy function (``np.dot``,
    ``np.linalg.norm``, ``np.concatenate``, ...) that has an operation of the same name in the
    table runs as that operation, so it is recorded just like ``difftape.sin(t)``. Any other
    numpy function on a tensor that a tape (or ``difftape.function``) is tracking, or on a
    trainable Variable while a tape records, raises a DifftapeError if its result could carry
    a gradient (floats): it would silently cut the tape. On other tensors numpy functions work
    as on arrays and give plain numpy values. ``np.asarray(t)``, ``np.array(t)`` and
    ``t.numpy()`` detach on purpose: they give the value, which no tape follows.
    """

    # _tok/_idx: the stamp of the tape that tracks this tensor and its slot there (see tape.py)
    __slots__ = ("_value", "_tok", "_idx", "__weakref__")
    _trainable = False
    # Numpy defers to our reflected operators and calls __array_ufunc__ below.
    __array_priority__ = 1000

    def __init__(self, value: Any, dtype: Any = None) -> None:
        self._tok = None
        if dtype is None and isinstance(value, np.generic):
            self._value = value
            return
        v = as_array(value, dtype) if dtype is not None or not isinstance(value, np.ndarray) else value
        # A 0-d value is kept as a numpy scalar: numpy's scalar math is several times faster than
        # its 0-d array math, with the same results (0-d results of numpy ops are scalars anyway).
        self._value = v[()] if v.ndim == 0 else v

    # -- values ------------------------------------------------------------------------
    def numpy(self) -> Any:
        """The value: a numpy array, or a numpy scalar for a 0-d tensor (as TensorFlow does)."""
        if _TRACING:
            _TRACING[-1].used(self, "array")
        v = self._value
        if isinstance(v, np.generic):  # 0-d values are kept as numpy scalars
            return v
        v = np.asarray(v)
        return v[()] if v.ndim == 0 else v.copy()

    @property
    def value(self) -> np.ndarray:
        """The value as a numpy array (shared, do not mutate)."""
        if _TRACING:
            _TRACING[-1].used(self, "array")
        return np.asarray(self._value)

    @property
    def shape(self) -> tuple[int, ...]:
        if _TRACING:
            _TRACING[-1].used(self, "shape")
        try:
            return self._value.shape
        except AttributeError:  # a Python number (an op like stop_gradient passes its input through)
            return np.shape(self._value)

    @property
    def dtype(self) -> np.dtype:
        try:
            return self._value.dtype
        except AttributeError:
            return np.asarray(self._value).dtype

    @property
    def ndim(self) -> int:
        if _TRACING:
            _TRACING[-1].used(self, "shape")
        return np.ndim(self._value)

    @property
    def size(self) -> int:
        if _TRACING:
            _TRACING[-1].used(self, "shape")
        return int(np.size(self._value))

    @property
    def T(self) -> Tensor:  # noqa: N802 - numpy's name
        return _api.transpose(self)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if _TRACING:
            _TRACING[-1].used(self, "array")
        arr = np.asarray(self._value)
        return arr.astype(dtype) if dtype is not None else arr

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        fn = _api.UFUNCS.get(ufunc.__name__) if method == "__call__" and not kwargs else None
        if fn is not None:
            return fn(*inputs)
        call = method == "__call__"
        name = f"numpy.{ufunc.__name__}" + ("" if call else f".{method}")
        why = "" if call and not kwargs else "difftape's operations take no ufunc methods or keywords"
        return _api.detached(name, getattr(ufunc, method), inputs, kwargs, why=why,
                             hint=ufunc.__name__ if call else "")

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        # NEP 18: numpy functions (np.dot, np.linalg.norm, np.concatenate, ...) on tensors
        return _api.array_function(func, types, args, kwargs)

    def __repr__(self) -> str:
        kind = type(self).__name__
        name = f" name={self.name!r}" if isinstance(self, Variable) and self.name else ""
        body = np.array2string(np.asarray(self._value), separator=", ")
        return f"<difftape.{kind}{name} shape={self.shape} dtype={self.dtype} numpy={body}>"

    def __str__(self) -> str:
        return str(np.asarray(self._value))

    def __bool__(self) -> bool:
        if _TRACING:
            _TRACING[-1].used(self, "bool")
        return bool(self._value)

    def __float__(self) -> float:
        if _TRACING:
            _TRACING[-1].used(self, "float")
        return float(self._value)

    def __int__(self) -> int:
        if _TRACING:
            _TRACING[-1].used(self, "int")
        return int(self._value)

    def __index__(self) -> int:
        if _TRACING:
            _TRACING[-1].used(self, "index")
        return int(np.asarray(self._value).__index__())

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    __hash__ = object.__hash__

    # copy, deepcopy and pickle: a copy is a new tensor, tracked by no tape (the stamp stays behind)
    def __getstate__(self) -> dict[str, Any]:
        if _TRACING:
            _TRACING[-1].used(self, "array")  # the copy holds this value, as a constant
        names = (n for cls in type(self).__mro__ for n in getattr(cls, "__slots__", ()))
        return {n: getattr(self, n) for n in names if n not in _UNCOPIED and hasattr(self, n)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)
        self._tok = None

    # -- operators: all through the operation table; the arithmetic ones and comparisons are installed
    # below the class (``_OPERATORS``), each the op's own function from tape.unary/tape.binary
    def __getitem__(self, index: Any) -> Tensor:
        return _api.getitem(self, index)

    # -- numpy-style methods (np.sum(t), np.mean(t), ... call these, passing dtype/out) -------
    def sum(self, axis: Any = None, keepdims: bool = False, dtype: Any = None, out: Any = None) -> Tensor:
        _no_out("sum", dtype, out)
        return _api.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False, dtype: Any = None, out: Any = None) -> Tensor:
        _no_out("mean", dtype, out)
        return _api.mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis: Any = None, keepdims: bool = False, out: Any = None) -> Tensor:
        _no_out("max", None, out)
        return _api.max(self, axis=axis, keepdims=keepdims)

    def min(self, axis: Any = None, keepdims: bool = False, out: Any = None) -> Tensor:
        _no_out("min", None, out)
        return _api.min(self, axis=axis, keepdims=keepdims)

    def prod(self, axis: Any = None, keepdims: bool = False, dtype: Any = None, out: Any = None) -> Tensor:
        _no_out("prod", dtype, out)
        return _api.prod(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape: Any) -> Tensor:
        return _api.reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes: Any) -> Tensor:
        return _api.transpose(self, (axes[0] if len(axes) == 1 else axes) if axes else None)


class Variable(Tensor):
    """A mutable tensor (``tf.Variable``): shape and dtype come from the initial value.

    Trainable variables are watched by every active tape automatically. ``assign``
    keeps shape and dtype, so a variable cannot silently turn into something else: a value
    that would change it (a float into an int variable, a shape that differs) is refused.
    ``name`` follows TensorFlow: ``"Variable:0"``, then ``"Variable_1:0"``, ... by default
    (one number per variable, so that names tell them apart), ``"w:0"`` for ``name="w"``.
    """

    __slots__ = ("name", "trainable")

    def __init__(self, initial_value: Any, name: str | None = None, trainable: bool = True, dtype: Any = None):
        if name is not None and not isinstance(name, str):
            raise DifftapeError("type", f"a Variable's name is a str, got {_describe(name)}")
        if name is not None and (not name or ":" in name):
            raise DifftapeError("value", f"invalid Variable name {name!r}: it must be non-empty and without ':' "
                                "(the ':0' is added, as TensorFlow does)")
        super().__init__(np.array(_typed(initial_value, dtype, "Variable"), copy=True))
        self.name = f"{name}:0" if name is not None else _default_name()
        self.trainable = bool(trainable)

    @property
    def _trainable(self) -> bool:  # type: ignore[override]
        return self.trainable

    def _checked(self, value: Any, what: str) -> Any:
        new = as_array(value)
        if new.shape != self.shape:
            raise DifftapeError("shape", f"{what}: cannot assign a value of shape {new.shape} to the variable "
                                f"{self.name!r} of shape {self.shape}")
        new = np.array(_cast(new, self.dtype, f"{what} to the {self.dtype} variable {self.name!r}"), copy=True)
        return new[()] if new.ndim == 0 else new  # 0-d values are numpy scalars (see Tensor)

    def assign(self, value: Any) -> Variable:
        """Replace the value (same shape; a dtype it converts to without loss, as TensorFlow requires)."""
        self._value = self._checked(value, "assign")
        return self

    def assign_add(self, delta: Any) -> Variable:
        """``+=`` for variables."""
        self._value = self._checked(self._combined(delta, np.add, "assign_add"), "assign_add")
        return self

    def assign_sub(self, delta: Any) -> Variable:
        """``-=`` for variables."""
        self._value = self._checked(self._combined(delta, np.subtract, "assign_sub"), "assign_sub")
        return self

    def _combined(self, delta: Any, ufunc: np.ufunc, what: str) -> np.ndarray:
        d = as_array(delta)
        try:
            return ufunc(np.asarray(self._value), d)
        except (TypeError, ValueError) as exc:
            raise DifftapeError("shape" if isinstance(exc, ValueError) else "type",
                                f"{what}: cannot combine a value of shape {d.shape} ({d.dtype}) with the variable "
                                f"{self.name!r} of shape {self.shape} ({self.dtype}): {exc}") from None


_variable_count = itertools.count()


def _default_name() -> str:
    """TensorFlow's default variable names, numbered the way its graphs uniquify them."""
    n = next(_variable_count)
    return f"Variable_{n}:0" if n else "Variable:0"


def _typed(value: Any, dtype: Any, what: str) -> np.ndarray:
    """``value`` as an array, of ``dtype`` when one is given (converted only without loss, see ``_cast``)."""
    arr = as_array(value)
    if dtype is None:
        return arr
    return _cast(arr, as_dtype(dtype), f"{what}(..., dtype={dtype!r})")


def _no_out(name: str, dtype: Any, out: Any) -> None:
    if dtype is not None or out is not None:
        raise DifftapeError("usage", f"{name}: tensors are immutable and keep their dtype (no dtype= or out=)")


def constant(value: Any, dtype: Any = None) -> Tensor:
    """An immutable tensor; Python int -> int64, float -> float64 unless ``dtype`` says otherwise."""
    return Tensor(np.array(_typed(value, dtype, "constant"), copy=True))


class _API:
    """``difftape.engine.api``, imported on first use (api imports tape, which imports this module)."""

    def __getattr__(self, name: str) -> Any:
        global _api
        from difftape.engine import api

        _api = api
        return getattr(api, name)


_api: Any = _API()
# operator -> op; the reflected form (__radd__, ...) too for the arithmetic ones.
_OPERATORS = {
    "add": "add", "sub": "subtract", "mul": "multiply", "truediv": "divide", "floordiv": "floor_divide",
    "mod": "remainder", "pow": "power", "matmul": "matmul",
}
_COMPARISONS = {"lt": "less", "le": "less_equal", "gt": "greater", "ge": "greater_equal", "eq": "equal",
                "ne": "not_equal"}
_UNARY = {"neg": "negative", "pos": "positive", "abs": "abs"}


def _install_operators(unary: Any, binary: Any) -> None:
    """Tensor's operators, each the op's own apply function (``tape.unary``/``tape.binary``): one call
    deep, since the hot path of eager code is these. tape.py calls this once it has defined them
    (tape.py imports this module and this module imports tape.py: either may be imported first)."""
    from difftape.ops import OPS

    methods = {f"__{d}__": binary(OPS[name]) for d, name in {**_OPERATORS, **_COMPARISONS}.items()}
    methods.update({f"__r{d}__": binary(OPS[name], swap=True) for d, name in _OPERATORS.items()})
    methods.update({f"__{d}__": unary(OPS[name]) for d, name in _UNARY.items()})
    for dunder, fn in methods.items():
        fn.__name__ = dunder
        fn.__qualname__ = f"Tensor.{dunder}"
        setattr(Tensor, dunder, fn)
    for name, op in OPS.items():  # numpy-style methods: every entry that says ndarray has one (Op.method)
        if op.method and name not in vars(Tensor):
            setattr(Tensor, name, _method(name, {p for p, _ in op.params}))


def _method(name: str, params: set[str]) -> Any:
    """``t.name(...)`` as ``difftape.name(t, ...)``; numpy's functions pass their own defaults (np.NAME(t)
    calls ``t.NAME(axis=None, dtype=None, out=None)``): a None that is not a parameter is dropped."""

    def method(self: Tensor, *args: Any, **kwargs: Any) -> Any:
        return getattr(_api, name)(self, *args, **{k: v for k, v in kwargs.items() if v is not None or k in params})

    method.__name__, method.__qualname__ = name, f"Tensor.{name}"
    return method


from difftape.engine import tape as _tape  # noqa: E402, F401  (installs the operators)
