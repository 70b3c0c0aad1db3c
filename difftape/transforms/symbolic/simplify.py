"""Simplifying constructors: every symbolic node is built here, already in canonical form.

There is no separate "simplify pass": each constructor sees children that are already
simplified and applies local rules, so building a derivative bottom-up (as the reverse
pass does) simplifies it without ever recursing over an expression. The rules keep the
value wherever both forms are finite (``0*a -> 0`` and ``a/a -> 1`` only differ where
``a`` is infinite, nan or 0 respectively), never change a shape (``fit`` re-broadcasts),
and lean the way the tape does at masked positions: ``where(c, a, 0) * b`` becomes
``where(c, a*b, 0)``, which is 0 where the tape's nan-safe ``where`` gives 0.

Canonical forms: sums are flat with like terms collected (``2*x + 3*x -> 5*x``) and
common factors pulled out (``exp(x)*sin(x) + exp(x)*cos(x) -> exp(x)*(cos(x) + sin(x))``,
``cos(x)/x - sin(x)/x**2 -> (x*cos(x) - sin(x))/x**2``); products are flat with powers
collected (``x*x -> x**2``) and a rational coefficient; divisions are negative powers;
constants fold. Reductions, shapes, indexing and linear algebra are in :mod:`.shapes`.
``F`` is the namespace the op table's VJPs run against.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from fractions import Fraction
from types import SimpleNamespace
from typing import Any

import numpy as np

from difftape.errors import DifftapeError
from difftape.ops import OPS
from difftape.transforms.symbolic.expr import Expr, Num, Shape, as_num, const, lift, make, postorder, sort_key

WEAK = (bool, int, float)
#: A product with more factors stays one factor of a product that uses it: flattening it
#: everywhere would copy it into every user (quadratic output for long chains of products).
FLATTEN = 8

# ----------------------------------------------------------------------------------------
# numbers and static rules


def _is_int(e: Num) -> bool:
    return isinstance(e, int) or (isinstance(e, Fraction) and e.denominator == 1) or (
        isinstance(e, float) and e.is_integer())


def _npow(v: Any, e: Num) -> Num:
    """v**e for Python numbers with numpy's answers at the edges (0**-1 = inf, (-1)**0.5 = nan)."""
    v = int(v) if isinstance(v, bool) else v
    try:
        if _is_int(e) and abs(e) > 64 and v not in (0, 1, -1):
            with np.errstate(all="ignore"):
                return as_num(np.power(float(v), float(e)))
        if isinstance(v, float) or isinstance(e, float) or (not _is_int(e) and v < 0):
            with np.errstate(all="ignore"):
                return as_num(np.power(float(v), float(e)))
        r = v ** e  # exact for ints and Fractions
        return as_num(r if not isinstance(r, complex) else float("nan"))
    except ZeroDivisionError:
        return float("inf")
    except OverflowError:
        return float("inf")


def _nmul(a: Num, b: Num) -> Num:
    return as_num(a * b)


def _nadd(a: Num, b: Num) -> Num:
    return as_num(a + b)


def bshape(*shapes: Shape) -> Shape:
    """Broadcast shape, or a shape error."""
    first = shapes[0] if shapes else ()
    if all(s == first for s in shapes):
        return first
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise DifftapeError("shape", f"shapes {', '.join(map(str, shapes))} do not broadcast") from None


def is_weak(d: Any) -> bool:
    """A Python literal's type (``np.dtype(bool) == bool`` holds, so this compares identity)."""
    return any(d is w for w in WEAK)


def _norm_dtype(d: Any) -> Any:
    if is_weak(d):
        return d
    return np.dtype(d)


def _probe(d: Any) -> Any:
    if d is bool:
        return True
    if d is int:
        return 1
    if d is float:
        return 1.0
    return np.ones((), dtype=d)


def result_dtype(dtypes: list[Any], floaty: bool = False) -> Any:
    """numpy's promotion, keeping all-literal results weak (a Python type)."""
    strong = [d for d in dtypes if not is_weak(d)]
    if not strong:
        if floaty or any(d is float for d in dtypes):
            return float
        return int if any(d is int for d in dtypes) else bool
    dt = np.result_type(*(_probe(d) for d in dtypes))
    if floaty and dt.kind not in "fc":
        dt = np.dtype(np.float64)
    return dt


def _op_dtype(name: str, dtypes: list[Any], params: dict[str, Any]) -> Any:
    try:
        return _norm_dtype(OPS[name].dtype(*dtypes, **params))
    except Exception:  # noqa: BLE001 - a dtype probe is a best effort; float is what gradients are
        return np.dtype(np.float64)


def _op_shape(name: str, shapes: list[Shape], params: dict[str, Any]) -> Shape:
    try:
        return tuple(OPS[name].shape(*shapes, **params))
    except (ValueError, TypeError, IndexError) as exc:
        raise DifftapeError("shape", f"{name}: {exc}") from None


_KEEPDIMS = ("sum", "mean", "prod", "max", "min", "var", "std", "logsumexp", "norm")


def unpad(e: Expr, depth: int = 6) -> Expr:
    """``e`` without leading length-1 axes that only a reshape or ``keepdims`` added."""
    if not e.shape or e.shape[0] != 1:
        return e
    if e.op == "const":
        k = next((i for i, n in enumerate(e.shape) if n != 1), e.ndim)
        value = e.value.reshape(e.shape[k:]) if isinstance(e.value, np.ndarray) else e.value
        return const(value, e.shape[k:], e.dtype)
    if depth > 0 and e.args and (_pointwise(e)):
        args = tuple(unpad(a, depth - 1) for a in e.args)
        if any(a is not b for a, b in zip(args, e.args)) and len(bshape(*(a.shape for a in args))) < e.ndim:
            return rebuild(e, args)
        return e
    if e.op == "reshape":
        inner = e.args[0]
        k = e.ndim - inner.ndim
        if k > 0 and e.shape[k:] == inner.shape and all(s == 1 for s in e.shape[:k]):
            return inner
    if e.op in _KEEPDIMS and e.param("keepdims"):
        axes = e.param("axis")
        if axes == tuple(range(len(axes))):  # only leading axes reduced
            return call(e.op, e.args, {**dict(e.params), "keepdims": False})
    return e


def _unpad_args(xs: tuple[Expr, ...]) -> tuple[Expr, ...]:
    """Elementwise operands without padding axes, when the broadcast shape stays the same."""
    new = tuple(unpad(x) for x in xs)
    if any(a is not b for a, b in zip(new, xs)) and bshape(*(x.shape for x in new)) == bshape(*(x.shape for x in xs)):
        return new
    return xs


