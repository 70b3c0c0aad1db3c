"""difftape.function and Python control flow: a traced value used as a Python value is a guard.

The body's decisions on traced values (``if v > 0``, ``float(v)``, ``x[int(i)]``, ``v.numpy()``,
``len(x[mask])``) are checked at each replay; a call whose values decide differently traces
again, and a signature that keeps deciding differently runs eagerly (with a RetraceWarning).
Every call is compared with eager execution: values, and gradients under a Tape.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import difftape as dt
from difftape.engine import tracing
from difftape.engine.tracing import MAX_TRACES_PER_SIGNATURE, RetraceWarning
from difftape.ops import OPS


def _eager_and_traced(body, *calls):
    """(eager result, traced result) for each call's arguments, with the gradient of their sum under a Tape."""
    traced = dt.function(body)
    out = []
    for args in calls:
        pair = []
        for fn in (body, traced):
            ins = [dt.constant(a) if isinstance(a, (float, list, np.ndarray)) else a for a in args]
            with dt.Tape() as tape:
                for t in ins:
                    if isinstance(t, dt.Tensor) and t.dtype.kind == "f":
                        tape.watch(t)
                y = fn(*ins)
                total = dt.sum(y)
            watched = [t for t in ins if isinstance(t, dt.Tensor) and t.dtype.kind == "f"]
            grads = tape.gradient(total, watched, unconnected="zero")
            pair.append((np.asarray(y.numpy()), [np.asarray(g.numpy()) for g in grads]))
        out.append(pair)
    return traced, out


def _assert_same(pairs):
    for (ey, eg), (ty, tg) in pairs:
        np.testing.assert_array_equal(ty, ey)
        for a, b in zip(tg, eg):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=0)


# -- the two examples of the issue ------------------------------------------------------------


def test_an_if_on_a_tensor_is_checked_at_each_call():
    def f(v):
        if v > 0:
            return v * 2
        return -v

    traced, pairs = _eager_and_traced(f, [-1.0], [3.0], [-2.0], [5.0])
    _assert_same(pairs)
    assert [p[1][0] for p in pairs] == [1.0, 6.0, 2.0, 10.0]
    assert traced.trace_count == 2  # one trace per branch, each replayed when its guard holds


def test_float_of_a_tensor_is_checked_at_each_call():
    def g(v):
        return v * float(v)

    traced, pairs = _eager_and_traced(g, [2.0], [5.0], [2.0])
    _assert_same(pairs)
    assert [p[1][0] for p in pairs] == [4.0, 25.0, 4.0]
    assert [p[1][1][0] for p in pairs] == [2.0, 5.0, 2.0]  # float(v) is a constant for the gradient, as in eager
    assert traced.trace_count == 2


# -- each kind of Python use ------------------------------------------------------------------


def test_int_used_as_an_index():
    x = [10.0, 20.0, 30.0]
    _, pairs = _eager_and_traced(lambda x, i: x[int(i)] * 2.0, [x, dt.constant(0)], [x, dt.constant(2)],
                                 [x, dt.constant(1)], [x, dt.constant(2)])
    _assert_same(pairs)
    _, pairs = _eager_and_traced(lambda x, i: dt.sum([x[k] for k in range(i)]), [x, dt.constant(1)],
                                 [x, dt.constant(3)])  # __index__: range(i)
    _assert_same(pairs)


def test_numpy_values_in_python_arithmetic():
    def body(v):
        w = v.numpy()  # a numpy array: a constant for the gradient, as in eager code
        return v * w + float(np.sum(np.asarray(v))) + dt.constant(v.value.max())

    traced, pairs = _eager_and_traced(body, [[1.0, 2.0]], [[3.0, -4.0]], [[1.0, 2.0]])
    _assert_same(pairs)
    assert traced.trace_count == 2


def test_a_captured_variable_used_as_a_number():
    lr = dt.Variable(0.1)
    step = dt.function(lambda x: x * float(lr))
    assert step(dt.constant(1.0)).numpy() == 0.1
    lr.assign(0.5)
    assert step(dt.constant(1.0)).numpy() == 0.5  # read at each call, like the Variable itself
    flag = dt.Variable(True)
    pick = dt.function(lambda x: x + 1.0 if flag else x - 1.0)
    assert pick(dt.constant(0.0)).numpy() == 1.0
    flag.assign(False)
    assert pick(dt.constant(0.0)).numpy() == -1.0


