"""Syntax tree to graph: name resolution, static shapes and dtypes, limits.

``compile_program`` turns program text into a :class:`~difftape.ir.graph.Graph` whose
every node has a static shape and dtype (from the op table's rules) before anything
runs, so a shape mismatch or an oversized allocation is reported at the operator that
causes it, with its line and column. Every walk here uses an explicit stack: a sum of
100,000 terms is a tree 100,000 deep.

Language rules that live here (the grammar cannot express them):

- bindings are order-independent; a name bound twice, a cycle, or a built-in name
  bound is an error; a name never bound is an input;
- functions ``f(t) = t**2 + 1`` are order-independent too, and inlined at each call (the
  nodes of a call carry the call's span); a function calling itself, directly or through
  others, is an error; parameters shadow bindings; other names in a body are the program's;
- a string is only ever a static parameter (einsum's subscripts), never a value;
- the target is ``of``, else the bare expression, else the one binding nobody uses;
- bindings that use no other name (leaf bindings) and inputs are the variables;
  ``const(...)`` makes a constant, or stops the gradient of an expression of variables;
- parameters (axis, shape, ...) must be compile-time constants;
- arithmetic on plain number literals is folded into a plain number, so it stays a
  weakly typed Python number (``x * (1/3)`` keeps a float32 ``x`` float32).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from difftape.errors import DifftapeError, did_you_mean
from difftape.ir.graph import Graph, Node, input_values
from difftape.language.parser import no_gc as _no_gc
from difftape.language.parser import parse, strip_bom
from difftape.language.syntax import (
    Assign,
    Attribute,
    Binary,
    Call,
    Define,
    Expr,
    Index,
    ListExpr,
    Name,
    Number,
    Paren,
    Program,
    Slice,
    Span,
    String,
    TupleExpr,
    Unary,
    children,
    error_at,
)

#: No node may have more elements than this; the check runs before anything is allocated.
MAX_ELEMENTS = 50_000_000
#: Most dimensions a value may have (numpy's own limit is 64).
MAX_DIMS = 32
#: Deepest nesting of calls of user-defined functions (each level inlines the next one's body).
MAX_CALL_DEPTH = 200
#: Most nodes that inlining the calls of user-defined functions may make in all: a function that calls
#: another twice, forty levels deep, would make 2**40.
MAX_INLINED_NODES = 250_000

FLOAT_DTYPES = ("float64", "float32")

#: Built-in constants: plain Python values (weak dtype).
CONSTANTS: dict[str, Any] = {
    "pi": math.pi,
    "e": math.e,
    "inf": math.inf,
    "nan": math.nan,
    "True": True,
    "False": False,
    "true": True,
    "false": False,
}

#: Functions of the language that are not operations of the engine's table.
LANGUAGE_FUNCTIONS = {
    "const": "const(expr): a constant; of an expression of variables, stops the gradient",
    "randn": "randn(*shape): standard normal draws (seeded, in source order)",
    "rand": "rand(*shape): uniform draws on [0, 1) (seeded, in source order)",
}

#: Other names of functions, as people type them (the parser reads ``ln(x)`` as ``log(x)``).
ALIASES = {"ln": "log"}

BINARY_OPS = {
    "+": "add",
    "-": "subtract",
    "*": "multiply",
    "/": "divide",
    "//": "floor_divide",
    "%": "remainder",
    "**": "power",
    "@": "matmul",
    "<": "less",
    "<=": "less_equal",
    ">": "greater",
    ">=": "greater_equal",
    "==": "equal",
    "!=": "not_equal",
}
UNARY_OPS = {"-": "negative", "+": "positive"}

# Constructors whose shape may be given as separate numbers: zeros(2, 3) == zeros((2, 3)).
_SPREAD_SHAPE = {"zeros", "ones", "reshape"}
_FLOAT_CONSTRUCTORS = {"zeros", "ones", "eye", "linspace"}
_SCALARS = (bool, int, float)


def function_names() -> list[str]:
    """Every function a program may call, sorted."""
    from difftape.ops import OPS

    return sorted({*OPS, *LANGUAGE_FUNCTIONS})


def builtin_names() -> set[str]:
    """Names a program may not bind: constants and functions."""
    return {*CONSTANTS, *function_names()}


def compile_program(
    source: str,
    *,
    of: str | None = None,
    values: Mapping[str, Any] | None = None,
    dtype: str = "float64",
) -> Graph:
    """Compile program text to a :class:`Graph`, checking names, shapes and limits.

    ``values`` gives inputs and may override bindings that use no other name; names
    the program does not have are ignored. An input without a value does not stop the
    compilation (so a caller can ask which inputs there are): the nodes that depend on
    it get no static shape, and ``Graph.check_values``/``Graph.run`` report it.
    """
    if dtype not in FLOAT_DTYPES:
        raise DifftapeError("value", f"unknown dtype {dtype!r}: choose float64 or float32")
    source = strip_bom(source) if isinstance(source, str) else source
    with _no_gc():
        program = parse(source)
        try:
            return _Compiler(program, values, dtype).compile(of)
        except DifftapeError as err:
            if err.line is not None:
                err.with_source(source)
            raise


# ----------------------------------------------------------------------------------------


def _strip(expr: Expr) -> Expr:
    while isinstance(expr, Paren):
        expr = expr.inner
    return expr


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _dtype_of_value(v: Any) -> Any:
    if type(v) in _SCALARS:
        return type(v)
    return np.asarray(v).dtype


class _NotConstantError(Exception):
    def __init__(self, node: Expr, why: str) -> None:
        super().__init__(why)
        self.node = node
        self.why = why


class _Compiler:
    def __init__(self, program: Program, values: Mapping[str, Any] | None, dtype: str) -> None:
        from difftape.ops import OPS

        self.ops = OPS
        self.source = program.source
        self.statements = program.statements
        self.values = input_values(values)
        self.dtype = dtype
        self.nodes: list[Node] = []
        self.live: list[bool] = []  # node depends on a leaf (input, variable, const binding)
        self.uses: list[int] = []  # how many nodes take each node as an input
        self.functions = set(function_names())
        self.binding: dict[str, Assign] = {}
        self.defs: dict[str, Define] = {}  # user-defined functions
        # while a function's body is inlined: its parameters (a node id, or ("literal", value) for a
        # literal argument, made afresh at each use so that folding never removes a shared node)
        self.scope: dict[str, Any] | None = None
        self.call_span: Span | None = None  # the outermost call being inlined: its nodes' span
        self.call_depth = 0
        self.inlined = 0  # nodes made by finished outermost calls
        self.inline_start = 0  # len(self.nodes) when the current outermost call began
        self.bind_node: dict[str, int] = {}
        self.input_node: dict[str, int] = {}
        self.first_seen: dict[str, int] = {}
        self.first_use: dict[str, Name] = {}  # earliest use of each input
        self.free_names: set[str] = set()
        self.in_source_order = False  # every binding is used after it only (set by _dependencies)
        self.leaves: set[str] = set()  # the bindings that use no other name (set by _dependencies)
        # (op, input shapes, input dtypes, params) -> (shape, dtype): programs repeat themselves.
        self._static_cache: dict[Any, tuple[tuple[int, ...], Any]] = {}

    # -- whole program -------------------------------------------------------------------------
    def compile(self, of: str | None) -> Graph:
        bare = self._collect()
        deps, free = self._dependencies(bare)
        order = self._binding_order(deps)  # raises the cycle error first
        leaf = self.leaves
        const_bindings = {
            n for n, a in self.binding.items() if type(a.value) in _CALL_OR_PAREN and _is_const_call(a.value)
        }
        inputs = sorted(self.free_names, key=self.first_seen.__getitem__)
        for name in self.values:
            if name in self.binding and name not in leaf:
                a = self.binding[name]
                used = sorted(deps[name] | free[name], key=self.first_seen.__getitem__)
                raise error_at(
                    "name",
                    f"cannot give '{name}' a value: its binding uses {', '.join(used)}; only inputs and "
                    "bindings that use no other name can be set",
                    a.name_span,
                )
        for name in order:
            self._compile_binding(name, name in leaf, name in const_bindings)
        bare_id = self._expr(bare) if bare is not None else None
        target, target_name = self._target(of, bare, bare_id, deps)
        variables = sorted(
            [n for n in leaf if n not in const_bindings] + inputs, key=self.first_seen.__getitem__
        )
        consts = sorted(const_bindings, key=self.first_seen.__getitem__)
        missing = [n for n in inputs if n not in self.values]
        values = {n: v for n, v in self.values.items() if n in self.input_node}
        return Graph(
            nodes=self.nodes,
            target=target,
            target_name=target_name,
            inputs=inputs,
            variables=variables,
            consts=consts,
            bindings=dict(self.bind_node),
            source=self.source,
            values=values,
            missing=missing,
            dtype=self.dtype,
        )

    def _collect(self) -> Expr | None:
        """Bindings by name (checking duplicates and built-ins) and the bare expression."""
        builtins = builtin_names()
        bare = None
        for stmt in self.statements:
            if isinstance(stmt, Define):
                self._collect_define(stmt, builtins)
                continue
            if not isinstance(stmt, Assign):
                bare = stmt
                continue
            name = stmt.name
            if name in self.defs:
                first = self.defs[name].name_span
                raise error_at(
                    "name",
                    f"'{name}' is bound here but is the function defined at {first.line}:{first.column}",
                    stmt.name_span,
                )
            if name in builtins:
                what = "constant" if name in CONSTANTS else "function"
                raise error_at(
                    "name",
                    f"cannot bind '{name}': it is a built-in {what}; pick another name",
                    stmt.name_span,
                )
            if name in self.binding:
                first = self.binding[name].name_span
                raise error_at(
                    "name", f"'{name}' is bound twice (first at {first.line}:{first.column})", stmt.name_span
                )
            self.binding[name] = stmt
            self.first_seen[name] = stmt.name_span.start
        if bare is None and not self.binding:
            if self.defs:
                raise DifftapeError(
                    "syntax",
                    "the program only defines functions: add the expression to compute, such as "
                    f"'{next(iter(self.defs))}(x)'",
                    1,
                    1,
                )
            raise DifftapeError("syntax", "the program is empty: write an expression such as 'x**2'", 1, 1)
        for name, stmt in self.defs.items():
            for p, span in zip(stmt.params, stmt.param_spans):
                if p in self.defs:
                    raise error_at(
                        "name", f"{name}(): parameter '{p}' is also the name of a function; rename one", span
                    )
        return bare

    def _collect_define(self, stmt: Define, builtins: set[str]) -> None:
        name = stmt.name
        if name in builtins or name in ALIASES:
            what = "constant" if name in CONSTANTS else "function"
            if name in ALIASES:
                what += f" (another name of {ALIASES[name]})"
            raise error_at(
                "name", f"cannot define '{name}': it is a built-in {what}; pick another name", stmt.name_span
            )
        first = self.defs[name].name_span if name in self.defs else None
        if first is None and name in self.binding:
            first = self.binding[name].name_span
        if first is not None:
            raise error_at(
                "name", f"'{name}' is defined twice (first at {first.line}:{first.column})", stmt.name_span
            )
        for p, span in zip(stmt.params, stmt.param_spans):
            if p in builtins:
                what = "constant" if p in CONSTANTS else "function"
                raise error_at(
                    "name", f"{name}(): cannot name a parameter '{p}': it is a built-in {what}", span
                )
        self.defs[name] = stmt

    def _function_uses(self) -> dict[str, tuple[set[str], list[Name]]]:
        """Per user function: the bindings and the input uses of its body and of every function it
        calls (transitively); a function that calls itself, directly or not, is a ``cycle`` error."""
        direct: dict[str, tuple[set[str], list[Name], list[Call]]] = {}
        binding, defs, functions = self.binding, self.defs, self.functions
        for fname, d in defs.items():
            params = set(d.params)
            uses: set[str] = set()
            frees: list[Name] = []
            calls: list[Call] = []
            for node in _walk_expr(d.body):
                kind = type(node)
                if kind is Call:
                    if node.func in params:
                        raise error_at(
                            "name", f"'{node.func}' is a parameter of {fname}(), not a function", node.name_span
                        )
                    if node.func in defs:
                        calls.append(node)
                    continue
                if kind is not Name:
                    continue
                name = node.id
                if name in params or name in CONSTANTS:
                    continue
                if name in binding:
                    uses.add(name)
                elif name in defs or name in functions:
                    raise error_at("name", f"'{name}' is a function: call it, as in {name}(...)", node.span)
                else:
                    frees.append(node)
            direct[fname] = (uses, frees, calls)
        # cycles: depth-first over the calls, in source order
        state: dict[str, int] = {}
        for root in defs:
            if root in state:
                continue
            path: list[tuple[str, Call | None]] = [(root, None)]
            state[root] = 1
            iters = [iter(direct[root][2])]
            while iters:
                call = next(iters[-1], None)
                if call is None:
                    state[path.pop()[0]] = 2
                    iters.pop()
                    continue
                callee = call.func
                if state.get(callee) == 1:
                    caller = path[-1][0]
                    if callee == caller:
                        message = f"{callee}() calls itself: a function cannot be recursive"
                    else:
                        start = next(i for i, (n, _) in enumerate(path) if n == callee)
                        back = path[start + 1][1]
                        assert back is not None
                        chain = " -> ".join([n for n, _ in path[start:]] + [callee])
                        message = (
                            f"{caller}() calls {callee}() here, and {callee}() calls {path[start + 1][0]}() at "
                            f"{back.span.line}:{back.span.column}: functions cannot call themselves, "
                            f"directly or through others ({chain})"
                        )
                    raise error_at("cycle", message, call.span)
                if callee not in state:
                    state[callee] = 1
                    path.append((callee, call))
                    iters.append(iter(direct[callee][2]))
        closure: dict[str, tuple[set[str], list[Name]]] = {}
        for root in defs:  # post-order: callees first (no cycles now)
            stack = [(root, iter({c.func for c in direct[root][2]}))]
            while stack:
                fname, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    stack.pop()
                    if fname not in closure:
                        uses, frees = set(direct[fname][0]), list(direct[fname][1])
                        for callee in {c.func for c in direct[fname][2]}:
                            uses |= closure[callee][0]
                            frees += closure[callee][1]
                        closure[fname] = (uses, frees)
                elif nxt not in closure:
                    stack.append((nxt, iter({c.func for c in direct[nxt][2]})))
        return closure

    def _dependencies(self, bare: Expr | None) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
        """Per binding: the bindings it uses and the inputs it uses; records first appearances."""
        deps: dict[str, set[str]] = {}
        free: dict[str, set[str]] = {}
        items: list[tuple[str | None, Expr]] = [(n, a.value) for n, a in self.binding.items()]
        if bare is not None:
            items.append((None, bare))
        first_seen, binding, functions = self.first_seen, self.binding, self.functions
        defs = self.defs
        fuses = self._function_uses() if defs else {}
        # Whether every binding is used only after it (and not in itself): the order of the source is
        # then an order of the bindings, each after the ones it uses (see _binding_order).
        in_order = not defs
        for owner, expr in items:
            d: set[str] | None = None  # (most bindings use one name or none: no empty sets for them)
            f: set[str] | None = None
            stack: list[Any] = [expr]
            while stack:  # walk(expr), inlined: this loop visits every node of the program
                node = stack.pop()
                kind = type(node)
                if kind is not Name:
                    if kind is Binary:
                        stack.append(node.right)
                        stack.append(node.left)
                    elif kind is not Number:
                        stack.extend(reversed(children(node)))
                        if defs and kind is Call and node.func in defs:
                            uses, frees = fuses[node.func]
                            if d is None:
                                d = set()
                            d |= uses
                            stack.extend(frees)  # the inputs its body uses, as uses of this binding
                    continue
                name = node.id
                start = node.span.start
                if start < first_seen.get(name, start + 1):
                    first_seen[name] = start
                    in_order = False
                if name in binding:
                    if d is None:
                        d = {name}
                    else:
                        d.add(name)
                    if name == owner:
                        in_order = False
                elif name in CONSTANTS:
                    continue
                elif name in functions or name in defs:
                    raise error_at("name", f"'{name}' is a function: call it, as in {name}(...)", node.span)
                else:
                    if f is None:
                        f = {name}
                    else:
                        f.add(name)
                    prev = self.first_use.get(name)
                    if prev is None or start < prev.span.start:
                        self.first_use[name] = node
                    self.free_names.add(name)
            if owner is not None:
                deps[owner] = _NO_NAMES if d is None else d
                free[owner] = _NO_NAMES if f is None else f
                if not d and not f:
                    self.leaves.add(owner)
        self.in_source_order = in_order
        return deps, free

    def _in_order(self, names: set[str]) -> Any:
        """``names`` in source order (a set of one, the common case, needs no sort)."""
        return names if len(names) < 2 else sorted(names, key=self.first_seen.__getitem__)

    def _binding_order(self, deps: dict[str, set[str]]) -> list[str]:
        """Bindings with each after the ones it uses: an iterative depth-first search from each binding
        in source order, its uses in source order, each binding listed when its uses are; a use of a
        binding still on the search's path is a cycle, reported with its names."""
        if self.in_source_order:  # each binding uses only bindings before it (the common case): the
            return list(deps)  # search lists them in source order, the order of ``deps``
        roots = sorted(deps, key=self.first_seen.__getitem__)
        rank = {name: i for i, name in enumerate(roots)}
        for i, name in enumerate(roots):
            for used in deps[name]:
                if rank[used] >= i:
                    break
            else:
                continue
            break
        else:  # each binding uses only bindings before it (the common case): the search would list them so
            return roots
        out: list[str] = []
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        in_order = self._in_order
        for root in roots:
            if root in state:
                continue
            path = [root]
            state[root] = 1
            iters = [iter(in_order(deps[root]))]
            while iters:
                nxt = next(iters[-1], None)
                if nxt is None:
                    done = path.pop()
                    state[done] = 2
                    out.append(done)
                    iters.pop()
                    continue
                seen = state.get(nxt)
                if seen is None:
                    state[nxt] = 1
                    path.append(nxt)
                    iters.append(iter(in_order(deps[nxt])))
                elif seen == 1:
                    cycle = path[path.index(nxt) :] + [nxt]
                    raise error_at("cycle", "cycle: " + " -> ".join(cycle), self.binding[cycle[0]].name_span)
        return out

    def _compile_binding(self, name: str, is_leaf: bool, is_const: bool) -> None:
        stmt = self.binding[name]
        value = self._expr(stmt.value)
        if is_leaf and name in self.values:
            # Overridden: the expression is still compiled (its random draws keep their turn).
            self.bind_node[name] = self._input(name, stmt.name_span)
            return
        if is_const or is_leaf:
            node = self.nodes[value]
            if is_leaf and not is_const:
                value = self._add("variable", (value,), {}, node.shape, node.dtype, stmt.span)
                node = self.nodes[value]
            node.name = name
            node.leaf = True
            self.live[value] = True
        elif self.nodes[value].name is None:
            self.nodes[value].name = name
        self.bind_node[name] = value

    def _target(
        self, of: str | None, bare: Expr | None, bare_id: int | None, deps: dict[str, set[str]]
    ) -> tuple[int, str]:
        if of is not None:
            if of in self.bind_node:
                return self.bind_node[of], of
            if of in self.input_node:
                return self.input_node[of], of
            known = [*self.bind_node, *self.input_node]
            raise DifftapeError(
                "name",
                f"--of {of}: the program has no binding named '{of}'{did_you_mean(of, known)}"
                + (
                    f"; choose from {', '.join(sorted(known, key=self.first_seen.__getitem__))}"
                    if known
                    else ""
                ),
            )
        if bare is not None and bare_id is not None:
            return bare_id, bare.span.text(self.source).strip()
        used = {d for ds in deps.values() for d in ds}
        candidates = sorted((n for n in self.binding if n not in used), key=self.first_seen.__getitem__)
        if len(candidates) == 1:
            return self.bind_node[candidates[0]], candidates[0]
        if not candidates:  # pragma: no cover - only a cycle leaves none, and cycles are errors
            raise DifftapeError("name", "no result: every binding is used by another")
        span = self.binding[candidates[1]].name_span
        raise error_at(
            "name",
            f"which result? several bindings are used by no other: {', '.join(candidates)}; "
            "choose one with --of NAME or end the program with the expression to compute",
            span,
        )

    # -- nodes ---------------------------------------------------------------------------------------
    def _add(
        self,
        op: str,
        inputs: tuple[int, ...],
        params: dict[str, Any],
        shape: Any,
        dtype: Any,
        span: Span | None,
        live: bool | None = None,
    ) -> int:
        nodes = self.nodes
        nid = len(nodes)
        if self.call_span is not None and op != "input":
            span = self.call_span  # inlined: the node stands for the call
        if shape:  # () is one element
            self._check_size(shape, span, op)
        nodes.append(Node(nid, op, inputs, params, shape, dtype, span))
        uses = self.uses
        uses.append(0)
        is_live = self.live
        if live is None:
            live = False
            for i in inputs:
                uses[i] += 1
                if is_live[i]:
                    live = True
        else:
            for i in inputs:
                uses[i] += 1
        is_live.append(live)
        return nid

    def _check_size(self, shape: tuple[int, ...], span: Span | None, what: str) -> None:
        if len(shape) > MAX_DIMS:
            raise self._err(
                "limit", f"{what} would have {len(shape)} dimensions, over the limit of {MAX_DIMS}", span
            )
        size = 1
        for s in shape:
            size *= s
        if size > MAX_ELEMENTS:
            raise self._err(
                "limit",
                f"{what} would make an array of shape {_fmt_shape(shape)} with {size:,} elements, over the "
                f"limit of {MAX_ELEMENTS:,} (MAX_ELEMENTS)",
                span,
            )

    @staticmethod
    def _err(kind: str, message: str, span: Span | None) -> DifftapeError:
        if span is None:
            return DifftapeError(kind, message)
        return error_at(kind, message, span)

    def _literal(self, value: Any, span: Span | None) -> int:
        if type(value) in _SCALARS:
            return self._add("literal", (), {"value": value}, (), type(value), span, live=False)
        arr = np.asarray(value)
        return self._add("literal", (), {"value": arr}, tuple(arr.shape), arr.dtype, span, live=False)

    def _input(self, name: str, span: Span) -> int:
        if name in self.input_node:
            return self.input_node[name]
        if name in self.values:
            v = self.values[name]
            arr = np.asarray(v._value if hasattr(v, "_value") else v)
            if arr.dtype == object or arr.dtype.kind not in "biufc":
                raise DifftapeError("value", f"the value of '{name}' is not an array of numbers")
            shape, dtype = tuple(arr.shape), _dtype_of_value(v) if type(v) in _SCALARS else arr.dtype
        else:
            shape, dtype = None, None
        nid = self._add("input", (), {}, shape, dtype, span, live=True)
        self.nodes[nid].name = name
        self.nodes[nid].leaf = True
        self.input_node[name] = nid
        return nid

    def _op(
        self,
        name: str,
        inputs: tuple[int, ...],
        params: dict[str, Any],
        span: Span,
        where: Span,
        symbol: str | None = None,
    ) -> int:
        """An engine op node, with static shape/dtype; errors point at ``where``."""
        op = self.ops[name]
        nodes = self.nodes
        args = [nodes[i] for i in inputs]
        shapes = tuple([n.shape for n in args])
        if None in shapes:
            return self._add(name, inputs, params, None, None, span)
        for n in args:
            if n.op != "literal":
                break
        else:  # every operand is a literal (or there is none): maybe a plain number
            folded = self._fold(op, inputs, params, span)
            if folded is not None:
                return folded
        if len(inputs) > 1 and self.dtype != "float64":
            self._weak_int_lists(inputs)
        dtypes = tuple([n.dtype for n in args])
        key: Any = (name, shapes, dtypes, tuple(params.items()) if params else ())
        try:
            known = self._static_cache.get(key)
        except TypeError:  # e.g. slices in an index (unhashable before Python 3.12)
            key = known = None
        if known is None:
            known = self._static(op, list(shapes), list(dtypes), params, where, symbol)
            if key is not None:
                self._static_cache[key] = known
        return self._add(name, inputs, params, known[0], known[1], span)

    def _weak_int_lists(self, inputs: tuple[int, ...]) -> None:
        """Integer list literals are weakly typed, as Python numbers are: one that meets an array of
        the program's float dtype (float32) takes that dtype, instead of widening it to float64
        (``W*x; W = ones(2, 2); x = [1, 0]`` is float32 under ``--dtype float32``). The literal
        changes only while nothing else uses it yet, so that no node's static dtype goes stale (after
        ``y = x + 1`` has used it, ``x`` keeps numpy's int64)."""
        floating = np.dtype(self.dtype)
        if not any(self.nodes[i].dtype == floating for i in inputs):
            return
        for i in inputs:
            chain = [self.nodes[i]]
            while chain[-1].op in ("variable", "const") and chain[-1].inputs:
                chain.append(self.nodes[chain[-1].inputs[0]])
            literal = chain[-1]
            value = literal.params.get("value") if literal.op == "literal" else None
            unused = self.uses[chain[0].id] == 0 and all(self.uses[n.id] == 1 for n in chain[1:])
            if unused and isinstance(value, np.ndarray) and value.dtype.kind in "iu":
                literal.params["value"] = value.astype(floating)
                for n in chain:
                    n.dtype = floating

    def _static(
        self,
        op: Any,
        shapes: list[tuple[int, ...]],
        dtypes: list[Any],
        params: dict[str, Any],
        where: Span,
        symbol: str | None,
    ) -> tuple[tuple[int, ...], Any]:
        """Shape and dtype of an op from the table's rules; a failing rule is a positioned error."""
        name = op.name
        label = f"'{symbol}'" if symbol else f"{name}()"
        try:
            shape = tuple(int(s) for s in op.shape(*shapes, **params))
        except DifftapeError as err:
            if err.line is None:
                err.line, err.column = where.line, where.column
            raise
        except (ValueError, TypeError, IndexError, OverflowError, ZeroDivisionError) as err:
            if op.kind in ("elementwise", "compare"):
                listed = " and ".join(_fmt_shape(s) for s in shapes)
                raise error_at(
                    "shape", f"shapes {listed} do not broadcast together for {label}", where
                ) from None
            raise error_at("shape", f"{label}: {_clean(err, name)}", where) from None
        if any(s < 0 for s in shape):
            raise error_at("shape", f"{label} would make a negative dimension: {_fmt_shape(shape)}", where)
        self._check_size(shape, where, label)
        try:
            with np.errstate(all="ignore"):
                dtype = op.dtype(*dtypes, **params)
        except (ValueError, TypeError, OverflowError) as err:
            listed = ", ".join(_dtype_name(d) for d in dtypes)
            raise error_at("type", f"{label} does not accept {listed}: {_clean(err, name)}", where) from None
        return shape, dtype

    def _fold(self, op: Any, inputs: tuple[int, ...], params: dict[str, Any], span: Span) -> int | None:
        """Elementwise op (or reduction) on plain number literals: the plain number it gives (stays weakly
        typed, so ``sum(1.4) * x`` keeps a float32 ``x`` float32 as ``exp(1.4) * x`` does)."""
        if op.kind not in ("elementwise", "compare", "reduction") or not inputs:
            return None
        if op.kind == "reduction" and params.get("axis") is not None:
            return None  # the shape rule reports an axis of a 0-d value
        nodes = [self.nodes[i] for i in inputs]
        if not all(n.op == "literal" and type(n.params["value"]) in _SCALARS for n in nodes):
            return None
        try:
            with np.errstate(all="ignore"):
                result = np.asarray(op.forward(*(n.params["value"] for n in nodes), **params)).item()
        except (ValueError, TypeError, ArithmeticError):
            return None
        if type(result) not in _SCALARS:
            return None
        # The literals were made just now for this expression alone: drop them.
        if [n.id for n in self.nodes[-len(inputs) :]] == list(inputs) and len(set(inputs)) == len(inputs):
            del self.nodes[-len(inputs) :]
            del self.live[-len(inputs) :]
            del self.uses[-len(inputs) :]
        return self._literal(result, span)

    # -- expressions -----------------------------------------------------------------------------
    def _expr(self, root: Expr) -> int:
        """Compile an expression tree, children before parents, with an explicit stack.

        A node with operands is planned when it is reached (depth first, left to right), then waits
        on the stack as ``(node, data, count)`` while its operands are compiled; their node ids
        collect on ``out``. Names and numbers, most operands, need no plan.
        """
        kind = type(root)
        if kind is Name:  # leaves, the most common operands, need no stack
            return self._name(root)
        if kind is Number:
            return self._literal(root.value, root.span)
        if kind is Binary:  # of two leaves (``a1 = a0 + 1``): no stack either
            left, right = root.left, root.right
            lkind, rkind = type(left), type(right)
            if (lkind is Name or lkind is Number) and (rkind is Name or rkind is Number):
                a = self._name(left) if lkind is Name else self._literal(left.value, left.span)
                b = self._name(right) if rkind is Name else self._literal(right.value, right.span)
                return self._op(BINARY_OPS[root.op], (a, b), {}, root.span, root.op_span, root.op)
        stack: list[Any] = [root]
        out: list[int] = []
        while stack:
            node = stack.pop()
            kind = type(node)
            if kind is tuple:  # every operand is compiled: build the node
                node, data, n = node
                if n:
                    kids = out[-n:]
                    del out[-n:]
                else:
                    kids = []
                if type(node) is Binary:
                    out.append(
                        self._op(BINARY_OPS[node.op], (kids[0], kids[1]), {}, node.span, node.op_span, node.op)
                    )
                else:
                    out.append(self._build(node, kids, data))
            elif kind is Name:
                out.append(self._name(node))
            elif kind is Number:
                out.append(self._literal(node.value, node.span))
            elif kind is Binary:
                stack.append((node, None, 2))
                stack.append(node.right)
                stack.append(node.left)
            elif kind is Paren:  # stands for its contents
                stack.append(node.inner)
            else:
                children, data = self._plan(node)
                stack.append((node, data, len(children)))
                stack.extend(reversed(children))
        return out[0]

    def _plan(self, node: Expr) -> tuple[list[Expr], Any]:
        """(sub-expressions to compile first, data for _build) of one node."""
        if isinstance(node, (Number, Name)):
            return [], None
        if isinstance(node, Paren):
            return [node.inner], None
        if isinstance(node, Unary):
            return [node.operand], None
        if isinstance(node, Binary):
            return [node.left, node.right], None
        if isinstance(node, Attribute):
            return [node.value], None
        if isinstance(node, Index):
            return [node.value], self._index(node)
        if isinstance(node, ListExpr):
            return list(node.items), None
        if isinstance(node, TupleExpr):
            raise error_at(
                "type",
                "a tuple like (2, 3) is only for shapes and axes in calls; write [2, 3] for an array",
                node.span,
            )
        if isinstance(node, Call):
            return self._plan_call(node)
        if isinstance(node, String):
            raise error_at(
                "type",
                "a string is not a value: strings are only written as einsum's subscripts, "
                'as in einsum("ij,j->i", A, x)',
                node.span,
            )
        raise TypeError(f"not an expression: {type(node).__name__}")  # pragma: no cover

    def _build(self, node: Expr, kids: list[int], data: Any) -> int:
        if isinstance(node, Number):
            return self._literal(node.value, node.span)
        if isinstance(node, Name):
            return self._name(node)
        if isinstance(node, Paren):
            return kids[0]
        if isinstance(node, Unary):
            return self._op(UNARY_OPS[node.op], (kids[0],), {}, node.span, node.op_span, node.op)
        if isinstance(node, Binary):
            return self._op(BINARY_OPS[node.op], (kids[0], kids[1]), {}, node.span, node.op_span, node.op)
        if isinstance(node, Attribute):
            return self._op("transpose", (kids[0],), {}, node.span, node.attr_span, ".T")
        if isinstance(node, Index):
            return self._op("getitem", (kids[0],), {"index": data}, node.span, node.bracket_span, "[]")
        if isinstance(node, ListExpr):
            return self._list(node, kids)
        if isinstance(node, Call):
            return self._build_call(node, kids, data)
        raise TypeError(f"not an expression: {type(node).__name__}")  # pragma: no cover

    def _name(self, node: Name) -> int:
        name = node.id
        scope = self.scope
        if scope is not None and name in scope:
            arg = scope[name]
            if type(arg) is tuple:
                return self._literal(arg[1], node.span)
            return arg
        if name in self.bind_node:
            return self.bind_node[name]
        if name in CONSTANTS:
            return self._literal(CONSTANTS[name], node.span)
        return self._input(name, self.first_use[name].span)

    def _list(self, node: ListExpr, kids: list[int]) -> int:
        """An array literal: folded to one array when constant, else a differentiable stack."""
        items = [self.nodes[k] for k in kids]
        shapes = [n.shape for n in items]
        if None not in shapes:
            for i, s in enumerate(shapes[1:], 2):
                if s != shapes[0]:
                    raise error_at(
                        "shape",
                        f"ragged list: element {i} has shape {_fmt_shape(s)} but element 1 has shape "
                        f"{_fmt_shape(shapes[0])}; all elements must have the same shape",
                        _span_of(node.items[i - 1]),
                    )
        if not items:
            return self._literal(np.zeros((0,), dtype=self.dtype), node.span)
        if all(n.op == "literal" for n in items):
            vals = [n.params["value"] for n in items]
            arr = np.array(vals)
            if arr.dtype.kind == "f":
                arr = arr.astype(self.dtype)
            if arr.dtype.kind not in "biuf":
                raise error_at("type", "a list must hold numbers", node.span)  # pragma: no cover
            self._check_size(tuple(arr.shape), node.span, "the list")
            if [n.id for n in self.nodes[-len(kids) :]] == kids and len(set(kids)) == len(kids):
                del self.nodes[-len(kids) :]
                del self.live[-len(kids) :]
                del self.uses[-len(kids) :]
            return self._literal(arr, node.span)
        # A stack of expressions: plain float literals take the default float dtype so that
        # numpy's stack (which does not keep Python numbers weak) does not widen float32.
        for n in items:
            if n.op == "literal" and type(n.params["value"]) is float:
                n.params["value"] = np.asarray(n.params["value"], dtype=self.dtype)
                n.dtype = np.dtype(self.dtype)
        return self._op("stack", tuple(kids), {}, node.span, node.span, "[...]")

    # -- indexing -------------------------------------------------------------------------------
    def _index(self, node: Index) -> tuple[Any, ...]:
        out: list[Any] = []
        for item in node.items:
            if isinstance(item, Slice):
                parts = [
                    None if p is None else self._int(p, "a slice bound")
                    for p in (item.start, item.stop, item.step)
                ]
                if parts[2] == 0:
                    raise error_at("value", "a slice step cannot be zero", _span_of(item.step))
                out.append(slice(*parts))
            else:
                out.append(self._int(item, "an index"))
        return tuple(out)

    def _int(self, expr: Expr, what: str) -> int:
        value = self._constant(expr, what)
        if type(value) is not int:
            shown = "a tuple" if isinstance(value, tuple) else repr(value)
            raise error_at("type", f"{what} must be an integer, not {shown}", _span_of(expr))
        return value

    # -- calls ------------------------------------------------------------------------------------
    def _plan_call(self, call: Call) -> tuple[list[Expr], Any]:
        name = call.func
        if name == "const":
            if len(call.args) != 1 or call.keywords:
                raise error_at("arity", "const() takes exactly one argument: const(expr)", call.name_span)
            return [call.args[0]], ("const",)
        if name in ("randn", "rand"):
            if call.keywords:
                k = call.keywords[0]
                raise error_at("arity", f"{name}() takes only a shape, not keyword '{k.name}'", k.name_span)
            shape = self._shape_args(name, call.args, call.name_span)
            return [], ("random", shape)
        if name in self.defs:
            return self._plan_user_call(call)
        if name not in self.ops:
            raise self._unknown_function(call)
        op = self.ops[name]
        if name == "full":
            return self._plan_full(call)
        if op.lead:  # parameters written before the tensors: strings
            return self._plan_lead(call, op)
        params_order = [p for p, _ in op.params if p != "dtype"]
        keywords = {k.name: k for k in call.keywords}
        accepted = ([] if op.variadic else list(op.args)) + params_order
        for k in call.keywords:
            if k.name not in accepted:
                hint = did_you_mean(k.name, accepted)
                listed = ", ".join(accepted) if accepted else "none"
                raise error_at(
                    "arity",
                    f"{name}() has no argument '{k.name}'{hint}; its arguments: {listed}",
                    k.name_span,
                )
        positional = list(call.args)
        if op.variadic:
            if not positional:
                raise error_at(
                    "arity", f"{name}() needs a list of arrays, as in {name}([a, b])", call.name_span
                )
            seq = _strip(positional[0])
            if not isinstance(seq, (ListExpr, TupleExpr)):
                raise error_at(
                    "type",
                    f"{name}() takes a list written out, as in {name}([a, b])",
                    _span_of(positional[0]),
                )
            tensors: list[Expr] = list(seq.items)
            rest = positional[1:]
        else:
            n = len(op.args)
            tensors, rest = positional[:n], positional[n:]
            for k in call.keywords:
                if k.name in op.args[: len(tensors)]:
                    raise error_at("arity", f"{name}() got '{k.name}' twice", k.name_span)
            for a in op.args[len(tensors) :]:
                if a not in keywords and a in op.args[len(op.args) - op.optional :]:
                    continue  # an optional input left out (Op.optional)
                if a not in keywords:
                    missing = op.args[len(tensors) :]
                    raise error_at(
                        "arity",
                        f"{name}() needs {len(op.args)} argument{'s' * (len(op.args) != 1)} "
                        f"({', '.join(op.args)}), got {len(tensors)}"
                        + (
                            f"; missing {', '.join(m for m in missing if m not in keywords)}"
                            if missing
                            else ""
                        ),
                        call.name_span,
                    )
                tensors.append(keywords[a].value)
        param_exprs: dict[str, Expr] = {}
        if name in _SPREAD_SHAPE and len(rest) > 1:
            param_exprs["shape"] = TupleExpr(tuple(rest), _span_of(rest[0]).to(_span_of(rest[-1])))
            rest = []
        if len(rest) > len(params_order):
            total = len(op.args) + len(params_order)
            listed = ", ".join(([] if op.variadic else list(op.args)) + params_order)
            raise error_at(
                "arity",
                f"{name}() takes at most {total} argument{'s' * (total != 1)} ({listed}), "
                f"got {len(positional)}",
                _span_of(rest[len(params_order)]),
            )
        for p, expr in zip(params_order, rest):
            param_exprs[p] = expr
        for k in call.keywords:
            if k.name in params_order:
                if k.name in param_exprs:
                    raise error_at("arity", f"{name}() got '{k.name}' twice", k.name_span)
                param_exprs[k.name] = k.value
        params = {p: self._param(name, p, e) for p, e in param_exprs.items()}
        return tensors, ("op", params)

    def _plan_lead(self, call: Call, op: Any) -> tuple[list[Expr], Any]:
        """``einsum("ij,j->i", A, x)``: the leading parameters are string literals, then the tensors."""
        name = call.func
        params: dict[str, Any] = {}
        positional = list(call.args)
        for k in call.keywords:
            if k.name not in op.lead:
                raise error_at(
                    "arity", f"{name}() has no argument '{k.name}'; its arguments: {', '.join(op.lead)}, then "
                    "the arrays", k.name_span,
                )
        for p in op.lead:
            kw = next((k for k in call.keywords if k.name == p), None)
            expr = kw.value if kw is not None else (positional.pop(0) if positional else None)
            if expr is None:
                raise error_at(
                    "arity", f'{name}() needs its {p} first, as a string: {name}("ij,j->i", A, x)', call.name_span
                )
            inner = _strip(expr)
            if not isinstance(inner, String):
                raise error_at(
                    "type", f'{name}(): {p} must be a string written out, as in {name}("ij,j->i", A, x)',
                    _span_of(expr),
                )
            params[p] = inner.value
        tensors = [e for e in positional if not isinstance(_strip(e), String)]
        if len(tensors) != len(positional):
            bad = next(e for e in positional if isinstance(_strip(e), String))
            raise error_at("type", f"{name}(): only the {', '.join(op.lead)} may be a string", _span_of(bad))
        if not tensors:
            raise error_at("arity", f"{name}() needs at least one array after the {op.lead[0]}", call.name_span)
        return tensors, ("op", params)

    def _plan_user_call(self, call: Call) -> tuple[list[Expr], Any]:
        """A call of a function the program defines: its arguments, then its body inlined."""
        d = self.defs[call.func]
        if call.keywords:
            raise error_at(
                "arity", f"{d.name}() takes its arguments by position, not by keyword", call.keywords[0].name_span
            )
        if len(call.args) != len(d.params):
            n = len(d.params)
            raise error_at(
                "arity",
                f"{d.name}() takes {n} argument{'s' * (n != 1)} ({', '.join(d.params)}), got {len(call.args)}; "
                f"it is defined at {d.name_span.line}:{d.name_span.column}",
                call.span,
            )
        return list(call.args), ("user",)

    def _inline(self, call: Call, kids: list[int]) -> int:
        """The body of a user function, compiled with its parameters bound to the arguments' nodes."""
        d = self.defs[call.func]
        if self.call_depth >= MAX_CALL_DEPTH:
            raise error_at(
                "limit", f"calls of functions nest deeper than the limit of {MAX_CALL_DEPTH}", call.name_span
            )
        if self.call_depth == 0:
            self.inline_start = len(self.nodes)
        elif self.inlined + len(self.nodes) - self.inline_start > MAX_INLINED_NODES:
            raise error_at(
                "limit",
                f"inlining the calls of functions makes more than {MAX_INLINED_NODES:,} operations; a function "
                "that calls others several times multiplies their size",
                call.name_span,
            )
        scope: dict[str, Any] = {}
        for p, k in zip(d.params, kids):
            n = self.nodes[k]
            scope[p] = ("literal", n.params["value"]) if n.op == "literal" else k
        for k in reversed(kids):  # literal arguments are made afresh at each use: drop the unused originals
            if self.nodes and self.nodes[-1].id == k and self.nodes[k].op == "literal" and self.uses[k] == 0:
                del self.nodes[-1]
                del self.live[-1]
                del self.uses[-1]
        saved = self.scope, self.call_span
        self.scope = scope
        if self.call_span is None:
            self.call_span = call.span
        self.call_depth += 1
        try:
            return self._expr(d.body)
        except DifftapeError as err:
            if "(in " not in err.message:  # the innermost function is the one to name
                err.message += f" (in {d.name}(), called at {call.span.line}:{call.span.column})"
            raise
        finally:
            self.scope, self.call_span = saved
            self.call_depth -= 1
            if self.call_depth == 0:
                self.inlined += len(self.nodes) - self.inline_start

    def _plan_full(self, call: Call) -> tuple[list[Expr], Any]:
        """numpy's order: full(shape, fill_value)."""
        args = list(call.args)
        kw = {k.name: k for k in call.keywords}
        for k in call.keywords:
            if k.name not in ("shape", "fill_value"):
                raise error_at(
                    "arity",
                    f"full() has no argument '{k.name}'; its arguments: shape, fill_value",
                    k.name_span,
                )
        if len(args) > 2:
            raise error_at("arity", "full() takes 2 arguments (shape, fill_value)", _span_of(args[2]))
        shape_expr = args[0] if args else (kw["shape"].value if "shape" in kw else None)
        fill_expr = args[1] if len(args) > 1 else (kw["fill_value"].value if "fill_value" in kw else None)
        if (
            shape_expr is None
            or fill_expr is None
            or (len(args) >= 1 and "shape" in kw)
            or (len(args) == 2 and "fill_value" in kw)
        ):
            raise error_at(
                "arity", "full() needs a shape and a fill value: full((2, 3), 7.0)", call.name_span
            )
        return [fill_expr], ("op", {"shape": self._param("full", "shape", shape_expr)})

    def _build_call(self, call: Call, kids: list[int], data: Any) -> int:
        kind = data[0]
        if kind == "user":
            return self._inline(call, kids)
        if kind == "const":
            inner = self.nodes[kids[0]]
            if self.live[kids[0]]:
                return self._op("stop_gradient", (kids[0],), {}, call.span, call.name_span)
            return self._add("const", (kids[0],), {}, inner.shape, inner.dtype, call.span, live=False)
        if kind == "random":
            shape = data[1]
            self._check_size(shape, call.name_span, f"{call.func}()")
            params = {
                "dist": "normal" if call.func == "randn" else "uniform",
                "shape": shape,
                "dtype": self.dtype,
                "order": call.span.start,
            }
            return self._add("random", (), params, shape, np.dtype(self.dtype), call.span, live=False)
        params = dict(data[1])
        name = call.func
        if name in _FLOAT_CONSTRUCTORS:
            params["dtype"] = self.dtype
        elif name == "arange":
            if any(type(params.get(p)) is float for p in ("start", "stop", "step")):
                params["dtype"] = self.dtype
        elif name == "full" and self.nodes[kids[0]].dtype is float:
            params["dtype"] = self.dtype
        elif name == "where" and np.dtype(self.dtype) != np.float64:
            # np.where of two plain floats is a float64 array: give them the program's float dtype
            for k in kids[1:]:
                n = self.nodes[k]
                if n.op == "literal" and type(n.params["value"]) is float:
                    n.params["value"] = np.asarray(n.params["value"], dtype=self.dtype)
                    n.dtype = np.dtype(self.dtype)
        return self._op(name, tuple(kids), params, call.span, call.name_span)

    def _unknown_function(self, call: Call) -> DifftapeError:
        name = call.func
        if name in self.binding or name in CONSTANTS:
            return error_at("name", f"'{name}' is not a function", call.name_span)
        hint = did_you_mean(name, sorted({*self.functions, *self.defs}), n=3)
        return error_at("name", f"unknown function '{name}'{hint}", call.name_span)

    def _shape_args(self, func: str, args: tuple[Expr, ...], span: Span) -> tuple[int, ...]:
        """randn(2, 3) and randn((2, 3)) alike."""
        if len(args) == 1:
            return _check_shape(func, self._constant(args[0], f"the shape of {func}()"), _span_of(args[0]))
        dims = [self._constant(a, f"the shape of {func}()") for a in args]
        return _check_shape(func, tuple(dims), _span_of(args[0]).to(_span_of(args[-1])) if args else span)

    def _param(self, func: str, param: str, expr: Expr) -> Any:
        try:
            value = self._constant(expr, f"{func}() argument '{param}'")
        except DifftapeError as err:
            if func in ("max", "min") and param == "axis":
                err.message += f" (for the elementwise {func}imum of two arrays, use {func}imum(a, b))"
            raise
        return _check_param(func, param, value, _span_of(expr))

    # -- compile-time constants -------------------------------------------------------------
    def _constant(self, expr: Expr, what: str) -> Any:
        """The value of a constant expression (numbers, built-in constants, arithmetic, tuples)."""
        try:
            return _evaluate_constant(expr)
        except _NotConstantError as nc:
            raise error_at("value", f"{what} must be a constant: {nc.why}", _span_of(nc.node)) from None


