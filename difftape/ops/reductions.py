"""Reductions over axes (sum, mean, ..., norm, logsumexp) and normalisations along one axis."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from difftape.ops import batching
from difftape.ops.core import (
    FloatForm,
    Shape,
    float_dtype_rule,
    normalize_axis,
    probe_on,
    reduce_shape,
    register,
    safe,
    shape_of,
    size_of,
)

# ----------------------------------------------------------------------------------------
# reductions (axis: None, int or tuple; keepdims)

_AXES = (("axis", None), ("keepdims", False))


def _keep(F: Any, g: Any, x: Any, axis: Any, keepdims: bool) -> Any:
    """Reshape a reduced gradient so it broadcasts against x (re-insert the reduced axes)."""
    if keepdims:
        return g
    return F.reshape(g, reduce_shape(shape_of(x), axis, True))


def _count(x: Any, axis: Any) -> int:
    shape = shape_of(x)
    return int(np.prod([shape[a] for a in normalize_axis(axis, len(shape))], dtype=np.int64))


def _sum_vjp(F: Any, g: Any, y: Any, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    return F.broadcast_to(_keep(F, g, x, axis, keepdims), shape_of(x))


def _mean_vjp(F: Any, g: Any, y: Any, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    return F.broadcast_to(_keep(F, g, x, axis, keepdims) * _per_element(_count(x, axis)), shape_of(x))


#: Up to this many reduced elements, prod's VJP is written without any value-dependent form (see below).
PROD_EXACT = 256


def _prod_vjp(F: Any, g: Any, y: Any, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    # d/dx_i = the product of the others. Up to PROD_EXACT reduced elements it is computed as such:
    # each x_i replaced by 1 in an n x n copy, and a product over it. That is a polynomial in x with
    # no division, so every derivative of it is exact too, zeros included (the Hessian of prod at
    # [0, 0, 3] is [[0, 3, 0], [3, 0, 0], [0, 0, 0]]). Beyond that size (n**2 work), without dividing
    # by zero: non-zero x_i get (product of the non-zeros) / x_i * (product of the zeros), zero x_i the
    # product of the non-zeros when it is the only zero, else 0: exact first derivatives everywhere,
    # exact second derivatives where at most one element is 0.
    shape = shape_of(x)
    axes = normalize_axis(axis, len(shape))
    n = _count(x, axis)
    if n <= PROD_EXACT:
        kept = tuple(i for i in range(len(shape)) if i not in axes)
        perm = kept + axes
        xt = F.reshape(F.transpose(x, perm), tuple(shape[i] for i in kept) + (n,))
        copies = F.where(np.eye(n, dtype=bool), 1.0, F.expand_dims(xt, -2))
        others = F.reshape(F.prod(copies, axis=-1), tuple(shape[i] for i in perm))
        others = F.transpose(others, tuple(int(i) for i in np.argsort(perm)))
        return _keep(F, g, x, axis, keepdims) * others
    zero = x == 0
    nonzero_prod = F.prod(F.where(zero, 1.0, x), axis=axis, keepdims=True)
    zero_prod = F.prod(F.where(zero, x, 1.0), axis=axis, keepdims=True)
    nzeros = F.sum(F.where(zero, 1.0, 0.0), axis=axis, keepdims=True)
    at_zero = F.where(nzeros == 1, nonzero_prod, 0.0)
    others = F.where(zero, at_zero, nonzero_prod / safe(F, x) * zero_prod)
    return _keep(F, g, x, axis, keepdims) * others


def _per_element(n: int, ddof: int = 0) -> float:
    """1 / (n - ddof), numpy's way: with no degrees of freedom left the value is inf or nan (numpy
    divides by max(n - ddof, 0)), and the gradient follows it (inf, or nan where the value is 0/0)."""
    d = n - ddof
    return 1.0 / d if d > 0 else math.inf


def _extreme_vjp(F: Any, g: Any, y: Any, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    hit = F.where(x == _keep(F, y, x, axis, keepdims), 1.0, 0.0)
    return _keep(F, g, x, axis, keepdims) * hit / F.sum(hit, axis=axis, keepdims=True)


def _var_vjp(F: Any, g: Any, y: Any, x: Any, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Any:
    centered = x - F.mean(x, axis=axis, keepdims=True)
    return _keep(F, g, x, axis, keepdims) * (2.0 * _per_element(_count(x, axis), ddof)) * centered


def _std_vjp(F: Any, g: Any, y: Any, x: Any, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Any:
    centered = x - F.mean(x, axis=axis, keepdims=True)
    yk = _keep(F, y, x, axis, keepdims)
    # where std is 0 (all values equal): gradient 0, and second derivative 0 (as norm's at 0)
    scaled = F.where(yk == 0, 0.0, centered * _per_element(_count(x, axis), ddof) / safe(F, yk))
    return _keep(F, g, x, axis, keepdims) * scaled


def _logsumexp(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    x = np.asarray(x)
    m = np.max(x, axis=axis, keepdims=True) if x.size else np.zeros((1,) * x.ndim)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.reshape(out, reduce_shape(x.shape, axis, False))


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
    return reduce_shape(shape, axis, keepdims)


def _norm_vjp(F: Any, g: Any, y: Any, x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
    gk, yk = _keep(F, g, x, axis, keepdims), _keep(F, y, x, axis, keepdims)
    kind = _norm_kind(len(shape_of(x)), ord, axis)
    if kind == "inf":
        hit = F.where(F.abs(x) == yk, 1.0, 0.0)
        return gk * F.sign(x) * hit / F.sum(hit, axis=axis, keepdims=True)
    if kind == "l2":
        # 0 where the norm is 0, and so are its derivatives there (abs's convention at its kink): the where
        # keeps x / 1 from giving the Hessian the identity at 0
        return gk * F.where(yk == 0, 0.0, x / safe(F, yk))
    p = float(ord)
    # sign(x) * |x|**(p-1), with slope 0 at x == 0 as abs has (for p < 1, |0|**(p-1) is inf: sign 0 * inf = nan)
    return gk * F.sign(x) * F.abs(x if p >= 1 else safe(F, x)) ** (p - 1) / safe(F, yk ** (p - 1))


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


# on a 0-d value (the only kind the float code has) these reductions are the value itself
_IDENTITY = FloatForm("{0}", exact=True)
_ADDED = FloatForm("({0} + 0.0)", exact=True)  # sum and mean start from 0.0: -0.0 becomes 0.0, as in numpy
register(
    "sum",
    np.sum,
    _sum_vjp,
    kind="reduction",
    params=_AXES,
    analytic=True,
    mask_through=True,
    method=True,
    linear=True,
    pyfloat=_ADDED,
)
register(
    "mean",
    np.mean,
    _mean_vjp,
    kind="reduction",
    params=_AXES,
    analytic=True,
    mask_through=True,
    method=True,
    linear=True,
    pyfloat=_ADDED,
)
register("prod", np.prod, _prod_vjp, kind="reduction", params=_AXES, analytic=True, method=True, pyfloat=_IDENTITY)
register("max", np.max, _extreme_vjp, kind="reduction", params=_AXES, method=True, pyfloat=_IDENTITY)
register("min", np.min, _extreme_vjp, kind="reduction", params=_AXES, method=True, pyfloat=_IDENTITY)
register("var", np.var, _var_vjp, kind="reduction", params=_AXES + (("ddof", 0),))
register("std", np.std, _std_vjp, kind="reduction", params=_AXES + (("ddof", 0),))
register("logsumexp", _logsumexp, _logsumexp_vjp, kind="reduction", params=_AXES, dtype=float_dtype_rule)
register(
    "norm",
    _norm,
    _norm_vjp,
    kind="reduction",
    params=(("ord", None), ("axis", None), ("keepdims", False)),
    shape=_norm_shape,
    dtype=float_dtype_rule,
)
register(
    "softmax",
    _softmax,
    lambda F, g, y, x, axis=-1: y * (g - F.sum(g * y, axis=axis, keepdims=True)),
    kind="normalize",
    params=(("axis", -1),),
    dtype=float_dtype_rule,
)
register(
    "log_softmax",
    _log_softmax,
    lambda F, g, y, x, axis=-1: g - F.exp(y) * F.sum(g, axis=axis, keepdims=True),
    kind="normalize",
    params=(("axis", -1),),
    dtype=float_dtype_rule,
)


# ----------------------------------------------------------------------------------------
# along one axis: cumulative sums and products, the trapezoidal rule


def _one_axis(name: str, shape: Shape, axis: Any) -> int:
    """The one axis an along-axis op works on (a non-negative int); ValueError for anything else."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise ValueError(f"{name}: axis must be an integer, not {axis!r}")
    return normalize_axis(int(axis), len(shape))[0]


