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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from difftape.errors import DifftapeError
from difftape.ops import OPS, vjp_for
from difftape.transforms import reverse
from difftape.transforms.symbolic import simplify as S  # noqa: N812 - S for the simplifying constructors, like F
from difftape.transforms.symbolic.expr import Budget, Expr, OverBudget, budget, const, make, postorder, var
from difftape.transforms.symbolic.formats import to_format
from difftape.transforms.symbolic.printer import to_text

#: Graph-level node kinds that are leaves of the derivative.
_LEAF_KINDS = ("input", "variable", "const")

#: Default of ``diff --max-terms``: the most expression nodes one ``derive`` may build (about 0.1 ms
#: each, so a few seconds of work at most). ``check`` derives its analytic reference without a limit.
DEFAULT_MAX_TERMS = 50_000
#: Growth is extrapolated to the order asked only from an order that built at least this many nodes
#: (below it the next order is cheap anyway, and small counts make noisy ratios).
_EXTRAPOLATE_FROM = 500


@dataclass
class DiffResult:
    """The derivatives of ``of``, as program text, in input order.

    ``diff`` holds the tape's own form (with the guards that keep it finite at edge points:
    what ``check`` evaluates); ``printed`` the form a person writes (guards dropped, see
    ``notes``). Order 1 and orders above 2: ``{input: text}``; order 2: the whole Hessian,
    ``{a: {b: text}}`` (block ``a, b`` of shape ``a.shape + b.shape``). ``values`` (when every
    input had a value) has the derivatives' values at that point, in the same structure.
    """

    of: str
    diff: dict[str, Any] = field(default_factory=dict)
    order: int = 1
    printed: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    values: dict[str, Any] | None = None
    exprs: dict[str, Any] = field(default_factory=dict, repr=False)  # printed form, as expressions


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
            _PLUS if n.op == "plus" else _TIMES if n.op == "times" else OPS.get(
                "where" if n.op == "guard" else n.op) if n.args else None
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
        graph._filled = True  # (so there is no point to give values at)
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
) -> tuple[Any, dict[str, Any]]:
    """(graph, derivatives as expressions, in the tape's guarded form): :func:`derive` before printing.

    Order 2 gives the whole Hessian ``{a: {b: expr}}``; other orders ``{name: expr}``.
    """
    graph, exprs, _ = _derivatives(source, wrt=wrt, of=of, order=order, values=values)
    return graph, exprs


#: The largest array input whose Hessian blocks are printed (one row per element).
HESSIAN_ROWS = 64


