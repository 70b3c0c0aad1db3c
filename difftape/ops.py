"""The operation table: every operation's forward, gradient and shape rule in one place.

Each entry of ``OPS`` is an :class:`Op`: its numpy forward, one vector-Jacobian
product (VJP) per tensor input, a static shape rule and a static dtype rule. The
engine (``tape.py``), the compiler, the symbolic differentiator and the docs all read
this one table, so adding an operation is one ``_op(...)`` call here.

A VJP is written once, against a namespace ``F`` of functions named like the ops:
``vjp(F, g, ans, *inputs, **params)``. The tape runs it with ``F`` = plain numpy
(first derivatives, fast) or ``F`` = difftape's own recorded ops (when an outer tape
is recording, which gives higher derivatives). Arithmetic operators in a VJP work
in both worlds. A VJP returns the gradient in the broadcast shape; the tape sums it
down to each input's shape.

Conventions at kinks (documented in the README and tested):
- ``abs``, ``sign``, ``relu`` at 0: slope 0 (``sign(0) == 0``).
- ``max``/``min`` reductions and ``maximum``/``minimum``: tied elements share the
  gradient equally (so the total is preserved).
- ``clip``: the gradient passes to ``x`` where ``lo <= x <= hi`` (bounds inclusive).
- ``norm`` and ``std`` at a point where they are 0: gradient 0 (a subgradient).
- ``power`` w.r.t. the exponent at base 0: 0; ``x**0`` has slope 0 everywhere.
- ``floor``, ``ceil``, ``round``, ``sign``, ``floor_divide``: zero gradient; comparisons
  and logical ops: no gradient at all (unconnected).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import numpy as np

Shape = tuple[int, ...]


class Op:
    """One operation: numpy forward, per-input VJPs, static shape and dtype rules.

    A plain class with slots rather than a dataclass: the table is built at import time
    on every start of the command line, and the engine reads these attributes in its
    hot path (``forward``, ``vjps``, ``variadic``, ``elementwise``).
    """

    __slots__ = ("name", "forward", "vjps", "args", "params", "kind", "shape", "dtype", "doc", "elementwise",
                 "variadic", "special", "fast")

    def __init__(
        self,
        name: str,
        forward: Callable[..., Any],
        # one VJP per tensor input (a variadic op: one factory, position -> VJP); None: no gradient at all
        vjps: tuple[Callable[..., Any] | None, ...] | None,
        args: tuple[str, ...],  # tensor inputs in order; ("*xs",) for a sequence of tensors
        params: tuple[tuple[str, Any], ...],  # static keyword parameters with defaults
        kind: str,
        shape: Callable[..., Shape],
        dtype: Callable[..., np.dtype],
        doc: str = "",
        elementwise: bool = False,
    ) -> None:
        self.name, self.forward, self.vjps, self.args, self.params = name, forward, vjps, args, params
        self.kind, self.shape, self.dtype, self.doc, self.elementwise = kind, shape, dtype, doc, elementwise
        self.variadic = args == ("*xs",)
        self.special = name == "where"  # the tape's backward pass takes its general path for it (masks)
        # the forward for when a numpy value is among the inputs (``tape.unary``/``tape.binary`` know it):
        # Python's operator, which *is* numpy's ufunc then, without the ufunc call's overhead on scalars
        self.fast = forward

    def __repr__(self) -> str:
        return f"<Op {self.name} ({self.kind})>"


OPS: dict[str, Op] = {}

# ----------------------------------------------------------------------------------------
# static rules


def shape_of(x: Any) -> Shape:
    """Shape of an array, tensor, symbolic expression or Python number."""
    s = getattr(x, "shape", None)
    return tuple(s) if s is not None else ()


def _broadcast(*shapes: Shape, **_: Any) -> Shape:
    return tuple(np.broadcast_shapes(*shapes))


_PROBE = {int: 1, float: 1.0, bool: True}


def _probe_value(dt: Any) -> Any:
    return _PROBE[dt] if dt in _PROBE else np.ones((), dtype=dt)


def _probe(forward: Callable[..., Any]) -> Callable[..., np.dtype]:
    """dtype rule that runs the forward on 0-d values of the input dtypes (exact numpy promotion).

    An input dtype may be a Python type (int/float/bool) for a weakly-typed literal.
    """

    def rule(*dtypes: Any, **_: Any) -> np.dtype:
        with np.errstate(all="ignore"):
            return np.asarray(forward(*(_probe_value(d) for d in dtypes))).dtype

    return rule


def _np_dtype(d: Any) -> np.dtype:
    return np.asarray(_probe_value(d)).dtype


def _probe_on(forward: Callable[..., Any], *shapes: Shape) -> Callable[..., np.dtype]:
    """dtype rule that runs ``forward`` on ones of the given shapes (ops that need matrices)."""

    def rule(*dtypes: Any, **_: Any) -> np.dtype:
        arrays = [np.ones(s, dtype=_np_dtype(d)) for s, d in zip(shapes, dtypes)]
        with np.errstate(all="ignore"):
            return np.asarray(forward(*arrays)).dtype

    return rule


def _first_dtype(*dtypes: Any, **_: Any) -> np.dtype:
    return _np_dtype(dtypes[0])


def _result_dtype(*dtypes: Any, **_: Any) -> np.dtype:
    return np.result_type(*(_probe_value(d) for d in dtypes))


def _float_result(*dtypes: Any, **_: Any) -> np.dtype:
    dt = _result_dtype(*dtypes)
    return dt if dt.kind == "f" else np.dtype(np.float64)


def normalize_axis(axis: Any, ndim: int) -> tuple[int, ...]:
    """Axis (None, int or tuple, negatives allowed) as a sorted tuple of non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        a = int(a)
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of bounds for an array of dimension {ndim}")
        out.append(a % ndim if ndim else 0)
    if len(set(out)) != len(out):
        raise ValueError(f"repeated axis in {axis}")
    return tuple(sorted(out))