def _along(axis: int, items: Any) -> tuple[Any, ...]:
    """An index that applies ``items`` (a slice) along ``axis``."""
    return (slice(None),) * axis + (items,)


def _flip(F: Any, v: Any, axis: int) -> Any:
    return F.getitem(v, index=_along(axis, slice(None, None, -1)))


def _place(F: Any, v: Any, axis: int, start: int, shape: Shape) -> Any:
    """Zeros of ``shape`` with ``v`` written from ``start`` along ``axis`` (the rest stays 0)."""
    return F.scatter(v, index=_along(axis, slice(start, start + shape_of(v)[axis])), shape=tuple(shape))


def _shift(F: Any, v: Any, axis: int, d: int) -> Any:
    """``v`` moved ``d`` places towards the start along ``axis``: element k is v[k + d], 0 past the end."""
    shape = shape_of(v)
    return _place(F, F.getitem(v, index=_along(axis, slice(d, None))), axis, 0, shape)


def _cum_shape(name: str) -> Any:
    def rule(a: Shape, axis: Any = None, **_: Any) -> Shape:
        if axis is None:
            return (size_of(a),)
        _one_axis(name, a, axis)
        return a

    return rule


def _cumsum_vjp(F: Any, g: Any, y: Any, x: Any, axis: Any = None) -> Any:
    # each input adds into every later output: the reversed cumulative sum of g
    if axis is None:
        return F.reshape(_flip(F, F.cumsum(_flip(F, g, 0), axis=0), 0), shape_of(x))
    ax = _one_axis("cumsum", shape_of(x), axis)
    return _flip(F, F.cumsum(_flip(F, g, ax), axis=ax), ax)


