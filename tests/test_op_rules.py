"""The static shape and dtype rules agree with what the forwards compute.

The compiler checks programs with these rules without running them, so a rule that
disagrees with numpy is a wrong answer (or a wrong error) in the command line. Every op's
rules, for every case of ``op_cases.py`` and every mix of input dtypes (Python numbers as weak
literals), are checked by ``test_op_cases.py``; here: constructors, random axes and
broadcasts, the errors the rules must raise, and weak numbers in ``stack``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes
from test_ops_grad import FAST, axes

from difftape.ops import OPS


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
