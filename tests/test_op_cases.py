"""Every case of the shared table (``op_cases.CASES``) through every way difftape differentiates.

For each case: first derivatives against finite differences (float64), second derivatives
(nested tapes, and ``difftape.hessian``) against finite differences of the gradient, forward-mode
JVPs (``difftape.jvp``) against the Jacobian times the tangent, the static
shape and dtype rules against what numpy returns (for the API and for the compiled program),
``difftape.function`` replay against eager (bit for bit), the language program against the API
call (``Program``, what the command line runs), ``--batch`` against point by point, and the
derivative ``diff`` prints against the tape's gradient. A check that fails because of a known
bug is a strict xfail named in the case (``Case.xfail``).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from gradcheck import assert_close, check_gradients, numeric_jvp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes
from op_cases import CASES, REF, Case, plain_cases
from test_batch import check as check_batch
from test_diff import check_against_tape
from test_higher_order import check_second

import difftape as dt
import difftape.answers.batch as batch
from difftape.answers.program import Program
from difftape.engine import tape as tape_module
from difftape.engine.tensor import Tensor
from difftape.language.compiler import compile_program
from difftape.ops import OPS

CHECKS = ("grad", "second", "forward", "rules", "rules_numbers", "program_rules", "function", "program", "batch",
          "diff")


def params(check: str, keep: Callable[[Case], bool] = lambda c: True, variants: tuple[str, ...] = ()) -> list[Any]:
    """The cases a check applies to, as pytest params (a strict xfail where the case names a bug).

    With ``variants`` (e.g. dtypes), one param per case and variant; ``xfail`` keys are then
    ``check`` (every variant) or ``check[variant]``.
    """
    assert check in CHECKS
    out = []
    for c in CASES:
        if not keep(c):
            continue
        for variant in variants or (None,):
            key = f"{check}[{variant}]" if variant is not None else check
            reason = c.xfail.get(key) or c.xfail.get(check)
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            values = (c,) if variant is None else (c, variant)
            out.append(pytest.param(*values, id=c.id if variant is None else f"{c.id}-{variant}", marks=marks))
    return out


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def api(case: Case) -> Callable[..., Any]:
    return lambda *xs: case.call(dt, *xs)


def reference(case: Case) -> Callable[..., Any]:
    return lambda *xs: case.call(REF, *xs)


# ----------------------------------------------------------------------------------------
# the table itself


def test_every_op_with_tensor_inputs_has_a_case():
    missing = sorted(name for name, op in OPS.items() if op.args and not any(c.op == name for c in CASES))
    assert missing == [], f"ops without a case in tests/op_cases.py: {missing}"


def test_every_vjp_slot_is_declared():
    """One VJP per tensor input (a variadic op: one factory), each a function or explicitly None."""
    for name, op in OPS.items():
        if op.vjps is not None:
            assert len(op.vjps) == (1 if op.variadic else len(op.args)), name
            assert all(v is None or callable(v) for v in op.vjps), name


def test_cases_are_sound():
    for c in CASES:
        assert c.op in OPS, c.id
        assert c.grad in ("fd", "zero", "none"), c.id
        assert (c.grad == "none") == (OPS[c.op].vjps is None), f"{c.id}: grad={c.grad!r}, but the op's VJPs differ"
        assert {k.split("[")[0] for k in c.xfail} <= set(CHECKS), c.id
        assert len(set(c.names)) == len(c.names), c.id
        # the op named is the op the call exercises
        assert c.op in ops_used(c), f"{c.id}: the call never applies {c.op}"
        if c.program is not None:
            assert c.op in {n.op for n in compile_program(c.program, values=inputs(c)).nodes}, c.id


def inputs(c: Case, seed: int = 0, dtype: Any = np.float64) -> dict[str, np.ndarray]:
    return dict(zip(c.names, c.values(seed, dtype)))


class _Steps:
    """A recorder (the protocol of ``tape._enter``): every applied op with its arguments and result."""

    def __init__(self) -> None:
        self.steps: list[tuple[Any, tuple[Any, ...], dict[str, Any], Tensor]] = []

    def _record(self, op: Any, args: tuple[Any, ...], params: dict[str, Any], out: Tensor) -> None:
        self.steps.append((op, args, params, out))


def recorded(run: Callable[..., Any], *args: Any) -> list[tuple[Any, tuple[Any, ...], dict[str, Any], Tensor]]:
    """The ops that ``run(*args)`` applies."""
    rec = _Steps()
    tape_module._enter(rec)
    try:
        run(*args)
    finally:
        tape_module._leave(rec)
    return rec.steps


def ops_used(c: Case) -> set[str]:
    xs = c.values()
    return {op.name for op, *_ in recorded(c.call, dt, *[dt.constant(x) for x in xs])}


# ----------------------------------------------------------------------------------------
# first and second derivatives


@pytest.mark.parametrize("case", params("grad"))
def test_first_derivatives_match_finite_differences(case: Case):
    xs = case.values()
    if case.grad == "fd" or case.grad == "zero":
        check_gradients(api(case), reference(case), xs, wrt=case.wrt, rtol=case.rtol, atol=case.atol, what=case.id)
    if case.grad == "fd":
        return
    ts = [dt.constant(x if k not in case.wrt else np.asarray(x, np.float64)) for k, x in enumerate(xs)]
    with dt.Tape() as tape:
        tape.watch([ts[k] for k in case.wrt])
        out = case.call(dt, *ts)
        np.testing.assert_array_equal(out.numpy(), case.call(REF, *xs))
    grads = tape.gradient(out, [ts[k] for k in case.wrt])
    for k, g in zip(case.wrt, grads):
        if case.grad == "zero":  # connected, exactly zero
            assert g is not None and g.shape == ts[k].shape and np.all(g.numpy() == 0.0), case.id
        else:  # no gradient at all: unconnected
            assert g is None, case.id
    if case.grad == "none":  # and so is what the result feeds
        ts = [dt.constant(x) for x in xs]
        with dt.Tape() as tape:
            tape.watch([ts[k] for k in case.wrt])
            z = case.call(dt, *ts) * 1.0
        assert tape.gradient(z, [ts[k] for k in case.wrt]) == [None] * len(case.wrt), case.id


def _has_second(case: Case) -> bool:
    return case.grad != "none" and case.second


@pytest.mark.parametrize("case", params("second", _has_second))
def test_second_derivatives_match_finite_differences_of_the_gradient(case: Case):
    xs = [np.asarray(x, np.float64) if k in case.wrt else x for k, x in enumerate(case.values())]
    tol = {"rtol": max(case.rtol, 1e-5), "atol": max(case.atol, 1e-5)}
    # nested tapes: a Hessian-vector product
    check_second(api(case), reference(case), xs, wrt=case.wrt, what=case.id, **tol)

    # difftape.hessian: the whole Hessian of sum(w * f), every column against the gradient's differences
    rng = np.random.default_rng(1)
    out_shape = np.shape(case.call(REF, *xs))
    w = rng.uniform(0.5, 1.5, out_shape) * rng.choice([-1.0, 1.0], out_shape)

    def with_watched(watched: list[Any]) -> list[Any]:
        full = list(xs)
        for k, t in zip(case.wrt, watched):
            full[k] = t
        return full

    def loss(*watched: Any) -> Any:
        return dt.sum(case.call(dt, *with_watched(list(watched))) * w)

    blocks = dt.hessian(loss, [xs[k] for k in case.wrt])
    sizes = [xs[k].size for k in case.wrt]
    h = np.block([[np.reshape(b.numpy(), (sizes[i], sizes[j])) for j, b in enumerate(row)]
                  for i, row in enumerate(blocks)])
    flat_x = np.concatenate([xs[k].ravel() for k in case.wrt])

    def gradient_at(flat: np.ndarray) -> np.ndarray:
        parts = np.split(flat, np.cumsum(sizes)[:-1])
        ts = [dt.constant(p.reshape(xs[k].shape)) for k, p in zip(case.wrt, parts)]
        with dt.Tape() as tape:
            tape.watch(ts)
            y = loss(*ts)
        return np.concatenate([g.numpy().ravel() for g in tape.gradient(y, ts, unconnected="zero")])

    for j in range(flat_x.size):
        e = np.zeros(flat_x.size)
        e[j] = 1.0
        assert_close(h[:, j], numeric_jvp(gradient_at, flat_x, e), what=f"{case.id} hessian column {j}", **tol)


@pytest.mark.parametrize("case", params("forward", lambda c: c.grad != "none"))
def test_forward_mode_jvp_is_the_jacobian_times_the_tangent(case: Case):
    xs = case.values()

    def fn(*watched: Any) -> Any:
        full = list(xs)
        for k, t in zip(case.wrt, watched):
            full[k] = t
        return case.call(dt, *full)

    primals = [dt.constant(np.asarray(xs[k], np.float64)) for k in case.wrt]
    rng = np.random.default_rng(2)
    tangents = [rng.normal(size=p.shape) for p in primals]
    y, t = dt.jvp(fn, primals, tangents)
    _same(y, fn(*primals), f"{case.id} jvp value")
    jac = dt.jacobian(fn, primals)
    expected = sum(np.tensordot(np.asarray(j), v, axes=np.ndim(v)) for j, v in zip(jac, tangents))
    np.testing.assert_allclose(np.asarray(t), expected, rtol=1e-10, atol=1e-12, err_msg=case.id)


# ----------------------------------------------------------------------------------------
# static shape and dtype rules

FLOATS = [np.float64, np.float32]
INTEGRAL = [np.int64, np.int32, np.bool_]
WEAK = [float, int]  # Python numbers: weakly typed literals


def _dtypes_for(case: Case, k: int, shape: tuple[int, ...]) -> list[Any]:
    i = case.inputs[k]
    if not i.domain.differentiable:
        return [np.bool_]
    out: list[Any] = list(FLOATS)
    if case.ints and i.domain.integral:
        out += INTEGRAL
    if shape == ():
        out += WEAK if case.ints and i.domain.integral else [float]
    return out


def _as(value: np.ndarray, dtype: Any) -> Any:
    if dtype is float:
        return float(value)
    if dtype is int:
        return int(np.round(value))
    if np.dtype(dtype).kind in "iu":
        return np.round(value).astype(dtype)
    return value.astype(dtype)


def rule_dtype(v: Any) -> Any:
    return type(v) if type(v) in (float, int, bool) else np.asarray(v).dtype


def check_step_rules(op: Any, args: tuple[Any, ...], params: dict[str, Any], out: Tensor, what: str) -> None:
    vals = [a._value if isinstance(a, Tensor) else a for a in args]
    actual = np.asarray(out._value)
    shape = op.shape(*[np.shape(v) for v in vals], **params)
    dtype = op.dtype(*[rule_dtype(v) for v in vals], **params)
    assert tuple(shape) == actual.shape, f"{what}: {op.name} shape rule {shape} != numpy's {actual.shape}"
    assert np.dtype(dtype) == actual.dtype, f"{what}: {op.name} dtype rule {dtype} != numpy's {actual.dtype}"


def check_rules(case: Case, shapes: list[tuple[int, ...]]) -> None:
    """Every op the call applies, for every mix of input dtypes numpy accepts: rules == what ran."""
    base = case.values(shapes=shapes)
    choices = [_dtypes_for(case, k, s) for k, s in enumerate(shapes)]
    checked = set()
    for dtypes in itertools.product(*choices):
        # arrays as tensors (so that operators reach difftape), Python numbers as they are (weak)
        xs = [x if type(x) in (float, int) else dt.constant(x) for x in (_as(v, d) for v, d in zip(base, dtypes))]
        try:
            steps = recorded(case.call, dt, *xs)
        except (TypeError, ValueError, ArithmeticError, np.linalg.LinAlgError, dt.DifftapeError):
            continue  # numpy refuses these dtypes (bool - bool, inv of bools): nothing to agree with
        assert steps or all(type(x) in (float, int) for x in xs), f"{case.id}: nothing recorded"
        for op, args, prm, out in steps:
            check_step_rules(op, args, prm, out, f"{case.id} {[getattr(d, '__name__', d) for d in dtypes]}")
        checked.add(dtypes)
    assert tuple(c[0] for c in choices) in checked, f"{case.id}: the float64 call must run"


@pytest.mark.parametrize("case", params("rules"))
def test_static_rules_agree_with_numpy(case: Case):
    check_rules(case, [i.shape for i in case.inputs])


SCALAR_OPS = [c for c in plain_cases() if OPS[c.op].kind in ("elementwise", "compare")]


@pytest.mark.parametrize("case", params("rules_numbers", lambda c: c in SCALAR_OPS))
def test_static_rules_on_numbers(case: Case):
    """Elementwise ops on 0-d inputs: numpy scalars and Python numbers (weakly typed) in every mix."""
    check_rules(case, [()] * len(case.inputs))


def _program_dtypes(case: Case) -> list[Any]:
    return [np.float64, np.float32] + ([np.int64] if case.ints and all(i.domain.integral for i in case.inputs) else [])


@pytest.mark.parametrize("case", params("program_rules", lambda c: c.program is not None))
def test_compiled_program_shapes_and_dtypes_are_what_runs(case: Case):
    """The compiler's static shape and dtype of every node equal the value the node computes."""
    for dtype in _program_dtypes(case):
        values = inputs(case, 0, dtype)
        graph = compile_program(case.program, values=values, dtype="float32" if dtype == np.float32 else "float64")
        steps = recorded(graph.run)
        nodes = [n for n in graph.nodes if n.op in OPS]
        assert [n.op for n in nodes] == [op.name for op, *_ in steps], case.id
        for node, (op, args, prm, out) in zip(nodes, steps):
            check_step_rules(op, args, prm, out, f"{case.id} {np.dtype(dtype)}")
            actual = np.asarray(out._value)
            want = np.dtype(np.result_type(node.dtype)) if node.dtype in (int, float, bool) else np.dtype(node.dtype)
            assert tuple(node.shape) == actual.shape, f"{case.id}: node {node.op} shape {node.shape} != {actual.shape}"
            assert want == actual.dtype, f"{case.id}: node {node.op} dtype {node.dtype} != {actual.dtype}"