# ----------------------------------------------------------------------------------------
# constants


_INT_LIMIT = 2**63


def _evaluate_constant(root: Expr) -> Any:
    """Iterative evaluation of a constant expression with Python semantics and overflow guards."""
    done: dict[int, Any] = {}
    stack: list[tuple[Expr, bool]] = [(root, False)]
    while stack:
        node, ready = stack.pop()
        if not ready:
            kids = _const_children(node)
            stack.append((node, True))
            stack.extend((k, False) for k in reversed(kids))
            continue
        vals = [done.pop(id(k)) for k in _const_children(node)]
        done[id(node)] = _const_step(node, vals)
    return done[id(root)]


def _const_children(node: Expr) -> list[Expr]:
    if isinstance(node, (Number, Name)):
        return []
    if isinstance(node, Paren):
        return [node.inner]
    if isinstance(node, Unary):
        return [node.operand]
    if isinstance(node, Binary):
        return [node.left, node.right]
    if isinstance(node, (TupleExpr, ListExpr)):
        return list(node.items)
    if isinstance(node, Call):
        raise _NotConstantError(node, f"it calls {node.func}()")
    if isinstance(node, Index):
        raise _NotConstantError(node, "it indexes an array")
    if isinstance(node, Attribute):
        raise _NotConstantError(node, "it uses '.T'")
    if isinstance(node, String):
        raise _NotConstantError(node, "a string is only ever einsum's subscripts")
    raise _NotConstantError(node, "this is not a number")  # pragma: no cover


