"""Review of the slot-based tape engine (tape.py: stamps ``Tensor._tok``/``_idx``, ``_other``, flat entries,
``tape.unary``/``tape.binary``): adversarial cases, each checked against an independent reference
(closed forms, or five-point finite differences in float64 from ``gradcheck``).

The last four tests pin bugs the review found (each failed before its fix): copy.copy carrying the stamp,
a pass-through complex number, and f(x, x) under difftape.function differentiated while another tape records.
"""

from __future__ import annotations

import copy
import gc
import pickle
import random
import weakref

import numpy as np
import pytest
from gradcheck import numeric_grad

import difftape as dt


def val(t):
    """A gradient's value as a float64 array (None stays None)."""
    return None if t is None else np.asarray(t.numpy(), dtype=np.float64)


def close(got, want, rtol=1e-12, atol=1e-12):
    assert got is not None
    np.testing.assert_allclose(val(got), want, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------------------
# nested tapes: hessians and third derivatives, every order of watching, gradient inside/outside


@pytest.mark.parametrize("inner_first", [False, True])
@pytest.mark.parametrize("persistent", [False, True])
def test_hessian_two_levels_any_watch_order(inner_first, persistent):
    X = 1.3
    x = dt.constant(X)
    with dt.Tape(persistent=persistent) as outer:
        with dt.Tape(persistent=persistent) as inner:
            for t in ((inner, outer) if inner_first else (outer, inner)):
                t.watch(x)
            y = dt.sin(x) * x * x
        g = inner.gradient(y, x)
    h = outer.gradient(g, x)
    s, c = np.sin(X), np.cos(X)
    close(g, c * X * X + 2 * s * X)
    close(h, -s * X * X + 4 * c * X + 2 * s)


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0)])
def test_third_derivative_three_levels(order):
    X = 0.7
    x = dt.constant(X)
    with dt.Tape() as t1:
        with dt.Tape() as t2:
            with dt.Tape() as t3:
                for k in order:
                    (t1, t2, t3)[k].watch(x)
                y = dt.exp(x) * x**3
            g1 = t3.gradient(y, x)
        g2 = t2.gradient(g1, x)
    g3 = t1.gradient(g2, x)
    e = np.exp(X)
    close(g1, e * (X**3 + 3 * X**2))
    close(g2, e * (X**3 + 6 * X**2 + 6 * X))
    close(g3, e * (X**3 + 9 * X**2 + 18 * X + 6))


def test_persistent_nested_gradients_inside_and_outside_the_blocks():
    X = 0.6
    x = dt.constant(X)
    with dt.Tape(persistent=True) as outer:
        outer.watch(x)
        with dt.Tape(persistent=True) as inner:
            inner.watch(x)
            y = x**4
            g_in = inner.gradient(y, x)  # inside both blocks: recorded by outer (inner is paused)
        g_mid = inner.gradient(y, x)  # outside inner, inside outer: recorded by outer
    g_out = inner.gradient(y, x)  # outside both: plain numpy
    for g in (g_in, g_mid, g_out):
        close(g, 4 * X**3)
    close(outer.gradient(g_in, x), 12 * X**2)
    close(outer.gradient(g_mid, x), 12 * X**2)
    assert outer.gradient(g_out, x) is None  # computed with no tape recording: a constant
    close(outer.gradient(y, x), 4 * X**3)


@pytest.mark.parametrize("inner_first", [False, True])
def test_outer_keeps_recording_after_a_spent_inner_tape(inner_first):
    # whichever tape stamped x and y, the outer tape still finds them after the inner one's token died
    X = 2.0
    x = dt.constant(X)
    with dt.Tape() as outer:
        with dt.Tape() as inner:
            for t in ((inner, outer) if inner_first else (outer, inner)):
                t.watch(x)
            y = x * x
        gy = inner.gradient(y, x)  # 2x, recorded by outer
        z = y * gy + dt.sin(x)  # 2x^3 + sin x
    close(outer.gradient(z, x), 6 * X**2 + np.cos(X))


