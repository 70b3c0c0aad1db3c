"""Tape semantics: watching, accumulation, structure of answers, persistence, dtypes."""

from __future__ import annotations

import numpy as np
import pytest

import difftape as dt
from difftape.engine.tape import active_recorders


def grad(f, x, **kw):
    x = dt.constant(x) if not isinstance(x, dt.Tensor) else x
    with dt.Tape() as tape:
        tape.watch(x)
        y = f(x)
    return tape.gradient(y, x, **kw)


def test_gradient_accumulates_over_every_use():
    x = dt.constant(3.0)
    assert grad(lambda x: x * x + x, x).numpy() == 7.0  # 2x + 1
    assert grad(lambda x: x * x * x - 2 * x, x).numpy() == 25.0  # 3x^2 - 2
    v = dt.constant([1.0, 2.0])
    np.testing.assert_array_equal(grad(lambda v: v * v + v + v[::-1] * 0.5, v).numpy(), [3.5, 5.5])


def test_persistent_tape_answers_many_calls():
    x = dt.constant(2.0)
    with dt.Tape(persistent=True) as tape:
        tape.watch(x)
        y = x * x
        z = y * x
    assert tape.gradient(y, x).numpy() == 4.0
    assert tape.gradient(z, x).numpy() == 12.0
    assert tape.gradient(z, y).numpy() == 2.0
    assert tape.jacobian(z, x).numpy() == 12.0
    assert tape.gradient(y, x).numpy() == 4.0


def test_non_persistent_tape_refuses_a_second_call():
    x = dt.constant(2.0)
    with dt.Tape() as tape:
        tape.watch(x)
        y = x * x
    assert tape.gradient(y, x).numpy() == 4.0
    with pytest.raises(dt.DifftapeError, match="persistent") as err:
        tape.gradient(y, x)
    assert err.value.kind == "usage"
    with pytest.raises(dt.DifftapeError, match="persistent"):
        tape.jacobian(y, x)


def test_reset_forgets_everything():
    x = dt.constant(2.0)
    with dt.Tape(persistent=True) as tape:
        tape.watch(x)
        y = x * x
        tape.reset()
        z = x * x
    assert tape.gradient(y, x) is None and tape.gradient(z, x) is None


@pytest.mark.parametrize("kind", ["single", "list", "tuple", "dict"])
def test_sources_structure_is_preserved(kind):
    a, b = dt.constant(2.0), dt.constant(3.0)
    with dt.Tape() as tape:
        tape.watch([a, b])
        y = a * b
    sources = {"single": a, "list": [a, b], "tuple": (a, b), "dict": {"first": a, "second": b}}[kind]
    g = tape.gradient(y, sources)
    if kind == "single":
        assert isinstance(g, dt.Tensor) and g.numpy() == 3.0
    elif kind == "dict":
        assert isinstance(g, dict) and list(g) == ["first", "second"]
        assert (g["first"].numpy(), g["second"].numpy()) == (3.0, 2.0)
    else:
        assert type(g) is type(sources) and len(g) == 2
        assert (g[0].numpy(), g[1].numpy()) == (3.0, 2.0)


def test_unconnected_sources():
    a, b = dt.constant([1.0, 2.0]), dt.constant([[1.0, 2.0]])
    with dt.Tape(persistent=True) as tape:
        tape.watch([a, b])
        y = a * 2.0
    assert tape.gradient(y, [a, b])[1] is None
    zero = tape.gradient(y, [a, b], unconnected="zero")[1]
    assert zero.shape == (1, 2) and zero.dtype == np.float64
    np.testing.assert_array_equal(zero.numpy(), [[0.0, 0.0]])


def test_unwatched_constant_is_none():
    x = dt.constant(2.0)
    with dt.Tape() as tape:
        y = x * x
    assert tape.gradient(y, x) is None


def test_stop_recording():
    x = dt.constant(2.0)
    with dt.Tape() as tape:
        tape.watch(x)
        y = x * x
        with tape.stop_recording():
            z = y * x  # not recorded: z is a constant for this tape
        assert list(active_recorders()) == [tape]
        w = y + z
    assert tape.gradient(w, x).numpy() == 4.0


def test_stop_gradient():
    x = dt.constant(3.0)
    assert grad(lambda x: x * dt.stop_gradient(x), x).numpy() == 3.0
    assert grad(lambda x: dt.stop_gradient(x * x), x) is None
    assert dt.stop_gradient(x * x).numpy() == 9.0


