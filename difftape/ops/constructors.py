"""Constructors: arrays made from a shape (zeros, eye, arange, ...); full is differentiable in its fill."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from difftape.ops import batching
from difftape.ops.core import (
    FloatForm,
    Shape,
    np_dtype,
    register,
)
from difftape.ops.shape import _broadcast_to_shape

# ----------------------------------------------------------------------------------------
# constructors (no tensor inputs, except full's fill value; never recorded)


def _shape_param(shape: Any) -> Shape:
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)


def _ctor_dtype(*_: Any, dtype: Any = "float64", **__: Any) -> np.dtype:
    return np.dtype(dtype)


def _full(fill_value: Any, shape: Any = (), dtype: Any = None) -> Any:
    return np.full(_shape_param(shape), fill_value, dtype=dtype)


def _arange(start: Any = 0, stop: Any = None, step: Any = 1, dtype: Any = None) -> Any:
    return np.arange(start, stop, step, dtype=dtype) if stop is not None else np.arange(start, dtype=dtype)


def _arange_shape(start: Any = 0, stop: Any = None, step: Any = 1, **_: Any) -> Shape:
    if stop is None:
        start, stop = 0, start
    if step == 0:
        raise ValueError("arange: step must not be zero")
    return (max(0, math.ceil((stop - start) / step)),)


def _arange_dtype(start: Any = 0, stop: Any = None, step: Any = 1, dtype: Any = None, **_: Any) -> np.dtype:
    return np.dtype(dtype) if dtype is not None else np.arange(start, start + step, step).dtype


_DT = ("dtype", "float64")
register(
    "zeros",
    lambda shape=(), dtype="float64": np.zeros(_shape_param(shape), dtype),
    args=(),
    params=(("shape", ()), _DT),
    kind="constructor",
    shape=lambda shape=(), **_: _shape_param(shape),
    dtype=_ctor_dtype,
    analytic=True,
)
register(
    "ones",
    lambda shape=(), dtype="float64": np.ones(_shape_param(shape), dtype),
    args=(),
    params=(("shape", ()), _DT),
    kind="constructor",
    shape=lambda shape=(), **_: _shape_param(shape),
    dtype=_ctor_dtype,
    analytic=True,
)
register(
    "eye",
    lambda N=1, M=None, k=0, dtype="float64": np.eye(N, M, k, dtype=dtype),
    args=(),
    params=(("N", 1), ("M", None), ("k", 0), _DT),
    kind="constructor",
    shape=lambda N=1, M=None, **_: (int(N), int(N if M is None else M)),
    dtype=_ctor_dtype,
    analytic=True,
)
register(
    "arange",
    _arange,
    args=(),
    params=(("start", 0), ("stop", None), ("step", 1), ("dtype", None)),
    kind="constructor",
    shape=_arange_shape,
    dtype=_arange_dtype,
    analytic=True,
)
register(
    "linspace",
    lambda start=0.0, stop=1.0, num=50, dtype="float64": np.linspace(start, stop, int(num), dtype=dtype),
    args=(),
    params=(("start", 0.0), ("stop", 1.0), ("num", 50), _DT),
    kind="constructor",
    shape=lambda num=50, **_: (int(num),),
    dtype=_ctor_dtype,
    analytic=True,
)
register(
    "zeros_like",
    np.zeros_like,
    nograd=1,
    kind="constructor",
    analytic=True,
    batch=batching.direct,
    pyfloat=FloatForm("0.0", exact=True),
)
register(
    "ones_like",
    np.ones_like,
    nograd=1,
    kind="constructor",
    analytic=True,
    batch=batching.direct,
    pyfloat=FloatForm("1.0", exact=True),
)
register(
    "full",
    _full,
    lambda F, g, y, v, shape=(), dtype=None: g,
    args=("fill_value",),
    params=(("shape", ()), ("dtype", None)),
    kind="constructor",
    shape=lambda v, shape=(), **_: _broadcast_to_shape(v, shape),
    dtype=lambda v, dtype=None, **_: np.dtype(dtype) if dtype is not None else np_dtype(v),
    analytic=True,
    batch=batching.full,
    mask_through=True,
    linear=True,
)
