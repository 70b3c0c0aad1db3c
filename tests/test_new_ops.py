"""The operations added through the registry alone (issue 10): hypot, logaddexp, sinc, deg2rad, rad2deg,
cumsum, cumprod, trapezoid, sort (and argsort), take, take_along_axis (and its adjoint add_along_axis),
einsum.

Each is checked everywhere a user meets it: the Python API (values against numpy, first and second
derivatives against finite differences in float64, the edge points and conventions against closed
forms), Tensor methods, ``difftape.function`` replay, and the command line (grad, --batch against
point by point, diff's printed derivative evaluated against grad, check, hessian, static errors).
The tables here also feed the repository's per-op tests (test_ops_grad, test_higher_order,
test_compiled, test_diff, test_op_rules), until they move to the shared tests/op_cases.py.
"""

from __future__ import annotations

import ast
import io
import json
import math
import re
import tokenize
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from gradcheck import assert_close, check_gradients, numeric_jvp

import difftape as dt
from difftape.cli import cli
from difftape.errors import DifftapeError
from difftape.ops import OPS

NEW_OPS = ("hypot", "logaddexp", "sinc", "deg2rad", "rad2deg", "cumsum", "cumprod", "trapezoid", "sort", "argsort",
           "take", "take_along_axis", "add_along_axis", "einsum")

rng = np.random.default_rng(10)


def _u(*shape, lo=-2.0, hi=2.0):
    return rng.uniform(lo, hi, shape)


def _distinct(*shape):
    """Values at least 0.1 apart (sort's kinks are ties): a shuffled grid."""
    n = int(np.prod(shape))
    return rng.permutation(np.linspace(-2.0, 2.0, n) + rng.uniform(-0.02, 0.02, n)).reshape(shape)


IDX = np.array([[0, 2, 2], [1, 1, 0]])  # repeated indices: their gradients add up

