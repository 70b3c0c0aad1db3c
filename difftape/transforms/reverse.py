"""Reverse mode, once: the rules every backward pass of difftape follows.

The eager tape (``engine/tape.py``), the symbolic derivative of ``difftape diff``
(``transforms/symbolic/derive.py``) and the backward graph of ``difftape graph --grad``
(``answers/program.py``) all take their gradients from here, so they cannot disagree.
Everything is written against an abstract namespace ``F``, as the VJPs of ``ops.py`` are
(``vjp(F, g, y, *inputs, **params)``): numpy's functions, difftape's own recorded ops (for
higher derivatives), the simplifying constructors of the symbolic differentiator, or a
namespace that writes operations down (code, graph nodes). The values are whatever that
namespace computes on; the rules only read their shapes (``ops.shape_of``) and dtypes.

- :func:`unbroadcast`: sum a broadcast gradient down to an input's shape.
- :func:`entry_gradients`: the rule for one operation: run each tracked input's VJP,
  unbroadcast, and apply and propagate where-masks.
- :func:`combine_masks`: the mask of a gradient that several contributions add up to.
- :func:`needs_output`: whether a VJP reads the op's output (so a pass may free it early).
- :func:`backward`: the whole pass over a program given as a :class:`View`.

Where-masks. The README's convention: the gradient that an elementwise ``where`` did not
select is exactly 0, even where the unselected branch's slope is nan or infinite. A
``where`` therefore starts a *mask*, a boolean value of the namespace (True: this
position's gradient is forced to 0) that travels with the gradient: through elementwise
ops (each zeroes its input gradients there, so a nan slope cannot leak in) and through the
ops that only move, copy or sum the gradient (``ops.MASK_THROUGH``), where an input
position is masked when every output position it feeds is. Masks are built with the
namespace's own ops (``where``, ``logical_or``, ``logical_and``, comparisons, and the VJP
of the op itself run on a 0/1 "live" indicator), so the same code serves every namespace.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from difftape.ops import MASK_THROUGH, Op, shape_of, vjp_for

Shape = tuple[int, ...]
Part = tuple[int, Any, Any]  # (input position, gradient, where-mask or None)


# ----------------------------------------------------------------------------------------
# unbroadcasting


def unbroadcast(F: Any, g: Any, shape: Shape) -> Any:
    """``g`` summed down to ``shape``: the gradient of an input that the op broadcast to ``g``'s shape."""
    gshape = shape_of(g)
    if gshape == shape:
        return g
    lead = len(gshape) - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and gshape[lead + i] != 1)
    if axes:
        g = F.sum(g, axis=axes)
    return F.reshape(g, shape) if shape_of(g) != shape else g


# ----------------------------------------------------------------------------------------
# where-masks


def _is_bool(v: Any) -> bool:
    if v.__class__ is bool or isinstance(v, np.bool_):
        return True
    dt = getattr(v, "dtype", None)
    if dt is None:
        return False
    if dt is bool:
        return True
    try:
        return np.dtype(dt).kind == "b"
    except TypeError:
        return False


def _dead(M: Any, live: Any) -> Any:
    """The mask of the positions where a 0/1 (or summed 0/1) live indicator is 0.

    ``live <= 0`` rather than ``live == 0`` (the same, as live counts are never negative): the
    symbolic simplifier rewrites ``where(f == 0, 0, f*E)`` to ``f*E``, which is nan where ``E`` is
    not finite, and here ``E`` is exactly such a slope.
    """
    return M.less_equal(live, 0)


def where_mask(M: Any, condition: Any, position: int, mask: Any = None) -> Any:
    """The positions whose gradient ``where(condition, a, b)`` does not pass to input ``position``
    (1: ``a``, 2: ``b``), or-ed with the mask the output's gradient arrives with."""
    c = condition if _is_bool(condition) else M.not_equal(condition, 0)
    new = M.logical_not(c) if position == 1 else c
    return new if mask is None else M.logical_or(new, mask)


def unbroadcast_mask(M: Any, mask: Any, gshape: Shape, shape: Shape) -> Any:
    """A mask over a gradient of shape ``gshape`` (or broadcastable to it), for an input of ``shape``:
    an input position is masked when every position it was broadcast to is."""
    mshape = shape_of(mask)
    if mshape == shape:
        return mask
    live = M.where(mask, 0.0, 1.0)
    if mshape != gshape:
        live = M.broadcast_to(live, tuple(np.broadcast_shapes(mshape, gshape)))
    return _dead(M, unbroadcast(M, live, shape))