# ----------------------------------------------------------------------------------------
# difftape.function


def _same(a: Any, b: Any, what: str) -> None:
    if a is None or b is None:
        assert a is None and b is None, what
        return
    a = np.asarray(a.numpy() if isinstance(a, dt.Tensor) else a)
    b = np.asarray(b.numpy() if isinstance(b, dt.Tensor) else b)
    assert a.dtype == b.dtype and a.shape == b.shape, f"{what}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
    np.testing.assert_array_equal(a, b, err_msg=what)


def _run_taped(fn: Callable[..., Any], xs: list[Any], wrt: list[int], persistent: bool = False):
    ts = [dt.constant(x) for x in xs]
    with dt.Tape(persistent=persistent) as tape:
        tape.watch([ts[k] for k in wrt])
        y = fn(*ts)
    return y, tape.gradient(y, [ts[k] for k in wrt]), tape


@pytest.mark.parametrize(("case", "dtype"), params("function", variants=("float64", "float32")))
def test_function_replay_equals_eager(case: Case, dtype: str):
    xs = case.values(0, dtype)
    wrt = case.wrt
    value, grads, _ = _run_taped(api(case), xs, wrt)
    f = dt.function(api(case))
    for call in range(2):  # the first call traces, the second replays
        _same(f(*[dt.constant(x) for x in xs]), value, f"{case.id} value, call {call}")  # no recorder
        y, g, _ = _run_taped(f, xs, wrt)
        _same(y, value, f"{case.id} value under a tape, call {call}")
        for k, (a, b) in enumerate(zip(g, grads)):
            _same(a, b, f"{case.id} gradient {k}, call {call}")
    assert f.trace_count == 1
    if case.grad != "none" and "where" not in ops_used(case):
        # under one tape a compiled call is one entry, answered by generated code (no op-by-op fallback)
        y, _, tape = _run_taped(f, xs, wrt, persistent=True)
        assert len(tape._entries) == 1, case.id
        op, *_, hits = tape._entries[0]
        assert op.plan.backward_function(op.out_index, hits) is not None, case.id