def node(name: str, xs: tuple[Expr, ...], params: dict[str, Any]) -> Expr:
    """A plain table-op node with its static shape and dtype (no rewriting but padding)."""
    op = OPS[name]
    if op.kind in ("elementwise", "compare") and len(xs) > 1:
        xs = _unpad_args(xs)
    ordered = tuple((k, params[k]) for k, _ in op.params)
    shape = _op_shape(name, [x.shape for x in xs], params)
    dtype = _op_dtype(name, [x.dtype for x in xs], params)
    out = make(name, xs, ordered, shape=shape, dtype=dtype)
    if not out.free and op.kind not in ("constructor",) and xs:
        return _fold(out)
    return out


def _fold(e: Expr) -> Expr:
    """Replace a constant subexpression by its value when that prints no longer (small, integral)."""
    from difftape.transforms.symbolic.evaluate import evaluate

    if int(np.prod(e.shape, dtype=np.int64)) > 8:
        return e
    try:
        with np.errstate(all="ignore"):
            v = np.asarray(evaluate(e, {}))
    except Exception:  # noqa: BLE001 - keep the expression when numpy refuses
        return e
    if v.dtype.kind == "b" or (v.dtype.kind in "iuf" and np.all(np.isfinite(v)) and np.all(v == np.round(v))):
        return const(v if v.ndim else v[()], v.shape, e.dtype)
    return e


def _materialize(e: Expr) -> Expr:
    """A constant product or sum of array constants (``[1, 2]*ones((3, 2))``) as one array."""
    if e.free or e.op not in ("times", "plus") or _size(e.shape) > 10_000:
        return e
    if any(n.op not in ("times", "plus", "const") for n in postorder(e)):
        return e
    from difftape.transforms.symbolic.evaluate import evaluate

    with np.errstate(all="ignore"):
        v = np.asarray(evaluate(e, {}))
    return const(np.broadcast_to(v, e.shape), e.shape, e.dtype)


# ----------------------------------------------------------------------------------------
# shapes


def fit(e: Expr, shape: Shape) -> Expr:
    """``e`` broadcast to ``shape`` (a constant is re-shaped; anything else times ``ones(shape)``)."""
    shape = tuple(shape)
    if e.shape == shape:
        return e
    if bshape(e.shape, shape) != shape:
        raise DifftapeError("shape", f"cannot broadcast shape {e.shape} to {shape}")
    if e.op == "const":
        value = e.value if not isinstance(e.value, np.ndarray) else np.broadcast_to(e.value, shape)
        return const(value, shape, e.dtype)
    if e.op == "where" and _uniform(e.args[2]):
        return where(e.args[0], e.args[1], fit(e.args[2], shape))
    if _is_bool(e):  # broadcasting a mask: keep it boolean
        return call("logical_or", (e, const(False, shape, np.dtype(bool))), {})
    return prod_of([(e, 1), (const(1, shape), 1)])


def _uniform(e: Expr) -> bool:
    return e.op == "const" and not isinstance(e.value, np.ndarray)


def _is_bool(e: Expr) -> bool:
    return _is_bool_dtype(e.dtype)


def _is_bool_dtype(d: Any) -> bool:
    return d is bool or (not is_weak(d) and np.dtype(d).kind == "b")


