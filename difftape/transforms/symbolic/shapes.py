"""Simplifying constructors for reductions, shapes, indexing and linear algebra.

The same contract as :mod:`.simplify` (children are simplified already; values and
shapes never change), for the ops that move or combine elements: ``sum`` pulls out
what does not vary along its axes (``sum(x*v) -> x*sum(v)``), reshapes and transposes
collapse, ``ones(k, n) @ b`` is a column sum, and indexing's adjoint (the VJP's
``scatter``) is written with the language's own ops: rows of ``eye`` and matmuls.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from difftape.errors import DifftapeError
from difftape.ops import normalize_axis
from difftape.transforms.symbolic.expr import Expr, Num, Shape, const, lift, make
from difftape.transforms.symbolic.simplify import (
    _KEEPDIMS,
    _const_op,
    _fold,
    _materialize,
    _nmul,
    _op_dtype,
    _op_shape,
    _pointwise,
    _size,
    call,
    fit,
    multiply,
    node,
    prod_of,
    rebuild,
    where,
)

# ----------------------------------------------------------------------------------------
# reductions


def _axes_param(shape: Shape, axis: Any) -> tuple[int, ...]:
    try:
        return normalize_axis(axis, len(shape))
    except ValueError as exc:
        raise DifftapeError("shape", str(exc)) from None


def reduction(name: str) -> Any:
    def rule(xs: tuple[Expr, ...], params: dict[str, Any]) -> Expr:
        (x,) = xs
        params = dict(params)
        axes = _axes_param(x.shape, params.get("axis"))
        params["axis"] = axes
        keep = bool(params.get("keepdims", False))
        out_shape = _op_shape(name, [x.shape], params)
        if name in ("sum", "mean", "max", "min") and not axes:
            return fit(x, out_shape) if name != "mean" or x.shape else x
        if name == "sum":
            return _sum(x, axes, keep, out_shape)
        if name in ("mean", "max", "min") and x.op == "const" and not isinstance(x.value, np.ndarray):
            return const(x.value, out_shape, x.dtype)
        return node(name, xs, params)

    return rule


def _carrier(b: Expr) -> bool:
    """The ``ones(shape)`` factor that keeps a product's shape."""
    return b.op == "const" and not isinstance(b.value, np.ndarray)


