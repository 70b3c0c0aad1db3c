"""The fast paths of ``difftape.function`` give what the plain paths give.

- the Python-float code (transforms/codegen_float.py): bit for bit what the numpy-scalar code and
  eager code give, values and gradients, at ordinary points and at nan, inf, zeros and domain
  edges (where Python raises and numpy answers), with numpy's warnings and errstate; ints and
  float32 keep the numpy path;
- the fused kernels (transforms/fuse.py): every elementwise value bit for bit, a fused full sum
  within ``4 * log2(n) * eps * sum(abs(terms))`` of numpy's, the same from call to call, errstate
  kept in the worker threads, peak memory not above the unfused code's.
"""

from __future__ import annotations

import math
import tracemalloc
import warnings

import numpy as np
import pytest

import difftape as dt
from difftape.ops import OPS
from difftape.transforms import codegen_float, fuse

EDGES = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    2.0,
    1e-300,
    -1e-300,
    5e-324,
    1e300,
    -1e300,
    709.0,
    710.0,
    -745.0,
    math.pi,
    math.inf,
    -math.inf,
    math.nan,
]


def same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    both_nan = np.isnan(a) & np.isnan(b) if a.dtype.kind == "f" else np.zeros(a.shape, bool)
    return bool(np.all(both_nan | ((a == b) & (np.signbit(a) == np.signbit(b)))))


def warned(fn, *args):
    """``fn(*args)`` and the messages of the warnings it gave (every one, not once per place)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = fn(*args)
    return result, {str(w.message) for w in seen}


def plan_of(fn):
    (entry,) = fn._graphs.values()
    return entry.plan


# ------------------------------------------------------------------------------------------------
# the float forms, op by op


FORMS = sorted(name for name, op in OPS.items() if op.pyfloat is not None)


@pytest.mark.parametrize("name", FORMS)
def test_a_usable_float_form_is_numpy_bit_for_bit(name):
    """Where the float code uses an op's float form, it gives numpy's bits on many values and the edges."""
    op = OPS[name]
    if not codegen_float.usable(op):
        pytest.skip(f"{name}: numpy's forward differs from the float form on this machine (numpy is called)")
    n = codegen_float.n_inputs(op)
    rng = np.random.default_rng(5)
    xs = np.concatenate([rng.standard_normal(20000) * 3, np.exp(rng.uniform(-700, 700, 5000)), EDGES])
    cols = (
        [xs]
        if n == 1
        else [np.concatenate([xs, xs]), np.concatenate([np.roll(xs, 13), np.resize([2.0, 3.0, -1.0, 0.5], len(xs))])]
    )
    f = codegen_float.python_function(op.pyfloat, n)
    with np.errstate(all="ignore"):
        for args in zip(*cols):
            want = op.forward(*(np.float64(a) for a in args))
            try:
                got = f(*(float(a) for a in args))
            except (ArithmeticError, ValueError):
                continue  # the float code gives up there: numpy's code runs
            assert same_bits(np.float64(got), want), (name, args, got, want)


def test_the_probe_rejects_a_form_that_differs():
    """A form that is not numpy's function (here math.exp for tanh) is found out by the probe."""
    wrong = codegen_float.FloatForm(fn=math.exp)
    assert not codegen_float._probe(OPS["tanh"], wrong)
    assert codegen_float._probe(OPS["sin"], codegen_float.FloatForm(fn=math.sin)) == codegen_float.usable(OPS["sin"])


# ------------------------------------------------------------------------------------------------
# the float code against eager code


def body(x, y):
    a = dt.sin(x) * y + dt.exp(x) / y - dt.tanh(x * y)
    b = dt.sqrt(dt.abs(a)) + dt.log(dt.abs(y) + 0.5) + dt.cos(a) ** 2
    return dt.sum(b * x - a / (y + 1.0))


def eager_value_and_grad(f, *xs):
    with dt.Tape() as tape:
        for v in xs:
            tape.watch(v)
        y = f(*xs)
    return y, tape.gradient(y, list(xs))


POINTS = [
    (0.7, 1.3),
    (-2.5, 0.25),
    (3.0, -4.0),
    (1e-8, 7.0),
    (0.0, 1.0),
    (-0.0, -1.0),
    (1e150, 1e150),
    (0.3, 0.0),
    (0.3, -1.0),
    (math.inf, 1.0),
    (1.0, math.nan),
    (800.0, 1.0),
    (-800.0, 2.0),
]


