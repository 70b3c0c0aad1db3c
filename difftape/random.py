"""Seeded random tensors on numpy's ``default_rng`` (reproducible by default: seed 0)."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from difftape.engine.tensor import Tensor, as_dtype
from difftape.errors import DifftapeError

_rng: Any = None  # made on first use: importing numpy.random costs ~10 ms at start-up
_seed = 0


def _generator() -> Any:
    global _rng
    if _rng is None:
        _rng = np.random.default_rng(_seed)
    return _rng


def set_seed(seed: int) -> None:
    """Restart the generator: the same seed gives the same draws, in the same order.

    The seed is a non-negative integer (numpy's ``default_rng`` takes no other), checked here
    rather than at the next draw."""
    global _rng, _seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise DifftapeError("type", f"set_seed takes a non-negative int, got {seed!r} ({type(seed).__name__})")
    if seed < 0:
        raise DifftapeError("value", f"set_seed takes a non-negative int, got {seed}")
    _seed, _rng = int(seed), None


def _shape(shape: tuple[Any, ...]) -> tuple[int, ...]:
    """A shape of non-negative ints (``2.5`` or ``-1`` is an error, not a truncated shape)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    dims = []
    for s in shape:
        try:
            if isinstance(s, bool):
                raise TypeError
            n = operator.index(s)
        except (TypeError, DifftapeError):
            raise DifftapeError("type", f"a shape holds ints, got {s!r} ({type(s).__name__}) in {shape}") from None
        if n < 0:
            raise DifftapeError("value", f"a shape holds non-negative ints, got {n} in {shape}")
        dims.append(n)
    return tuple(dims)


def _float_dtype(dtype: Any) -> np.dtype:
    """Draws are floats: an int dtype would truncate them (uniform on [0, 1) to all zeros)."""
    dt = as_dtype(dtype)
    if dt.kind != "f":
        raise DifftapeError("type", f"random draws are floats: dtype must be a float type, got {dt}")
    return dt


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise DifftapeError("type", f"{name} must be a number, got {value!r} ({type(value).__name__})")
    return value


def _draw(method: str, dims: tuple[int, ...]) -> np.ndarray:
    """``dims`` draws from the generator's ``method``; a shape numpy cannot allocate is a DifftapeError."""
    try:
        return getattr(_generator(), method)(dims)
    except (ValueError, MemoryError) as exc:
        raise DifftapeError("value", f"cannot draw an array of shape {dims}: {exc or 'out of memory'}") from None


def randn(*shape: Any, dtype: Any = "float64") -> Tensor:
    """Standard normal draws; ``randn(2, 3)`` or ``randn((2, 3))``."""
    dims, dt = _shape(shape), _float_dtype(dtype)
    return Tensor(_draw("standard_normal", dims).astype(dt, copy=False))


def rand(*shape: Any, dtype: Any = "float64") -> Tensor:
    """Uniform draws on [0, 1); ``rand(2, 3)`` or ``rand((2, 3))``."""
    dims, dt = _shape(shape), _float_dtype(dtype)
    return Tensor(_draw("random", dims).astype(dt, copy=False))


def normal(shape: Any = (), mean: float = 0.0, stddev: float = 1.0, dtype: Any = "float64") -> Tensor:
    """``tf.random.normal``: normal draws of the given shape."""
    dims, dt = _shape((shape,)), _float_dtype(dtype)
    mean, stddev = _number("mean", mean), _number("stddev", stddev)
    return Tensor((mean + stddev * _draw("standard_normal", dims)).astype(dt, copy=False))


def uniform(shape: Any = (), minval: float = 0.0, maxval: float = 1.0, dtype: Any = "float64") -> Tensor:
    """``tf.random.uniform``: uniform draws on [minval, maxval)."""
    dims, dt = _shape((shape,)), _float_dtype(dtype)
    minval, maxval = _number("minval", minval), _number("maxval", maxval)
    return Tensor((minval + (maxval - minval) * _draw("random", dims)).astype(dt, copy=False))