class _Growth:
    """The derivative order by order: progress, and error[limit] as soon as its growth says the orders
    still to come would build more nodes than the budget allows (expression swell grows the work
    several times an order, so waiting for the budget to run out would waste most of it)."""

    def __init__(self, budget: Budget | None, order: int, on_step: Callable[[int, int], Any] | None,
                 option: str = "--max-terms") -> None:
        self.budget, self.order, self.on_step = budget, order, on_step
        self.option = option  # how the caller raises the limit, for the messages
        self.total = self.steps = 0
        self.sizes: list[int] = []  # nodes of the derivative at each order done (of the current input)
        self.built: list[int] = []  # nodes built by then

    def inputs(self, n: int) -> None:
        """The derivation differentiates ``n`` inputs: its steps are their orders (order 2: Hessian blocks)."""
        self.total = n * self.order if self.order > 2 else n * n if self.order == 2 else n

    def step(self) -> None:
        self.steps += 1
        if self.on_step is not None:
            self.on_step(self.steps, self.total)

    def start(self) -> None:
        """A new input: its orders start again from the first."""
        self.sizes, self.built = [], []

    def done(self, k: int, d: Expr) -> None:
        """Order ``k`` of the current input is ``d``: refuse now if the orders to come would go over the budget."""
        self.sizes.append(len(postorder(d)))
        b = self.budget
        self.built.append(0 if b is None else b.built)
        self.step()
        if b is None or b.limit is None or k >= self.order or len(self.built) < 3:
            return
        last, before = self.built[-1] - self.built[-2], self.built[-2] - self.built[-3]
        if last < _EXTRAPOLATE_FROM:
            return
        ratio = max(last / max(before, 1), 1.0)
        estimate = self.built[-1] + sum(last * ratio**j for j in range(1, self.order - k + 1))
        if estimate > b.limit:
            from difftape.language.cost import _fmt, _round_up

            raise DifftapeError(
                "limit",
                f"`diff --order {self.order}` of this program would build about {_fmt(_two_digits(estimate))} "
                f"expression nodes or more, over the limit of {_fmt(b.limit)}: the work grows about {ratio:.1f} "
                "times an order "
                f"(the derivative has {self.history()}); if you mean it, raise the limit with {self.option} "
                f"{int(_round_up(estimate))}",
            )

    def history(self) -> str:
        """The derivative's size at each order done, for the messages."""
        sizes = ", ".join(f"{n:,}" for n in self.sizes)
        k = len(self.sizes)
        return f"{sizes} nodes at orders 1 to {k}" if k > 1 else f"{sizes} nodes at order 1"

    def over(self) -> DifftapeError:
        """The error for a budget that ran out (:class:`OverBudget`) before the end."""
        from difftape.language.cost import _fmt

        b = self.budget
        limit = 0 if b is None or b.limit is None else b.limit
        what = f"`diff --order {self.order}`" if self.order > 1 else "`diff`"
        where = ""
        if self.sizes and self.order > 1:
            where = f" (at order {min(len(self.sizes) + 1, self.order)}; the derivative has {self.history()})"
        return DifftapeError(
            "limit",
            f"{what} of this program builds more than {_fmt(limit)} expression nodes{where}, over the limit "
            f"of {_fmt(limit)}; if you mean it, raise the limit with {self.option} {10 * max(limit, 1)}",
        )


