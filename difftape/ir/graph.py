"""The compiled form of a program: a flat list of nodes in topological order.

A :class:`Graph` is what the compiler (``compiler.py``) produces and what the results
layer runs; ``difftape.function`` records the same kind of graph when it traces a Python
function (inputs ``arg0, arg1, ...``, captured Variables ``captured0, ...``, constants as
literals, its results and guards in :attr:`Graph.results` and :attr:`Graph.guards`).
Each node is one operation of the engine's table (``ops.OPS``) or one of
a few graph-level kinds (:data:`GRAPH_KINDS`), with its inputs (earlier node ids),
static parameters, the statically inferred shape and dtype, and the span of source it
came from. Running the graph walks the list once, in order: no recursion, and shared
subexpressions are computed once. Every operation goes through the engine's
``apply``, so an active :class:`~difftape.engine.tape.Tape` records the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from difftape.errors import DifftapeError, did_you_mean
from difftape.language.syntax import Span, error_at

#: Node kinds that are not operations of the engine's table.
GRAPH_KINDS = {
    "literal": "a constant value (a Python number stays a Python number: weak dtype)",
    "input": "a value given from outside (an unbound name, or an overridden binding)",
    "variable": "a binding that uses no other name: a leaf, differentiated by default",
    "random": "draws from numpy's default_rng(seed), in the order the calls appear in the source",
    "const": "const(...) of an expression that uses no variable: its value, never differentiated",
}

Shape = tuple[int, ...]


class NodeRef:
    """A node's value where the graph holds more than node ids: inside another node's parameters
    (a traced ``x[i]`` whose index ``i`` is computed: ``{"index": NodeRef(3)}``; the node's id is
    then in :attr:`Graph.dynamic`) and among a traced function's :attr:`Graph.results`."""

    __slots__ = ("id",)

    def __init__(self, id: int) -> None:
        self.id = id

    def __repr__(self) -> str:
        return f"%{self.id}"


def resolve_refs(value: Any, vals: list[Any]) -> Any:
    """``value`` with each :class:`NodeRef` in it (in tuples, lists, slices) replaced by that node's value."""
    if isinstance(value, NodeRef):
        return vals[value.id]
    if isinstance(value, (tuple, list)):
        return type(value)(resolve_refs(v, vals) for v in value)
    if isinstance(value, slice):
        return slice(*(resolve_refs(v, vals) for v in (value.start, value.stop, value.step)))
    return value


class Node:
    """One step of the graph.

    ``op`` is an ``OPS`` name or a key of :data:`GRAPH_KINDS`; ``shape``/``dtype`` are
    None only when the node depends on an input without a value. ``dtype`` is a numpy
    dtype, or the Python type ``int``/``float``/``bool`` of a weakly typed literal.
    ``name`` is the binding (or input) name this node is the value of, if any; when
    ``leaf`` is set, :meth:`Graph.run` passes the value through its ``leaf`` hook.
    Nodes compare (and hash) by identity.
    """

    __slots__ = ("id", "op", "inputs", "params", "shape", "dtype", "span", "name", "leaf")

    id: int
    op: str
    inputs: tuple[int, ...]
    params: dict[str, Any]
    shape: Shape | None
    dtype: Any
    span: Span | None
    name: str | None
    leaf: bool

    def __init__(
        self,
        id: int,
        op: str,
        inputs: tuple[int, ...],
        params: dict[str, Any],
        shape: Shape | None,
        dtype: Any,
        span: Span | None,
        name: str | None = None,
        leaf: bool = False,
    ) -> None:
        self.id = id
        self.op = op
        self.inputs = inputs
        self.params = params
        self.shape = shape
        self.dtype = dtype
        self.span = span
        self.name = name
        self.leaf = leaf

    def __repr__(self) -> str:
        return (
            f"Node(id={self.id!r}, op={self.op!r}, inputs={self.inputs!r}, params={self.params!r}, "
            f"shape={self.shape!r}, dtype={self.dtype!r}, span={self.span!r}, name={self.name!r}, "
            f"leaf={self.leaf!r})"
        )