def test_the_length_of_a_value_dependent_shape():
    def mean_of_positives(x):
        y = x[x > 0]
        return dt.sum(y) / len(y)

    traced, pairs = _eager_and_traced(mean_of_positives, [[1.0, 2.0, -1.0]], [[1.0, 2.0, 3.0]], [[4.0, -2.0, -1.0]])
    _assert_same(pairs)
    total = dt.function(lambda x: dt.sum(x[x > 0]))  # its shape is never read: one trace serves all
    assert [total(dt.constant(v)).numpy() for v in ([1.0, -2.0], [1.0, 2.0])] == [1.0, 3.0]
    assert total.trace_count == 1


def test_tensor_arguments_in_an_ops_parameters_are_not_guards():
    f = dt.function(lambda x, i: x[i])  # the index is traced with the op: read at every call
    x = dt.constant([10.0, 20.0, 30.0])
    assert [f(x, dt.constant(k)).numpy() for k in (0, 2, 1)] == [10.0, 30.0, 20.0]
    assert f.trace_count == 1
    g = dt.function(lambda x, n: dt.sum(x) + dt.zeros((n, 2)))
    assert g(dt.constant(1.0), dt.constant(2)).shape == (2, 2)
    assert g(dt.constant(1.0), dt.constant(3)).shape == (3, 2) and g.trace_count == 1


def test_a_conversion_that_fails_fails_as_in_eager():
    f = dt.function(lambda v: v * 2.0 if v > 0 else v)
    with pytest.raises(ValueError, match="ambiguous"):
        f(dt.constant([1.0, 2.0]))
    g = dt.function(lambda v, x: x[int(v)])
    assert g(dt.constant(1.0), dt.constant([1.0, 2.0])).numpy() == 2.0
    with pytest.raises(ValueError):  # int(nan): the replay's guard fails, the new trace raises as eager does
        g(dt.constant(np.nan), dt.constant([1.0, 2.0]))


def test_guards_without_a_tape_with_one_and_with_nested_ones():
    def body(v):
        return v * v * v if dt.sum(v) > 0 else dt.sin(v) * v

    f = dt.function(body)
    for a in (2.0, -2.0, 3.0, -1.5):
        assert f(dt.constant(a)).numpy() == body(dt.constant(a)).numpy()
        for fn in (body, f):  # nested tapes: the graph op by op, guards checked on the way
            x0 = dt.constant(a)
            with dt.Tape() as t2:
                t2.watch(x0)
                with dt.Tape() as t1:
                    t1.watch(x0)
                    y = fn(x0)
                gy = t1.gradient(y, x0)
            second = t2.gradient(gy, x0).numpy()
            if fn is body:
                want = (y.numpy(), gy.numpy(), second)
            else:
                np.testing.assert_allclose((y.numpy(), gy.numpy(), second), want, rtol=1e-14)
    assert f.trace_count == 2


def test_a_guarded_function_inside_a_traced_function():
    inner = dt.function(lambda v: v * 2.0 if v > 0 else -v)
    outer = dt.function(lambda v: inner(v) + 1.0)
    assert [outer(dt.constant(a)).numpy() for a in (1.0, -1.0, 2.0, -3.0)] == [3.0, 2.0, 5.0, 4.0]
    assert outer.trace_count == 2  # the inner decision is a decision of the outer trace too


def test_a_guard_on_a_value_computed_from_constants_only_is_dropped():
    c = dt.constant(2.0)
    f = dt.function(lambda x: x * 3.0 if c * 2.0 > 1.0 else x)  # no input involved: a fixed decision
    assert f(dt.constant(1.0)).numpy() == 3.0
    graph = f._graphs[next(iter(f._graphs))]
    assert graph.plan.guards == []


def test_a_guard_free_function_has_no_guards_and_one_trace():
    f = dt.function(lambda x: dt.where(x > 0, x * 2.0, -x))  # the way to write the example
    assert [f(dt.constant(a)).numpy() for a in (-1.0, 3.0)] == [1.0, 6.0]
    graph = f._graphs[next(iter(f._graphs))]
    assert graph.guards == [] and f.trace_count == 1


