"""A tape keeps of a large recorded value only what a VJP reads (engine/tape.py ``_slim``): gradients
are bit for bit those of a tape that keeps everything, first and second derivatives, persistent or
not, and a value no VJP reads (``sin(x)`` under ``exp``) is not kept."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest
from op_cases import plain_cases

import difftape as dt
from difftape.engine import tape as tape_module

N = 70_000  # above tape._SLIM
ELEMENTWISE = [c for c in plain_cases("elementwise") if c.grad == "fd" and len(c.inputs) <= 2]


def grads_of(fn, xs, persistent=False):
    ts = [dt.constant(x) for x in xs]
    with dt.Tape(persistent=persistent) as tape:
        for t in ts:
            tape.watch(t)
        y = fn(*ts)
    first = [None if g is None else g.numpy() for g in tape.gradient(y, ts)]
    if persistent:
        again = [None if g is None else g.numpy() for g in tape.gradient(y, ts)]
        assert all(same(a, b) for a, b in zip(first, again))
    return y.numpy(), first


def both_ways(fn, xs, monkeypatch, persistent=False):
    slim = grads_of(fn, xs, persistent)
    with monkeypatch.context() as m:
        m.setattr(tape_module, "_SLIM", 1 << 62)  # keep every value
        full = grads_of(fn, xs, persistent)
    return slim, full


def same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("case", ELEMENTWISE, ids=lambda c: c.id)
def test_every_elementwise_op_on_large_arrays_equals_the_full_tape(case, monkeypatch):
    shapes = [(N,) if inp.shape else () for inp in case.inputs]
    xs = case.values(seed=1, shapes=shapes)
    w = np.random.default_rng(0).standard_normal(N)

    def fn(*ts):
        return dt.sum(case.call(dt, *ts) * w)

    (v1, g1), (v2, g2) = both_ways(fn, xs, monkeypatch)
    assert same(v1, v2)
    assert all(same(a, b) for a, b in zip(g1, g2))


@pytest.mark.parametrize(
    "fn",
    [
        lambda x, y: dt.sum(dt.exp(dt.sin(x)) * x**2),
        lambda x, y: dt.sum(dt.tanh(x * y) ** 2 + dt.exp(-x) / (1.0 + y * y)),
        lambda x, y: dt.sum(dt.log1p(dt.exp(x)) * dt.sqrt(y * y + 1.0)),
        lambda x, y: dt.sum(dt.maximum(x, y) * dt.abs(x - y) + dt.sin(dt.cos(y))),
        lambda x, y: dt.sum((x @ dt.reshape(y, (N // 100, 100))) ** 2),
    ],
)
@pytest.mark.parametrize("persistent", [False, True])
def test_chains_on_large_arrays_equal_the_full_tape(fn, persistent, monkeypatch):
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal(N), rng.standard_normal(N)
    if "reshape" in fn.__code__.co_names:
        x = rng.standard_normal((3, N // 100))
    (v1, g1), (v2, g2) = both_ways(fn, [x, y], monkeypatch, persistent)
    assert same(v1, v2) and all(same(a, b) for a, b in zip(g1, g2))


def test_second_derivatives_through_stand_ins(monkeypatch):
    """An outer tape records the inner backward pass: the stand-ins of values no VJP reads are never
    read there either; d2/dx2 of sum(exp(sin(x))) is exp(sin x) (cos^2 x - sin x)."""
    x = np.random.default_rng(2).standard_normal(N)

    def second():
        t = dt.constant(x)
        with dt.Tape() as outer:
            outer.watch(t)
            with dt.Tape() as inner:
                inner.watch(t)
                y = dt.sum(dt.exp(dt.sin(t)))
            (g,) = inner.gradient(y, [t])
            z = dt.sum(g)
        return outer.gradient(z, [t])[0].numpy()

    want = np.exp(np.sin(x)) * (np.cos(x) ** 2 - np.sin(x))
    np.testing.assert_allclose(second(), want, rtol=1e-12, atol=1e-12)
    with monkeypatch.context() as m:
        m.setattr(tape_module, "_SLIM", 1 << 62)
        full = second()
    assert same(second(), full)


def test_a_second_tape_recording_the_backward_pass(monkeypatch):
    """A tape started after the forward (so the forward was recorded by one tape alone, the fast path)
    records the backward pass: the result equals the full tape's."""
    x = np.random.default_rng(3).standard_normal(N)

    def run():
        t = dt.constant(x)
        with dt.Tape(persistent=True) as inner:
            inner.watch(t)
            y = dt.sum(dt.exp(dt.sin(t)) * t)
        with dt.Tape() as outer:
            outer.watch(t)
            (g,) = inner.gradient(y, [t])
            z = dt.sum(g * g)
        return g.numpy(), outer.gradient(z, [t])

    g1, h1 = run()
    with monkeypatch.context() as m:
        m.setattr(tape_module, "_SLIM", 1 << 62)
        g2, h2 = run()
    assert same(g1, g2)
    assert (h1[0] is None) == (h2[0] is None)
    if h1[0] is not None:
        assert same(h1[0].numpy(), h2[0].numpy())


def test_a_value_no_vjp_reads_is_not_kept():
    x = dt.constant(np.random.default_rng(4).standard_normal(1_000_000))
    gc.collect()
    tracemalloc.start()
    try:
        with dt.Tape() as tape:
            tape.watch(x)
            y = dt.exp(dt.sin(x))  # sin(x): read by no VJP (exp's reads its output, sin's its input)
            kept = tracemalloc.get_traced_memory()[0]
        entries = [e for e in tape._entries if e is not None]
        exp_entry = entries[-1]
        assert exp_entry[2].strides == (0,)  # the stand-in of sin(x)
        assert exp_entry[3]._value is y._value  # exp's output: read by its VJP
        assert entries[0][2] is x._value  # sin's input: read by its VJP
        assert kept < 1.5 * 8_000_000  # y alone (sin(x) is gone), not both
    finally:
        tracemalloc.stop()
    (g,) = tape.gradient(y, [x])
    xv = x.numpy()
    assert same(g.numpy(), np.exp(np.sin(xv)) * np.cos(xv))
