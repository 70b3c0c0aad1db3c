"""difftape: exact derivatives of small numpy programs, from Python or the command line.

The Python API follows TensorFlow's: ``constant``, ``Variable``, ``Tape`` (GradientTape),
``function`` (tf.function), plus every operation by its numpy name (``difftape.sin``).

The engine is imported lazily (PEP 562): ``import difftape`` costs nothing until a name is
used, so the command line (``difftape.cli``), which imports this package, starts without
numpy or the operation table when it does not need them (``--help``, ``--version``, a syntax
error), and otherwise imports only the parts its command uses.
"""

from __future__ import annotations

from importlib import import_module as _import_module
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

__version__ = "0.1.0"

# name -> (submodule, attribute in it); None: the submodule itself
_LAZY: dict[str, tuple[str, str | None]] = {
    "DifftapeError": ("errors", "DifftapeError"),
    "ForwardAccumulator": ("engine.forward", "ForwardAccumulator"),
    "grad": ("engine.forward", "grad"),
    "hvp": ("engine.forward", "hvp"),
    "jvp": ("engine.forward", "jvp"),
    "value_and_grad": ("engine.forward", "value_and_grad"),
    "vjp": ("engine.forward", "vjp"),
    "GradientTape": ("engine.tape", "Tape"),
    "OPS": ("ops", "OPS"),
    "Tape": ("engine.tape", "Tape"),
    "Tensor": ("engine.tensor", "Tensor"),
    "Variable": ("engine.tensor", "Variable"),
    "constant": ("engine.tensor", "constant"),
    "function": ("engine.tracing", "function"),
    "hessian": ("engine.derivatives", "hessian"),
    "jacobian": ("engine.derivatives", "jacobian"),
    "optimize": ("optimize", None),
    "optimizers": ("optimizers", None),
    "random": ("random", None),
}

#: modules the eager package made attributes (``dt.ops.normalize_axis``, ``dt.tape``): name -> module path
_ENGINE_MODULES = {"api": "engine.api", "derivatives": "engine.derivatives", "errors": "errors", "ops": "ops",
                   "tape": "engine.tape", "tensor": "engine.tensor", "tracing": "engine.tracing"}

if _TYPE_CHECKING:  # what static tools see: the eager imports
    from difftape import optimize, optimizers, random  # noqa: F401
    from difftape.engine.derivatives import hessian, jacobian  # noqa: F401
    from difftape.engine.tape import Tape  # noqa: F401
    from difftape.engine.tape import Tape as GradientTape  # noqa: F401
    from difftape.engine.tensor import Tensor, Variable, constant  # noqa: F401
    from difftape.engine.tracing import function  # noqa: F401
    from difftape.errors import DifftapeError  # noqa: F401
    from difftape.ops import OPS  # noqa: F401


def _op_names() -> list[str]:
    from difftape.engine.api import FUNCTIONS

    return sorted(FUNCTIONS)


def __getattr__(name: str) -> _Any:
    """Import an API name on first use and keep it as a module global (later uses are plain lookups)."""
    if name in _LAZY:
        module, attr = _LAZY[name]
        mod = _import_module(f".{module}", __name__)
        value = mod if attr is None else getattr(mod, attr)
    elif name in _ENGINE_MODULES:  # the eager package made these attributes; keep ``dt.ops.normalize_axis`` working
        value = _import_module(f".{_ENGINE_MODULES[name]}", __name__)
    elif name == "__all__":
        value = sorted(_LAZY) + _op_names()
    elif not name.startswith("__"):
        from difftape.engine.api import FUNCTIONS

        if name not in FUNCTIONS:
            raise AttributeError(f"module 'difftape' has no attribute {name!r}")
        value = FUNCTIONS[name]
    else:
        raise AttributeError(f"module 'difftape' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public API only (what ``__all__`` lists, and ``__version__``): no import helpers, no submodules."""
    return sorted(set(_LAZY) | set(_op_names()) | {"__version__"})


del annotations  # the ``from __future__`` feature object: not an API name
