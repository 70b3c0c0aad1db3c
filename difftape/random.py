"""Seeded random tensors on numpy's ``default_rng`` (reproducible by default: seed 0)."""

from __future__ import annotations

from typing import Any

import numpy as np

from difftape.engine.tensor import Tensor

_rng: Any = None  # made on first use: importing numpy.random costs ~10 ms at start-up
_seed = 0


def _generator() -> Any:
    global _rng
    if _rng is None:
        _rng = np.random.default_rng(_seed)
    return _rng


def set_seed(seed: int) -> None:
    """Restart the generator: the same seed gives the same draws, in the same order."""
    global _rng, _seed
    _seed, _rng = seed, None


def _shape(shape: tuple[Any, ...]) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def randn(*shape: Any, dtype: Any = "float64") -> Tensor:
    """Standard normal draws; ``randn(2, 3)`` or ``randn((2, 3))``."""
    return Tensor(_generator().standard_normal(_shape(shape)).astype(dtype, copy=False))


def rand(*shape: Any, dtype: Any = "float64") -> Tensor:
    """Uniform draws on [0, 1); ``rand(2, 3)`` or ``rand((2, 3))``."""
    return Tensor(_generator().random(_shape(shape)).astype(dtype, copy=False))


def normal(shape: Any = (), mean: float = 0.0, stddev: float = 1.0, dtype: Any = "float64") -> Tensor:
    """``tf.random.normal``: normal draws of the given shape."""
    return Tensor((mean + stddev * _generator().standard_normal(_shape((shape,)))).astype(dtype, copy=False))


def uniform(shape: Any = (), minval: float = 0.0, maxval: float = 1.0, dtype: Any = "float64") -> Tensor:
    """``tf.random.uniform``: uniform draws on [minval, maxval)."""
    return Tensor((minval + (maxval - minval) * _generator().random(_shape((shape,)))).astype(dtype, copy=False))
