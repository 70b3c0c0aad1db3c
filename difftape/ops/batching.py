"""Batching rules: how an op runs on operands that carry a leading axis of points.

Each op's rule is in its registry entry (``Op.batch``); the families' default rules are here
(elementwise, reduction, along an axis), with the helpers the per-op rules share. A rule is
``rule(apply, B, op, node, args, batched, shapes) -> value`` (see ``core.py``): it is written with
the engine's own ops through ``apply``, so a tape records the batched run and the registry's VJPs
differentiate it. Elementwise ops pad per-point ranks so that numpy's right-aligned broadcasting
cannot mix the batch axis with a per-point axis; reductions and axis parameters shift by one;
matmul/solve/outer/trace/diag handle 1-d operands and the batch axis explicitly; shape ops prepend
``B``; indexing prepends the batch axis to the index. A rule may answer ``NotImplemented``: that
node then runs point by point (slow but right).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from difftape.ops.core import DEFAULT_BATCH, OPS, Op, normalize_axis

Apply = Callable[..., Any]

# ----------------------------------------------------------------------------------------
# batching rules: rule(B, op, node, args, batched, shapes) -> batched value (or NotImplemented)
#   args: the operands (batched ones are (B,) + per-point shape, on the engine; shared ones raw)
#   batched: which operands are batched; shapes: the per-point shapes of the operands;
#   node.shape: the per-point shape of the result; node.params: the op's static parameters.


def _call(apply: Apply, name: str, *args: Any, **params: Any) -> Any:
    return apply(OPS[name], args, params)


def _param(op: Op, node: Any, name: str) -> Any:
    if name in node.params:
        return node.params[name]
    return dict(op.params).get(name)


def _rank(apply: Apply, B: int, x: Any, shape: tuple[int, ...], ndim: int) -> Any:
    """A batched operand padded to ``ndim`` per-point dimensions: (B,) + (1,)*pad + shape."""
    pad = ndim - len(shape)
    return _call(apply, "reshape", x, shape=(B,) + (1,) * pad + tuple(shape)) if pad > 0 else x


def _raw(x: Any) -> Any:
    return getattr(x, "_value", x)  # a Tensor's numpy value


def direct(apply: Apply, B: int, op: Op, node: Any, args: tuple, batched: tuple, shapes: tuple) -> Any:
    """Ops that act on the trailing axes or elementwise anyway (inv, det, zeros_like, ...)."""
    return apply(op, args, node.params)


def elementwise(apply: Apply, B: int, op: Op, node: Any, args: tuple, batched: tuple, shapes: tuple) -> Any:
    k = len(node.shape)
    args = tuple(_rank(apply, B, a, s, k) if b else a for a, b, s in zip(args, batched, shapes))
    return apply(op, args, node.params)


def reduction(apply: Apply, B: int, op: Op, node: Any, args: tuple, batched: tuple, shapes: tuple) -> Any:
    # axis None means every per-point axis: an explicit tuple (never the batch axis)
    axes = normalize_axis(_param(op, node, "axis"), len(shapes[0]))
    return apply(op, args, {**node.params, "axis": tuple(a + 1 for a in axes)})


def along_axis(apply: Apply, B: int, op: Op, node: Any, args: tuple, batched: tuple, shapes: tuple) -> Any:
    axis = normalize_axis(_param(op, node, "axis"), len(shapes[0]))[0]
    return apply(op, args, {**node.params, "axis": axis + 1})


def reshaped(apply: Apply, B: int, op: Op, node: Any, args: tuple, batched: tuple, shapes: tuple) -> Any:
    """reshape, ravel, expand_dims, squeeze: the per-point result shape is static."""
    return _call(apply, "reshape", args[0], shape=(B,) + tuple(node.shape))


def transpose(apply: Apply, B: int, op: Op, node: Any, args: tuple, batched: tuple, shapes: tuple) -> Any:
    k = len(shapes[0])
    axes = _param(op, node, "axes")
    perm = tuple(range(k))[::-1] if axes is None else tuple(int(a) % k for a in axes)
    return _call(apply, "transpose", args[0], axes=(0,) + tuple(p + 1 for p in perm))


def join(apply: Apply, B: int, op: Op, node: Any, args: tuple, batched: tuple, shapes: tuple) -> Any:
    """concatenate / stack: shared operands are broadcast to the batch (no gradient flows to them)."""
    k = len(shapes[0])
    axis = normalize_axis(_param(op, node, "axis"), k + (op.name == "stack"))[0]
    weak = [not b and type(a) in (bool, int, float) for a, b in zip(args, batched)]
    if any(weak):  # a Python number keeps its weak dtype, as in the per-point stack
        strong = functools.reduce(np.promote_types, [np.asarray(_raw(a)).dtype for a, w in zip(args, weak) if not w])
        dtype = functools.reduce(np.result_type, [a for a, w in zip(args, weak) if w], strong)
    spread = []
    for a, b, w, s in zip(args, batched, weak, shapes):
        if not b:
            a = np.broadcast_to(np.asarray(a, dtype=dtype) if w else a, (B,) + tuple(s))
        spread.append(a)
    return apply(op, tuple(spread), {**node.params, "axis": axis + 1})


def broadcast_to(apply: Apply, B: int, op: Op, node: Any, args: tuple, batched: tuple, shapes: tuple) -> Any:
    x = _rank(apply, B, args[0], shapes[0], len(node.shape))
    return apply(op, (x,), {**node.params, "shape": (B,) + tuple(node.shape)})


def full(apply: Apply, B: int, op: Op, node: Any, args: tuple, batched: tuple, shapes: tuple) -> Any:
    x = _rank(apply, B, args[0], shapes[0], len(node.shape))
    return apply(op, (x,), {**node.params, "shape": (B,) + tuple(node.shape)})


def _matrix_operand(apply: Apply, B: int, x: Any, batched: bool, shape: tuple, as_matrix: tuple, ndim: int) -> Any:
    if batched:
        pad = ndim - len(as_matrix)
        full = (B,) + (1,) * pad + as_matrix
        return _call(apply, "reshape", x, shape=full) if (pad or as_matrix != shape) else x
    return np.reshape(x, as_matrix) if as_matrix != shape else x


def matmul(apply: Apply, B: int, op: Op, node: Any, args: tuple, batched: tuple, shapes: tuple) -> Any:
    sa, sb = (tuple(s) for s in shapes)
    if op.name == "dot" and (not sa or not sb):  # dot with a scalar is a product
        return elementwise(apply, B, OPS["multiply"], node, args, batched, shapes)
    # 1-d operands as matrices ((1, k) and (k, 1)); batched operands padded to one per-point rank,
    # so that the batch axis lines up with the batch axis and never with a per-point stack axis
    ea = (1,) + sa if len(sa) == 1 else sa
    eb = sb + (1,) if len(sb) == 1 else sb
    m = max(len(ea), len(eb))
    a = _matrix_operand(apply, B, args[0], batched[0], sa, ea, m)
    b = _matrix_operand(apply, B, args[1], batched[1], sb, eb, m)
    out = _call(apply, "matmul", a, b)
    return _call(apply, "reshape", out, shape=(B,) + tuple(node.shape)) if (len(sa) == 1 or len(sb) == 1) else out


def outer(apply: Apply, B: int, op: Op, node: Any, args: tuple, batched: tuple, shapes: tuple) -> Any:
    na, nb = node.shape
    a = _call(apply, "reshape", args[0], shape=(B, na, 1)) if batched[0] else np.reshape(args[0], (na, 1))
    b = _call(apply, "reshape", args[1], shape=(B, 1, nb)) if batched[1] else np.reshape(args[1], (nb,))
    return _call(apply, "multiply", a, b)


def trace(apply: Apply, B: int, op: Op, node: Any, args: tuple, batched: tuple, shapes: tuple) -> Any:
    r = np.arange(min(shapes[0]))
    return _call(apply, "sum", _call(apply, "getitem", args[0], index=(slice(None), r, r)), axis=1)


def diag(apply: Apply, B: int, op: Op, node: Any, args: tuple, batched: tuple, shapes: tuple) -> Any:
    k = int(_param(op, node, "k") or 0)
    (n,) = shapes[0] if len(shapes[0]) == 1 else node.shape
    rows = np.arange(n) + max(0, -k)
    cols = np.arange(n) + max(0, k)
    if len(shapes[0]) == 2:  # the k-th diagonal of each matrix
        return _call(apply, "getitem", args[0], index=(slice(None), rows, cols))
    if _raw(args[0]).dtype.kind not in "fc":  # scatter makes floats; np.diag keeps ints
        return NotImplemented
    size = node.shape[0]
    return _call(apply, "scatter", args[0], index=(slice(None), rows, cols), shape=(B, size, size))


def solve(apply: Apply, B: int, op: Op, node: Any, args: tuple, batched: tuple, shapes: tuple) -> Any:
    sa, sb = (tuple(s) for s in shapes)
    a, b = args
    # a vector right-hand side is solved as an (n, 1) matrix, and the 1 dropped at the end
    eb = sb + (1,) if len(sb) == 1 else sb
    m = max(len(sa), len(eb))
    # every operand gets m + 1 dimensions, so numpy never reads a matrix as a stack of vectors
    if batched[0]:
        a = _rank(apply, B, a, sa, m)
    else:
        a = np.reshape(a, (1,) * (m + 1 - len(sa)) + sa)
    if batched[1]:
        b = _rank(apply, B, _call(apply, "reshape", b, shape=(B,) + eb) if eb != sb else b, eb, m)
    else:
        b = np.reshape(b, (1,) * (m + 1 - len(eb)) + eb)
    out = _call(apply, "solve", a, b)
    return _call(apply, "reshape", out, shape=(B,) + tuple(node.shape)) if eb != sb else out


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def batch_index(index: Any, B: int) -> tuple | None:
    """The per-point index ``index`` for a batched array (batch axis first); None if it needs a point loop.

    Basic indices (ints, slices, None, Ellipsis) and adjacent integer-array indices: the batch
    axis is one more slice in front. Integer-array indices separated by slices move their
    dimension to the front (numpy's rule), so the batch axis joins them as an ``arange`` index.
    """
    items = index if isinstance(index, tuple) else (index,)
    arrays = [i for i, it in enumerate(items) if isinstance(it, (np.ndarray, list))]
    for it in items:
        basic = it is None or it is Ellipsis or isinstance(it, slice) or _is_int(it)
        if not basic and not isinstance(it, (np.ndarray, list)):
            return None
    if not arrays:
        return (slice(None),) + items
    if any(np.asarray(items[i]).dtype.kind not in "iu" for i in arrays):
        return None  # boolean masks: leave to the point loop
    advanced = [i for i, it in enumerate(items) if isinstance(it, (np.ndarray, list)) or _is_int(it)]
    if advanced == list(range(advanced[0], advanced[-1] + 1)):
        return (slice(None),) + items
    nd = len(np.broadcast_shapes(*(np.shape(items[i]) for i in advanced)))
    return (np.arange(B).reshape((B,) + (1,) * nd),) + items


def index(apply: Apply, B: int, op: Op, node: Any, args: tuple, batched: tuple, shapes: tuple) -> Any:
    index = batch_index(_param(op, node, "index"), B)
    if index is None:
        return NotImplemented
    params = {**node.params, "index": index}
    if op.name == "scatter":
        params["shape"] = (B,) + tuple(node.shape)
    return apply(op, args, params)


def per_point(apply: Apply, B: int, op: Op, node: Any, args: tuple, batched: tuple) -> Any:
    """The fallback for an op without a batching rule: run it on each point and stack (recorded)."""
    outs = []
    for i in range(B):
        point = tuple(_call(apply, "getitem", a, index=(i,)) if b else a for a, b in zip(args, batched))
        outs.append(apply(op, point, node.params))
    return _call(apply, "stack", *outs, axis=0)


def flat_or_along(apply: Apply, B: int, op: Op, node: Any, args: tuple, batched: tuple, shapes: tuple) -> Any:
    """Ops along one ``axis`` where None means the flattened array (cumulative sums, sorts, gathers).

    Shared operands (index arrays) are broadcast to the batch, so that every operand has the batch
    axis in front (they carry no gradient); with axis None each point is flattened on its own.
    """
    axis = _param(op, node, "axis")
    spread = []
    for a, b, s in zip(args, batched, shapes):
        if not b:
            a = np.broadcast_to(np.asarray(_raw(a)), (B,) + tuple(s))
        if axis is None:
            a = _call(apply, "reshape", a, shape=(B, -1)) if b else np.reshape(a, (B, -1))
        spread.append(a)
    ax = 0 if axis is None else normalize_axis(axis, len(shapes[0]))[0]
    return apply(op, tuple(spread), {**node.params, "axis": ax + 1})


DEFAULT_BATCH.update(elementwise=elementwise, compare=elementwise, reduction=reduction, normalize=along_axis)