def mask_through(M: Any, vjp: Callable[..., Any], mask: Any, y: Any, ins: Sequence[Any], params: Mapping[str, Any],
                 shape: Shape) -> Any:
    """The mask an op of ``ops.MASK_THROUGH`` hands to an input of ``shape``: its VJP moves a live
    indicator as it moves the gradient, so an input position is masked when all it feeds are."""
    live = vjp(M, M.where(mask, 0.0, 1.0), y, *ins, **params)
    return _dead(M, unbroadcast(M, live, shape))


def combine_masks(M: Any, first: bool, old: Any, new: Any) -> Any:
    """The mask of an accumulated gradient after one more contribution with mask ``new``.

    The first contribution brings its mask; after that a position stays masked only when every
    contribution masks it (a contribution without a mask masks nothing).
    """
    if first:
        return new
    if old is None or new is None:
        return None
    return M.logical_and(old, new)


# ----------------------------------------------------------------------------------------
# one operation


def entry_gradients(
    F: Any,
    op: Any,
    hits: Iterable[int],
    g: Any,
    y: Any,
    ins: Sequence[Any],
    params: Mapping[str, Any],
    mask: Any = None,
    *,
    M: Any = None,
    my: Any = None,
    mins: Sequence[Any] | None = None,
    vjp_of: Callable[[Any, int], Callable[..., Any] | None] = vjp_for,
) -> list[Part]:
    """``(position, gradient, mask)`` for each input position in ``hits`` that has a VJP.

    ``op`` is an ``ops.Op`` (or anything with its ``name`` and ``elementwise``, whose VJPs
    ``vjp_of`` gives); ``g`` the gradient of its output ``y``, computed from ``ins``, arriving
    with the where-mask ``mask`` (None: no position is masked). Each gradient is unbroadcast to
    its input's shape. Masks are computed with the namespace ``M`` on ``my`` and ``mins`` (by
    default ``F``, ``y`` and ``ins``): the tape's higher derivatives record the gradients with
    difftape's ops but keep the masks, which have no gradient, in plain numpy.
    """
    if M is None:
        M, my, mins = F, y, ins
    elementwise = op.elementwise
    parts: list[Part] = []
    for i in hits:
        vjp = vjp_of(op, i)
        if vjp is None:
            continue
        gi = vjp(F, g, y, *ins, **params)
        shape = shape_of(ins[i])
        new_mask = None
        if elementwise:
            new_mask = where_mask(M, mins[0], i, mask) if op.name == "where" else mask
            if new_mask is not None:
                gi = F.where(new_mask, 0.0, gi)
                new_mask = unbroadcast_mask(M, new_mask, shape_of(gi), shape)
        elif mask is not None and op.name in MASK_THROUGH:
            # gi is g moved about, so its masked positions are 0 already; the mask goes on
            new_mask = mask_through(M, vjp, mask, my, mins, params, shape)
        parts.append((i, unbroadcast(F, gi, shape), new_mask))
    return parts


# ----------------------------------------------------------------------------------------
# which VJPs read the output


_READS: dict[Any, tuple[tuple[bool, ...] | None, ...]] = {}


def vjp_reads(op: Op) -> tuple[tuple[bool, ...] | None, ...]:
    """For each VJP of a fixed-arity ``op`` (None: it has none), whether it reads the op's output and each
    of its inputs, in that order (by bytecode: True when unsure). Keyed by the VJP functions, so a VJP
    replaced later is looked at afresh."""
    vjps = op.vjps
    found = _READS.get(vjps)
    if found is None:
        n = len(vjps)
        found = tuple(None if f is None else tuple(reads_argument(f, 2 + j) for j in range(n + 1)) for f in vjps)
        _READS[vjps] = found
    return found


def needs_output(op: Op, slots: tuple[int | None, ...]) -> bool:
    """Whether a VJP of ``op`` for one of its tracked inputs (slot not None) reads the op's output."""
    if op.variadic:
        return any(s is not None for s in slots)
    reads = vjp_reads(op)
    return any(i >= len(reads) or (reads[i] is not None and reads[i][0]) for i, s in enumerate(slots) if s is not None)