def test_integer_source_is_an_error_naming_it():
    n = dt.Variable(2, name="count")
    with dt.Tape() as tape:
        y = n * n
    with pytest.raises(dt.DifftapeError, match="count") as err:
        tape.gradient(y, n)
    assert err.value.kind == "type"
    assert "int64" in err.value.message
    k = dt.constant(3)
    with dt.Tape() as tape:
        tape.watch(k)
        y = k * 2.5
    with pytest.raises(dt.DifftapeError, match="position 1"):
        tape.gradient(y, [dt.constant(1.0), k])


def test_non_scalar_target_is_gradient_of_sum():
    x = dt.constant([1.0, 2.0, 3.0])
    g = grad(lambda x: dt.stack([x * x, 3 * x]), x)
    np.testing.assert_array_equal(g.numpy(), 2 * x.numpy() + 3)


def test_output_gradients():
    x = dt.constant([1.0, 2.0, 3.0])
    with dt.Tape(persistent=True) as tape:
        tape.watch(x)
        y = x * x
    g = tape.gradient(y, x, output_gradients=dt.constant([1.0, 0.0, -2.0]))
    np.testing.assert_array_equal(g.numpy(), [2.0, 0.0, -12.0])
    g = tape.gradient(y, x, output_gradients=np.array([0.5, 0.5, 0.5]))
    np.testing.assert_array_equal(g.numpy(), [1.0, 2.0, 3.0])


def test_list_of_targets_is_gradient_of_their_total():
    x = dt.constant([1.0, 2.0])
    with dt.Tape(persistent=True) as tape:
        tape.watch(x)
        y = x * x
        z = dt.sum(x * 3.0)
    np.testing.assert_array_equal(tape.gradient([y, z], x).numpy(), [5.0, 7.0])
    np.testing.assert_array_equal(tape.gradient((y, y), x).numpy(), [4.0, 8.0])
    g = tape.gradient([y, z], x, output_gradients=[dt.constant([1.0, 0.0]), None])
    np.testing.assert_array_equal(g.numpy(), [5.0, 3.0])


def test_target_that_is_the_source():
    x = dt.constant([1.0, 2.0])
    with dt.Tape() as tape:
        tape.watch(x)
    np.testing.assert_array_equal(tape.gradient(x, x).numpy(), [1.0, 1.0])


def test_gradient_with_respect_to_an_intermediate():
    x = dt.constant(2.0)
    with dt.Tape(persistent=True) as tape:
        tape.watch(x)
        u = x * x
        y = u * u + x
    gu, gx = tape.gradient(y, [u, x])
    assert gu.numpy() == 8.0 and gx.numpy() == 33.0  # 2u; 4x^3 + 1


def test_variables_are_watched_automatically():
    v = dt.Variable(2.0)
    frozen = dt.Variable(5.0, trainable=False)
    with dt.Tape() as tape:
        y = v * frozen
    gv, gf = tape.gradient(y, [v, frozen])
    assert gv.numpy() == 5.0 and gf is None
    assert tape.watched_variables() == [v]
    with dt.Tape() as tape:
        tape.watch(frozen)
        y = v * frozen
    assert tape.gradient(y, frozen).numpy() == 2.0


def test_watch_accessed_variables_false():
    v = dt.Variable(2.0)
    with dt.Tape(watch_accessed_variables=False) as tape:
        y = v * v
    assert tape.gradient(y, v) is None


def test_watch_takes_only_tensors():
    with dt.Tape() as tape:
        with pytest.raises(dt.DifftapeError, match="constant"):
            tape.watch(2.0)


def test_numpy_ufuncs_on_tensors_are_recorded():
    x = dt.constant(0.5)
    with dt.Tape() as tape:
        tape.watch(x)
        y = np.sin(x) * np.exp(x) + np.maximum(x, 0.0) + np.abs(-x) + np.add(x, 1.0)
    assert isinstance(y, dt.Tensor)
    expected = np.cos(0.5) * np.exp(0.5) + np.sin(0.5) * np.exp(0.5) + 3.0
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), expected, rtol=1e-15)