def test_a_value_computed_before_the_outer_tape_started_is_a_constant_to_it():
    X = 0.9
    x = dt.constant(X)
    c = dt.sin(x) * 2.0  # no tape at all
    with dt.Tape(persistent=True) as early:
        early.watch(x)
        a = x * x  # recorded on a tape that is not the outer one
    with dt.Tape() as outer:
        outer.watch(x)
        b = dt.exp(x)  # recorded by outer only
        with dt.Tape() as inner:
            inner.watch(x)
            y = (a + c) * x * x + b * x  # a, c: constants to both; b: constant to inner only
        g = inner.gradient(y, x)
    close(g, 2 * (X * X + 2 * np.sin(X)) * X + np.exp(X))
    close(outer.gradient(g, x), 2 * (X * X + 2 * np.sin(X)) + np.exp(X))
    close(early.gradient(a, x), 2 * X)


# ----------------------------------------------------------------------------------------
# one tensor, several tapes; reset; a spent tape that keeps recording


def test_tensor_watched_by_sibling_tapes_whose_stamps_die_and_are_replaced():
    X = 1.5
    x = dt.constant(X)
    first = dt.Tape()  # stamps x first
    second = dt.Tape(persistent=True)  # keeps x aside (first's stamp is live)
    with first:
        first.watch(x)
        y1 = x * x
    with second:
        second.watch(x)
        y2 = x * x * x
    close(first.gradient(y1, x), 2 * X)  # first's token dies: x's stamp is stale now
    third = dt.Tape(persistent=True)
    with third:
        third.watch(x)  # takes over the stamp
        y3 = dt.sin(x) * x
    with second:
        z2 = y2 * x  # second still finds x and y2
    close(second.gradient(z2, x), 4 * X**3)
    close(second.gradient(y2, x), 3 * X**2)
    close(third.gradient(y3, x), np.cos(X) * X + np.sin(X))
    assert third.gradient(y2, x) is None and second.gradient(y3, x) is None


def test_reset_inside_the_block_forgets_old_stamps_and_records_anew():
    X = 1.2
    x = dt.constant(X)
    v = dt.Variable(0.5)
    with dt.Tape(persistent=True) as tape:
        tape.watch(x)
        y = x * x * v
        tape.reset()
        assert tape.watched_variables() == [] and tape.gradient(y, [x, v]) == [None, None]
        z = y * x  # y and x carry the old generation's stamp: not tracked; v is watched again
        tape.watch(y)
        w = y * x * v
    assert tape.gradient(z, [x, y, v]) == [None, None, None]
    gx, gy, gv = tape.gradient(w, [x, y, v])
    assert gx is None
    close(gy, X * 0.5)
    close(gv, X * X * 0.5 * X)
    assert tape.watched_variables() == [v]


def test_non_persistent_tape_that_keeps_recording_after_its_gradient():
    X = 2.0
    x = dt.constant(X)
    v = dt.Variable(1.5)
    with dt.Tape() as tape:
        tape.watch(x)
        y = x * v
        gx, gv = tape.gradient(y, [x, v])
        z = y * v * x  # recorded into a new generation: v is auto-watched again, x and y are not tracked
    close(gx, 1.5)
    close(gv, X)
    assert tape.watched_variables() == [v]
    with pytest.raises(dt.DifftapeError, match="only once"):
        tape.gradient(z, x)
    tape.reset()
    with tape:
        tape.watch(x)
        q = x * y * v
    close(tape.gradient(q, x), 3.0 * 1.5)


# ----------------------------------------------------------------------------------------
# Variables, intermediates, targets