def test_past_the_bound_a_signature_runs_eagerly_and_says_so():
    def body(v):
        return v * float(v)

    f = dt.function(body)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = [f(dt.constant(float(k))).numpy() for k in range(MAX_TRACES_PER_SIGNATURE + 4)]
        with dt.Tape() as tape:
            x = dt.constant(7.5)
            tape.watch(x)
            y = f(x)
        assert tape.gradient(y, x).numpy() == 7.5
    assert got == [float(k) ** 2 for k in range(MAX_TRACES_PER_SIGNATURE + 4)]
    assert f.trace_count == MAX_TRACES_PER_SIGNATURE
    retraces = [w for w in caught if issubclass(w.category, RetraceWarning)]
    assert len(retraces) == 1
    message = str(retraces[0].message)
    assert "test_function_guards.py" in message and "return v * float(v)" in message
    assert "converted by float()" in message and "difftape.where" in message and "Python argument" in message
    assert f(dt.constant(3)).numpy() == 9.0  # another signature (int64) still traces
    assert f.trace_count == MAX_TRACES_PER_SIGNATURE + 1


def test_a_body_whose_own_replay_decides_differently_is_bounded():
    flip = dt.Variable(1.0)

    def body(x):
        up = flip > 0.0
        flip.assign(-flip)  # a side effect the replay does not repeat: its own trace's guard fails
        return x * 2.0 if up else x * 3.0

    f = dt.function(body)
    with pytest.warns(RetraceWarning):
        assert f(dt.constant(1.0)).numpy() in (2.0, 3.0)
    assert f.trace_count == MAX_TRACES_PER_SIGNATURE
    before = flip.numpy()
    assert f(dt.constant(1.0)).numpy() == (2.0 if before > 0 else 3.0)  # now eager: the body runs
    assert flip.numpy() == -before


def test_the_command_lines_compiled_check_has_no_guards():
    from difftape.answers.program import Program

    made = []
    original = tracing.Function._trace

    def spy(self, *args):
        graph = original(self, *args)
        made.append(graph)
        return graph

    tracing.Function._trace = spy
    try:
        result = Program("y = where(x > 0, sin(x) * x, x**2); sum(y * W); W = randn(3)",
                         at={"x": [0.5, -1.0, 2.0]}).check()
    finally:
        tracing.Function._trace = original
    assert result.ok
    assert made and all(g.guards == [] for g in made)


# -- random programs of table ops with data-dependent Python decisions --------------------------

UNARY = [n for n, op in OPS.items() if op.elementwise and len(op.args) == 1 and not op.params and op.vjps]
BINARY = [n for n, op in OPS.items() if op.elementwise and len(op.args) == 2 and not op.params and op.vjps]
REDUCE = ["sum", "mean", "max", "min", "logsumexp", "norm", "prod"]

_simple = st.one_of(
    st.tuples(st.just("unary"), st.sampled_from(UNARY)),
    st.tuples(st.just("binary"), st.sampled_from(BINARY), st.booleans()),
    st.tuples(st.just("reduce"), st.sampled_from(REDUCE)),
)
_step = st.one_of(
    _simple,
    st.tuples(st.just("if"), st.sampled_from(REDUCE), st.floats(-2, 2), _simple, _simple),
    st.tuples(st.just("float"), st.sampled_from(REDUCE)),
    st.tuples(st.just("index"), st.sampled_from(REDUCE)),
    st.tuples(st.just("numpy"), st.sampled_from(["cos", "tanh"])),
)


def _apply_step(step, h, x):
    api = dt.engine.api.NAMESPACE
    kind = step[0]
    if kind == "unary":
        return getattr(api, step[1])(h)
    if kind == "binary":
        a, b = (h, x) if step[2] else (x, h)
        return getattr(api, step[1])(a, b)
    if kind == "reduce":
        return h + getattr(api, step[1])(h)
    if kind == "if":  # if/else on a tensor value
        _, red, threshold, then, other = step
        return _apply_step(then if getattr(api, red)(h) > threshold else other, h, x)
    if kind == "float":  # float() of a value, in Python arithmetic
        return h * np.tanh(float(getattr(api, step[1])(h)))
    if kind == "index":  # int() used as an index
        i = int(dt.clip(dt.abs(getattr(api, step[1])(h)) * 2.0, 0.0, 2.0))
        return h + x[i]
    return h + getattr(np, step[1])(h.numpy())  # .numpy() arithmetic


