"""Linear algebra: products, trace, inverse, determinant, solve, diagonals."""

from __future__ import annotations

from typing import Any

import numpy as np

from difftape.ops import batching
from difftape.ops.core import (
    Shape,
    broadcast_shape,
    probe_on,
    register,
    result_dtype,
    shape_of,
    size_of,
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


#: a float64 product ``(m, k) @ (k, n)`` with ``m >= TALL * n`` and ``m * k >= TALL_MIN`` is computed as
#: ``(b.T @ a.T).T`` (see :func:`_matmul`)
TALL = 4
TALL_MIN = 1 << 19


def _tall_first() -> bool:
    """Whether numpy's BLAS is OpenBLAS, whose dgemm the tall-product layout was measured on."""
    try:
        blas = np.__config__.CONFIG["Build Dependencies"]["blas"]["name"]
    except (AttributeError, KeyError, TypeError):
        return False
    return "openblas" in str(blas).lower()


_TALL_FIRST = _tall_first()


def _matmul(a: Any, b: Any) -> Any:
    """``np.matmul``; a tall float64 product of matrices as the transpose of its transpose.

    numpy hands OpenBLAS a row-major product as the column-major one of the transposes, and OpenBLAS's
    dgemm is 10-35% slower when that product's first dimension is the small one: ``W @ x`` with W
    1000x1000 and x 1000x64 takes 1.5-2.1 ms, ``(x.T @ W.T).T`` 1.3-1.5 ms (benchmarks/bench_matmul.py
    measures the rule's shapes both ways). The same dot products: equal to numpy's within its own
    rounding (bit for bit in most shapes measured; where BLAS blocks k differently, a few ulps), the
    result a Fortran-ordered array. float32 and integer products measured the other way round and
    keep numpy's order.
    """
    if (
        _TALL_FIRST
        and type(a) is np.ndarray
        and type(b) is np.ndarray
        and a.ndim == 2
        and b.ndim == 2
        and a.size >= TALL_MIN
        and a.shape[0] >= TALL * b.shape[1]
        and a.dtype.char == "d"
        and b.dtype.char == "d"
    ):
        return np.matmul(b.T, a.T).T
    return np.matmul(a, b)


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
    return broadcast_shape(a, b) if not a or not b else _matmul_shape(a, b)


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


register(
    "matmul",
    _matmul,
    _matmul_vjp_a,
    _matmul_vjp_b,
    args=("x1", "x2"),
    kind="linalg",
    shape=_matmul_shape,
    dtype=result_dtype,
    analytic=True,
    batch=batching.matmul,
    multilinear=True,
)
register(
    "dot",
    _dot,
    _dot_vjp_a,
    _dot_vjp_b,
    args=("a", "b"),
    kind="linalg",
    shape=_dot_shape,
    dtype=result_dtype,
    analytic=True,
    batch=batching.matmul,
    multilinear=True,
)
register(
    "outer",
    _outer,
    _outer_vjp_a,
    _outer_vjp_b,
    args=("a", "b"),
    kind="linalg",
    shape=lambda a, b, **_: (size_of(a), size_of(b)),
    dtype=result_dtype,
    analytic=True,
    batch=batching.outer,
    multilinear=True,
)
register(
    "trace",
    np.trace,
    lambda F, g, y, x: g * F.eye(shape_of(x)[0], shape_of(x)[1]),
    kind="linalg",
    shape=_trace_shape,
    dtype=probe_on(np.trace, (1, 1)),
    analytic=True,
    batch=batching.trace,
    linear=True,
)
register(
    "inv",
    np.linalg.inv,
    lambda F, g, y, x: -F.matmul(_swap(F, y), F.matmul(g, _swap(F, y))),
    kind="linalg",
    shape=_inv_shape,
    dtype=probe_on(np.linalg.inv, (1, 1)),
    analytic=True,
    batch=batching.direct,
)


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


def _cofactor(x: Any) -> np.ndarray:
    """The cofactor matrix, ``det(x) * inv(x).T`` where x is invertible, from the SVD where it is not."""
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"cofactor: needs a square matrix (or a stack of them), got shape {x.shape}")
    with np.errstate(all="ignore"):
        d = np.linalg.det(x)
        try:
            cof = d[..., None, None] * np.swapaxes(np.linalg.inv(x), -1, -2)
        except np.linalg.LinAlgError:
            cof = None
    if cof is None or not np.all(np.isfinite(cof)) or np.any(d == 0):
        cof = _cofactors(x)
    return cof