def test_variables_trainable_not_trainable_and_assigned_between_forward_and_backward():
    v = dt.Variable(2.0)
    w = dt.Variable(3.0, trainable=False)
    with dt.Tape(persistent=True) as tape:
        y = v * w + v * v
        v.assign(10.0)  # the recorded values are used: d/dv = w + 2*2
        w.assign(-1.0)
    gv, gw = tape.gradient(y, [v, w])
    close(gv, 3.0 + 4.0)
    assert gw is None
    assert tape.watched_variables() == [v]
    with dt.Tape(watch_accessed_variables=False) as quiet:
        y = v * v
    assert quiet.gradient(y, v) is None and quiet.watched_variables() == []
    with dt.Tape(watch_accessed_variables=False) as explicit:
        explicit.watch(w)  # a non-trainable Variable, watched by hand
        y = w * v
    gw, gv = explicit.gradient(y, [w, v])
    close(gw, 10.0)
    assert gv is None and explicit.watched_variables() == [w]


def test_gradients_with_respect_to_intermediates_and_lists_of_targets():
    X = np.array([1.0, 2.0])
    x = dt.constant(X)
    with dt.Tape(persistent=True) as tape:
        tape.watch(x)
        a = x * 3.0
        b = dt.sin(a)
        c = b * a
    A = 3 * X
    dc_da = np.cos(A) * A + np.sin(A)
    ga, gb, gx = tape.gradient(c, [a, b, x])
    close(ga, dc_da)
    close(gb, A)
    close(gx, 3 * dc_da)
    close(tape.gradient(a, a), np.ones(2))  # a target that is its own source
    seed = np.array([1.0, 2.0])
    gx, ga = tape.gradient([c, a], [x, a], output_gradients=[seed, None])
    close(gx, 3 * (seed * dc_da + 1))
    close(ga, seed * dc_da + 1)
    (gx,) = tape.gradient([a, a], [x], output_gradients=[seed, 2 * seed])
    close(gx, 9 * seed)
    g = tape.gradient(c, {"p": x, "q": a})
    close(g["p"], 3 * dc_da)
    close(g["q"], dc_da)


def test_untracked_targets():
    x = dt.constant([1.0, 2.0])
    other = dt.Tape(persistent=True)
    with other:
        other.watch(x)
        elsewhere = x * 2.0  # tracked by another tape only
    with dt.Tape(persistent=True) as tape:
        tape.watch(x)
        _ = x * x
    for target in (dt.constant(1.0), elsewhere, 3.0, np.ones(2), [dt.constant(1.0)]):
        assert tape.gradient(target, x) is None
    np.testing.assert_array_equal(val(tape.gradient(elsewhere, x, unconnected="zero")), [0.0, 0.0])
    close(other.gradient(elsewhere, x), [2.0, 2.0])


def test_jacobians_on_persistent_tapes_and_a_hessian_from_nested_jacobians():
    X = np.array([0.3, -0.7, 1.1])
    x = dt.constant(X)
    with dt.Tape(persistent=True) as outer:
        outer.watch(x)
        with dt.Tape(persistent=True) as inner:
            inner.watch(x)
            y = dt.sin(x) * dt.sum(x * x)
        J = inner.jacobian(y, x)
        J_again = inner.jacobian(y, x)
    H = outer.jacobian(J, x)
    S = np.sum(X * X)
    J_ref = np.diag(np.cos(X) * S) + np.outer(np.sin(X), 2 * X)
    close(J, J_ref)
    close(J_again, J_ref)
    close(inner.gradient(y, x), J_ref.sum(axis=0))
    eye = np.eye(3)
    H_ref = (eye[:, :, None] * (-np.sin(X) * S)[:, None, None] * eye[:, None, :]
             + eye[:, :, None] * (2 * np.cos(X))[:, None, None] * X[None, None, :]
             + 2 * np.cos(X)[:, None, None] * eye[:, None, :] * X[None, :, None]
             + 2 * np.sin(X)[:, None, None] * eye[None, :, :])
    close(H, H_ref)


def test_stop_recording_on_inner_and_outer_tapes():
    X = 2.0
    x = dt.constant(X)
    with dt.Tape(persistent=True) as outer:
        outer.watch(x)
        with dt.Tape(persistent=True) as inner:
            inner.watch(x)
            y = x * x
            with inner.stop_recording():
                a = y * x  # outer only (one tape active: the fast path)
            with outer.stop_recording():
                b = y * x  # inner only
            z = a + b
    close(outer.gradient(z, x), 3 * X**2)  # through a only: b is not tracked by outer
    close(inner.gradient(z, x), 3 * X**2)  # through b only