def _cumprod_vjp(F: Any, g: Any, y: Any, x: Any, axis: Any = None) -> Any:
    # d/dx_k = y_(k-1) * S_k with S_k = sum_(i>=k) g_i x_(k+1) ... x_i, i.e. S_k = g_k + x_(k+1) S_(k+1):
    # a linear recurrence, solved by a parallel scan (log2(n) rounds of products and sums) rather than
    # by dividing y by x, so zeros in x are exact, and so are the second derivatives through it.
    shape = shape_of(x)
    if axis is None:
        x, ax = F.reshape(x, (size_of(shape),)), 0
    else:
        ax = _one_axis("cumprod", shape, axis)
    n = shape_of(x)[ax]
    if n == 0:
        return F.reshape(g, shape)
    a = _shift(F, x, ax, 1)  # a_k = x_(k+1), 0 at the end
    s = g
    d = 1
    while d < n:
        s = s + a * _shift(F, s, ax, d)
        if 2 * d < n:
            a = a * _shift(F, a, ax, d)
        d *= 2
    # the exclusive product y_(k-1) (1 for k = 0): y moved one place on, plus a 1 in front
    first = F.ones_like(F.getitem(y, index=_along(ax, slice(0, 1))))
    before = _place(F, F.getitem(y, index=_along(ax, slice(0, n - 1))), ax, 1, shape_of(y)) + _place(
        F, first, ax, 0, shape_of(y)
    )
    return F.reshape(s * before, shape)


def _check_dx(dx: Any) -> None:
    if isinstance(dx, bool) or not isinstance(dx, (int, float, np.integer, np.floating)):
        raise ValueError(f"trapezoid: dx must be a number, not {dx!r} (give sample points as x)")


def _trapezoid(y: Any, x: Any = None, dx: Any = 1.0, axis: int = -1) -> Any:
    _check_dx(dx)
    return np.trapezoid(y, x, dx=dx, axis=axis)


def _trap_shape(ys: Shape, xs: Shape | None = None, dx: Any = 1.0, axis: Any = -1, **_: Any) -> Shape:
    if not ys:
        raise ValueError("trapezoid: y must have at least one dimension")
    ax = _one_axis("trapezoid", ys, axis)
    _check_dx(dx)
    out = ys[:ax] + ys[ax + 1 :]
    if xs is None:
        return out
    n = ys[ax]
    if len(xs) == 1:
        if xs[0] != n:
            raise ValueError(f"trapezoid: x has {xs[0]} sample points, but y has {n} along axis {axis}")
        return out
    if len(xs) != len(ys) or xs[ax] != n:
        raise ValueError(
            f"trapezoid: x of shape {xs} does not fit y of shape {ys}: x must be 1-d of length {n} "
            f"or have y's dimensions, with {n} along axis {axis}"
        )
    return tuple(np.broadcast_shapes(xs[:ax] + xs[ax + 1 :], out))


def _trap_setup(y: Any, axis: Any) -> tuple[Shape, int, int, tuple[Any, ...], tuple[Any, ...]]:
    ys = shape_of(y)
    ax = _one_axis("trapezoid", ys, axis)
    return ys, ax, ys[ax], _along(ax, slice(1, None)), _along(ax, slice(None, -1))


