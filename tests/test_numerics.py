"""Numerically delicate values and gradients, and the kink conventions of ops.py's docstring."""

from __future__ import annotations

import numpy as np
import pytest

import difftape as dt


def value_and_grad(f, x):
    x = dt.constant(x)
    with dt.Tape() as tape:
        tape.watch(x)
        y = f(x)
    return y.numpy(), tape.gradient(y, x)


def g_of(f, x):
    g = value_and_grad(f, x)[1]
    assert g is not None
    return g.numpy()


# ----------------------------------------------------------------------------------------
# stable evaluation


def test_logsumexp_of_large_values():
    y, g = value_and_grad(dt.logsumexp, [1000.0, 1000.5])
    assert np.isfinite(y)
    np.testing.assert_allclose(y, 1000.5 + np.log1p(np.exp(-0.5)), rtol=1e-15)
    w = np.exp([-0.5, 0.0]) / np.sum(np.exp([-0.5, 0.0]))
    np.testing.assert_allclose(g.numpy(), w, rtol=1e-13)  # exp(x - y): y carries 1000's rounding
    y, g = value_and_grad(lambda x: dt.logsumexp(x, axis=1), [[-1000.0, -1000.0], [0.0, 1e5]])
    np.testing.assert_allclose(y, [-1000.0 + np.log(2.0), 1e5], rtol=1e-15)
    np.testing.assert_allclose(g.numpy(), [[0.5, 0.5], [0.0, 1.0]], rtol=1e-13)
    y, g = value_and_grad(dt.logsumexp, [-np.inf, 0.0])
    assert y == 0.0 and g.numpy().tolist() == [0.0, 1.0]


def test_softmax_of_large_values():
    y, g = value_and_grad(lambda x: dt.softmax(x)[0], [1000.0, 1000.0, -1000.0])
    assert y == 0.5
    np.testing.assert_allclose(g.numpy(), [0.25, -0.25, 0.0], atol=1e-300)
    y, g = value_and_grad(lambda x: dt.log_softmax(x)[1], [800.0, 0.0])
    assert y == -800.0
    np.testing.assert_allclose(g.numpy(), [-1.0, 1.0])


def test_softplus_of_large_values():
    y, g = value_and_grad(dt.softplus, 800.0)
    assert y == 800.0 and g.numpy() == 1.0
    y, g = value_and_grad(dt.softplus, -800.0)
    assert y == 0.0 and g.numpy() == 0.0
    y, g = value_and_grad(dt.softplus, -30.0)
    np.testing.assert_allclose(y, np.exp(-30.0), rtol=1e-12)
    np.testing.assert_allclose(g.numpy(), np.exp(-30.0), rtol=1e-12)


def test_sigmoid_of_large_values():
    y, g = value_and_grad(dt.sigmoid, -800.0)
    assert y == 0.0 and g.numpy() == 0.0
    y, g = value_and_grad(dt.sigmoid, 800.0)
    assert y == 1.0 and g.numpy() == 0.0
    y, g = value_and_grad(dt.sigmoid, -700.0)  # accurate in relative terms far in the tail
    np.testing.assert_allclose(y, np.exp(-700.0), rtol=1e-12)
    np.testing.assert_allclose(g.numpy(), np.exp(-700.0), rtol=1e-12)


def test_log1p_and_expm1_of_tiny_values():
    y, g = value_and_grad(dt.log1p, 1e-12)
    np.testing.assert_allclose(y, 1e-12 - 5e-25, rtol=1e-15)
    np.testing.assert_allclose(g.numpy(), 1 / (1 + 1e-12), rtol=1e-15)
    y, g = value_and_grad(dt.expm1, 1e-10)
    np.testing.assert_allclose(y, 1e-10 + 5e-21, rtol=1e-15)
    np.testing.assert_allclose(g.numpy(), 1 + 1e-10, rtol=1e-15)


def test_float32_extremes_stay_finite():
    x = dt.constant([-100.0, 0.0, 100.0], dtype="float32")
    with dt.Tape() as tape:
        tape.watch(x)
        y = dt.sum(dt.sigmoid(x) + dt.softplus(x)) + dt.logsumexp(x * 10)
    g = tape.gradient(y, x)
    assert y.dtype == np.float32 and g.dtype == np.float32
    assert np.all(np.isfinite(g.numpy())) and np.isfinite(y.numpy())


# ----------------------------------------------------------------------------------------
# kink conventions (ops.py docstring)


