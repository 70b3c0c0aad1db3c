"""difftape.optimizers (SGD, Adam, RMSprop) and difftape.optimize.lbfgs: first steps by hand, and real problems."""

from __future__ import annotations

import math

import numpy as np
import pytest

import difftape as dt
from difftape import optimize, optimizers
from difftape.errors import DifftapeError


def _lstsq_problem(seed: int = 0, m: int = 30, n: int = 5):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n))
    b = rng.standard_normal(m)
    return A, b, np.linalg.lstsq(A, b, rcond=None)[0]


def rosenbrock(x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


# ----------------------------------------------------------------------------------------
# first steps against hand-computed updates


def test_sgd_plain_first_steps():
    w = dt.Variable(1.0)
    opt = optimizers.SGD(learning_rate=0.1)
    assert opt.minimize(lambda: w * w / 2, [w]).numpy() == 0.5  # the loss before the update
    assert w.numpy() == pytest.approx(0.9, abs=1e-15)  # w - lr * g, g = w = 1
    opt.minimize(lambda: w * w / 2, [w])
    assert w.numpy() == pytest.approx(0.81, abs=1e-15)
    assert opt.iterations == 2


def test_sgd_momentum_first_steps():
    # TensorFlow's documented example: the first step is 0.1, the second 0.18
    w = dt.Variable(1.0)
    opt = optimizers.SGD(learning_rate=0.1, momentum=0.9)
    opt.minimize(lambda: w * w / 2, [w])
    assert 1.0 - w.numpy() == pytest.approx(0.1, abs=1e-15)
    before = w.numpy()
    opt.minimize(lambda: w * w / 2, [w])
    # v1 = -0.1; g2 = 0.9; v2 = 0.9 * -0.1 - 0.1 * 0.9 = -0.18
    assert before - w.numpy() == pytest.approx(0.18, abs=1e-15)
    assert opt.get_slot(w, "momentum") == pytest.approx(-0.18, abs=1e-15)


def test_sgd_nesterov_first_steps():
    w = dt.Variable(2.0)
    opt = optimizers.SGD(learning_rate=0.1, momentum=0.5, nesterov=True)
    opt.apply_gradients([(dt.constant(1.0), w)])
    # v = 0.5*0 - 0.1*1 = -0.1; w += 0.5*v - 0.1*g = -0.05 - 0.1
    assert w.numpy() == pytest.approx(2.0 - 0.15, abs=1e-15)
    opt.apply_gradients([(dt.constant(3.0), w)])
    # v = 0.5*-0.1 - 0.3 = -0.35; w += 0.5*-0.35 - 0.3 = -0.475
    assert w.numpy() == pytest.approx(1.85 - 0.475, abs=1e-15)


def test_adam_first_steps_by_hand():
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-7
    w = dt.Variable(np.array([1.0, -2.0]))
    opt = optimizers.Adam(learning_rate=lr)
    assert (opt.beta_1, opt.beta_2, opt.epsilon) == (b1, b2, eps)  # TensorFlow's defaults
    m = np.zeros(2)
    v = np.zeros(2)
    x = np.array([1.0, -2.0])
    for t in (1, 2, 3):
        g = 2 * x + 1
        opt.apply_gradients(zip([dt.constant(g)], [w]))
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        x = x - lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
        np.testing.assert_allclose(w.numpy(), x, rtol=0, atol=1e-15)
    # the first Adam step is lr * sign(g) (up to epsilon)
    w2 = dt.Variable(5.0)
    optimizers.Adam(0.1).apply_gradients([(dt.constant(-3.0), w2)])
    assert w2.numpy() == pytest.approx(5.1, abs=1e-6)


def test_adam_amsgrad_uses_the_largest_second_moment():
    w = dt.Variable(0.0)
    opt = optimizers.Adam(0.1, amsgrad=True)
    opt.apply_gradients([(10.0, w)])
    opt.apply_gradients([(0.1, w)])
    v = 0.999 * (0.001 * 100) + 0.001 * 0.01
    assert opt.get_slot(w, "vhat") == pytest.approx(max(0.001 * 100, v))


def test_rmsprop_first_steps_by_hand():
    lr, rho, eps = 0.01, 0.9, 1e-7
    w = dt.Variable(1.0)
    opt = optimizers.RMSprop(learning_rate=lr)
    ms, x = 0.0, 1.0
    for _ in range(3):
        opt.minimize(lambda: w**2, [w])
        g = 2 * x
        ms = rho * ms + (1 - rho) * g * g
        x -= lr * g / math.sqrt(ms + eps)
        assert w.numpy() == pytest.approx(x, abs=1e-15)


def test_rmsprop_momentum_and_centered_by_hand():
    lr, rho, mom, eps = 0.01, 0.8, 0.5, 1e-7
    w = dt.Variable(1.0)
    opt = optimizers.RMSprop(lr, rho=rho, momentum=mom, centered=True)
    ms = mg = buf = 0.0
    x = 1.0
    for g in (1.0, -2.0, 0.5):
        opt.apply_gradients([(g, w)])
        ms = rho * ms + (1 - rho) * g * g
        mg = rho * mg + (1 - rho) * g
        buf = mom * buf + lr * g / math.sqrt(ms - mg * mg + eps)
        x -= buf
        assert w.numpy() == pytest.approx(x, abs=1e-15)


def test_optimizer_defaults_are_tensorflows():
    assert optimizers.SGD().get_config() == {"name": "SGD", "learning_rate": 0.01, "momentum": 0.0,
                                             "nesterov": False}
    assert optimizers.Adam().learning_rate == 0.001
    r = optimizers.RMSprop()
    assert (r.learning_rate, r.rho, r.momentum, r.epsilon, r.centered) == (0.001, 0.9, 0.0, 1e-7, False)


def test_apply_gradients_updates_through_assign_sub(monkeypatch):
    calls = []
    original = dt.Variable.assign_sub

    def spy(self, delta):
        calls.append(np.asarray(delta).copy())
        return original(self, delta)

    monkeypatch.setattr(dt.Variable, "assign_sub", spy)
    w = dt.Variable([1.0, 2.0])
    optimizers.SGD(0.5).apply_gradients([(np.array([2.0, 4.0]), w)])
    assert len(calls) == 1
    np.testing.assert_array_equal(calls[0], [1.0, 2.0])
    np.testing.assert_array_equal(w.numpy(), [0.0, 0.0])


def test_apply_gradients_skips_none_and_keeps_float32():
    a, b = dt.Variable(np.float32(1.0)), dt.Variable(1.0)
    opt = optimizers.SGD(0.25)
    opt.apply_gradients([(None, b), (np.float32(2.0), a)])
    assert a.numpy() == np.float32(0.5) and a.dtype == np.float32
    assert b.numpy() == 1.0


@pytest.mark.parametrize("pairs, kind", [
    (lambda w, i: [(None, w)], "value"),  # no gradient at all
    (lambda w, i: [(1.0, 3.0)], "usage"),  # not a Variable
    (lambda w, i: [(np.ones(3), w)], "shape"),
    (lambda w, i: [(1.0, i)], "value"),  # an int variable
    (lambda w, i: ["nope"], "usage"),  # not a pair
])
def test_apply_gradients_errors(pairs, kind):
    w, i = dt.Variable([1.0, 2.0]), dt.Variable(3)
    with pytest.raises(DifftapeError) as info:
        optimizers.SGD().apply_gradients(pairs(w, i))
    assert info.value.kind == kind
    assert w.numpy().tolist() == [1.0, 2.0]  # nothing was updated


@pytest.mark.parametrize("make", [
    lambda: optimizers.SGD(learning_rate=0),
    lambda: optimizers.SGD(learning_rate=-1),
    lambda: optimizers.SGD(momentum=1.5),
    lambda: optimizers.Adam(beta_1=1.0),
    lambda: optimizers.Adam(learning_rate=float("nan")),
    lambda: optimizers.RMSprop(rho="x"),
])
def test_bad_hyperparameters(make):
    with pytest.raises(DifftapeError):
        make()


def test_minimize_needs_a_callable():
    w = dt.Variable(1.0)
    with pytest.raises(DifftapeError, match="function of no arguments"):
        optimizers.SGD().minimize(w * w, [w])


# ----------------------------------------------------------------------------------------
# real problems


def test_adam_solves_least_squares():
    A, b, ref = _lstsq_problem()
    Ac, bc = dt.constant(A), dt.constant(b)
    w = dt.Variable(np.zeros(A.shape[1]))
    opt = optimizers.Adam(learning_rate=0.05)
    for _ in range(4000):
        opt.minimize(lambda: dt.sum((Ac @ w - bc) ** 2), [w])
    np.testing.assert_allclose(w.numpy(), ref, rtol=0, atol=1e-5)


def test_sgd_with_momentum_solves_least_squares():
    A, b, ref = _lstsq_problem(1)
    Ac, bc = dt.constant(A), dt.constant(b)
    w = dt.Variable(np.zeros(A.shape[1]))
    opt = optimizers.SGD(learning_rate=0.005, momentum=0.9, nesterov=True)
    for _ in range(1500):
        with dt.Tape() as tape:
            loss = dt.sum((Ac @ w - bc) ** 2)
        opt.apply_gradients(zip(tape.gradient(loss, [w]), [w]))
    np.testing.assert_allclose(w.numpy(), ref, rtol=0, atol=1e-8)


def test_lbfgs_solves_least_squares_to_1e_8():
    A, b, ref = _lstsq_problem(2, 40, 8)
    Ac, bc = dt.constant(A), dt.constant(b)
    res = optimize.lbfgs(lambda x: dt.sum((Ac @ x - bc) ** 2), np.zeros(8), tol=1e-9)
    assert res.converged, res.reason
    np.testing.assert_allclose(res.x, ref, rtol=0, atol=1e-8)
    assert res.x.shape == (8,)


def test_lbfgs_rosenbrock_from_the_classic_start():
    res = optimize.lbfgs(rosenbrock, [-1.2, 1.0], tol=1e-10)
    assert res.converged, res.reason
    np.testing.assert_allclose(res.x, [1.0, 1.0], rtol=0, atol=1e-6)
    assert res.fun < 1e-12
    assert res.steps < 100  # quasi-Newton, not crawling


def test_lbfgs_is_deterministic_and_jac_gives_the_same():
    def fg(x):
        with dt.Tape() as tape:
            t = dt.constant(x)
            tape.watch(t)
            y = rosenbrock(t)
        return float(y), tape.gradient(y, t).numpy()

    a = optimize.lbfgs(rosenbrock, [-1.2, 1.0])
    b = optimize.lbfgs(rosenbrock, [-1.2, 1.0])
    c = optimize.lbfgs(fg, np.array([-1.2, 1.0]), jac=True)
    assert a.x.tolist() == b.x.tolist() == c.x.tolist()
    assert a.steps == b.steps == c.steps and a.evaluations == c.evaluations


def test_lbfgs_on_a_matrix_shaped_input():
    target = np.arange(6.0).reshape(2, 3)
    res = optimize.lbfgs(lambda X: dt.sum((X - dt.constant(target)) ** 4 + (X - dt.constant(target)) ** 2),
                         np.zeros((2, 3)), tol=1e-12)
    assert res.x.shape == (2, 3)
    np.testing.assert_allclose(res.x, target, atol=1e-9)


def test_lbfgs_backs_off_from_nan():
    # log is nan for x < 0: the first trial steps overshoot there and must be shortened, not taken
    res = optimize.lbfgs(lambda x: x - 5 * dt.log(x), 0.1, tol=1e-9)
    assert res.converged, res.reason
    assert res.x == pytest.approx(5.0, abs=1e-8)


def test_lbfgs_unbounded_and_bad_starts():
    res = optimize.lbfgs(lambda x: -x, 0.0)
    assert not res.converged and "unbounded below" in res.reason
    with pytest.raises(DifftapeError, match="starting point"):
        optimize.lbfgs(lambda x: dt.log(x), -1.0)
    with pytest.raises(DifftapeError, match="scalar"):
        optimize.lbfgs(lambda x: x * 2, [1.0, 2.0])
    with pytest.raises(DifftapeError, match="memory"):
        optimize.lbfgs(rosenbrock, [0.0, 0.0], memory=0)


def test_lbfgs_step_limit_and_callback():
    seen = []
    res = optimize.lbfgs(rosenbrock, [-1.2, 1.0], max_steps=3, callback=lambda k, x, f, g: seen.append((k, f)))
    assert not res.converged and res.steps == 3 and "step limit" in res.reason
    assert [k for k, _ in seen] == [0, 1, 2, 3]
    assert all(b[1] <= a[1] for a, b in zip(seen, seen[1:]))  # every accepted step lowers the value


def test_wolfe_conditions_hold_for_accepted_steps():
    x = np.array([-1.2, 1.0])

    def fg(z):
        a, b = z
        return (1 - a) ** 2 + 100 * (b - a * a) ** 2, np.array([-2 * (1 - a) - 400 * a * (b - a * a),
                                                             200 * (b - a * a)])

    f0, g0 = fg(x)
    p = -g0
    a, f, g = optimize.wolfe_search(fg, x, f0, g0, p, 1e-3)
    assert f <= f0 + 1e-4 * a * (g0 @ p)
    assert abs(g @ p) <= 0.9 * abs(g0 @ p)


def test_run_methods_agree_on_a_quadratic():
    def fg(x):
        return float(((x - 3.0) ** 2).sum()), 2 * (x - 3.0)

    for method, lr in (("lbfgs", None), ("gd", None), ("sgd", 0.1), ("adam", 0.1)):
        res = optimize.run(fg, np.zeros(2), method=method, lr=lr, steps=20000, tol=1e-7)
        assert res.converged, (method, res.reason)
        np.testing.assert_allclose(res.x, 3.0, atol=1e-6)
    with pytest.raises(DifftapeError, match="learning rate"):
        optimize.run(fg, np.zeros(2), method="lbfgs", lr=0.1)
    with pytest.raises(DifftapeError, match="unknown method"):
        optimize.run(fg, np.zeros(2), method="newton")


def test_lazy_names():
    assert dt.optimizers.SGD is optimizers.SGD
    assert dt.optimize.lbfgs is optimize.lbfgs


def test_lbfgs_converges_below_the_rounding_of_the_value():
    # near the minimum the value's changes drown in its rounding before the gradient is small: there the
    # approximate Wolfe condition (on slopes) still accepts steps; by values alone these stop at ~1e-8
    for seed in (1, 3, 4, 5):
        A, b, ref = _lstsq_problem(seed, 30, 6)
        Ac, bc = dt.constant(A), dt.constant(b)
        res = optimize.lbfgs(lambda x, Ac=Ac, bc=bc: dt.sum((Ac @ x - bc) ** 2), np.zeros(6), tol=1e-9)
        assert res.converged, (seed, res.reason)
        np.testing.assert_allclose(res.x, ref, rtol=0, atol=1e-9)
