"""A tall float64 product is computed as the transpose of its transpose (ops/linalg.py ``_matmul``):
the same numbers as numpy's ``a @ b`` within its rounding, its gradients checked against finite
differences, and every other product left to numpy as it is."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_gradients

import difftape as dt
from difftape.ops import OPS, linalg

matmul = OPS["matmul"].forward
needs_openblas = pytest.mark.skipif(not linalg._TALL_FIRST, reason="the rule applies to OpenBLAS only")


def close_to_numpy(got: np.ndarray, a: np.ndarray, b: np.ndarray) -> bool:
    """Within the error bound of any order of the k products of each element."""
    bound = a.shape[-1] * np.finfo(np.float64).eps * (np.abs(a) @ np.abs(b))
    return got.shape == (a @ b).shape and bool(np.all(np.abs(got - a @ b) <= bound))


@needs_openblas
@pytest.mark.parametrize("order_a", "CF")
@pytest.mark.parametrize("order_b", "CF")
@pytest.mark.parametrize("m,k,n", [(1000, 1000, 64), (2048, 256, 16), (4096, 128, 1024)])
def test_a_tall_product_is_transposed_and_equal(order_a, order_b, m, k, n):
    rng = np.random.default_rng(m + n)
    a = np.asarray(rng.standard_normal((m, k)), order=order_a)
    b = np.asarray(rng.standard_normal((k, n)), order=order_b)
    got = matmul(a, b)
    tall = m >= linalg.TALL * n
    assert got.flags.f_contiguous and not got.flags.c_contiguous if tall else got.flags.c_contiguous
    assert got.dtype == np.float64 and close_to_numpy(got, a, b)


@pytest.mark.parametrize(
    "sa,sb,dtype",
    [
        ((1000, 1000), (1000, 64), np.float32),  # sgemm measured the other way round
        ((1000, 1000), (1000, 64), np.int64),
        ((1000, 1000), (1000, 64), np.complex128),
        ((1000, 1000), (1000,), np.float64),  # a vector: numpy's
        ((2, 1000, 600), (600, 16), np.float64),  # a stack: numpy's
        ((300, 300), (300, 32), np.float64),  # small: numpy's
        ((64, 1000), (1000, 1000), np.float64),  # wide: numpy's
    ],
)
def test_other_products_are_numpys(sa, sb, dtype):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(sa).astype(dtype), rng.standard_normal(sb).astype(dtype)
    got = matmul(a, b)
    want = np.matmul(a, b)
    assert got.dtype == want.dtype and got.flags.c_contiguous and np.array_equal(got, want)


def test_layouts_picked_from_the_rule_are_deterministic():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((1024, 512)), rng.standard_normal((512, 8))
    first = matmul(a, b)
    assert all(np.array_equal(first, matmul(a, b)) for _ in range(3))


@pytest.fixture
def every_product_tall(monkeypatch):
    """The rule on every float64 matrix product, however small, so finite differences can check it."""
    monkeypatch.setattr(linalg, "TALL", 0)
    monkeypatch.setattr(linalg, "TALL_MIN", 0)
    monkeypatch.setattr(linalg, "_TALL_FIRST", True)


@pytest.mark.parametrize("sa,sb", [((5, 3), (3, 2)), ((8, 4), (4, 1)), ((2, 3), (3, 4)), ((1, 1), (1, 1))])
def test_gradients_through_the_transposed_layout(every_product_tall, sa, sb):
    rng = np.random.default_rng(len(sa) + sb[1])
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    assert matmul(a, b).flags.f_contiguous  # the transposed layout
    check_gradients(lambda x, y: dt.sin(x @ y) * (x @ y), lambda x, y: np.sin(x @ y) * (x @ y), [a, b],
                    rng=rng, what=f"matmul {sa} @ {sb}")


def test_a_traced_layer_with_tall_products_equals_eager_and_hand_gradients():
    """W @ x (1024x512 @ 512x64) and W.T @ g are tall: the replay, eager difftape and the hand-written
    gradient agree, and the replay gives the same numbers call after call."""
    rng = np.random.default_rng(3)
    Wn, xn, bn = rng.standard_normal((1024, 512)) / 23, rng.standard_normal((512, 64)), rng.standard_normal((1024, 1))

    def vg(W, x, b):
        with dt.Tape() as tape:
            for v in (W, x, b):
                tape.watch(v)
            y = dt.sum(dt.tanh(W @ x + b) ** 2)
        return y, tape.gradient(y, [W, x, b])

    ins = [dt.constant(v) for v in (Wn, xn, bn)]
    f = dt.function(vg)
    v1, g1 = f(*ins)
    v2, g2 = vg(*ins)
    t = np.tanh(Wn @ xn + bn)
    gz = 2 * t * (1 - t**2)
    hand = [gz @ xn.T, Wn.T @ gz, gz.sum(axis=1, keepdims=True)]
    for a, c, h in zip(g1, g2, hand):
        assert np.array_equal(a.numpy(), c.numpy())
        np.testing.assert_allclose(a.numpy(), h, rtol=1e-12, atol=1e-12)
    assert float(v1) == float(v2)
    np.testing.assert_allclose(float(v1), np.sum(t**2), rtol=1e-13)
    v3, g3 = f(*ins)
    assert float(v3) == float(v1) and all(np.array_equal(a.numpy(), c.numpy()) for a, c in zip(g1, g3))


def test_tall_products_and_their_gradients_agree_with_pytorch():
    """An independent reference: torch's float64 autograd of a layer whose products are tall."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    Wn, xn = rng.standard_normal((2048, 300)) / 17, rng.standard_normal((300, 32))
    assert not matmul(Wn, xn).flags.c_contiguous or not linalg._TALL_FIRST  # the rule applies here

    def vg(W, x):
        with dt.Tape() as tape:
            tape.watch(W)
            tape.watch(x)
            y = dt.sum(dt.sin(W @ x) * (W @ x))
        return y, tape.gradient(y, [W, x])

    Wt = torch.tensor(Wn, requires_grad=True)
    xt = torch.tensor(xn, requires_grad=True)
    z = Wt @ xt
    yt = torch.sum(torch.sin(z) * z)
    yt.backward()
    for fn in (vg, dt.function(vg)):
        y, (gW, gx) = fn(dt.constant(Wn), dt.constant(xn))
        np.testing.assert_allclose(float(y), yt.item(), rtol=1e-12)
        np.testing.assert_allclose(gW.numpy(), Wt.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gx.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