def _size(shape: Shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


# ----------------------------------------------------------------------------------------
# products

#: Non-empty while :func:`unguard` rebuilds a derivative for printing: the rewrites that change the value
#: at isolated points (``x * x**(x - 1) -> x**x``, ``x**2 * (1/x**2 + 1) -> x**2 + 1``, recorded) run then.
_CLEAN: list[bool] = []

#: Open :func:`recording` logs: the bases of the cancellations ``x/x -> 1`` made meanwhile.
_RECORDS: list[list[Expr]] = []


@contextlib.contextmanager
def recording() -> Iterator[list[Expr]]:
    """Collect the bases that products cancel (``x*x**-1``) while building, in a list.

    Such a cancellation is kept (``x/x`` is 1, as a person writes it), but the value it
    replaces is not finite where the base is 0: :mod:`.notes` says so beside the derivative.
    """
    log: list[Expr] = []
    _RECORDS.append(log)
    try:
        yield log
    finally:
        _RECORDS.remove(log)


def _is_zero(e: Expr) -> bool:
    return e.op == "const" and not isinstance(e.value, np.ndarray) and not isinstance(e.value, bool) and e.value == 0


def _split(t: Expr) -> tuple[Num, Expr]:
    """(coefficient, monomial) of a term: ``-3*x**2`` -> (-3, x**2)."""
    if t.op != "times" or t.value == 1:
        return 1, t
    if len(t.args) == 1 and t.exps[0] == 1:
        return t.value, t.args[0]
    dtype = _times_dtype(list(zip(t.args, t.exps)), 1)
    return t.value, make("times", t.args, value=1, exps=t.exps, shape=t.shape, dtype=dtype)


def _times_dtype(factors: list[tuple[Expr, Num]], c: Num) -> Any:
    """numpy's dtype for the printed product: a product of masks (no coefficient, no powers) is a mask."""
    floaty = any(e < 0 or not _is_int(e) for _, e in factors) or not _is_int(c)
    dtypes = [b.dtype for b, _ in factors]
    if c != 1:
        dtypes.append(type(c) if isinstance(c, (int, float)) else float)
    if any(e != 1 for _, e in factors):
        dtypes.append(int)  # mask**2 is a number
    return result_dtype(dtypes, floaty=floaty)


def _factors(t: Expr) -> list[tuple[Expr, Num]]:
    if t.op == "times":
        return list(zip(t.args, t.exps))
    return [(t, 1)]


def _is_negative(t: Expr) -> bool:
    if t.op == "times":
        return not isinstance(t.value, bool) and t.value < 0
    return t.op == "const" and not isinstance(t.value, (np.ndarray, bool)) and t.value < 0


def _record(base: Expr) -> None:
    if _RECORDS:
        _RECORDS[-1].append(base)


def _merge_powers(factors: list[tuple[Expr, Num]]) -> list[tuple[Expr, Num]] | None:
    """``x * x**(y - 1) -> x**y``: a numeric power of a base joins a symbolic power of the same base;
    ``sqrt(b) * b -> b**1.5``."""
    exps = {id(b): (b, e) for b, e in factors}
    for r, e in factors:
        if r.op == "sqrt" and id(r.args[0]) in exps:
            b = r.args[0]
            k = exps[id(b)][1]
            return [(f, x) for f, x in factors if f is not b and f is not r] + [(b, _nadd(k, Fraction(1, 2) * e))]
    for p, e in factors:
        if p.op != "power" or e != 1 or id(p.args[0]) not in exps:
            continue
        b = p.args[0]
        k = exps[id(b)][1]
        _record(b)  # b * b**(y-1) is 0*inf where b = 0 and y < 1
        new = power(b, add(p.args[1], k))
        return [(f, x) for f, x in factors if f is not b and f is not p] + [(new, 1)]
    return None


def _cancel_denominators(factors: list[tuple[Expr, Num]]) -> list[tuple[Expr, Num]] | None:
    """``x**2 * (1/x**2 + 1) -> x**2 + 1``: a sum's common denominator cancels against the product."""
    outside = {id(b): e for b, e in factors}
    for j, (sm, e) in enumerate(factors):
        if sm.op != "plus" or not _is_int(e) or len(sm.args) > 8:
            continue
        maps = [{id(b): (b, x) for b, x in _factors(_split(t)[1])} for t in sm.args]
        for key, (b, _) in {k: v for m in maps for k, v in m.items()}.items():
            if key not in outside or b.op == "const":
                continue
            low = min(m[key][1] if key in m else 0 for m in maps)
            if low >= 0 or not (outside[key] * e * low < 0):
                continue
            terms = [prod_of([(t, 1), (b, -low)]) for t in sm.args]
            _record(b)
            rest = [(f, x) for k2, (f, x) in enumerate(factors) if k2 != j]
            return rest + [(sum_of(terms), e), (b, as_num(e * low))]
    return None


def prod_of(items: list[tuple[Expr, Num]], coeff: Num = 1) -> Expr:
    """The canonical product ``coeff * prod(base**exp)``."""
    full = bshape(*(b.shape for b, _ in items)) if items else ()
    c: Num = as_num(coeff)
    order: list[int] = []
    acc: dict[int, list[Any]] = {}
    array: np.ndarray | None = None
    array_dtype: Any = None
    queue = list(items)
    i = 0
    while i < len(queue):
        base, e = queue[i]
        i += 1
        e = as_num(e)
        if e == 0:
            continue
        if base.op == "const":
            if isinstance(base.value, np.ndarray):
                with np.errstate(all="ignore"):
                    v = np.power(base.value.astype(np.float64) if not _is_int(e) or e < 0 else base.value, e)
                array = v if array is None else array * v
                array_dtype = base.dtype
            else:
                c = _nmul(c, _npow(base.value, e))
            continue
        if base.op == "times" and (e == 1 or _is_int(e)) and (len(base.args) <= FLATTEN or e != 1):
            c = _nmul(c, _npow(base.value, e))
            queue.extend((b2, _nmul(e2, e)) for b2, e2 in zip(base.args, base.exps))
            continue
        if base.op == "sqrt" and _is_int(e) and int(e) % 2 == 0:
            queue.append((base.args[0], as_num(Fraction(int(e), 2))))
            continue
        base = unpad(base)  # leading 1s: broadcasting adds them by itself (a carrier keeps the shape)
        key = id(base)
        if key in acc:
            old = acc[key][1]
            if _RECORDS and (old < 0) != (e < 0):
                _RECORDS[-1].append(base)  # x/x: the product was 0/0 where base is 0
            acc[key][1] = _nadd(old, e)
        else:
            acc[key] = [base, e]
            order.append(key)
    if isinstance(c, (int, Fraction)) and c == 0 or (isinstance(c, float) and c == 0.0):
        return const(0, full)
    if array is not None:
        with np.errstate(all="ignore"):
            array = array * float(c) if c != 1 else array
        c = 1
        array = np.asarray(array)
        if _is_bool_dtype(array_dtype) and array.dtype.kind != "b":
            array_dtype = array.dtype  # a mask times a number (or to a power) is a number
        arr_const = const(array, None, array_dtype)
        if arr_const.op == "const" and not isinstance(arr_const.value, np.ndarray):
            c = as_num(arr_const.value)
            if c == 0:
                return const(0, full)
        else:
            acc[id(arr_const)] = [arr_const, 1]
            order.append(id(arr_const))
    factors = [(acc[k][0], acc[k][1]) for k in order if acc[k][1] != 0]
    if _CLEAN and 1 < len(factors) <= FLATTEN:
        merged = _merge_powers(factors) or _cancel_denominators(factors)
        if merged is not None:
            return prod_of(merged + ([(const(1, full), 1)] if bshape(*(b.shape for b, _ in merged)) != full else []),
                           c)
    # the tape's nan-safe where: push the other factors into the non-zero branch
    for j, (b, e) in enumerate(factors):
        if b.op == "where" and e == 1 and (len(factors) > 1 or c != 1):
            cond, x, y = b.args
            zero_y, zero_x = _is_zero(y), _is_zero(x)
            if zero_y or zero_x:
                others = factors[:j] + factors[j + 1:]
                branch = prod_of(others + [(x if zero_y else y, 1)], c)
                out = where(cond, branch, 0) if zero_y else where(cond, 0, branch)
                return fit(out, full)
    if not factors:
        return const(c, full)
    if c == -1 and len(factors) == 1 and factors[0][1] == 1 and factors[0][0].op == "plus":
        return fit(sum_of([negative(t) for t in factors[0][0].args]), full)  # -(a + b) -> -a - b
    if _CLEAN and not isinstance(c, float) and c < 0:
        # -(6*x - 2*x**3)/d -> (2*x**3 - 6*x)/d: the sign goes into a sum whose terms are mostly negative
        for j, (b, e) in enumerate(factors):
            if b.op == "plus" and e == 1 and len(b.args) <= 6 and sum(
                    _is_negative(t) for t in b.args) * 2 >= len(b.args):
                flipped = sum_of([negative(t) for t in b.args])
                return prod_of(factors[:j] + [(flipped, 1)] + factors[j + 1:] + [(const(1, full), 1)], -c)
    covered = bshape(*(b.shape for b, _ in factors))
    if covered != full:
        factors = [(b, e) for b, e in factors if not (b.op == "const" and b.is_const(1))]
        factors.append((const(1, full), 1))
    if len(factors) == 1 and factors[0][1] == 1 and c == 1:
        return factors[0][0]
    if len(factors) == 2 and all(e == 1 for _, e in factors):
        (u, _), (v, _) = factors
        for col, row in ((u, v), (v, u)):  # reshape(u, (n, 1)) * v is outer(u, v)
            if col.op == "reshape" and col.ndim == 2 and col.shape[1] == 1 and col.args[0].ndim == 1 and row.ndim == 1:
                out = call("outer", (col.args[0], row), {})
                return out if c == 1 else prod_of([(out, 1)], c)
    factors.sort(key=lambda f: sort_key(f[0]))
    dtype = _times_dtype(factors, c)
    return make("times", tuple(b for b, _ in factors), value=c, exps=tuple(e for _, e in factors), shape=full,
                dtype=dtype)


# ----------------------------------------------------------------------------------------
# sums


def _term_key(t: Expr) -> tuple:
    key = t.tkey
    if key is None:
        _, mono = _split(t)
        key = t.tkey = tuple((sort_key(b), -float(e)) for b, e in _factors(mono))
    return key


def _scale(mono: Expr, c: Num) -> Expr:
    return mono if c == 1 else prod_of([(mono, 1)], c)


def sum_of(terms: list[Expr], *, merge: bool = True) -> Expr:
    """The canonical sum: flat, like terms collected, common factors pulled out."""
    full = bshape(*(t.shape for t in terms)) if terms else ()
    if len(terms) > 1:
        terms = list(_unpad_args(tuple(terms)))
    if 1 < len(terms) <= 12:
        terms = _expand_to_collect(terms)
    total: Num = 0
    array: np.ndarray | None = None
    order: list[int] = []
    groups: dict[int, list[Any]] = {}
    queue = list(terms)
    i = 0
    while i < len(queue):
        t = queue[i]
        i += 1
        if t.op == "plus":
            queue.extend(t.args)
            continue
        if t.op == "const":
            if isinstance(t.value, np.ndarray):
                v = t.value.astype(np.int64) if t.value.dtype.kind == "b" else t.value  # terms add as numbers
                array = v if array is None else array + v
            else:
                total = _nadd(total, int(t.value) if isinstance(t.value, bool) else t.value)
            continue
        c, mono = _split(t)
        if id(mono) in groups:
            groups[id(mono)][1] = _nadd(groups[id(mono)][1], c)
            groups[id(mono)][2] = None
        else:
            groups[id(mono)] = [mono, c, t]
            order.append(id(mono))
    pairs = [(groups[k][0], groups[k][1]) for k in order if groups[k][1] != 0]
    original = {id(groups[k][0]): groups[k][2] for k in order}
    if merge:
        merged = _merge_wheres(pairs)
        if merged is not pairs:
            # A merged where may fold to a term with a coefficient (where(c, -a, -a) is -a) or to a
            # like term of another one: collect the terms again (the rest below assumes monomials).
            again = [_scale(m, c) if original.get(id(m)) is None else original[id(m)] for m, c in merged]
            if array is not None:
                again.append(const(array))
            if total != 0:
                again.append(const(total))
            return fit(sum_of(again, merge=False), full) if again else const(0, full)
    if array is not None:
        arr = const(array + float(total) if total != 0 else array)
        if arr.op == "const" and not isinstance(arr.value, np.ndarray):
            total, array = as_num(arr.value), None
        else:
            total, array = 0, arr.value  # the number is in the array now
    if _CLEAN and 2 <= len(pairs) + (total != 0) <= 8 and array is None:
        pulled = _pull_constant(pairs, total)
        if pulled is not None:
            return fit(pulled, full)
    if _CLEAN and 2 <= len(pairs) <= 8:
        together = _together(pairs, total, array)
        if together is not None:
            return fit(together, full)
    if _CLEAN and len(pairs) == 1 and total != 0 and array is None:
        pythagoras = _pythagoras(pairs[0], total)
        if pythagoras is not None:
            return fit(pythagoras, full)
    if len(pairs) >= 2 and total == 0 and array is None:
        factored = _factor(pairs)
        if factored is not None:
            return fit(factored, full)
    out = [_scale(m, c) if original.get(id(m)) is None else original[id(m)] for m, c in pairs]
    if array is not None:
        out.append(const(array))
    if total != 0:
        out.append(const(total))
    if not out:
        return const(0, full)
    if len(out) == 1:
        return fit(out[0], full)
    out.sort(key=lambda t: (t.op == "const", _term_key(t)))
    dtype = result_dtype([t.dtype for t in out])
    result = make("plus", tuple(out), shape=bshape(*(t.shape for t in out)), dtype=dtype)
    return fit(result, full)


def _polynomial(t: Expr, depth: int = 2) -> bool:
    """A monomial of names (or a sum of such, one level down) with a number coefficient."""
    if t.op in ("name", "const"):
        return t.op == "name" or not isinstance(t.value, np.ndarray)
    if t.op == "times":
        return all((b.op == "name" and _is_int(e) and e > 0) or (depth > 0 and b.op == "plus" and e == 1 and all(
            _polynomial(a, depth - 1) for a in b.args)) for b, e in zip(t.args, t.exps))
    if t.op == "plus" and depth > 0:
        return all(_polynomial(a, depth - 1) for a in t.args)
    return False


#: f(u)**2 * k + c -> c * g(u)**e when k == sign*c: 1 - tanh**2 = 1/cosh**2, tan**2 + 1 = 1/cos**2, ...
_PYTHAGORAS = {"tanh": (-1, "cosh", -2), "tan": (1, "cos", -2), "sinh": (1, "cosh", 2)}


def _expand(e: Expr, limit: int = 24) -> Expr | None:
    """``e`` multiplied out (products of sums, integer powers of sums), or None when it grows past ``limit``."""
    if e.op == "plus":
        parts = [_expand(t, limit) for t in e.args]
        if any(p is None for p in parts):
            return None
        return sum_of(parts)  # type: ignore[arg-type]
    if e.op != "times":
        return e
    terms: list[Expr] = [const(e.value, ())]
    for b, x in zip(e.args, e.exps):
        if b.op == "plus" and _is_int(x) and 0 < x <= 3:
            for _ in range(int(x)):
                terms = [multiply(t, a) for t in terms for a in b.args]
                if len(terms) > limit:
                    return None
        else:
            terms = [prod_of([(t, 1), (b, x)]) for t in terms]
    return sum_of(terms) if len(terms) > 1 else terms[0]


def _together(pairs: list[tuple[Expr, Num]], total: Num, array: Any) -> Expr | None:
    """``2*x**3/(x**2 + 1)**2 - 2*x/(x**2 + 1) -> -2*x/(x**2 + 1)**2``: terms over powers of one sum put
    over their common denominator when the numerator, multiplied out, collects into something shorter."""
    from difftape.transforms.symbolic.printer import to_text

    if array is not None:
        return None
    by_base: dict[int, list[int]] = {}
    bases: dict[int, Expr] = {}
    for idx, (m, _) in enumerate(pairs):
        for b, x in _factors(m):
            if b.op == "plus" and x < 0 and _is_int(x):
                by_base.setdefault(id(b), []).append(idx)
                bases[id(b)] = b
    for key, idxs in by_base.items():
        if len(idxs) < 2:
            continue
        b = bases[key]
        low = min(dict((id(f), x) for f, x in _factors(pairs[i][0]))[key] for i in idxs)
        nums = []
        for i in idxs:
            m, c = pairs[i]
            nums.append(_scale(prod_of([(m, 1), (b, -low)]), c))
        num = _expand(sum_of(nums))
        if num is None:
            continue
        rest = [_scale(m, c) for i, (m, c) in enumerate(pairs) if i not in idxs]
        if total != 0:
            rest.append(const(total))
        new = sum_of(rest + [prod_of([(num, 1), (b, low)])])
        before = [_scale(m, c) for m, c in pairs] + ([const(total)] if total != 0 else [])
        if len(to_text(new)) < sum(len(to_text(t)) + 3 for t in before) - 3:
            return new
    return None


def _pull_constant(pairs: list[tuple[Expr, Num]], total: Num) -> Expr | None:
    """``4/log(10) - 2*x**2/log(10) -> (4 - 2*x**2)/log(10)``: a known constant every coefficient has."""
    from difftape.transforms.symbolic.formats import KNOWN, exact_constant

    coeffs = [c for _, c in pairs] + ([total] if total != 0 else [])
    if not all(isinstance(c, float) for c in coeffs):
        return None
    found = [exact_constant(c) for c in coeffs]
    if any(f is None for f in found) or len({(f[1], f[2]) for f in found}) != 1:  # type: ignore[index]
        return None
    _, k, e = found[0]  # type: ignore[misc]
    terms = [_scale(m, as_num(f[0])) for (m, _), f in zip(pairs, found)]  # type: ignore[index]
    if total != 0:
        terms.append(const(as_num(found[-1][0])))  # type: ignore[index]
    return prod_of([(sum_of(terms), 1)], KNOWN[k][3] ** e)


def _pythagoras(pair: tuple[Expr, Num], total: Num) -> Expr | None:
    """``1 - tanh(u)**2 -> cosh(u)**-2`` (and ``tan(u)**2 + 1``, ``sinh(u)**2 + 1``): printing only."""
    m, k = pair
    if m.shape != () or m.op != "times" or len(m.args) != 1 or m.exps[0] != 2 or m.args[0].op not in _PYTHAGORAS:
        return None
    sign, other, e = _PYTHAGORAS[m.args[0].op]
    if k != sign * total:
        return None
    return prod_of([(call(other, (m.args[0].args[0],), {}), e)], total)


def _expand_to_collect(terms: list[Expr]) -> list[Expr]:
    """``8*x + 2*x*(4*x**2 + 2) -> 8*x**3 + 12*x``: a product with a sum is multiplied out when one of
    the terms it gives is a like term of the rest of the sum (so that they collect)."""
    flat: list[Expr] = []
    for t in terms:
        flat.extend(t.args if t.op == "plus" else [t])
    if not all(_polynomial(t) for t in flat):
        return terms
    monos = {id(_split(t)[1]) for t in flat}
    out: list[Expr] = []
    changed = False
    for t in flat:
        if t.op == "times" and len(t.args) <= FLATTEN:
            inner = [(b, e) for b, e in zip(t.args, t.exps) if b.op == "plus" and e == 1 and len(b.args) <= 6]
            if len(inner) == 1:
                sm = inner[0][0]
                rest = [(b, e) for b, e in zip(t.args, t.exps) if b is not sm]
                parts = [prod_of(rest + [(p, 1)], t.value) for p in sm.args]
                others = monos - {id(_split(t)[1])}
                if any(id(_split(p)[1]) in others for p in parts):
                    out.extend(parts)
                    changed = True
                    continue
        out.append(t)
    return out if changed else terms


def _merge_wheres(pairs: list[tuple[Expr, Num]]) -> list[tuple[Expr, Num]]:
    """``where(c, a, b) + k*where(c, p, q) -> where(c, a + k*p, b + k*q)``."""
    by_cond: dict[int, list[int]] = {}
    for idx, (m, _) in enumerate(pairs):
        if m.op == "where":
            by_cond.setdefault(id(m.args[0]), []).append(idx)
    if all(len(v) < 2 for v in by_cond.values()):
        return pairs
    out: list[tuple[Expr, Num]] = []
    merged: set[int] = set()
    for idx, (m, c) in enumerate(pairs):
        if idx in merged:
            continue
        group = by_cond.get(id(m.args[0]), []) if m.op == "where" else []
        if len(group) < 2:
            out.append((m, c))
            continue
        merged.update(group)
        cond = m.args[0]
        a = sum_of([_scale(pairs[j][0].args[1], pairs[j][1]) for j in group])
        b = sum_of([_scale(pairs[j][0].args[2], pairs[j][1]) for j in group])
        out.append((where(cond, a, b), 1))
    return out


def _factor(pairs: list[tuple[Expr, Num]]) -> Expr | None:
    """Pull common factors out of a sum; None when there are none worth pulling.

    A factor is common when every term has it with exponents of one sign; the smallest
    exponent comes out (so common denominators come out whole). Plain powers of names
    stay inside (``x**2 + x`` is what a person writes), other factors come out.
    """
    maps = [{id(b): (b, e) for b, e in _factors(m)} for m, _ in pairs]
    common: list[tuple[Expr, Num]] = []
    for key, (b, _) in maps[0].items():
        if (b.op == "const" and not b.is_const(1)) or not all(key in m for m in maps):
            continue
        exps = [m[key][1] for m in maps]
        if all(e > 0 for e in exps):
            e = min(exps)
            if b.op == "name" or (b.op == "getitem" and b.args[0].op == "name"):
                continue
        elif all(e < 0 for e in exps):
            e = min(exps)
        else:
            continue
        common.append((b, e))
    coeffs = [c for _, c in pairs]
    if all(c == coeffs[0] for c in coeffs) and coeffs[0] not in (1, -1):
        k: Num = coeffs[0]
    elif common and all(c < 0 for c in coeffs):
        k = -1
    else:
        k = 1
    if not common and k == 1:
        return None
    rest: list[Expr] = []
    for (_, c), fmap in zip(pairs, maps):
        items = []
        for b, e in fmap.values():
            for cb, ce in common:
                if cb is b:
                    e = _nadd(e, -ce)
            if e != 0:
                items.append((b, e))
        mono = prod_of(items) if items else const(1, ())
        rest.append(_scale(mono, as_num(Fraction(c) / Fraction(k)) if not isinstance(c, float) and not isinstance(
            k, float) else as_num(c / k)))
    return prod_of(common + [(sum_of(rest), 1)], k)


# ----------------------------------------------------------------------------------------
# arithmetic entry points (the Expr operators and F.add/... land here)


def add(a: Any, b: Any) -> Expr:
    """a + b, collected into one canonical sum."""
    return sum_of([lift(a), lift(b)])


def subtract(a: Any, b: Any) -> Expr:
    """a - b as a + (-1)*b, so that a - a cancels."""
    return sum_of([lift(a), prod_of([(lift(b), 1)], -1)])


def multiply(a: Any, b: Any) -> Expr:
    """a * b, collected into one canonical product."""
    return prod_of([(lift(a), 1), (lift(b), 1)])


def divide(a: Any, b: Any) -> Expr:
    """a / b as a * b**-1 (a literal zero divisor stays a division: its inf is honest)."""
    a, b = lift(a), lift(b)
    if b.op == "const" and isinstance(b.value, (int, Fraction)) and b.value == 0:
        return node("divide", (a, b), {})
    return prod_of([(a, 1), (b, -1)])


def negative(a: Any) -> Expr:
    """-a as (-1)*a, so that signs collect with coefficients."""
    return prod_of([(lift(a), 1)], -1)


def power(a: Any, b: Any) -> Expr:
    """a ** b: a numeric exponent joins the product form (x*x is x**2), else a power node."""
    a, b = lift(a), lift(b)
    full = bshape(a.shape, b.shape)
    if b.op == "const" and not isinstance(b.value, np.ndarray) and not isinstance(b.value, bool):
        if a.op == "const":
            return _const_op("power", (a, b), full)
        if b.value == 0:
            return const(1, full)
        if isinstance(b.value, float) and not math.isfinite(b.value):
            return node("power", (a, b), {})
        return fit(prod_of([(a, b.value)]), full)
    if a.op == "const" and b.op == "const":
        return _const_op("power", (a, b), full)
    if a.is_const(1):
        return const(1, full)
    return node("power", (a, b), {})


def _const_op(name: str, xs: tuple[Expr, ...], shape: Shape, params: dict[str, Any] | None = None) -> Expr:
    """Fold an op on constants numerically."""
    vals = [x.value if isinstance(x.value, np.ndarray) else np.broadcast_to(
        np.asarray(float(x.value) if isinstance(x.value, Fraction) else x.value), x.shape) for x in xs]
    with np.errstate(all="ignore"):
        v = np.asarray(OPS[name].forward(*vals, **(params or {})))
    return const(v if v.ndim else v[()], shape)


# ----------------------------------------------------------------------------------------
# where and comparisons


def _pointwise(n: Expr) -> bool:
    """Whether each element of ``n`` depends only on the same (broadcast) element of its inputs."""
    if n.op in ("plus", "times", "guard"):
        return True
    op = OPS.get(n.op)
    return op is not None and op.kind in ("elementwise", "compare")


def _assume(root: Expr, cond: Expr, value: bool, limit: int = 400) -> Expr:
    """``root`` with ``cond`` replaced by a constant, through elementwise nodes only.

    Inside the branch of ``where(cond, a, b)`` that an element takes, ``cond`` has a known
    value at that element; that holds for the same element of elementwise children, not
    across a reduction, a reshape or a matmul.
    """
    seen: dict[int, Expr] = {}
    order: list[Expr] = []
    stack: list[tuple[Expr, bool]] = [(root, False)]
    found = False
    while stack:
        n, done = stack.pop()
        if done:
            order.append(n)
            continue
        if id(n) in seen:
            continue
        seen[id(n)] = n
        if len(seen) > limit:
            return root
        if n is cond:
            found = True
            continue
        stack.append((n, True))
        if _pointwise(n):
            stack.extend((a, False) for a in n.args if id(a) not in seen)
    if not found:
        return root
    new: dict[int, Expr] = {id(cond): const(value, cond.shape, np.dtype(bool))}
    for n in order:
        if not _pointwise(n):
            new[id(n)] = n
            continue
        args = tuple(new.get(id(a), a) for a in n.args)
        new[id(n)] = n if all(x is y for x, y in zip(args, n.args)) else rebuild(n, args)
    return new.get(id(root), root)


def substitute(root: Expr, mapping: dict[int, Expr]) -> Expr:
    """``root`` with nodes replaced (by id) and everything above them rebuilt (iteratively)."""
    done: dict[int, Expr] = {}
    for n in postorder(root):
        if id(n) in mapping:
            done[id(n)] = mapping[id(n)]
            continue
        new_args = tuple(done[id(a)] for a in n.args)
        if all(x is y for x, y in zip(new_args, n.args)):
            done[id(n)] = n
        else:
            done[id(n)] = rebuild(n, new_args)
    return done[id(root)]


def rebuild(n: Expr, args: tuple[Expr, ...]) -> Expr:
    """The node ``n`` with new children, through the simplifying constructors."""
    if n.op == "plus":
        return sum_of(list(args))
    if n.op == "times":
        return prod_of(list(zip(args, n.exps)), n.value)
    if n.op in ("const", "name", "random"):
        return n
    if n.op == "guard":
        return guard(*args)
    params = dict(n.params)
    if OPS[n.op].variadic:
        return call(n.op, (args,), params)
    return call(n.op, args, params)


def _is_true(e: Expr) -> bool | None:
    if e.op == "const" and not isinstance(e.value, np.ndarray):
        return bool(e.value)
    return None


def where(c: Any, a: Any, b: Any) -> Expr:
    """``where`` with constant conditions, equal branches and nested conditions folded."""
    c, a, b = lift(c), lift(a), lift(b)
    full = bshape(c.shape, a.shape, b.shape)
    truth = _is_true(c)
    if truth is not None:
        return fit(a if truth else b, full)
    if c.op == "const" and a.op == "const" and b.op == "const":
        return _const_op("where", (c, a, b), full)
    if a is b:
        return fit(a, full)
    ta, tb = _is_true(a), _is_true(b)
    if ta is not None and tb is not None and _is_bool(a) and _is_bool(b) and _is_bool(c):
        return fit(c if ta else call("logical_not", (c,), {}), full)  # where(c, True, False) is c
    if c.op in ("logical_or", "logical_and"):
        # a mask broadcast by or-ing with False (or and-ing with True): the where broadcasts anyway
        neutral = c.op == "logical_and"
        for p, q in ((c.args[0], c.args[1]), (c.args[1], c.args[0])):
            if _is_true(q) is neutral and bshape(p.shape, a.shape, b.shape) == full:
                return where(p, a, b)
    if c.op == "logical_not":
        return where(c.args[0], b, a)
    # where(c, where(c, p, q), b) is where(c, p, b): q is never taken, but its shape still counts
    if a.op == "where" and a.args[0] is c:
        return fit(where(c, a.args[1], b), full)
    if b.op == "where" and b.args[0] is c:
        return fit(where(c, a, b.args[2]), full)
    a2, b2 = _assume(a, c, True), _assume(b, c, False)
    if a2 is not a or b2 is not b:
        return where(c, a2, b2)
    # where(f == 0, 0, f*E) -> f*E: the two differ only where f*E is not finite
    if c.op == "equal" and _is_zero(c.args[1]) and _is_zero(a) and _has_factor(b, c.args[0]):
        return fit(b, full)
    if c.op == "not_equal" and _is_zero(c.args[1]) and _is_zero(b) and _has_factor(a, c.args[0]):
        return fit(a, full)
    # scalar constants suffice when the other operands give the shape
    a, b = _shrink(a, full, (c, b)), _shrink(b, full, (c, a))
    return node("where", (c, a, b), {})


def guard(c: Any, a: Any, b: Any) -> Expr:
    """A *guard*: ``where(d == k, v, d)`` that a VJP (``ops.safe``) puts around a denominator or a log's
    argument so that the tape stays finite at ``d == k``.

    It evaluates as that ``where`` and is differentiated as one, but it is its own node kind
    (``guard``), so that :func:`unguard` can print the derivative a person writes (``log(x)``, not
    ``log(where(x == 0, 1, x))``) and say once what the tape does at the guarded points.
    """
    c, a, b = lift(c), lift(a), lift(b)
    if not b.free or _is_true(c) is not None:
        return where(c, a, b)
    shape = _op_shape("where", [c.shape, a.shape, b.shape], {})
    dtype = _op_dtype("where", [c.dtype, a.dtype, b.dtype], {})
    return make("guard", (c, a, b), shape=shape, dtype=dtype)


def vjp_where(c: Any, a: Any, b: Any) -> Expr:
    """``F.where`` as the VJPs call it: ``where(d == k, v, d)`` (``ops.safe``) is a :func:`guard`."""
    c, a, b = lift(c), lift(a), lift(b)
    if c.op == "equal" and c.args[0] is b and _uniform(c.args[1]) and _uniform(a) and b.free:
        return guard(c, a, b)
    return where(c, a, b)


def unguard(root: Expr) -> tuple[Expr, list[Expr]]:
    """The printed form of a derivative: every guard replaced by what it guards, then every node rebuilt
    with the printing rewrites on (see ``_CLEAN``); and the guards removed."""
    nodes = postorder(root)
    guards = [n for n in nodes if n.op == "guard"]
    # a guard differentiated again leaves wheres on its condition: they go too
    conds = {id(g.args[0]) for g in guards}
    done: dict[int, Expr] = {}
    _CLEAN.append(True)
    try:
        for n in nodes:
            if n.op == "guard" or (n.op == "where" and id(n.args[0]) in conds):
                done[id(n)] = fit(done[id(n.args[2])], n.shape)
                continue
            args = tuple(done[id(a)] for a in n.args)
            done[id(n)] = rebuild(n, args) if n.op in ("times", "plus", "sqrt") or any(
                x is not y for x, y in zip(args, n.args)) else n
    finally:
        _CLEAN.pop()
    return done[id(root)], guards


def _shrink(e: Expr, full: Shape, others: tuple[Expr, ...]) -> Expr:
    if e.op == "const" and not isinstance(e.value, np.ndarray) and e.shape and bshape(
            *(o.shape for o in others)) == full:
        return const(e.value, (), e.dtype)
    return e


def _has_factor(e: Expr, f: Expr) -> bool:
    return any(b is f and x > 0 for b, x in _factors(e))


_SWAP = {"less": "greater", "greater": "less", "less_equal": "greater_equal", "greater_equal": "less_equal",
         "equal": "equal", "not_equal": "not_equal"}


def _compare(name: str) -> Any:
    def rule(xs: tuple[Expr, ...], params: dict[str, Any]) -> Expr:
        a, b = xs
        full = bshape(a.shape, b.shape)
        if a.op == "const" and b.op == "const":
            return _const_op(name, xs, full)
        if a.op == "where" and _uniform(a.args[1]) and _uniform(a.args[2]) and _uniform(b):
            # where(c, 0, 1) == 0 is c: the tape's masks, moved through shape ops, come back as masks
            yes = _const_op(name, (a.args[1], b), bshape(a.args[1].shape, b.shape))
            no = _const_op(name, (a.args[2], b), bshape(a.args[2].shape, b.shape))
            return fit(where(a.args[0], yes, no), full)
        if a.op == "const" and name in _SWAP:
            return node(_SWAP[name], (b, a), {})
        return node(name, xs, {})

    return rule


def _logical_not(xs: tuple[Expr, ...], params: dict[str, Any]) -> Expr:
    (a,) = xs
    if a.op == "const":
        return _const_op("logical_not", xs, a.shape)
    if a.op == "logical_not":
        return a.args[0]
    return node("logical_not", xs, {})


def _logical(name: str) -> Any:
    absorbing = name == "logical_or"

    def rule(xs: tuple[Expr, ...], params: dict[str, Any]) -> Expr:
        a, b = xs
        full = bshape(a.shape, b.shape)
        for p, q in ((a, b), (b, a)):
            t = _is_true(p)
            if t is not None:
                if t == absorbing:
                    return const(t, full, np.dtype(bool))
                return q if q.shape == full else node(name, xs, {})  # (fit broadcasts masks this way)
        if a is b:
            return fit(a, full)
        return node(name, xs, {})

    return rule


# ----------------------------------------------------------------------------------------
# elementwise functions


_ALWAYS_FOLD = {"negative", "positive", "abs", "sign", "square", "floor", "ceil", "round", "maximum", "minimum",
                "add", "subtract", "multiply", "floor_divide", "remainder", "clip", "relu"}


def _positive(e: Expr) -> bool:
    """Provably > 0 for every real input: positive numbers, exp, even powers plus a positive number."""
    if e.op == "const":
        return not isinstance(e.value, (np.ndarray, bool)) and e.value > 0
    if e.op in ("exp", "cosh"):
        return True
    if e.op == "plus":
        nonneg = all((t.op == "const" and not isinstance(t.value, np.ndarray) and t.value >= 0) or (
            t.op == "times" and not isinstance(t.value, bool) and t.value > 0 and all(
                _is_int(x) and int(x) % 2 == 0 or _positive(b) for b, x in zip(t.args, t.exps))) for t in e.args)
        return nonneg and any(t.op == "const" or _positive(t) for t in e.args)
    if e.op == "times":
        return not isinstance(e.value, bool) and e.value > 0 and all(_positive(b) for b in e.args)
    return False


def _sqrt_together(x: Expr) -> Expr | None:
    """``sqrt(1 - x**2/q**2) -> sqrt(q**2 - x**2)/q`` for a provably positive ``q`` (printing only)."""
    if x.op != "plus" or len(x.args) > 6:
        return None
    candidates = {id(b): (b, e) for t in x.args for b, e in _factors(_split(t)[1])}
    for b, e in candidates.values():
        if b.op != "plus" or not (_is_int(e) and e < 0 and int(e) % 2 == 0) or not _positive(b):
            continue
        inside = _expand(sum_of([prod_of([(t, 1), (b, -e)]) for t in x.args]))
        if inside is None or any(f is b and y < 0 for t in (inside.args if inside.op == "plus" else [inside])
                                 for f, y in _factors(_split(t)[1])):
            continue
        return prod_of([(call("sqrt", (inside,), {}), 1), (b, as_num(e // 2))])
    return None


def _elementwise(name: str) -> Any:
    def rule(xs: tuple[Expr, ...], params: dict[str, Any]) -> Expr:
        if name == "sqrt" and _CLEAN:
            together = _sqrt_together(xs[0])
            if together is not None:
                return together
        if all(x.op == "const" for x in xs):
            full = bshape(*(x.shape for x in xs))
            vals = [x.value if isinstance(x.value, np.ndarray) else np.asarray(
                float(x.value) if isinstance(x.value, Fraction) else x.value) for x in xs]
            with np.errstate(all="ignore"):
                v = np.asarray(OPS[name].forward(*vals, **params))
            nice = v.dtype.kind in "biu" or (np.all(np.isfinite(v)) and np.all(v == np.round(v)))
            if name in _ALWAYS_FOLD or nice:
                return const(np.broadcast_to(v, full) if v.shape != full else (v if v.ndim else v[()]), full)
        return node(name, xs, params)

    return rule


def _add(xs: tuple[Expr, ...], params: dict[str, Any]) -> Expr:
    """The program's ``+``: numbers add, but two masks are or-ed (numpy's ``+`` on booleans).

    Sums built by the derivative (:func:`add`, the operators) always add as numbers.
    """
    a, b = xs
    if _is_bool(a) and _is_bool(b):
        return call("logical_or", (a, b), {})
    return add(a, b)


def _square(xs: tuple[Expr, ...], params: dict[str, Any]) -> Expr:
    return power(xs[0], 2)


def _arith(fn: Any) -> Any:
    def rule(xs: tuple[Expr, ...], params: dict[str, Any]) -> Expr:
        return fn(*xs)

    return rule


_RULES: dict[str, Any] = {}


def _rules() -> dict[str, Any]:
    """Op name -> rewriting constructor (built on first use: :mod:`.shapes` imports this module)."""
    if _RULES:
        return _RULES
    from difftape.transforms.symbolic import shapes as sh

    _RULES.update({
        "add": _add,
        "subtract": _arith(subtract),
        "multiply": _arith(multiply),
        "divide": _arith(divide),
        "power": _arith(power),
        "negative": _arith(negative),
        "positive": lambda xs, p: xs[0],
        "square": _square,
        "where": _arith(where),
        "logical_not": _logical_not,
        "logical_and": _logical("logical_and"),
        "logical_or": _logical("logical_or"),
        **sh.RULES,
    })
    for name, op in OPS.items():
        if name in _RULES:
            continue
        if op.kind == "compare" and len(op.args) == 2 and not name.startswith("logical"):
            _RULES[name] = _compare(name)
        elif op.kind == "reduction":
            _RULES[name] = sh.reduction(name)
        elif op.kind == "elementwise":
            _RULES[name] = _elementwise(name)
    return _RULES


def reshape(x: Any, shape: Any) -> Expr:
    """``x`` with a new shape (see :func:`.shapes.reshape`)."""
    from difftape.transforms.symbolic.shapes import reshape as _reshape

    return _reshape(x, shape)


def call(name: str, args: tuple[Any, ...], params: dict[str, Any]) -> Expr:
    """Build op ``name`` on expressions/numbers with static ``params`` (defaults filled in)."""
    op = OPS.get(name)
    if op is None:
        raise DifftapeError("unsupported", f"diff: unknown operation {name!r}")
    full = dict(op.params)
    for k, v in params.items():
        if k not in full:
            raise DifftapeError("arity", f"{name}() got an unexpected keyword {k!r}")
        full[k] = v
    if op.variadic:
        (seq,) = args
        xs = tuple(lift(a) for a in seq)
    else:
        xs = tuple(lift(a) for a in args)
    rule = _rules().get(name)
    if rule is not None:
        return rule(xs, full)
    return node(name, xs, full)


def _binder(name: str) -> Any:
    op = OPS[name]
    names = [p for p, _ in op.params]
    n = len(op.args)

    def bound(*args: Any, **kwargs: Any) -> Expr:
        if op.variadic and op.spread:  # the tensors as separate arguments (einsum's operands), params by keyword
            tensors, rest = (tuple(args),), ()
        elif op.variadic:
            tensors, rest = (args[0],), args[1:]
        else:
            tensors, rest = args[:n], args[n:]
        params = dict(zip(names, rest))
        params.update(kwargs)
        return call(name, tensors, params)

    bound.__name__ = name
    return bound


#: The namespace ``F`` that the op table's VJPs run against to build symbolic gradients.
F = SimpleNamespace(**{name: _binder(name) for name in OPS})
F.where = vjp_where
