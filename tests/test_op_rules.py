"""The static shape and dtype rules of every op agree with what its forward computes.

The compiler checks programs with these rules without running them, so a rule that
disagrees with numpy is a wrong answer (or a wrong error) in the command line.
Python ``int``/``float`` stand for weakly typed literals.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes
from test_new_ops import OP_RULE_CALLS
from test_ops_grad import FAST, axes

from difftape.ops import OPS

DTYPES = [np.float64, np.float32, np.int64, np.int32, np.bool_, float, int]


def value(dtype, shape, positive=True):
    if dtype is float:
        return 0.75
    if dtype is int:
        return 2
    return np.full(shape, 0.75 if positive else -0.75).astype(dtype) if dtype is not np.bool_ else np.ones(shape, bool)


def rule_dtype(a):
    return type(a) if type(a) in (float, int) else np.asarray(a).dtype


# one representative call per op: (tensor input shapes, params); Python-number dtypes only where shapes are ()
CALLS = {
    "elementwise": [((2, 3), (3,), (1, 3)), ((), (), ())],
    "compare": [((2, 3), (3,)), ((), ())],
    "reduction": [((2, 3),)],
    "normalize": [((2, 3),)],
    "reshape": [((2, 3),), {"shape": (3, -1)}],
    "ravel": [((2, 3),)],
    "transpose": [((2, 3, 1),), {"axes": (2, 0, 1)}],
    "concatenate": [((2, 3), (1, 3)), {"axis": 0}],
    "stack": [((2, 3), (2, 3)), {"axis": -1}],
    "expand_dims": [((2, 3),), {"axis": (0, 3)}],
    "squeeze": [((2, 1, 3),), {}],
    "broadcast_to": [((3,),), {"shape": (2, 3)}],
    "getitem": [((4, 3),), {"index": (slice(None, None, -2), None, 1)}],
    "scatter": [((2,),), {"index": (np.array([0, 2]), 1), "shape": (3, 2)}],
    "stop_gradient": [((2, 3),)],
    "matmul": [((2, 3), (3, 4))],
    "dot": [((2, 3), (3,))],
    "outer": [((2,), (3, 1))],
    "trace": [((2, 3),)],
    "inv": [((2, 2),)],
    "det": [((3, 2, 2),)],
    "cofactor": [((3, 2, 2),)],
    "solve": [((2, 2), (2, 3))],
    "diag": [((3,),), {"k": -1}],
    "zeros_like": [((2, 3),)],
    "ones_like": [((2, 3),)],
    "full": [((3,),), {"shape": (2, 3)}],
}


CALLS.update(OP_RULE_CALLS)  # the ops of issue 10 (tests/test_new_ops.py)


def call_for(name):
    op = OPS[name]
    spec = CALLS.get(name) or CALLS[op.kind]
    if name == "full":
        return spec
    if op.kind in ("elementwise", "compare"):
        n = len(op.args)
        return [[s[:n] for s in spec], {}]
    return [spec[0], spec[1] if len(spec) > 1 else {}]


TENSOR_OPS = sorted(n for n, o in OPS.items() if o.args)


@pytest.mark.parametrize("name", TENSOR_OPS)
def test_static_rules_match_forward(name):
    op = OPS[name]
    spec, params = call_for(name)
    shape_sets = spec if op.kind in ("elementwise", "compare") else [spec]
    checked = 0
    for shapes in shape_sets:
        weak_ok = all(s == () for s in shapes)
        for dtypes in itertools.product(DTYPES, repeat=len(shapes)):
            if not weak_ok and any(d in (float, int) for d in dtypes):
                continue
            if op.kind == "linalg" and any(d in (float, int) for d in dtypes):
                continue
            args = [value(d, s) for d, s in zip(dtypes, shapes)]
            if name in ("inv", "det", "cofactor", "solve"):
                args[0] = (np.eye(shapes[0][-1]) * 2 + np.ones(shapes[0]) * 0.25).astype(dtypes[0])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    out = np.asarray(op.forward(*args, **params))
                except (TypeError, ValueError, np.linalg.LinAlgError):
                    continue  # numpy refuses these dtypes (e.g. bool - bool): nothing to agree with
                static_dtype = op.dtype(*[rule_dtype(a) for a in args], **params)
                static_shape = op.shape(*[np.shape(a) for a in args], **params)
            assert tuple(static_shape) == out.shape, (name, dtypes, shapes)
            assert np.dtype(static_dtype) == out.dtype, (name, dtypes, shapes)
            checked += 1
    assert checked > 0


def test_constructors():
    for name, params in [("zeros", {"shape": (2, 3)}), ("ones", {"shape": 4, "dtype": "float32"}),
                         ("eye", {"N": 3, "M": 2, "k": 1}), ("arange", {"start": 1, "stop": 7, "step": 2}),
                         ("arange", {"start": 0.5, "stop": 2.0, "step": 0.5}), ("arange", {"start": 5}),
                         ("linspace", {"start": 0.0, "stop": 1.0, "num": 7})]:
        op = OPS[name]
        out = np.asarray(op.forward(**params))
        assert tuple(op.shape(**params)) == out.shape, name
        assert np.dtype(op.dtype(**params)) == out.dtype, name


@FAST
@given(data=st.data(), shape=array_shapes(min_dims=0, max_dims=4, max_side=3), keepdims=st.booleans())
def test_reduction_shapes(data, shape, keepdims):
    axis = data.draw(axes(len(shape)), label="axis")
    x = np.ones(shape)
    for name in ("sum", "mean", "prod", "max", "min", "var", "std", "logsumexp"):
        assert tuple(OPS[name].shape(shape, axis=axis, keepdims=keepdims)) == np.shape(
            OPS[name].forward(x, axis=axis, keepdims=keepdims)
        ), name


@FAST
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=3))
def test_broadcasting_shapes(shapes):
    a, b = (np.ones(s) for s in shapes.input_shapes)
    for name in ("add", "maximum", "arctan2", "less"):
        assert tuple(OPS[name].shape(*shapes.input_shapes)) == OPS[name].forward(a, b).shape


def test_shape_rules_refuse_what_numpy_refuses():
    bad = [
        ("add", ((2, 3), (4,)), {}),
        ("matmul", ((2, 3), (2, 3)), {}),
        ("reshape", ((2, 3),), {"shape": (4, -1)}),
        ("transpose", ((2, 3),), {"axes": (0, 0)}),
        ("concatenate", ((2, 3), (2, 4)), {"axis": 0}),
        ("squeeze", ((2, 3),), {"axis": 0}),
        ("broadcast_to", ((3,),), {"shape": (4,)}),
        ("sum", ((2, 3),), {"axis": 2}),
        ("inv", ((2, 3),), {}),
        ("solve", ((2, 2), (3,)), {}),
    ]
    for name, shapes, params in bad:
        with pytest.raises(ValueError):
            OPS[name].shape(*shapes, **params)
        with pytest.raises((ValueError, np.linalg.LinAlgError)):
            OPS[name].forward(*[np.ones(s) for s in shapes], **params)


def test_stack_keeps_python_numbers_weak():
    x = np.float32(1.5) * np.ones((), np.float32)
    out = OPS["stack"].forward(x, 2.0, x)
    assert out.dtype == np.float32 == OPS["stack"].dtype(np.dtype(np.float32), float, np.dtype(np.float32))
    assert OPS["stack"].forward(1, 2.5).dtype == np.float64 == OPS["stack"].dtype(int, float)