# (id, op, difftape function of tensors, numpy function of arrays, inputs, differentiated positions)
CASES = [
    ("hypot", "hypot", dt.hypot, np.hypot, [_u(2, 3), _u(3)], [0, 1]),
    ("logaddexp", "logaddexp", dt.logaddexp, np.logaddexp, [_u(2, 3, lo=-30, hi=30), _u(3)], [0, 1]),
    ("sinc", "sinc", dt.sinc, np.sinc, [np.array([-2.3, -1.0, -0.2, 0.05, 0.2, 0.3, 0.7, 1.6])], [0]),
    ("sinc near 0", "sinc", dt.sinc, np.sinc, [np.array([-0.01, 1e-4, 0.02, 0.249, 0.251])], [0]),
    ("deg2rad", "deg2rad", dt.deg2rad, np.deg2rad, [_u(2, 3, lo=-400, hi=400)], [0]),
    ("rad2deg", "rad2deg", dt.rad2deg, np.rad2deg, [_u(2, 3)], [0]),
    ("cumsum", "cumsum", lambda x: dt.cumsum(x, axis=1), lambda x: np.cumsum(x, axis=1), [_u(2, 3)], [0]),
    ("cumsum flat", "cumsum", dt.cumsum, np.cumsum, [_u(2, 3)], [0]),
    ("cumsum axis 0", "cumsum", lambda x: dt.cumsum(x, axis=0), lambda x: np.cumsum(x, axis=0), [_u(4, 2)], [0]),
    ("cumprod", "cumprod", lambda x: dt.cumprod(x, axis=-1), lambda x: np.cumprod(x, axis=-1), [_u(2, 5)], [0]),
    ("cumprod zeros", "cumprod", dt.cumprod, np.cumprod, [np.array([[1.5, 0.0, -2.0], [0.0, 0.5, 0.0]])], [0]),
    ("cumprod axis 0", "cumprod", lambda x: dt.cumprod(x, axis=0), lambda x: np.cumprod(x, axis=0), [_u(7, 2)], [0]),
    ("trapezoid x", "trapezoid", dt.trapezoid, np.trapezoid, [_u(5), np.sort(_u(5))], [0, 1]),
    ("trapezoid dx", "trapezoid", lambda y: dt.trapezoid(y, dx=0.5, axis=0),
     lambda y: np.trapezoid(y, dx=0.5, axis=0), [_u(4, 3)], [0]),
    ("trapezoid 1-d x", "trapezoid", lambda y, x: dt.trapezoid(y, x, axis=0),
     lambda y, x: np.trapezoid(y, x, axis=0), [_u(4, 3), _u(4)], [0, 1]),
    ("trapezoid nd x", "trapezoid", lambda y, x: dt.trapezoid(y, x=x), lambda y, x: np.trapezoid(y, x=x),
     [_u(2, 4), _u(1, 4)], [0, 1]),
    ("sort", "sort", dt.sort, np.sort, [_distinct(3, 4)], [0]),
    ("sort axis 0", "sort", lambda x: dt.sort(x, axis=0), lambda x: np.sort(x, axis=0), [_distinct(3, 4)], [0]),
    ("sort flat", "sort", lambda x: dt.sort(x, axis=None), lambda x: np.sort(x, axis=None), [_distinct(2, 3)], [0]),
    ("take", "take", lambda a: dt.take(a, IDX, axis=1), lambda a: np.take(a, IDX, axis=1), [_u(2, 3)], [0]),
    ("take flat", "take", lambda a: dt.take(a, [4, 0, 4, 4]), lambda a: np.take(a, [4, 0, 4, 4]), [_u(2, 3)], [0]),
    ("take wrap", "take", lambda a: dt.take(a, [-1, 5, 7], axis=0, mode="wrap"),
     lambda a: np.take(a, [-1, 5, 7], axis=0, mode="wrap"), [_u(3, 2)], [0]),
    ("take clip", "take", lambda a: dt.take(a, [-4, 1, 9], axis=0, mode="clip"),
     lambda a: np.take(a, [-4, 1, 9], axis=0, mode="clip"), [_u(3, 2)], [0]),
    ("take_along_axis", "take_along_axis", lambda a: dt.take_along_axis(a, IDX, axis=1),
     lambda a: np.take_along_axis(a, IDX, axis=1), [_u(2, 4)], [0]),
    ("take_along_axis broadcast", "take_along_axis", lambda a: dt.take_along_axis(a, IDX, axis=1),
     lambda a: np.take_along_axis(a, IDX, axis=1), [_u(1, 4)], [0]),
    ("take_along_axis flat", "take_along_axis", lambda a: dt.take_along_axis(a, [5, 0, 5], axis=None),
     lambda a: np.take_along_axis(a, np.array([5, 0, 5]), axis=None), [_u(2, 3)], [0]),
    ("add_along_axis", "add_along_axis", lambda g: dt.add_along_axis(g, IDX, axis=1, size=4),
     lambda g: _np_add_along(g, IDX, 1, 4), [_u(2, 3)], [0]),
    ("einsum matvec", "einsum", lambda a, x: dt.einsum("ij,j->i", a, x), lambda a, x: np.einsum("ij,j->i", a, x),
     [_u(2, 3), _u(3)], [0, 1]),
    ("einsum matmul", "einsum", lambda a, b: dt.einsum("ij,jk->ki", a, b), lambda a, b: np.einsum("ij,jk->ki", a, b),
     [_u(2, 3), _u(3, 4)], [0, 1]),
    ("einsum diagonal", "einsum", lambda a: dt.einsum("ii->i", a), lambda a: np.einsum("ii->i", a), [_u(3, 3)], [0]),
    ("einsum trace", "einsum", lambda a: dt.einsum("ii->", a), lambda a: np.einsum("ii->", a), [_u(3, 3)], [0]),
    ("einsum sums", "einsum", lambda a, b: dt.einsum("ijk,k->j", a, b), lambda a, b: np.einsum("ijk,k->j", a, b),
     [_u(2, 3, 4), _u(4)], [0, 1]),
    ("einsum three", "einsum", lambda a, b, c: dt.einsum("i,i,ij->j", a, b, c),
     lambda a, b, c: np.einsum("i,i,ij->j", a, b, c), [_u(3), _u(3), _u(3, 2)], [0, 1, 2]),
    ("einsum repeated twice", "einsum", lambda a, b: dt.einsum("iij,j->ij", a, b),
     lambda a, b: np.einsum("iij,j->ij", a, b), [_u(2, 2, 3), _u(3)], [0, 1]),
]
IDS = [c[0] for c in CASES]


def _np_add_along(g, idx, axis, size):
    out = np.zeros(g.shape[:axis] + (size,) + g.shape[axis + 1:])
    for pos in np.ndindex(g.shape):
        target = list(pos)
        target[axis] = idx[pos]
        out[tuple(target)] += g[pos]
    return out


#: The differentiable new ops these tables test (read by test_ops_grad/test_higher_order/test_compiled).
GRADIENT_COVERED = {c[1] for c in CASES}


# ----------------------------------------------------------------------------------------
# the Python API: values and first derivatives against finite differences


@pytest.mark.parametrize(("cid", "name", "fn", "np_fn", "xs", "wrt"), CASES, ids=IDS)
def test_value_and_gradient(cid, name, fn, np_fn, xs, wrt):
    check_gradients(fn, np_fn, xs, wrt=wrt, what=cid)


