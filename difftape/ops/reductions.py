"""Reductions over axes (sum, mean, ..., norm, logsumexp) and normalisations along one axis."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from difftape.ops.core import (
    Shape,
    float_dtype_rule,
    normalize_axis,
    reduce_shape,
    register,
    safe,
    shape_of,
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
    return _keep(F, g, x, axis, keepdims) * centered * _per_element(_count(x, axis), ddof) / safe(F, yk)


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
        return gk * x / safe(F, yk)
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


register(
    "sum", np.sum, _sum_vjp, kind="reduction", params=_AXES, analytic=True, mask_through=True, method=True, linear=True
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
)
register("prod", np.prod, _prod_vjp, kind="reduction", params=_AXES, analytic=True, method=True)
register("max", np.max, _extreme_vjp, kind="reduction", params=_AXES, method=True)
register("min", np.min, _extreme_vjp, kind="reduction", params=_AXES, method=True)
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
