"""Forward mode, derived from the registry: each op's Jacobian-vector product (JVP).

An op's JVP maps the tangents of its inputs to the tangent of its output, ``J t``. It is
written once here for every op, from what the registry already knows, against a namespace
``F`` as the VJPs are (numpy for plain forward mode, difftape's recorded ops when the
tangents must themselves be differentiable, e.g. Hessian-vector products):

- an entry's own ``jvp`` (``Op.jvp``), when it has one;
- elementwise ops: the Jacobian is diagonal (per broadcast position), so ``J t`` is the VJP
  applied to the tangent broadcast to the output's shape: ``vjp(F, t, y, *xs)``;
- linear ops (``Op.linear``: sums, reshapes, indexing, concatenation, ...): the forward
  applied to the tangents;
- multilinear ops (``Op.multilinear``: matmul, dot, outer, ...): the sum over inputs of
  the forward with that one input replaced by its tangent;
- anything else: the transpose of its VJP, ``J t = d/dg <vjp(g), t>`` (the VJP is linear in
  ``g``), computed by reverse mode over the VJP itself on a tape of its own. Every op with a
  VJP has a JVP this way; the rules above are only faster.

An input without a tangent (a constant, or an int) contributes nothing; an op none of whose
inputs has a tangent has none either (the caller keeps it unconnected).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from difftape.ops import Op, shape_of, vjp_for


def _broadcast(F: Any, t: Any, shape: tuple[int, ...]) -> Any:
    return t if shape_of(t) == shape else F.broadcast_to(t, shape)


def jvp(
    F: Any,
    op: Op,
    xs: Sequence[Any],
    params: dict[str, Any],
    y: Any,
    tangents: Sequence[Any | None],
    call: Callable[[Op, Sequence[Any], dict[str, Any]], Any],
    transpose: Callable[..., Any] | None = None,
) -> Any | None:
    """The tangent of ``y = op(*xs, **params)`` given the inputs' tangents (None: no tangent).

    ``call(op, args, params)`` runs an op in ``F``'s value domain (for the linear rules);
    ``transpose(vjp, t, y, xs, params, i)`` computes ``J_i t`` from the VJP of input ``i`` when no
    cheaper rule applies (the engine supplies one that runs reverse mode over the VJP).
    """
    hits = [i for i, t in enumerate(tangents) if t is not None]
    if not hits or op.vjps is None:
        return None
    if op.jvp is not None:
        return op.jvp(F, tangents, y, *xs, **params)
    out_shape = shape_of(y)
    if op.elementwise:
        total = None
        for i in hits:
            vjp = vjp_for(op, i)
            if vjp is None:
                continue
            part = vjp(F, _broadcast(F, tangents[i], out_shape), y, *xs, **params)
            part = _broadcast(F, part, out_shape)
            total = part if total is None else total + part
        return total
    if op.linear and (op.variadic or len(op.args) == 1):
        args = [t if t is not None else F.zeros_like(x) for x, t in zip(xs, tangents)]
        return call(op, args, params)
    if op.multilinear:
        total = None
        for i in hits:
            args = list(xs)
            args[i] = tangents[i]
            part = call(op, args, params)
            total = part if total is None else total + part
        return total
    if transpose is None:
        raise ValueError(f"{op.name}: no forward rule without a transpose")
    total = None
    for i in hits:
        vjp = vjp_for(op, i)
        if vjp is None:
            continue
        part = transpose(vjp, tangents[i], y, xs, params, i)
        if part is None:
            continue
        total = part if total is None else total + part
    return total


def zero_tangent(y: Any) -> np.ndarray:
    """A zero tangent of ``y``'s shape, in its float dtype (ints get float64)."""
    dt = np.asarray(y).dtype
    return np.zeros(np.shape(y), dtype=dt if dt.kind in "fc" else np.float64)