def _hvp(fn, xs, wrt, seed=0):
    """(H.v by nested tapes, finite differences of the first-order tape gradient along v)."""
    r = np.random.default_rng(seed)
    xs = [np.asarray(x, dtype=np.float64) for x in xs]
    w = r.uniform(0.5, 1.5, np.shape(fn(*[dt.constant(x) for x in xs])))
    vs = [r.uniform(-1, 1, xs[i].shape) for i in wrt]

    def first(arrays, outer=None):
        ts = [dt.constant(a) for a in arrays]
        if outer is not None:
            outer.watch([ts[i] for i in wrt])
        with dt.Tape() as inner:
            inner.watch([ts[i] for i in wrt])
            loss = dt.sum(fn(*ts) * w)
        return ts, inner.gradient(loss, [ts[i] for i in wrt], unconnected="zero")

    with dt.Tape() as outer:
        ts, grads = first(xs, outer)
        total = sum(dt.sum(g * v) for g, v in zip(grads, vs))
    hv = outer.gradient(total, [ts[i] for i in wrt], unconnected="zero")
    sizes = [xs[i].size for i in wrt]

    def flat_grad(flat):
        moved = list(xs)
        for i, part in zip(wrt, np.split(flat, np.cumsum(sizes)[:-1])):
            moved[i] = part.reshape(xs[i].shape)
        return np.concatenate([np.asarray(g.numpy()).ravel() for g in first(moved)[1]])

    flat_x = np.concatenate([xs[i].ravel() for i in wrt])
    flat_v = np.concatenate([v.ravel() for v in vs])
    expected = np.split(numeric_jvp(flat_grad, flat_x, flat_v), np.cumsum(sizes)[:-1])
    return [h.numpy() if h is not None else None for h in hv], [e.reshape(xs[i].shape) for e, i in zip(expected, wrt)]


SECOND = [c for c in CASES if c[0] not in ("sinc near 0",)]  # near 0 the FD step crosses the series cut


@pytest.mark.parametrize(("cid", "name", "fn", "np_fn", "xs", "wrt"), SECOND, ids=[c[0] for c in SECOND])
def test_second_derivative(cid, name, fn, np_fn, xs, wrt):
    got, want = _hvp(fn, xs, wrt)
    for g, e in zip(got, want):
        assert_close(g, e, rtol=1e-6, atol=1e-6, what=f"{cid} H.v")


#: the ops whose second derivatives these tests check (test_higher_order reads it)
SECOND_COVERED = {c[1] for c in SECOND}


# ----------------------------------------------------------------------------------------
# edge points and conventions, against closed forms


def _grads(fn, *xs):
    ts = [dt.constant(np.asarray(x, dtype=np.float64)) for x in xs]
    with dt.Tape() as tape:
        tape.watch(ts)
        y = dt.sum(fn(*ts))
    return [g.numpy() for g in tape.gradient(y, ts)]


def _derivatives(fn, x, order):
    """d^k fn / dx^k at scalar x for k = 1..order, by nested tapes."""
    t = dt.constant(float(x))
    tapes = [dt.Tape() for _ in range(order)]
    for tp in tapes:
        tp.__enter__()
        tp.watch(t)
    y = fn(t)
    out = []
    for tp in reversed(tapes):
        tp.__exit__(None, None, None)
        y = tp.gradient(y, t)
        out.append(float(y.numpy()))
    return out


def test_hypot_at_the_origin_has_gradient_zero():
    assert _grads(dt.hypot, 0.0, 0.0) == [0.0, 0.0]
    assert [g.tolist() for g in _grads(dt.hypot, [3.0, 0.0], [4.0, -2.0])] == [[0.6, 0.0], [0.8, -1.0]]


def test_logaddexp_at_infinities():
    with np.errstate(invalid="ignore"):  # -inf - -inf
        ga, gb = _grads(dt.logaddexp, -np.inf, -np.inf)
    assert np.isnan(ga) and np.isnan(gb)  # as logsumexp of all -inf
    assert _grads(dt.logaddexp, -np.inf, 1.5) == [0.0, 1.0]
    assert _grads(dt.logaddexp, np.inf, 1.5) == [1.0, 0.0]
    assert _grads(dt.logaddexp, 800.0, 800.0) == [0.5, 0.5]  # no overflow


def test_sinc_is_smooth_at_zero():
    d1, d2, d3, d4 = _derivatives(dt.sinc, 0.0, 4)
    assert d1 == 0.0 and d3 == 0.0
    assert d2 == pytest.approx(-math.pi**2 / 3, rel=1e-14)
    assert d4 == pytest.approx(math.pi**4 / 5, rel=1e-12)
    # near 0 and on both sides of the series' cut: the closed forms of sinc' and sinc''
    for x in (1e-9, -3e-5, 0.01, 0.2499999, 0.2500001, -0.7, 2.5):
        px, p2 = math.pi * x, math.pi**2
        if abs(x) > 0.2:
            d1_true = (math.cos(px) - math.sin(px) / px) / x
            d2_true = (-math.pi * math.sin(px) - 2 * d1_true) / x
        else:  # the closed forms cancel: their Taylor series
            d1_true = -p2 * x / 3 + p2**2 * x**3 / 30 - p2**3 * x**5 / 840
            d2_true = -p2 / 3 + p2**2 * x**2 / 10 - p2**3 * x**4 / 168
        got1, got2 = _derivatives(dt.sinc, x, 2)
        assert got1 == pytest.approx(d1_true, rel=1e-9, abs=1e-15), x
        assert got2 == pytest.approx(d2_true, rel=1e-8, abs=1e-12), x


def _cumprod_derivatives(x, w):
    """Gradient and Hessian of sum(w * cumprod(x)) by explicit products (no division)."""
    n = len(x)
    grad = np.zeros(n)
    hess = np.zeros((n, n))
    for i in range(n):
        for k in range(i + 1):
            grad[k] += w[i] * np.prod([x[j] for j in range(i + 1) if j != k])
            for m in range(i + 1):
                if m != k:
                    hess[k, m] += w[i] * np.prod([x[j] for j in range(i + 1) if j not in (k, m)])
    return grad, hess