# ----------------------------------------------------------------------------------------
# operators and functions on numbers, dtypes, shapes


_UNARY_OPS = {
    "2*t": lambda t: 2 * t, "t*2": lambda t: t * 2, "t/4": lambda t: t / 4, "3/t": lambda t: 3 / t,
    "1.5-t": lambda t: 1.5 - t, "t-1": lambda t: t - 1, "t+0.5": lambda t: t + 0.5, "-t": lambda t: -t,
    "+t": lambda t: +t, "abs": lambda t: abs(t), "t*t": lambda t: t * t, "t/t^2": lambda t: t / (t * t),
    "t**3": lambda t: t**3, "2**t": lambda t: 2**t, "sin": dt.sin, "mul": lambda t: dt.multiply(t, 2.5),
    "rmul": lambda t: dt.multiply(2.5, t), "div": lambda t: dt.divide(1.0, t), "np": lambda t: np.exp(t) * t,
}


@pytest.mark.parametrize("shape", [(), (3,), (2, 3)])
def test_python_number_operands_and_operators_match_finite_differences(shape):
    X = (np.arange(int(np.prod(shape))).reshape(shape) * 0.3 + 0.7).astype(np.float64)
    for name, f in _UNARY_OPS.items():
        ref = numeric_grad(lambda a, f=f: float(np.sum(f(dt.constant(a)).numpy())), [X], 0)
        for dtype in ("float64", "float32"):
            x = dt.constant(X, dtype=dtype)
            with dt.Tape() as tape:
                tape.watch(x)
                y = f(x)
            assert y.dtype == np.dtype(dtype) and y.shape == shape, name
            g = tape.gradient(y, x)
            assert g.dtype == np.dtype(dtype) and g.shape == shape, name
            assert isinstance(g.numpy(), np.generic if shape == () else np.ndarray), name
            tol = 1e-8 if dtype == "float64" else 2e-6
            np.testing.assert_allclose(val(g), ref, rtol=tol, atol=tol, err_msg=f"{name} {dtype}")


def test_int_bool_and_mixed_operands_follow_numpy():
    i, b, f32 = dt.constant(3), dt.constant(True), dt.constant(1.5, dtype="float32")
    cases = {
        "i*2": (lambda: i * 2, np.int64(3) * 2), "i/2": (lambda: i / 2, np.int64(3) / 2),
        "2/i": (lambda: 2 / i, 2 / np.int64(3)), "i+2.5": (lambda: i + 2.5, np.int64(3) + 2.5),
        "b+1": (lambda: b + 1, np.True_ + 1), "b*2.5": (lambda: b * 2.5, np.True_ * 2.5),
        "b+b": (lambda: b + b, np.True_ + np.True_), "i-b": (lambda: i - b, np.int64(3) - np.True_),
        "f32*2": (lambda: f32 * 2, np.float32(1.5) * 2), "f32/3.0": (lambda: f32 / 3.0, np.float32(1.5) / 3.0),
        "f32+i": (lambda: f32 + i, np.float32(1.5) + np.int64(3)), "-i": (lambda: -i, -np.int64(3)),
        "1-f32": (lambda: 1 - f32, 1 - np.float32(1.5)),
    }
    for name, (got, want) in cases.items():
        t = got()
        assert t.dtype == np.asarray(want).dtype and t.numpy() == want, name
        assert isinstance(t.numpy(), np.generic), name
    with np.errstate(divide="ignore"):
        assert (dt.constant(1.0) / 0.0).numpy() == np.inf and (i / 0).numpy() == np.inf
        assert (-1 / dt.constant(0.0)).numpy() == -np.inf
    with pytest.raises(dt.DifftapeError, match="boolean"):
        _ = -b  # numpy's rule for booleans, as before the rewrite (as difftape's error since issue 18)
    x = dt.constant(2.0)
    with dt.Tape() as tape:
        tape.watch(x)
        y = x * i + b * x  # int and bool tensors are constants here
    close(tape.gradient(y, x), 4.0)
    with dt.Tape() as tape:
        tape.watch(i)
        y = i * 2.0
    with pytest.raises(dt.DifftapeError, match="int64"):
        tape.gradient(y, i)