def test_abs_sign_relu_at_zero_have_slope_zero():
    assert g_of(dt.abs, 0.0) == 0.0
    assert g_of(dt.relu, 0.0) == 0.0
    assert g_of(dt.sign, 0.0) == 0.0 and dt.sign(0.0).numpy() == 0.0
    np.testing.assert_array_equal(g_of(dt.abs, [-2.0, 0.0, 3.0]), [-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(g_of(dt.relu, [-2.0, 0.0, 3.0]), [0.0, 0.0, 1.0])


@pytest.mark.parametrize("name", ["max", "min"])
def test_reduction_ties_share_equally(name):
    f = getattr(dt, name)
    x = [3.0, 1.0, 3.0, 2.0] if name == "max" else [1.0, 3.0, 1.0, 2.0]
    np.testing.assert_array_equal(g_of(f, x), [0.5, 0.0, 0.5, 0.0])
    np.testing.assert_array_equal(g_of(f, [2.0, 2.0, 2.0, 2.0]), [0.25] * 4)
    m = [[1.0, 1.0, 0.0], [5.0, 5.0, 5.0]] if name == "max" else [[0.0, 0.0, 1.0], [5.0, 5.0, 5.0]]
    np.testing.assert_allclose(g_of(lambda x: f(x, axis=1), m), [[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    rows = [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]] if name == "max" else [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    np.testing.assert_allclose(g_of(lambda x: f(x, axis=0, keepdims=True), m), rows)


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_binary_ties_share_equally(name):
    f = getattr(dt, name)
    a, b = dt.constant([1.0, 2.0, 3.0]), dt.constant([1.0, 5.0, 0.0])
    with dt.Tape() as tape:
        tape.watch([a, b])
        y = f(a, b)
    ga, gb = tape.gradient(y, [a, b])
    win_a = [0.5, 0.0, 1.0] if name == "maximum" else [0.5, 1.0, 0.0]
    np.testing.assert_array_equal(ga.numpy(), win_a)
    np.testing.assert_array_equal(gb.numpy(), 1.0 - np.array(win_a))
    # same tensor on both sides: the total is preserved (d max(x, x)/dx == 1)
    assert g_of(lambda x: f(x, x), 2.0) == 1.0
    # against a broadcast scalar
    expected = [0.0, 0.5, 1.0] if name == "maximum" else [1.0, 0.5, 0.0]
    np.testing.assert_array_equal(g_of(lambda x: f(x, 1.0), [0.0, 1.0, 2.0]), expected)


def test_clip_bounds_are_inclusive():
    x = dt.constant([-2.0, -1.0, 0.0, 1.0, 2.0])
    lo, hi = dt.constant(-1.0), dt.constant(1.0)
    with dt.Tape() as tape:
        tape.watch([x, lo, hi])
        y = dt.clip(x, lo, hi)
    gx, glo, ghi = tape.gradient(y, [x, lo, hi])
    np.testing.assert_array_equal(gx.numpy(), [0.0, 1.0, 1.0, 1.0, 0.0])
    assert glo.numpy() == 1.0 and ghi.numpy() == 1.0  # only the strictly clipped elements
    np.testing.assert_array_equal(y.numpy(), [-1.0, -1.0, 0.0, 1.0, 1.0])


@pytest.mark.parametrize(
    "x,expected",
    [
        ([2.0, 3.0, 4.0], [12.0, 8.0, 6.0]),
        ([2.0, 0.0, 4.0], [0.0, 8.0, 0.0]),  # one zero: only it gets the product of the others
        ([0.0, 3.0, 0.0], [0.0, 0.0, 0.0]),  # two zeros: all 0
        ([0.0], [1.0]),
        ([-1.5, 0.0, 2.0, -4.0], [0.0, 12.0, 0.0, 0.0]),
    ],
)
def test_prod_with_zeros(x, expected):
    np.testing.assert_array_equal(g_of(dt.prod, x), expected)


def test_prod_with_zeros_along_an_axis():
    x = [[2.0, 0.0, 4.0], [0.0, 3.0, 0.0], [1.0, 2.0, 3.0]]
    np.testing.assert_array_equal(
        g_of(lambda x: dt.prod(x, axis=1), x), [[0.0, 8.0, 0.0], [0.0, 0.0, 0.0], [6.0, 3.0, 2.0]]
    )


def test_prod_hessian_with_one_zero():
    # d2/dxi dxj prod(x) = product of the others but i and j: the zero matters for the pairs it is in
    x = np.array([2.0, 0.0, 4.0, 3.0])
    h = dt.hessian(dt.prod, x).numpy()
    expected = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            if i != j:
                expected[i, j] = np.prod(np.delete(x, [i, j]))
    np.testing.assert_array_equal(h, expected)


def test_norm_and_std_at_zero_have_gradient_zero():
    for ord in (None, 2, 3, 1, np.inf):
        g = g_of(lambda x, o=ord: dt.norm(x, o), [0.0, 0.0, 0.0])
        np.testing.assert_array_equal(g, [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(g_of(dt.norm, [[0.0, 0.0], [0.0, 0.0]]), [[0.0, 0.0], [0.0, 0.0]])
    np.testing.assert_array_equal(g_of(dt.std, [1.5, 1.5]), [0.0, 0.0])
    np.testing.assert_array_equal(g_of(lambda x: dt.norm(x, axis=1), [[0.0, 0.0], [3.0, 4.0]]), [[0, 0], [0.6, 0.8]])


def test_power_zero_exponent_has_slope_zero():
    assert g_of(lambda x: x**0, 0.0) == 0.0
    assert g_of(lambda x: x**0.0, 5.0) == 0.0


# ----------------------------------------------------------------------------------------
# where is nan-safe: the branch it does not take contributes exactly 0 (numpy still warns
# about the nan it computes there, as it would without difftape)

nan_branch = pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning", "ignore:divide by zero:RuntimeWarning")


@nan_branch
def test_where_sqrt_at_negative():
    assert g_of(lambda x: dt.where(x > 0, dt.sqrt(x), 0.0), -1.0) == 0.0
    np.testing.assert_array_equal(g_of(lambda x: dt.where(x > 0, dt.sqrt(x), 0.0), [-1.0, 4.0]), [0.0, 0.25])


@nan_branch
def test_where_sinc_at_zero():
    f = lambda x: dt.where(x != 0, dt.sin(x) / x, 1.0)
    assert g_of(f, 0.0) == 0.0
    np.testing.assert_allclose(g_of(f, [0.0, 1.0]), [0.0, np.cos(1.0) - np.sin(1.0)])


@nan_branch
def test_where_log_at_zero_and_nested_where():
    f = lambda x: dt.where(x > 0, dt.log(x) * x, dt.where(x < -5, dt.sqrt(-x - 5), x))
    np.testing.assert_allclose(g_of(f, [0.0, -1.0, -9.0, np.e]), [1.0, 1.0, -0.25, 2.0])


@nan_branch
def test_where_through_a_sum_and_broadcasting():
    # a reduction after the where, and a where whose branch is broadcast against the condition
    assert g_of(lambda x: dt.sum(dt.where(x > 0, dt.sqrt(x), 0.0)), [-1.0, 4.0]).tolist() == [0.0, 0.25]
    x = [-1.0, 4.0, 0.0]
    cond = np.array([[False, True, False], [False, True, False]])
    np.testing.assert_array_equal(g_of(lambda x: dt.sum(dt.where(cond, dt.sqrt(x) * 2, 1.0)), x), [0.0, 1.0, 0.0])
    # the branch goes through indexing (not elementwise) between the where and the sqrt
    np.testing.assert_allclose(g_of(lambda x: dt.mean(dt.where(x[:, None] > 0, dt.sqrt(x)[:, None], x)), x),
                               [2 / 9, 0.75 / 9 + 2 / 9, 2 / 9], rtol=1e-15)
    np.testing.assert_array_equal(g_of(lambda x: dt.where(x > 0, dt.reshape(dt.sqrt(x), (3,)), 0.0), x),
                                  [0.0, 0.25, 0.0])
    np.testing.assert_array_equal(g_of(lambda x: dt.where(x[1] > 0, dt.sqrt(x)[1], 0.0), x), [0.0, 0.25, 0.0])
    m = [[-1.0, 4.0], [1.0, -2.0]]
    np.testing.assert_array_equal(g_of(lambda m: dt.where(m.T > 0, dt.log(m).T, 0.0), m), [[0.0, 0.25], [1.0, 0.0]])
    np.testing.assert_array_equal(
        g_of(lambda m: dt.where(m[0] > 0, dt.sum(dt.sqrt(m), axis=0), 0.0), [[-1.0, 4.0], [-3.0, 1.0]]),
        [[0.0, 0.25], [0.0, 0.5]],
    )
    # the unselected branch broadcast up from a scalar
    assert g_of(lambda x: dt.sum(dt.where(np.array([False, False]), dt.log(x), 2.0)), 0.0) == 0.0


@nan_branch
def test_where_nan_safety_with_other_uses_of_x():
    # x is also used outside the where: that use still counts
    assert g_of(lambda x: dt.where(x > 0, dt.sqrt(x), 0.0) + 3 * x, -1.0) == 3.0


@nan_branch
def test_where_nan_safety_in_second_derivatives():
    x = dt.constant([-1.0, 4.0])
    h = dt.hessian(lambda x: dt.sum(dt.where(x > 0, x * dt.sqrt(x), 0.0)), x).numpy()
    np.testing.assert_allclose(h, [[0.0, 0.0], [0.0, 0.75 / 2]])


@nan_branch
def test_norm_at_zero_gradient_is_zero():
    assert g_of(dt.norm, 0.0) == 0.0
    np.testing.assert_array_equal(g_of(lambda x: dt.norm(x * 2.0), [0.0, 0.0]), [0.0, 0.0])