def draw(rng: Any, params: dict[str, Any]) -> np.ndarray:
    """The random array of a ``random`` node: drawn in float64, then rounded to the node's dtype.

    So a float32 run sees the float64 run's numbers rounded (numpy's float32 draws are a different
    stream). Rounding could lift a uniform draw just below 1 to 1.0: those stay below 1.
    """
    dtype = np.dtype(params["dtype"])
    if params["dist"] == "normal":
        values = rng.standard_normal(params["shape"])
    else:
        values = rng.random(params["shape"])
    if dtype == np.float64:
        return values
    out = values.astype(dtype)
    if params["dist"] != "normal":
        np.minimum(out, np.nextafter(dtype.type(1), dtype.type(0)), out=out)
    return out


_UNSET: Any = object()


def _direct_call(op: Any) -> tuple[Any, int] | None:
    """(the engine's function, 1 or 2) for an op of one or two tensor inputs and no parameters, else None:
    ``tape.unary``/``tape.binary``, the functions ``difftape.sin`` and ``t * u`` are."""
    from difftape.engine.tape import binary, unary

    if op.params or op.variadic or op.optional or len(op.args) not in (1, 2):
        return None
    return (unary(op), 1) if len(op.args) == 1 else (binary(op), 2)


class Graph:
    """A compiled program; see the module docstring. Built by ``compiler.compile_program``.

    Graphs compare (and hash) by identity. ``values`` and ``missing`` default to a new
    empty dict and list for each graph. A traced function's graph also has ``results`` (its
    return structure, :class:`NodeRef` leaves), ``guards`` (the values its Python body decided
    on, which a replay checks) and ``dynamic`` (the ids of nodes whose params hold a
    :class:`NodeRef`); the compiler's graphs leave them None, empty and empty.
    """

    nodes: list[Node]
    target: int
    target_name: str
    inputs: list[str]
    variables: list[str]
    consts: list[str]
    bindings: dict[str, int]
    source: str
    values: dict[str, Any]
    missing: list[str]
    dtype: str
    results: Any
    guards: list[Any]
    dynamic: frozenset[int]

    def __init__(
        self,
        nodes: list[Node],
        target: int,
        target_name: str,
        inputs: list[str],
        variables: list[str],
        consts: list[str],
        bindings: dict[str, int],
        source: str,
        values: dict[str, Any] | None = None,
        missing: list[str] | None = None,
        dtype: str = "float64",
        *,
        results: Any = None,
        guards: list[Any] | None = None,
        dynamic: frozenset[int] = frozenset(),
    ) -> None:
        self.nodes = nodes
        self.target = target
        self.target_name = target_name
        self.inputs = inputs
        self.variables = variables
        self.consts = consts
        self.bindings = bindings
        self.source = source
        self.values = {} if values is None else values
        self.missing = [] if missing is None else missing
        self.dtype = dtype
        self.results = results
        self.guards = [] if guards is None else guards
        self.dynamic = dynamic

    def __repr__(self) -> str:
        traced = ""
        if self.results is not None or self.guards or self.dynamic:
            traced = f", results={self.results!r}, guards={self.guards!r}, dynamic={set(self.dynamic)!r}"
        return (
            f"Graph(nodes={self.nodes!r}, target={self.target!r}, target_name={self.target_name!r}, "
            f"inputs={self.inputs!r}, variables={self.variables!r}, consts={self.consts!r}, "
            f"bindings={self.bindings!r}, source={self.source!r}, values={self.values!r}, "
            f"missing={self.missing!r}, dtype={self.dtype!r}{traced})"
        )

    # -- running -----------------------------------------------------------------------------
    def check_values(self) -> None:
        """Raise the ``name`` error for the first input that has no value (compiling defers it)."""
        if not self.missing:
            return
        name = self.missing[0]
        node = next(n for n in self.nodes if n.op == "input" and n.name == name)
        known = [n for n in (*self.bindings, *self.values) if n != name]
        hint = did_you_mean(name, known)
        others = f"; also missing: {', '.join(self.missing[1:])}" if len(self.missing) > 1 else ""
        raise self._error(
            "name",
            f"no value for input '{name}': it is never bound, so give it a value{hint}{others}",
            node,
        )

    def run(
        self,
        *,
        seed: int = 0,
        leaf: Callable[[str, Any], Any] | None = None,
        outputs: Iterable[str] = (),
    ) -> Any:
        """Evaluate every node once, in order, on the engine; return the target's Tensor.

        ``leaf(name, value)`` is called for each variable, input and const binding, and
        its result replaces the value (the results layer promotes and watches there).
        With ``outputs`` (binding or input names), the result is ``(target, {name: value})``.
        Random draws happen first, in source order, so they do not depend on the order
        in which the graph runs.
        """
        from difftape.engine.tape import apply
        from difftape.engine.tensor import Tensor
        from difftape.ops import OPS

        self.check_values()
        wanted = list(outputs)
        named = self.named_nodes() if wanted else {}
        for name in wanted:
            if name not in named:
                raise DifftapeError("name", f"no binding or input named '{name}'{did_you_mean(name, named)}")
        vals: list[Any] = [None] * len(self.nodes)
        randoms = sorted((n for n in self.nodes if n.op == "random"), key=lambda n: n.params["order"])
        rng = np.random.default_rng(seed) if randoms else None  # numpy.random costs ~10 ms to import
        for node in randoms:
            vals[node.id] = Tensor(draw(rng, node.params))
        dynamic = self.dynamic
        calls: dict[str, Any] = {}  # op name -> (the engine's function of its one or two inputs, arity) or None
        with np.errstate(all="ignore"):
            for node in self.nodes:
                op = node.op
                if op in GRAPH_KINDS:
                    if op == "literal":
                        value = node.params["value"]
                    elif op == "variable":
                        value = vals[node.inputs[0]]
                    elif op == "random":
                        value = vals[node.id]
                    elif op == "input":
                        value = self.values[node.name]
                    else:  # const
                        inner = vals[node.inputs[0]]
                        value = Tensor(inner._value) if isinstance(inner, Tensor) else inner
                else:
                    inputs = node.inputs
                    params = node.params
                    call = calls.get(op, _UNSET)
                    if call is _UNSET:
                        call = calls[op] = _direct_call(OPS[op])
                    try:
                        if call is not None and not params and len(inputs) == call[1]:
                            # the engine's own function for an op of one or two inputs and no parameters:
                            # what ``apply`` does, with the common cases inlined (and recorded as such)
                            if call[1] == 1:
                                value = call[0](vals[inputs[0]])
                            else:
                                value = call[0](vals[inputs[0]], vals[inputs[1]])
                        else:
                            if dynamic and node.id in dynamic:
                                params = {k: resolve_refs(v, vals) for k, v in params.items()}
                            value = apply(OPS[op], tuple([vals[i] for i in inputs]), params)
                    except DifftapeError as err:
                        if err.line is None and node.span is not None:
                            err.line, err.column = node.span.line, node.span.column
                        raise err.with_source(self.source) from None
                    except (ArithmeticError, ValueError, TypeError, IndexError, np.linalg.LinAlgError) as err:
                        raise self._error("value", f"{op} failed: {err}", node) from None
                if node.leaf and leaf is not None:
                    value = leaf(node.name, value)
                vals[node.id] = value
        out = vals[self.target]
        if not isinstance(out, Tensor):
            out = Tensor(np.asarray(out))
        if not wanted:
            return out
        return out, {name: vals[named[name]] for name in wanted}

    def named_nodes(self) -> dict[str, int]:
        """Node id of every binding and input, by name."""
        named = {n.name: n.id for n in self.nodes if n.op == "input" and n.name not in self.bindings}
        named.update(self.bindings)
        return named

    def _error(self, kind: str, message: str, node: Node) -> DifftapeError:
        if node.span is None:
            return DifftapeError(kind, message, source=self.source)
        return error_at(kind, message, node.span, self.source)

    # -- rendering -----------------------------------------------------------------------------
    def node_label(self, node: Node) -> str:
        """The op with its static parameters, e.g. ``sum(axis=0)`` or ``literal 3``."""
        return _label(node)

    def to_text(self) -> str:
        """One node a line: id, op, inputs, shape, dtype, source span and the name it binds."""
        return render_text(self.nodes, self.target, self.target_name)

    def to_dot(self) -> str:
        """The graph in Graphviz DOT: one box per node, edges from inputs to users."""
        return render_dot(self.nodes, self.target, self.target_name)