@pytest.mark.parametrize("n", [3, 5000])  # 5000: the backward pass's in-place accumulation (>= 4096 elements)
def test_broadcasting_both_ways_inputs_used_twice_and_large_arrays(n):
    rng = np.random.default_rng(0)
    X = rng.uniform(0.5, 1.5, size=(2, n))
    W = rng.uniform(0.5, 1.5, size=(n,))
    x, w = dt.constant(X), dt.constant(W)
    with dt.Tape() as tape:
        tape.watch([x, w])
        a = x * w  # (2, n) * (n,)
        b = w - x  # (n,) - (2, n)
        c = a * a + a + b / w + x * x * x + (w + w) * 0.5
        s = dt.sum(c)
    gx, gw = tape.gradient(s, [x, w])
    A = X * W
    close(gx, (2 * A + 1) * W - 1 / W + 3 * X * X, rtol=1e-12)
    close(gw, np.sum((2 * A + 1) * X + X / (W * W), axis=0) + 2.0, rtol=1e-12)  # (w + w) * 0.5 feeds 2 rows


def test_output_gradients_are_not_mutated_and_intermediate_gradients_are_not_aliased():
    N = 5000
    seed = np.random.default_rng(1).standard_normal(N)
    keep = seed.copy()
    x = dt.constant(np.ones(N))
    with dt.Tape(persistent=True) as tape:
        tape.watch(x)
        a = x * 2.0
        b = a + a
        c = b + x + a
    for _ in range(2):
        gx, ga, gb = tape.gradient([c, b], [x, a, b], output_gradients=[seed, seed])
        close(gx, 11 * keep)  # (2*2 + 1 + 2) + 2*2
        close(ga, 5 * keep)
        close(gb, 2 * keep)
        np.testing.assert_array_equal(seed, keep)


def test_where_masks_are_nan_safe_through_the_fast_paths_and_in_hessians():
    for N in (3, 5000):  # 5000: the unselected branch's nan slopes meet the in-place accumulation too
        X = np.linspace(-2.0, 2.0, N)
        x = dt.constant(X)
        with np.errstate(all="ignore"):  # sqrt and log of the negatives, in the branch not selected
            with dt.Tape() as tape:
                tape.watch(x)
                y = dt.where(x > 0, dt.sqrt(x) * dt.log(x), x * 2.0)
                s = dt.sum(y * y + y * 3.0)
            g = tape.gradient(s, x)
        pos = X > 0
        Xp = np.where(pos, X, 1.0)
        Y = np.where(pos, np.sqrt(Xp) * np.log(Xp), 2 * X)
        dY = np.where(pos, 0.5 / np.sqrt(Xp) * np.log(Xp) + 1 / np.sqrt(Xp), 2.0)
        assert np.isfinite(val(g)).all()
        close(g, (2 * Y + 3) * dY, rtol=1e-10)
    x = dt.constant([-1.0, 0.0, 4.0])
    with np.errstate(all="ignore"):
        with dt.Tape() as outer:
            outer.watch(x)
            with dt.Tape() as inner:
                inner.watch(x)
                y = dt.where(x > 0, x * dt.sqrt(x), x * x)
            g = inner.gradient(y, x)
        h = outer.gradient(g, x)
    close(g, [-2.0, 0.0, 3.0])
    close(h, [2.0, 2.0, 0.375])


# ----------------------------------------------------------------------------------------
# difftape.function with tapes


@dt.function
def _f(a, b):
    return a * dt.sin(b) + b * b, a * b


