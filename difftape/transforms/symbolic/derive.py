"""Analytic derivatives: the op table's VJPs run on symbolic expressions, in reverse.

``derive`` compiles the program, turns every graph node into a symbolic expression
(leaves become names: inputs, variables and const bindings, whose values the caller
supplies when it runs the derivative), then plays the tape's backward pass with the
symbolic namespace ``F``: the same VJPs, the same unbroadcasting, and the same masks
that make the tape's ``where`` nan-safe. Because the tape's own rules produce the
expression, its value is the tape's gradient; the simplifying constructors only make
it readable. ``order=2`` runs the same pass over the derivative's own expression.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from difftape.errors import DifftapeError
from difftape.ops import MASK_THROUGH as STRUCTURAL
from difftape.ops import OPS, shape_of, vjp_for
from difftape.transforms.symbolic import simplify as S  # noqa: N812 - S for the simplifying constructors, like F
from difftape.transforms.symbolic.expr import Expr, const, make, postorder, var
from difftape.transforms.symbolic.printer import to_text

#: Graph-level node kinds that are leaves of the derivative.
_LEAF_KINDS = ("input", "variable", "const")


@dataclass
class DiffResult:
    """The derivative of ``of`` with respect to each input, as program text (input order)."""

    of: str
    diff: dict[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------
# the backward pass, on a list of steps (graph nodes or expression nodes)


@dataclass
class Step:
    """One recorded operation: op name, input step indices, params, shape and symbolic value.

    ``value`` may be None until asked for (:func:`force`): a long chain of additions never
    needs its partial sums, and building each one would cost as much as all the terms.
    """

    op: str
    inputs: tuple[int, ...]
    params: dict[str, Any]
    shape: tuple[int, ...]
    value: Expr | None = None


#: VJPs of these ops read nothing but the gradient and the input shapes (``shape_of``).
_SHAPE_ONLY = {"add", "subtract", "negative", "positive", "sum", "mean", "reshape", "ravel", "expand_dims",
               "squeeze", "broadcast_to", "transpose", "getitem", "concatenate", "stack", "plus"}


def _build(st: Step, ins: list[Expr]) -> Expr:
    if OPS[st.op].variadic:
        return S.call(st.op, (tuple(ins),), st.params)
    return S.call(st.op, tuple(ins), st.params)


def force(steps: list[Step], k: int) -> Expr:
    """The symbolic value of step ``k`` (built on demand, inputs first, without recursion)."""
    stack = [k]
    while stack:
        j = stack[-1]
        st = steps[j]
        if st.value is not None:
            stack.pop()
            continue
        missing = [i for i in st.inputs if steps[i].value is None]
        if missing:
            stack.extend(missing)
            continue
        st.value = _build(st, [steps[i].value for i in st.inputs])
        stack.pop()
    value = steps[k].value
    assert value is not None
    return value


def _placeholder(shape: tuple[int, ...]) -> Expr:
    return make("placeholder", shape=shape)


def _vjp(step: Step, i: int) -> Any:
    """The VJP of input ``i`` of ``step`` (None: no gradient), table ops and canonical forms alike."""
    if step.op == "plus":
        return lambda F, g, y, *xs: g
    if step.op == "times":
        return _prod_vjp(i)
    op = OPS.get(step.op)
    if op is None:
        return None
    return vjp_for(op, i)


def _prod_vjp(i: int) -> Any:
    def vjp(F: Any, g: Any, y: Expr, *xs: Expr) -> Expr:
        e = y.exps[i]
        items = [(b, x) for j, (b, x) in enumerate(zip(xs, y.exps)) if j != i]
        items.append((xs[i], S.as_num(e - 1)))
        return S.multiply(g, S.prod_of(items, S.as_num(y.value * e)))

    return vjp


def _elementwise(op: str) -> bool:
    if op in ("plus", "times"):
        return True
    o = OPS.get(op)
    return o is not None and o.elementwise


def _as_bool(c: Expr) -> Expr:
    if c.dtype is bool or (not isinstance(c.dtype, type) and np.dtype(c.dtype).kind == "b"):
        return c
    return S.call("not_equal", (c, 0), {})


def _unbroadcast(g: Expr, shape: tuple[int, ...]) -> Expr:
    """The tape's ``_unbroadcast``: sum a broadcast gradient down to ``shape``."""
    gshape = g.shape
    if gshape == shape:
        return g
    lead = len(gshape) - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and gshape[lead + i] != 1)
    if axes:
        g = S.call("sum", (g,), {"axis": axes})
    return S.reshape(g, shape) if g.shape != shape else g


