"""Forward mode: the accumulator, where's nan-safety, forward-over-reverse HVPs and the functional forms.

That every op's JVP is its Jacobian times the tangent is checked on every case of the shared
table (``op_cases.py``) by ``test_op_cases.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

import difftape as dt
from difftape.errors import DifftapeError

RNG = np.random.default_rng(11)


def test_forward_accumulator_follows_tensorflow():
    x = dt.constant([1.0, 2.0])
    with dt.ForwardAccumulator(x, [1.0, 0.0]) as acc:
        y = dt.sum(x ** 3)
        z = dt.constant(3.0) * 2
    assert float(acc.jvp(y)) == 3.0
    assert acc.jvp(z) is None
    assert float(acc.jvp(z, unconnected="zero")) == 0.0


def test_where_is_nan_safe_in_forward_mode():
    x = dt.constant([4.0, -1.0, 9.0])
    _, t = dt.jvp(lambda v: dt.where(v > 0, dt.sqrt(v), 0.0), [x], [np.ones(3)])
    np.testing.assert_array_equal(t.numpy(), [0.25, 0.0, 1 / 6])


@pytest.mark.parametrize("f,x", [
    (lambda v: dt.sum(dt.sin(v) * v ** 2), np.array([0.3, -0.7, 1.1])),
    (lambda v: dt.prod(v), np.array([0.0, 0.0, 3.0])),
    (lambda v: dt.logsumexp(v) * dt.norm(v), np.array([0.5, -1.0, 2.0])),
    (lambda v: dt.det(dt.reshape(v, (2, 2))), np.array([1.0, 2.0, 2.0, 4.0])),
])
def test_hvp_forward_over_reverse_equals_the_hessian(f, x):
    v = RNG.normal(size=x.shape)
    h = dt.hessian(f, dt.constant(x)).numpy()
    np.testing.assert_allclose(dt.hvp(f, dt.constant(x), v).numpy(), h @ v, rtol=1e-10, atol=1e-12)


def test_vjp_grad_and_value_and_grad():
    x = dt.constant([0.5, 1.5])
    y, fn = dt.vjp(lambda v: dt.sin(v) * 2.0, x)
    (g,) = fn(np.array([1.0, -1.0]))
    np.testing.assert_allclose(g.numpy(), 2 * np.cos(x.numpy()) * [1.0, -1.0])
    ga, gb = dt.grad(lambda a, b: dt.sum(a * b), argnums=(0, 1))(dt.constant([1.0, 2.0]), dt.constant([3.0, 4.0]))
    np.testing.assert_array_equal(ga.numpy(), [3.0, 4.0])
    np.testing.assert_array_equal(gb.numpy(), [1.0, 2.0])
    val, g = dt.value_and_grad(lambda a: dt.sum(a ** 3))(dt.constant([1.0, 2.0]))
    assert float(val) == 9.0
    np.testing.assert_array_equal(g.numpy(), [3.0, 12.0])
    assert float(dt.grad(lambda a: a * a)(3.0)) == 6.0


def test_bad_arguments_are_clear_errors():
    x = dt.constant([1.0, 2.0])
    with pytest.raises(DifftapeError, match="shape"):
        dt.ForwardAccumulator(x, [1.0, 2.0, 3.0])
    with pytest.raises(DifftapeError, match="int64"):
        dt.ForwardAccumulator(dt.constant([1, 2]), [1.0, 2.0])
    with pytest.raises(DifftapeError, match="scalar"):
        dt.grad(lambda v: v * 2)(x)
    with pytest.raises(DifftapeError, match="cotangent"):
        dt.vjp(lambda v: v * 2, x)[1](np.ones(3))
    with pytest.raises(DifftapeError, match="argnums"):
        dt.grad(lambda v: dt.sum(v), argnums=3)(x)