def test_signatures_of_0d_floats_run_on_floats():
    f = dt.function(body)
    f(dt.constant(0.7), dt.constant(1.3))
    assert plan_of(f).floats is True


@pytest.mark.parametrize(("x", "y"), POINTS)
def test_float_replay_equals_eager_bit_for_bit(x, y):
    f = dt.function(body)
    f(dt.constant(0.7), dt.constant(1.3))  # traced at an ordinary point
    got, seen_f = warned(f, dt.constant(x), dt.constant(y))
    want, seen_e = warned(body, dt.constant(x), dt.constant(y))
    assert type(got.numpy()) is np.float64
    assert same_bits(got.numpy(), want.numpy()), (x, y, got, want)
    # numpy's warnings come too (the float code gives up to numpy's code where numpy warns)
    assert seen_e <= seen_f


@pytest.mark.parametrize(("x", "y"), POINTS)
def test_float_backward_equals_eager_tape_bit_for_bit(x, y):
    f = dt.function(body)
    f(dt.constant(0.7), dt.constant(1.3))
    xs = [dt.constant(x), dt.constant(y)]
    with np.errstate(all="ignore"):
        v1, g1 = eager_value_and_grad(f, *xs)
        v2, g2 = eager_value_and_grad(body, *xs)
    assert same_bits(v1.numpy(), v2.numpy())
    for a, b in zip(g1, g2):
        assert type(a.numpy()) is np.float64
        assert same_bits(a.numpy(), b.numpy()), (x, y, a, b)
    assert plan_of(f).floats is True


def test_float_backward_is_generated_on_floats_and_checked_by_finite_differences():
    f = dt.function(body)
    x, y = 0.7, 1.3
    _, (gx, gy) = eager_value_and_grad(f, dt.constant(x), dt.constant(y))
    plan = plan_of(f)
    assert plan.floats and all(fn is not None for fn in plan._backward.values())
    h = 1e-6
    num_x = (float(body(dt.constant(x + h), dt.constant(y))) - float(body(dt.constant(x - h), dt.constant(y)))) / (
        2 * h
    )
    num_y = (float(body(dt.constant(x), dt.constant(y + h))) - float(body(dt.constant(x), dt.constant(y - h)))) / (
        2 * h
    )
    assert abs(float(gx) - num_x) < 1e-6 * max(1, abs(num_x))
    assert abs(float(gy) - num_y) < 1e-6 * max(1, abs(num_y))