@pytest.mark.parametrize("x", [[0.0, 2.0, 3.0, -1.5], [1.5, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0], [2.0, -0.5, 0.0],
                               [0.7, 1.3, -0.4, 2.2, 0.9, -1.1, 0.5]])
def test_cumprod_is_exact_at_zeros_first_and_second_order(x):
    x = np.array(x)
    w = np.arange(1.0, len(x) + 1)
    grad, hess = _cumprod_derivatives(x, w)
    f = lambda v: dt.sum(dt.cumprod(v) * w)  # noqa: E731
    np.testing.assert_allclose(dt.jacobian(f, dt.constant(x)).numpy(), grad, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dt.hessian(f, dt.constant(x)).numpy(), hess, rtol=1e-13, atol=1e-13)


def test_sort_ties_follow_the_stable_order():
    # [2, 1, 2] sorts to [1 (index 1), 2 (index 0), 2 (index 2)]: each input gets its place's weight
    g = _grads(lambda x: dt.sort(x) * [1.0, 10.0, 100.0], [2.0, 1.0, 2.0])[0]
    assert g.tolist() == [10.0, 1.0, 100.0]
    assert dt.argsort(dt.constant([2.0, 1.0, 2.0])).numpy().tolist() == [1, 0, 2]


def test_repeated_indices_add_their_gradients():
    g = _grads(lambda a: dt.take(a, [0, 0, 2, 0]) * [1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0])[0]
    assert g.tolist() == [7.0, 0.0, 3.0]
    g = _grads(lambda a: dt.take_along_axis(a, [[1, 1], [0, 1]], axis=1), [[1.0, 2.0], [3.0, 4.0]])[0]
    assert g.tolist() == [[0.0, 2.0], [1.0, 1.0]]


def test_indices_are_integers_or_integral_floats():
    x = dt.constant([1.0, 2.0, 3.0])
    assert dt.take(x, dt.constant([2.0, 0.0])).numpy().tolist() == [3.0, 1.0]  # a binding promoted to float
    with pytest.raises(DifftapeError, match="indices must be integers"):  # the eager API's error type
        dt.take(x, [0.5])
    with pytest.raises(DifftapeError, match="indices must be integers"):
        dt.take_along_axis(x, [True])


def test_trapezoid_with_one_sample_is_zero():
    y = dt.constant([[2.0], [3.0]])
    assert dt.trapezoid(y).numpy().tolist() == [0.0, 0.0]
    assert _grads(dt.trapezoid, [[2.0], [3.0]])[0].tolist() == [[0.0], [0.0]]


def test_trapezoid_takes_x_none_or_dx_like_numpy():
    y, x = np.array([1.0, 2.0, 4.0]), np.array([0.0, 1.0, 3.0])
    assert float(dt.trapezoid(y)) == np.trapezoid(y)
    assert float(dt.trapezoid(y, None, 0.5)) == np.trapezoid(y, None, 0.5)
    assert float(dt.trapezoid(y, x=None, dx=2.0)) == np.trapezoid(y, dx=2.0)
    assert float(dt.trapezoid(y=y, x=x)) == np.trapezoid(y, x)
    with pytest.raises(DifftapeError, match="dx must be a number"):  # the eager API's error type
        dt.function(lambda v: dt.trapezoid(v, dx="1"))(dt.constant(y))


@pytest.mark.parametrize(("spec", "shapes", "message"), [
    ("ij,j", [(2, 3), (3,)], "write the output explicitly"),
    ("...j,j->...", [(2, 3), (3,)], "not supported"),
    ("ij,j->i", [(2, 3), (4,)], "sizes 3 and 4"),
    ("ij,j->i", [(2, 3)], "names 2 operand"),
    ("ij->k", [(2, 3)], "in no operand"),
    ("ij->ii", [(2, 2)], "repeats"),
    ("i1->i", [(2, 2)], "not an axis letter"),
])
def test_einsum_errors(spec, shapes, message):
    with pytest.raises(ValueError, match=message):
        OPS["einsum"].shape(*shapes, subscripts=spec)
    with pytest.raises(DifftapeError, match=message):  # the eager API words the shape rule's refusal
        dt.einsum(spec, *[np.ones(s) for s in shapes])


def test_einsum_subscripts_by_keyword_and_complex_step():
    a, x = _u(2, 3), _u(3)
    assert np.array_equal(dt.einsum(a, x, subscripts="ij,j->i").numpy(), np.einsum("ij,j->i", a, x))
    z = a + 1e-30j * np.ones((2, 3))
    assert np.allclose(np.imag(OPS["einsum"].forward(z, x, subscripts="ij,j->")) / 1e-30, 2 * np.sum(x))