def _const_step(node: Expr, vals: list[Any]) -> Any:
    if isinstance(node, Number):
        return node.value
    if isinstance(node, Name):
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        raise _NotConstantError(
            node, f"it uses the name '{node.id}' (only numbers and tuples, and pi, e, inf)"
        )
    if isinstance(node, Paren):
        return vals[0]
    if isinstance(node, (TupleExpr, ListExpr)):
        return tuple(vals)
    if any(isinstance(v, tuple) for v in vals):
        raise _NotConstantError(node, "arithmetic on a tuple")
    if isinstance(node, Unary):
        return -vals[0] if node.op == "-" else +vals[0]
    a, b = vals
    op = node.op
    if op not in _PY_BINARY:
        raise _NotConstantError(node, f"'{op}' is not allowed in a constant")
    try:
        if (
            op == "**"
            and type(a) is int
            and type(b) is int
            and b > 0
            and abs(a) > 1
            and b * math.log2(abs(a)) > 64
        ):
            raise _NotConstantError(node, "the number is too large")
        result = _PY_BINARY[op](a, b)
    except ZeroDivisionError:
        raise _NotConstantError(node, "it divides by zero") from None
    except OverflowError:
        raise _NotConstantError(node, "the number is too large") from None
    if type(result) is int and not -_INT_LIMIT <= result < _INT_LIMIT:
        raise _NotConstantError(node, "the number is too large")
    if type(result) is complex:
        raise _NotConstantError(node, "the result is a complex number")
    return result