def reads_argument(fn: Any, index: int) -> bool:
    """Whether ``fn`` can read its positional parameter ``index``; True whenever unsure (by its bytecode)."""
    import dis

    code = getattr(fn, "__code__", None)
    if code is None or index >= code.co_argcount:
        return True
    name = code.co_varnames[index]
    if name in code.co_cellvars:
        return True
    for ins in dis.get_instructions(code):
        if "FAST" in ins.opname or "DEREF" in ins.opname or "CLOSURE" in ins.opname:
            names = ins.argval if isinstance(ins.argval, tuple) else (ins.argval,)
            if name in names:
                return True
    return False


# ----------------------------------------------------------------------------------------
# the whole pass


class View:
    """A program as :func:`backward` reads it: nodes ``0 .. len-1`` in topological order.

    Subclasses answer :meth:`op` and :meth:`inputs`, and :meth:`value` or :meth:`operands`.
    """

    def __len__(self) -> int:
        raise NotImplementedError

    def op(self, k: int) -> Any:
        """Node ``k``'s operation (an ``ops.Op`` or alike); None for a leaf (nothing flows through it)."""
        raise NotImplementedError

    def inputs(self, k: int) -> tuple[int, ...]:
        """The nodes that node ``k`` takes, in order (one per tensor input of its op)."""
        raise NotImplementedError

    def params(self, k: int) -> Mapping[str, Any]:
        """Node ``k``'s static parameters, as its op's forward and VJPs take them."""
        return {}

    def value(self, k: int) -> Any:
        """Node ``k``'s value in the pass's namespace."""
        raise NotImplementedError

    def operands(self, k: int, lazy: bool) -> tuple[Any, list[Any]]:
        """(output, inputs) of node ``k`` for its VJPs. With ``lazy`` a view may answer stand-ins
        that are cheaper to make; :meth:`usable` then says whether the gradients built stand."""
        return self.value(k), [self.value(i) for i in self.inputs(k)]

    def usable(self, parts: list[Part]) -> bool:
        """Whether gradients built from lazy operands stand (else they are built again from values)."""
        return True

    def vjp(self, op: Any, i: int) -> Callable[..., Any] | None:
        """The VJP of input ``i`` of ``op`` (None: no gradient flows there)."""
        return vjp_for(op, i)


def backward(
    F: Any,
    view: View,
    target: int,
    seed: Any,
    sources: Iterable[int],
    total: Callable[[list[Any]], Any] | None = None,
) -> dict[int, Any]:
    """The gradient of ``target`` (weighted by ``seed``) for each source node (None: unconnected).

    Walks the nodes last to first, applying :func:`entry_gradients` to each that has a
    gradient; contributions to a node are collected and added once, by ``total`` (default:
    ``+`` in turn) when its turn comes, and their masks combine by :func:`combine_masks`.
    Masks are computed in ``F`` too.
    """
    if total is None:
        total = _add_all
    order = list(sources)
    src = set(order)
    n = len(view)
    tracked = [False] * n
    for k in range(n):
        if k in src:
            tracked[k] = True
            continue
        op = view.op(k)
        if op is not None and op.vjps is not None:
            tracked[k] = any(tracked[i] for i in view.inputs(k))
    pending: dict[int, list[Any]] = {}
    masks: dict[int, Any] = {}
    if tracked[target]:
        pending[target] = [seed]
    for k in range(n - 1, -1, -1):
        if k in src or k not in pending:
            continue
        op = view.op(k)
        if op is None:
            continue
        g = total(pending.pop(k))
        mask = masks.pop(k, None)
        ids = view.inputs(k)
        hits = tuple(p for p, a in enumerate(ids) if tracked[a])
        params = view.params(k)
        y, ins = view.operands(k, True)
        parts = entry_gradients(F, op, hits, g, y, ins, params, mask, vjp_of=view.vjp)
        if not view.usable(parts):
            y, ins = view.operands(k, False)
            parts = entry_gradients(F, op, hits, g, y, ins, params, mask, vjp_of=view.vjp)
        for p, gi, new_mask in parts:
            a = ids[p]
            first = a not in pending
            if first:
                pending[a] = [gi]
            else:
                pending[a].append(gi)
            if a in src:
                continue  # (a source's gradient goes no further: its mask is not needed)
            m = combine_masks(F, first, masks.get(a), new_mask)
            if m is None:
                masks.pop(a, None)
            else:
                masks[a] = m
    return {s: total(pending[s]) if s in pending else None for s in order}


def _add_all(parts: list[Any]) -> Any:
    return functools.reduce(operator.add, parts)


__all__ = [
    "View", "backward", "combine_masks", "entry_gradients", "mask_through", "needs_output", "reads_argument",
    "unbroadcast", "unbroadcast_mask", "vjp_reads", "where_mask",
]
