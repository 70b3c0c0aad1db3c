"""The operation registry: ``OPS`` maps each operation's name to its one entry (:class:`Op`).

``core.py`` defines the entry and ``register``; each family module registers its operations
(importing them here fills ``OPS`` in the docs' order); ``batching.py`` holds the families' default
batching rules. Every other part of difftape reads operations from ``OPS`` and its traits, never by
a list of names of its own: see docs/adding-an-op.md.
"""

from __future__ import annotations

from difftape.ops import batching  # noqa: F401  (the families' default batching rules, before any entry)

# isort: split
# the families fill OPS in the order the docs list them
from difftape.ops import elementwise  # noqa: F401

# isort: split
from difftape.ops import reductions  # noqa: F401

# isort: split
from difftape.ops import linalg  # noqa: F401

# isort: split
from difftape.ops import shape  # noqa: F401

# isort: split
from difftape.ops import constructors  # noqa: F401

# isort: split
from difftape.ops.core import FAMILY_TITLES, OPS, Op, Shape, normalize_axis, register, shape_of, size_of, vjp_for

__all__ = [
    "ANALYTIC",
    "FAMILIES",
    "FAMILY_TITLES",
    "MASK_THROUGH",
    "OPS",
    "Op",
    "Shape",
    "normalize_axis",
    "register",
    "shape_of",
    "size_of",
    "vjp_for",
]

#: Ops whose VJP only moves, copies or sums the output gradient (no other values): a where-mask
#: passes through them to the next elementwise op, where it zeroes the unselected branch's slope.
MASK_THROUGH = frozenset(name for name, op in OPS.items() if op.mask_through)

#: Ops whose forward is complex-analytic on complex input (the complex step applies).
ANALYTIC = frozenset(name for name, op in OPS.items() if op.analytic)

#: Op names by family (the docs and the language's function list read this).
FAMILIES: dict[str, list[str]] = {}
for _o in OPS.values():
    FAMILIES.setdefault(_o.kind, []).append(_o.name)
