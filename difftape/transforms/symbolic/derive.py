"""Analytic derivatives: the op table's VJPs run on symbolic expressions, in reverse.

``derive`` compiles the program, sees every graph node as a symbolic expression
(leaves become names: inputs, variables and const bindings, whose values the caller
supplies when it runs the derivative; :class:`GraphView`), then runs reverse mode
(``transforms/reverse.py``, the very code of the tape's backward pass) with the symbolic
namespace ``F``: the same VJPs, the same unbroadcasting, and the same masks that make the
tape's ``where`` nan-safe. Because the tape's own rules produce the expression, its value
is the tape's gradient; the simplifying constructors only make it readable. ``order=2``
runs the same pass over the derivative's own expression (:class:`ExprView`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from difftape.errors import DifftapeError
from difftape.ops import OPS, vjp_for
from difftape.transforms import reverse
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
# the backward pass: reverse.py's, on views of the compiled graph or of an expression


#: VJPs of these ops read nothing but the gradient and the input shapes (``shape_of``).
_SHAPE_ONLY = {"add", "subtract", "negative", "positive", "sum", "mean", "reshape", "ravel", "expand_dims",
               "squeeze", "broadcast_to", "transpose", "getitem", "concatenate", "stack"}


class _Canonical:
    """An expression's canonical form (``plus``, ``times``) as reverse mode sees an op: elementwise."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.elementwise = True
        self.variadic = True
        self.vjps = ()


_PLUS, _TIMES = _Canonical("plus"), _Canonical("times")


def _prod_vjp(i: int) -> Any:
    def vjp(F: Any, g: Any, y: Expr, *xs: Expr) -> Expr:
        e = y.exps[i]
        items = [(b, x) for j, (b, x) in enumerate(zip(xs, y.exps)) if j != i]
        items.append((xs[i], S.as_num(e - 1)))
        return S.multiply(g, S.prod_of(items, S.as_num(y.value * e)))

    return vjp


def _plus_vjp(F: Any, g: Any, y: Expr, *xs: Expr) -> Any:
    return g


def _symbolic(op: Any, vjp: Any) -> Any:
    """A VJP run on expressions: its result lifted, a rule that cannot run there refused clearly."""

    def run(F: Any, g: Any, y: Any, *xs: Any, **params: Any) -> Expr:
        try:
            return S.lift(vjp(F, g, y, *xs, **params))
        except TypeError as exc:  # a rule that branches on values (Expr has no truth value)
            raise DifftapeError(
                "unsupported", f"diff: the gradient rule of {op.name} has no symbolic form here ({exc})") from None

    return run


class _SymbolicView(reverse.View):
    """What both symbolic views share: the canonical forms' VJPs, every VJP lifted to expressions."""

    nodes: list[Any]
    ops: list[Any]

    def __len__(self) -> int:
        return len(self.nodes)

    def op(self, k: int) -> Any:
        return self.ops[k]

    def vjp(self, op: Any, i: int) -> Any:
        if op is _PLUS:
            return _plus_vjp
        fn = _prod_vjp(i) if op is _TIMES else vjp_for(op, i)
        return None if fn is None else _symbolic(op, fn)