def test_analytic_only_where_numpy_takes_complex_input():
    z = np.array([0.3 + 1e-30j, 1.2 + 0j])
    for name in NEW_OPS:
        op = OPS[name]
        if name in ("hypot", "logaddexp"):
            args = (z, z)
        elif name in ("take", "take_along_axis", "add_along_axis"):
            args = (z, np.array([1, 0]))
        elif name == "einsum":
            continue  # checked above
        else:
            args = (z,)
        params = {"size": 2} if name == "add_along_axis" else {}
        try:
            out = op.forward(*args, **params)
            takes_complex = np.iscomplexobj(out)
        except TypeError:
            takes_complex = False
        if op.analytic:
            assert takes_complex, name
        elif name not in ("sort", "argsort"):  # sort takes complex input, but orders it: not analytic
            assert not takes_complex, name


# ----------------------------------------------------------------------------------------
# Tensor methods (numpy's ndarray has them) and numpy's functions on tensors


def test_tensor_methods():
    x = dt.constant([[3.0, 1.0], [2.0, 5.0]])
    assert np.array_equal(x.cumsum().numpy(), np.cumsum(x.numpy()))
    assert np.array_equal(x.cumprod(axis=0).numpy(), np.cumprod(x.numpy(), axis=0))
    assert np.array_equal(x.take([3, 0]).numpy(), [5.0, 3.0])
    assert np.array_equal(x.argsort().numpy(), np.argsort(x.numpy()))
    for name, op in OPS.items():
        assert callable(getattr(dt.Tensor, name, None)) == (op.method or hasattr(dt.Tensor, name)), name
    with dt.Tape() as tape:
        tape.watch(x)
        y = np.cumsum(x, axis=1)  # numpy calls the method: recorded
        z = dt.sum(np.take(y, [1, 3]))
    assert tape.gradient(z, x).numpy().tolist() == [[1.0, 1.0], [1.0, 1.0]]
    with pytest.raises(DifftapeError, match="no dtype="):  # numpy's dtype= has no meaning for difftape.cumsum
        np.cumsum(x, dtype=np.float32)


def test_numpy_ufuncs_on_tensors_are_recorded():
    a, b = dt.constant(3.0), dt.constant(4.0)
    with dt.Tape() as tape:
        tape.watch([a, b])
        y = np.hypot(a, b) + np.logaddexp(a, b) + np.deg2rad(a) + np.rad2deg(b)
    ga, gb = tape.gradient(y, [a, b])
    s = 1 / (1 + math.exp(1.0))
    assert float(ga) == pytest.approx(0.6 + s + math.pi / 180)
    assert float(gb) == pytest.approx(0.8 + (1 - s) + 180 / math.pi)


# ----------------------------------------------------------------------------------------
# difftape.function: the compiled replay equals eager code, values and gradients

COMPILED_CASES = {
    "hypot": (lambda a, b: dt.hypot(a, b) * a, [_u(2, 3), _u(3)]),
    "logaddexp": (lambda a, b: dt.logaddexp(a, b * 2.0), [_u(2, 3), _u(3)]),
    "sinc": (lambda x: dt.sinc(x) * x, [np.array([-1.0, 0.0, 0.1, 0.3, 2.0])]),
    "deg2rad": (lambda x: dt.deg2rad(x) ** 2, [_u(3)]),
    "rad2deg": (lambda x: dt.rad2deg(x) * x, [_u(3)]),
    "cumsum": (lambda x: dt.cumsum(x, axis=0) * x + dt.sum(dt.cumsum(x)), [_u(3, 2)]),
    "cumprod": (lambda x: dt.cumprod(x, axis=1) + dt.sum(dt.cumprod(x)),
                [np.array([[0.5, 0.0, 2.0], [1.5, -1.0, 0.3]])]),
    "trapezoid": (lambda y, x: dt.trapezoid(y, x, axis=0) + dt.sum(dt.trapezoid(y, dx=0.25)),
                  [_u(3, 2), np.sort(_u(3))]),
    "sort": (lambda x: dt.sort(x, axis=0) * x + dt.sort(x, axis=None)[2], [_distinct(3, 2)]),
    "take": (lambda a: dt.take(a, IDX, axis=0) ** 2, [_u(3, 2)]),
    "take_along_axis": (lambda a: dt.take_along_axis(a, IDX, axis=1) * 3.0, [_u(2, 3)]),
    "add_along_axis": (lambda g: dt.add_along_axis(g, IDX, axis=1, size=3) ** 2, [_u(2, 3)]),
    "einsum": (lambda a, b: dt.einsum("ij,jk->ik", a, b) * 2.0 + dt.einsum("ii->", a[:, :2]), [_u(2, 3), _u(3, 2)]),
}


def _eager_and_compiled(fn, xs):
    outs = []
    for f in (fn, dt.function(fn)):
        ts = [dt.constant(x) for x in xs]
        with dt.Tape() as tape:
            tape.watch(ts)
            y = f(*ts)
            loss = dt.sum(y)
        outs.append((y.numpy(), [g.numpy() for g in tape.gradient(loss, ts)]))
    compiled = dt.function(fn)
    compiled(*[dt.constant(x) for x in xs])
    outs.append((compiled(*[dt.constant(x) for x in xs]).numpy(), None))  # replay without a recorder
    return outs


