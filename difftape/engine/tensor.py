"""Tensors: an immutable numpy value with Python operators, and the mutable Variable.

A Tensor only holds a value. Which computations it took part in is the business of
the tapes that watched them (``tape.py``); the operators below all go through the
operation table (``ops.py``), so that every arithmetic a user writes is recorded.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from difftape.errors import DifftapeError

_PY_DTYPES = {bool: np.dtype(bool), int: np.dtype(np.int64), float: np.dtype(np.float64)}

#: The ``difftape.function`` trace running now, if any (``tracing.py`` sets it). A tensor used as a
#: Python value (bool, int, float, index, numpy array) tells it, so that its replays check that value.
_TRACING: list[Any] = []


def as_array(value: Any, dtype: Any = None) -> np.ndarray:
    """Convert anything array-like to a numpy array, Python int -> int64, float -> float64."""
    if isinstance(value, Tensor):
        if _TRACING:
            _TRACING[-1].used(value, "array")
        value = value._value
    if dtype is not None:
        return np.asarray(value, dtype=np.dtype(dtype))
    if type(value) in _PY_DTYPES:
        return np.asarray(value, dtype=_PY_DTYPES[type(value)])
    arr = np.asarray(value)
    if arr.dtype == object:
        raise DifftapeError("type", f"cannot make a tensor from {type(value).__name__!r} (ragged or non-numeric)")
    return arr


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

    Numpy ufuncs applied to a Tensor dispatch to difftape's own operation of the same
    name, so ``np.sin(t)`` is recorded just like ``difftape.sin(t)``.
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
        if _TRACING:
            for i in inputs:
                if isinstance(i, Tensor):
                    _TRACING[-1].used(i, "array")
        raw = [np.asarray(i._value) if isinstance(i, Tensor) else i for i in inputs]
        return getattr(ufunc, method)(*raw, **kwargs)

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
    keeps shape and dtype, so a variable cannot silently turn into something else.
    """

    __slots__ = ("name", "trainable")

    def __init__(self, initial_value: Any, name: str | None = None, trainable: bool = True, dtype: Any = None):
        super().__init__(np.array(as_array(initial_value, dtype), copy=True))
        self.name = name
        self.trainable = bool(trainable)

    @property
    def _trainable(self) -> bool:  # type: ignore[override]
        return self.trainable

    def _checked(self, value: Any) -> Any:
        new = as_array(value)
        if new.shape != self.shape:
            label = f"variable {self.name!r}" if self.name else "the variable"
            raise DifftapeError("shape", f"cannot assign a value of shape {new.shape} to {label} of shape {self.shape}")
        new = new.astype(self.dtype, copy=True)
        return new[()] if new.ndim == 0 else new  # 0-d values are numpy scalars (see Tensor)

    def assign(self, value: Any) -> Variable:
        """Replace the value (same shape; cast to the variable's dtype)."""
        self._value = self._checked(value)
        return self

    def assign_add(self, delta: Any) -> Variable:
        """``+=`` for variables."""
        self._value = self._checked(np.asarray(self._value) + as_array(delta))
        return self

    def assign_sub(self, delta: Any) -> Variable:
        """``-=`` for variables."""
        self._value = self._checked(np.asarray(self._value) - as_array(delta))
        return self


def _no_out(name: str, dtype: Any, out: Any) -> None:
    if dtype is not None or out is not None:
        raise DifftapeError("usage", f"{name}: tensors are immutable and keep their dtype (no dtype= or out=)")


def constant(value: Any, dtype: Any = None) -> Tensor:
    """An immutable tensor; Python int -> int64, float -> float64 unless ``dtype`` says otherwise."""
    return Tensor(np.array(as_array(value, dtype), copy=True))


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