def _sum(x: Expr, axes: tuple[int, ...], keep: bool, out_shape: Shape) -> Expr:
    count = _size(tuple(x.shape[a] for a in axes))
    if x.op == "const" and not isinstance(x.value, np.ndarray):
        return const(_nmul(x.value, count), out_shape)
    if all(x.shape[a] == 1 for a in axes):
        return reshape(x, out_shape)
    if x.op == "transpose" and not keep:
        # sum(transpose(X), axes) sums the matching axes of X, then orders what is left
        perm = x.param("axes")
        inner_axes = tuple(sorted(perm[a] for a in axes))
        left = [perm[i] for i in range(x.ndim) if i not in axes]
        reduced = call("sum", (x.args[0],), {"axis": inner_axes})
        return transpose(reduced, tuple(sorted(left).index(a) for a in left))
    if x.op == "times" and not keep and len(axes) == x.ndim and any(_carrier(b) for b in x.args):
        # sum(f * ones(S)): every element of f counted size(S) / size(f) times
        rest = prod_of([(b, e) for b, e in zip(x.args, x.exps) if not _carrier(b)], x.value)
        if rest.op != "const":
            return multiply(_size(x.shape) // max(1, _size(rest.shape)), _sum(rest, tuple(range(rest.ndim)), False, ()))
    if x.op == "times":
        # factors that do not vary along the summed axes come out of the sum
        n = x.ndim
        inside: list[tuple[Expr, Num]] = []
        outside: list[tuple[Expr, Num]] = []
        for b, e in zip(x.args, x.exps):
            lead = n - b.ndim
            if b.op != "const" and all(a < lead or b.shape[a - lead] == 1 for a in axes):
                if keep or all(a < lead for a in axes):
                    outside.append((b, e))
                else:
                    kept = tuple(s for i, s in enumerate(b.shape) if i + lead not in axes)
                    outside.append((reshape(b, kept), e))
            else:
                inside.append((b, e))
        if outside or x.value != 1:
            rest = fit(prod_of(inside), x.shape)
            return fit(prod_of(outside + [(_sum(rest, axes, keep, out_shape), 1)], x.value), out_shape)
    return node("sum", (x,), {"axis": axes, "keepdims": keep})


# ----------------------------------------------------------------------------------------
# shape manipulation


def _move_where(x: Expr, move: Any) -> Expr | None:
    """``move(where(c, a, b))`` as ``where(move(c), a, b)`` when ``a``, ``b`` are numbers (masks)."""
    if x.op != "where":
        return None
    c, a, b = x.args
    if not all(e.op == "const" and not isinstance(e.value, np.ndarray) for e in (a, b)):
        return None
    full_c = fit(c, x.shape)
    return where(move(full_c), const(a.value, (), a.dtype), const(b.value, (), b.dtype))


def _row_of(a: Expr) -> Expr | None:
    """``v`` when ``a`` is the vector ``v`` broadcast to one row (``v*ones((1, n))``)."""
    if a.ndim != 2 or a.shape[0] != 1 or a.op != "times":
        return None
    rest = [(b, e) for b, e in zip(a.args, a.exps) if not (_carrier(b) and b.shape == a.shape)]
    if len(rest) == len(a.args):
        return None
    v = prod_of(rest, a.value)
    return v if v.shape == a.shape[1:] else None


def reshape(x: Any, shape: Any) -> Expr:
    """``x`` reshaped; reshape chains collapse and keepdims reductions come back whole."""
    x = lift(x)
    new = _op_shape("reshape", [x.shape], {"shape": shape})
    if new == x.shape:
        return x
    x = _materialize(x)
    if x.op == "const":
        value = x.value.reshape(new) if isinstance(x.value, np.ndarray) else x.value
        return const(value, new, x.dtype)
    moved = _move_where(x, lambda e: reshape(e, new))
    if moved is not None:
        return moved
    if x.op == "reshape":
        return reshape(x.args[0], new)
    if x.op == "matmul" and x.ndim == 2:
        a, b = x.args
        # A @ reshape(v, (n, 1)) read as a vector is A @ v; likewise reshape(v, (1, n)) @ B
        if b.op == "reshape" and b.args[0].ndim == 1 and b.shape[1] == 1 and new == x.shape[:1] and a.ndim == 2:
            return call("matmul", (a, b.args[0]), {})
        if a.op == "reshape" and a.args[0].ndim == 1 and a.shape[0] == 1 and new == x.shape[1:] and b.ndim == 2:
            return call("matmul", (a.args[0], b), {})
        row = _row_of(a)
        if row is not None and new == x.shape[1:] and b.ndim == 2:
            return call("matmul", (row, b), {})
    if _pointwise(x) and x.op != "times":
        # f(reshape(a)) reshaped back: f(a)
        args = []
        for a in x.args:
            if a.shape == ():
                args.append(a)
            elif a.op == "reshape" and a.shape == x.shape and a.args[0].shape == new:
                args.append(a.args[0])
            elif a.op == "const" and not isinstance(a.value, np.ndarray) and a.shape == x.shape:
                args.append(const(a.value, new, a.dtype))
            else:
                break
        else:
            return fit(rebuild(x, tuple(args)), new)
    if x.op in _KEEPDIMS and not x.param("keepdims"):
        kept = _op_shape(x.op, [x.args[0].shape], {**dict(x.params), "keepdims": True})
        if kept == new:
            return call(x.op, x.args, {**dict(x.params), "keepdims": True})
    if x.op == "sum" and x.param("keepdims"):
        axes = x.param("axis")
        dropped = tuple(s for i, s in enumerate(x.shape) if i not in axes)
        if dropped == new:
            return call("sum", (x.args[0],), {"axis": axes, "keepdims": False})
    if x.op == "times":
        scalars = [(b, e) for b, e in zip(x.args, x.exps) if b.shape == ()]
        if (scalars or x.value != 1) and len(scalars) < len(x.args):
            rest = fit(prod_of([(b, e) for b, e in zip(x.args, x.exps) if b.shape != ()]), x.shape)
            return prod_of(scalars + [(reshape(rest, new), 1)], x.value)
        if all(b.shape == x.shape or b.shape == () for b in x.args) and all(
                b.op == "reshape" and b.args[0].shape == new for b in x.args if b.shape):
            return fit(prod_of([(b.args[0] if b.shape else b, e) for b, e in zip(x.args, x.exps)], x.value), new)
    return make("reshape", (x,), (("shape", new),), shape=new, dtype=x.dtype)


def _reshape_rule(xs: tuple[Expr, ...], params: dict[str, Any]) -> Expr:
    return reshape(xs[0], params["shape"])


def _to_reshape(name: str) -> Any:
    def rule(xs: tuple[Expr, ...], params: dict[str, Any]) -> Expr:
        return reshape(xs[0], _op_shape(name, [xs[0].shape], params))

    return rule


def _broadcast_to(xs: tuple[Expr, ...], params: dict[str, Any]) -> Expr:
    return fit(xs[0], _op_shape("broadcast_to", [xs[0].shape], params))


def transpose(x: Any, axes: Any = None) -> Expr:
    """``x`` transposed; transposes compose, and numbers move out."""
    x = lift(x)
    n = x.ndim
    perm = tuple(range(n))[::-1] if axes is None else tuple(int(a) % n for a in axes)
    new = _op_shape("transpose", [x.shape], {"axes": perm})
    if perm == tuple(range(n)):
        return x
    x = _materialize(x)
    if x.op == "const":
        value = np.transpose(x.value, perm) if isinstance(x.value, np.ndarray) else x.value
        return const(value, new, x.dtype)
    moved = _move_where(x, lambda e: transpose(e, perm))
    if moved is not None:
        return moved
    if x.op == "transpose":
        inner = x.param("axes")
        return transpose(x.args[0], tuple(inner[p] for p in perm))
    if x.op == "diag" and x.ndim == 2 and not x.param("k") and x.args[0].ndim == 1:
        return x  # a diagonal matrix is symmetric
    if x.op == "times":
        scalars = [(b, e) for b, e in zip(x.args, x.exps) if b.shape == ()]
        if (scalars or x.value != 1) and len(scalars) < len(x.args):
            rest = fit(prod_of([(b, e) for b, e in zip(x.args, x.exps) if b.shape != ()]), x.shape)
            return prod_of(scalars + [(transpose(rest, perm), 1)], x.value)
    return make("transpose", (x,), (("axes", perm),), shape=new, dtype=x.dtype)


def _transpose_rule(xs: tuple[Expr, ...], params: dict[str, Any]) -> Expr:
    return transpose(xs[0], params.get("axes"))


def normalize_index(index: Any, shape: Shape) -> tuple[Any, ...]:
    """An index as a tuple of ints, slices and int arrays, one item per axis (no Ellipsis, no None)."""
    items = index if isinstance(index, tuple) else (index,)
    out: list[Any] = []
    for it in items:
        if it is None:
            raise DifftapeError("unsupported", "diff: indexing with None (a new axis) has no printed form here")
        if isinstance(it, (list, np.ndarray)):
            arr = np.asarray(it)
            if arr.dtype.kind == "b":
                if arr.ndim != 1:
                    raise DifftapeError("unsupported", "diff: boolean indexing of more than one axis")
                arr = np.nonzero(arr)[0]
            if arr.dtype.kind not in "iu":
                raise DifftapeError("type", f"index arrays must be integers, got {arr.dtype}")
            out.append(int(arr) if arr.ndim == 0 else arr.astype(np.int64))
        elif isinstance(it, Expr):
            if it.op != "const":
                raise DifftapeError("unsupported", "diff: an index that depends on an input")
            out.append(np.asarray(it.value) if isinstance(it.value, np.ndarray) else int(it.value))
        elif isinstance(it, (int, np.integer)) and not isinstance(it, bool):
            out.append(int(it))
        else:
            out.append(it)
    if sum(1 for it in out if it is Ellipsis) > 1:
        raise DifftapeError("syntax", "an index can only have a single ellipsis")
    n_real = sum(1 for it in out if it is not Ellipsis)
    if Ellipsis in [it for it in out if it is Ellipsis]:
        k = next(i for i, it in enumerate(out) if it is Ellipsis)
        out[k:k + 1] = [slice(None)] * (len(shape) - n_real)
    if len(out) > len(shape):
        raise DifftapeError("shape", f"too many indices ({len(out)}) for an array of shape {shape}")
    out += [slice(None)] * (len(shape) - len(out))
    norm: list[Any] = []
    for it, n in zip(out, shape):
        if isinstance(it, slice):
            start, stop, step = it.indices(n)
            if step == 1 and start == 0 and stop >= n:
                norm.append(slice(None))
            else:
                norm.append(it)
        elif isinstance(it, int):
            if not -n <= it < n:
                raise DifftapeError("shape", f"index {it} is out of bounds for an axis of size {n}")
            norm.append(it % n)
        else:
            norm.append(it)
    return tuple(norm)


def _full_slice(it: Any) -> bool:
    return isinstance(it, slice) and it == slice(None)


def getitem(x: Any, index: Any) -> Expr:
    """``x[index]`` with the index normalized (no Ellipsis), picking from stacks directly."""
    x = lift(x)
    items = normalize_index(index, x.shape)
    np_index = items
    new = _op_shape("getitem", [x.shape], {"index": np_index})
    if all(_full_slice(it) for it in items):
        return x
    x = _materialize(x)
    if x.op == "const":
        value = x.value[np_index] if isinstance(x.value, np.ndarray) else x.value
        return const(value, new, x.dtype)
    moved = _move_where(x, lambda e: getitem(e, items))
    if moved is not None:
        return moved
    if all(_full_slice(it) or (isinstance(it, int) and n == 1) for it, n in zip(items, x.shape)):
        return reshape(x, new)
    if x.op == "stack":
        picked = _stack_pick(x, items)
        if picked is not None:
            return picked
    if x.op == "times":
        scalars = [(b, e) for b, e in zip(x.args, x.exps) if b.shape == ()]
        if (scalars or x.value != 1) and len(scalars) < len(x.args):
            rest = fit(prod_of([(b, e) for b, e in zip(x.args, x.exps) if b.shape != ()]), x.shape)
            return prod_of(scalars + [(getitem(rest, items), 1)], x.value)
    trimmed = list(items)
    while trimmed and _full_slice(trimmed[-1]):
        trimmed.pop()
    out = make("getitem", (x,), (("index", tuple(trimmed)),), shape=new, dtype=x.dtype)
    return out if out.free else _fold(out)


def _getitem_rule(xs: tuple[Expr, ...], params: dict[str, Any]) -> Expr:
    return getitem(xs[0], params.get("index", ()))


def eye(n: int, m: int | None = None) -> Expr:
    """The identity (the scatter and trace rules use its rows)."""
    return call("eye", (), {"N": int(n), "M": None if m is None or m == n else int(m)})


def _scatter(xs: tuple[Expr, ...], params: dict[str, Any]) -> Expr:
    """The adjoint of indexing, written with the language's ops: zeros concatenated around ``g``.

    Like the tape's scatter it puts exact zeros where nothing was indexed (a product with a
    one-hot row would turn a nan in ``g`` into nan everywhere).
    """
    (g,) = xs
    shape = tuple(int(s) for s in params["shape"])
    items = normalize_index(params.get("index", ()), shape)
    arrays = [i for i, it in enumerate(items) if isinstance(it, np.ndarray)]
    if not arrays:
        cur = g
        for i, (it, n) in enumerate(zip(items, shape)):
            if _full_slice(it):
                continue
            if isinstance(it, slice):
                start, _, step = it.indices(n)
                cur = _spread(cur, i, start, step, n)
            else:
                cur = _spread(reshape(cur, cur.shape[:i] + (1,) + cur.shape[i:]), i, it, 1, n)
        return fit(cur, shape)
    if (len(shape) == 2 and len(arrays) == 2 and g.ndim == 1 and items[0].ndim == 1 and items[1].ndim == 1
            and len(items[0]) == len(items[1])):
        rows, cols = items
        k = int(cols[0] - rows[0]) if len(rows) else 0
        n = len(rows)
        r0 = max(0, -k)
        if np.array_equal(rows, np.arange(n) + r0) and np.array_equal(cols, rows + k):
            # diagonal k of a matrix (the VJP of diag): diag() itself when square, else a masked eye
            if shape == (n + abs(k), n + abs(k)):
                return call("diag", (g,), {"k": k})
            column = g if (r0, n) == (0, shape[0]) else _spread(g, 0, r0, 1, shape[0])
            on = call("equal", (call("eye", (), {"N": shape[0], "M": shape[1], "k": k}), 1), {})
            return where(on, reshape(column, (shape[0], 1)), 0)
    raise DifftapeError(
        "unsupported",
        "diff: the derivative of indexing with index arrays (other than a diagonal) has no printed form here; "
        "index with numbers and slices",
    )


def _zeros_like_along(cur: Expr, axis: int, n: int) -> Expr:
    return const(0, cur.shape[:axis] + (n,) + cur.shape[axis + 1:], cur.dtype)


def _spread(cur: Expr, axis: int, start: int, step: int, n: int) -> Expr:
    """``cur`` (m along ``axis``) placed at ``start, start+step, ...`` of n positions, zeros elsewhere."""
    m = cur.shape[axis]
    if step < 0:  # the same positions counted from the end, then reversed
        flipped = _spread(cur, axis, n - 1 - start, -step, n)
        return getitem(flipped, (slice(None),) * axis + (slice(None, None, -1),))
    if step > 1 and m > 1:
        # interleave: each element followed by step-1 zeros, then trim to the span used
        lifted = reshape(cur, cur.shape[:axis + 1] + (1,) + cur.shape[axis + 1:])
        pad = const(0, cur.shape[:axis + 1] + (step - 1,) + cur.shape[axis + 1:], cur.dtype)
        woven = call("concatenate", ((lifted, pad),), {"axis": axis + 1})
        flat = reshape(woven, cur.shape[:axis] + (m * step,) + cur.shape[axis + 1:])
        span = (m - 1) * step + 1
        cur = getitem(flat, (slice(None),) * axis + (slice(0, span),))
        m = span
    parts = []
    if start:
        parts.append(_zeros_like_along(cur, axis, start))
    parts.append(cur)
    if n - start - m:
        parts.append(_zeros_like_along(cur, axis, n - start - m))
    return call("concatenate", (tuple(parts),), {"axis": axis}) if len(parts) > 1 else cur


def _stack_like(name: str) -> Any:
    def rule(xs: tuple[Expr, ...], params: dict[str, Any]) -> Expr:
        if len(xs) == 1 and name == "concatenate":
            return xs[0]
        shape = _op_shape(name, [x.shape for x in xs], params)
        if all(x.op == "const" and not isinstance(x.value, np.ndarray) for x in xs) and len(
                {(type(x.value), x.value) for x in xs}) == 1:
            return const(xs[0].value, shape, xs[0].dtype)
        axis = normalize_axis(params.get("axis", 0), len(shape))[0]
        if all(x.op == "const" for x in xs) and _size(shape) <= 16:
            return _const_op(name, xs, shape, {"axis": axis})
        return make(name, xs, (("axis", axis),), shape=shape, dtype=_op_dtype(name, [x.dtype for x in xs], params))

    return rule


# ----------------------------------------------------------------------------------------
# linear algebra


def _matmul(xs: tuple[Expr, ...], params: dict[str, Any]) -> Expr:
    a, b = xs
    shape = _op_shape("matmul", [a.shape, b.shape], {})
    if a.op == "const" and b.op == "const":
        return _const_op("matmul", xs, shape)
    for side, other, left in ((a, b, True), (b, a, False)):
        if side.op == "times":
            scalars = [(f, e) for f, e in zip(side.args, side.exps) if f.shape == ()]
            if scalars or side.value != 1:
                rest = fit(prod_of([(f, e) for f, e in zip(side.args, side.exps) if f.shape != ()]), side.shape)
                inner = _matmul((rest, other) if left else (other, rest), {})
                return prod_of(scalars + [(inner, 1)], side.value)
    if a.ndim <= 2 and b.ndim <= 2:
        for m, other in ((a, b), (b, a)):  # eye(n) @ b == b, a @ eye(n) == a
            if m.op == "eye" and not m.param("k") and m.shape[0] == m.shape[1] and other.ndim >= 1:
                return other
        if a.op == "const" and not isinstance(a.value, np.ndarray):
            # ones(k, n) @ b: the column sums of b, repeated
            red = call("sum", (b,), {"axis": 0, "keepdims": a.ndim == 2})
            return fit(multiply(a.value, red), shape) if a.value != 1 else fit(red, shape)
        if b.op == "const" and not isinstance(b.value, np.ndarray):
            red = call("sum", (a,), {"axis": a.ndim - 1, "keepdims": b.ndim == 2})
            return fit(multiply(b.value, red), shape) if b.value != 1 else fit(red, shape)
    return node("matmul", xs, {})


def _dot(xs: tuple[Expr, ...], params: dict[str, Any]) -> Expr:
    a, b = xs
    if a.ndim == 0 or b.ndim == 0:
        return multiply(a, b)
    _op_shape("dot", [a.shape, b.shape], {})
    return _matmul(xs, {})


# ----------------------------------------------------------------------------------------
# constructors


def _ctor_const(value: int) -> Any:
    def rule(xs: tuple[Expr, ...], params: dict[str, Any]) -> Expr:
        shape = _op_shape("zeros", [], {"shape": params.get("shape", ())})
        return const(value, shape)

    return rule


def _like(value: int) -> Any:
    def rule(xs: tuple[Expr, ...], params: dict[str, Any]) -> Expr:
        return const(value, xs[0].shape)

    return rule


def _full(xs: tuple[Expr, ...], params: dict[str, Any]) -> Expr:
    return fit(xs[0], _op_shape("full", [xs[0].shape], params))


# ----------------------------------------------------------------------------------------
# dispatch


def _diag(xs: tuple[Expr, ...], params: dict[str, Any]) -> Expr:
    (x,) = xs
    k = int(params.get("k", 0))
    if x.ndim == 2 and k == 0 and x.shape[0] == x.shape[1] and x.op == "times" and any(_carrier(b) for b in x.args):
        rest = prod_of([(b, e) for b, e in zip(x.args, x.exps) if not _carrier(b)], x.value)
        if rest.ndim == 0:
            return fit(rest, x.shape[:1])
        if rest.shape == x.shape[1:]:
            return rest  # rows all equal to v: the diagonal is v
        if rest.shape == (x.shape[0], 1):
            return reshape(rest, x.shape[:1])
    return node("diag", xs, {"k": k})


def _stack_pick(x: Expr, items: tuple[Any, ...]) -> Expr | None:
    """``stack(xs, axis)[..., i, ...]`` is ``xs[i]``."""
    axis = x.param("axis")
    if len(items) != x.ndim:
        return None
    if all(_full_slice(it) for j, it in enumerate(items) if j != axis) and isinstance(items[axis], int):
        return x.args[items[axis]]
    return None




#: Op name -> rewriting constructor, for :func:`.simplify.call`.
RULES: dict[str, Any] = {
    "diag": _diag,
    "reshape": _reshape_rule,
    "ravel": _to_reshape("ravel"),
    "expand_dims": _to_reshape("expand_dims"),
    "squeeze": _to_reshape("squeeze"),
    "broadcast_to": _broadcast_to,
    "transpose": _transpose_rule,
    "getitem": _getitem_rule,
    "scatter": _scatter,
    "concatenate": _stack_like("concatenate"),
    "stack": _stack_like("stack"),
    "matmul": _matmul,
    "dot": _dot,
    "zeros": _ctor_const(0),
    "ones": _ctor_const(1),
    "zeros_like": _like(0),
    "ones_like": _like(1),
    "full": _full,
}
