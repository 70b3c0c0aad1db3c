"""``difftape.function``'s compiled replay: the compiler's own steps.

That every case of the op table (``op_cases.py``) replays identically to eager code, values and
gradients bit for bit, with the gradient answered by the generated backward pass, is checked by
``test_op_cases.py``. Here: the compiler's own steps: folding, sharing, pruning, the fallbacks
(where-masks, higher derivatives, nested tapes) and what generated source may contain.
"""

from __future__ import annotations

import numpy as np
import pytest

import difftape as dt


def _eager(fn, xs):
    ts = [dt.constant(x) for x in xs]
    with dt.Tape() as tape:
        tape.watch(ts)
        y = fn(*ts)
    return y, tape.gradient(y, ts)


def _same(a, b, what):
    if a is None or b is None:
        assert a is None and b is None, what
        return
    a = np.asarray(a.numpy() if isinstance(a, dt.Tensor) else a)
    b = np.asarray(b.numpy() if isinstance(b, dt.Tensor) else b)
    assert a.dtype == b.dtype and a.shape == b.shape, f"{what}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
    np.testing.assert_array_equal(a, b, err_msg=what)


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