def test_function_results_on_one_tape_two_tapes_and_in_hessians():
    X, W = 0.5, 2.0
    x, w = dt.constant(X), dt.constant(W)
    P, Q = X * np.sin(W) + W * W, X * W
    with dt.Tape(persistent=True) as tape:
        tape.watch([x, w])
        p, q = _f(x, w)  # one tape: one entry per result (the compiled path)
        r = p * q
    gx, gw = tape.gradient(r, [x, w])
    close(gx, np.sin(W) * Q + P * W)
    close(gw, (X * np.cos(W) + 2 * W) * Q + P * X)
    with dt.Tape() as outer:
        outer.watch([x, w])
        with dt.Tape() as inner:
            inner.watch([w, x])
            p, q = _f(x, w)  # two tapes: op by op
            r = p * q
        g = inner.gradient(r, x)
    close(g, W * (2 * X * np.sin(W) + W * W))
    hx, hw = outer.gradient(g, [x, w])
    close(hx, 2 * W * np.sin(W))
    close(hw, 2 * X * np.sin(W) + W * W + W * (2 * X * np.cos(W) + 2 * W))
    v = dt.Variable(1.5)

    @dt.function
    def scaled(a):
        return a * v

    with dt.Tape() as tape:
        tape.watch(x)
        y = scaled(x) * x
    gx, gv = tape.gradient(y, [x, v])
    close(gx, 2 * X * 1.5)
    close(gv, X * X)


# ----------------------------------------------------------------------------------------
# memory, garbage collection, id reuse


def test_intermediates_die_after_a_non_persistent_gradient_and_after_reset():
    for persistent in (False, True):
        x = dt.constant(np.ones(50))
        refs = []
        with dt.Tape(persistent=persistent) as tape:
            tape.watch(x)
            h = x
            for _ in range(4):
                h = dt.sin(h) * 1.5 + h  # unary and binary entries
                refs.append(weakref.ref(h))
            h = dt.sum(dt.where(h > 0, h, 0.0))  # a general entry
            refs.append(weakref.ref(h))
            y = h * 2.0
            del h
        g = tape.gradient(y, x)
        del y
        if persistent:
            assert all(r() is not None for r in refs)
            tape.reset()
        gc.collect()
        assert all(r() is None for r in refs), persistent
        assert g.shape == (50,)


def test_many_tensors_dropped_between_recording_and_gradient():
    X = 1.1
    x = dt.constant(X)
    with dt.Tape(persistent=True) as outer:
        outer.watch(x)
        with dt.Tape() as inner:
            inner.watch(x)
            total = x * 0.0
            for k in range(1, 40):
                total = total + (x * float(k)) * (x * float(k))  # the factors die: only the tapes hold them
    for _ in range(3):  # reuse the ids of anything that died
        junk = [dt.constant(float(k)) * 2.0 for k in range(2000)]
        with dt.Tape() as scratch:
            for t in junk[:50]:
                scratch.watch(t)
                _ = t * t
        del junk, scratch
        gc.collect()
    expected = sum(2 * k * k * X for k in range(1, 40))
    close(inner.gradient(total, x), expected)
    close(outer.gradient(total, x), expected)
    fresh = [dt.constant(1.0) for _ in range(1000)]
    assert all(outer.gradient(total, t) is None for t in fresh[:200])


