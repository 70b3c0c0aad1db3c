"""``difftape.function``'s compiled replay: values and gradients identical to eager code, op by op.

Every differentiable op of the table is run three ways on the same inputs: eager under a Tape,
compiled with no recorder (the generated forward), and compiled under a Tape (the generated
forward recorded as one entry, whose gradient is the generated backward pass). The values and
the gradients must be *equal*, not close: the generated code performs the same numpy operations
in the same order. Then the compiler's own steps: folding, sharing, pruning, the fallbacks
(where-masks, higher derivatives, nested tapes) and what generated source may contain.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_new_ops import COMPILED_CASES
from test_ops_grad import BINARY, REDUCTION_VALUES, UNARY, distinct, nonzero, uniform

import difftape as dt
from difftape.ops import OPS

rng0 = np.random.default_rng(7)


def _well_conditioned(n: int) -> np.ndarray:
    return rng0.normal(size=(n, n)) + 3 * np.eye(n)


# name -> (function of tensors, input values); inputs are watched, the function's result is summed
CASES: dict[str, tuple] = {}
for _n, _gen in UNARY.items():
    CASES[_n] = (lambda x, _n=_n: getattr(dt, _n)(x), [_gen(rng0, (2, 3))])
for _n, (_ga, _gb) in BINARY.items():
    CASES[_n] = (lambda a, b, _n=_n: getattr(dt, _n)(a, b), [_ga(rng0, (2, 3)), _gb(rng0, (3,))])
for _n, _gen in REDUCTION_VALUES.items():
    CASES[_n] = (lambda x, _n=_n: getattr(dt, _n)(x, axis=1, keepdims=_n == "max"), [_gen(rng0, (2, 3))])
CASES.update(
    {
        "sign": (lambda x: dt.sign(x) * x, [nonzero()(rng0, (3,))]),
        "floor": (lambda x: dt.floor(x) + x, [uniform(-3, 3)(rng0, (3,))]),
        "ceil": (lambda x: dt.ceil(x) * x, [uniform(-3, 3)(rng0, (3,))]),
        "round": (lambda x: dt.round(x, 1) + x * x, [uniform(-3, 3)(rng0, (3,))]),
        "floor_divide": (lambda a, b: dt.floor_divide(a, b) + a * b,
                         [uniform(-3, 3)(rng0, (3,)), nonzero(0.5)(rng0, (3,))]),
        "where": (lambda c, a, b: dt.where(c > 0, dt.sqrt(dt.abs(a)), b * 2.0), [rng0.normal(size=3)] * 2
                  + [rng0.normal(size=(2, 3))]),
        "clip": (lambda x, lo, hi: dt.clip(x, lo, hi), [np.array([-2.0, 0.1, 2.0]), np.array(-1.0), np.array(1.0)]),
        "var": (lambda x: dt.var(x, axis=0, ddof=1), [rng0.normal(size=(3, 2))]),
        "std": (lambda x: dt.std(x, axis=(0, 1)), [rng0.normal(size=(3, 2))]),
        "norm": (lambda x: dt.norm(x, axis=1) + dt.norm(x, ord=3, axis=0).sum() + dt.norm(x[0], np.inf),
                 [distinct(rng0, (2, 3), signed=True)]),
        "softmax": (lambda x: dt.softmax(x, axis=0) * x, [rng0.normal(size=(2, 3))]),
        "log_softmax": (lambda x: dt.log_softmax(x) * x, [rng0.normal(size=(2, 3))]),
        "matmul": (lambda a, b: dt.matmul(a, b) + dt.matmul(b.T, a[0]),
                   [rng0.normal(size=(2, 3)), rng0.normal(size=(3, 2))]),
        "dot": (lambda a, b: dt.dot(a, b) * dt.sum(dt.dot(b, 2.0)), [rng0.normal(size=(2, 3)), rng0.normal(size=3)]),
        "outer": (lambda a, b: dt.outer(a, b), [rng0.normal(size=2), rng0.normal(size=(3,))]),
        "trace": (lambda a: dt.trace(a) * a, [rng0.normal(size=(3, 3))]),
        "inv": (lambda a: dt.inv(a), [_well_conditioned(3)]),
        "det": (lambda a: dt.det(a), [_well_conditioned(3)]),
        "cofactor": (lambda a: dt.cofactor(a), [_well_conditioned(3)]),
        "solve": (lambda a, b: dt.solve(a, b), [_well_conditioned(3), rng0.normal(size=(3, 2))]),
        "diag": (lambda a, v: dt.diag(a, k=1) + dt.sum(dt.diag(v)), [rng0.normal(size=(3, 4)), rng0.normal(size=2)]),
        "reshape": (lambda x: dt.reshape(x, (3, 2)) * 2.0, [rng0.normal(size=(2, 3))]),
        "ravel": (lambda x: dt.ravel(x) ** 3, [rng0.normal(size=(2, 3))]),
        "transpose": (lambda x: dt.transpose(x, (2, 0, 1)) * x[0, 0, 0], [rng0.normal(size=(2, 3, 2))]),
        "concatenate": (lambda a, b: dt.concatenate([a, b * b, a], axis=1), [rng0.normal(size=(2, 3))] * 2),
        "stack": (lambda a, b: dt.stack([a, b * b, a], axis=1), [rng0.normal(size=3), rng0.normal(size=3)]),
        "expand_dims": (lambda x: dt.expand_dims(x, (0, 2)) * x, [rng0.normal(size=3)]),
        "squeeze": (lambda x: dt.squeeze(x, 0) * 3.0, [rng0.normal(size=(1, 3))]),
        "broadcast_to": (lambda x: dt.broadcast_to(x, (2, 3)) ** 2, [rng0.normal(size=(3,))]),
        "getitem": (lambda x: x[::-1, 1] + x[0, [0, 2, 2]].sum() + x[x > 0].sum(), [rng0.normal(size=(2, 3))]),
        "scatter": (lambda g: dt.scatter(g, index=(np.array([0, 0, 2]),), shape=(4,)), [rng0.normal(size=3)]),
        "full": (lambda v: dt.full((2, 3), v) * 2.0, [np.array(1.5)]),
    }
)
CASES.update(COMPILED_CASES)  # the ops of issue 10 (tests/test_new_ops.py)
DIFFERENTIABLE = sorted(n for n, op in OPS.items() if op.vjps is not None)


def test_every_differentiable_op_has_a_compiled_case():
    assert sorted(set(DIFFERENTIABLE) - set(CASES)) == []


def _eager(fn, xs):
    ts = [dt.constant(x) for x in xs]
    with dt.Tape() as tape:
        tape.watch(ts)
        y = fn(*ts)
    return y, tape.gradient(y, ts)


def _compiled(f, xs):
    ts = [dt.constant(x) for x in xs]
    with dt.Tape() as tape:
        tape.watch(ts)
        y = f(*ts)
    return y, tape.gradient(y, ts), tape


def _same(a, b, what):
    if a is None or b is None:
        assert a is None and b is None, what
        return
    a = np.asarray(a.numpy() if isinstance(a, dt.Tensor) else a)
    b = np.asarray(b.numpy() if isinstance(b, dt.Tensor) else b)
    assert a.dtype == b.dtype and a.shape == b.shape, f"{what}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
    np.testing.assert_array_equal(a, b, err_msg=what)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_equals_eager(name, dtype):
    fn, values = CASES[name]
    xs = [np.asarray(v).astype(dtype) for v in values]
    f = dt.function(fn)
    value, grads = _eager(fn, xs)
    for call in range(2):  # the first call traces, the second replays
        plain = f(*[dt.constant(x) for x in xs])  # no recorder: the generated forward only
        _same(plain, value, f"{name} value, call {call}")
        y, g, tape = _compiled(f, xs)
        _same(y, value, f"{name} value under a tape, call {call}")
        for i, (a, b) in enumerate(zip(g, grads)):
            _same(a, b, f"{name} gradient {i}, call {call}")
    assert f.trace_count == 1


@pytest.mark.parametrize("name", sorted(set(CASES) - {"where"}))
def test_gradient_is_the_generated_backward(name):
    """Under one Tape, a compiled call is one entry, answered by generated code (no op-by-op fallback)."""
    fn, values = CASES[name]
    f = dt.function(fn)
    ts = [dt.constant(v) for v in values]
    with dt.Tape(persistent=True) as tape:
        tape.watch(ts)
        y = f(*ts)
    assert len(tape._entries) == 1
    op, *_, hits = tape._entries[0]
    assert op.plan.backward_function(op.out_index, hits) is not None
    tape.gradient(y, ts)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_where_falls_back_to_an_op_by_op_gradient_with_masks():
    f = dt.function(lambda x: dt.where(x > 0, dt.sqrt(x), 0.0))
    x = dt.constant([-1.0, 0.0, 4.0])
    for _ in range(2):
        with dt.Tape() as tape:
            tape.watch(x)
            y = f(x)
        np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [0.0, 0.0, 0.25])  # no nan from sqrt'(-1)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_a_mask_arriving_from_outside_the_function():
    f = dt.function(lambda x: dt.sqrt(x) * 2.0)
    x = dt.constant([-1.0, 4.0])
    with dt.Tape() as tape:
        tape.watch(x)
        y = dt.where(x > 0, f(x), 0.0)
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [0.0, 0.5])


def test_higher_derivatives_through_a_compiled_function():
    f = dt.function(lambda x: dt.sin(x) * x**3)
    x = dt.constant(0.4)
    h = dt.hessian(f, x).numpy()
    expected = dt.hessian(lambda x: dt.sin(x) * x**3, x).numpy()
    assert h == expected
    # one tape around the call, and the gradient taken under another: the generated backward
    # cannot be differentiated, so the entry replays the graph op by op for the outer tape
    with dt.Tape() as outer:
        outer.watch(x)
        with dt.Tape() as inner:
            inner.watch(x)
            y = f(x)
        g = inner.gradient(y, x)
    with dt.Tape() as t1:
        t1.watch(x)
        with dt.Tape() as t2:
            t2.watch(x)
            y2 = f(x)
        g2 = t2.gradient(y2, x)
    assert g.numpy() == g2.numpy()
    assert outer.gradient(g, x).numpy() == t1.gradient(g2, x).numpy() == expected
    with dt.Tape() as first:
        first.watch(x)
        y = f(x)  # one tape: a compiled entry
    with dt.Tape() as second:
        g = first.gradient(y, x)  # differentiated while another tape records
    assert second.gradient(g, x) is None  # x is not watched by `second`: unconnected
    with dt.Tape() as first:
        first.watch(x)
        y = f(x)
    with dt.Tape() as second:
        second.watch(x)
        g = first.gradient(y, x)
    assert second.gradient(g, x).numpy() == expected


def test_variables_are_arguments_of_the_compiled_entry():
    w = dt.Variable([[1.0, 2.0], [3.0, 4.0]])
    frozen = dt.Variable(0.5, trainable=False)
    f = dt.function(lambda x: dt.sum(dt.tanh(w @ x) * frozen))
    x = dt.constant([0.3, -0.2])
    for _ in range(2):
        with dt.Tape() as tape:
            y = f(x)
        gw, gf = tape.gradient(y, [w, frozen])
        with dt.Tape() as tape:
            y2 = dt.sum(dt.tanh(w @ x) * frozen)
        ew, ef = tape.gradient(y2, [w, frozen])
        _same(gw, ew, "w")
        assert gf is None and ef is None
    w.assign([[0.0, 1.0], [1.0, 0.0]])  # read at each call
    np.testing.assert_array_equal(f(x).numpy(), dt.sum(dt.tanh(w @ x) * frozen).numpy())


def test_several_results_each_get_an_entry():
    f = dt.function(lambda x: (x * 2.0, dt.sum(x**2), x))
    x = dt.constant([1.0, 2.0])
    with dt.Tape(persistent=True) as tape:
        tape.watch(x)
        a, b, same = f(x)
    assert same is x
    assert len(tape._entries) == 2
    np.testing.assert_array_equal(tape.gradient(a, x).numpy(), [2.0, 2.0])
    np.testing.assert_array_equal(tape.gradient(b, x).numpy(), [2.0, 4.0])
    np.testing.assert_array_equal(tape.gradient([a, b], x).numpy(), [4.0, 6.0])


def test_constant_folding_sharing_and_pruning():
    c = dt.constant([1.0, 2.0])

    def body(x):
        k = dt.exp(c) * 2.0 + dt.ones(2)  # no input: folded to its traced value
        unused = dt.sin(x) * 100.0  # feeds no result: pruned  # noqa: F841
        return dt.cos(x) * k + dt.cos(x) * k  # the same op on the same inputs: computed once

    f = dt.function(body)
    x = dt.constant([0.1, 0.2])
    np.testing.assert_array_equal(f(x).numpy(), body(x).numpy())
    plan = f._graphs[next(iter(f._graphs))].plan
    names = [node.op for node in plan.env_nodes]  # the graph's nodes (ir.graph.Node) name their op
    assert names == ["cos", "multiply", "add"]
    with dt.Tape() as tape:
        tape.watch(x)
        y = f(x)
    _, (eager,) = _eager(body, [x.numpy()])
    # shared nodes add their gradients before the VJP, not after: the same up to rounding (here exactly)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), eager.numpy(), rtol=1e-15)


def test_sharing_tells_literals_apart():
    f = dt.function(lambda x: (x * 1, x * 1.0, x * True, x + 0.0, x + -0.0))
    x = dt.constant(np.array([-0.0, 2.0]))
    for got, want in zip(f(x), (x * 1, x * 1.0, x * True, x + 0.0, x + -0.0)):
        _same(got, want, "literal")
        assert np.array_equal(np.signbit(got.numpy()), np.signbit(want.numpy()))
    i = dt.constant([1, 2])
    ints = dt.function(lambda n: (n * 1, n * 1.0))(i)
    assert ints[0].dtype == np.int64 and ints[1].dtype == np.float64


def test_generated_source_holds_no_program_text():
    import sys

    fmod = sys.modules["difftape.engine.tracing"]
    sources = []
    original = fmod._Source.build

    def spy(self, params):
        sources.append("\n".join(self.head + self.body))
        return original(self, params)

    secret = "__import__('os').system('echo pwned')"
    fmod._Source.build = spy
    try:
        f = dt.function(lambda x, label: dt.sum(x * np.float64(3.5)) + dt.constant(1.0) if label else x)
        x = dt.constant([1.0, 2.0])
        f(x, secret)
        with dt.Tape() as tape:
            tape.watch(x)
            y = f(x, secret)
        tape.gradient(y, x)
    finally:
        fmod._Source.build = original
    assert sources
    for src in sources:
        assert "pwned" not in src and "3.5" not in src and "__import__" not in src
        for line in src.splitlines():
            assert line.startswith("    ") and "'" not in line and '"' not in line


def test_a_python_number_tensor_replays_like_a_numpy_one():
    f = dt.function(lambda x: x / 0.0 + 1.0)
    weird = dt.stop_gradient(2.0)  # a tensor whose value is a Python float
    with np.errstate(divide="ignore"):
        assert f(dt.constant(1.0)).numpy() == np.inf
        assert f(weird).numpy() == np.inf


def test_import_of_the_module_keeps_the_decorator():
    import importlib

    mod = importlib.import_module("difftape.engine.tracing")
    deco = dt.function  # the decorator, not a module, whatever was imported before
    assert deco is mod.function
    f = deco(lambda x: x * 2.0)
    assert f(dt.constant(2.0)).numpy() == 4.0
    assert mod.function(lambda x: x + 1.0)(dt.constant(1.0)).numpy() == 2.0