_PY_BINARY = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "//": lambda a, b: a // b,
    "%": lambda a, b: a % b,
    "**": lambda a, b: a**b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


# ----------------------------------------------------------------------------------------
# parameter checks


_INT_PARAMS = {"ddof", "k", "decimals", "N", "num"}
_NUMBER_PARAMS = {"start", "stop", "step", "ord"}


def _is_int(v: Any) -> bool:
    return type(v) is int


def _check_shape(func: str, value: Any, span: Span) -> tuple[int, ...]:
    dims = value if isinstance(value, tuple) else (value,)
    for d in dims:
        if not _is_int(d):
            raise error_at("type", f"{func}(): a shape is made of integers, not {d!r}", span)
        if d < 0:
            raise error_at("value", f"{func}(): a dimension cannot be negative ({d})", span)
    return tuple(dims)


def _check_param(func: str, param: str, value: Any, span: Span) -> Any:
    if param in ("axis", "axes"):
        if value is None or _is_int(value):
            return value
        if isinstance(value, tuple) and all(_is_int(v) for v in value):
            return value
        raise error_at(
            "type", f"{func}(): {param} must be an integer or a tuple of integers, not {value!r}", span
        )
    if param == "shape":
        if func == "reshape":  # -1 means "whatever is left"
            dims = value if isinstance(value, tuple) else (value,)
            if not all(_is_int(d) for d in dims):
                raise error_at("type", f"reshape(): a shape is made of integers, not {value!r}", span)
            return value
        return _check_shape(func, value, span)
    if param == "keepdims":
        if type(value) is bool or value in (0, 1):
            return bool(value)
        raise error_at("type", f"{func}(): keepdims must be True or False, not {value!r}", span)
    if param in _INT_PARAMS or param == "M":
        if _is_int(value):
            return value
        raise error_at("type", f"{func}(): {param} must be an integer, not {value!r}", span)
    if param in _NUMBER_PARAMS:
        if type(value) in (int, float):
            return value
        raise error_at("type", f"{func}(): {param} must be a number, not {value!r}", span)
    if param == "index":
        items = value if isinstance(value, tuple) else (value,)
        if all(_is_int(i) for i in items):
            return items
        raise error_at(
            "type", f"{func}(): index must be an integer or a tuple of integers, not {value!r}", span
        )
    return value


# ----------------------------------------------------------------------------------------
# small helpers


def _walk_expr(root: Expr) -> Iterator[Any]:
    """Every node under ``root`` (itself first), without recursion."""
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        yield node
        if type(node) is not Name and type(node) is not Number:
            stack.extend(children(node))


_CALL_OR_PAREN = (Call, Paren)
_NO_NAMES: frozenset[str] = frozenset()


def _is_const_call(expr: Expr) -> bool:
    e = _strip(expr)
    return isinstance(e, Call) and e.func == "const"


def _span_of(node: Any) -> Span:
    return node.span


def _dtype_name(d: Any) -> str:
    return d.__name__ if isinstance(d, type) else str(np.dtype(d))


def _clean(err: Exception, op: str) -> str:
    """The engine's message without a repeated 'op:' prefix."""
    text = str(err)
    return text[len(op) + 2 :] if text.startswith(op + ": ") else text