@pytest.mark.parametrize("name", sorted(COMPILED_CASES))
def test_function_replay_equals_eager(name):
    fn, xs = COMPILED_CASES[name]
    (v0, g0), (v1, g1), (v2, _) = _eager_and_compiled(fn, xs)
    assert np.array_equal(v0, v1) and np.array_equal(v0, v2)
    for a, b in zip(g0, g1):
        assert np.array_equal(a, b)


def test_function_replays_new_index_values():
    f = dt.function(lambda a, i: dt.take(a, i) * 2.0)
    a = dt.constant([1.0, 2.0, 3.0])
    assert f(a, dt.constant([0, 2])).numpy().tolist() == [2.0, 6.0]
    assert f(a, dt.constant([1, 1])).numpy().tolist() == [4.0, 4.0]  # same signature: replayed
    assert f.trace_count == 1
    with dt.Tape() as tape:
        tape.watch(a)
        y = dt.sum(f(a, dt.constant([2, 2])))
    assert tape.gradient(y, a).numpy().tolist() == [0.0, 0.0, 4.0]


# ----------------------------------------------------------------------------------------
# the command line


def run(*args, input=None, code=0):
    result = CliRunner().invoke(cli, list(args), input=input, prog_name="difftape")
    assert result.exit_code == code, (args, result.output, result.exception)
    return result.output


def run_json(*args, input=None, code=0):
    return json.loads(run(*args, "--json", input=input, code=code).strip().splitlines()[-1])


# (program, --at values): each is graded, batched, differentiated symbolically and checked
PROGRAMS = [
    ("hypot(x, y)", {"x": 1.3, "y": -0.4}),
    ("sum(hypot(x, 2.0) * [1, 2])", {"x": [0.5, -1.5]}),
    ("logaddexp(x, y)", {"x": 0.3, "y": -1.1}),
    ("sinc(x)", {"x": 0.7}),
    ("sinc(x)", {"x": 0.1}),
    ("sum(sinc(x))", {"x": [0.0, 0.2, 1.5]}),
    ("deg2rad(x) * rad2deg(x)", {"x": 2.0}),
    ("sum(cumsum(x, axis=1) * [1, 2, 3])", {"x": [[1.0, 2.0, 0.5], [-1.0, 0.3, 2.0]]}),
    ("sum(cumsum(x)**2)", {"x": [[1.0, 2.0], [0.5, -1.0]]}),
    ("sum(cumprod(x) * [1, 2, 3, 4])", {"x": [0.5, 0.0, 2.0, -1.5]}),
    ("sum(cumprod(x, axis=0)**2)", {"x": [[0.5, 1.0], [0.0, 2.0], [1.5, -1.0]]}),
    ("trapezoid(y, x)", {"y": [1.0, 2.0, 4.0, 3.0], "x": [0.0, 0.5, 1.7, 2.0]}),
    ("sum(trapezoid(y, dx=0.5, axis=0) * [1, 2])", {"y": [[1.0, 2.0], [4.0, 3.0], [0.5, 1.0]]}),
    ("trapezoid(y**2)", {"y": [1.0, 2.0, 4.0]}),
    ("sum(sort(x) * [1, 2, 3])", {"x": [3.0, -1.0, 2.0]}),
    ("sum(sort(x, axis=0) * [[1, 2], [3, 4]])", {"x": [[3.0, -1.0], [2.0, 5.0]]}),
    ("sum(take(x, [0, 2, 2]) * [1, 2, 3])", {"x": [3.0, -1.0, 2.0]}),
    ("sum(take(x, [[1, 0], [1, 1]], axis=1)**2)", {"x": [[3.0, -1.0], [2.0, 0.5]]}),
    ("sum(take_along_axis(x, [[1, 0], [2, 2]], axis=1) * [1, 2])", {"x": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]}),
    ("sum(take_along_axis(x, argsort(x), axis=0) * [1, 2, 3])", {"x": [0.5, -2.0, 1.0]}),
    ("sum(add_along_axis(x, [[0, 0], [2, 1]], axis=1, size=3) * [1, 2, 3])", {"x": [[1.0, 2.0], [3.0, 4.0]]}),
]


def _at(values):
    return [a for n, v in values.items() for a in ("--at", f"{n}={json.dumps(v)}")]