# ----------------------------------------------------------------------------------------
# the language: Program (what the command line runs), --batch, diff


def _eager_value_and_grads(case: Case, xs: list[Any]) -> tuple[np.ndarray, list[Any]]:
    ts = [dt.constant(np.asarray(x, np.float64) if k in case.wrt else x) for k, x in enumerate(xs)]
    with dt.Tape() as tape:
        tape.watch([ts[k] for k in case.wrt])
        y = case.call(dt, *ts)
    grads = tape.gradient(y, [ts[k] for k in case.wrt])
    return y.numpy(), [None if g is None else g.numpy() for g in grads]


@pytest.mark.parametrize("case", params("program", lambda c: c.program is not None))
def test_program_gives_the_api_value_and_gradient(case: Case):
    xs = case.values()
    prog = Program(case.program, at=dict(zip(case.names, xs)))
    value = case.call(dt, *[dt.constant(x) for x in xs]).numpy()
    _same(prog.evaluate(), value, f"{case.id} eval")
    wrt = [case.names[k] for k in case.wrt]
    result = prog.grad(wrt=wrt)
    eager_value, eager_grads = _eager_value_and_grads(case, xs)
    _same(result.value, eager_value.astype(np.float64) if eager_value.dtype.kind not in "f" else eager_value,
          f"{case.id} grad value")
    for name, g in zip(wrt, eager_grads):
        _same(result.grad[name], g, f"{case.id} d/d{name}")
    if case.ints and all(i.domain.integral for i in case.inputs):  # integers stay integers, as in numpy
        ints = case.values(0, np.int64)
        _same(Program(case.program, at=dict(zip(case.names, ints))).evaluate(),
              case.call(dt, *[dt.constant(x) for x in ints]).numpy(), f"{case.id} eval of int64 inputs")


