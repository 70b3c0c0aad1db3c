"""Numeric evaluation of symbolic expressions (for constant folding and for the tests).

Iterative over the expression DAG (each shared node computed once), with the op
table's numpy forwards, so what it computes is what the engine computes.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import numpy as np

from difftape.errors import DifftapeError
from difftape.ops import OPS
from difftape.transforms.symbolic.expr import Expr, postorder


def _num(v: Any) -> Any:
    return float(v) if isinstance(v, Fraction) else v


def _number(v: Any) -> Any:
    """A mask as 0/1 integers, for the arithmetic of ``plus``; anything else unchanged."""
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, np.ndarray) and v.dtype.kind == "b":
        return v.astype(np.int64)
    return v


def evaluate(root: Expr, env: Mapping[str, Any]) -> Any:
    """The value of ``root`` with names looked up in ``env`` (numpy arrays or numbers)."""
    vals: dict[int, Any] = {}
    power = OPS["power"].forward
    with np.errstate(all="ignore"):
        for n in postorder(root):
            if n.op == "const":
                v = n.value if isinstance(n.value, np.ndarray) else _num(n.value)
                vals[id(n)] = np.broadcast_to(v, n.shape) if n.shape else v
            elif n.op == "name":
                if n.value not in env:
                    raise DifftapeError("name", f"no value for {n.value!r}")
                vals[id(n)] = env[n.value]
            elif n.op == "plus":  # terms add as numbers (numpy's + on two masks would be `or`)
                out = _number(vals[id(n.args[0])])
                for a in n.args[1:]:
                    out = np.add(out, _number(vals[id(a)]))
                vals[id(n)] = out
            elif n.op == "times":
                out = _num(n.value)
                for a, e in zip(n.args, n.exps):
                    v = vals[id(a)]
                    out = np.multiply(out, v if e == 1 else power(v, _num(e)))
                vals[id(n)] = out
            else:
                op = OPS["where" if n.op == "guard" else n.op]
                args = [vals[id(a)] for a in n.args]
                vals[id(n)] = op.forward(*args, **dict(n.params))
    return vals[id(root)]