def test_randomised_nested_programs_match_finite_differences():
    unary = [dt.sin, dt.tanh, lambda a: a * a, lambda a: 2.0 * a, lambda a: 1.5 - a, lambda a: -a, dt.exp]
    binary = [lambda a, b: a * b, lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a / (b * b + 1.0)]
    for seed in range(12):
        rnd = random.Random(seed)
        plan = [(rnd.randrange(2), rnd.randrange(7), rnd.randrange(4), rnd.random()) for _ in range(8)]

        def program(x, w, plan=plan):
            pool = [x, w]
            for kind, u, b, r in plan:
                a = pool[-1]
                pool.append(unary[u](a) if kind == 0 else binary[b](a, pool[int(r * len(pool))]))
            return dt.sum(pool[-1] * pool[-2])

        X, W = np.array([0.3, 0.5]), np.array([0.2, -0.4])
        x, w = dt.constant(X), dt.constant(W)
        with dt.Tape(persistent=seed % 2 == 0) as outer:
            with dt.Tape() as inner:
                for t in ((inner, outer) if seed % 3 else (outer, inner)):
                    t.watch(x)
                    t.watch(w)
                y = program(x, w)
            gx, gw = inner.gradient(y, [x, w], unconnected="zero")
            s = dt.sum(gx * gx) + dt.sum(gw)
        hx = outer.gradient(s, x, unconnected="zero")

        def f(a, b, program=program):
            return float(program(dt.constant(a), dt.constant(b)).numpy())

        close(gx, numeric_grad(f, [X, W], 0), rtol=1e-7, atol=1e-8)
        close(gw, numeric_grad(f, [X, W], 1), rtol=1e-7, atol=1e-8)

        def s_of(a, program=program, W=W):
            a_t, w_t = dt.constant(a), dt.constant(W)
            with dt.Tape() as t:
                t.watch([a_t, w_t])
                yy = program(a_t, w_t)
            ga, gb = t.gradient(yy, [a_t, w_t], unconnected="zero")
            return float(np.sum(ga.numpy() ** 2) + np.sum(gb.numpy()))

        close(hx, numeric_grad(s_of, [X], 0), rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------------------
# copies


def test_deepcopy_and_pickle_of_watched_tensors_are_new_untracked_tensors():
    x = dt.constant(3.0)
    with dt.Tape(persistent=True) as tape:
        tape.watch(x)
        xd = copy.deepcopy(x)
        xp = pickle.loads(pickle.dumps(x))
        y = x * xd * xp
    assert xd.numpy() == 3.0 and xp.numpy() == 3.0
    close(tape.gradient(y, x), 9.0)
    assert tape.gradient(y, [xd, xp]) == [None, None]
    assert tape.gradient(x * 1.0, xd) is None


def test_a_shallow_copy_of_a_watched_tensor_is_not_tracked():
    x = dt.constant(3.0)
    with dt.Tape(persistent=True) as tape:
        tape.watch(x)
        xc = copy.copy(x)  # a new tensor, never watched
        y = x * x
        z = x * xc
    assert tape.gradient(y, xc) is None  # y does not depend on xc: got 6.0
    close(tape.gradient(z, x), 3.0)  # xc is a constant: got 6.0


def test_a_shallow_copy_of_a_variable_is_its_own_variable():
    v = dt.Variable(2.0)
    with dt.Tape() as tape:
        y = v * 1.0  # v auto-watched (stamped)
        snapshot = copy.copy(v)
        z = snapshot * 3.0 + y
    gv, gs = tape.gradient(z, [v, snapshot])
    close(gv, 1.0)  # got 4.0
    close(gs, 3.0)
    assert tape.watched_variables() == [v, snapshot]  # got [v]


# ----------------------------------------------------------------------------------------
# the "a tensor's value is numpy" invariant


def test_a_pass_through_complex_number_becomes_a_numpy_value():
    c = dt.stop_gradient(1j)  # its value stays a Python complex (numpy() hides it)
    with np.errstate(all="ignore"):
        q = c / 0  # ZeroDivisionError before the fix (numpy: nan+infj, as before the rewrite)
    assert q.dtype == np.complex128
    assert (c * 2).dtype == np.complex128

    @dt.function
    def double(a):
        return a * 2.0

    assert double(c).numpy() == 2j  # AttributeError: 'complex' object has no attribute 'shape'


# ----------------------------------------------------------------------------------------
# pre-existing (also before the rewrite): difftape.function replay with one tensor for two arguments


def test_function_called_with_one_tensor_twice_differentiated_under_another_tape():
    @dt.function
    def f(a, b):
        return a * dt.sin(b)

    X = 0.8
    x = dt.constant(X)
    with dt.Tape() as inner:
        inner.watch(x)
        y = f(x, x)
    with dt.Tape() as outer:
        outer.watch(x)
        g = inner.gradient(y, x)
    close(g, np.sin(X) + X * np.cos(X))  # got twice that
    close(outer.gradient(g, x), 2 * np.cos(X) - X * np.sin(X))
