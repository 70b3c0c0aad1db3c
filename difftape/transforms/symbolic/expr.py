"""Symbolic expression nodes for ``difftape diff``: immutable, shared, shape-aware.

Nodes are hash-consed (one object per structure), so structural equality is identity:
collecting like terms, common subexpressions and memoised rewrites all work on ``is``
and ``id``, with no deep comparisons (programs may be thousands of nodes deep, and no
function here recurses over an expression). Every node knows its static shape and
dtype, the way the op table's rules compute them, so the VJPs of ``ops.py`` (which
read ``shape_of``) run on expressions unchanged and no rewrite can change a shape.

Node kinds (``op``):

- ``const``: a number broadcast to ``shape`` (``value`` an int, Fraction or float) or an
  array (``value`` an ndarray);
- ``name``: a name of the original program (an input, or a leaf whose value is supplied);
- ``plus``: ``args`` added (like terms already collected; at most one ``const`` term);
- ``times``: ``value`` (a number) times each ``args[i] ** exps[i]`` (numeric exponents);
- any op name of ``ops.OPS`` with its ``params`` (a sorted tuple of (name, value)).

The arithmetic operators build through :mod:`difftape.transforms.symbolic.simplify`, so the
table's VJPs (``g * F.cos(x)``, ``-g * y / b``) produce simplified expressions directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import weakref
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import numpy as np

Shape = tuple[int, ...]
Num = int | Fraction | float

#: Ranks for a readable, deterministic order of factors and terms.
RANK = {"const": 0, "name": 1, "getitem": 2, "power": 3, "times": 5, "plus": 6}
CALL_RANK = 4


def freeze(v: Any) -> Any:
    """A hashable, deterministic stand-in for a parameter value (tuples, slices, arrays, ...)."""
    if isinstance(v, (list, tuple)):
        return ("tuple",) + tuple(freeze(x) for x in v)
    if isinstance(v, slice):
        return ("slice", freeze(v.start), freeze(v.stop), freeze(v.step))
    if v is Ellipsis:
        return ("...",)
    if isinstance(v, np.ndarray):
        return ("array", str(v.dtype), v.shape, v.tobytes())
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.dtype):
        return ("dtype", str(v))
    if isinstance(v, type):
        return ("type", v.__name__)
    return v


def _fingerprint(v: Any) -> bytes:
    """Deterministic bytes for hashing (repr of frozen values; floats by their exact repr)."""
    return repr(freeze(v)).encode()


class Expr:
    """One immutable, interned expression node (see the module docstring for the kinds)."""

    __slots__ = ("op", "args", "params", "value", "exps", "shape", "dtype", "digest", "label", "size", "depth",
                 "free", "ph", "tkey", "__weakref__")

    op: str
    args: tuple[Expr, ...]
    params: tuple[tuple[str, Any], ...]
    value: Any
    exps: tuple[Num, ...]
    shape: Shape
    dtype: Any
    digest: bytes
    label: str
    size: int
    depth: int
    free: bool  # mentions a name (so it is not a constant)
    ph: bool  # contains a placeholder (a value the backward pass did not build)
    tkey: Any  # cached ordering key of this node as a term of a sum

    # -- arithmetic: every operator goes through the simplifying constructors ------------
    def __add__(self, o: Any) -> Expr:
        return _simplify().add(self, o)

    def __radd__(self, o: Any) -> Expr:
        return _simplify().add(o, self)

    def __sub__(self, o: Any) -> Expr:
        return _simplify().subtract(self, o)

    def __rsub__(self, o: Any) -> Expr:
        return _simplify().subtract(o, self)

    def __mul__(self, o: Any) -> Expr:
        return _simplify().multiply(self, o)

    def __rmul__(self, o: Any) -> Expr:
        return _simplify().multiply(o, self)

    def __truediv__(self, o: Any) -> Expr:
        return _simplify().divide(self, o)

    def __rtruediv__(self, o: Any) -> Expr:
        return _simplify().divide(o, self)

    def __floordiv__(self, o: Any) -> Expr:
        return _simplify().call("floor_divide", (self, o), {})

    def __rfloordiv__(self, o: Any) -> Expr:
        return _simplify().call("floor_divide", (o, self), {})

    def __mod__(self, o: Any) -> Expr:
        return _simplify().call("remainder", (self, o), {})

    def __pow__(self, o: Any) -> Expr:
        return _simplify().power(self, o)

    def __rpow__(self, o: Any) -> Expr:
        return _simplify().power(o, self)

    def __matmul__(self, o: Any) -> Expr:
        return _simplify().call("matmul", (self, o), {})

    def __rmatmul__(self, o: Any) -> Expr:
        return _simplify().call("matmul", (o, self), {})

    def __neg__(self) -> Expr:
        return _simplify().multiply(-1, self)

    def __pos__(self) -> Expr:
        return self

    def __lt__(self, o: Any) -> Expr:
        return _simplify().call("less", (self, o), {})

    def __le__(self, o: Any) -> Expr:
        return _simplify().call("less_equal", (self, o), {})

    def __gt__(self, o: Any) -> Expr:
        return _simplify().call("greater", (self, o), {})

    def __ge__(self, o: Any) -> Expr:
        return _simplify().call("greater_equal", (self, o), {})

    def __eq__(self, o: Any) -> Expr:  # type: ignore[override]
        return _simplify().call("equal", (self, o), {})

    def __ne__(self, o: Any) -> Expr:  # type: ignore[override]
        return _simplify().call("not_equal", (self, o), {})

    def __or__(self, o: Any) -> Expr:
        return _simplify().call("logical_or", (self, o), {})

    def __and__(self, o: Any) -> Expr:
        return _simplify().call("logical_and", (self, o), {})

    def __invert__(self) -> Expr:
        return _simplify().call("logical_not", (self,), {})

    def __getitem__(self, index: Any) -> Expr:
        return _simplify().call("getitem", (self,), {"index": index})

    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        raise TypeError("a symbolic expression has no truth value (compare shapes or use is_const)")

    # -- conveniences ------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def T(self) -> Expr:  # noqa: N802 - numpy's name
        return _simplify().call("transpose", (self,), {})

    def param(self, name: str, default: Any = None) -> Any:
        for k, v in self.params:
            if k == name:
                return v
        return default

    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    def is_const(self, value: Any = None) -> bool:
        """A uniform numeric constant (optionally: equal to ``value``)."""
        if self.op != "const" or isinstance(self.value, (np.ndarray, bool)):
            return False
        return value is None or self.value == value

    def __repr__(self) -> str:
        from difftape.transforms.symbolic.printer import to_text

        return f"<Expr {to_text(self)} shape={self.shape}>"


_TABLE: weakref.WeakValueDictionary[tuple, Expr] = weakref.WeakValueDictionary()


class Budget:
    """A bound on the nodes built while it is active (``diff --max-terms``).

    Building nodes is what a derivation's work is made of (each new node is hashed, typed and
    simplified: about 0.1 ms), so their count is a measure of the work that does not depend on
    the machine; expression swell (``sigmoid(sigmoid(x))`` at order 8) shows as a count that
    grows several times an order. Nodes found in the table are free.
    """

    __slots__ = ("built", "limit")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.built = 0


class OverBudget(Exception):  # noqa: N818 - a signal, turned into error[limit] by its catcher
    """More nodes were built than the active :class:`Budget` allows."""

    def __init__(self, budget: Budget) -> None:
        super().__init__(f"more than {budget.limit} expression nodes built")
        self.budget = budget


_BUDGETS: list[Budget] = []


@contextlib.contextmanager
def budget(limit: int | None) -> Iterator[Budget]:
    """Count the nodes built inside the block; past ``limit`` (None: no limit) building raises OverBudget."""
    b = Budget(limit)
    _BUDGETS.append(b)
    try:
        yield b
    finally:
        _BUDGETS.remove(b)


def make(
    op: str,
    args: tuple[Expr, ...] = (),
    params: tuple[tuple[str, Any], ...] = (),
    value: Any = None,
    exps: tuple[Num, ...] = (),
    shape: Shape = (),
    dtype: Any = float,
) -> Expr:
    """The one node with this structure (created on first use). No simplification here."""
    frozen_params = tuple((k, freeze(v)) for k, v in params)
    vkey = freeze(value) if not isinstance(value, (float, int, Fraction)) else (type(value).__name__, value)
    key = (op, tuple(id(a) for a in args), frozen_params, vkey, tuple(_numkey(e) for e in exps), shape,
           _dtkey(dtype))
    hit = _TABLE.get(key)
    if hit is not None:
        return hit
    if _BUDGETS:
        b = _BUDGETS[-1]
        b.built += 1
        if b.limit is not None and b.built > b.limit:
            raise OverBudget(b)
    e = object.__new__(Expr)
    e.op, e.args, e.params, e.value, e.exps, e.shape, e.dtype = op, args, params, value, exps, shape, dtype
    h = hashlib.blake2b(digest_size=10)
    h.update(repr((op, frozen_params, vkey, tuple(_numkey(x) for x in exps), shape, _dtkey(dtype))).encode())
    for a in args:
        h.update(a.digest)
    e.digest = h.digest()
    e.size = min(1 + sum(a.size for a in args), 1 << 40)
    e.depth = 1 + max((a.depth for a in args), default=0)
    e.free = op == "name" or any(a.free for a in args)
    e.ph = op == "placeholder" or any(a.ph for a in args)
    e.tkey = None
    e.label = _label(e)
    _TABLE[key] = e
    return e


def _numkey(x: Num) -> tuple[str, Any]:
    return (type(x).__name__, x)


def _dtkey(dt: Any) -> str:
    return dt.__name__ if isinstance(dt, type) else str(np.dtype(dt))


def _label(e: Expr) -> str:
    """A short readable text for ordering (children's labels are already short)."""
    if e.op == "name":
        return str(e.value)
    if e.op == "const":
        return "#" if isinstance(e.value, np.ndarray) else f"#{float(e.value)!r}"
    inner = ",".join(a.label for a in e.args)
    if e.op == "times":
        inner = ",".join(f"{a.label}^{float(x)!r}" for a, x in zip(e.args, e.exps))
    text = f"{e.op}({inner})"
    return text if len(text) <= 48 else text[:40] + e.digest.hex()[:8]


def sort_key(e: Expr) -> tuple[int, str, bytes]:
    """Deterministic order: constants, names, indexing, powers, calls, products, sums."""
    return (RANK.get(e.op, CALL_RANK), e.label, e.digest)


# ----------------------------------------------------------------------------------------
# numbers


def as_num(v: Any) -> Num | bool:
    """A Python number for a scalar: ints stay ints, floats that are small fractions become Fractions."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        v = int(v)
        return v if abs(v) < _EXACT else _to_float(v)
    if isinstance(v, Fraction):
        if abs(v.numerator) >= _EXACT or v.denominator >= _EXACT:
            return as_num(_to_float(v))  # exact arithmetic stops paying off here
        return v.numerator if v.denominator == 1 else v
    f = float(v)
    if not np.isfinite(f):
        return f
    if f.is_integer() and abs(f) < 2**53:
        return int(f)
    fr = Fraction(f).limit_denominator(1000)
    if float(fr) == f:
        return fr
    return f


_EXACT = 2**53


def _to_float(v: int | Fraction) -> float:
    try:
        return float(v)
    except OverflowError:
        return float("inf") if v > 0 else float("-inf")


def const(value: Any, shape: Shape | None = None, dtype: Any = None) -> Expr:
    """A constant: a number (broadcast to ``shape``) or an array (uniform arrays become fills)."""
    if isinstance(value, np.ndarray) or isinstance(value, (list, tuple)):
        arr = np.asarray(value)
        if shape is not None and arr.shape != tuple(shape):
            arr = np.broadcast_to(arr, tuple(shape))
        dt = arr.dtype if dtype is None else dtype
        if arr.size and np.all(arr == arr.flat[0]) and (arr.dtype.kind != "f" or np.isfinite(arr.flat[0])):
            return const(arr.flat[0], arr.shape, dt)
        if arr.size == 0:
            return const(0, arr.shape, dt)
        return make("const", value=np.array(arr, copy=True), shape=arr.shape, dtype=dt)
    if isinstance(value, np.generic) and dtype is None:
        dtype = value.dtype
    v = as_num(value)
    if dtype is None:
        dtype = bool if isinstance(v, bool) else int if isinstance(v, int) else float
    return make("const", value=v, shape=tuple(shape or ()), dtype=dtype)


def var(name: str, shape: Shape, dtype: Any) -> Expr:
    """A name of the original program (its value is supplied when the derivative runs)."""
    return make("name", value=name, shape=tuple(shape), dtype=dtype)


def lift(v: Any) -> Expr:
    """An expression for a VJP operand: expressions pass, numbers and arrays become constants."""
    if isinstance(v, Expr):
        return v
    return const(v)


# ----------------------------------------------------------------------------------------
# traversal (iterative)


def postorder(roots: list[Expr] | Expr) -> list[Expr]:
    """Every node reachable from ``roots``, children before parents, each once (no recursion)."""
    if isinstance(roots, Expr):
        roots = [roots]
    seen: set[int] = set()
    out: list[Expr] = []
    stack: list[tuple[Expr, bool]] = [(r, False) for r in reversed(roots)]
    while stack:
        node, done = stack.pop()
        if done:
            out.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for a in reversed(node.args):
            if id(a) not in seen:
                stack.append((a, False))
    return out


def _simplify() -> Any:
    from difftape.transforms.symbolic import simplify

    return simplify