def _outcome(fn, xv):
    """(value, gradient) of one call under a Tape, or the error's type."""
    x = dt.constant(np.array(xv))
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RetraceWarning)
            with dt.Tape() as tape:
                tape.watch(x)
                y = fn(x)
                total = dt.sum(y)
            g = tape.gradient(total, x, unconnected="zero")
            plain = fn(x)  # and without a tape: the compiled forward alone
    except (ValueError, OverflowError, dt.DifftapeError) as err:
        return type(err)
    return np.asarray(y.numpy()), np.asarray(g.numpy()), np.asarray(plain.numpy())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(_step, min_size=1, max_size=6),
    points=st.lists(st.lists(st.floats(-2, 2), min_size=3, max_size=3), min_size=2, max_size=5),
)
def test_random_programs_with_python_decisions_match_eager(steps, points):
    def body(x):
        h = x
        for step in steps:
            h = _apply_step(step, h, x)
        return h

    traced = dt.function(body)
    for xv in points + points[:2]:  # repeated points replay an existing trace
        want, got = _outcome(body, xv), _outcome(traced, xv)
        if isinstance(want, type):
            assert got is want
            continue
        assert not isinstance(got, type), got
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[2], want[0])
        np.testing.assert_allclose(got[1], want[1], rtol=1e-9, atol=1e-12, equal_nan=True)


def test_a_copy_of_a_traced_tensor_is_checked_like_its_numbers():
    import copy

    def body(v):
        return v + copy.copy(v) * 2.0  # the copy is an untracked tensor holding v's value

    _, pairs = _eager_and_traced(body, [[1.0, 2.0]], [[5.0, 6.0]])
    _assert_same(pairs)


# -- one graph class: the trace is an ir.graph.Graph ---------------------------------------------


def test_a_trace_is_an_ir_graph_that_the_interpreter_runs_and_renders():
    from difftape.ir.graph import Graph, Node, NodeRef

    w = dt.Variable([1.0, -2.0, 3.0])

    def body(x, i):
        return dt.sum(dt.sin(x[i:]) * w[i:] * 2.0) + x[0]

    f = dt.function(body)
    x = dt.constant([0.5, 1.5, 2.5])
    got = f(x, dt.constant(1))
    compiled = next(iter(f._graphs.values()))
    graph = compiled.graph
    assert type(graph) is Graph and all(type(n) is Node for n in graph.nodes)
    assert [n.name for n in graph.nodes if n.op == "input"] == ["arg0", "arg1", "captured0"]
    assert isinstance(graph.results, NodeRef) and graph.results.id == graph.target
    assert graph.dynamic  # x[i:] with a computed i: its params hold a NodeRef
    text = graph.to_text()
    assert "getitem[%1:]" in text and "input captured0" in text and "=> body" in text
    assert "n0 -> n" in graph.to_dot()
    graph.values = {"arg0": x, "arg1": dt.constant(1), "captured0": w}
    assert graph.run().numpy() == got.numpy() == body(x, dt.constant(1)).numpy()  # the interpreter agrees


def test_computed_slice_bounds_are_read_at_each_call():
    f = dt.function(lambda x, i: dt.sum(x[i:]) + dt.sum(x[: i + 1 : 1]))
    x = dt.constant([1.0, 2.0, 4.0, 8.0])
    for k in (1, 3, 0, 2):
        i = dt.constant(k)
        assert f(x, i).numpy() == x.numpy()[k:].sum() + x.numpy()[: k + 1].sum()
        with dt.Tape() as t2:  # op by op too (nested tapes)
            t2.watch(x)
            with dt.Tape() as t1:
                t1.watch(x)
                y = f(x, i)
            g = t1.gradient(y, x)
        want = (np.arange(4) >= k).astype(float) + (np.arange(4) <= k)
        np.testing.assert_array_equal(g.numpy(), want)
        assert y.numpy() == x.numpy()[k:].sum() + x.numpy()[: k + 1].sum()
    assert f.trace_count == 1
