"""Shape and indexing operations: they move values about (where-masks pass through them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from difftape.ops import batching
from difftape.ops.core import (
    OPS,
    Shape,
    float_dtype_rule,
    normalize_axis,
    np_dtype,
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


# ----------------------------------------------------------------------------------------
# sorting and gathering by integer index arrays (indices are tensor inputs without a gradient)


def _as_index(name: str, indices: Any) -> np.ndarray:
    """Integer indices; floats with integral values pass too (differentiating promotes bindings to float)."""
    idx = np.asarray(indices)
    if idx.dtype.kind in "iu":
        return idx
    if idx.dtype.kind == "f" and np.all(np.isfinite(idx)) and np.all(idx == np.round(idx)):
        return idx.astype(np.intp)
    raise TypeError(f"{name}: indices must be integers, not {idx.dtype} values")


def _index_dtype(name: str) -> Callable[..., Any]:
    def rule(a: Any, i: Any, **_: Any) -> np.dtype:
        if np_dtype(i).kind not in "iuf":
            raise TypeError(f"{name}: indices must be integers, not {np_dtype(i)}")
        return np_dtype(a)

    return rule


def _one(name: str, shape: Shape, axis: Any) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise ValueError(f"{name}: axis must be an integer or None, not {axis!r}")
    return normalize_axis(int(axis), len(shape))[0]


def _flat_or(name: str) -> Callable[..., Shape]:
    """Shape rule of sort/argsort: the same shape, or flat for axis None."""

    def rule(a: Shape, axis: Any = -1, **_: Any) -> Shape:
        if axis is None:
            return (size_of(a),)
        _one(name, a, axis)
        return a

    return rule


def _sort(a: Any, axis: Any = -1) -> Any:
    return np.sort(a, axis=axis, kind="stable")


def _argsort(a: Any, axis: Any = -1) -> Any:
    return np.argsort(a, axis=axis, kind="stable")


def _sort_vjp(F: Any, g: Any, y: Any, x: Any, axis: Any = -1) -> Any:
    # y = x permuted (a stable sort): each input takes the gradient of the place it went to,
    # read through the inverse permutation (argsort of the argsort); tied values keep their order
    shape = shape_of(x)
    if axis is None:
        x, ax = F.reshape(x, (size_of(shape),)), 0
    else:
        ax = _one("sort", shape, axis)
    back = F.argsort(F.argsort(x, axis=ax), axis=ax)
    return F.reshape(F.take_along_axis(g, back, axis=ax), shape)


_MODES = ("raise", "wrap", "clip")


def _take(a: Any, indices: Any, axis: Any = None, mode: str = "raise") -> Any:
    return np.take(a, _as_index("take", indices), axis=axis, mode=mode)


def _take_shape(a: Shape, i: Shape, axis: Any = None, mode: str = "raise", **_: Any) -> Shape:
    if mode not in _MODES:
        raise ValueError(f"take: mode must be one of {', '.join(_MODES)}, not {mode!r}")
    n = size_of(a) if axis is None else a[_one("take", a, axis)] if a else None
    if n is None:
        raise ValueError("take: axis is out of bounds for a 0-d array")
    if n == 0 and size_of(i):
        raise ValueError("take: cannot take from an empty axis")
    if axis is None:
        return tuple(i)
    ax = _one("take", a, axis)
    return a[:ax] + tuple(i) + a[ax + 1 :]


def _take_vjp(F: Any, g: Any, y: Any, a: Any, indices: Any, axis: Any = None, mode: str = "raise") -> Any:
    # the adjoint of a gather: g added back at the indices (repeated indices add up)
    shape, ishape = shape_of(a), shape_of(indices)
    k = size_of(ishape)
    if axis is None:
        ax, n = 0, size_of(shape)
        gshape, index_shape = (k,), (k,)
    else:
        ax = _one("take", shape, axis)
        n = shape[ax]
        gshape = shape[:ax] + (k,) + shape[ax + 1 :]
        index_shape = (1,) * ax + (k,) + (1,) * (len(shape) - ax - 1)
    if mode == "wrap":
        indices = F.remainder(indices, n)
    elif mode == "clip":
        indices = F.clip(indices, 0, n - 1)
    out = F.add_along_axis(F.reshape(g, gshape), F.reshape(indices, index_shape), axis=ax, size=n)
    return F.reshape(out, shape)


def _take_batch(apply: Any, B: int, op: Any, node: Any, args: tuple, batched: tuple, shapes: tuple) -> Any:
    """Shared indices: numpy's take along the shifted axis; indices per point: a gather along that axis."""
    a, indices = args
    sa, si = tuple(shapes[0]), tuple(shapes[1])
    axis, mode = node.params.get("axis"), node.params.get("mode", "raise")
    if not batched[0]:
        a = np.broadcast_to(np.asarray(batching._raw(a)), (B,) + sa)
    if axis is None:
        a = batching._call(apply, "reshape", a, shape=(B, -1))
        sa, ax = (size_of(sa),), 0
    else:
        ax = _one("take", sa, axis)
    if not batched[1]:
        return apply(op, (a, indices), {**node.params, "axis": ax + 1})
    n = sa[ax]
    idx = _as_index("take", batching._raw(indices))
    if mode == "wrap":
        idx = np.remainder(idx, n)
    elif mode == "clip":
        idx = np.clip(idx, 0, n - 1)
    k = size_of(si)
    idx = np.reshape(idx, (B,) + (1,) * ax + (k,) + (1,) * (len(sa) - ax - 1))
    out = apply(OPS["take_along_axis"], (a, idx), {"axis": ax + 1})
    return batching._call(apply, "reshape", out, shape=(B,) + tuple(node.shape))