def _minor_index(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices (n, n, n-1, n-1) that pick minor (i, j) of an n x n matrix at [i, j]."""
    keep = np.array([[k for k in range(n) if k != i] for i in range(n)], dtype=np.intp)  # (n, n-1)
    rows = np.broadcast_to(keep[:, None, :, None], (n, n, n - 1, n - 1))
    cols = np.broadcast_to(keep[None, :, None, :], (n, n, n - 1, n - 1))
    return rows, cols


def _cofactor_vjp(F: Any, g: Any, y: Any, x: Any) -> Any:
    # cofactor[i, j] = (-1)**(i+j) det(minor i, j): its VJP gathers the minors, weights each one's own
    # cofactors by g[i, j] (-1)**(i+j) and scatters them back. Exact at singular matrices too, and
    # differentiable again (the minors' cofactors are this op once more, on smaller matrices).
    shape = shape_of(x)
    n = shape[-1]
    if n <= 1:
        return F.zeros_like(x)
    rows, cols = _minor_index(n)
    index = (slice(None),) * (len(shape) - 2) + (rows, cols)
    sign = np.where(np.add.outer(np.arange(n), np.arange(n)) % 2 == 0, 1.0, -1.0)
    minors = F.getitem(x, index=index)
    weighted = F.expand_dims(F.expand_dims(g * sign, -1), -1) * F.cofactor(minors)
    return F.scatter(weighted, index=index, shape=shape)


def _det_vjp(F: Any, g: Any, y: Any, x: Any) -> Any:
    # d det / dx is the cofactor matrix: one op, robust at singular matrices, so the same formula
    # serves the tape, the compiled backward pass and higher derivatives.
    return F.expand_dims(F.expand_dims(g, -1), -1) * F.cofactor(x)


register(
    "cofactor",
    _cofactor,
    _cofactor_vjp,
    kind="linalg",
    shape=_inv_shape,
    dtype=probe_on(np.linalg.inv, (1, 1)),
    batch=batching.direct,
    numpy=(),
    doc="the cofactor matrix det(A) * inv(A).T, defined for singular A too (the gradient of det)",
)
register(
    "det",
    np.linalg.det,
    _det_vjp,
    kind="linalg",
    shape=_det_shape,
    dtype=probe_on(np.linalg.det, (1, 1)),
    analytic=True,
    batch=batching.direct,
)
register(
    "solve",
    np.linalg.solve,
    _solve_vjp_a,
    lambda F, g, y, a, b: F.solve(_swap(F, a), g),
    args=("a", "b"),
    kind="linalg",
    shape=_solve_shape,
    dtype=probe_on(np.linalg.solve, (1, 1), (1,)),
    analytic=True,
    batch=batching.solve,
)
register(
    "diag",
    np.diag,
    _diag_vjp,
    params=(("k", 0),),
    kind="linalg",
    shape=_diag_shape,
    analytic=True,
    batch=batching.diag,
    mask_through=True,
    linear=True,
)


# ----------------------------------------------------------------------------------------
# einsum with explicit subscripts: einsum("ij,j->i", A, x)

_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"  # string.ascii_letters (not imported at start-up)


def _einsum_spec(subscripts: Any, n: int) -> tuple[list[str], str]:
    """The operands' subscripts and the output's, checked; ValueError/TypeError in numpy's cases and ours."""
    if not isinstance(subscripts, str):
        raise TypeError(f"einsum: the subscripts must be a string such as 'ij,j->i', not {subscripts!r}")
    s = subscripts.replace(" ", "")
    if "." in s:
        raise ValueError("einsum: '...' is not supported: name every axis")
    if s.count("->") != 1:
        raise ValueError(f"einsum: write the output explicitly, as in 'ij,j->i' (got {subscripts!r})")
    left, out = s.split("->")
    terms = left.split(",")
    if len(terms) != n:
        raise ValueError(f"einsum: {subscripts!r} names {len(terms)} operand(s), but {n} were given")
    for t in terms + [out]:
        bad = [c for c in t if c not in _LETTERS]
        if bad:
            raise ValueError(f"einsum: {bad[0]!r} is not an axis letter in {subscripts!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"einsum: the output {out!r} repeats an axis")
    missing = [c for c in out if c not in left]
    if missing:
        raise ValueError(f"einsum: the output axis {missing[0]!r} is in no operand")
    return terms, out


def _einsum_sizes(terms: list[str], shapes: Any) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for k, (t, s) in enumerate(zip(terms, shapes)):
        if len(t) != len(s):
            raise ValueError(f"einsum: operand {k + 1} has shape {tuple(s)}, but {t!r} names {len(t)} axes")
        for c, d in zip(t, s):
            if sizes.setdefault(c, d) != d:
                raise ValueError(f"einsum: axis {c!r} has sizes {sizes[c]} and {d}")
    return sizes


def _einsum(*xs: Any, subscripts: Any = None) -> Any:
    terms, out = _einsum_spec(subscripts, len(xs))
    _einsum_sizes(terms, [np.shape(x) for x in xs])  # numpy would broadcast a size-1 axis: we do not
    return np.einsum(",".join(terms) + "->" + out, *xs)


def _einsum_shape(*shapes: Shape, subscripts: Any = None, **_: Any) -> Shape:
    terms, out = _einsum_spec(subscripts, len(shapes))
    sizes = _einsum_sizes(terms, shapes)
    return tuple(sizes[c] for c in out)


def _einsum_vjp(i: int) -> Any:
    """Operand i's VJP: an einsum of g with the other operands, written out to operand i's subscripts.

    An axis repeated in operand i (a diagonal, 'ii') gets a fresh letter tied to the first by an
    identity; an axis of operand i that nothing else has (summed away) comes from a ones vector.
    """

    def vjp(F: Any, g: Any, y: Any, *xs: Any, subscripts: Any = None) -> Any:
        terms, out = _einsum_spec(subscripts, len(xs))
        sizes = _einsum_sizes(terms, [shape_of(x) for x in xs])
        fresh = (c for c in _LETTERS if c not in set("".join(terms)))
        specs = [out] + [t for j, t in enumerate(terms) if j != i]
        operands = [g] + [x for j, x in enumerate(xs) if j != i]
        seen: list[str] = []
        wanted = []
        for c in terms[i]:
            if c in seen:
                r = next(fresh)
                specs.append(c + r)
                operands.append(np.eye(sizes[c], dtype=bool))
                wanted.append(r)
            else:
                seen.append(c)
                wanted.append(c)
        for c in seen:
            if c not in "".join(specs):
                specs.append(c)
                operands.append(np.ones(sizes[c], dtype=bool))
        return F.einsum(*operands, subscripts=",".join(specs) + "->" + "".join(wanted))

    return vjp


def _einsum_batch(apply: Any, B: int, op: Any, node: Any, args: tuple, batched: tuple, shapes: tuple) -> Any:
    """One more letter, for the batch axis, on every batched operand and in front of the output."""
    terms, out = _einsum_spec(node.params.get("subscripts"), len(args))
    b = next(c for c in _LETTERS if c not in set("".join(terms)))
    terms = [b + t if flag else t for t, flag in zip(terms, batched)]
    return apply(op, args, {**node.params, "subscripts": ",".join(terms) + "->" + b + out})


register(
    "einsum",
    _einsum,
    _einsum_vjp,
    args=("*xs",),
    params=(("subscripts", None),),
    lead=("subscripts",),
    spread=True,
    kind="linalg",
    shape=_einsum_shape,
    dtype=result_dtype,
    analytic=True,
    batch=_einsum_batch,
    doc="Einstein summation with explicit subscripts: einsum('ij,j->i', A, x) (Python API only, for now)",
)
