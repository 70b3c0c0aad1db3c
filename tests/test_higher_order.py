"""Second and higher derivatives through nested tapes, and difftape.hessian / difftape.jacobian.

A second derivative is checked as a Hessian-vector product: with an inner tape giving
``g(x) = d sum(w * f(x)) / dx`` under an outer tape, ``outer.gradient(sum(g * v), x)``
must equal the finite difference of the (first-order) gradient along ``v``.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import assert_close, numeric_grad, numeric_jvp
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes
from test_new_ops import SECOND_COVERED
from test_ops_grad import BINARY, FAST, REDUCTION_VALUES, SEEDS, SHAPES, UNARY, ZERO_GRAD, axes, distinct, op_fn

import difftape as dt
from difftape.ops import OPS


def first_gradient(fn, xs, weights, wrt):
    ts = [dt.constant(x) for x in xs]
    with dt.Tape() as tape:
        tape.watch([ts[i] for i in wrt])
        loss = dt.sum(fn(*ts) * weights)
    return [g.numpy() for g in tape.gradient(loss, [ts[i] for i in wrt], unconnected="zero")]


def check_second(fn, np_fn, xs, wrt=None, seed=0, rtol=1e-6, atol=1e-6, what=""):
    """Hessian-vector product by nested tapes == finite differences of the tape gradient."""
    rng = np.random.default_rng(seed)
    wrt = list(range(len(xs))) if wrt is None else list(wrt)
    xs = [np.asarray(x, dtype=np.float64) if i in wrt else x for i, x in enumerate(xs)]
    out_shape = np.shape(np_fn(*xs))
    weights = rng.uniform(0.5, 1.5, out_shape) * rng.choice([-1.0, 1.0], out_shape)
    vs = [rng.uniform(-1, 1, np.shape(xs[i])) for i in wrt]

    ts = [dt.constant(x) for x in xs]
    src = [ts[i] for i in wrt]
    with dt.Tape() as outer:
        outer.watch(src)
        with dt.Tape() as inner:
            inner.watch(src)
            loss = dt.sum(fn(*ts) * weights)
        grads = inner.gradient(loss, src, unconnected="zero")
        for g in grads:
            assert isinstance(g, dt.Tensor)
        total = sum(dt.sum(g * v) for g, v in zip(grads, vs))
    hv = outer.gradient(total, src, unconnected="zero")

    # the directional derivative of the first-order gradient, all inputs moving together
    sizes = [int(np.prod(np.shape(xs[i]))) for i in wrt]
    flat_v = np.concatenate([v.ravel() for v in vs]) if vs else np.zeros(0)
    flat_x = np.concatenate([xs[i].ravel() for i in wrt])

    def gradient_at(flat: np.ndarray) -> np.ndarray:
        moved = list(xs)
        parts = np.split(flat, np.cumsum(sizes)[:-1])
        for i, part in zip(wrt, parts):
            moved[i] = part.reshape(np.shape(xs[i]))
        return np.concatenate([g.ravel() for g in first_gradient(fn, moved, weights, wrt)])

    # the first derivatives themselves, against finite differences of the numpy function
    first = first_gradient(fn, xs, weights, wrt)
    for k, i in enumerate(wrt):
        loss = lambda *arrays: float(np.sum(np.asarray(np_fn(*arrays)) * weights))
        assert_close(first[k], numeric_grad(loss, xs, i), rtol=rtol, atol=atol, what=f"{what} grad[{i}]")

    expected = np.split(numeric_jvp(gradient_at, flat_x, flat_v), np.cumsum(sizes)[:-1])
    for k, i in enumerate(wrt):
        assert hv[k].shape == np.shape(xs[i])
        assert_close(hv[k], expected[k].reshape(np.shape(xs[i])), rtol=rtol, atol=atol, what=f"{what} H.v[{i}]")


def check_op2(name, xs, params=None, wrt=None, seed=0, **tol):
    fn, np_fn = op_fn(name, **(params or {}))
    check_second(fn, np_fn, xs, wrt=wrt, seed=seed, what=f"{name}{params or ''}", **tol)


# ----------------------------------------------------------------------------------------
# elementwise


@pytest.mark.parametrize("name", sorted(UNARY))
@FAST
@given(shape=array_shapes(min_dims=0, max_dims=2, max_side=3), seed=SEEDS)
def test_unary_second_derivative(name, shape, seed):
    check_op2(name, [UNARY[name](np.random.default_rng(seed), shape)], seed=seed)


@pytest.mark.parametrize("name", sorted(BINARY))
@FAST
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3), seed=SEEDS)
def test_binary_second_derivative(name, shapes, seed):
    rng = np.random.default_rng(seed)
    ga, gb = BINARY[name]
    check_op2(name, [ga(rng, shapes.input_shapes[0]), gb(rng, shapes.input_shapes[1])], seed=seed)


@pytest.mark.parametrize("name", sorted(ZERO_GRAD))
def test_zero_gradient_ops_second_derivative(name):
    rng = np.random.default_rng(0)
    _, *gens = ZERO_GRAD[name]
    check_op2(name, [g(rng, (3,)) for g in gens])


def test_where_and_clip_second_derivative():
    rng = np.random.default_rng(1)
    check_op2("where", [rng.random((2, 3)) < 0.5, rng.normal(size=(3,)), rng.normal(size=(2, 1))], wrt=[1, 2])
    x = np.array([-2.0, -0.3, 0.2, 2.5])
    check_op2("clip", [x, rng.uniform(-1.2, -0.8, (4,)), rng.uniform(0.8, 1.2, ())])
    # a non-linear expression through both, so that the second derivative is not zero
    fn = lambda x: dt.where(x > 0, x**3, dt.sin(x)) * dt.clip(x, -1.0, 1.0)
    np_fn = lambda x: np.where(x > 0, x**3, np.sin(x)) * np.clip(x, -1.0, 1.0)
    check_second(fn, np_fn, [x], what="where*clip")


# ----------------------------------------------------------------------------------------
# reductions and normalizations


@pytest.mark.parametrize("name", sorted(REDUCTION_VALUES))
@FAST
@given(data=st.data(), shape=array_shapes(min_dims=0, max_dims=3, max_side=3), seed=SEEDS, keepdims=st.booleans())
def test_reduction_second_derivative(name, data, shape, seed, keepdims):
    axis = data.draw(axes(len(shape)), label="axis")
    x = REDUCTION_VALUES[name](np.random.default_rng(seed), shape)
    fn, np_fn = op_fn(name, axis=axis, keepdims=keepdims)
    # sum/mean/max/min are linear (piecewise): square them so the second derivative is not trivially 0
    check_second(lambda t: fn(t) ** 2, lambda a: np_fn(a) ** 2, [x], seed=seed, what=f"{name}(axis={axis})**2")
    check_op2(name, [x], {"axis": axis, "keepdims": keepdims}, seed=seed)


@pytest.mark.parametrize("name", ["var", "std"])
@FAST
@given(data=st.data(), shape=SHAPES, seed=SEEDS, keepdims=st.booleans(), ddof=st.sampled_from([0, 1]))
def test_var_std_second_derivative(name, data, shape, seed, keepdims, ddof):
    axis = data.draw(axes(len(shape)), label="axis")
    count = int(np.prod([shape[a] for a in dt.ops.normalize_axis(axis, len(shape))]))
    if count < 2:  # std of one value is the constant 0: its kink is everywhere
        axis, ddof = None, 0
        if int(np.prod(shape)) < 2:
            shape = (3,)
    x = np.random.default_rng(seed).normal(size=shape)
    # std is a kink where the values coincide: finite differences (step 1e-3) need them spread out
    assume(float(np.min(np.std(x, axis=axis))) > 0.05)
    check_op2(name, [x], {"axis": axis, "keepdims": keepdims, "ddof": ddof}, seed=seed, rtol=1e-5, atol=1e-5)


@FAST
@given(data=st.data(), shape=array_shapes(min_dims=1, max_dims=2, max_side=3), seed=SEEDS,
       ord=st.sampled_from([None, 1, 2, 3, np.inf, -np.inf, "fro"]))
def test_norm_second_derivative(data, shape, seed, ord):
    nd = len(shape)
    if ord in (None, "fro"):
        axis = data.draw(axes(nd), label="axis")
    else:
        axis = data.draw(st.integers(-nd, nd - 1), label="axis")
    x = distinct(np.random.default_rng(seed), shape, signed=True)
    check_op2("norm", [x], {"ord": ord, "axis": axis}, seed=seed, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@FAST
@given(data=st.data(), shape=array_shapes(min_dims=1, max_dims=2, max_side=3), seed=SEEDS)
def test_softmax_second_derivative(name, data, shape, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    check_op2(name, [np.random.default_rng(seed).normal(size=shape)], {"axis": axis}, seed=seed)


# ----------------------------------------------------------------------------------------
# linear algebra and shapes


@pytest.mark.parametrize(
    "sa,sb", [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 2)), ((2, 3), (3, 4)), ((2, 1, 2, 3), (4, 3, 2))]
)
def test_matmul_second_derivative(sa, sb):
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=sa), rng.normal(size=sb)
    check_op2("matmul", [a, b])
    check_op2("dot", [a, b]) if len(sa) <= 2 and len(sb) <= 2 else None
    # matmul is bilinear: square it so the Hessian has a part within each operand too
    fn = lambda x, y: dt.matmul(x, y) ** 2
    check_second(fn, lambda x, y: np.matmul(x, y) ** 2, [a, b], what="matmul**2")


def test_linalg_second_derivative():
    rng = np.random.default_rng(3)
    a = np.eye(3) * 4 + rng.uniform(-0.5, 0.5, (3, 3))
    for name in ("inv", "det", "trace"):
        check_op2(name, [a], rtol=1e-5, atol=1e-5)
    check_op2("solve", [a, rng.normal(size=(3,))], rtol=1e-5, atol=1e-5)
    check_op2("solve", [a, rng.normal(size=(3, 2))], rtol=1e-5, atol=1e-5)
    for k in (-1, 0, 2):
        check_second(lambda x, k=k: dt.diag(x, k) ** 3, lambda x, k=k: np.diag(x, k) ** 3, [rng.normal(size=(2, 4))])
        check_second(lambda x, k=k: dt.diag(x, k) ** 3, lambda x, k=k: np.diag(x, k) ** 3, [rng.normal(size=(3,))])
    check_second(lambda a, b: dt.outer(a, b) ** 2, lambda a, b: np.outer(a, b) ** 2,
                 [rng.normal(size=(2,)), rng.normal(size=(3,))])


def test_shape_ops_second_derivative():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 3))
    cases = [
        (lambda t: dt.reshape(t, (3, 2)), lambda a: np.reshape(a, (3, 2))),
        (lambda t: dt.transpose(t, (1, 0)), lambda a: np.transpose(a, (1, 0))),
        (lambda t: t[:, ::-1][None, 1:], lambda a: a[:, ::-1][None, 1:]),
        (lambda t: t[np.array([0, 0, 1])], lambda a: a[np.array([0, 0, 1])]),
        (lambda t: dt.concatenate([t, t * 2], axis=1), lambda a: np.concatenate([a, a * 2], axis=1)),
        (lambda t: dt.stack([t, t[::-1]], axis=-1), lambda a: np.stack([a, a[::-1]], axis=-1)),
        (lambda t: dt.broadcast_to(t[:, None, :], (2, 4, 3)), lambda a: np.broadcast_to(a[:, None, :], (2, 4, 3))),
        (lambda t: dt.squeeze(dt.expand_dims(t, 0)), lambda a: np.squeeze(np.expand_dims(a, 0))),
        (lambda t: dt.full((2, 3), t[0]), lambda a: np.full((2, 3), a[0])),
    ]
    for fn, np_fn in cases:
        check_second(lambda t, fn=fn: fn(t) ** 3, lambda a, np_fn=np_fn: np_fn(a) ** 3, [x])


# ----------------------------------------------------------------------------------------
# coverage and whole derivative arrays


def test_every_elementwise_op_and_reduction_is_covered():
    covered = set(UNARY) | set(BINARY) | set(ZERO_GRAD) | {"where", "clip"} | set(REDUCTION_VALUES)
    covered |= {"var", "std", "norm", "softmax", "log_softmax"} | SECOND_COVERED  # (SECOND_COVERED: test_new_ops)
    needed = {n for n, o in OPS.items() if o.vjps is not None and o.kind in ("elementwise", "reduction", "normalize")}
    assert needed - covered == set()


def test_third_derivative_of_sin():
    x = dt.constant(0.7)
    with dt.Tape() as t3:
        t3.watch(x)
        with dt.Tape() as t2:
            t2.watch(x)
            with dt.Tape() as t1:
                t1.watch(x)
                y = dt.sin(x)
            d1 = t1.gradient(y, x)
        d2 = t2.gradient(d1, x)
    d3 = t3.gradient(d2, x)
    np.testing.assert_allclose([d1.numpy(), d2.numpy(), d3.numpy()], [np.cos(0.7), -np.sin(0.7), -np.cos(0.7)],
                               rtol=1e-15)


def test_fourth_derivative_of_a_polynomial_by_a_persistent_outer_tape():
    x = dt.constant(2.0)
    tapes = [dt.Tape() for _ in range(4)]
    for t in tapes:
        t.__enter__()
        t.watch(x)
    y = x**5
    d = y
    for t in reversed(tapes):
        t.__exit__(None, None, None)
        d = t.gradient(d, x)
    assert d.numpy() == 5 * 4 * 3 * 2 * 2.0


def test_jacobian_shapes_and_values():
    x = dt.constant([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    j = dt.jacobian(lambda v: dt.sum(v**2, axis=0), x)
    assert j.shape == (3, 2, 3)  # out.shape + in.shape
    expected = np.zeros((3, 2, 3))
    for c in range(3):
        expected[c, :, c] = 2 * x.numpy()[:, c]
    np.testing.assert_array_equal(j.numpy(), expected)
    assert dt.jacobian(dt.sin, 0.5).shape == ()
    np.testing.assert_allclose(dt.jacobian(dt.sin, 0.5).numpy(), np.cos(0.5))


def test_jacobian_with_list_inputs():
    a, b = np.array([1.0, 2.0]), np.array(3.0)
    ja, jb = dt.jacobian(lambda a, b: a * b + a**2, [a, b])
    assert ja.shape == (2, 2) and jb.shape == (2,)
    np.testing.assert_array_equal(ja.numpy(), np.diag(b + 2 * a))
    np.testing.assert_array_equal(jb.numpy(), a)
    jc = dt.jacobian(lambda a, c: a * 2.0, (a, np.array([5.0, 6.0, 7.0])))[1]
    assert jc.shape == (2, 3) and not np.any(jc.numpy())  # unconnected: zeros


def test_hessian_shapes_and_values():
    x = dt.constant([1.0, 2.0, 3.0])
    h = dt.hessian(lambda v: dt.sum(v**3) + v[0] * v[1], x)
    assert h.shape == (3, 3)
    np.testing.assert_array_equal(h.numpy(), np.diag(6 * x.numpy()) + np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]]))
    m = dt.constant([[1.0, 2.0], [3.0, 4.0]])
    hm = dt.hessian(lambda m: dt.sum(m**2) * 0.5, m)
    assert hm.shape == (2, 2, 2, 2)
    np.testing.assert_array_equal(hm.numpy().reshape(4, 4), np.eye(4))


def test_hessian_with_list_inputs():
    a, b = dt.constant([1.0, 2.0]), dt.constant(3.0)
    blocks = dt.hessian(lambda a, b: dt.sum(a**2) * b, [a, b])
    assert [[blk.shape for blk in row] for row in blocks] == [[(2, 2), (2,)], [(2,), ()]]
    np.testing.assert_array_equal(blocks[0][0].numpy(), 2 * 3.0 * np.eye(2))
    np.testing.assert_array_equal(blocks[0][1].numpy(), 2 * a.numpy())
    np.testing.assert_array_equal(blocks[1][0].numpy(), 2 * a.numpy())
    assert blocks[1][1].numpy() == 0.0


def test_hessian_needs_a_scalar():
    with pytest.raises(dt.DifftapeError, match="scalar"):
        dt.hessian(lambda v: v**2, dt.constant([1.0, 2.0]))


def test_hessian_matches_finite_differences_of_a_composite():
    rng = np.random.default_rng(5)
    w = rng.normal(size=(3, 3))
    f = lambda v: dt.logsumexp(dt.matmul(w, dt.tanh(v))) + dt.norm(v) * dt.prod(dt.sigmoid(v))
    x = rng.normal(size=3)
    h = dt.hessian(f, x).numpy()
    np.testing.assert_allclose(h, h.T, rtol=1e-12, atol=1e-14)

    def grad_at(v):
        return dt.jacobian(f, v).numpy()

    for i in range(3):
        e = np.zeros(3)
        e[i] = 1.0
        assert_close(h[:, i], numeric_jvp(grad_at, x, e), what=f"column {i}")


def test_float32_higher_derivatives_stay_float32():
    x = dt.constant([0.5, 1.5], dtype="float32")
    f = lambda v: dt.sum(dt.maximum(v, 1.0) ** 3 + dt.sqrt(v) + dt.where(v > 1.0, v * v, 0.5 * v))
    h = dt.hessian(f, x)
    assert h.dtype == np.float32
    j = dt.jacobian(lambda v: dt.sin(v) * 2.0, x)
    assert j.dtype == np.float32


def test_jacobian_under_an_outer_tape_is_differentiable():
    x = dt.constant([1.0, 2.0])
    with dt.Tape() as outer:
        outer.watch(x)
        with dt.Tape() as inner:
            inner.watch(x)
            y = x**3
        j = inner.jacobian(y, x)  # diag(3 x^2), built from recorded ops
        total = dt.sum(j)
    np.testing.assert_array_equal(j.numpy(), np.diag(3 * x.numpy() ** 2))
    np.testing.assert_array_equal(outer.gradient(total, x).numpy(), 6 * x.numpy())
