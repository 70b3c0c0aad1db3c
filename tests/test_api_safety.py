"""The Python API never gives a silently wrong answer (issues 12 and 18).

numpy functions on tensors are recorded as the table's op of the same name or refused when they
would cut a tape; arguments are checked; misuse raises DifftapeError, never numpy's or Python's
own exceptions; ``dir(difftape)`` is the API; Variables are named as TensorFlow names them.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from gradcheck import assert_close, numeric_grad

import difftape as dt
from difftape.ops import OPS

# ------------------------------------------------------------------------------------------------
# 1. numpy functions on tensors (Tensor.__array_function__)

V = np.array([0.7, 1.3, 2.2, -0.4])
W = np.array([0.3, -1.1, 0.8, 1.7])
B2 = np.array([0.5, -0.25])


def _m(v):  # a well-conditioned 2x2 matrix from the 4-vector v
    return np.reshape(v, (2, 2)) + 3.0 * np.eye(2)


# name -> a scalar function of a 4-vector written with that numpy function; runs on arrays (numpy,
# for the finite differences) and on tensors (recorded by the op of the same name)
NUMPY_CASES = {
    "dot": lambda v: np.dot(v, v),
    "norm": lambda v: np.linalg.norm(v),
    "where": lambda v: np.sum(np.where(v > 1, v, 0 * v) * W),
    "concatenate": lambda v: np.sum(np.concatenate([v, v * v]) * np.concatenate([W, W])),
    "stack": lambda v: np.sum(np.stack([v, v * v], axis=1) * W[:, None]),
    "clip": lambda v: np.sum(np.clip(v, 0.0, 1.5) ** 2),
    "inv": lambda v: np.sum(np.linalg.inv(_m(v)) * np.reshape(W, (2, 2))),
    "det": lambda v: np.linalg.det(_m(v)),
    "solve": lambda v: np.dot(np.linalg.solve(_m(v), B2), B2),
    "sum": lambda v: np.sum(v * W, axis=0),
    "mean": lambda v: np.mean(v * v),
    "prod": lambda v: np.prod(v),
    "max": lambda v: np.max(v * W),
    "min": lambda v: np.min(v * W),
    "var": lambda v: np.var(v, ddof=1),
    "std": lambda v: np.std(v),
    "round": lambda v: np.sum(np.round(v, 1) * v),
    "outer": lambda v: np.sum(np.outer(v, W) ** 2),
    "trace": lambda v: np.trace(_m(v) ** 2),
    "diag": lambda v: np.sum(np.diag(v) ** 2) + np.sum(np.diag(_m(v)) * B2),
    "reshape": lambda v: np.sum(np.reshape(v, (2, 2)) * np.reshape(W, (2, 2)) ** 2),
    "ravel": lambda v: np.dot(np.ravel(_m(v)), W),
    "transpose": lambda v: np.sum(np.transpose(_m(v)) * np.reshape(W, (2, 2))),
    "expand_dims": lambda v: np.sum(np.expand_dims(v, 0) * W),
    "squeeze": lambda v: np.sum(np.squeeze(np.reshape(v, (1, 4))) * W),
    "broadcast_to": lambda v: np.sum(np.broadcast_to(v, (3, 4)) * W),
    "matmul": lambda v: np.sum(np.linalg.matmul(_m(v), _m(v))),  # np.matmul is a ufunc; this one is not
    "zeros_like": lambda v: np.sum(np.zeros_like(v) + v * v),
    "ones_like": lambda v: np.sum(np.ones_like(v) * v),
    "sinc": lambda v: np.sum(np.sinc(v) * W),
    "cumsum": lambda v: np.sum(np.cumsum(v) * W),
    "cumprod": lambda v: np.sum(np.cumprod(v, axis=0) * W),
    "trapezoid": lambda v: np.trapezoid(v * v, v),  # the optional x given
    "einsum": lambda v: np.einsum("ij,jk->", _m(v), _m(v)),  # numpy's einsum(*operands)
    "sort": lambda v: np.sum(np.sort(v) * W),
    "argsort": lambda v: np.sum(np.take(v, np.argsort(v * W)) * W),
    "take": lambda v: np.sum(np.take(v, np.array([2, 0, 2])) * B2[0]),
    "take_along_axis": lambda v: np.sum(np.take_along_axis(_m(v), np.array([[1], [0]]), axis=1)),
}


def _numpy_functions_named_like_ops() -> set[str]:
    """What the brief asks for, derived independently of the implementation: every op whose name is
    a numpy function (not a ufunc) of ``numpy`` or ``numpy.linalg`` and that takes array inputs."""
    names = set()
    for name, op in OPS.items():
        if not op.args or (op.kind == "constructor" and op.vjps is not None):  # zeros(shape), full(shape, v)
            continue
        for module in (np, np.linalg):
            fn = getattr(module, name, None)
            if callable(fn) and not isinstance(fn, np.ufunc):
                names.add(name)
    return names


def test_every_numpy_function_named_like_an_op_has_a_case_here():
    assert _numpy_functions_named_like_ops() == set(NUMPY_CASES)


@pytest.mark.parametrize("name", sorted(NUMPY_CASES))
def test_numpy_functions_on_watched_tensors_are_recorded(name):
    f = NUMPY_CASES[name]
    x = dt.constant(V)
    with dt.Tape() as tape:
        tape.watch(x)
        y = f(x)
    assert isinstance(y, dt.Tensor), f"np {name} detached: {type(y)}"
    assert_close(y.numpy(), f(V), what=f"{name} value")
    g = tape.gradient(y, x)
    assert g is not None, name
    assert_close(g.numpy(), numeric_grad(lambda a: float(f(a)), [V], 0), what=f"{name} gradient")


def test_numpy_functions_on_variables_are_recorded():
    v = dt.Variable(V)
    with dt.Tape() as tape:
        y = np.dot(v, v) + np.linalg.norm(v)
    assert_close(tape.gradient(y, v).numpy(), 2 * V + V / np.linalg.norm(V))


def test_numpy_functions_of_the_np_linalg_namespace_that_shadow_np_ones():
    x = dt.constant([1.0, 2.0])
    y = dt.constant([3.0, -1.0, 0.5])
    with dt.Tape() as tape:
        tape.watch([x, y])
        z = np.sum(np.linalg.outer(x, y) ** 2) + np.linalg.trace(np.diag(x))
    gx, gy = tape.gradient(z, [x, y])
    assert_close(gx.numpy(), 2 * x.numpy() * np.sum(y.numpy() ** 2) + 1)
    assert_close(gy.numpy(), 2 * y.numpy() * np.sum(x.numpy() ** 2))


def test_numpy_functions_under_difftape_function_are_traced_not_frozen():
    @dt.function
    def f(x):
        return np.dot(x, x) + np.linalg.norm(x)

    assert_close(f(dt.constant([3.0, 4.0])).numpy(), 30.0)
    assert_close(f(dt.constant([1.0, 0.0])).numpy(), 2.0)  # replayed on the new input
    assert f.trace_count == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda x: np.nancumsum(x),
        lambda x: np.median(x),
        lambda x: np.partition(x, 1),
        lambda x: np.tensordot(x, x, 1),
        lambda x: np.linalg.eigh(np.outer(np.asarray(x), np.asarray(x)) + np.diag(x)),  # one tracked input
        lambda x: np.exp2(x),  # a ufunc without an op
        lambda x: np.add.reduce(x),  # a ufunc method
        lambda x: np.sin(x, out=np.zeros(4)),  # a ufunc keyword
        lambda x: np.amax(x),
        lambda x: np.copy(x),
    ],
)
def test_other_numpy_functions_on_a_watched_tensor_raise(call):
    x = dt.constant(V)
    with dt.Tape() as tape:
        tape.watch(x)
        with pytest.raises(dt.DifftapeError) as info:
            call(x)
    assert info.value.kind == "unsupported"
    assert "numpy." in info.value.message and "np.asarray" in info.value.message


def test_the_refusal_names_the_function_and_an_alternative():
    v = dt.Variable(V, name="w")
    with dt.Tape():
        with pytest.raises(dt.DifftapeError, match=r"numpy\.nansum\(\).*did you mean 'sum'.*'w:0'"):
            np.nansum(v)
        with pytest.raises(dt.DifftapeError, match=r"numpy\.amax\(\).*did you mean 'max'"):
            np.amax(v)


def test_unsupported_numpy_arguments_of_a_recorded_function_raise_naming_them():
    x = dt.constant(V)
    for call, arg in [(lambda: np.sum(x, dtype=np.float32), "dtype="), (lambda: np.mean(x, out=np.zeros(())), "out="),
                      (lambda: np.reshape(x, (2, 2), order="F"), "order="),
                      (lambda: np.linalg.trace(np.diag(x), offset=1), "offset=")]:
        with pytest.raises(dt.DifftapeError, match=arg):
            call()


def test_untracked_tensors_work_with_any_numpy_function_as_plain_values():
    c = dt.constant(V)
    assert_close(np.nancumsum(c), np.nancumsum(V))
    assert isinstance(np.nancumsum(c), np.ndarray)
    v = dt.Variable(V)  # a trainable Variable with no tape recording: nothing to cut
    assert_close(np.median(v), np.median(V))
    x = dt.constant(V)
    with dt.Tape() as tape:
        tape.watch(x)
        assert_close(np.nancumsum(c), np.nancumsum(V))  # c is a constant no tape tracks
        with tape.stop_recording():
            assert_close(np.nancumsum(x), np.nancumsum(V))  # not recording: not cut either
    y = dt.Variable(V)
    with dt.Tape(watch_accessed_variables=False):
        assert_close(np.nancumsum(y), np.nancumsum(V))  # this tape does not watch Variables on its own


def test_results_that_carry_no_gradient_are_allowed_on_tracked_tensors():
    x = dt.constant(V)
    with dt.Tape() as tape:
        tape.watch(x)
        assert np.shape(x) == (4,) and np.ndim(x) == 1 and np.size(x) == 4
        assert np.argmax(x) == 2 and np.asarray(np.argsort(x)).tolist() == [3, 0, 1, 2]  # argsort: an op now
        assert np.allclose(x, V) and np.array_equal(x, V) and np.isclose(x, V).all()
        assert np.where(x > 1)[0].tolist() == [1, 2]  # the one-argument where: indices
        np.testing.assert_allclose(x, V)


def test_asarray_detaches_on_purpose():
    x = dt.constant(V)
    with dt.Tape() as tape:
        tape.watch(x)
        y = np.asarray(x).sum()  # the value: no tape follows it (documented)
        z = np.array(x) * 2
    assert isinstance(y, np.floating) and isinstance(z, np.ndarray)
    with dt.Tape() as tape:
        tape.watch(x)
        w = x * dt.constant(np.asarray(x).sum())  # a constant made from the value
    assert_close(tape.gradient(w, x).numpy(), np.full(4, V.sum()))


def test_unwatched_constants_still_go_through_recorded_functions():
    c = dt.constant(V)
    d = np.dot(c, c)
    assert isinstance(d, dt.Tensor) and d.numpy() == pytest.approx(V @ V)
    x = dt.constant(2.0)
    with dt.Tape() as tape:
        tape.watch(x)
        y = x * np.dot(c, c)
    assert tape.gradient(y, x).numpy() == pytest.approx(V @ V)


# ------------------------------------------------------------------------------------------------
# 2. arguments are checked


@pytest.mark.parametrize("method", ["gradient", "jacobian"])
def test_unconnected_must_be_none_or_zero(method):
    x = dt.constant(1.0)
    with dt.Tape() as tape:
        tape.watch(x)
        y = x * x
    with pytest.raises(dt.DifftapeError, match="unconnected") as info:
        getattr(tape, method)(y, x, unconnected="bogus")
    assert info.value.kind == "value"
    assert getattr(tape, method)(y, x).numpy() == 2.0  # the refused call did not spend the tape


def test_output_gradients_of_the_wrong_shape_raise():
    x = dt.constant([1.0, 2.0, 3.0])
    with dt.Tape(persistent=True) as tape:
        tape.watch(x)
        y = x * x
        z = dt.sum(x)
    with pytest.raises(dt.DifftapeError, match=r"shape \(2,\).*\(3,\)") as info:
        tape.gradient(y, x, output_gradients=dt.constant([1.0, 1.0]))
    assert info.value.kind == "shape"
    with pytest.raises(dt.DifftapeError, match="shape"):
        tape.gradient(y, x, output_gradients=2.0)  # a scalar is not one weight per element
    with pytest.raises(dt.DifftapeError, match="output_gradients 1"):
        tape.gradient([y, z], x, output_gradients=[None, np.ones(3)])
    with pytest.raises(dt.DifftapeError):
        tape.gradient(y, x, output_gradients="abc")
    assert_close(tape.gradient(y, x, output_gradients=np.array([1.0, 0.0, 2.0])).numpy(), [2.0, 0.0, 12.0])


def test_assign_refuses_a_dtype_change_as_tensorflow_does():
    i = dt.Variable(3)
    with pytest.raises(dt.DifftapeError, match="int64") as info:
        i.assign(2.5)
    assert info.value.kind == "type" and i.numpy() == 3
    with pytest.raises(dt.DifftapeError):
        i.assign_add(0.5)
    with pytest.raises(dt.DifftapeError):
        i.assign(1 + 2j)
    assert i.numpy() == 3
    i.assign(np.int32(5))  # an int of any width that fits
    assert i.numpy() == 5 and i.dtype == np.int64
    small = dt.Variable(np.int32(1))
    with pytest.raises(dt.DifftapeError, match="fit"):
        small.assign(2**40)
    f32 = dt.Variable(np.float32(1.0))
    f32.assign(0.1)  # a float of another width: rounded, as TensorFlow does
    assert f32.dtype == np.float32 and f32.numpy() == np.float32(0.1)
    with pytest.raises(dt.DifftapeError, match="fit"):
        f32.assign(1e300)  # would be inf
    f = dt.Variable(1.0)
    f.assign(2)  # an int into a float variable: exact
    assert f.numpy() == 2.0 and f.dtype == np.float64
    with pytest.raises(dt.DifftapeError):
        dt.constant(2.5, dtype="int64")  # the same rule for an explicit dtype


def test_jacobian_and_hessian_take_a_list_of_numbers_as_one_input():
    j = dt.jacobian(lambda v: v**2, [1.0, 2.0])
    assert_close(j.numpy(), np.diag([2.0, 4.0]))
    h = dt.hessian(lambda v: dt.sum(v**3), [1.0, 2.0])
    assert_close(h.numpy(), np.diag([6.0, 12.0]))
    j2 = dt.jacobian(lambda v: v * 3.0, [[1.0, 2.0], [3.0, 4.0]])
    assert j2.shape == (2, 2, 2, 2)
    # a list of tensors or arrays still gives one argument each
    ja, jb = dt.jacobian(lambda a, b: a * b, [dt.constant(2.0), np.array(3.0)])
    assert ja.numpy() == 3.0 and jb.numpy() == 2.0


def test_variable_dtype_argument_is_checked():
    with pytest.raises(dt.DifftapeError):
        dt.Variable(2.5, dtype="int64")
    assert dt.Variable(2, dtype="float32").dtype == np.float32


# ------------------------------------------------------------------------------------------------
# 3. dir(difftape) and Variable names


def test_dir_shows_only_the_public_api():
    names = set(dir(dt))
    assert not names & {"Any", "TYPE_CHECKING", "annotations", "import_module"}
    assert {"Tape", "Variable", "constant", "function", "jacobian", "hessian", "random", "sin"} <= names
    assert all(not n.startswith("_") for n in names - {"__version__"})
    for hidden in ("Any", "TYPE_CHECKING", "annotations", "import_module"):
        with pytest.raises(AttributeError):
            getattr(dt, hidden)


def test_variable_names_follow_tensorflow():
    a, b = dt.Variable(1.0), dt.Variable(2.0)
    for v in (a, b):
        assert v.name.startswith("Variable") and v.name.endswith(":0")
    assert a.name != b.name  # one name per variable
    assert dt.Variable(1.0, name="w").name == "w:0"
    assert "w:0" in repr(dt.Variable(1.0, name="w"))
    with pytest.raises(dt.DifftapeError) as info:
        dt.Variable(1.0, name=3)
    assert info.value.kind == "type"
    with pytest.raises(dt.DifftapeError):
        dt.Variable(1.0, name="w:0")


def test_the_first_default_name_is_variable_0():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import difftape as dt; print(dt.Variable(1.0).name, "
                          "dt.Variable(2.0).name)"], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["Variable:0", "Variable_1:0"]


# ------------------------------------------------------------------------------------------------
# 4. misuse raises DifftapeError


@pytest.mark.parametrize(
    "call,kind",
    [
        (lambda: dt.Variable([1, [2]]), "value"),
        (lambda: dt.constant([1, [2]]), "value"),
        (lambda: dt.constant(1, dtype="bogus"), "type"),
        (lambda: dt.constant("abc"), "type"),
        (lambda: dt.constant(None), "type"),
        (lambda: dt.constant(2**70), "value"),
        (lambda: dt.constant(1, dtype=str), "type"),
        (lambda: dt.random.set_seed(-1), "value"),
        (lambda: dt.random.set_seed(1.5), "type"),
        (lambda: dt.random.set_seed("a"), "type"),
        (lambda: dt.random.randn(2.5), "type"),
        (lambda: dt.random.randn(-1), "value"),
        (lambda: dt.random.normal((2,), dtype="int64"), "type"),
        (lambda: dt.random.uniform((2,), dtype="bogus"), "type"),
        (lambda: dt.random.uniform((2,), minval="a"), "type"),
        (lambda: dt.reshape(dt.ones((2, 2)), (3,)), "shape"),
        (lambda: dt.sum(dt.ones((2, 2)), axis=5), "shape"),
        (lambda: dt.concatenate([dt.ones((2, 2)), dt.ones(3)]), "shape"),
        (lambda: dt.sum("abc"), "type"),
        (lambda: dt.ones((2,))[5], "shape"),
        (lambda: dt.eye("a"), "type"),
        (lambda: dt.zeros((-1,)), "value"),
        (lambda: dt.clip(dt.ones(2), "a", 2.0), "type"),
    ],
)
def test_misuse_raises_difftape_errors(call, kind):
    with pytest.raises(dt.DifftapeError) as info:
        call()
    assert info.value.kind == kind, info.value.message


def test_set_seed_still_reproduces():
    dt.random.set_seed(np.int64(11))
    a = dt.random.randn(3).numpy()
    dt.random.set_seed(11)
    np.testing.assert_array_equal(dt.random.randn(3).numpy(), a)
    assert dt.random.randn(dt.constant(2)).shape == (2,)  # an int tensor is an int


def test_matmul_shape_mismatch_names_both_shapes():
    a, b = dt.ones((2, 3)), dt.ones((2, 3))
    v = dt.Variable(np.ones(2))
    for call in (lambda: a @ b, lambda: dt.matmul(a, b), lambda: np.matmul(a, b), lambda: v @ [1.0, 2.0, 3.0]):
        with pytest.raises(dt.DifftapeError, match=
                           r"matmul: inner dimensions differ: \((2, 3|2,)\) @ \((2, 3|3,)\)") as e:
            call()
        assert e.value.kind == "shape"


@pytest.mark.parametrize(
    "call,kind,match",
    [
        (lambda: dt.ones(2) + dt.ones(3), "shape", r"add: .*\(2,\).*\(3,\)"),
        (lambda: dt.ones((2, 2)) * [1.0, 2.0, 3.0], "shape", "multiply"),
        (lambda: dt.sin("a"), "type", "sin"),
        (lambda: dt.exp([1, [2]]), "value", "inhomogeneous"),
        (lambda: dt.constant(True) - dt.constant(False), "type", "boolean"),
        (lambda: dt.dot(dt.ones(2), dt.ones(3)), "shape", "dot"),
        (lambda: dt.solve(dt.ones((2, 2)), dt.ones(3)), "shape", "solve"),
        (lambda: dt.inv(dt.ones((2, 3))), "shape", "square"),
        (lambda: dt.inv(dt.zeros((2, 2))), "value", "inv failed: Singular"),
    ],
)
def test_eager_errors_are_worded_by_the_op_table(call, kind, match):
    with pytest.raises(dt.DifftapeError, match=match) as info:
        call()
    assert info.value.kind == kind


def test_a_singular_matrix_is_still_numpys_linalgerror_too():
    with pytest.raises(np.linalg.LinAlgError):
        dt.inv(dt.zeros((2, 2)))


# a sweep of the public API with junk arguments: only DifftapeError (or an answer), never another exception
_JUNK = [None, "a", b"x", [1, [2]], {"a": 1}, object(), 1 + 2j, -1, 2.5, True, (), [], np.ones((2, 3)),
         dt.constant([1.0, 2.0]), dt.constant([[1.0, 2.0]]), dt.constant(True), float("nan"), 2**70]


def _sweep_targets():
    import difftape.random as random

    fns = {name: getattr(dt, name) for name in sorted(OPS)}
    fns.update({"constant": dt.constant, "Variable": dt.Variable, "random.set_seed": random.set_seed,
                "random.randn": random.randn, "random.rand": random.rand, "random.normal": random.normal,
                "random.uniform": random.uniform})
    return fns


def test_public_functions_given_junk_raise_only_difftape_errors():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    fns = _sweep_targets()

    @settings(max_examples=600, deadline=None, derandomize=True)
    @given(st.sampled_from(sorted(fns)), st.lists(st.sampled_from(range(len(_JUNK))), min_size=1, max_size=3))
    def check(name, picks):
        args = [_JUNK[i] for i in picks]
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                fns[name](*args)
            except dt.DifftapeError:
                pass
            except TypeError as exc:  # a Python function called with too many arguments: Python's own error
                if "positional argument" not in str(exc):
                    raise

    check()


def test_tensor_methods_and_variable_methods_given_junk_raise_only_difftape_errors():
    t = dt.constant([[1.0, 2.0], [3.0, 4.0]])
    v = dt.Variable([1.0, 2.0])
    calls = [lambda j: t[j], lambda j: t.reshape(j), lambda j: t.sum(axis=j), lambda j: t.transpose(j),
             lambda j: t + j, lambda j: t @ j, lambda j: j @ t, lambda j: t ** j, lambda j: t < j,
             lambda j: v.assign(j), lambda j: v.assign_add(j), lambda j: v.assign_sub(j),
             lambda j: dt.Tape().watch(j), lambda j: dt.jacobian(dt.sin, j), lambda j: dt.hessian(dt.sum, j)]
    for call in calls:
        for junk in _JUNK:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    call(junk)
                except dt.DifftapeError:
                    pass