@pytest.fixture
def no_safety_nets(monkeypatch):
    """The batch runner's per-point fallbacks would hide a wrong batching rule behind a right answer."""

    def alone(self, group, j):
        raise AssertionError(f"a vectorised run failed for {self.prog.source!r}; it fell back to single points")

    def per_point(apply, B, op, node, args, flags):
        raise AssertionError(f"op {op.name} ran point by point")

    monkeypatch.setattr(batch._Job, "_alone", alone)
    monkeypatch.setattr(batch, "per_point", per_point)


def _point(case: Case, seed: int) -> dict[str, Any]:
    return {n: v.tolist() for n, v in inputs(case, seed).items()}


@pytest.mark.usefixtures("no_safety_nets")
@pytest.mark.parametrize("case", params("batch", lambda c: c.program is not None and c.batch))
def test_batch_equals_point_by_point(case: Case):
    points = [_point(case, seed) for seed in range(3)]
    check_batch(case.program, points, wrt=[case.names[k] for k in case.wrt])


@pytest.mark.parametrize("case", params("diff", lambda c: c.program is not None and c.diff))
def test_printed_derivative_evaluates_to_the_tape_gradient(case: Case):
    values = {n: (float(v) if v.shape == () and v.dtype != np.bool_ else v) for n, v in inputs(case).items()}
    check_against_tape(case.program, values)
    if _has_second(case) and all(i.shape == () for i in case.inputs):  # diff --order 2 takes scalar inputs
        check_against_tape(f"sum({case.program})", values, order=2)


# ----------------------------------------------------------------------------------------
# other shapes: the table's domains on broadcast shapes drawn by hypothesis

FEW = settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _broadcastable(case: Case) -> Iterator[Any]:
    return mutually_broadcastable_shapes(num_shapes=len(case.inputs), min_dims=0, max_dims=3, max_side=3)


ELEMENTWISE = [c for c in plain_cases("elementwise")]


@pytest.mark.parametrize("case", ELEMENTWISE, ids=[c.id for c in ELEMENTWISE])
@FEW
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_elementwise_gradients_on_other_shapes(case: Case, data: Any, seed: int):
    shapes = data.draw(_broadcastable(case), label="shapes").input_shapes
    rng = np.random.default_rng(seed)
    xs = [i.domain(rng, s) for i, s in zip(case.inputs, shapes)]
    check_gradients(api(case), reference(case), xs, wrt=case.wrt, rng=rng, rtol=case.rtol, atol=case.atol,
                    what=f"{case.id} {shapes}")
