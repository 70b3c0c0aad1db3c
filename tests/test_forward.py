"""Forward mode: JVPs of every registry op against the tape's Jacobian, and the functional forms."""

from __future__ import annotations

import numpy as np
import pytest
from test_new_ops import FORWARD_CALLS

import difftape as dt
from difftape.errors import DifftapeError
from difftape.ops import OPS

RNG = np.random.default_rng(11)


def vec(*shape: int, lo: float = 0.3, hi: float = 1.7) -> np.ndarray:
    """Values away from every kink and domain edge (positive, distinct, below 2)."""
    n = int(np.prod(shape)) if shape else 1
    vals = np.linspace(lo, hi, n) + RNG.uniform(0, 0.01, n)
    return RNG.permutation(vals).reshape(shape)


UNIT = {"arcsin", "arccos", "arctanh"}
ABOVE_ONE = {"arccosh"}


def unary_input(name: str) -> np.ndarray:
    if name in UNIT:
        return vec(2, 3, lo=-0.8, hi=0.8)
    if name in ABOVE_ONE:
        return vec(2, 3, lo=1.2, hi=2.5)
    return vec(2, 3)


# (function, inputs) for ops whose call needs more than one generic array
CALLS = {
    "matmul": (lambda a, b: dt.matmul(a, b), [vec(2, 3), vec(3, 2)]),
    "dot": (lambda a, b: dt.dot(a, b), [vec(2, 3), vec(3)]),
    "outer": (lambda a, b: dt.outer(a, b), [vec(3), vec(2)]),
    "trace": (lambda a: dt.trace(a), [vec(3, 3)]),
    "inv": (lambda a: dt.inv(a), [vec(3, 3) + 3 * np.eye(3)]),
    "det": (lambda a: dt.det(a), [vec(3, 3) + 3 * np.eye(3)]),
    "cofactor": (lambda a: dt.cofactor(a), [vec(3, 3) + 3 * np.eye(3)]),
    "solve": (lambda a, b: dt.solve(a, b), [vec(3, 3) + 3 * np.eye(3), vec(3)]),
    "diag": (lambda a: dt.diag(a), [vec(3, 3)]),
    "reshape": (lambda a: dt.reshape(a, (3, 2)), [vec(2, 3)]),
    "transpose": (lambda a: dt.transpose(a), [vec(2, 3)]),
    "ravel": (lambda a: dt.ravel(a), [vec(2, 3)]),
    "concatenate": (lambda a, b: dt.concatenate([a, b], axis=1), [vec(2, 3), vec(2, 2)]),
    "stack": (lambda a, b: dt.stack([a, b], axis=0), [vec(2, 3), vec(2, 3)]),
    "expand_dims": (lambda a: dt.expand_dims(a, 1), [vec(2, 3)]),
    "squeeze": (lambda a: dt.squeeze(a), [vec(2, 1, 3)]),
    "broadcast_to": (lambda a: dt.broadcast_to(a, (4, 3)), [vec(3)]),
    "getitem": (lambda a: a[1, ::-1], [vec(2, 3)]),
    "scatter": (lambda a: dt.scatter(a, index=(1,), shape=(2, 3)), [vec(3)]),
    "full": (lambda a: dt.full((2, 3), a), [vec()]),
    "where": (lambda a, b: dt.where(a > 1.0, a, b), [vec(2, 3), vec(2, 3)]),
    "clip": (lambda a: dt.clip(a, 0.6, 1.4), [vec(2, 3)]),
    "norm": (lambda a: dt.norm(a, axis=1), [vec(2, 3)]),
    "softmax": (lambda a: dt.softmax(a, axis=0), [vec(2, 3)]),
    "log_softmax": (lambda a: dt.log_softmax(a), [vec(2, 3)]),
    "round": (lambda a: dt.round(a), [vec(2, 3)]),
    "var": (lambda a: dt.var(a, axis=0, ddof=1), [vec(3, 2)]),
    "std": (lambda a: dt.std(a, axis=1), [vec(2, 3)]),
}


CALLS.update(FORWARD_CALLS)  # the ops of issue 10 (tests/test_new_ops.py)


def cases() -> list[tuple[str, object, list[np.ndarray]]]:
    out = []
    for name, op in OPS.items():
        if op.vjps is None or not op.args:
            continue
        if name in CALLS:
            fn, xs = CALLS[name]
        elif op.elementwise and len(op.args) == 2:
            fn, xs = getattr(dt, name), [vec(2, 3), vec(3)]
        elif op.elementwise or op.kind in ("reduction", "normalize"):
            fn, xs = getattr(dt, name), [unary_input(name)]
        else:
            continue
        out.append(pytest.param(name, fn, xs, id=name))
    return out


@pytest.mark.parametrize("name,fn,xs", cases())
def test_jvp_equals_jacobian_times_tangent(name, fn, xs):
    primals = [dt.constant(x) for x in xs]
    tangents = [RNG.normal(size=np.shape(x)) for x in xs]
    y, t = dt.jvp(fn, primals, tangents)
    jac = dt.jacobian(fn, primals)
    expected = sum(np.tensordot(np.asarray(j), tv, axes=np.ndim(tv)) for j, tv in zip(jac, tangents))
    np.testing.assert_allclose(np.asarray(t), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(y), np.asarray(fn(*primals)), rtol=0, atol=0)


def test_every_differentiable_op_has_a_forward_case():
    covered = {c.values[0] for c in cases()}
    missing = sorted(n for n, op in OPS.items() if op.vjps is not None and op.args and n not in covered)
    assert missing == [], f"add forward-mode cases for {missing}"


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