@pytest.mark.parametrize(("source", "values"), PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_grad_diff_check_on_the_command_line(source, values):
    grad = run_json("grad", source, *_at(values))
    # the printed derivative, evaluated with the same values, is grad's gradient
    diff = run_json("diff", source, *_at(values))["diff"]
    for name, text in diff.items():
        used = {n: v for n, v in values.items() if re.search(rf"\b{n}\b", text)}  # (a constant uses none)
        got = run_json("eval", text, *_at(used))["value"]
        want = np.asarray(grad["grad"][name], dtype=np.float64)
        assert np.allclose(np.broadcast_to(got, want.shape), want, rtol=1e-9, atol=1e-12), (name, text)
    check = run_json("check", source, *_at(values))
    assert check["ok"], check
    numeric = grad["grad"]
    for name, row in check["inputs"].items():
        assert np.allclose(row["tape"], numeric[name])


def test_check_uses_the_complex_step_only_for_analytic_ops():
    assert "complex step" in run_json("check", "sum(cumprod(x) * sinc(x))", "--at", "x=[0.5, 0.0, 2.0]")["method"]
    out = run_json("check", "trapezoid(take(x, [0, 2, 1]), x)", "--at", "x=[0.5, 1.0, 2.0]")
    assert "complex step" in out["method"] and out["ok"]
    assert "Ridders" in run_json("check", "hypot(x, 2.0)", "--at", "x=0.5")["method"]


@pytest.mark.parametrize(("source", "values"), PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_batch_equals_point_by_point(source, values, monkeypatch):
    import difftape.answers.batch as batch_module

    first = next(iter(values))
    points = []
    for k in range(3):
        point = {n: (np.asarray(v) * (1 + 0.1 * k)).tolist() for n, v in values.items()}
        point[first] = (np.asarray(values[first]) + 0.05 * k).tolist()
        points.append(point)
    fixed = {n: v for n, v in values.items() if n != first}

    def no_point_loop(*args, **kwargs):
        raise AssertionError("a node fell back to the point-by-point loop")

    monkeypatch.setattr(batch_module, "per_point", no_point_loop)  # every new op has a real batching rule
    lines = run("grad", source, *_at(fixed), "--batch", input="\n".join(json.dumps({first: p[first]}) for p in points))
    monkeypatch.undo()
    for line, point in zip(lines.strip().splitlines(), points):
        got = json.loads(line)
        want = run_json("grad", source, *_at({**fixed, first: point[first]}))
        assert np.allclose(got["value"], want["value"], rtol=1e-13, atol=1e-13)
        for name in want["grad"]:
            assert np.allclose(got["grad"][name], want["grad"][name], rtol=1e-13, atol=1e-13), name


def test_batched_indices():
    # index arrays that differ per point (an input), batched shapes for take's gather and take_along_axis
    src = "sum(take(x, i, axis=1) * [1, 2]) + sum(take_along_axis(x, j, axis=0))"
    points = [{"i": [1, 0], "j": [[1, 0]]}, {"i": [1, 1], "j": [[0, 0]]}, {"i": [0, 0], "j": [[1, 1]]}]
    x = [[1.0, 2.0], [3.0, 5.0]]
    out = run("grad", src, "--at", f"x={json.dumps(x)}", "--wrt", "x", "--batch",
              input="\n".join(json.dumps(p) for p in points)).strip().splitlines()
    for line, p in zip(out, points):
        want = run_json("grad", src, *_at({"x": x, **p}), "--wrt", "x")
        got = json.loads(line)
        assert got["value"] == want["value"] and got["grad"] == want["grad"]


def test_hessian_of_cumprod_at_zeros():
    x = [0.0, 2.0, 0.0, 1.5]
    out = run_json("hessian", "sum(cumprod(x) * [1, 2, 3, 4])", "--at", f"x={json.dumps(x)}")
    _, hess = _cumprod_derivatives(np.array(x), np.arange(1.0, 5.0))
    assert np.allclose(out["hessian"]["x"]["x"], hess, rtol=1e-13, atol=1e-13)


def test_diff_order_two_of_sinc():
    out = run_json("diff", "sinc(x)", "--order", "2", "--at", "x=0.0")["diff"]["x"]["x"]
    got = run_json("eval", out, "--at", "x=0.0")["value"]
    assert got == pytest.approx(-math.pi**2 / 3, rel=1e-14)


@pytest.mark.parametrize(("source", "message", "caret"), [
    ("hypot(x, [1, 2, 3])", "do not broadcast", "hypot"),
    ("cumsum(x, axis=2)", "axis 2 is out of bounds", "cumsum"),
    ("cumprod(x, axis=(0, 1))", "axis must be an integer", "cumprod"),
    ("trapezoid(x, [1, 2, 3])", "x has 3 sample points", "trapezoid"),
    ("trapezoid(x, dx=(1, 2))", "dx must be a number", "trapezoid"),
    ("sort(x, axis=1)", "axis 1 is out of bounds", "sort"),
    ("take(x, [[0]], axis=1)", "axis 1 is out of bounds", "take"),
    ("take_along_axis(x, [[0]], axis=0)", "need the 1 dimensions", "take_along_axis"),
    ("take(x, [True])", "indices must be integers", "take"),
    ("einsum(x, x)", "must be a string written out", "x"),
])
def test_static_errors_have_a_caret(source, message, caret):
    out = run("eval", f"y = {source}", "--at", "x=[1.0, 2.0]", code=2)
    assert message in out, out
    line = out.splitlines()
    k = next(i for i, t in enumerate(line) if t.startswith("1 | "))
    col = line[k + 1].index("^") - 4
    assert line[k][4:][col:].startswith(caret)


def test_runtime_index_errors_are_clean():
    out = run("eval", "take(x, [0, 5])", "--at", "x=[1.0, 2.0]", code=2)
    assert "error[value]" in out and "out of bounds" in out


def test_index_bindings_are_promoted_yet_work():
    # a binding that uses no other name is a variable: grad promotes it to float, its gradient is null
    out = run_json("grad", "i = [0, 2, 2]; sum(take(x, i))", "--at", "x=[1.0, 2.0, 3.0]")
    assert out["grad"] == {"i": None, "x": [1.0, 0.0, 2.0]}


# ----------------------------------------------------------------------------------------
# the registry rule: each new op is known by name in its own module only


_OP_NAMESPACES = ("F", "S", "dt", "difftape", "api", "_api", "NAMESPACE", "NUMPY", "FUNCTIONS", "OPS")


def _names_in(text: str) -> set[str]:
    """What source text names as a string or an identifier: bare names, ``F.name``, ``OPS["name"]`` and the
    like; an attribute of anything else (numpy's ``np.cumprod``, a list's ``.sort``) is not an op's name."""
    toks = [t for t in tokenize.generate_tokens(io.StringIO(text).readline)
            if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)]
    names = set()
    for k, t in enumerate(toks):
        if t.type == tokenize.STRING and t.string[-1] in "\"'" and not t.string.lstrip("rbuRBU").startswith(("f", "F")):
            value = ast.literal_eval(t.string)
            if isinstance(value, str) and value.isidentifier():
                names.add(value)
        elif t.type == tokenize.NAME:
            attribute = k >= 2 and toks[k - 1].string == "."
            if not attribute or toks[k - 2].string in _OP_NAMESPACES:
                names.add(t.string)
    return names


def test_each_new_op_is_named_in_one_module_only():
    root = Path(dt.__file__).parent
    named = {p.relative_to(root).as_posix(): _names_in(p.read_text(encoding="utf-8"))
             for p in root.rglob("*.py") if p.name != "parse_tables.py"}
    for name in NEW_OPS:
        where = [p for p, names in named.items() if name in names]
        assert len(where) == 1 and where[0].startswith("ops/"), (name, where)


def test_readme_lists_them():
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    for name in NEW_OPS:
        if OPS[name].kind != "index":
            assert f"`{name}`" in text, name


# ----------------------------------------------------------------------------------------
# rows for the repository's per-op tables (test_op_rules, test_diff), in their formats

#: name -> [tensor input shapes, params] for test_op_rules (static shape and dtype rules vs the forward)
OP_RULE_CALLS = {
    "cumsum": [((2, 3),), {"axis": 1}],
    "trapezoid": [((3, 2), (3,)), {"axis": 0}],
    "sort": [((2, 3),), {"axis": 0}],
    "argsort": [((2, 3),), {"axis": None}],
    "take": [((3, 2), (2, 2)), {"axis": 0}],
    "take_along_axis": [((2, 3), (1, 2)), {"axis": 1}],
    "add_along_axis": [((2, 3), (2, 3)), {"axis": 1, "size": 4}],
    "einsum": [((2, 3), (3,)), {"subscripts": "ij,j->i"}],
}

_R = (-2.0, 2.0)
#: (program, {input: (shape, lo, hi)}, expected text or None) for test_diff's table
DIFF_CASES = [
    ("hypot(x, y)", {"x": ((), *_R), "y": ((), 0.5, 2.0)}, None),
    ("logaddexp(x, 2*y)", {"x": ((), *_R), "y": ((), *_R)}, None),
    ("sum(sinc(x))", {"x": ((3,), *_R)}, None),
    ("rad2deg(deg2rad(x)*x)", {"x": ((), *_R)}, None),
    ("sum(cumsum(x, axis=1) * [1, 2, 3])", {"x": ((2, 3), *_R)}, None),
    ("sum(cumprod(x)**2)", {"x": ((2, 2), *_R)}, None),
    ("trapezoid(y, x) + sum(trapezoid(z, dx=0.5, axis=0))", {"y": ((4,), *_R), "x": ((4,), *_R), "z": ((3, 2), *_R)},
     None),
    ("sum(sort(x, axis=0) * [[1, 2], [3, 4]])", {"x": ((2, 2), *_R)}, None),
    ("sum(take(x, [2, 0, 2]) * [1, 2, 3]) + sum(take_along_axis(x, [1, 1], axis=0))", {"x": ((3,), *_R)}, None),
    ("sum(add_along_axis(x, [[0, 0], [2, 1]], axis=1, size=3) * [1, 2, 3])", {"x": ((2, 2), *_R)}, None),
]

#: name -> (function, inputs) for test_forward's JVP-vs-Jacobian table (ops outside its generic families)
FORWARD_CALLS = {
    "sort": (lambda a: dt.sort(a, axis=0), [_distinct(3, 2)]),
    "take": (lambda a: dt.take(a, IDX, axis=1), [_u(2, 3)]),
    "take_along_axis": (lambda a: dt.take_along_axis(a, IDX, axis=1), [_u(2, 4)]),
    "add_along_axis": (lambda g: dt.add_along_axis(g, IDX, axis=1, size=4), [_u(2, 3)]),
    "einsum": (lambda a, b: dt.einsum("ij,jk->ki", a, b), [_u(2, 3), _u(3, 2)]),
}