def _unbroadcast_mask(m: Expr, shape: tuple[int, ...]) -> Expr:
    """The tape's mask rule: a position is masked when every position it broadcast to is."""
    if m.shape == shape:
        return m
    full = S.bshape(m.shape, shape)
    m = S.fit(m, full) if m.ndim < len(shape) else m
    lead = m.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and m.shape[lead + i] != 1)
    if axes:
        ones = S.call("min", (S.where(m, 1.0, 0.0),), {"axis": axes})
        m = S.call("equal", (ones, 1), {})
    return S.reshape(m, shape)


def backward(steps: list[Step], target: int, sources: list[int]) -> dict[int, Expr | None]:
    """Symbolic ``Tape._backward``: gradient of ``sum(steps[target])`` for each source step."""
    n = len(steps)
    src = set(sources)
    tracked = [False] * n
    for k, st in enumerate(steps):
        if k in src:
            tracked[k] = True
        elif st.inputs and (st.op in ("plus", "times") or (st.op in OPS and OPS[st.op].vjps is not None)):
            tracked[k] = any(tracked[i] for i in st.inputs)
    pending: dict[int, list[Expr]] = {}
    masks: dict[int, Expr] = {}
    if tracked[target]:
        pending[target] = [const(1, steps[target].shape)]
    for k in range(n - 1, -1, -1):
        if k in src or k not in pending:
            continue
        g = _total(pending.pop(k))
        mask = masks.pop(k, None)
        st = steps[k]
        if not st.inputs:
            continue
        lazy = st.op in _SHAPE_ONLY
        if lazy:
            y = _placeholder(st.shape)
            ins = [_placeholder(steps[i].shape) if steps[i].value is None else steps[i].value for i in st.inputs]
        else:
            y = force(steps, k)
            ins = [force(steps, i) for i in st.inputs]
        for pos, a in enumerate(st.inputs):
            if not tracked[a]:
                continue
            vjp = _vjp(st, pos)
            if vjp is None:
                continue
            gi = _apply(vjp, st, g, y, ins)
            if lazy and gi.ph:  # the VJP did read a value after all: give it the real ones
                y, lazy = force(steps, k), False
                ins = [force(steps, i) for i in st.inputs]
                gi = _apply(vjp, st, g, y, ins)
            new_mask = None
            if _elementwise(st.op):
                if st.op == "where":
                    c = _as_bool(ins[0])
                    new_mask = S.call("logical_not", (c,), {}) if pos == 1 else c
                    if mask is not None:
                        new_mask = S.call("logical_or", (new_mask, mask), {})
                else:
                    new_mask = mask
                if new_mask is not None:
                    gi = S.where(new_mask, 0.0, gi)
                    new_mask = _unbroadcast_mask(S.fit(new_mask, S.bshape(new_mask.shape, gi.shape)),
                                                 steps[a].shape)
            elif mask is not None and st.op in STRUCTURAL:
                # the tape carries a mask through ops that only move values: an input position is
                # masked when every output position it feeds is masked
                live = _apply(vjp, st, S.where(mask, 0.0, 1.0), y, ins)
                new_mask = S.call("equal", (_unbroadcast(live, steps[a].shape), 0), {})
            gi = _unbroadcast(gi, steps[a].shape)
            # contributions are summed once, when their node comes up (a sum of n terms built
            # one term at a time would cost n**2); masks combine as the tape combines them
            if a in pending:
                pending[a].append(gi)
                if a in masks and new_mask is not None:
                    masks[a] = S.call("logical_and", (masks[a], new_mask), {})
                else:
                    masks.pop(a, None)
            else:
                pending[a] = [gi]
                if new_mask is not None:
                    masks[a] = new_mask
    return {s: _total(pending.get(s)) for s in sources}


