"""difftape.function: one trace per signature, Variables read at call time, structured results.

That the replay of every case of ``op_cases.py`` is identical to eager code (values and
gradients, float64 and float32) is checked by ``test_op_cases.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

import difftape as dt


def test_traces_once_per_signature():
    calls = []

    @dt.function
    def f(x):
        calls.append(1)
        return x * 2.0 + 1.0

    assert f.trace_count == 0
    np.testing.assert_array_equal(f(dt.constant([1.0, 2.0])).numpy(), [3.0, 5.0])
    np.testing.assert_array_equal(f(dt.constant([5.0, 6.0])).numpy(), [11.0, 13.0])
    np.testing.assert_array_equal(f(np.array([0.0, 1.0])).numpy(), [1.0, 3.0])
    assert f.trace_count == 1 and len(calls) == 1  # same shape and dtype: replayed, body not run
    f(dt.constant([1.0, 2.0, 3.0]))  # new shape
    f(dt.constant([1.0, 2.0], dtype="float32"))  # new dtype
    assert f.trace_count == 3 and len(calls) == 3
    f(dt.constant([7.0, 8.0, 9.0]))
    assert f.trace_count == 3


def test_python_numbers_are_values_like_tensorflow():
    @dt.function
    def scale(x, s):
        return x * s

    x = dt.constant([1.0, 2.0], dtype="float32")
    y = scale(x, 0.5)
    assert y.dtype == np.float32 and y.dtype == (x * 0.5).dtype  # a weak Python float, as in eager code
    np.testing.assert_array_equal(y.numpy(), [0.5, 1.0])
    np.testing.assert_array_equal(scale(x, 3.0).numpy(), [3.0, 6.0])
    assert scale.trace_count == 2  # a new number: a new trace
    scale(x, 3.0)
    assert scale.trace_count == 2


def test_int_result_of_python_number():
    cube = dt.function(lambda x: x**3)
    y = cube(2)
    assert isinstance(y, dt.Tensor) and y.dtype == np.int64 and y.numpy() == 8
    assert cube(dt.constant(2)).numpy() == 8 and cube(dt.constant(2)).dtype == np.int64
    z = cube(dt.constant(1.5))
    assert z.dtype == np.float64 and z.numpy() == 3.375


def test_non_tensor_arguments_are_part_of_the_signature():
    @dt.function
    def f(x, axis, square=False):
        y = x * x if square else x
        return dt.sum(y, axis=axis)

    x = dt.constant([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(f(x, 0).numpy(), [4.0, 6.0])
    np.testing.assert_array_equal(f(x, 1).numpy(), [3.0, 7.0])
    np.testing.assert_array_equal(f(x, 1, square=True).numpy(), [5.0, 25.0])
    np.testing.assert_array_equal(f(x, axis=1, square=True).numpy(), [5.0, 25.0])
    assert f.trace_count == 4


def test_captured_variables_are_read_at_call_time():
    v = dt.Variable([1.0, 2.0])
    f = dt.function(lambda x: x * v)
    np.testing.assert_array_equal(f(dt.constant(3.0)).numpy(), [3.0, 6.0])
    v.assign([10.0, 20.0])
    np.testing.assert_array_equal(f(dt.constant(3.0)).numpy(), [30.0, 60.0])
    v.assign_add([1.0, 1.0])
    np.testing.assert_array_equal(f(dt.constant(1.0)).numpy(), [11.0, 21.0])
    assert f.trace_count == 1


def test_gradients_flow_through_a_traced_function():
    w = dt.Variable([[1.0, 2.0], [3.0, 4.0]])
    b = dt.Variable([0.5, -0.5])

    @dt.function
    def model(x):
        return dt.sum(dt.tanh(dt.matmul(w, x) + b) ** 2)

    x = dt.constant([0.1, -0.2])
    model(x)  # trace outside any tape
    with dt.Tape() as tape:
        tape.watch(x)
        y = model(x)
    gw, gb, gx = tape.gradient(y, [w, b, x])
    with dt.Tape() as tape:
        tape.watch(x)
        y_eager = dt.sum(dt.tanh(dt.matmul(w, x) + b) ** 2)
    ew, eb, ex = tape.gradient(y_eager, [w, b, x])
    assert y.numpy() == y_eager.numpy()
    for a, e in [(gw, ew), (gb, eb), (gx, ex)]:
        np.testing.assert_array_equal(a.numpy(), e.numpy())
    assert model.trace_count == 1


def test_second_derivative_through_a_traced_function():
    f = dt.function(lambda x: dt.sin(x) * x)
    h = dt.hessian(f, dt.constant(0.3))
    np.testing.assert_allclose(h.numpy(), 2 * np.cos(0.3) - 0.3 * np.sin(0.3), rtol=1e-15)


def test_tracing_inside_a_tape_does_not_record_the_trace_run():
    calls = []

    @dt.function
    def f(x):
        calls.append(1)
        return x * x

    x = dt.constant(3.0)
    with dt.Tape(persistent=True) as tape:
        tape.watch(x)
        y = f(x)  # traces now; only the replay is recorded
    assert tape.gradient(y, x).numpy() == 6.0
    assert len(tape._entries) == 1


@pytest.mark.parametrize("kind", ["list", "tuple", "dict", "nested"])
def test_structured_outputs(kind):
    def body(x):
        a, b = x * 2.0, dt.sum(x)
        return {"list": [a, b], "tuple": (a, b), "dict": {"a": a, "b": b}, "nested": {"p": (a, [b, 3])}}[kind]

    f = dt.function(body)
    x = dt.constant([1.0, 2.0])
    for _ in range(2):
        out = f(x)
        if kind == "dict":
            assert list(out) == ["a", "b"]
            a, b = out["a"], out["b"]
        elif kind == "nested":
            assert isinstance(out["p"], tuple) and isinstance(out["p"][1], list)
            a, (b, three) = out["p"]
            assert isinstance(three, dt.Tensor) and three.numpy() == 3
        else:
            assert type(out) is {"list": list, "tuple": tuple}[kind]
            a, b = out
        np.testing.assert_array_equal(a.numpy(), [2.0, 4.0])
        assert b.numpy() == 3.0
    assert f.trace_count == 1


def test_returning_an_input_or_a_variable():
    v = dt.Variable(1.0)
    f = dt.function(lambda x: (x, v))
    x = dt.constant([1.0])
    a, b = f(x)
    assert a is x and b is v


def test_random_draws_are_fixed_at_trace_time():
    dt.random.set_seed(0)
    f = dt.function(lambda x: x + dt.random.normal(()))
    first = f(dt.constant(0.0)).numpy()
    assert f(dt.constant(0.0)).numpy() == first


def test_traced_function_inside_a_traced_function():
    inner = dt.function(lambda x: x * x)
    outer = dt.function(lambda x: inner(x) + 1.0)
    assert outer(dt.constant(3.0)).numpy() == 10.0
    assert outer(dt.constant(4.0)).numpy() == 17.0
    assert outer.trace_count == 1 and inner.trace_count == 1


def test_tensor_arguments_used_as_indices_are_read_at_call_time():
    f = dt.function(lambda x, i: x[i])
    x = dt.constant([10.0, 20.0, 30.0])
    assert f(x, dt.constant(0)).numpy() == 10.0
    assert f(x, dt.constant(2)).numpy() == 30.0
    g = dt.function(lambda x, i: dt.sum(x[i, None]))
    assert g(x, dt.constant([0, 1])).numpy() == 30.0
    assert g(x, dt.constant([2, 2])).numpy() == 60.0
    assert f.trace_count == 1 and g.trace_count == 1


def test_methods_trace_per_instance():
    class Dense:
        def __init__(self, w):
            self.w = dt.Variable(w)

        @dt.function
        def __call__(self, x):
            return dt.matmul(self.w, x)

        @dt.function
        def scaled(self, x, by):
            return self.w * x * by

    a, b = Dense([[1.0, 0.0], [0.0, 1.0]]), Dense([[2.0, 0.0], [0.0, 2.0]])
    x = dt.constant([1.0, 3.0])
    np.testing.assert_array_equal(a(x).numpy(), [1.0, 3.0])
    np.testing.assert_array_equal(b(x).numpy(), [2.0, 6.0])  # b's own variable, not a's
    np.testing.assert_array_equal(a(x).numpy(), [1.0, 3.0])
    assert a.scaled(x, 2.0).numpy()[1, 1] == 6.0 and b.scaled(x, 2.0).numpy()[1, 1] == 12.0
    with dt.Tape() as tape:
        y = dt.sum(b(x))
    np.testing.assert_array_equal(tape.gradient(y, b.w).numpy(), [[1.0, 3.0], [1.0, 3.0]])


def test_non_tensor_arguments_are_keyed_by_value_or_identity():
    f = dt.function(lambda x, pair: x * pair[0] + pair[1])
    x = dt.constant(np.ones(2000))
    middle = np.zeros(2000)
    middle[1000] = 5.0
    big1, big2 = dt.constant(np.zeros(2000)), dt.constant(middle)
    assert repr(big1) == repr(big2)  # numpy summarizes both the same way: a repr key would mix them up
    assert f(x, (1.0, big1)).numpy().sum() == 2000.0
    assert f(x, (1.0, big2)).numpy().sum() == 2005.0
    g = dt.function(lambda x, cfg: x * cfg["scale"])
    assert g(dt.constant(2.0), {"scale": 3.0}).numpy() == 6.0
    assert g(dt.constant(2.0), {"scale": 3.0}).numpy() == 6.0
    assert g(dt.constant(2.0), {"scale": 4.0}).numpy() == 8.0
    assert g.trace_count == 2