def _trap_widths(F: Any, x: Any, ys: Shape, ax: int, hi: Any, lo: Any) -> Any:
    """x's interval widths, aligned with y (a 1-d x lies along the axis, as numpy's trapezoid has it)."""
    if len(shape_of(x)) == 1 and len(ys) > 1:
        x = F.reshape(x, (1,) * ax + (ys[ax],) + (1,) * (len(ys) - ax - 1))
    return F.getitem(x, index=hi) - F.getitem(x, index=lo)


def _trap_vjp_y(F: Any, g: Any, ans: Any, y: Any, x: Any = None, dx: Any = 1.0, axis: Any = -1) -> Any:
    ys, ax, n, hi, lo = _trap_setup(y, axis)
    if n < 2:  # no intervals: the integral is 0 whatever y is
        return F.zeros_like(y)
    gk = F.expand_dims(g, axis=ax)
    if x is None:
        t = F.broadcast_to(gk * (0.5 * dx), shape_of(gk)[:ax] + (n - 1,) + shape_of(gk)[ax + 1 :])
    else:
        t = gk * _trap_widths(F, x, ys, ax, hi, lo) * 0.5
    full = shape_of(t)[:ax] + (n,) + shape_of(t)[ax + 1 :]
    # y_k is in intervals k-1 and k
    return _place(F, t, ax, 0, full) + _place(F, t, ax, 1, full)


def _trap_vjp_x(F: Any, g: Any, ans: Any, y: Any, x: Any, dx: Any = 1.0, axis: Any = -1) -> Any:
    ys, ax, n, hi, lo = _trap_setup(y, axis)
    if n < 2:
        return F.zeros_like(x)
    t = F.expand_dims(g, axis=ax) * ((F.getitem(y, index=hi) + F.getitem(y, index=lo)) * 0.5)
    if len(shape_of(x)) == 1 and len(ys) > 1:  # a 1-d x: its intervals are shared along the other axes
        t = F.sum(t, axis=tuple(i for i in range(len(ys)) if i != ax))
        ax = 0
    full = shape_of(t)[:ax] + (n,) + shape_of(t)[ax + 1 :]
    # width k is x_(k+1) - x_k
    return _place(F, t, ax, 1, full) - _place(F, t, ax, 0, full)


def _trap_batch(apply: Any, B: int, op: Any, node: Any, args: tuple, batched: tuple, shapes: tuple) -> Any:
    """Every operand gets the batch axis in front (a 1-d x is laid along y's axis first)."""
    ys = tuple(shapes[0])
    ax = _one_axis("trapezoid", ys, node.params.get("axis", -1))
    spread = []
    for k, (a, b, s) in enumerate(zip(args, batched, shapes)):
        s = tuple(s)
        if not b:
            a = np.broadcast_to(np.asarray(batching._raw(a)), (B,) + s)
        if k == 1 and len(s) == 1 and len(ys) > 1:
            aligned = (B,) + (1,) * ax + s + (1,) * (len(ys) - ax - 1)
            a = batching._call(apply, "reshape", a, shape=aligned)
        spread.append(a)
    return apply(op, tuple(spread), {**node.params, "axis": ax + 1})


_CUM = (("axis", None),)
register(
    "cumsum",
    np.cumsum,
    _cumsum_vjp,
    kind="normalize",
    params=_CUM,
    shape=_cum_shape("cumsum"),
    dtype=probe_on(np.cumsum, (1,)),
    batch=batching.flat_or_along,
    analytic=True,
    mask_through=True,
    method=True,
    doc="cumulative sum along axis (None: of the flattened array)",
)
register(
    "cumprod",
    np.cumprod,
    _cumprod_vjp,
    kind="normalize",
    params=_CUM,
    shape=_cum_shape("cumprod"),
    dtype=probe_on(np.cumprod, (1,)),
    batch=batching.flat_or_along,
    analytic=True,
    method=True,
    doc="cumulative product along axis (None: of the flattened array); exact gradients with zeros",
)
register(
    "trapezoid",
    _trapezoid,
    _trap_vjp_y,
    _trap_vjp_x,
    args=("y", "x"),
    optional=1,
    kind="normalize",
    params=(("dx", 1.0), ("axis", -1)),
    shape=_trap_shape,
    dtype=probe_on(_trapezoid, (2,), (2,)),
    batch=_trap_batch,
    analytic=True,
    doc="integral of y by the trapezoidal rule along axis: sample points x (1-d or like y), else spacing dx",
)