def _apply(vjp: Any, st: Step, g: Expr, y: Expr, ins: list[Expr]) -> Expr:
    """Run one VJP of the table on expressions."""
    try:
        return S.lift(vjp(S.F, g, y, *ins, **st.params))
    except TypeError as exc:  # a rule that branches on values (Expr has no truth value)
        raise DifftapeError(
            "unsupported", f"diff: the gradient rule of {st.op} has no symbolic form here ({exc})") from None


def _total(parts: list[Expr] | None) -> Expr | None:
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else S.sum_of(parts)


# ----------------------------------------------------------------------------------------
# programs to steps


def _random_call(node: Any) -> str:
    p = node.params
    return f"{'randn' if p['dist'] == 'normal' else 'rand'}({', '.join(str(s) for s in p['shape'])})"


def _random_leaf(node: Any) -> Expr:
    """An unnamed random draw: its value is known only by its turn in the seeded stream."""
    where = f" at {node.span.line}:{node.span.column}" if node.span is not None else ""
    return make("random", value=f"{_random_call(node)}{where}", params=(("order", node.params["order"]),),
                shape=tuple(node.shape), dtype=node.dtype)


def _bind_randoms(graph: Any, root: Expr, taken: set[str]) -> tuple[list[str], Expr]:
    """Bindings that redraw the program's random values in turn, for the unnamed draws ``root`` uses.

    Draws happen in source order from one seeded stream, so the derivative repeats every
    draw of the program up to the last one it needs (same shapes, same order): evaluated
    with the program's seed it sees the same values.
    """
    used = {n.param("order") for n in postorder(root) if n.op == "random"}
    if not used:
        return [], root
    last = max(used)
    draws = sorted((n for n in graph.nodes if n.op == "random"), key=lambda n: n.params["order"])
    lines: list[str] = []
    mapping: dict[int, Expr] = {}
    by_order = {n.param("order"): n for n in postorder(root) if n.op == "random"}
    k = 0
    for node in draws:
        order = node.params["order"]
        if order > last:
            break
        while True:
            k += 1
            name = f"r{k}"
            if name not in taken:
                break
        taken.add(name)
        lines.append(f"{name} = {_random_call(node)}")
        if order in by_order:
            e = by_order[order]
            mapping[id(e)] = var(name, e.shape, e.dtype)
    return lines, S.substitute(root, mapping)


def graph_steps(graph: Any, wrt: list[str], float_dtype: Any) -> tuple[list[Step], list[int]]:
    """One step per graph node (leaves named, values built on demand), the step of each ``wrt`` name."""
    steps: list[Step] = []
    sources: dict[str, int] = {}
    for node in graph.nodes:
        op = node.op
        shape = tuple(node.shape)
        if node.leaf and node.name is not None and op in _LEAF_KINDS + ("stop_gradient",):
            dtype = float_dtype if node.name in wrt else node.dtype
            steps.append(Step("leaf", (), {}, shape, var(node.name, shape, dtype)))
            if node.name in wrt:
                sources[node.name] = node.id
        elif op == "literal":
            steps.append(Step("literal", (), {}, shape, const(node.params["value"], shape, node.dtype)))
        elif op == "random":
            steps.append(Step("random", (), {}, shape, _random_leaf(node)))
        elif op in ("const", "variable"):  # an unnamed const(...) of constants: its value
            steps.append(Step("copy", (), {}, shape, force(steps, node.inputs[0])))
        else:
            steps.append(Step(op, tuple(node.inputs), dict(node.params), shape))
    return steps, [sources[n] for n in wrt]