def test_variable_value_is_taken_when_recorded():
    # TensorFlow semantics: the gradient uses the values the operations saw, even when the
    # variable is assigned before gradient() is called (a training step between two calls).
    v = dt.Variable(3.0)
    with dt.Tape(persistent=True) as tape:
        y = v * v
    assert tape.gradient(y, v).numpy() == 6.0
    v.assign(100.0)
    assert tape.gradient(y, v).numpy() == 6.0
    with dt.Tape() as tape:
        y = v * v
        v.assign_sub(98.0)
    assert tape.gradient(y, v).numpy() == 200.0


def test_float32_stays_float32():
    x = dt.constant([1.0, 2.0], dtype="float32")
    ops = [
        lambda x: x * 2.0 + 1,
        lambda x: x**2 / 3,
        lambda x: dt.maximum(x, 1.5) - dt.minimum(x, 0.5),
        lambda x: dt.sum(x * 0.5) * dt.mean(x),
        lambda x: dt.where(x > 1.0, dt.sqrt(x), 0.0),
        lambda x: dt.max(x) + dt.norm(x) + dt.logsumexp(x) + dt.std(x),
        lambda x: dt.sigmoid(x) + dt.softplus(x) + dt.relu(x - 1.5) + dt.abs(x),
        lambda x: dt.clip(x, 1.0, 1.5) + dt.softmax(x) + dt.log_softmax(x),
        lambda x: dt.prod(x) * dt.tanh(x),
    ]
    for f in ops:
        with dt.Tape() as tape:
            tape.watch(x)
            y = f(x)
        assert y.dtype == np.float32, f"value of {f}"
        g = tape.gradient(y, x)
        assert g.dtype == np.float32, f"gradient of {f}"


def test_int_and_float_semantics():
    y = dt.constant(2) ** 3
    assert y.dtype == np.int64 and y.numpy() == 8
    half = dt.constant(2) ** -1
    assert half.dtype.kind == "f" and half.numpy() == 0.5
    assert (dt.constant([2, 4]) ** dt.constant([-1, 2])).numpy().tolist() == [0.5, 16.0]
    assert dt.power(2, -2).numpy() == 0.25
    assert (dt.constant(7) // 2).numpy() == 3 and (dt.constant(7) // 2).dtype == np.int64
    assert (dt.constant(7) / 2).numpy() == 3.5
    assert (dt.constant(2) * 1.5).dtype == np.float64
    assert (dt.constant(2.0, dtype="float32") * 3).dtype == np.float32


def test_jacobian_method():
    x = dt.constant([1.0, 2.0])
    with dt.Tape() as tape:
        tape.watch(x)
        y = dt.stack([x[0] * x[1], x[0] + 3 * x[1], x[1] ** 2])
    j = tape.jacobian(y, x)
    assert j.shape == (3, 2)
    np.testing.assert_array_equal(j.numpy(), [[2.0, 1.0], [1.0, 3.0], [0.0, 4.0]])


def test_tape_stack_is_restored_after_errors():
    x = dt.constant(1.0)
    try:
        with dt.Tape() as tape:
            tape.watch(x)
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert list(active_recorders()) == []


def test_numpy_reductions_on_tensors_are_recorded():
    x = dt.constant([[1.0, 2.0], [3.0, 4.0]])
    with dt.Tape() as tape:
        tape.watch(x)
        y = np.sum(x) + np.mean(x, axis=0).sum() + np.max(x) + np.prod(x, keepdims=True).sum() + np.min(x, 1)[0]
    assert isinstance(y, dt.Tensor)
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [[26.5, 13.5], [9.5, 8.5]])
    with pytest.raises(dt.DifftapeError, match="out="):
        np.sum(x, out=np.zeros(()))


def test_lists_holding_tensors_stay_connected():
    a = dt.constant(2.0)
    x = dt.constant([10.0, 20.0, 30.0])
    with dt.Tape(persistent=True) as tape:
        tape.watch(a)
        y = dt.multiply(x, [a, 1.0, a * a])
        m = dt.matmul([[a, 1.0], [0.0, a]], [1.0, 2.0])
    np.testing.assert_array_equal(y.numpy(), [20.0, 20.0, 120.0])
    assert tape.gradient(y, a).numpy() == 10.0 + 30.0 * 4.0
    assert tape.gradient(m, a).numpy() == 3.0


# ----------------------------------------------------------------------------------------
# slots: a tensor carries the stamp of the tape that tracks it (tape.py); these are the cases
# where a stamp is not the asking tape's own