def _reduce_shape(shape: Shape, axis: Any = None, keepdims: bool = False, **_: Any) -> Shape:
    axes = normalize_axis(axis, len(shape))
    if keepdims:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def _same_shape(shape: Shape, *_: Any, **__: Any) -> Shape:
    return shape


# ----------------------------------------------------------------------------------------
# registration


def _op(
    name: str,
    forward: Callable[..., Any],
    *vjps: Callable[..., Any] | None,
    args: tuple[str, ...] | None = None,
    params: tuple[tuple[str, Any], ...] = (),
    kind: str = "elementwise",
    shape: Callable[..., Shape] | None = None,
    dtype: Callable[..., np.dtype] | None = None,
    nograd: int = 0,
    doc: str = "",
    fast: Callable[..., Any] | None = None,
) -> Op:
    """Register an op. ``vjps`` one per input; ``nograd=N`` declares N inputs and no gradient."""
    if args is None:
        n = nograd or len(vjps)
        args = ("x",) if n == 1 else ("x1", "x2", "x3")[:n] if name != "where" else ("condition", "x", "y")
    if shape is None:
        shape = {"elementwise": _broadcast, "compare": _broadcast, "reduction": _reduce_shape}.get(kind, _same_shape)
    if dtype is None:
        dtype = _probe(forward) if kind in ("elementwise", "compare", "reduction") else _first_dtype
    op = Op(
        name=name,
        forward=forward,
        vjps=tuple(vjps) if vjps else None,
        args=args,
        params=params,
        kind=kind,
        shape=shape,
        dtype=dtype,
        doc=doc,
        elementwise=kind == "elementwise",
    )
    if fast is not None:
        op.fast = fast
    OPS[name] = op
    return op


def _zero(F: Any, g: Any, y: Any, *xs: Any, **_: Any) -> Any:
    return F.zeros_like(g)


# ----------------------------------------------------------------------------------------
# elementwise forwards that numpy lacks or that need care


def _sigmoid(x: Any) -> Any:
    # exp(-log(1 + exp(-x))): accurate in relative terms and finite for any x.
    return np.exp(-np.logaddexp(0.0, np.negative(x)))


def _relu(x: Any) -> Any:
    return np.maximum(x, 0)


def _softplus(x: Any) -> Any:
    return np.logaddexp(0.0, x)


# Forwards of the arithmetic operators. numpy's scalar types have fast operators (scalar math
# ~0.1 us) while a ufunc call on a scalar costs ~1-2 us; with a numpy operand the operator *is*
# the ufunc (same loops, promotion and errstate), so the result is identical. Two Python
# numbers go through the ufunc so that they follow numpy's rules (int64 overflow, 1/0 = inf).
_NUMPY = (np.ndarray, np.generic)


def _add(a: Any, b: Any) -> Any:
    return a + b if isinstance(a, _NUMPY) or isinstance(b, _NUMPY) else np.add(a, b)


def _subtract(a: Any, b: Any) -> Any:
    return a - b if isinstance(a, _NUMPY) or isinstance(b, _NUMPY) else np.subtract(a, b)


def _multiply(a: Any, b: Any) -> Any:
    return a * b if isinstance(a, _NUMPY) or isinstance(b, _NUMPY) else np.multiply(a, b)


def _divide(a: Any, b: Any) -> Any:
    return a / b if isinstance(a, _NUMPY) or isinstance(b, _NUMPY) else np.true_divide(a, b)


def _negative(x: Any) -> Any:
    return -x if isinstance(x, _NUMPY) else np.negative(x)


def _positive(x: Any) -> Any:
    return +x if isinstance(x, _NUMPY) else np.positive(x)


def _int_like(v: Any) -> bool:
    """Whether v has an integer dtype (cheaply: this runs on every power)."""
    t = type(v)
    if t is int:
        return True
    if t is float or t is bool:
        return False
    dt = getattr(v, "dtype", None)
    return dt.kind in "iu" if isinstance(dt, np.dtype) else bool(np.issubdtype(np.result_type(v), np.integer))


def _power(a: Any, b: Any) -> Any:
    # Python semantics: an integer to a negative integer power is a float (2**-1 == 0.5).
    if _int_like(a) and _int_like(b) and np.any(np.asarray(b) < 0):
        return np.power(np.asarray(a, dtype=np.float64), b)
    return np.power(a, b)


def _tie_share(F: Any, a: Any, b: Any) -> Any:
    """1 where a wins, 0.5 on a tie, 0 where b wins (maximum's gradient for a)."""
    return F.where(a > b, 1.0, F.where(a == b, 0.5, 0.0))


def _safe(F: Any, d: Any) -> Any:
    """The denominator d with exact zeros replaced by 1 (for gradients defined as 0 there)."""
    return F.where(d == 0, 1.0, d)


def _pow_base_vjp(F: Any, g: Any, y: Any, a: Any, b: Any) -> Any:
    if type(b) in (int, float) and b != 0:
        # A literal exponent (x**2): the slope is b*x**(b-1), with no `where` passes over the
        # array, in the base's own dtype; for b == 2, 2*x is exactly 2*x**1.
        return g * (b * a if b == 2 else b * a ** (b - 1))
    return g * F.where(b == 0, 0.0, b * a ** F.where(b == 0, 1.0, b - 1))


def _pow_exp_vjp(F: Any, g: Any, y: Any, a: Any, b: Any) -> Any:
    return g * y * F.log(_safe(F, a))


