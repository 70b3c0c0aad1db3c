"""Tape gradients == finite differences (float64) over shapes and static parameters drawn by hypothesis.

Every op's gradient at the shapes of its cases is checked in ``test_op_cases.py`` (the shared
table ``op_cases.py``, which also gives the value domains used here). This module explores
what one fixed case cannot: broadcasting pairs with one side constant, random axes, keepdims,
ddof, ord, matmul/solve operand kinds, reshape targets, permutations, and the conventions
and bugs specific to one op.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest
from gradcheck import assert_close, check_gradients
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes
from op_cases import WELL, distinct, domain_of, plain_cases

import difftape as dt
from difftape.engine.api import FUNCTIONS
from difftape.ops import OPS

# 20 examples per test keeps the engine suite well under a minute; DIFFTAPE_EXAMPLES=500 for a deep run
FAST = settings(
    max_examples=int(os.environ.get("DIFFTAPE_EXAMPLES", "20")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SEEDS = st.integers(0, 2**32 - 1)
SHAPES = array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)


def op_fn(name: str, **params: object) -> tuple[Callable[..., object], Callable[..., object]]:
    """(function on tensors, numpy forward) for op ``name`` with static ``params``."""
    op = OPS[name]
    if name == "full":  # numpy's argument order: full(shape, fill_value)
        return (lambda v: FUNCTIONS[name](params["shape"], v)), (lambda v: op.forward(v, **params))
    if op.variadic:
        return (lambda *xs: FUNCTIONS[name](xs, **params)), (lambda *xs: op.forward(*xs, **params))
    return (lambda *xs: FUNCTIONS[name](*xs, **params)), (lambda *xs: op.forward(*xs, **params))


def check_op(name: str, xs: list, params: dict | None = None, wrt=None, seed: int = 0, **tol: float) -> None:
    fn, np_fn = op_fn(name, **(params or {}))
    check_gradients(fn, np_fn, xs, wrt=wrt, rng=np.random.default_rng(seed), what=f"{name}{params or ''}", **tol)


BINARY = sorted(c.op for c in plain_cases("elementwise") if len(c.inputs) == 2)


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize(
    "sa,sb", [((3, 1), (4,)), ((), (2, 3)), ((2, 3), ()), ((2, 1, 3), (4, 1)), ((1,), (3, 1)), ((4,), (4,))]
)
def test_binary_broadcasting_pairs(name, sa, sb):
    rng = np.random.default_rng(len(sa) * 7 + len(sb))
    ga, gb = domain_of(name, 0), domain_of(name, 1)
    check_op(name, [ga(rng, sa), gb(rng, sb)])
    # one side a constant: only the watched side gets a gradient, still summed to its shape
    check_op(name, [ga(rng, sa), gb(rng, sb)], wrt=[0])
    check_op(name, [ga(rng, sa), gb(rng, sb)], wrt=[1])


def test_power_with_integer_exponent_on_negative_base():
    x = np.array([-2.0, -0.5, 0.7, 3.0])
    for p in (1, 2, 3, -1, -2, 0):
        fn = lambda t, p=p: t**p
        check_gradients(fn, lambda a, p=p: a**p, [x], what=f"x**{p}")


def test_power_at_zero_base_and_zero_exponent():
    x = dt.constant([0.0, 0.0, 2.0])
    e = dt.constant([2.0, 1.0, 0.0])
    with dt.Tape() as tape:
        tape.watch([x, e])
        y = x**e
    gx, ge = tape.gradient(y, [x, e])
    assert_close(gx, [0.0, 1.0, 0.0])  # 2*0, 1*0**0, x**0 has slope 0
    assert_close(ge, [0.0, 0.0, np.log(2.0)])  # d/de at base 0 is 0 by convention


def test_clip_with_lo_above_hi_gives_the_gradient_to_hi():
    # numpy's clip is minimum(maximum(x, lo), hi): where lo > hi every value is hi, so all of the
    # gradient belongs to hi (the regression: it went to lo wherever x < lo)
    x, lo, hi = np.array([-2.0, 0.0, 2.0, 0.25]), np.array([1.0, 1.0, 1.0, 0.0]), np.array(0.5)
    np.testing.assert_array_equal(OPS["clip"].forward(x, lo, hi), [0.5, 0.5, 0.5, 0.25])
    check_op("clip", [x, lo, hi])
    with dt.Tape() as tape:
        xs = [dt.constant(v) for v in (x, lo, hi)]
        for t in xs:
            tape.watch(t)
        y = dt.sum(dt.clip(*xs))
    gx, glo, ghi = tape.gradient(y, xs)
    np.testing.assert_array_equal(gx, [0.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(glo, [0.0, 0.0, 0.0, 0.0])
    assert float(ghi) == 3.0


def test_round_with_decimals_has_zero_gradient():
    x = dt.constant([0.123, 2.5678])
    with dt.Tape() as tape:
        tape.watch(x)
        y = dt.round(x, 2) * 3.0 + x
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [1.0, 1.0])


# ----------------------------------------------------------------------------------------
# reductions


@st.composite
def axes(draw, ndim: int):
    """None, an int (negatives allowed) or a tuple of distinct axes (negatives allowed)."""
    kinds = ["none"] + (["int", "tuple"] if ndim else ["tuple"])
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    chosen = draw(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim)) if ndim else []
    return tuple(a - ndim if draw(st.booleans()) else a for a in chosen)


@pytest.mark.parametrize("name", ["sum", "mean", "prod", "max", "min", "logsumexp"])
@FAST
@given(data=st.data(), shape=SHAPES, seed=SEEDS, keepdims=st.booleans())
def test_reductions(name, data, shape, seed, keepdims):
    axis = data.draw(axes(len(shape)), label="axis")
    rng = np.random.default_rng(seed)
    check_op(name, [domain_of(name)(rng, shape)], {"axis": axis, "keepdims": keepdims}, seed=seed)


@pytest.mark.parametrize("name", ["var", "std"])
@FAST
@given(data=st.data(), shape=SHAPES, seed=SEEDS, keepdims=st.booleans(), ddof=st.sampled_from([0, 1]))
def test_var_std(name, data, shape, seed, keepdims, ddof):
    axis = data.draw(axes(len(shape)), label="axis")
    count = int(np.prod([shape[a] for a in dt.ops.normalize_axis(axis, len(shape))]))
    if count - ddof <= 0:
        ddof = 0
    rng = np.random.default_rng(seed)  # values 0.2 apart: std is never near its kink at 0
    check_op(name, [domain_of(name)(rng, shape)], {"axis": axis, "keepdims": keepdims, "ddof": ddof}, seed=seed)


@FAST
@given(
    data=st.data(),
    shape=array_shapes(min_dims=1, max_dims=3, max_side=4),
    seed=SEEDS,
    keepdims=st.booleans(),
    ord=st.sampled_from([None, 1, 2, 3, 1.5, np.inf, -np.inf, "fro"]),
)
def test_norm(data, shape, seed, keepdims, ord):
    nd = len(shape)
    if ord in (None, "fro"):
        axis = data.draw(axes(nd), label="axis")
    else:  # vector norms: one axis
        axis = data.draw(st.integers(-nd, nd - 1) | (st.none() if nd == 1 else st.nothing()), label="axis")
    rng = np.random.default_rng(seed)
    check_op("norm", [distinct(rng, shape, signed=True)], {"ord": ord, "axis": axis, "keepdims": keepdims},
             seed=seed)


@pytest.mark.parametrize("ord", [0.5, 1, 1.5, 3])
def test_norm_with_a_zero_element_has_slope_zero_there(ord):
    # like abs at 0 (the README's convention); for ord < 1 it was sign(0) * |0|**(ord-1) = 0 * inf = nan
    x = dt.constant([0.0, 1.0, -4.0])
    with dt.Tape() as tape:
        tape.watch(x)
        y = dt.norm(x, ord)
    g = tape.gradient(y, x).numpy()
    n = float(np.sum(np.abs([1.0, 4.0]) ** ord) ** (1 / ord))
    np.testing.assert_allclose(g, [0.0, n ** (1 - ord), -(4.0 ** (ord - 1)) * n ** (1 - ord)], rtol=1e-12)


@pytest.mark.parametrize("ord", [None, 1, 2, 3, np.inf, -np.inf])
def test_norm_agrees_with_numpy(ord):
    x = np.array([[3.0, -4.0, 1.0], [0.5, 2.0, -2.5]])
    np.testing.assert_allclose(dt.norm(x, ord, 1).numpy(), np.linalg.norm(x, ord, 1))
    np.testing.assert_allclose(dt.norm(x[0], ord).numpy(), np.linalg.norm(x[0], ord))
    if ord is None:
        np.testing.assert_allclose(dt.norm(x, "fro").numpy(), np.linalg.norm(x, "fro"))
        np.testing.assert_allclose(dt.norm(x, None, (0, 1)).numpy(), np.linalg.norm(x, None, (0, 1)))


@pytest.mark.parametrize("ord,axis", [(1, None), (2, None), (np.inf, None), (3, (0, 1)), (2, (0, 1))])
def test_matrix_norms_other_than_frobenius_are_refused(ord, axis):
    # numpy's matrix 1/2/inf norms (column sums, spectral, row sums) are not implemented:
    # refusing is right, silently answering an entrywise norm would not be.
    x = np.ones((2, 3))
    with pytest.raises(dt.DifftapeError, match="norm"):  # the eager API words the shape rule's refusal
        dt.norm(x, ord, axis)
    with pytest.raises(ValueError, match="norm"):
        OPS["norm"].shape((2, 3), ord=ord, axis=axis)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@FAST
@given(data=st.data(), shape=array_shapes(min_dims=1, max_dims=3, max_side=4), seed=SEEDS)
def test_softmax(name, data, shape, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    rng = np.random.default_rng(seed)
    check_op(name, [rng.normal(scale=2, size=shape)], {"axis": axis}, seed=seed)


# ----------------------------------------------------------------------------------------
# linear algebra


@st.composite
def matmul_shapes(draw):
    n, k, m = (draw(st.integers(1, 4)) for _ in range(3))
    batch = draw(mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3))
    ka, kb = draw(st.sampled_from(["vec", "mat", "batch"])), draw(st.sampled_from(["vec", "mat", "batch"]))
    a = {"vec": (k,), "mat": (n, k), "batch": batch.input_shapes[0] + (n, k)}[ka]
    b = {"vec": (k,), "mat": (k, m), "batch": batch.input_shapes[1] + (k, m)}[kb]
    return a, b


@FAST
@given(shapes=matmul_shapes(), seed=SEEDS)
def test_matmul(shapes, seed):
    rng = np.random.default_rng(seed)
    check_op("matmul", [rng.normal(size=shapes[0]), rng.normal(size=shapes[1])], seed=seed)


@pytest.mark.parametrize(
    "sa,sb", [((3,), (3, 2)), ((2, 1, 2, 3), (4, 3, 2)), ((2, 3, 4), (4,)), ((1, 2, 3), (3, 2))],
)
def test_matmul_shapes(sa, sb):  # (the other operand kinds are cases of op_cases.py)
    rng = np.random.default_rng(1)
    check_op("matmul", [rng.normal(size=sa), rng.normal(size=sb)])


@pytest.mark.parametrize(
    "sa,sb", [((), ()), ((), (3,)), ((3,), ()), ((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3, 4))],
)
def test_dot(sa, sb):  # (matrix-vector and scalar-matrix are cases of op_cases.py)
    rng = np.random.default_rng(2)
    check_op("dot", [rng.normal(size=sa), rng.normal(size=sb)])


def test_matmul_with_a_list_operand():
    # the recorded operand is an array, so the VJPs see its shape (a 1-d list used to break them)
    x = dt.constant(np.arange(6.0).reshape(3, 2))
    with dt.Tape() as tape:
        tape.watch(x)
        y = dt.matmul(x, [1.0, 2.0])
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [[1.0, 2.0]] * 3)


@FAST
@given(sa=array_shapes(min_dims=0, max_dims=2, max_side=3), sb=array_shapes(min_dims=0, max_dims=2, max_side=3),
       seed=SEEDS)
def test_outer(sa, sb, seed):
    rng = np.random.default_rng(seed)
    check_op("outer", [rng.normal(size=sa), rng.normal(size=sb)], seed=seed)


@pytest.mark.parametrize("name", ["inv", "det", "cofactor"])
@FAST
@given(n=st.integers(1, 4), batch=array_shapes(min_dims=0, max_dims=1, max_side=3), seed=SEEDS)
def test_inv_det(name, n, batch, seed):
    rng = np.random.default_rng(seed)
    check_op(name, [WELL(rng, batch + (n, n))], seed=seed)


def test_det_gradient_at_singular_matrices_is_the_cofactor_matrix():
    # det is a polynomial: its gradient (the cofactor matrix) exists everywhere. It used to be
    # det * inv(x).T, which raised LinAlgError (an internal error) at a singular matrix.
    rank1 = np.array([[1.0, 2.0], [2.0, 4.0]])
    rank2 = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 0.0, 5.0]])
    for x, cof in [
        (rank1, [[4.0, -2.0], [-2.0, 1.0]]),
        (rank2, [[20.0, -4.0, -4.0], [-10.0, 2.0, 2.0], [0.0, 0.0, 0.0]]),
        (np.zeros((3, 3)), np.zeros((3, 3))),
        (np.stack([rank1, np.array([[2.0, 1.0], [0.0, 3.0]])]),
         [[[4.0, -2.0], [-2.0, 1.0]], [[3.0, 0.0], [-1.0, 2.0]]]),
    ]:
        check_op("det", [x])
        t = dt.constant(x)
        with dt.Tape() as tape:
            tape.watch(t)
            y = dt.sum(dt.det(t))
        np.testing.assert_allclose(tape.gradient(y, t), cof, atol=1e-12)


@FAST
@given(n=st.integers(1, 4), kind=st.sampled_from(["vec", "mat", "batch", "batch_a"]), k=st.integers(1, 3),
       seed=SEEDS)
def test_solve(n, kind, k, seed):
    rng = np.random.default_rng(seed)
    sa, sb = {"vec": ((n, n), (n,)), "mat": ((n, n), (n, k)), "batch": ((2, n, n), (2, n, k)),
              "batch_a": ((2, n, n), (n, k))}[kind]
    check_op("solve", [WELL(rng, sa), rng.normal(size=sb)], seed=seed)


@FAST
@given(shape=array_shapes(min_dims=1, max_dims=2, max_side=4), k=st.integers(-3, 3), seed=SEEDS)
def test_diag(shape, k, seed):
    # both directions: a vector to the matrix with it on diagonal k, a (non-square) matrix to its diagonal k
    check_op("diag", [np.random.default_rng(seed).normal(size=shape)], {"k": k}, seed=seed)


# ----------------------------------------------------------------------------------------
# shape manipulation and indexing


@FAST
@given(shape=SHAPES, seed=SEEDS, data=st.data())
def test_reshape_and_ravel(shape, seed, data):
    size = int(np.prod(shape))
    divisors = [d for d in range(1, size + 1) if size % d == 0]
    d = data.draw(st.sampled_from(divisors), label="d")
    target = data.draw(st.sampled_from([(size,), (d, size // d), (-1, d), (d, 1, -1), size]), label="target")
    x = np.random.default_rng(seed).normal(size=shape)
    check_op("reshape", [x], {"shape": target}, seed=seed)
    check_op("ravel", [x], seed=seed)


@FAST
@given(shape=SHAPES, seed=SEEDS, data=st.data())
def test_transpose(shape, seed, data):
    nd = len(shape)
    axes = data.draw(st.none() | st.permutations(range(nd)).map(tuple), label="axes")
    if axes is not None and data.draw(st.booleans(), label="negative"):
        axes = tuple(a - nd for a in axes)
    check_op("transpose", [np.random.default_rng(seed).normal(size=shape)], {"axes": axes}, seed=seed)


@FAST
@given(shape=array_shapes(min_dims=1, max_dims=3, max_side=3), count=st.integers(1, 3), seed=SEEDS, data=st.data())
def test_concatenate(shape, count, seed, data):
    nd = len(shape)
    axis = data.draw(st.integers(-nd, nd - 1), label="axis")
    rng = np.random.default_rng(seed)
    xs = []
    for _ in range(count):
        s = list(shape)
        s[axis] = int(rng.integers(1, 4))
        xs.append(rng.normal(size=s))
    check_op("concatenate", xs, {"axis": axis}, seed=seed)


@FAST
@given(shape=SHAPES, count=st.integers(1, 3), seed=SEEDS, data=st.data())
def test_stack(shape, count, seed, data):
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)), label="axis")
    rng = np.random.default_rng(seed)
    check_op("stack", [rng.normal(size=shape) for _ in range(count)], {"axis": axis}, seed=seed)


def test_concatenate_and_stack_mix_constants_and_lists():
    x = dt.constant([1.0, 2.0])
    with dt.Tape(persistent=True) as tape:
        tape.watch(x)
        c = dt.concatenate([[5.0], x, x * 2, dt.constant([7.0])])
        s = dt.stack([x, [0.0, 0.0], x * 3], axis=1)
    np.testing.assert_array_equal(tape.gradient(c, x).numpy(), [3.0, 3.0])
    np.testing.assert_array_equal(tape.gradient(s, x).numpy(), [4.0, 4.0])


@FAST
@given(shape=SHAPES, seed=SEEDS, data=st.data())
def test_expand_dims(shape, seed, data):
    nd = len(shape)
    size = data.draw(st.integers(1, 2), label="new axes")
    axis = data.draw(
        st.integers(-nd - 1, nd) | st.lists(st.integers(0, nd + size - 1), min_size=size, max_size=size, unique=True)
        .map(tuple),
        label="axis",
    )
    check_op("expand_dims", [np.random.default_rng(seed).normal(size=shape)], {"axis": axis}, seed=seed)


@FAST
@given(shape=array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=2), seed=SEEDS, data=st.data())
def test_squeeze(shape, seed, data):
    ones = [i for i, s in enumerate(shape) if s == 1]
    axis = data.draw(st.none() | st.lists(st.sampled_from(ones), unique=True).map(tuple) if ones else st.none(),
                     label="axis")
    check_op("squeeze", [np.random.default_rng(seed).normal(size=shape)], {"axis": axis}, seed=seed)


@FAST
@given(shapes=mutually_broadcastable_shapes(num_shapes=1, min_dims=0, max_dims=3, max_side=4), seed=SEEDS)
def test_broadcast_to(shapes, seed):
    x = np.random.default_rng(seed).normal(size=shapes.input_shapes[0])
    check_op("broadcast_to", [x], {"shape": shapes.result_shape}, seed=seed)


def test_full_takes_numpy_argument_order():
    np.testing.assert_array_equal(dt.full((2, 3), 7.0).numpy(), np.full((2, 3), 7.0))
    assert dt.full(3, 2, dtype="float32").dtype == np.float32
    assert dt.full(shape=(2,), fill_value=1).dtype == np.int64