@pytest.mark.parametrize(
    ("fn", "x"),
    [
        (lambda x: dt.log(x), 0.0),  # math.log raises, numpy gives -inf
        (lambda x: dt.log(x), -1.0),  # nan
        (lambda x: dt.sqrt(x), -4.0),
        (lambda x: 1.0 / x, 0.0),  # ZeroDivisionError in Python
        (lambda x: 1.0 / x, -0.0),
        (lambda x: dt.exp(x) * 2.0, 1000.0),  # overflow
        (lambda x: x * 1e308 * 10.0, 1.0),  # silent inf in Python, a warning in numpy
        (lambda x: dt.arcsin(x), 2.0),
        (lambda x: dt.sin(x), math.inf),
        (lambda x: x % 0.0, 3.0),
        (lambda x: x // 0.0, 3.0),
        (lambda x: x**0.5, -8.0),  # Python's ** would give a complex number
        (lambda x: (x - x) / (x - x), 1.0),
    ],
)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_domain_edges_give_numpy_values_and_warnings_never_a_python_error(fn, x):
    f = dt.function(fn)
    f(dt.constant(0.5))
    got, seen_f = warned(f, dt.constant(x))
    want, seen_e = warned(fn, dt.constant(x))
    assert same_bits(got.numpy(), want.numpy())
    assert seen_e <= seen_f
    with np.errstate(all="raise"):
        if seen_e:
            with pytest.raises(FloatingPointError):
                f(dt.constant(x))
        else:
            f(dt.constant(x))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_int_and_float32_inputs_keep_the_numpy_path():
    f = dt.function(lambda x: x * x + 3 * x)
    assert f(dt.constant(7)).numpy() == 70 and f(dt.constant(7)).dtype == np.int64
    assert plan_of(f).floats is False
    big = dt.constant(2**62)
    assert same_bits(f(big).numpy(), (big * big + 3 * big).numpy())  # int64 wraps as numpy's does
    g = dt.function(lambda x: dt.sin(x) * x + 0.1)
    x32 = dt.constant(np.float32(0.7))
    got = g(x32)
    assert got.dtype == np.float32 and plan_of(g).floats is False
    assert same_bits(got.numpy(), (dt.sin(x32) * x32 + 0.1).numpy())


def test_guards_and_python_numbers_on_floats():
    @dt.function
    def f(x, k):
        if x > 0:
            return dt.sin(x) * k
        return -x * k

    assert same_bits(f(dt.constant(0.5), 2.0).numpy(), np.sin(np.float64(0.5)) * 2.0)
    assert same_bits(f(dt.constant(-0.5), 2.0).numpy(), np.float64(0.5) * 2.0)
    assert same_bits(f(dt.constant(0.25), 2.0).numpy(), np.sin(np.float64(0.25)) * 2.0)


@pytest.mark.parametrize("program", ["abs(x)*sin(x) + x**3", "maximum(x, 0.2)*cos(x)/x"])
def test_check_command_gives_the_same_numbers_on_floats(monkeypatch, program):
    """check's numeric derivatives (central differences: abs is not analytic) replay the float code."""
    from click.testing import CliRunner

    from difftape.cli import cli

    args = ["check", program, "--at", "x=0.5", "--json"]
    seen = []
    real = codegen_float.eligible
    monkeypatch.setattr(codegen_float, "eligible", lambda plan: seen.append(real(plan)) or seen[-1])
    fast = CliRunner().invoke(cli, args, prog_name="difftape")
    assert True in seen  # the float code ran
    monkeypatch.setattr(codegen_float, "eligible", lambda plan: False)
    slow = CliRunner().invoke(cli, args, prog_name="difftape")
    assert fast.exit_code == slow.exit_code == 0, fast.output
    assert fast.output == slow.output


# ------------------------------------------------------------------------------------------------
# the finiteness check: only the values no later value vouches for


def test_a_value_vouched_for_shows_every_non_finite_input():
    """Where ``shows_non_finite`` says an input position shows inf and nan, the code the float path runs for the
    op gives a non-finite result or raises, whatever the other (finite) input is: the check may skip that input."""
    others = [0.0, -0.0, 1.0, -1.0, 0.5, 3.0, 1e-300, 5e-324, 1e300, -1e300]
    vouching = set()
    for name, op in sorted(OPS.items()):
        if op.pyfloat is None and op.kind != "elementwise":
            continue
        shows = codegen_float.shows_non_finite(op, None)
        n = codegen_float.n_inputs(op)
        f = codegen_float.python_function(op.pyfloat, n) if codegen_float.uses_form(op, None) else op.forward
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for p in shows:
                vouching.add(name)
                for bad in (math.inf, -math.inf, math.nan):
                    for other in others if n == 2 else [None]:
                        args = [bad] if n == 1 else ([bad, other] if p == 0 else [other, bad])
                        try:
                            got = float(f(*args))
                        except (ArithmeticError, ValueError):
                            continue
                        assert not math.isfinite(got), (name, args, got)
    assert {"add", "subtract", "multiply", "divide", "negative", "sqrt", "sin", "log"} <= vouching
    assert not {"tanh", "arctan", "zeros_like", "maximum"} & vouching  # tanh(inf) is 1.0


def test_the_check_reads_few_values_of_a_chain():
    vouchers = {1: [0], 2: [1], 3: [], 4: [3, 2]}  # 4 = 3 + 2, 3 = f(...) vouching for nothing
    assert codegen_float.to_check([0, 1, 2, 3, 4], vouchers) == [4]
    assert codegen_float.to_check([0, 1, 2, 3, 4, 5], vouchers) == [4, 5]  # 5: nobody vouches for it
    assert codegen_float.shows_non_finite(OPS["divide"], None) == (0,)  # 1 / inf is 0: the divisor is checked
    assert codegen_float.shows_non_finite(OPS["zeros_like"], None) == ()  # 0.0 whatever the input


HIDDEN = [  # a value overflows to inf (silently in Python, with a warning in numpy) and no result shows it
    (lambda x: dt.arctan(x * x), 1e200),
    (lambda x: dt.exp(-(x * x)), 1e200),
    (lambda x: 1.0 / (x * x) + x, 1e200),
    (lambda x: dt.tanh((x * x) * 1e300) * x, 1e10),
    (lambda x: dt.maximum(x * x, 0.0) * 0.0 + dt.sin(x), 1e200),
]


@pytest.mark.parametrize(("fn", "x"), HIDDEN)
def test_a_hidden_overflow_gives_numpys_warning_and_errstate(fn, x):
    f = dt.function(fn)
    f(dt.constant(0.5))
    assert plan_of(f).floats is True
    got, seen_f = warned(f, dt.constant(x))
    want, seen_e = warned(fn, dt.constant(x))
    assert seen_e and same_bits(got.numpy(), want.numpy())
    assert seen_e <= seen_f
    with np.errstate(all="raise"), pytest.raises(FloatingPointError):
        f(dt.constant(x))


def test_a_hidden_overflow_in_the_float_backward_gives_numpys_errstate():
    """arctan's VJP g / (1 + x*x) is 0.0 at 1e200 through an overflow: numpy raises under errstate, so must the
    backward pass generated on floats (it used to check only its results)."""
    f = dt.function(lambda x: dt.arctan(x) * 2.0)
    eager_value_and_grad(f, dt.constant(0.5))
    x = dt.constant(1e200)
    with np.errstate(all="raise"):
        with pytest.raises(FloatingPointError):
            eager_value_and_grad(lambda v: dt.arctan(v) * 2.0, x)
        with pytest.raises(FloatingPointError):
            eager_value_and_grad(f, x)
    assert plan_of(f).floats and all(fn is not None for fn in plan_of(f)._backward.values())
    with np.errstate(all="ignore"):
        (_, (g1,)), (_, (g2,)) = eager_value_and_grad(f, x), eager_value_and_grad(lambda v: dt.arctan(v) * 2.0, x)
    assert same_bits(g1.numpy(), g2.numpy())


@pytest.mark.parametrize("k", [np.float64(np.inf), np.float64(-np.inf), np.float64(np.nan), np.float64(1e-310)])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_numpy_scalar_constants_that_are_not_finite_in_float_code(k):
    """A numpy scalar constant in the body (inf, nan) used to be written into the float code as ``inf``: NameError."""

    def body(x):
        return dt.sin(x * k + x) + x

    f = dt.function(body)
    for v in (0.5, 0.7, 0.0):
        assert same_bits(f(dt.constant(v)).numpy(), body(dt.constant(v)).numpy())
        (_, (g1,)), (_, (g2,)) = eager_value_and_grad(f, dt.constant(v)), eager_value_and_grad(body, dt.constant(v))
        assert same_bits(g1.numpy(), g2.numpy())


def test_int_constants_in_float_code_are_numpys():
    """Ints are written as floats for the float forms (``1 - y`` as ``1.0 - y``): the same numbers."""

    def body(x):
        return (1 - dt.tanh(x) * 3) * (2**53 - x) // 7 + x % 3 - 2 * x

    f = dt.function(body)
    for v in (0.5, -2.25, 1e16, 3.0):
        assert same_bits(f(dt.constant(v)).numpy(), body(dt.constant(v)).numpy())
        (_, (g1,)), (_, (g2,)) = eager_value_and_grad(f, dt.constant(v)), eager_value_and_grad(body, dt.constant(v))
        assert same_bits(g1.numpy(), g2.numpy())
    assert plan_of(f).floats is True


def test_the_direct_float_call_keeps_recording_and_retracing():
    """Calls of tensors holding float64 scalars skip building the signature; a Tape, an outer trace and a
    changed Python decision still see what they see on the general path."""
    calls = []

    @dt.function
    def f(x):
        calls.append(1)
        return dt.sin(x) * 2.0 if x > 0 else x * x

    assert same_bits(f(dt.constant(0.5)).numpy(), np.sin(np.float64(0.5)) * 2.0)
    assert same_bits(f(dt.constant(0.25)).numpy(), np.sin(np.float64(0.25)) * 2.0)
    assert len(calls) == 1
    assert same_bits(f(dt.constant(-3.0)).numpy(), np.float64(9.0))  # the guard: traced again
    assert len(calls) == 2 and f.trace_count == 2
    assert same_bits(f(dt.constant(0.75)).numpy(), np.sin(np.float64(0.75)) * 2.0)
    x = dt.constant(0.5)
    with dt.Tape() as tape:
        tape.watch(x)
        y = f(x)
    assert same_bits(tape.gradient(y, x).numpy(), np.cos(np.float64(0.5)) * 2.0)
    outer = dt.function(lambda v: f(v) + 1.0)
    assert same_bits(outer(dt.constant(-2.0)).numpy(), np.float64(5.0))
    assert same_bits(outer(dt.constant(-4.0)).numpy(), np.float64(17.0))
    v = dt.Variable(0.5)
    assert same_bits(f(v).numpy(), np.sin(np.float64(0.5)) * 2.0)  # a Variable: the general path
    assert same_bits(f(dt.constant(np.array(0.5))).numpy(), np.sin(np.float64(0.5)) * 2.0)  # a 0-d array


# ------------------------------------------------------------------------------------------------
# fused kernels


@pytest.fixture(autouse=True)
def small_groups(monkeypatch):
    """Fuse groups from 32,768 elements: these tests hold the kernels' numbers, not the threshold
    (:data:`fuse.MIN_SIZE`, tested below), so they run on arrays of a few hundred KB."""
    monkeypatch.setattr(fuse, "MIN_SIZE", 1 << 15)


def test_groups_under_the_threshold_are_not_fused(monkeypatch):
    monkeypatch.undo()
    f = dt.function(lambda x: eager_value_and_grad(elem, x))
    f(dt.constant(np.linspace(-1, 1, fuse.MIN_SIZE - 1)))
    assert not fuse.groups(plan_of(f))
    g = dt.function(lambda x: eager_value_and_grad(elem, x))
    g(dt.constant(np.linspace(-1, 1, fuse.MIN_SIZE)))
    assert fuse.groups(plan_of(g))


def elem(x):
    return dt.sum(dt.exp(dt.sin(x)) * x**2)


def layer(W, x, b):
    return dt.sum(dt.tanh(W @ x + b) ** 2)


def traced_pair(f):
    """(fused, unfused) traced value-and-gradient functions of ``f``."""

    def vg(*xs):
        return eager_value_and_grad(f, *xs)

    return dt.function(vg), dt.function(vg)


def run_unfused(fn, *xs, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(fuse, "MIN_SIZE", 1 << 60)
        return fn(*xs)


def sum_tolerance(terms: np.ndarray) -> float:
    n = terms.size
    return 4 * math.log2(max(n, 2)) * np.finfo(terms.dtype).eps * float(np.sum(np.abs(terms.astype(np.float64))))


@pytest.mark.parametrize("threaded", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_elementwise_equals_unfused(monkeypatch, dtype, threaded):
    monkeypatch.setattr(fuse, "MIN_THREADED", 0 if threaded else 1 << 60)
    rng = np.random.default_rng(0)
    xn = rng.standard_normal(200_003).astype(dtype)
    xn[[5, 77, 1000]] = [np.nan, np.inf, -np.inf]
    fused, plain = traced_pair(elem)
    x = dt.constant(xn)
    with np.errstate(all="ignore"):
        v1, (g1,) = fused(x)
        v2, (g2,) = run_unfused(plain, x, monkeypatch=monkeypatch)
        assert same_bits(g1.numpy(), g2.numpy())  # elementwise: bit for bit
        assert v1.dtype == v2.dtype
        assert same_bits(v1.numpy(), v2.numpy())  # nan in, nan out
        xn[[5, 77, 1000]] = 0.0
        x = dt.constant(xn)
        v1, (g1,) = fused(x)
        v2, (g2,) = run_unfused(plain, x, monkeypatch=monkeypatch)
        terms = np.exp(np.sin(xn)) * xn**2
    assert same_bits(g1.numpy(), g2.numpy())
    assert abs(float(v1) - float(v2)) <= sum_tolerance(terms)
    assert same_bits(fused(x)[0].numpy(), v1.numpy())  # the same from call to call


def test_fused_kernels_write_kept_values_in_place_and_share_commuted_products():
    """The last op of a value the kernel hands out writes into the output's rows (no block copy), and
    ``x*y`` / ``y*x`` (the forward's e*q, the VJP's q*e) are computed once."""
    seen = []
    real = fuse._t._Source.build

    def build(self, params):
        seen.append("\n".join(self.body))
        return real(self, params)

    f = dt.function(lambda x: eager_value_and_grad(elem, x))
    with pytest.MonkeyPatch.context() as m:
        m.setattr(fuse._t._Source, "build", build)
        f(dt.constant(np.linspace(-1, 1, 100_000)))
    kernel = next(text for text in seen if "for a in range(lo, hi" in text)
    assert "out=o" in kernel and "] = v" not in kernel
    plan = plan_of(f)
    products = [n for n in plan.env_nodes if n.op == "multiply"]
    keys = {tuple(sorted(repr(r) for r in plan.ins[n.id])) for n in products}
    assert len(keys) == len(products)  # no product computed twice in either order


def test_fused_plan_has_one_group_with_the_sum():
    fused, _ = traced_pair(elem)
    fused(dt.constant(np.linspace(-1, 1, 100_000)))
    (group,) = fuse.groups(plan_of(fused))
    ops = [m.op for m in group]
    assert "sum" in ops and "sin" in ops and "cos" in ops


def test_fused_layer_with_broadcast_rows_equals_unfused(monkeypatch):
    rng = np.random.default_rng(1)
    W = dt.constant(rng.standard_normal((300, 400)) / 20)
    x = dt.constant(rng.standard_normal((400, 128)))
    b = dt.constant(rng.standard_normal((300, 1)))
    fused, plain = traced_pair(layer)
    v1, g1 = fused(W, x, b)
    v2, g2 = run_unfused(plain, W, x, b, monkeypatch=monkeypatch)
    assert fuse.groups(plan_of(fused))
    for a, c in zip(g1, g2):
        assert same_bits(a.numpy(), c.numpy())
    t = np.tanh(W.numpy() @ x.numpy() + b.numpy())
    assert abs(float(v1) - float(v2)) <= sum_tolerance(t**2)


def test_fused_int_arrays_are_exact(monkeypatch):
    f = dt.function(lambda x: dt.sum(x * x + 3 * x - 1))
    g = dt.function(lambda x: dt.sum(x * x + 3 * x - 1))
    xn = np.arange(-100_000, 100_000, dtype=np.int64)
    assert same_bits(f(dt.constant(xn)).numpy(), run_unfused(g, dt.constant(xn), monkeypatch=monkeypatch).numpy())
    assert fuse.groups(plan_of(f))


def test_fused_kernels_keep_errstate_in_their_threads(monkeypatch):
    monkeypatch.setattr(fuse, "MIN_THREADED", 0)  # threads even for this size
    monkeypatch.setattr(fuse, "THREADS", 2)
    f = dt.function(lambda x: dt.sum(dt.log(x) * x))
    xn = np.linspace(-1.0, 1.0, 200_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="ignore"):
            f(dt.constant(xn))  # no warning from any thread
    with np.errstate(all="raise"), pytest.raises(FloatingPointError):
        f(dt.constant(xn))


def test_a_helper_thread_that_never_runs_does_not_hold_the_call_up(monkeypatch):
    """The pieces go to whichever thread is free: with a helper that a busy machine never schedules, the
    caller computes every piece, and the numbers are the ones of one thread (the same blocks)."""

    class Starved:
        def submit(self, *args, **kwargs):
            return None  # accepted, never run

    f = dt.function(lambda x: eager_value_and_grad(elem, x))
    xn = np.random.default_rng(3).standard_normal(300_000)
    monkeypatch.setattr(fuse, "MIN_THREADED", 1 << 60)
    v1, (g1,) = f(dt.constant(xn))  # compiled one-threaded
    g = dt.function(lambda x: eager_value_and_grad(elem, x))
    monkeypatch.setattr(fuse, "MIN_THREADED", 0)
    monkeypatch.setattr(fuse, "THREADS", 2)
    monkeypatch.setattr(fuse, "_executor", lambda: Starved())
    v2, (g2,) = g(dt.constant(xn))
    assert same_bits(v1.numpy(), v2.numpy()) and same_bits(g1.numpy(), g2.numpy())


def test_fused_peak_memory_is_not_above_unfused(monkeypatch):
    xn = np.random.default_rng(2).standard_normal(1_000_000)
    fused, plain = traced_pair(elem)
    x = dt.constant(xn)
    fused(x)
    run_unfused(plain, x, monkeypatch=monkeypatch)

    def peak(fn):
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        p = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        del out
        return p

    p_fused = peak(lambda: fused(x))
    p_plain = peak(lambda: run_unfused(plain, x, monkeypatch=monkeypatch))
    assert p_fused <= p_plain


def test_recorded_replays_are_not_fused_and_stay_exact():
    """A Tape recording the call needs every value: the unfused code runs; gradients are the eager ones."""
    f = dt.function(lambda x: dt.sum(dt.exp(dt.sin(x)) * x**2))
    x = dt.constant(np.linspace(-2, 2, 100_000))
    v1, (g1,) = eager_value_and_grad(f, x)
    v2, (g2,) = eager_value_and_grad(elem, x)
    assert same_bits(g1.numpy(), g2.numpy()) and same_bits(v1.numpy(), v2.numpy())
