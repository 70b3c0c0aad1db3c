"""difftape: exact derivatives of small numpy programs, from Python or the command line.

The Python API follows TensorFlow's: ``constant``, ``Variable``, ``Tape`` (GradientTape),
``function`` (tf.function), plus every operation by its numpy name (``difftape.sin``).
"""

from __future__ import annotations

from . import random
from .api import FUNCTIONS as _FUNCTIONS
from .derivatives import hessian, jacobian
from .errors import DifftapeError
from .function import function
from .ops import OPS
from .tape import Tape
from .tensor import Tensor, Variable, constant

__version__ = "0.1.0"

globals().update(_FUNCTIONS)
GradientTape = Tape

__all__ = [
    "DifftapeError",
    "GradientTape",
    "OPS",
    "Tape",
    "Tensor",
    "Variable",
    "constant",
    "function",
    "hessian",
    "jacobian",
    "random",
    *sorted(_FUNCTIONS),
]
