"""The seed notebook (/work/shared/seed), cell by cell, through difftape's Python API.

TensorFlow's float32 defaults become numpy's: a Python float makes a float64 tensor,
a Python int an int64 one. Everything else is the notebook's answer.
"""

from __future__ import annotations

import numpy as np
import pytest

import difftape as dt


def test_variables_scalar_vector_matrix():  # In [2]-[4]
    s = dt.Variable(1.0)
    v = dt.Variable(dt.ones((2,)))
    x = dt.Variable(dt.ones((2, 1)))
    assert (s.shape, s.dtype) == ((), np.float64)
    assert (v.shape, v.dtype) == ((2,), np.float64)
    assert (x.shape, x.dtype) == ((2, 1), np.float64)
    assert isinstance(s, dt.Tensor) and s.numpy() == 1.0
    np.testing.assert_array_equal(v.numpy(), [1.0, 1.0])
    assert dt.Variable(3).dtype == np.int64  # dtype inferred from the initial value
    assert dt.Variable(np.ones(2, np.float32)).dtype == np.float32


def test_assign_assign_add_assign_sub():  # In [5]
    x = dt.Variable(dt.ones((2, 1)))
    same = x.assign(dt.ones((2, 1)))
    assert same is x  # assigning keeps the variable (x = ones(...) would replace it)
    out = x.numpy()
    assert out.shape == (2, 1) and out.dtype == np.float64
    np.testing.assert_array_equal(out, [[1.0], [1.0]])
    x.assign_add([[2.0], [3.0]])
    np.testing.assert_array_equal(x.numpy(), [[3.0], [4.0]])
    x.assign_sub(dt.ones((2, 1)))
    np.testing.assert_array_equal(x.numpy(), [[2.0], [3.0]])
    out[0, 0] = 99.0  # .numpy() is a copy
    assert x.numpy()[0, 0] == 2.0
    i = dt.Variable(5)
    i.assign(7)
    assert i.numpy() == 7 and i.dtype == np.int64
    with pytest.raises(dt.DifftapeError, match="int64"):  # TensorFlow refuses a dtype change too
        i.assign(7.9)
    assert i.numpy() == 7
    with pytest.raises(dt.DifftapeError, match="shape"):
        x.assign(dt.ones((2,)))


def cube(x):  # In [6]
    return x**3


def test_plain_python_cube():  # In [7], In [8]
    assert cube(2) == 8 and type(cube(2)) is int
    y = cube(dt.constant(2.0))
    assert isinstance(y, dt.Tensor)
    assert y.shape == () and y.dtype == np.float64
    assert y.numpy() == 8.0 and isinstance(y.numpy(), np.floating)


def test_traced_cube():  # In [9], In [10]
    tf_cube = dt.function(cube)
    y = tf_cube(2)
    assert isinstance(y, dt.Tensor)
    assert y.dtype.kind == "i" and y.shape == ()
    assert y.numpy() == 8
    assert tf_cube(dt.constant(2.0)).numpy() == 8.0


def test_forward_w_x_plus_b():  # In [11]
    W = dt.Variable(dt.ones(shape=(2, 2)), name="W")
    b = dt.Variable(dt.zeros(shape=(2)), name="b")
    np.testing.assert_array_equal(W.numpy(), [[1.0, 1.0], [1.0, 1.0]])
    np.testing.assert_array_equal(b.numpy(), [0.0, 0.0])
    assert W.name == "W:0" and b.name == "b:0"  # as TensorFlow names them

    @dt.function
    def forward(x):
        return W * x + b

    out_a = forward([1, 0])
    assert out_a.shape == (2, 2) and out_a.dtype == np.float64
    np.testing.assert_array_equal(out_a.numpy(), [[1.0, 0.0], [1.0, 0.0]])
    b.assign([1.0, 2.0])  # the traced graph reads the variable at call time
    np.testing.assert_array_equal(forward([1, 0]).numpy(), [[2.0, 2.0], [2.0, 2.0]])
    assert forward.trace_count == 1


@pytest.mark.parametrize("draw", ["normal", "randn"])
def test_gradient_of_x_squared_is_exactly_2x(draw):  # In [12]
    dt.random.set_seed(7)
    x = dt.random.normal((2, 2)) if draw == "normal" else dt.random.randn(2, 2)
    with dt.GradientTape() as g:
        g.watch(x)
        y = x**2
    dy_dx = g.gradient(y, x)
    true_grad = 2 * x
    assert dy_dx.shape == (2, 2) and dy_dx.dtype == x.dtype
    assert np.abs(true_grad - dy_dx).max() == 0.0
    assert float(np.max(np.abs(np.asarray(true_grad) - np.asarray(dy_dx)))) == 0.0
    assert not np.all(np.asarray(x) == 0)


def test_set_seed_reproduces_draws():
    dt.random.set_seed(7)
    a = dt.random.normal((2, 2))
    dt.random.set_seed(7)
    b = dt.random.normal((2, 2))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    dt.random.set_seed(8)
    assert not np.array_equal(dt.random.normal((2, 2)).numpy(), a.numpy())


def test_gradient_of_multiply_5x():  # In [13]
    x = dt.Variable(dt.constant(1.0))
    with dt.GradientTape() as tape:
        y = dt.multiply(5, x)
    gradient = tape.gradient(y, x)
    assert gradient.numpy() == 5.0
    assert isinstance(gradient.numpy(), np.floating)
    assert y.numpy() == 5.0 and np.ndim(y.numpy()) == 0


def test_gradient_of_x1_x2():  # In [14]
    x1 = dt.Variable(dt.constant(1.0))
    x2 = dt.Variable(dt.constant(1.0))
    with dt.GradientTape() as tape:
        y = dt.multiply(x1, x2)
    gradients = tape.gradient(y, [x1, x2])
    assert isinstance(gradients, list) and len(gradients) == 2
    assert (gradients[0].numpy(), gradients[1].numpy()) == (1.0, 1.0)


def test_unwatched_constant_then_watched():  # In [15], In [16]
    x = dt.Variable(dt.constant(1.0))
    a = dt.constant(1.0)
    with dt.GradientTape() as tape:
        y = dt.multiply(a, x)
    gradient = tape.gradient(y, a)
    assert gradient is None

    with dt.GradientTape() as tape:
        tape.watch(a)
        y = dt.multiply(a, x)
    gradient = tape.gradient(y, a)
    assert gradient is not None and gradient.numpy() == 1.0


def test_random_draws_shapes_dtypes_and_ranges():
    dt.random.set_seed(3)
    assert dt.random.normal().shape == () and dt.random.normal(3).shape == (3,)
    assert dt.random.randn(2, 3).shape == dt.random.randn((2, 3)).shape == (2, 3)
    u = dt.random.uniform((1000,), minval=-2.0, maxval=-1.0, dtype="float32")
    assert u.dtype == np.float32 and u.numpy().min() >= -2.0 and u.numpy().max() < -1.0
    r = dt.random.rand(500)
    assert 0.0 <= r.numpy().min() and r.numpy().max() < 1.0
    n = dt.random.normal((4000,), mean=3.0, stddev=0.5)
    assert abs(float(np.mean(n.numpy())) - 3.0) < 0.05 and abs(float(np.std(n.numpy())) - 0.5) < 0.05