_LN2, _LN10 = math.log(2.0), math.log(10.0)

# unary elementwise: (name, forward, vjp)
_op("negative", _negative, lambda F, g, y, x: -g, fast=operator.neg)
_op("positive", _positive, lambda F, g, y, x: g, fast=operator.pos)
_op("abs", np.abs, lambda F, g, y, x: g * F.sign(x))
_op("sign", np.sign, _zero)
_op("sqrt", np.sqrt, lambda F, g, y, x: g * 0.5 / y)
_op("square", np.square, lambda F, g, y, x: g * 2 * x)
_op("exp", np.exp, lambda F, g, y, x: g * y)
_op("expm1", np.expm1, lambda F, g, y, x: g * (y + 1))
_op("log", np.log, lambda F, g, y, x: g / x)
_op("log1p", np.log1p, lambda F, g, y, x: g / (x + 1))
_op("log2", np.log2, lambda F, g, y, x: g / (x * _LN2))
_op("log10", np.log10, lambda F, g, y, x: g / (x * _LN10))
_op("sin", np.sin, lambda F, g, y, x: g * F.cos(x))
_op("cos", np.cos, lambda F, g, y, x: -g * F.sin(x))
_op("tan", np.tan, lambda F, g, y, x: g * (1 + y * y))
_op("arcsin", np.arcsin, lambda F, g, y, x: g / F.sqrt(1 - x * x))
_op("arccos", np.arccos, lambda F, g, y, x: -g / F.sqrt(1 - x * x))
_op("arctan", np.arctan, lambda F, g, y, x: g / (1 + x * x))
_op("sinh", np.sinh, lambda F, g, y, x: g * F.cosh(x))
_op("cosh", np.cosh, lambda F, g, y, x: g * F.sinh(x))
_op("tanh", np.tanh, lambda F, g, y, x: g * (1 - y * y))
_op("arcsinh", np.arcsinh, lambda F, g, y, x: g / F.sqrt(x * x + 1))
_op("arccosh", np.arccosh, lambda F, g, y, x: g / F.sqrt(x * x - 1))
_op("arctanh", np.arctanh, lambda F, g, y, x: g / (1 - x * x))
_op("sigmoid", _sigmoid, lambda F, g, y, x: g * y * (1 - y))
_op("relu", _relu, lambda F, g, y, x: F.where(x > 0, g, 0.0))
_op("softplus", _softplus, lambda F, g, y, x: g * F.sigmoid(x))
_op("floor", np.floor, _zero)
_op("ceil", np.ceil, _zero)
_op("round", np.round, _zero, params=(("decimals", 0),))

# binary elementwise
_op("add", _add, lambda F, g, y, a, b: g, lambda F, g, y, a, b: g, fast=operator.add)
_op("subtract", _subtract, lambda F, g, y, a, b: g, lambda F, g, y, a, b: -g, fast=operator.sub)
_op("multiply", _multiply, lambda F, g, y, a, b: g * b, lambda F, g, y, a, b: g * a, fast=operator.mul)
_op("divide", _divide, lambda F, g, y, a, b: g / b, lambda F, g, y, a, b: -g * y / b, fast=operator.truediv)
_op("floor_divide", np.floor_divide, _zero, _zero)
_op("remainder", np.remainder, lambda F, g, y, a, b: g, lambda F, g, y, a, b: -g * F.floor_divide(a, b))
_op("power", _power, _pow_base_vjp, _pow_exp_vjp)
_op("maximum", np.maximum, lambda F, g, y, a, b: g * _tie_share(F, a, b), lambda F, g, y, a, b: g * _tie_share(F, b, a))
_op("minimum", np.minimum, lambda F, g, y, a, b: g * _tie_share(F, b, a), lambda F, g, y, a, b: g * _tie_share(F, a, b))
_op(
    "arctan2",
    np.arctan2,
    lambda F, g, y, a, b: g * b / (a * a + b * b),
    lambda F, g, y, a, b: -g * a / (a * a + b * b),
)
_op(
    "where",
    np.where,
    None,
    lambda F, g, y, c, a, b: F.where(c, g, 0.0),
    lambda F, g, y, c, a, b: F.where(c, 0.0, g),
    dtype=lambda c, a, b, **_: _result_dtype(a, b),
)
_op(
    "clip",
    np.clip,
    lambda F, g, y, x, lo, hi: F.where(x < lo, 0.0, F.where(x > hi, 0.0, g)),
    # numpy's clip is minimum(maximum(x, lo), hi): where lo > hi the value is hi, so hi takes the gradient
    lambda F, g, y, x, lo, hi: F.where(lo > hi, 0.0, F.where(x < lo, g, 0.0)),
    lambda F, g, y, x, lo, hi: F.where(lo > hi, g, F.where(x < lo, 0.0, F.where(x > hi, g, 0.0))),
    args=("x", "lo", "hi"),
)

# no gradient: comparisons, logic, tests (their results are unconnected)
for _name, _fn in [
    ("less", np.less),
    ("less_equal", np.less_equal),
    ("greater", np.greater),
    ("greater_equal", np.greater_equal),
    ("equal", np.equal),
    ("not_equal", np.not_equal),
    ("logical_and", np.logical_and),
    ("logical_or", np.logical_or),
]:
    _op(_name, _fn, nograd=2, kind="compare")
for _name, _fn in [
    ("logical_not", np.logical_not),
    ("isfinite", np.isfinite),
    ("isnan", np.isnan),
    ("isinf", np.isinf),
]:
    _op(_name, _fn, nograd=1, kind="compare")
_op("stop_gradient", lambda x: x, nograd=1, kind="shape", doc="the value, with no gradient flowing through")