class GraphView(_SymbolicView):
    """The compiled graph's nodes as symbolic values (leaves named, the rest built on demand).

    A node's expression is built only when a VJP reads it: a long chain of additions never
    needs its partial sums, and building each would cost as much as all the terms. The VJPs of
    the ops in ``_SHAPE_ONLY`` get placeholders first, and real values only if they read them.
    ``sources`` maps each ``wrt`` name to its node.
    """

    def __init__(self, graph: Any, wrt: list[str], float_dtype: Any) -> None:
        self.nodes = graph.nodes
        self.values: list[Expr | None] = [None] * len(self.nodes)
        self.ops = []
        self.sources: dict[str, int] = {}
        for node in self.nodes:
            op = node.op
            shape = tuple(node.shape)
            leaf = None
            if node.leaf and node.name is not None and op in _LEAF_KINDS + ("stop_gradient",):
                leaf = var(node.name, shape, float_dtype if node.name in wrt else node.dtype)
                if node.name in wrt:
                    self.sources[node.name] = node.id
            elif op == "literal":
                leaf = const(node.params["value"], shape, node.dtype)
            elif op == "random":
                leaf = _random_leaf(node)
            elif op in ("const", "variable"):  # an unnamed const(...) of constants: its value
                leaf = self.value(node.inputs[0])
            if leaf is not None:
                self.values[node.id] = leaf
            self.ops.append(None if leaf is not None else OPS[op])

    def inputs(self, k: int) -> tuple[int, ...]:
        return tuple(self.nodes[k].inputs)

    def params(self, k: int) -> dict[str, Any]:
        return self.nodes[k].params

    def value(self, k: int) -> Expr:
        """The expression of node ``k`` (built inputs first, without recursion)."""
        values = self.values
        stack = [k]
        while stack:
            j = stack[-1]
            if values[j] is not None:
                stack.pop()
                continue
            node = self.nodes[j]
            missing = [i for i in node.inputs if values[i] is None]
            if missing:
                stack.extend(missing)
                continue
            ins = tuple(values[i] for i in node.inputs)
            values[j] = S.call(node.op, (ins,) if self.ops[j].variadic else ins, node.params)
            stack.pop()
        value = values[k]
        assert value is not None
        return value

    def operands(self, k: int, lazy: bool) -> tuple[Any, list[Any]]:
        node = self.nodes[k]
        if lazy and node.op in _SHAPE_ONLY:
            ins = [self.values[i] if self.values[i] is not None else _placeholder(tuple(self.nodes[i].shape))
                   for i in node.inputs]
            return _placeholder(tuple(node.shape)), ins
        return super().operands(k, lazy)

    def usable(self, parts: list[reverse.Part]) -> bool:
        # a placeholder in a gradient or mask: the VJP did read a value after all
        return not any(gi.ph or (m is not None and m.ph) for _, gi, m in parts)


class ExprView(_SymbolicView):
    """The nodes of an expression (for differentiating a derivative again); ``root`` is its node."""

    def __init__(self, root: Expr) -> None:
        self.nodes = postorder(root)
        index = {id(n): k for k, n in enumerate(self.nodes)}
        self.root = index[id(root)]
        self.ins = [tuple(index[id(a)] for a in n.args) for n in self.nodes]
        self.ops = [
            _PLUS if n.op == "plus" else _TIMES if n.op == "times" else OPS.get(n.op) if n.args else None
            for n in self.nodes
        ]

    def inputs(self, k: int) -> tuple[int, ...]:
        return self.ins[k]

    def params(self, k: int) -> dict[str, Any]:
        return dict(self.nodes[k].params)

    def value(self, k: int) -> Expr:
        return self.nodes[k]


def _placeholder(shape: tuple[int, ...]) -> Expr:
    return make("placeholder", shape=shape)


def _total(parts: list[Expr]) -> Expr:
    # contributions are summed once, when their node comes up (a sum of n terms built one
    # term at a time would cost n**2)
    return parts[0] if len(parts) == 1 else S.sum_of(parts)


def backward(view: reverse.View, target: int, sources: list[int], shape: tuple[int, ...]) -> dict[int, Expr | None]:
    """Symbolic ``Tape.gradient``: d(sum of node ``target``, of ``shape``)/d(node) for each source node."""
    return reverse.backward(S.F, view, target, const(1, shape), sources, total=_total)


def derive_expr(root: Expr, name: str, shape: tuple[int, ...]) -> Expr:
    """d(sum(root))/d(name) for an expression."""
    view = ExprView(root)
    sources = [k for k, n in enumerate(view.nodes) if n.op == "name" and n.value == name]
    if not sources:
        return const(0, shape)
    g = backward(view, view.root, sources[:1], root.shape)[sources[0]]
    return const(0, shape) if g is None else g


# ----------------------------------------------------------------------------------------
# random draws


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
    view = GraphView(graph, names, float_dtype)
    sources = [view.sources[n] for n in names]
    grads = backward(view, graph.target, sources, tuple(graph.nodes[graph.target].shape))
    out: dict[str, Expr] = {}
    for name, s in zip(names, sources):
        shape = tuple(graph.nodes[s].shape)
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


__all__ = ["DiffResult", "ExprView", "GraphView", "backward", "derive", "derivative_exprs"]