def _take_along_axis(arr: Any, indices: Any, axis: Any = -1) -> Any:
    return np.take_along_axis(arr, _as_index("take_along_axis", indices), axis=axis)


def _take_along_shape(a: Shape, i: Shape, axis: Any = -1, **_: Any) -> Shape:
    if axis is None:
        if len(i) != 1:
            raise ValueError(f"take_along_axis: with axis=None the indices must be 1-d, not of shape {i}")
        return tuple(i)
    if len(a) != len(i):
        raise ValueError(f"take_along_axis: indices of shape {i} need the {len(a)} dimensions of the array {a}")
    ax = _one("take_along_axis", a, axis)
    try:
        rest = tuple(np.broadcast_shapes(a[:ax] + a[ax + 1 :], i[:ax] + i[ax + 1 :]))
    except ValueError:
        raise ValueError(f"take_along_axis: array {a} and indices {i} do not broadcast outside axis {axis}") from None
    return rest[:ax] + (i[ax],) + rest[ax:]


def _take_along_vjp(F: Any, g: Any, y: Any, arr: Any, indices: Any, axis: Any = -1) -> Any:
    shape = shape_of(arr)
    if axis is None:
        return F.reshape(F.add_along_axis(g, indices, axis=0, size=size_of(shape)), shape)
    ax = _one("take_along_axis", shape, axis)
    return F.add_along_axis(g, indices, axis=ax, size=shape[ax])  # reverse mode sums broadcast axes down


def _add_along_axis(g: Any, indices: Any, axis: int = 0, size: int = 0) -> Any:
    """Zeros with ``g`` added at ``indices`` along ``axis`` (``size`` long there): take_along_axis's adjoint."""
    g = np.asarray(g)
    # the static rule's check, eagerly too: indices that broadcast along ``axis`` would give a value
    # here whose gradient (take_along_axis of the indices) has the wrong shape
    _add_along_shape(g.shape, np.shape(indices), axis, size)
    ax = normalize_axis(axis, g.ndim)[0]
    dtype = g.dtype if g.dtype.kind in "fc" else np.float64
    out = np.zeros(g.shape[:ax] + (int(size),) + g.shape[ax + 1 :], dtype=dtype)
    where = list(np.indices(g.shape, sparse=True))
    where[ax] = np.broadcast_to(_as_index("add_along_axis", indices), g.shape)
    np.add.at(out, tuple(where), g)
    return out


def _add_along_shape(gs: Shape, i: Shape, axis: Any = 0, size: Any = 0, **_: Any) -> Shape:
    ax = _one("add_along_axis", gs, axis)
    if len(i) != len(gs) or i[ax] != gs[ax] or tuple(np.broadcast_shapes(i, gs)) != tuple(gs):
        raise ValueError(f"add_along_axis: indices of shape {i} do not fit values of shape {gs}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
        raise ValueError(f"add_along_axis: size must be a non-negative integer, not {size!r}")
    return gs[:ax] + (int(size),) + gs[ax + 1 :]


register(
    "sort",
    _sort,
    _sort_vjp,
    params=(("axis", -1),),
    kind="shape",
    shape=_flat_or("sort"),
    batch=batching.flat_or_along,
    doc="sorted along axis (None: flattened); the gradient follows the (stable) permutation",
)
register(
    "argsort",
    _argsort,
    nograd=1,
    params=(("axis", -1),),
    kind="shape",
    shape=_flat_or("argsort"),
    dtype=lambda *_, **__: np.dtype(np.intp),
    batch=batching.flat_or_along,
    method=True,
    doc="the indices that sort along axis (a stable sort); an integer result, no gradient",
)
register(
    "take",
    _take,
    _take_vjp,
    None,
    args=("a", "indices"),
    params=(("axis", None), ("mode", "raise")),
    kind="shape",
    shape=_take_shape,
    dtype=_index_dtype("take"),
    analytic=True,
    batch=_take_batch,
    method=True,
    doc="elements at integer indices along axis (None: of the flattened array); repeated indices add up",
)
register(
    "take_along_axis",
    _take_along_axis,
    _take_along_vjp,
    None,
    args=("arr", "indices"),
    params=(("axis", -1),),
    kind="shape",
    shape=_take_along_shape,
    dtype=_index_dtype("take_along_axis"),
    analytic=True,
    batch=batching.flat_or_along,
    doc="elements at integer indices along axis, one index array per position (as argsort gives)",
)
register(
    "add_along_axis",
    _add_along_axis,
    lambda F, gg, y, g, indices, axis=0, size=0: F.take_along_axis(gg, indices, axis=axis),
    None,
    args=("values", "indices"),
    params=(("axis", 0), ("size", 0)),
    kind="index",
    shape=_add_along_shape,
    dtype=lambda g, i, **_: float_dtype_rule(g),
    analytic=True,
    batch=batching.flat_or_along,
    numpy=(),
    doc="zeros with values added at indices along axis (take_along_axis's adjoint, for gradients)",
)