def _two_digits(x: float) -> float:
    """``x`` rounded down to two significant digits (an estimate is not exact to the node)."""
    if x < 100:
        return float(int(x))
    scale = 10 ** (len(str(int(x))) - 2)
    return float(int(x) // scale * scale)


def _derivatives(source: str, *, wrt: list[str] | None, of: str | None, order: int,
                 values: Mapping[str, Any] | None,
                 growth: _Growth | None = None) -> tuple[Any, dict[str, Any], GraphView]:
    if not isinstance(order, int) or isinstance(order, bool) or order < 1:
        raise DifftapeError("value", f"order must be a positive integer, not {order!r}")
    graph = _compile(source, of, values)
    names = _order_names(graph, wrt)
    if growth is not None:
        growth.inputs(len(names))
    float_dtype = np.dtype(graph.dtype)
    view = GraphView(graph, names, float_dtype)
    sources = [view.sources[n] for n in names]
    grads = backward(view, graph.target, sources, tuple(graph.nodes[graph.target].shape))
    shapes = {name: tuple(graph.nodes[s].shape) for name, s in zip(names, sources)}
    first: dict[str, Expr] = {}
    for name, s in zip(names, sources):
        g = grads[s]
        first[name] = const(0, shapes[name]) if g is None else g
    if order == 1:
        return graph, first, view
    if order == 2:
        hessian: dict[str, dict[str, Expr]] = {}
        for a in names:
            for b in names:
                hessian.setdefault(a, {})[b] = hessian_block(first[a], shapes[a], b, shapes[b])
                if growth is not None:
                    growth.step()
        return graph, hessian, view
    for name in names:
        if shapes[name] != ():
            raise DifftapeError(
                "shape",
                f"order {order} needs scalar inputs, but {name} has shape {shapes[name]}; "
                "--order 2 gives the whole Hessian of arrays",
            )
    out: dict[str, Expr] = {}
    for name in names:
        shape = shapes[name]
        d = first[name]
        if growth is not None:
            growth.start()
            growth.done(1, d)
        for k in range(2, order + 1):
            d = derive_expr(d, name, shape)
            if growth is not None:
                growth.done(k, d)
        out[name] = d
    return graph, out, view


def hessian_block(da: Expr, ashape: tuple[int, ...], b: str, bshape: tuple[int, ...]) -> Expr:
    """d(da)/d(b), of shape ``ashape + bshape``: for an array ``da``, one row per element, stacked."""
    if ashape == ():
        return derive_expr(da, b, bshape)
    n = int(np.prod(ashape))
    if n > HESSIAN_ROWS:
        raise DifftapeError(
            "limit", f"--order 2 prints Hessian blocks of inputs up to {HESSIAN_ROWS} elements, and this one has "
            f"{n}; use `difftape hessian` for its values")
    rows = [derive_expr(S.call("getitem", (da,), {"index": idx}), b, bshape) for idx in np.ndindex(*ashape)]
    return S.reshape(assemble(rows, bshape), ashape + bshape)


def assemble(rows: list[Expr], shape: tuple[int, ...]) -> Expr:
    """``stack(rows)`` (each of ``shape``) written as a person would: ``2*x``, ``2*y*eye(3)``, ``diag(v)``."""
    n = len(rows)
    if shape == ():
        found = _unindex(rows)
        if found is not None:
            return S.fit(found, (n,))
    elif len(shape) == 1 and shape[0] == n:
        diag = [_one_hot(r, i, n) for i, r in enumerate(rows)]
        if all(d is not None for d in diag):
            found = _unindex(diag)  # type: ignore[arg-type]
            if found is not None:
                if found.shape == ():
                    return S.multiply(found, S.call("eye", (), {"N": n, "M": None}))
                return S.call("diag", (found,), {})
    if all(r is rows[0] for r in rows):
        return S.fit(S.reshape(rows[0], (1,) + shape), (n,) + shape)
    return S.call("stack", (rows,), {"axis": 0})


def _one_hot(r: Expr, i: int, n: int) -> Expr | None:
    """The scalar ``s`` when the vector ``r`` is ``s`` at position ``i`` of ``n`` and exact zeros elsewhere."""
    if n == 1:
        return S.reshape(r, ())
    if r.op == "concatenate":
        pos, found = 0, None
        for p in r.args:
            m = p.shape[0]
            if p.op == "const" and p.is_const(0):
                pos += m
                continue
            if found is not None or m != 1 or pos != i:
                return None
            found, pos = p, pos + 1
        return None if found is None else S.reshape(found, ())
    if r.op == "const" and isinstance(r.value, np.ndarray):
        v = r.value
        if v.shape == (n,) and np.count_nonzero(v) <= 1 and all(v[j] == 0 for j in range(n) if j != i):
            return const(v[i].item())
        return None
    if r.op != "times":
        return None
    hot = None
    for k, (b, e) in enumerate(zip(r.args, r.exps)):
        if b.shape == (n,) and e == 1:
            s = _one_hot(b, i, n) if b.op in ("concatenate", "const") else None
            if s is not None:
                if hot is not None:
                    return None
                hot = (k, s)
    if hot is None:
        return None
    items = []
    for k, (b, e) in enumerate(zip(r.args, r.exps)):
        if k == hot[0]:
            items.append((hot[1], 1))
        elif b.shape == ():
            items.append((b, e))
        else:
            items.append((S.call("getitem", (b,), {"index": (i,)}), e))
    return S.prod_of(items, r.value)


def _unindex(rows: list[Expr]) -> Expr | None:
    """A vector ``v`` with ``v[i]`` the scalar ``rows[i]``: the rows anti-unified (``x[0], x[1] -> x``)."""
    n = len(rows)
    first = rows[0]
    if all(r is first for r in rows):
        return first
    if all(r.op == "getitem" for r in rows):
        base = first.args[0]
        if base.shape == (n,) and all(r.args[0] is base and r.param("index") == (i,) for i, r in enumerate(rows)):
            return base
        return None
    if first.op == "times" and all(r.op == "times" and r.exps == first.exps and r.value == first.value
                                   and len(r.args) == len(first.args) for r in rows):
        cols = [_unindex([r.args[j] for r in rows]) for j in range(len(first.args))]
        if all(c is not None for c in cols):
            return S.prod_of([(c, e) for c, e in zip(cols, first.exps)], first.value)  # type: ignore[misc]
        return None
    if first.op == "plus" and all(r.op == "plus" and len(r.args) == len(first.args) for r in rows):
        cols = [_unindex([r.args[j] for r in rows]) for j in range(len(first.args))]
        if all(c is not None for c in cols):
            return S.sum_of(cols)  # type: ignore[arg-type]
        return None
    if first.op not in ("const", "name", "times", "plus", "guard") and first.args and all(
            r.op == first.op and r.params == first.params and len(r.args) == len(first.args) for r in rows):
        op = OPS.get(first.op)
        if op is None or op.kind != "elementwise" or op.variadic:
            return None
        cols = [_unindex([r.args[j] for r in rows]) for j in range(len(first.args))]
        if all(c is not None for c in cols):
            return S.call(first.op, tuple(cols), dict(first.params))
    return None


def _user_bindings(graph: Any, view: GraphView) -> list[tuple[str, Expr]]:
    """The program's own intermediate names and their expressions (graph order), as the pass built them."""
    out = []
    for name, k in graph.bindings.items():
        node = graph.nodes[k]
        e = view.values[k]
        if node.leaf or e is None or e.op in ("name", "const") or e.ph:
            continue
        out.append((name, e))
    out.sort(key=lambda p: graph.bindings[p[0]])
    return out


def _rebind(roots: list[Expr], bindings: list[tuple[str, Expr]]) -> tuple[list[Expr], list[tuple[str, Expr]]]:
    """``roots`` written with the program's own names for its bound subexpressions, and the bindings used.

    A binding is used when its expression occurs in a root (or in another binding used); its
    expression, too, refers to the earlier bindings by name.
    """
    if not bindings:
        return roots, []
    mapping = {id(e): var(name, e.shape, e.dtype) for name, e in bindings}
    sub = _Substitution(mapping)
    rewritten = [(name, sub.inside(e)) for name, e in bindings]
    new_roots = [sub(r) for r in roots]
    # a binding is kept where the derivative spells its expression out more than once
    counts: dict[str, int] = {}
    for r in new_roots:
        for name, k in _occurrences(r).items():
            counts[name] = counts.get(name, 0) + k
    for name, e in reversed(rewritten):  # (a binding's uses count once per use of the binding)
        for n2, k in _occurrences(e).items():
            if n2 != name:
                counts[n2] = counts.get(n2, 0) + k * counts.get(name, 0)
    inline = {name for name, _ in rewritten if counts.get(name, 0) < 2}
    if inline:
        back = _Substitution({})
        for name, e in rewritten:  # (in graph order: earlier bindings are expanded already)
            if name in inline:
                back.mapping[id(var(name, e.shape, e.dtype))] = back(e)
        new_roots = [back(r) for r in new_roots]
        rewritten = [(name, back(e)) for name, e in rewritten if name not in inline]
    used: set[str] = set()
    stack = [n.value for r in new_roots for n in postorder(r) if n.op == "name"]
    table = dict(rewritten)
    while stack:
        name = stack.pop()
        if name in used or name not in table:
            continue
        used.add(name)
        stack.extend(n.value for n in postorder(table[name]) if n.op == "name")
    return new_roots, [(name, e) for name, e in rewritten if name in used]


class _Substitution:
    """``simplify.substitute`` for many roots at once, sharing what is rebuilt (bindings nest)."""

    def __init__(self, mapping: dict[int, Expr]) -> None:
        self.mapping = mapping
        self.done: dict[int, Expr] = {}

    def __call__(self, root: Expr) -> Expr:
        done, mapping = self.done, self.mapping
        for n in postorder(root):
            if id(n) in done:
                continue
            if id(n) in mapping:
                done[id(n)] = mapping[id(n)]
                continue
            args = tuple(done[id(a)] for a in n.args)
            done[id(n)] = n if all(x is y for x, y in zip(args, n.args)) else S.rebuild(n, args)
        return done[id(root)]

    def inside(self, root: Expr) -> Expr:
        """``root`` itself kept, its parts substituted."""
        args = tuple(self(a) for a in root.args)
        return root if all(x is y for x, y in zip(args, root.args)) else S.rebuild(root, args)


def _occurrences(root: Expr) -> dict[str, int]:
    """How many times each name appears in the printed tree of ``root`` (shared nodes counted per use)."""
    nodes = postorder(root)
    count = {id(root): 1}
    for n in reversed(nodes):
        c = count.get(id(n), 0)
        for a in n.args:
            count[id(a)] = count.get(id(a), 0) + c
    out: dict[str, int] = {}
    for n in nodes:
        if n.op == "name":
            out[n.value] = out.get(n.value, 0) + count.get(id(n), 0)
    return out


def _flat(tree: dict[str, Any]) -> list[tuple[tuple[str, ...], Expr]]:
    out = []
    for k, v in tree.items():
        if isinstance(v, dict):
            out.extend(((k, k2), e) for k2, e in v.items())
        else:
            out.append(((k,), v))
    return out


def _put(tree: dict[str, Any], key: tuple[str, ...], value: Any) -> None:
    if len(key) == 1:
        tree[key[0]] = value
    else:
        tree.setdefault(key[0], {})[key[1]] = value


def head(key: tuple[str, ...], order: int) -> str:
    """The label of one printed derivative: ``d/dx``, ``d2/dx2``, ``d2/dxdy``, ``d3/dx3``."""
    if order == 1:
        return f"d/d{key[0]}"
    if len(key) == 2:
        a, b = key
        return f"d2/d{a}2" if a == b else f"d2/d{a}d{b}"
    return f"d{order}/d{key[0]}{order}"


def derive(
    source: str,
    *,
    wrt: list[str] | None = None,
    of: str | None = None,
    order: int = 1,
    values: Mapping[str, Any] | None = None,
    seed: int = 0,
    fmt: str = "text",
    max_terms: int | None = DEFAULT_MAX_TERMS,
    on_step: Callable[[int, int], Any] | None = None,
    limit_option: str = "--max-terms",
) -> DiffResult:
    """The derivative of the target (of its sum, when not a scalar) w.r.t. each input, as text.

    Each text is a difftape program (bindings for shared parts, then the expression) that
    refers to the original program's leaves by name: evaluated with the same values it
    gives the tape's gradient (``diff``; ``printed`` wherever it is defined). ``order=2``
    gives the whole Hessian; higher orders differentiate scalar inputs again. ``fmt`` is the
    format of ``printed``: ``text`` (the language), ``latex`` or ``sympy`` (:mod:`.formats`).

    At most ``max_terms`` expression nodes are built (None: no limit); a derivation whose growth
    says it would build more is refused early (``error[limit]``, naming ``limit_option``: the command
    line's ``--max-terms``, the repl's ``:max-terms``).
    ``on_step(done, total)`` is called after each order of each input (order 2: each Hessian block).
    """
    if fmt not in ("text", "latex", "sympy"):
        raise DifftapeError("value", f"format must be text, latex or sympy, not {fmt!r}")
    from difftape.transforms.symbolic import notes as N  # noqa: N812

    try:
        with S.recording() as cancelled:
            # the budget is the derivation's: printing it is about linear in what it built
            with budget(max_terms) as spent:
                growth = _Growth(spent, order, on_step, limit_option)
                try:
                    graph, exprs, view = _derivatives(source, wrt=wrt, of=of, order=order, values=values,
                                                      growth=growth)
                except OverBudget:
                    raise growth.over() from None
            taken = set(graph.bindings) | set(graph.inputs)
            items = _flat(exprs)
            guarded = [e for _, e in items]
            cleaned: list[Expr] = []
            found: list[tuple[tuple[str, ...], Expr, Expr]] = []  # (key, guarded root, guard)
            for (key, e) in items:
                c, guards = S.unguard(e)
                cleaned.append(c)
                found.extend((key, e, g) for g in guards)
        binds = _user_bindings(graph, view)
        diff: dict[str, Any] = {}
        shown: dict[str, Any] = {}
        exprs_out: dict[str, Any] = {}
        for (key, _), g0, c in zip(items, guarded, cleaned):
            # each derivative is a program of its own: it keeps the bindings it uses several times
            (g,), gbinds = _rebind([g0], binds)
            (p,), pbinds = _rebind([c], binds)
            _put(diff, key, _program_text(graph, g, gbinds, taken))
            if fmt == "text":
                _put(shown, key, _program_text(graph, p, pbinds, taken))
            elif fmt == "latex":
                _put(shown, key, to_format(p, "latex", [(n, e) for n, e in pbinds if n in _names_of(p, pbinds)]))
            else:
                _put(shown, key, to_format(c, "sympy"))
            _put(exprs_out, key, p)
        notes = N.guard_notes(found, lambda k: head(k, order))
        notes += N.cancel_notes(cancelled, [(key, p) for (key, _), p in zip(items, cleaned)],
                                lambda k: head(k, order))
        vals = None
        if values is not None and not getattr(graph, "_filled", False):
            vals = _values(graph, diff, seed)
    except RecursionError:
        raise DifftapeError("limit", "the program is nested too deeply to differentiate symbolically") from None
    return DiffResult(graph.target_name, diff, order, shown, notes, vals, exprs_out)


def _names_of(root: Expr, binds: list[tuple[str, Expr]]) -> set[str]:
    """The names ``root`` uses, through the bindings it uses."""
    table = dict(binds)
    used: set[str] = set()
    stack = [n.value for n in postorder(root) if n.op == "name"]
    while stack:
        name = stack.pop()
        if name in used:
            continue
        used.add(name)
        if name in table:
            stack.extend(n.value for n in postorder(table[name]) if n.op == "name")
    return used


def _program_text(graph: Any, root: Expr, binds: list[tuple[str, Expr]], taken: set[str]) -> str:
    """Random redraws, the program's bindings the derivative uses, then the derivative (shared parts bound)."""
    used = {n.value for n in postorder(root) if n.op == "name"}
    stack = list(used)
    table = dict(binds)
    while stack:
        name = stack.pop()
        if name in table:
            for n in postorder(table[name]):
                if n.op == "name" and n.value not in used:
                    used.add(n.value)
                    stack.append(n.value)
    mine = [(name, e) for name, e in binds if name in used]
    lines, root = _bind_randoms(graph, root, taken)
    texts = [f"{name} = {to_text(e, taken)}" for name, e in mine]
    return "".join(line + "; " for line in lines + texts) + to_text(root, taken)


def _values(graph: Any, texts: dict[str, Any], seed: int) -> dict[str, Any]:
    """Each derivative's value at the program's point (the tape's form: what ``grad`` gives there)."""
    from difftape.language.compiler import compile_program

    leaves = [n for n in (*graph.inputs, *graph.bindings) if graph.nodes[graph.named_nodes()[n]].leaf]
    env = graph.run(seed=seed, outputs=leaves)[1] if leaves else {}
    env = {k: np.asarray(getattr(v, "_value", v)) for k, v in env.items()}
    float_dtype = np.dtype(graph.dtype)
    for k, v in env.items():
        if v.dtype.kind not in "fc":
            env[k] = v.astype(float_dtype)
    out: dict[str, Any] = {}
    for key, text in ((k, t) for k, t in _flat_text(texts)):
        value = compile_program(text, values=env, dtype=graph.dtype).run(seed=seed)._value
        _put(out, key, np.asarray(value, dtype=float_dtype))
    return out


def _flat_text(tree: dict[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    out = []
    for k, v in tree.items():
        if isinstance(v, dict):
            out.extend(((k, k2), t) for k2, t in v.items())
        else:
            out.append(((k,), v))
    return out


__all__ = ["DiffResult", "ExprView", "GraphView", "backward", "derive", "derivative_exprs", "hessian_block"]