# ----------------------------------------------------------------------------------------
# reductions (axis: None, int or tuple; keepdims)

_AXES = (("axis", None), ("keepdims", False))


def _keep(F: Any, g: Any, x: Any, axis: Any, keepdims: bool) -> Any:
    """Reshape a reduced gradient so it broadcasts against x (re-insert the reduced axes)."""
    if keepdims:
        return g
    return F.reshape(g, _reduce_shape(shape_of(x), axis, True))


def _count(x: Any, axis: Any) -> int:
    shape = shape_of(x)
    return int(np.prod([shape[a] for a in normalize_axis(axis, len(shape))], dtype=np.int64))


def _sum_vjp(F: Any, g: Any, y: Any, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    return F.broadcast_to(_keep(F, g, x, axis, keepdims), shape_of(x))


def _mean_vjp(F: Any, g: Any, y: Any, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    return F.broadcast_to(_keep(F, g, x, axis, keepdims) / _count(x, axis), shape_of(x))


def _prod_vjp(F: Any, g: Any, y: Any, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    # d/dx_i = product of the others, without dividing by zero. Non-zero x_i: (product of the
    # non-zeros) / x_i * (product of the zeros), which is 0 when there is a zero yet keeps its
    # slope in that zero (so second derivatives are right too). A zero x_i: the product of the
    # non-zeros when it is the only zero, else 0.
    zero = x == 0
    nonzero_prod = F.prod(F.where(zero, 1.0, x), axis=axis, keepdims=True)
    zero_prod = F.prod(F.where(zero, x, 1.0), axis=axis, keepdims=True)
    nzeros = F.sum(F.where(zero, 1.0, 0.0), axis=axis, keepdims=True)
    at_zero = F.where(nzeros == 1, nonzero_prod, 0.0)
    others = F.where(zero, at_zero, nonzero_prod / _safe(F, x) * zero_prod)
    return _keep(F, g, x, axis, keepdims) * others


def _extreme_vjp(F: Any, g: Any, y: Any, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    hit = F.where(x == _keep(F, y, x, axis, keepdims), 1.0, 0.0)
    return _keep(F, g, x, axis, keepdims) * hit / F.sum(hit, axis=axis, keepdims=True)


def _var_vjp(F: Any, g: Any, y: Any, x: Any, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Any:
    centered = x - F.mean(x, axis=axis, keepdims=True)
    return _keep(F, g, x, axis, keepdims) * (2.0 / (_count(x, axis) - ddof)) * centered


def _std_vjp(F: Any, g: Any, y: Any, x: Any, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Any:
    centered = x - F.mean(x, axis=axis, keepdims=True)
    yk = _keep(F, y, x, axis, keepdims)
    return _keep(F, g, x, axis, keepdims) * centered / ((_count(x, axis) - ddof) * _safe(F, yk))


def _logsumexp(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    x = np.asarray(x)
    m = np.max(x, axis=axis, keepdims=True) if x.size else np.zeros((1,) * x.ndim)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.reshape(out, _reduce_shape(x.shape, axis, False))


def _logsumexp_vjp(F: Any, g: Any, y: Any, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    return _keep(F, g, x, axis, keepdims) * F.exp(x - _keep(F, y, x, axis, keepdims))


def _norm_kind(ndim: int, ord: Any = None, axis: Any = None) -> str:
    """'l2' (2-norm / Frobenius over the reduced axes), 'inf', or 'p'; numpy's meaning, else ValueError."""
    naxes = len(normalize_axis(axis, ndim))
    if ord is None or ord == "fro":
        return "l2"
    vector = naxes == 1 and (axis is not None or ndim == 1)
    if vector and not isinstance(ord, str):
        if ord in (np.inf, -np.inf):
            return "inf"
        if ord == 2:
            return "l2"
        if isinstance(ord, (int, float)) and ord > 0:
            return "p"
    raise ValueError(
        f"norm: ord={ord!r} over {naxes} ax{'i' if naxes == 1 else 'e'}s is not supported: vector norms "
        "(one axis) take any ord > 0, inf or -inf; matrix norms only ord=None or 'fro'"
    )


def _norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
    x = np.asarray(x)
    kind = _norm_kind(x.ndim, ord, axis)
    if kind == "l2":
        # 2-norm of a vector / Frobenius norm, over any axes: one reduction, differentiable below.
        return np.sqrt(np.sum(np.square(np.abs(x)), axis=axis, keepdims=keepdims))
    if kind == "inf":
        red = np.max if ord > 0 else np.min
        return red(np.abs(x), axis=axis, keepdims=keepdims)
    return np.sum(np.abs(x) ** ord, axis=axis, keepdims=keepdims) ** (1.0 / ord)


def _norm_shape(shape: Shape, ord: Any = None, axis: Any = None, keepdims: bool = False, **_: Any) -> Shape:
    _norm_kind(len(shape), ord, axis)
    return _reduce_shape(shape, axis, keepdims)


def _norm_vjp(F: Any, g: Any, y: Any, x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
    gk, yk = _keep(F, g, x, axis, keepdims), _keep(F, y, x, axis, keepdims)
    kind = _norm_kind(len(shape_of(x)), ord, axis)
    if kind == "inf":
        hit = F.where(F.abs(x) == yk, 1.0, 0.0)
        return gk * F.sign(x) * hit / F.sum(hit, axis=axis, keepdims=True)
    if kind == "l2":
        return gk * x / _safe(F, yk)
    p = float(ord)
    # sign(x) * |x|**(p-1), with slope 0 at x == 0 as abs has (for p < 1, |0|**(p-1) is inf: sign 0 * inf = nan)
    return gk * F.sign(x) * F.abs(x if p >= 1 else _safe(F, x)) ** (p - 1) / _safe(F, yk ** (p - 1))


def _shifted(x: Any, axis: int) -> Any:
    """x minus its (finite) maximum along axis: exp of it cannot overflow."""
    x = np.asarray(x)
    m = np.max(x, axis=axis, keepdims=True) if x.size else np.zeros((1,) * x.ndim)
    return x - np.where(np.isfinite(m), m, 0.0)


def _softmax(x: Any, axis: int = -1) -> Any:
    e = np.exp(_shifted(x, axis))
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(x: Any, axis: int = -1) -> Any:
    z = _shifted(x, axis)
    with np.errstate(divide="ignore"):
        return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


def _float_probe(dt: Any, **_: Any) -> np.dtype:
    return _float_result(dt)


_op("sum", np.sum, _sum_vjp, kind="reduction", params=_AXES)
_op("mean", np.mean, _mean_vjp, kind="reduction", params=_AXES)
_op("prod", np.prod, _prod_vjp, kind="reduction", params=_AXES)
_op("max", np.max, _extreme_vjp, kind="reduction", params=_AXES)
_op("min", np.min, _extreme_vjp, kind="reduction", params=_AXES)
_op("var", np.var, _var_vjp, kind="reduction", params=_AXES + (("ddof", 0),))
_op("std", np.std, _std_vjp, kind="reduction", params=_AXES + (("ddof", 0),))
_op("logsumexp", _logsumexp, _logsumexp_vjp, kind="reduction", params=_AXES, dtype=_float_probe)
_op(
    "norm",
    _norm,
    _norm_vjp,
    kind="reduction",
    params=(("ord", None), ("axis", None), ("keepdims", False)),
    shape=_norm_shape,
    dtype=_float_probe,
)
_op(
    "softmax",
    _softmax,
    lambda F, g, y, x, axis=-1: y * (g - F.sum(g * y, axis=axis, keepdims=True)),
    kind="normalize",
    params=(("axis", -1),),
    dtype=_float_probe,
)
_op(
    "log_softmax",
    _log_softmax,
    lambda F, g, y, x, axis=-1: g - F.exp(y) * F.sum(g, axis=axis, keepdims=True),
    kind="normalize",
    params=(("axis", -1),),
    dtype=_float_probe,
)

# ----------------------------------------------------------------------------------------
# linear algebra


def _matmul_shape(a: Shape, b: Shape, **_: Any) -> Shape:
    if not a or not b:
        raise ValueError("matmul: operands must have at least one dimension (use * for scalars)")
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        raise ValueError(f"matmul: inner dimensions differ: {a} @ {b} ({a2[-1]} != {b2[-2]})")
    out = tuple(np.broadcast_shapes(a2[:-2], b2[:-2])) + (a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


def _swap(F: Any, x: Any) -> Any:
    n = len(shape_of(x))
    return F.transpose(x, tuple(range(n - 2)) + (n - 1, n - 2))


def _matmul_vjp_a(F: Any, g: Any, y: Any, a: Any, b: Any) -> Any:
    na, nb = len(shape_of(a)), len(shape_of(b))
    if na == 1 and nb == 1:
        return g * b
    if nb == 1:  # (..., n, k) @ (k,) -> (..., n)
        return F.expand_dims(g, -1) * b
    if na == 1:  # (k,) @ (..., k, m) -> (..., m): sum the batch away later via unbroadcast
        return F.matmul(b, F.expand_dims(g, -1))[..., 0]
    return F.matmul(g, _swap(F, b))


def _matmul_vjp_b(F: Any, g: Any, y: Any, a: Any, b: Any) -> Any:
    na, nb = len(shape_of(a)), len(shape_of(b))
    if na == 1 and nb == 1:
        return g * a
    if na == 1:  # (k,) @ (..., k, m) -> (..., m)
        return F.expand_dims(a, -1) * F.expand_dims(g, -2)
    if nb == 1:  # (..., n, k) @ (k,) -> (..., n)
        return F.matmul(F.expand_dims(g, -2), a)[..., 0, :]
    return F.matmul(_swap(F, a), g)


def _check_2d(name: str, *shapes: Shape) -> None:
    for s in shapes:
        if len(s) > 2:
            raise ValueError(f"{name}: operands of at most 2 dimensions are supported (got {s}); use matmul")


def _dot_shape(a: Shape, b: Shape, **_: Any) -> Shape:
    _check_2d("dot", a, b)
    return _broadcast(a, b) if not a or not b else _matmul_shape(a, b)


def _dot(a: Any, b: Any) -> Any:
    _check_2d("dot", np.shape(a), np.shape(b))
    return np.dot(a, b)


def _dot_vjp_a(F: Any, g: Any, y: Any, a: Any, b: Any) -> Any:
    if not shape_of(a) or not shape_of(b):  # dot with a scalar is a product
        return g * b
    return _matmul_vjp_a(F, g, y, a, b)


def _dot_vjp_b(F: Any, g: Any, y: Any, a: Any, b: Any) -> Any:
    if not shape_of(a) or not shape_of(b):
        return g * a
    return _matmul_vjp_b(F, g, y, a, b)


def _outer(a: Any, b: Any) -> Any:
    return np.outer(a, b)


def _sq_shape(name: str, a: Shape) -> None:
    if len(a) < 2 or a[-1] != a[-2]:
        raise ValueError(f"{name}: needs a square matrix (or a stack of them), got shape {a}")


def _inv_shape(a: Shape, **_: Any) -> Shape:
    _sq_shape("inv", a)
    return a


def _det_shape(a: Shape, **_: Any) -> Shape:
    _sq_shape("det", a)
    return a[:-2]


def _solve_shape(a: Shape, b: Shape, **_: Any) -> Shape:
    _sq_shape("solve", a)
    if len(b) == 1:
        if b[0] != a[-1] or len(a) != 2:
            raise ValueError(f"solve: shapes {a} and {b} do not fit (need b of length {a[-1]})")
        return b
    if len(b) < 2 or b[-2] != a[-1]:
        raise ValueError(f"solve: shapes {a} and {b} do not fit (b needs {a[-1]} rows)")
    return tuple(np.broadcast_shapes(a[:-2], b[:-2])) + b[-2:]


def _solve_vjp_a(F: Any, g: Any, y: Any, a: Any, b: Any) -> Any:
    gb = F.solve(_swap(F, a), g)
    if len(shape_of(b)) == 1:
        return -F.expand_dims(gb, -1) * F.expand_dims(y, -2)
    return -F.matmul(gb, _swap(F, y))


def _trace_shape(a: Shape, **_: Any) -> Shape:
    if len(a) != 2:
        raise ValueError(f"trace: needs a 2-d matrix, got shape {a}")
    return ()


def _diag_shape(a: Shape, k: int = 0, **_: Any) -> Shape:
    if len(a) == 1:
        return (a[0] + abs(k),) * 2
    if len(a) == 2:
        return (max(0, min(a[0], a[1] - k) if k >= 0 else min(a[0] + k, a[1])),)
    raise ValueError(f"diag: needs a 1-d or 2-d array, got shape {a}")


def _diag_vjp(F: Any, g: Any, y: Any, x: Any, k: int = 0) -> Any:
    shape = shape_of(x)
    if len(shape) == 1:  # y is the matrix with x on diagonal k: read that diagonal back
        return F.diag(g, k=k)
    # y is diagonal k of a (possibly non-square) matrix: put g back there
    n = _diag_shape(shape, k=k)[0]
    rows = np.arange(n) + max(0, -k)
    return F.scatter(g, index=(rows, rows + k), shape=shape)


def _outer_vjp_a(F: Any, g: Any, y: Any, a: Any, b: Any) -> Any:
    return F.reshape(F.matmul(g, F.reshape(b, (-1,))), shape_of(a))


def _outer_vjp_b(F: Any, g: Any, y: Any, a: Any, b: Any) -> Any:
    return F.reshape(F.matmul(F.reshape(a, (-1,)), g), shape_of(b))


def _size(s: Shape) -> int:
    return int(np.prod(s, dtype=np.int64))


_op("matmul", np.matmul, _matmul_vjp_a, _matmul_vjp_b, args=("x1", "x2"), kind="linalg", shape=_matmul_shape,
    dtype=_result_dtype)
_op("dot", _dot, _dot_vjp_a, _dot_vjp_b, args=("a", "b"), kind="linalg", shape=_dot_shape,
    dtype=_result_dtype)
_op("outer", _outer, _outer_vjp_a, _outer_vjp_b, args=("a", "b"), kind="linalg",
    shape=lambda a, b, **_: (_size(a), _size(b)), dtype=_result_dtype)
_op("trace", np.trace, lambda F, g, y, x: g * F.eye(shape_of(x)[0], shape_of(x)[1]), kind="linalg",
    shape=_trace_shape, dtype=_probe_on(np.trace, (1, 1)))
_op("inv", np.linalg.inv, lambda F, g, y, x: -F.matmul(_swap(F, y), F.matmul(g, _swap(F, y))), kind="linalg",
    shape=_inv_shape, dtype=_probe_on(np.linalg.inv, (1, 1)))
def _cofactors(x: np.ndarray) -> np.ndarray:
    """The cofactor matrix (d det / dx), singular matrices included: from the SVD x = U S Vh,
    cof = det(U) det(Vh) U diag(prod of the other singular values) Vh."""
    u, s, vh = np.linalg.svd(x)
    n = s.shape[-1]
    ones = np.ones(s.shape[:-1] + (1,), dtype=s.dtype)
    before = np.cumprod(np.concatenate([ones, s[..., :-1]], axis=-1), axis=-1)
    after = np.cumprod(np.concatenate([ones, s[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    others = before * after if n else s
    sign = np.linalg.det(u) * np.linalg.det(vh)
    return sign[..., None, None] * np.matmul(u * others[..., None, :], vh)


def _det_vjp(F: Any, g: Any, y: Any, x: Any) -> Any:
    if isinstance(x, np.ndarray):  # first order (numpy): singular matrices have a gradient too
        with np.errstate(all="ignore"):
            try:
                cof = y[..., None, None] * np.swapaxes(np.linalg.inv(x), -1, -2)
            except np.linalg.LinAlgError:
                cof = None
        if cof is None or not np.all(np.isfinite(cof)) or np.any(y == 0):
            cof = _cofactors(x)
        return F.expand_dims(F.expand_dims(g, -1), -1) * cof
    return F.expand_dims(F.expand_dims(g * y, -1), -1) * _swap(F, F.inv(x))


_op("det", np.linalg.det, _det_vjp,
    kind="linalg", shape=_det_shape, dtype=_probe_on(np.linalg.det, (1, 1)))
_op("solve", np.linalg.solve, _solve_vjp_a, lambda F, g, y, a, b: F.solve(_swap(F, a), g), args=("a", "b"),
    kind="linalg", shape=_solve_shape, dtype=_probe_on(np.linalg.solve, (1, 1), (1,)))
_op("diag", np.diag, _diag_vjp, params=(("k", 0),), kind="linalg", shape=_diag_shape)

# ----------------------------------------------------------------------------------------
# shape manipulation


def _resolve_reshape(a: Shape, shape: Any) -> Shape:
    target = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    n = _size(a)
    if target.count(-1) > 1 or any(s < -1 for s in target):
        raise ValueError(f"reshape: invalid shape {target}")
    if -1 in target:
        known = _size(tuple(s for s in target if s != -1))
        if known == 0 or n % known:
            raise ValueError(f"reshape: cannot reshape size {n} (shape {a}) into {target}")
        target = tuple(n // known if s == -1 else s for s in target)
    if _size(target) != n:
        raise ValueError(f"reshape: cannot reshape size {n} (shape {a}) into {target}")
    return target


def _transpose_shape(a: Shape, axes: Any = None, **_: Any) -> Shape:
    if axes is None:
        return a[::-1]
    axes = tuple(int(i) for i in axes)
    in_range = all(-len(a) <= i < len(a) for i in axes)
    if not in_range or sorted(i % len(a) for i in axes) != list(range(len(a))):
        raise ValueError(f"transpose: axes {axes} are not a permutation of the {len(a)} axes of shape {a}")
    return tuple(a[i] for i in axes)


def _transpose_vjp(F: Any, g: Any, y: Any, x: Any, axes: Any = None) -> Any:
    if axes is None:
        return F.transpose(g)
    n = len(shape_of(x))
    return F.transpose(g, tuple(int(i) for i in np.argsort([a % n for a in axes])))


def _concat(*xs: Any, axis: int = 0) -> Any:
    return np.concatenate(xs, axis=axis)


def _concat_shape(*shapes: Shape, axis: int = 0) -> Shape:
    if not shapes:
        raise ValueError("concatenate: needs at least one array")
    nd = len(shapes[0])
    if nd == 0:
        raise ValueError("concatenate: zero-dimensional arrays cannot be concatenated (use stack)")
    ax = normalize_axis(axis, nd)[0]
    for s in shapes:
        if len(s) != nd or any(s[i] != shapes[0][i] for i in range(nd) if i != ax):
            raise ValueError(f"concatenate: shapes {shapes[0]} and {s} differ outside axis {axis}")
    return shapes[0][:ax] + (sum(s[ax] for s in shapes),) + shapes[0][ax + 1:]


def _concat_vjp(i: int) -> Callable[..., Any]:
    def vjp(F: Any, g: Any, y: Any, *xs: Any, axis: int = 0) -> Any:
        nd = len(shape_of(xs[0]))
        ax = normalize_axis(axis, nd)[0]
        start = sum(shape_of(x)[ax] for x in xs[:i])
        index = (slice(None),) * ax + (slice(start, start + shape_of(xs[i])[ax]),)
        return F.getitem(g, index)

    return vjp


def _stack(*xs: Any, axis: int = 0) -> Any:
    # numpy's promotion with Python numbers weak: stack([float32, 1.0]) stays float32
    return np.stack(xs, axis=axis, dtype=np.result_type(*xs))


def _stack_shape(*shapes: Shape, axis: int = 0) -> Shape:
    if not shapes:
        raise ValueError("stack: needs at least one array")
    for s in shapes:
        if s != shapes[0]:
            raise ValueError(f"stack: all arrays must have the same shape, got {shapes[0]} and {s}")
    ax = normalize_axis(axis, len(shapes[0]) + 1)[0]
    return shapes[0][:ax] + (len(shapes),) + shapes[0][ax:]


def _stack_vjp(i: int) -> Callable[..., Any]:
    def vjp(F: Any, g: Any, y: Any, *xs: Any, axis: int = 0) -> Any:
        ax = normalize_axis(axis, len(shape_of(xs[0])) + 1)[0]
        return F.getitem(g, (slice(None),) * ax + (i,))

    return vjp


def _expand_shape(a: Shape, axis: Any = 0, **_: Any) -> Shape:
    axes = normalize_axis(axis, len(a) + (1 if isinstance(axis, (int, np.integer)) else len(tuple(axis))))
    out, it = [], iter(a)
    for i in range(len(a) + len(axes)):
        out.append(1 if i in axes else next(it))
    return tuple(out)


def _squeeze_shape(a: Shape, axis: Any = None, **_: Any) -> Shape:
    if axis is None:
        return tuple(s for s in a if s != 1)
    axes = normalize_axis(axis, len(a))
    for ax in axes:
        if a[ax] != 1:
            raise ValueError(f"squeeze: axis {ax} of shape {a} has size {a[ax]}, not 1")
    return tuple(s for i, s in enumerate(a) if i not in axes)


def _broadcast_to_shape(a: Shape, shape: Any = None, **_: Any) -> Shape:
    target = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    if tuple(np.broadcast_shapes(a, target)) != target:
        raise ValueError(f"broadcast_to: cannot broadcast shape {a} to {target}")
    return target


def _getitem(x: Any, index: Any = ()) -> Any:
    return np.asarray(x)[index]


def _getitem_shape(a: Shape, index: Any = (), **_: Any) -> Shape:
    return np.broadcast_to(np.empty((), dtype=np.int8), a)[index].shape


def _scatter(g: Any, index: Any = (), shape: Shape = ()) -> Any:
    """Zeros of ``shape`` with ``g`` added at ``index`` (the adjoint of indexing)."""
    g = np.asarray(g)
    out = np.zeros(shape, dtype=g.dtype if g.dtype.kind in "fc" else np.float64)
    np.add.at(out, index, g)
    return out


_op("reshape", np.reshape, lambda F, g, y, x, shape=None: F.reshape(g, shape_of(x)), params=(("shape", None),),
    kind="shape", shape=_resolve_reshape)
_op("ravel", np.ravel, lambda F, g, y, x: F.reshape(g, shape_of(x)), kind="shape",
    shape=lambda a, **_: (_size(a),))
_op("transpose", np.transpose, _transpose_vjp, params=(("axes", None),), kind="shape", shape=_transpose_shape)
_op("concatenate", _concat, _concat_vjp, args=("*xs",), params=(("axis", 0),), kind="shape", shape=_concat_shape,
    dtype=_result_dtype)
_op("stack", _stack, _stack_vjp, args=("*xs",), params=(("axis", 0),), kind="shape", shape=_stack_shape,
    dtype=_result_dtype)
_op("expand_dims", np.expand_dims, lambda F, g, y, x, axis=0: F.reshape(g, shape_of(x)), params=(("axis", 0),),
    kind="shape", shape=_expand_shape)
_op("squeeze", np.squeeze, lambda F, g, y, x, axis=None: F.reshape(g, shape_of(x)), params=(("axis", None),),
    kind="shape", shape=_squeeze_shape)
_op("broadcast_to", np.broadcast_to, lambda F, g, y, x, shape=None: g, params=(("shape", None),), kind="shape",
    shape=_broadcast_to_shape)
_op("getitem", _getitem, lambda F, g, y, x, index=(): F.scatter(g, index=index, shape=shape_of(x)),
    params=(("index", ()),), kind="index", shape=_getitem_shape)
_op("scatter", _scatter, lambda F, g, y, x, index=(), shape=(): F.getitem(g, index=index),
    params=(("index", ()), ("shape", ())), kind="index", shape=lambda a, index=(), shape=(), **_: tuple(shape),
    dtype=_float_probe)

def vjp_for(op: Op, i: int) -> Callable[..., Any] | None:
    """The VJP of ``op`` for its i-th tensor input (None: no gradient flows there).

    A variadic op (``args == ("*xs",)``) registers one VJP factory: position -> VJP.
    """
    if op.vjps is None:
        return None
    if op.variadic:
        return op.vjps[0](i)
    return op.vjps[i]


# ----------------------------------------------------------------------------------------
# constructors (no tensor inputs, except full's fill value; never recorded)


def _shape_param(shape: Any) -> Shape:
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)


def _ctor_dtype(*_: Any, dtype: Any = "float64", **__: Any) -> np.dtype:
    return np.dtype(dtype)


def _full(fill_value: Any, shape: Any = (), dtype: Any = None) -> Any:
    return np.full(_shape_param(shape), fill_value, dtype=dtype)


def _arange(start: Any = 0, stop: Any = None, step: Any = 1, dtype: Any = None) -> Any:
    return np.arange(start, stop, step, dtype=dtype) if stop is not None else np.arange(start, dtype=dtype)


def _arange_shape(start: Any = 0, stop: Any = None, step: Any = 1, **_: Any) -> Shape:
    if stop is None:
        start, stop = 0, start
    if step == 0:
        raise ValueError("arange: step must not be zero")
    return (max(0, math.ceil((stop - start) / step)),)


def _arange_dtype(start: Any = 0, stop: Any = None, step: Any = 1, dtype: Any = None, **_: Any) -> np.dtype:
    return np.dtype(dtype) if dtype is not None else np.arange(start, start + step, step).dtype


_DT = ("dtype", "float64")
_op("zeros", lambda shape=(), dtype="float64": np.zeros(_shape_param(shape), dtype), args=(),
    params=(("shape", ()), _DT), kind="constructor", shape=lambda shape=(), **_: _shape_param(shape), dtype=_ctor_dtype)
_op("ones", lambda shape=(), dtype="float64": np.ones(_shape_param(shape), dtype), args=(),
    params=(("shape", ()), _DT), kind="constructor", shape=lambda shape=(), **_: _shape_param(shape), dtype=_ctor_dtype)
_op("eye", lambda N=1, M=None, k=0, dtype="float64": np.eye(N, M, k, dtype=dtype), args=(),
    params=(("N", 1), ("M", None), ("k", 0), _DT), kind="constructor",
    shape=lambda N=1, M=None, **_: (int(N), int(N if M is None else M)), dtype=_ctor_dtype)
_op("arange", _arange, args=(), params=(("start", 0), ("stop", None), ("step", 1), ("dtype", None)),
    kind="constructor", shape=_arange_shape, dtype=_arange_dtype)
_op("linspace", lambda start=0.0, stop=1.0, num=50, dtype="float64": np.linspace(start, stop, int(num), dtype=dtype),
    args=(), params=(("start", 0.0), ("stop", 1.0), ("num", 50), _DT), kind="constructor",
    shape=lambda num=50, **_: (int(num),), dtype=_ctor_dtype)
_op("zeros_like", np.zeros_like, nograd=1, kind="constructor")
_op("ones_like", np.ones_like, nograd=1, kind="constructor")
_op("full", _full, lambda F, g, y, v, shape=(), dtype=None: g, args=("fill_value",),
    params=(("shape", ()), ("dtype", None)), kind="constructor",
    shape=lambda v, shape=(), **_: _broadcast_to_shape(v, shape),
    dtype=lambda v, dtype=None, **_: np.dtype(dtype) if dtype is not None else _np_dtype(v))

# Ops whose VJP only moves, copies or sums the output gradient (no other values): a where-mask
# passes through them to the next elementwise op, where it zeroes the unselected branch's slope.
# The tape and the symbolic differentiator both read this.
MASK_THROUGH = frozenset(
    name for name, op in OPS.items() if op.kind in ("shape", "index") or name in ("sum", "mean", "diag", "full")
)

# Public grouping of op names by family (the docs and the language's function list read this).
FAMILIES: dict[str, list[str]] = {}
for _o in OPS.values():
    FAMILIES.setdefault(_o.kind, []).append(_o.name)