def expr_steps(root: Expr, name: str) -> tuple[list[Step], int, list[int]]:
    """One step per node of ``root`` (for differentiating a derivative again)."""
    nodes = postorder(root)
    index = {id(n): k for k, n in enumerate(nodes)}
    steps = []
    sources = []
    for k, n in enumerate(nodes):
        if n.op == "name" and n.value == name:
            sources.append(k)
        steps.append(Step(n.op, tuple(index[id(a)] for a in n.args), dict(n.params), n.shape, n))
    return steps, index[id(root)], sources


def derive_expr(root: Expr, name: str, shape: tuple[int, ...]) -> Expr:
    """d(sum(root))/d(name) for an expression."""
    steps, target, sources = expr_steps(root, name)
    if not sources:
        return const(0, shape)
    grads = backward(steps, target, sources[:1])
    g = grads[sources[0]]
    return const(0, shape) if g is None else g


# ----------------------------------------------------------------------------------------
# the API


def _compile(source: str, of: str | None, values: Mapping[str, Any] | None) -> Any:
    from difftape.language.compiler import compile_program

    graph = compile_program(source, of=of, values=values)
    if graph.missing:  # inputs without a value are scalars
        filled = dict(values or {})
        filled.update({n: 0.0 for n in graph.missing})
        graph = compile_program(source, of=of, values=filled)
    return graph


def _order_names(graph: Any, wrt: list[str] | None) -> list[str]:
    known = list(graph.variables) + [c for c in graph.consts if c not in graph.variables]
    if wrt is None:
        return list(graph.variables)
    for name in wrt:
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            listed = f"; choose from {', '.join(known)}" if known else ""
            raise DifftapeError("name", f"--wrt {name}: not an input, variable or const of the program{hint}{listed}")
    wanted = set(wrt)
    return [n for n in known if n in wanted]


def derivative_exprs(
    source: str,
    *,
    wrt: list[str] | None = None,
    of: str | None = None,
    order: int = 1,
    values: Mapping[str, Any] | None = None,
) -> tuple[Any, dict[str, Expr]]:
    """(graph, {input: derivative expression}): :func:`derive` before printing."""
    if not isinstance(order, int) or order < 1:
        raise DifftapeError("value", f"order must be a positive integer, not {order!r}")
    graph = _compile(source, of, values)
    names = _order_names(graph, wrt)
    float_dtype = np.dtype(graph.dtype)
    steps, sources = graph_steps(graph, names, float_dtype)
    grads = backward(steps, graph.target, sources)
    out: dict[str, Expr] = {}
    for name, s in zip(names, sources):
        shape = steps[s].shape
        g = grads[s]
        d = const(0, shape) if g is None else g
        for _ in range(2, order + 1):
            if shape != ():
                raise DifftapeError(
                    "shape",
                    f"order {order} needs scalar inputs, but {name} has shape {shape}; "
                    "use `difftape hessian` for the second derivatives of arrays",
                )
            d = derive_expr(d, name, shape)
        out[name] = d
    return graph, out


def derive(
    source: str,
    *,
    wrt: list[str] | None = None,
    of: str | None = None,
    order: int = 1,
    values: Mapping[str, Any] | None = None,
) -> DiffResult:
    """The derivative of the target (of its sum, when not a scalar) w.r.t. each input, as text.

    Each text is a difftape program (bindings for shared parts, then the expression) that
    refers to the original program's leaves by name: evaluated with the same values it
    gives the tape's gradient. ``order=2`` differentiates again (scalar inputs).
    """
    try:
        graph, exprs = derivative_exprs(source, wrt=wrt, of=of, order=order, values=values)
        texts = {}
        for name, e in exprs.items():
            taken = set(graph.bindings) | set(graph.inputs)
            lines, e = _bind_randoms(graph, e, taken)
            texts[name] = "".join(line + "; " for line in lines) + to_text(e, taken)
    except RecursionError:
        raise DifftapeError("limit", "the program is nested too deeply to differentiate symbolically") from None
    return DiffResult(graph.target_name, texts)


__all__ = ["DiffResult", "derive", "derivative_exprs", "backward", "shape_of"]