def test_tensor_tracked_by_two_live_tapes_one_after_the_other():
    x = dt.constant(2.0)
    with dt.Tape(persistent=True) as first:
        first.watch(x)
        y1 = x * x
    with dt.Tape(persistent=True) as second:  # x and y1 carry first's stamp: second keeps them aside
        second.watch(x)
        y2 = x * x * x
        z = y1 * 10.0  # y1 is not tracked by second
    assert second.gradient(y2, x).numpy() == 12.0
    assert second.gradient(z, x) is None
    assert first.gradient(y1, x).numpy() == 4.0  # first still finds both by their stamps
    with first:  # and keeps recording on them after second stamped nothing of its own on them
        w = y1 * x
    assert first.gradient(w, x).numpy() == 12.0  # d(x^3)/dx


def test_nested_tapes_then_the_outer_tape_alone():
    x = dt.constant(1.5)
    with dt.Tape(persistent=True) as outer:
        outer.watch(x)
        with dt.Tape(persistent=True) as inner:
            inner.watch(x)
            y = dt.sin(x) * x  # both tapes record (the general path)
        z = y * y  # only the outer tape records: y's stamp is inner's or outer's, never both
        w = dt.exp(y)
    s, c = np.sin(1.5), np.cos(1.5)
    dy = c * 1.5 + s
    np.testing.assert_allclose(outer.gradient(z, x).numpy(), 2 * s * 1.5 * dy, rtol=1e-15)
    np.testing.assert_allclose(outer.gradient(w, x).numpy(), np.exp(s * 1.5) * dy, rtol=1e-15)
    np.testing.assert_allclose(inner.gradient(y, x).numpy(), dy, rtol=1e-15)
    assert inner.gradient(z, x) is None


def test_stamps_of_a_spent_tape_do_not_leak_into_its_next_recording():
    x = dt.constant(3.0)
    tape = dt.Tape()
    with tape:
        tape.watch(x)
        y = x * x
        assert tape.gradient(y, x).numpy() == 6.0
    # the tape is spent; y still carries its old stamp, which must not read as "tracked"
    again = dt.Tape(persistent=True)
    with again:
        u = y * 2.0  # y is not tracked by this tape (a constant to it)
        again.watch(y)
        v = y * 2.0
    assert again.gradient(u, y) is None and again.gradient(v, y).numpy() == 2.0
    again.reset()
    with again:
        again.watch(x)
        r = y * x  # after reset, neither y nor the old stamp of x counts
    assert again.gradient(r, x).numpy() == 9.0  # y is the constant 9 here


def test_variables_across_many_tapes():
    v = dt.Variable(2.0)
    keep = []
    for k in range(5):
        tape = dt.Tape(persistent=True)  # persistent tapes stay live: v's first stamp stays
        with tape:
            y = v * v * float(k + 1)
        keep.append((tape, y))
    for k, (tape, y) in enumerate(keep):
        assert tape.gradient(y, v).numpy() == 4.0 * (k + 1)
        assert tape.watched_variables() == [v]


def test_a_recorded_output_can_be_watched_again_and_is_one_slot():
    x = dt.constant(0.5)
    with dt.Tape() as tape:
        tape.watch(x)
        y = dt.exp(x)
        tape.watch(y)  # already tracked: no second slot
        z = y * y
    gx, gy = tape.gradient(z, [x, y])
    assert gy.numpy() == 2 * np.exp(0.5)
    assert gx.numpy() == 2 * np.exp(0.5) * np.exp(0.5)


def test_a_tensor_value_is_always_numpy_so_operators_follow_numpy_rules():
    # tape.unary/binary use Python's operators on tensor values, which are numpy's ufuncs only
    # when a value is numpy's: a pass-through op on a Python number must not leave a float.
    t = dt.stop_gradient(0.0)
    assert isinstance(t.numpy(), np.generic)
    with np.errstate(divide="ignore"):
        assert (dt.constant(1.0) / t).numpy() == np.inf  # not ZeroDivisionError
        assert (1.0 / t).numpy() == np.inf
    big = dt.stop_gradient(2**62)
    with np.errstate(over="ignore"):
        assert (big * 4).dtype == np.int64  # numpy's int64, not Python's unbounded int
    assert (dt.constant(True) + dt.stop_gradient(True)).numpy() == np.True_  # numpy's bool addition
