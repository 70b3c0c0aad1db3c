"""What the engine does to be fast, checked for being right: lazy imports, scalar values, the tape's
memory (entries dropped as the backward pass goes, outputs freed before their VJPs allocate) and
in-place accumulation of gradient buffers. No timing here: ``benchmarks/`` measures speed.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import tracemalloc
import weakref

import numpy as np
import pytest

import difftape as dt
from difftape.ops import OPS
from difftape.transforms.reverse import reads_argument as _reads_argument

# ----------------------------------------------------------------------------------------
# the package imports lazily


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_importing_the_package_imports_no_engine():
    out = _run(
        "import sys, difftape, difftape.cli, difftape.errors; "
        "print(sorted(m for m in ('numpy', 'difftape.ops', 'difftape.engine.tape', 'numpy.random') "
        "if m in sys.modules))"
    )
    assert out == "[]"


def test_api_names_resolve_on_first_use():
    out = _run(
        "import difftape as dt; from difftape import Variable, GradientTape; "
        "v = Variable(2.0); t = dt.Tape(); print(dt.sin.__name__, GradientTape is dt.Tape, dt.random.__name__, "
        "type(dt.OPS).__name__, dt.DifftapeError.__name__, dt.ops.normalize_axis(-1, 2))"
    )
    assert out == "sin True difftape.random dict DifftapeError (1,)"


def test_all_and_dir_list_the_api():
    names = set(dt.__all__)
    assert {"Tape", "GradientTape", "Variable", "constant", "function", "hessian", "jacobian", "random"} <= names
    assert set(OPS) <= names
    assert names <= set(dir(dt))
    with pytest.raises(AttributeError):
        dt.no_such_name  # noqa: B018
    ns: dict = {}
    exec("from difftape import *", ns)  # noqa: S102
    assert ns["sin"] is dt.sin and ns["Tape"] is dt.Tape


def test_random_draws_no_generator_until_used():
    out = _run("import sys, difftape.random as r; a = 'numpy.random' in sys.modules; r.set_seed(3); "
               "b = 'numpy.random' in sys.modules; x = r.normal((2,)); print(a, b, 'numpy.random' in sys.modules)")
    assert out == "False False True"
    dt.random.set_seed(5)
    first = dt.random.normal((3,)).numpy()
    dt.random.set_seed(5)
    np.testing.assert_array_equal(dt.random.normal((3,)).numpy(), first)


# ----------------------------------------------------------------------------------------
# 0-d values are numpy scalars; arithmetic forwards are numpy's operators


def test_zero_d_values_are_numpy_scalars():
    for t in (dt.constant(2.0), dt.Tensor(np.array(2.0)), dt.Variable(2.0), dt.constant(3, dtype="float32")):
        assert isinstance(t._value, np.generic)
        assert isinstance(t.numpy(), np.generic) and t.shape == () and t.ndim == 0
        assert isinstance(t.value, np.ndarray) and t.value.shape == ()
    v = dt.Variable(1.0, dtype="float32")
    v.assign(4)
    v.assign_add(1.0)
    assert isinstance(v._value, np.float32) and v.numpy() == 5.0
    y = dt.sin(dt.constant(0.5)) * 2.0 + 1.0
    assert isinstance(y._value, np.float64)


@pytest.mark.parametrize("name", ["add", "subtract", "multiply", "divide", "negative", "positive"])
def test_arithmetic_forwards_equal_the_ufuncs(name):
    ufunc = {"divide": np.true_divide}.get(name, getattr(np, name))
    op = OPS[name]
    samples = [np.float64(1.5), np.float32(2.5), np.array(3.0), np.array([1.0, -2.0], dtype=np.float32),
               np.int64(7), 2, 2.5, True, np.array([1, 2])]
    with np.errstate(all="ignore"):
        for a in samples:
            for b in samples[: (1 if len(op.args) == 1 else None)] if len(op.args) == 1 else samples:
                args = (a,) if len(op.args) == 1 else (a, b)
                try:
                    want = ufunc(*args)
                except TypeError:
                    with pytest.raises(TypeError):
                        op.forward(*args)
                    continue
                got = op.forward(*args)
                assert type(got) is type(want) and np.asarray(got).dtype == np.asarray(want).dtype, (name, args)
                np.testing.assert_array_equal(got, want)
    assert isinstance(OPS["multiply"].forward(2, 3), np.int64)  # two Python numbers: numpy's rules
    with np.errstate(divide="ignore"):
        assert OPS["divide"].forward(1.0, 0.0) == np.inf


# ----------------------------------------------------------------------------------------
# the tape's memory


def test_a_spent_tape_keeps_no_intermediate_alive():
    x = dt.constant(np.linspace(0.1, 1.0, 10))
    with dt.Tape() as tape:
        tape.watch(x)
        mid = dt.sin(x) * 2.0
        ref = weakref.ref(mid)
        y = dt.sum(dt.exp(mid))
        del mid
    assert ref() is not None  # the tape keeps it until the gradient is taken
    tape.gradient(y, x)
    gc.collect()
    assert ref() is None and tape._entries == []
    with dt.Tape(persistent=True) as tape:
        tape.watch(x)
        mid = dt.sin(x) * 2.0
        ref = weakref.ref(mid)
        y = dt.sum(dt.exp(mid))
        del mid
    tape.gradient(y, x)
    assert ref() is not None  # a persistent tape answers again: it keeps its entries
    del tape
    gc.collect()
    assert ref() is None


def _peak(fn) -> int:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    result = fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    del result
    return peak


def test_backward_frees_intermediates_as_it_goes():
    # sum(exp(sin(x)) * x**2) on 1e5 elements: hand-written numpy peaks at 4 arrays; the tape at 5
    # (its forward values live until their entry is processed, and each output dies before its VJP runs).
    xv = np.random.default_rng(0).standard_normal(100_000)
    x = dt.constant(xv)
    nbytes = xv.nbytes

    def taped():
        with dt.Tape() as tape:
            tape.watch(x)
            y = dt.sum(dt.exp(dt.sin(x)) * x**2)
        return y, tape.gradient(y, x)

    def hand():
        e = np.exp(np.sin(xv))
        q = xv**2
        return np.sum(e * q), q * e * np.cos(xv) + e * (2.0 * xv)

    assert _peak(hand) <= 4.2 * nbytes
    assert _peak(taped) <= 5.2 * nbytes
    np.testing.assert_allclose(taped()[1].numpy(), hand()[1], rtol=1e-13)


# ----------------------------------------------------------------------------------------
# accumulating gradient buffers in place


N = 5000  # above the in-place threshold


def test_in_place_accumulation_is_exact_and_aliases_nothing():
    xv = np.linspace(-1.0, 1.0, N)
    x = dt.constant(xv)
    seed = np.full(N, 0.5)
    seed_copy = seed.copy()
    with dt.Tape(persistent=True) as tape:
        tape.watch(x)
        a = x + x  # both inputs are x: the VJPs return the same gradient object twice
        b = a * 3.0 + x * x + dt.sin(x) * x
        c = b + a  # a gets two contributions
    g1 = tape.gradient(c, x, output_gradients=seed).numpy()
    g2 = tape.gradient(c, x, output_gradients=seed).numpy()
    expected = 0.5 * (2 * 3.0 + 2 * xv + np.cos(xv) * xv + np.sin(xv) + 2)
    np.testing.assert_allclose(g1, expected, rtol=1e-14)
    np.testing.assert_array_equal(g1, g2)  # kept buffers were not written into by the first call
    np.testing.assert_array_equal(seed, seed_copy)  # nor was the caller's output gradient
    ga, gx = tape.gradient(c, [a, x])
    np.testing.assert_allclose(ga.numpy(), np.full(N, 4.0))  # d c / d a = 3 + 1
    np.testing.assert_allclose(gx.numpy(), expected / 0.5, rtol=1e-14)


def test_in_place_accumulation_keeps_the_source_dtype():
    x = dt.constant(np.linspace(0.0, 1.0, N), dtype="float32")
    with dt.Tape() as tape:
        tape.watch(x)
        y = dt.sum(x * x + x * dt.constant(np.full(N, 2.0)) + x)  # float64 contributions to a float32 source
    g = tape.gradient(y, x)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g.numpy(), 2 * x.numpy() + 3.0, rtol=1e-6)


def test_which_vjps_read_the_output():
    def uses(name, i):
        return _reads_argument(OPS[name].vjps[i], 2)

    assert not uses("multiply", 0) and not uses("sin", 0) and not uses("sum", 0)
    assert uses("exp", 0) and uses("tanh", 0) and uses("divide", 1) and uses("softmax", 0)
    assert _reads_argument(len, 2)  # not a Python function: assume it does
