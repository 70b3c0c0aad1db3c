"""Second and higher derivatives through nested tapes, and difftape.hessian / difftape.jacobian.

Every op's second derivative at the shapes of its cases is checked by ``test_op_cases.py``
(with :func:`check_second` below); this module keeps the composites, the third and fourth
derivatives, and the whole-array jacobian/hessian API. A second derivative is checked as a
Hessian-vector product: with an inner tape giving
``g(x) = d sum(w * f(x)) / dx`` under an outer tape, ``outer.gradient(sum(g * v), x)``
must equal the finite difference of the (first-order) gradient along ``v``.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import assert_close, numeric_grad, numeric_jvp

import difftape as dt


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


# ----------------------------------------------------------------------------------------
# higher derivatives and whole derivative arrays


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