# ----------------------------------------------------------------------------------------
# rendering, shared with any other list of nodes (a backward graph can reuse it)


def _fmt_value(v: Any) -> str:
    if isinstance(v, NodeRef):
        return repr(v)
    if isinstance(v, slice):
        parts = ["" if x is None else _fmt_value(x) for x in (v.start, v.stop)]
        step = "" if v.step is None else ":" + _fmt_value(v.step)
        return ":".join(parts) + step
    if isinstance(v, tuple):
        return "(" + ", ".join(_fmt_value(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, np.ndarray):
        text = np.array2string(v, separator=", ", threshold=8, edgeitems=2)
        return " ".join(text.split())
    if isinstance(v, np.dtype):
        return str(v)
    return repr(v)


def _label(node: Node) -> str:
    p = node.params
    if node.op == "literal":
        return f"literal {_fmt_value(p['value'])}"
    if node.op in ("input", "variable"):
        return f"{node.op} {node.name}"
    if node.op == "random":
        return f"{'randn' if p['dist'] == 'normal' else 'rand'}{_fmt_value(tuple(p['shape']))}"
    if node.op == "getitem":
        index = p.get("index", ())
        items = index if isinstance(index, tuple) else (index,)
        return "getitem[" + ", ".join(_fmt_value(i) for i in items) + "]"
    shown = {k: v for k, v in p.items() if k != "dtype"}
    if not shown:
        return node.op
    return node.op + "(" + ", ".join(f"{k}={_fmt_value(v)}" for k, v in shown.items()) + ")"


def _fmt_dtype(dtype: Any) -> str:
    if dtype is None:
        return "?"
    if isinstance(dtype, type):
        return f"{dtype.__name__} (weak)"
    return str(np.dtype(dtype))


def _fmt_shape(shape: Shape | None) -> str:
    return "?" if shape is None else _fmt_value(tuple(shape))


def render_text(nodes: list[Node], target: int, target_name: str) -> str:
    """The node table of :meth:`Graph.to_text` for any node list."""
    rows = [("id", "op", "inputs", "shape", "dtype", "span", "binds")]
    for n in nodes:
        binds = n.name or ""
        if n.id == target:
            binds = (binds + " " if binds and binds != target_name else "") + f"=> {target_name}"
        rows.append(
            (
                f"%{n.id}",
                _label(n),
                " ".join(f"%{i}" for i in n.inputs) or "-",
                _fmt_shape(n.shape),
                _fmt_dtype(n.dtype),
                str(n.span) if n.span is not None else "-",
                binds,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render_dot(nodes: list[Node], target: int, target_name: str) -> str:
    """The Graphviz DOT text of :meth:`Graph.to_dot` for any node list."""
    out = ["digraph difftape {", "  rankdir=LR;", '  node [shape=box, fontname="monospace"];']
    for n in nodes:
        label = f"%{n.id} {_label(n)}\n{_fmt_shape(n.shape)} {_fmt_dtype(n.dtype)}"
        if n.name and n.op not in ("input", "variable"):
            label = f"{n.name} =\n{label}"
        attrs = [f"label={_dot_quote(label)}"]
        if n.id == target:
            attrs.append("peripheries=2")
            attrs.append(f"xlabel={_dot_quote(target_name)}")
        if n.op in ("input", "variable"):
            attrs.append("style=rounded")
        out.append(f"  n{n.id} [{', '.join(attrs)}];")
    for n in nodes:
        for i in n.inputs:
            out.append(f"  n{i} -> n{n.id};")
    out.append("}")
    return "\n".join(out) + "\n"


def input_values(values: Mapping[str, Any] | None) -> dict[str, Any]:
    """Input values as the graph keeps them: numbers stay Python numbers, the rest arrays."""
    from difftape.engine.tensor import Tensor

    out: dict[str, Any] = {}
    for name, v in (values or {}).items():
        if isinstance(v, (bool, int, float)) or isinstance(v, Tensor):
            out[name] = v
        else:
            out[name] = np.asarray(v)
    return out
