"""Symbolic differentiation for ``difftape diff``: derivatives printed as difftape programs.

- :mod:`.expr`: interned expression nodes with static shapes and dtypes;
- :mod:`.simplify`: the simplifying constructors and the namespace ``F`` for the VJPs
  (:mod:`.shapes`: the ones for reductions, shapes, indexing and linear algebra);
- :mod:`.printer`: text in difftape's own language (precedence, shared parts bound);
- :mod:`.derive`: the symbolic backward pass and the :func:`derive` API;
- :mod:`.evaluate`: numeric evaluation (constant folding, tests).
"""

from __future__ import annotations

from difftape.transforms.symbolic.derive import DiffResult, derivative_exprs, derive
from difftape.transforms.symbolic.expr import Expr
from difftape.transforms.symbolic.printer import to_text

__all__ = ["DiffResult", "Expr", "derivative_exprs", "derive", "to_text"]
