"""Shape and indexing operations: they move values about (where-masks pass through them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from difftape.ops import batching
from difftape.ops.core import (
    Shape,
    float_dtype_rule,
    normalize_axis,
    register,
    result_dtype,
    shape_of,
    size_of,
)

# ----------------------------------------------------------------------------------------
# shape manipulation


def _resolve_reshape(a: Shape, shape: Any) -> Shape:
    target = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    n = size_of(a)
    if target.count(-1) > 1 or any(s < -1 for s in target):
        raise ValueError(f"reshape: invalid shape {target}")
    if -1 in target:
        known = size_of(tuple(s for s in target if s != -1))
        if known == 0 or n % known:
            raise ValueError(f"reshape: cannot reshape size {n} (shape {a}) into {target}")
        target = tuple(n // known if s == -1 else s for s in target)
    if size_of(target) != n:
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
    return shapes[0][:ax] + (sum(s[ax] for s in shapes),) + shapes[0][ax + 1 :]


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


register(
    "reshape",
    np.reshape,
    lambda F, g, y, x, shape=None: F.reshape(g, shape_of(x)),
    params=(("shape", None),),
    kind="shape",
    shape=_resolve_reshape,
    analytic=True,
    batch=batching.reshaped,
    method=True,
    linear=True,
)
register(
    "ravel",
    np.ravel,
    lambda F, g, y, x: F.reshape(g, shape_of(x)),
    kind="shape",
    shape=lambda a, **_: (size_of(a),),
    analytic=True,
    batch=batching.reshaped,
    linear=True,
)
register(
    "transpose",
    np.transpose,
    _transpose_vjp,
    params=(("axes", None),),
    kind="shape",
    shape=_transpose_shape,
    analytic=True,
    batch=batching.transpose,
    method=True,
    linear=True,
)
register(
    "concatenate",
    _concat,
    _concat_vjp,
    args=("*xs",),
    params=(("axis", 0),),
    kind="shape",
    shape=_concat_shape,
    dtype=result_dtype,
    analytic=True,
    batch=batching.join,
    linear=True,
)
register(
    "stack",
    _stack,
    _stack_vjp,
    args=("*xs",),
    params=(("axis", 0),),
    kind="shape",
    shape=_stack_shape,
    dtype=result_dtype,
    analytic=True,
    batch=batching.join,
    linear=True,
)
register(
    "expand_dims",
    np.expand_dims,
    lambda F, g, y, x, axis=0: F.reshape(g, shape_of(x)),
    params=(("axis", 0),),
    kind="shape",
    shape=_expand_shape,
    analytic=True,
    batch=batching.reshaped,
    linear=True,
)
register(
    "squeeze",
    np.squeeze,
    lambda F, g, y, x, axis=None: F.reshape(g, shape_of(x)),
    params=(("axis", None),),
    kind="shape",
    shape=_squeeze_shape,
    analytic=True,
    batch=batching.reshaped,
    linear=True,
)
register(
    "broadcast_to",
    np.broadcast_to,
    lambda F, g, y, x, shape=None: g,
    params=(("shape", None),),
    kind="shape",
    shape=_broadcast_to_shape,
    analytic=True,
    batch=batching.broadcast_to,
    linear=True,
)
register(
    "getitem",
    _getitem,
    lambda F, g, y, x, index=(): F.scatter(g, index=index, shape=shape_of(x)),
    params=(("index", ()),),
    kind="index",
    shape=_getitem_shape,
    analytic=True,
    batch=batching.index,
    linear=True,
)
register(
    "scatter",
    _scatter,
    lambda F, g, y, x, index=(), shape=(): F.getitem(g, index=index),
    params=(("index", ()), ("shape", ())),
    kind="index",
    shape=lambda a, index=(), shape=(), **_: tuple(shape),
    dtype=float_dtype_rule,
    analytic=True,
    batch=batching.index,
    linear=True,
)
