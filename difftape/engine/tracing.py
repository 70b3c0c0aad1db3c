"""``difftape.function``: trace a Python function into a graph once per signature, then replay it compiled.

As with ``tf.function``, the Python body runs once for each new input signature
(the shapes and dtypes of tensor arguments, the values of other arguments); the
operations it performed are recorded and later calls replay them on the new inputs
without running the Python body. Tensors, numpy arrays and lists are tensor arguments;
Python numbers are values, as in TensorFlow: each new number traces again, and the
body sees the number itself, so ``x * 0.5`` keeps a float32 ``x`` float32 exactly as
eager code does. Results that are not tensors (``cube(2)`` computes the Python int 8)
come back as tensors. Variables captured from outside are read at each
call, so ``assign`` is seen.

Python decisions on traced values are guards. When the body uses a tensor that depends on
the inputs or on a captured Variable as a Python value (``if v > 0``, ``float(v)``,
``int(i)`` or ``range(i)``, ``x[int(i)]``, ``v.numpy()``, ``v.value``, ``np.asarray(v)``,
a numpy function that reads its numbers, or ``len``/``.shape`` of a tensor whose shape depends
on values, like ``x[x > 0]``), the trace records that value: the conversion's result (a bool, an
int, a float bit for bit, a whole array). Each replay checks it where the trace met it, before
anything that followed; when a value differs, the call traces again, and a signature keeps every
such trace (one per outcome) and replays the first whose guards hold. A signature that reaches
:data:`MAX_TRACES_PER_SIGNATURE` traces runs the Python body eagerly from then on (the same
results as eager code) and says so once, with a :class:`RetraceWarning` naming the lines;
``difftape.where`` (no Python decision) or a Python-number argument (a value of the signature)
avoid that. A tensor made in the body from no input is a constant and needs no guard; neither
do shapes fixed by the signature, nor an op's own parameters (``x[i]`` reads ``i`` at each call).
What is still fixed at trace time: other Python side effects (appending to a list, ``assign``
inside the body, printing: ``print(v)`` shows the tracing call's value) and random draws.

The trace is an :class:`difftape.ir.graph.Graph`, the class the compiler of the language
produces (``input`` nodes for the arguments and captured Variables, ``literal`` nodes for
constants, one node per op; the results, guards and computed parameters in its ``results``,
``guards`` and ``dynamic``), so it renders and runs like any program's graph.
It is compiled once per signature (see :class:`_Plan`): operations whose
inputs are all constants are folded (their traced value is the value), identical
operations on identical inputs are computed once (common subexpressions; ``x*y`` and ``y*x``
too), operations
no result needs are dropped, and what is left becomes straight-line Python, ``compile()``-d
once, that calls each op's numpy forward from the table (or the Python operator that is
that forward, for arithmetic on numpy values). A replay then costs about what the same
numpy code written by hand costs. How a call runs depends on who is recording:

- nobody: the compiled forward, and nothing else;
- one Tape: the compiled forward, recorded as one tape entry per result, whose gradient
  is a backward pass generated the same way: the tape's own first-order algorithm
  (the table's VJPs, unbroadcasting, accumulation in the same order) run once on traced
  values that write down every numpy operation they perform, so it computes exactly what
  the tape would. A where-mask, higher derivatives or a VJP that cannot be written down
  make that entry replay the graph op by op on a tape of its own instead;
- anything else (nested tapes, an outer ``function`` being traced): the graph op by op
  through ``apply``, so every recorder sees every operation, as in eager code.

Generated source contains only op names from the table, node numbers and references to a
list of constants; no text of the user's program or values ever becomes source.
"""

from __future__ import annotations

import functools
import linecache
import math
import os
import re
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from difftape.engine.tape import _ACTIVE, _EMPTY, Tape, _begin_trace, _end_trace, _recorders, _unbroadcast, apply
from difftape.engine.tensor import _TRACING, Tensor, Variable, as_array, numpy_value
from difftape.ir.graph import Graph, Node, NodeRef, resolve_refs
from difftape.ops import OPS, Op, shape_of, vjp_for

_NUMPY_VALUE = (np.ndarray, np.generic)
_F64 = np.float64
_SCALAR_KEY = ("T", (), np.dtype(np.float64))  # the signature part of a tensor holding a float64 scalar
_new = object.__new__


class _Trace:
    """Recorder that writes every op applied while the Python body runs as an ``ir.graph`` node.

    Node ids: the tensor inputs first (``input`` nodes ``arg0, arg1, ...``), then, in the order
    the body met them, ``input`` nodes for captured Variables (``captured0, ...``), ``literal``
    nodes for constants and one node per op. ``values[id]`` is each node's value while tracing
    (a tensor for inputs and ops, the constant for a literal), kept alive so ids stay valid.
    """

    def __init__(self, inputs: list[Tensor]) -> None:
        self.nodes: list[Node] = []
        self.values: list[Any] = []
        self.ids: dict[int, int] = {}  # id(tensor) -> its node (inputs and op results)
        self.n_inputs = len(inputs)
        self.variables: list[Variable] = []  # captured Variables, read at each call
        self.variable_nodes: list[int] = []
        self._var_node: dict[int, int] = {}
        self.guards: list[_Guard] = []  # traced values the body used as Python values, in order
        self._guarded: set[tuple[Any, ...]] = set()
        self.dynamic: set[int] = set()  # nodes whose params hold a NodeRef (a traced x[i])
        # nodes whose shape depends on values (x[mask], zeros(n) for a traced n, and what uses them);
        # every other shape follows from the signature
        self.value_shaped: set[int] = set()
        for i, t in enumerate(inputs):
            self.ids[id(t)] = self._node("input", (), _EMPTY, t, f"arg{i}")

    def _node(self, op: str, inputs: tuple[int, ...], params: dict[str, Any], value: Any,
              name: str | None = None) -> int:
        v = value._value if isinstance(value, Tensor) else value
        if op == "literal" and type(v) in (bool, int, float):
            dtype: Any = type(v)  # a weakly typed Python number, as the compiler writes it
        else:
            dtype = getattr(v, "dtype", None)
        nid = len(self.nodes)
        self.nodes.append(Node(nid, op, inputs, params, np.shape(v) if dtype is not None else None, dtype,
                               None, name))
        self.values.append(value)
        return nid

    def used(self, t: Tensor, kind: str) -> None:
        """``t`` is being used as a Python value (``kind``: bool, int, float, index, array): a guard.

        Called by Tensor's conversions while this trace runs. A constant (a tensor made in the
        body from no input) needs none: its value is the same at every call.
        """
        nid = self.ids.get(id(t))
        if kind == "shape" and nid not in self.value_shaped:
            return  # a shape the signature fixes (or a Variable's, which assign keeps)
        if nid is None:
            if not isinstance(t, Variable):
                return
            nid = self._variable(t)  # a captured Variable: read at each call, so checked at each call
        if (nid, kind) in self._guarded:
            return  # the value a node had while tracing is one value: one guard is enough
        site = _user_site()
        if site is None:
            return  # an op's forward reading a tensor in its parameters (x[i]): the op is traced with it
        value = _python_value(kind, t._value)  # raises what the conversion itself raises
        self._guarded.add((nid, kind))
        self.guards.append(_Guard(len(self.nodes), nid, kind, value, site))

    def _variable(self, v: Variable) -> int:
        nid = self._var_node.get(id(v))
        if nid is None:
            nid = self._var_node[id(v)] = self._node("input", (), _EMPTY, v, f"captured{len(self.variables)}")
            self.variables.append(v)
            self.variable_nodes.append(nid)
        return nid

    def _ref(self, a: Any) -> int:
        """The node of an op's argument: a traced tensor's, a captured Variable's, or a new literal."""
        if isinstance(a, Tensor):
            nid = self.ids.get(id(a))
            if nid is not None:
                return nid
            if isinstance(a, Variable):
                return self._variable(a)
        return self._node("literal", (), {"value": a}, a)

    def _param(self, v: Any) -> Any:
        """A parameter with every traced tensor in it (``x[i]``: the index) replaced by its NodeRef."""
        if isinstance(v, Tensor) and id(v) in self.ids:
            return NodeRef(self.ids[id(v)])
        if isinstance(v, (tuple, list)):
            return type(v)(self._param(e) for e in v)
        if isinstance(v, slice):
            return slice(self._param(v.start), self._param(v.stop), self._param(v.step))
        return v

    def _record(self, op: Any, args: tuple[Any, ...], params: dict[str, Any], out: Tensor) -> None:
        ins = tuple(self._ref(a) for a in args)
        dynamic = False
        if params:
            refs = {k: self._param(v) for k, v in params.items()}
            if any(_has_ref(v) for v in refs.values()):
                params, dynamic = refs, True
        nid = self._node(op.name, ins, params, out)
        if dynamic:
            self.dynamic.add(nid)
        if dynamic or (self.value_shaped and any(i in self.value_shaped for i in ins)):
            self.value_shaped.add(nid)
        self.ids[id(out)] = nid


def _python_value(kind: str, v: Any) -> Any:
    """What Tensor's conversion of kind ``kind`` gives for the numpy value ``v``."""
    if kind == "bool":
        return bool(v)
    if kind == "float":
        return float(v)
    if kind == "int":
        return int(v)
    if kind == "index":
        return np.asarray(v).__index__()
    if kind == "shape":
        return np.shape(v)
    return np.array(v, copy=True)  # "array": .numpy(), .value, np.asarray(t), ...


_DESCRIBE = {"bool": "used as a Python bool (if, while, and, or, not)", "float": "converted by float()",
             "int": "converted by int()", "index": "used as an index (range, list index, slice bound)",
             "array": "read as numpy values (.numpy(), .value, np.asarray, a numpy function)",
             "shape": "whose shape depends on values, its shape read (len, .shape, iteration)"}


class _GuardMiss(Exception):  # noqa: N818 - a signal, not an error shown to anyone
    """A replay found that a value the trace depends on differs: this trace is not the answer."""


class _Guard:
    """A traced value the Python body used as a Python value, and what it was while tracing.

    ``after``: how many graph nodes had been traced when it was used (the op-by-op replay
    checks it before computing node ``after``); ``ref``: the node whose value it is;
    ``site``: the user's line, for messages.
    """

    __slots__ = ("after", "ref", "kind", "value", "site", "check")

    def __init__(self, after: int, ref: int, kind: str, value: Any, site: str) -> None:
        self.after, self.ref, self.kind, self.value, self.site = after, ref, kind, value, site
        self.check = _checker(kind, value)

    def __repr__(self) -> str:
        shown = f"array{self.value.shape}" if isinstance(self.value, np.ndarray) else repr(self.value)
        return f"<guard {self.kind}(%{self.ref}) == {shown} at {self.site}>"


def _checker(kind: str, expected: Any) -> Callable[[Any], bool]:
    """``check(numpy value) -> bool``: whether the value converts to what it did while tracing."""
    if kind == "array":
        dtype, shape, data = expected.dtype, expected.shape, expected.tobytes()

        def check(v: Any) -> bool:
            a = np.asarray(v)
            return a.dtype == dtype and a.shape == shape and a.tobytes() == data

        return check
    if kind == "float":
        if expected != expected:  # nan

            def check(v: Any) -> bool:
                try:
                    got = float(v)
                except Exception:  # noqa: BLE001 - a value that does not convert is a different value
                    return False
                return got != got

            return check
        sign = math.copysign(1.0, expected)

        def check(v: Any) -> bool:
            try:
                got = float(v)
            except Exception:  # noqa: BLE001
                return False
            return got == expected and (got != 0.0 or math.copysign(1.0, got) == sign)

        return check
    convert = {"bool": bool, "int": int}.get(kind)

    def check(v: Any) -> bool:
        try:
            got = convert(v) if convert is not None else _python_value(kind, v)
        except Exception:  # noqa: BLE001
            return False
        return got == expected and type(got) is type(expected)

    return check


_LIBRARY_DIRS = tuple(
    os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (sys.modules["difftape"], np)
)


def _user_site() -> str | None:
    """``file:line (source)`` of the innermost line outside difftape and numpy: the user's line.

    None when the conversion happens inside ``apply`` (an op's forward converting a traced
    tensor among its parameters, ``x[i]``): the traced op reads that tensor at every call.
    """
    frame = sys._getframe(2)
    user = None
    while frame is not None:
        code = frame.f_code
        if code is _APPLY_CODE:
            return None
        if code is _TRACE_CODE:
            break
        if user is None and not os.path.abspath(code.co_filename).startswith(_LIBRARY_DIRS):
            user = frame
        frame = frame.f_back
    if user is None:
        return "a line inside difftape"
    text = linecache.getline(user.f_code.co_filename, user.f_lineno).strip()
    where = f"{user.f_code.co_filename}:{user.f_lineno}"
    return f"{where} ({text})" if text else where


_APPLY_CODE = apply.__code__


class _Compiled:
    """One traced signature: its graph (an ``ir.graph.Graph``), and that graph compiled (:class:`_Plan`)."""

    def __init__(self, trace: _Trace, output: Any, name: str) -> None:
        self.n_inputs = trace.n_inputs
        self.variables = trace.variables
        self.guards = trace.guards

        def result(t: Any) -> NodeRef:
            return NodeRef(trace._ref(t if isinstance(t, Tensor) else _as_tensor(t)))

        results = _map(output, result)
        self.leaves: list[NodeRef] = []
        _map(results, self.leaves.append, leaf=NodeRef)
        names = [n.name for n in trace.nodes if n.op == "input"]
        self.graph = Graph(trace.nodes, self.leaves[0].id if self.leaves else -1, name, names, [], [], {}, "",
                           results=results, guards=trace.guards, dynamic=frozenset(trace.dynamic))
        # the op-by-op run's program: values of inputs and literals, then (node id, op, inputs, params)
        self._arg_nodes = list(range(trace.n_inputs)) + trace.variable_nodes
        self._fixed = [(n.id, n.params["value"]) for n in trace.nodes if n.op == "literal"]
        self._ops = [(n.id, OPS[n.op], n.inputs, n.params, n.id in trace.dynamic)
                     for n in trace.nodes if n.op not in ("input", "literal")]
        self.plan = _Plan(self, trace.values)

    # -- op by op (every recorder sees every operation) -----------------------------------------
    def run(self, inputs: list[Any], variables: list[Any] | None = None) -> Any:
        """The body's results by running each traced op through ``apply``."""
        vals = self.run_values(inputs, variables)
        return _map(self.graph.results, lambda ref: vals[ref.id], leaf=NodeRef)

    def run_values(self, inputs: list[Any], variables: list[Any] | None = None, check: bool = True) -> list[Any]:
        """Every node's value, op by op; with ``check``, each guard where the trace met it (raises _GuardMiss)."""
        variables = self.variables if variables is None else variables
        vals: list[Any] = [None] * len(self.graph.nodes)
        for nid, v in zip(self._arg_nodes, [*inputs, *variables]):
            vals[nid] = v
        for nid, v in self._fixed:
            vals[nid] = v
        guards = self.guards if check else ()
        k = 0
        for nid, op, ins, params, dynamic in self._ops:
            while k < len(guards) and guards[k].after <= nid:
                self._check(guards[k], vals)
                k += 1
            if dynamic:
                params = {name: resolve_refs(v, vals) for name, v in params.items()}
            vals[nid] = apply(op, tuple(vals[i] for i in ins), params)
        for guard in guards[k:]:
            self._check(guard, vals)
        return vals

    @staticmethod
    def _check(guard: _Guard, vals: list[Any]) -> None:
        t = vals[guard.ref]
        if not guard.check(t._value if isinstance(t, Tensor) else t):
            raise _GuardMiss
        if _TRACING and isinstance(t, Tensor):
            _TRACING[-1].used(t, guard.kind)  # an outer trace records this op by op: it depends on it too

    # -- compiled ----------------------------------------------------------------------------
    def call(self, inputs: list[Tensor]) -> Any:
        """Run the graph for one call: compiled, recorded as one entry per result, or op by op."""
        if not _ACTIVE:  # (nothing records in any thread)
            return self.plan.forward(inputs)
        recorders = _recorders()  # this thread's
        if not recorders:
            return self.plan.forward(inputs)
        if len(recorders) == 1 and recorders[0].__class__ is Tape:
            return self.plan.forward_recorded(inputs, recorders[0])
        return self.run(inputs)


def _has_ref(v: Any) -> bool:
    if isinstance(v, NodeRef):
        return True
    if isinstance(v, (tuple, list)):
        return any(_has_ref(e) for e in v)
    return isinstance(v, slice) and (_has_ref(v.start) or _has_ref(v.stop) or _has_ref(v.step))


def _map(structure: Any, fn: Callable[[Any], Any], leaf: type = Tensor) -> Any:
    if isinstance(structure, leaf):
        return fn(structure)
    if isinstance(structure, dict):
        return {k: _map(v, fn, leaf) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)) and not isinstance(structure, leaf):
        return type(structure)(_map(v, fn, leaf) for v in structure)
    return fn(structure)


def _is_tensor_like(a: Any) -> bool:
    return isinstance(a, (Tensor, np.ndarray, np.generic, list))


def _as_tensor(value: Any) -> Any:
    """A traced function's result leaf as a tensor (numbers and arrays); anything else as is."""
    if isinstance(value, (bool, int, float, complex, np.ndarray, np.generic)):
        return Tensor(as_array(value))
    return value


# ------------------------------------------------------------------------------------------------
# compiling: fold, share, prune, generate


class _Untraceable(Exception):  # noqa: N818 - a signal, not an error shown to anyone
    """A VJP did something with a traced value that cannot be written down as straight-line code."""


_BINARY = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/"}
_UNARY = {"negative": "-", "positive": "+"}


class _Plan:
    """The compiled form of one traced graph (one signature), read from its ``ir.graph`` nodes.

    Values live in an environment of node ids; the arguments of the generated functions are the
    call's tensor inputs, then the captured Variables. ``const`` maps the ids whose value is
    fixed (literals, and ops folded because all their inputs are), ``alias`` the ids that are
    another's value (shared subexpressions). ``nodes`` are the ops left to compute; ``ins``
    and ``dyn`` hold, for each, its inputs as ("e", id) or ("k", constant) and its parameters
    with computed values as :class:`_EnvRef` (None when they are static).
    """

    def __init__(self, compiled: _Compiled, traced_values: list[Any]) -> None:
        self.compiled = compiled
        graph = self.graph = compiled.graph
        self.variables = compiled.variables
        self.arg_ids = list(compiled._arg_nodes)  # the generated functions' arguments, in order
        self.arg_pos = {nid: k for k, nid in enumerate(self.arg_ids)}
        self.n_args = len(self.arg_ids)
        # node id -> value at trace time (for generating the backward)
        self.traced: dict[int, Any] = {nid: traced_values[nid]._value for nid in self.arg_ids}
        self.const: dict[int, Any] = {}
        self.alias: dict[int, int] = {}
        self.nodes: list[Node] = []
        self.ins: dict[int, list[tuple[str, Any]]] = {}
        self.dyn: dict[int, dict[str, Any] | None] = {}
        seen: dict[Any, int] = {}
        for node in graph.nodes:
            nid = node.id
            if node.op == "input":
                continue
            if node.op == "literal":
                v = node.params["value"]
                self.const[nid] = v._value if isinstance(v, Tensor) else v
                continue
            self.traced[nid] = value = traced_values[nid]._value
            ins = [self._resolve_id(i) for i in node.inputs]
            dyn = None
            if nid in graph.dynamic:
                dyn = {k: self._param(v) for k, v in node.params.items()}
            if all(kind == "k" for kind, _ in ins) and (dyn is None or not _has_env(dyn)):
                self.const[nid] = value  # all inputs fixed: the traced value is the value
                continue
            same = _times_ones(node.op, ins, value, self.traced)
            # x * ones (a tape's seed, folded) is x, bit for bit, without a pass (not an argument's own array)
            if same is not None and same not in self.arg_pos:
                self.alias[nid] = same
                continue
            key = _cse_key(node.op, ins, node.params if dyn is None else dyn)
            if key is not None:
                if key in seen:
                    self.alias[nid] = seen[key]
                    continue
                seen[key] = nid
            self.nodes.append(node)
            self.ins[nid] = ins
            self.dyn[nid] = dyn
        self.outputs = [self._leaf_input(ref.id) for ref in compiled.leaves]
        # guards: (node id, guard) for each one whose value is not fixed (folded values always pass)
        self.guards: list[tuple[int, _Guard]] = []
        for guard in graph.guards:
            kind, v = self._resolve_id(guard.ref)
            if kind == "e":
                self.guards.append((v, guard))
        out = graph.results
        self._flat_results: str | None = None  # "one"/"tuple": results built without walking the structure
        if all(kind == "e" for kind, _ in self.outputs):
            if isinstance(out, NodeRef):
                self._flat_results = "one"
            elif type(out) is tuple and all(isinstance(r, NodeRef) for r in out):
                self._flat_results = "tuple"
        self._forward: Any = None
        self._whole = False  # whether _forward takes the tensors and makes the results (the float code)
        self._forward_all: Any = None
        self._backward: dict[tuple[int, tuple[int, ...]], Any] = {}
        self._composites: list[_Composite] | None = None
        # what the results and the guards need (dead code dropped), in order
        self.env_nodes = self._needed(self._out_ids() + [nid for nid, _ in self.guards])
        self.has_where = any(node.op == "where" for node in self.env_nodes)
        self.floats: bool | None = None  # whether the compiled code runs on Python floats (decided once)

    # -- building the environment --------------------------------------------------------------
    def _resolve_id(self, nid: int) -> tuple[str, Any]:
        nid = self.alias.get(nid, nid)
        if nid in self.const:
            return ("k", self.const[nid])
        return ("e", nid)

    def _param(self, v: Any) -> Any:
        if isinstance(v, NodeRef):
            return _EnvRef(*self._resolve_id(v.id))
        if isinstance(v, (tuple, list)):
            return type(v)(self._param(e) for e in v)
        if isinstance(v, slice):
            return slice(self._param(v.start), self._param(v.stop), self._param(v.step))
        return v

    def _leaf_input(self, nid: int) -> tuple[str, Any]:
        node = self.graph.nodes[nid]
        if node.op == "input":
            k = self.arg_pos[nid]
            return ("input", k) if k < self.compiled.n_inputs else ("var", k - self.compiled.n_inputs)
        if node.op == "literal":
            return ("const", node.params["value"])  # returned as it is, as the body returned it
        return self._resolve_id(nid)

    # -- forward -------------------------------------------------------------------------------
    def _needed(self, roots: list[int]) -> list[Node]:
        """The nodes the given ids depend on, in order."""
        ins, dyn = self.ins, self.dyn
        need: set[int] = set()
        stack = [r for r in roots if r in ins]
        while stack:
            nid = stack.pop()
            if nid in need:
                continue
            need.add(nid)
            for kind, v in ins[nid]:
                if kind == "e" and v in ins:
                    stack.append(v)
            if dyn[nid] is not None:
                stack.extend(e for e in _env_ids(dyn[nid]) if e in ins)
        return [node for node in self.nodes if node.id in need]

    def last_uses(self) -> dict[int, list[int]]:
        """node id -> the large intermediate arrays it is the last to read, so the forward can free them."""
        keep = set(self._out_ids()) | {nid for nid, _ in self.guards}
        last: dict[int, int] = {}
        for node in self.env_nodes:
            used = [v for k, v in self.ins[node.id] if k == "e"]
            if self.dyn[node.id] is not None:
                used += _env_ids(self.dyn[node.id])
            for v in used:
                last[v] = node.id
        frees: dict[int, list[int]] = {}
        for v, at in last.items():
            value = self.traced.get(v)
            if v in self.ins and v not in keep and value.__class__ is np.ndarray and value.size >= 1024:
                frees.setdefault(at, []).append(v)
        return frees

    def _out_ids(self) -> list[int]:
        return [v for kind, v in self.outputs if kind == "e"]

    def _compile_forward(self, keep_all: bool, whole: bool = False) -> Any:
        """``fn(*args) -> tuple`` of the results' values (and, with keep_all, of every node's value).

        With ``whole`` (not keep_all), the float code may instead be the whole call, ``fn(*tensors)
        -> results`` (see ``codegen_float.compile_forward``); ``self._whole`` says which was made.
        """
        gen = _Source(self.n_args)
        nodes = self.env_nodes
        checks: dict[int, list[_Guard]] = {}
        for nid, guard in self.guards:
            checks.setdefault(nid, []).append(guard)
        if checks:
            miss = gen.const(_GuardMiss)
            for i in self.arg_ids:  # guards on arguments first, then each right after its value
                for guard in checks.get(i, ()):
                    gen.line(f"if not {gen.const(guard.check)}(v{i}): raise {miss}")
        frees = {} if keep_all else self.last_uses()
        for node in nodes:
            nid = node.id
            gen.line(f"v{nid} = {gen.call(OPS[node.op], self.ins[nid], node.params, self.dyn[nid])}")
            for guard in checks.get(nid, ()):
                gen.line(f"if not {gen.const(guard.check)}(v{nid}): raise {miss}")
            if nid in frees:
                gen.line(f"del {', '.join(f'v{v}' for v in frees[nid])}")
        results = [f"v{v}" for kind, v in self.outputs if kind == "e"]
        if keep_all:
            gen.line(f"return ({''.join(r + ', ' for r in results)}), ({''.join(f'v{nd.id}, ' for nd in nodes)})")
        else:
            gen.line(f"return ({''.join(r + ', ' for r in results)})")
        numpy_fn = gen.build([f"v{i}" for i in self.arg_ids])
        if self.floats is None:  # every value a 0-d float64: code over Python floats (transforms/codegen_float.py)
            from difftape.transforms import codegen_float

            self.floats = codegen_float.eligible(self)
        if self.floats:
            from difftape.transforms import codegen_float

            entry = None
            if whole and not keep_all and self._flat_results:
                def general(*ts: Tensor) -> Any:
                    return self._results(ts, numpy_fn(*self._arguments(ts)))

                def wrap(values: tuple[Any, ...]) -> Any:
                    return self._results((), values)

                entry = (general, wrap)
            try:
                fn = codegen_float.compile_forward(self, keep_all, numpy_fn, entry)
                if entry is not None:
                    self._whole = True
                return fn
            except _Untraceable:
                self.floats = False
        if not keep_all and not self.floats:  # chains of elementwise ops on large arrays: fused kernels
            from difftape.transforms import fuse

            fused = fuse.compile_forward(self, numpy_fn)
            if fused is not None:
                return fused
        return numpy_fn

    def _arguments(self, inputs: Any) -> list[Any]:
        vals = [t._value for t in inputs]
        vals += [v._value for v in self.variables]
        for i, v in enumerate(vals):
            if not isinstance(v, _NUMPY_VALUE):  # e.g. a tensor holding a Python number
                vals[i] = np.asarray(v)
        return vals

    def _results(self, inputs: list[Tensor], values: tuple[Any, ...], made: list[Tensor] | None = None) -> Any:
        if self._flat_results:  # every result computed, returned as one tuple (or one tensor): the common case
            tensors = []
            for value in values:
                t = _new(Tensor)
                t._value = numpy_value(value)
                t._tok = None
                tensors.append(t)
            if made is not None:
                made.extend(tensors)
            return tuple(tensors) if self._flat_results == "tuple" else tensors[0]
        it = iter(values)
        leaves = []
        for kind, v in self.outputs:
            if kind == "e":
                t = _new(Tensor)
                value = next(it)
                t._value = numpy_value(value)
                t._tok = None
                if made is not None:
                    made.append(t)
            elif kind == "input":
                t = inputs[v]
            elif kind == "var":
                t = self.variables[v]
            elif kind == "k":
                t = Tensor(v)  # a folded result: a new tensor each call, as eager code makes
            else:
                t = v
            leaves.append(t)
        it2 = iter(leaves)
        return _map(self.graph.results, lambda _ref: next(it2), leaf=NodeRef)

    def forward(self, inputs: list[Tensor]) -> Any:
        fn = self._forward
        if fn is None:
            fn = self._forward = self._compile_forward(keep_all=False, whole=True)
        if self._whole:  # the float code: the whole call in one generated function
            return fn(*inputs)
        return self._results(inputs, fn(*self._arguments(inputs)))

    def forward_recorded(self, inputs: list[Tensor], tape: Tape) -> Any:
        """The compiled forward, each differentiable result recorded on ``tape`` as one entry."""
        if self._forward_all is None:  # (set last: another thread may test it while this one makes the rest)
            self._composites = [_Composite(self, k) for k in range(len(self.outputs))]
            self._forward_all = self._compile_forward(keep_all=True)
        args = self._arguments(inputs)
        values, env = self._forward_all(*args)
        made: list[Tensor] = []
        result = self._results(inputs, values, made)
        arg_tensors = tuple(inputs) + tuple(self.variables)
        it = iter(made)
        for k, (kind, _) in enumerate(self.outputs):
            if kind == "e":
                tape._push(self._composites[k], arg_tensors, args, env, next(it))
        return result

    # -- backward ------------------------------------------------------------------------------
    def backward_function(self, out_index: int, hits: tuple[int, ...]) -> Any:
        """``fn(g, env) -> gradients for the hit arguments`` (None: cannot be generated)."""
        key = (out_index, hits)
        if key not in self._backward:
            try:
                fn = self._compile_backward(out_index, hits)
            except _Untraceable:
                fn = None
            if fn is not None and self.floats:  # the forward's env holds Python floats
                from difftape.transforms import codegen_float

                fn = codegen_float.numpy_env(fn)
                try:
                    fn = codegen_float.compile_backward(self, out_index, hits, fn)
                except _Untraceable:
                    pass
            self._backward[key] = fn
        return self._backward[key]

    def _compile_backward(self, out_index: int, hits: tuple[int, ...]) -> Any:
        if self.has_where:
            raise _Untraceable("where-masks are not generated")
        gen = _Source(0)
        em = _Emitter(gen)
        seed = np.ones_like(np.asarray(self.traced[self.outputs[out_index][1]]))
        outs = self.backward_outputs(out_index, hits, gen, em, seed)
        gen.line("return (" + "".join(f"{em.expr(o)}, " if o is not None else "None, " for o in outs) + ")")
        return gen.build(["g", "env", "args"])

    def backward_outputs(
        self, out_index: int, hits: tuple[int, ...], gen: _Source, em: _Emitter, seed: Any
    ) -> list[Any]:
        """Write the backward pass of one result into ``gen`` through ``em``: the hit arguments' gradients.

        The output gradient is ``g``, the arguments ``args`` and the forward's values ``env`` (the
        generated function's parameters); ``seed`` is g's value while generating.
        """
        kind, out_id = self.outputs[out_index]
        position = {node.id: k for k, node in enumerate(self.env_nodes)}  # the env tuple's order
        hit_ids = [self.arg_ids[h] for h in hits]  # hits: argument positions (the tape entry's inputs)
        live = set(hit_ids)
        chain: list[tuple[Node, Op, list[int]]] = []
        for node in self._needed([out_id]):
            op = OPS[node.op]
            if op.vjps is None:
                continue
            pos = [i for i, (k, v) in enumerate(self.ins[node.id]) if k == "e" and v in live]
            if pos:
                live.add(node.id)
                chain.append((node, op, pos))
        unpacked: dict[int, _V] = {}

        def value(eid: int) -> _V:
            if eid not in unpacked:
                if eid in self.arg_pos:
                    name = f"a{eid}"
                    gen.prologue(f"{name} = args[{self.arg_pos[eid]}]")
                else:
                    name = f"e{eid}"
                    gen.prologue(f"{name} = env[{position[eid]}]")
                unpacked[eid] = _V(em, name, self.traced[eid])
            return unpacked[eid]

        grads: dict[int, Any] = {out_id: _V(em, "g", seed)}
        for node, op, pos in reversed(chain):
            g = grads.pop(node.id, None)
            if g is None:
                continue
            y = value(node.id)
            refs = self.ins[node.id]
            ins = [value(v) if k == "e" else v for k, v in refs]
            dyn = self.dyn[node.id]
            params = node.params if dyn is None else {k: _env_values(v, value) for k, v in dyn.items()}
            for i in pos:
                vjp = vjp_for(op, i)
                if vjp is None:
                    continue
                gi = vjp(em.F, g, y, *ins, **params)
                xshape = shape_of(ins[i])
                if shape_of(gi) != xshape:
                    gi = _unbroadcast(em.F, gi, xshape)
                aid = refs[i][1]
                prev = grads.get(aid)
                grads[aid] = gi if prev is None else prev + gi
        return [grads.get(p) for p in hit_ids]


def _times_ones(op: str, ins: list[tuple[str, Any]], value: Any, traced: dict[int, Any]) -> int | None:
    """The id ``e`` when the node is ``e * c`` (either order) with ``c`` a constant array of ones, and the
    product is ``e``'s own shape and dtype (so it is ``e``, exactly: ``x * 1`` is ``x`` in IEEE arithmetic)."""
    if op != "multiply" or len(ins) != 2 or value.__class__ is not np.ndarray or value.size < 1024:
        return None
    for (ke, e), (kc, c) in ((ins[0], ins[1]), (ins[1], ins[0])):
        if ke == "e" and kc == "k" and c.__class__ is np.ndarray and c.shape == value.shape:
            mine = traced.get(e)
            if (mine.__class__ is np.ndarray and mine.shape == value.shape and mine.dtype == value.dtype
                    and c.dtype.kind in "fiu" and bool(np.all(c == 1))):
                return e
    return None


class _EnvRef:
    """A reference to an env value (or a constant) inside an op's parameters (``x[i]``'s index)."""

    __slots__ = ("kind", "value")

    def __init__(self, kind: str, value: Any) -> None:
        self.kind, self.value = kind, value


def _has_env(v: Any) -> bool:
    if isinstance(v, _EnvRef):
        return v.kind == "e"
    if isinstance(v, dict):
        return any(_has_env(e) for e in v.values())
    if isinstance(v, (tuple, list)):
        return any(_has_env(e) for e in v)
    if isinstance(v, slice):
        return _has_env((v.start, v.stop, v.step))
    return False


def _env_ids(v: Any) -> list[int]:
    if isinstance(v, _EnvRef):
        return [v.value] if v.kind == "e" else []
    if isinstance(v, dict):
        return [e for x in v.values() for e in _env_ids(x)]
    if isinstance(v, (tuple, list)):
        return [e for x in v for e in _env_ids(x)]
    if isinstance(v, slice):
        return _env_ids((v.start, v.stop, v.step))
    return []


def _env_values(v: Any, value: Callable[[int], Any]) -> Any:
    if isinstance(v, _EnvRef):
        return value(v.value) if v.kind == "e" else v.value
    if isinstance(v, (tuple, list)):
        return type(v)(_env_values(e, value) for e in v)
    if isinstance(v, slice):
        return slice(*(_env_values(e, value) for e in (v.start, v.stop, v.step)))
    return v


def _const_key(v: Any) -> Any:
    """A hashable key that tells constants apart exactly (1, 1.0, True and -0.0, 0.0 differ); None: no key."""
    t = type(v)
    if t is float:
        return ("float", v.hex())
    if t in (int, bool, str) or v is None:
        return (t.__name__, v)
    if t is tuple:
        parts = tuple(_const_key(e) for e in v)
        return None if any(p is None for p in parts) else ("tuple", parts)
    if t is _EnvRef:
        return ("env", v.value) if v.kind == "e" else _const_key(v.value)
    return ("id", id(v))  # arrays and other objects: the same object only (kept alive by the graph)


#: ops whose two inputs commute bit for bit (IEEE-754 a + b is b + a, a * b is b * a; of two nan inputs the
#: result is a nan either way): ``x*y`` and ``y*x`` (a VJP writes the other order) are one value
_COMMUTATIVE = frozenset({"add", "multiply"})


def _cse_key(op: str, ins: list[tuple[str, Any]], params: dict[str, Any]) -> Any:
    keys: list[Any] = []
    for kind, v in ins:
        k = ("e", v) if kind == "e" else _const_key(v)
        if k is None:
            return None
        keys.append(k)
    if op in _COMMUTATIVE and len(keys) == 2 and not params:
        keys.sort(key=repr)
    parts: list[Any] = [op, *keys]
    for name in sorted(params):
        k = _const_key(params[name])
        if k is None or k[0] == "id":  # an index array or a list: not worth comparing
            return None
        parts.append((name, k))
    return tuple(parts)


# ------------------------------------------------------------------------------------------------
# generating source


class _Source:
    """Straight-line source of one function; constants are passed in, never written into the text."""

    def __init__(self, n_args: int) -> None:
        self.n_args = n_args
        self.consts: list[Any] = []
        self._const_ids: dict[int, int] = {}
        self.head: list[str] = []
        self.body: list[str] = []
        self.ops: set[str] = set()

    def const(self, value: Any) -> str:
        k = self._const_ids.get(id(value))
        if k is None or self.consts[k] is not value:
            k = len(self.consts)
            self.consts.append(value)
            self._const_ids[id(value)] = k
        return f"k{k}"

    def op(self, name: str) -> str:
        assert name in OPS and name.isidentifier()  # only the table's names become source
        self.ops.add(name)
        return f"f_{name}"

    def line(self, text: str) -> None:
        self.body.append("    " + text)

    def prologue(self, text: str) -> None:
        self.head.append("    " + text)

    def ref(self, r: tuple[str, Any]) -> str:
        kind, v = r
        return f"v{v}" if kind == "e" else self.const(v)

    def param(self, v: Any) -> str:
        if isinstance(v, _EnvRef):
            return self.ref((v.kind, v.value))
        if isinstance(v, tuple):
            return "(" + "".join(self.param(e) + ", " for e in v) + ")"
        if isinstance(v, list):
            return "[" + ", ".join(self.param(e) for e in v) + "]"
        if isinstance(v, slice) and _has_env(v):  # x[i:j] with computed bounds
            return f"{self.const(slice)}({self.param(v.start)}, {self.param(v.stop)}, {self.param(v.step)})"
        return self.const(v)

    def call(self, op: Op, ins: list[tuple[str, Any]], params: dict[str, Any], dynamic: dict[str, Any] | None) -> str:
        """A forward node as an expression: the Python operator for arithmetic on an env value, else its forward."""
        name = op.name
        args = [self.ref(r) for r in ins]
        if not params and dynamic is None:
            if name in _BINARY and any(k == "e" for k, _ in ins):
                return f"{args[0]} {_BINARY[name]} {args[1]}"
            if name in _UNARY:
                return f"{_UNARY[name]}{args[0]}"
            return f"{self.op(name)}({', '.join(args)})"
        if dynamic is None:
            kw = self.const(params)
        else:
            kw = "{" + "".join(f"{self.const(k)}: {self.param(v)}, " for k, v in dynamic.items()) + "}"
        return f"{self.op(name)}({''.join(a + ', ' for a in args)}**{kw})"

    def build(self, params: list[str]) -> Any:
        """Compile the function; names: the parameters, ``k<i>`` constants, ``f_<op>`` forwards."""
        lines = ["def make(K, FORWARD):"]
        if self.consts:
            lines.append("    " + "".join(f"k{i}, " for i in range(len(self.consts))) + "= K")
        for name in sorted(self.ops):
            lines.append(f"    f_{name} = FORWARD[{self.const_index(name)}]")
        lines.append(f"    def run({', '.join(params)}):")
        used = set(re.findall(r"\b[a-z]\d+\b", "\n".join(self.body)))
        lines += ["    " + t for t in self.head if t.split("=")[0].strip() in used]  # values the body reads
        lines += ["    " + t for t in self.body]
        lines.append("    return run")
        names = sorted(self.ops)
        scope: dict[str, Any] = {}
        exec(compile("\n".join(lines), "<difftape.function>", "exec"), scope)  # noqa: S102 - generated, see above
        return scope["make"](tuple(self.consts), [OPS[n].forward for n in names])

    def const_index(self, name: str) -> int:
        return sorted(self.ops).index(name)


class _V:
    """A traced value while the backward pass is generated: its value at trace time and its name in the source.

    Arithmetic on it computes on the value and writes the same operation down, so the
    generated code performs exactly the numpy operations the tape's backward pass would.
    """

    __slots__ = ("em", "name", "value")
    __array_ufunc__ = None  # numpy defers to our reflected operators

    def __init__(self, em: _Emitter, name: str, value: Any) -> None:
        self.em, self.name, self.value = em, name, value

    @property
    def shape(self) -> tuple[int, ...]:
        return np.shape(self.value)

    @property
    def ndim(self) -> int:
        return np.ndim(self.value)

    @property
    def dtype(self) -> Any:
        return np.asarray(self.value).dtype

    @property
    def size(self) -> int:
        return int(np.size(self.value))

    @property
    def T(self) -> _V:  # noqa: N802 - numpy's name
        return self.em.emit(lambda a: a.T, "{0}.T", (self,))

    def _untraceable(self, *_: Any) -> Any:
        raise _Untraceable("a VJP used a traced value as a Python value")

    __bool__ = __float__ = __int__ = __index__ = __len__ = __iter__ = __array__ = _untraceable
    __hash__ = None  # type: ignore[assignment]

    def __getitem__(self, index: Any) -> _V:
        return self.em.emit(lambda a, i: a[i], "{0}[{1}]", (self, index))


def _operator(fmt: str, fn: Callable[..., Any], reflected: bool = False) -> Callable[..., Any]:
    if reflected:  # other <op> self
        return lambda self, other: self.em.emit(fn, fmt, (other, self))
    return lambda self, *other: self.em.emit(fn, fmt, (self, *other))


for _name, _sym in [("add", "+"), ("sub", "-"), ("mul", "*"), ("truediv", "/"), ("floordiv", "//"),
                    ("mod", "%"), ("pow", "**"), ("matmul", "@"), ("and", "&"), ("or", "|")]:
    _fn = eval(f"lambda a, b: a {_sym} b")  # noqa: S307 - fixed operator table, no outside text
    setattr(_V, f"__{_name}__", _operator("({0} " + _sym + " {1})", _fn))
    setattr(_V, f"__r{_name}__", _operator("({0} " + _sym + " {1})", _fn, reflected=True))
for _name, _sym in [("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">="), ("eq", "=="), ("ne", "!=")]:
    _fn = eval(f"lambda a, b: a {_sym} b")  # noqa: S307 - fixed operator table, no outside text
    setattr(_V, f"__{_name}__", _operator("({0} " + _sym + " {1})", _fn))
for _name, _sym in [("neg", "-"), ("pos", "+"), ("invert", "~")]:
    _fn = eval(f"lambda a: {_sym}a")  # noqa: S307 - fixed operator table, no outside text
    setattr(_V, f"__{_name}__", _operator("(" + _sym + "{0})", _fn))
_V.__abs__ = _operator("abs({0})", abs)  # type: ignore[method-assign]


class _Emitter:
    """Writes the operations performed on :class:`_V` values into a :class:`_Source`."""

    def __init__(self, gen: _Source) -> None:
        self.gen = gen
        self.count = 0
        self.F = _EmitNamespace(self)

    def expr(self, v: Any) -> str:
        if isinstance(v, _V):
            return v.name
        if not _traced(v):
            return self.gen.const(v)
        if isinstance(v, tuple):
            return "(" + "".join(self.expr(e) + ", " for e in v) + ")"
        if isinstance(v, list):
            return "[" + ", ".join(self.expr(e) for e in v) + "]"
        if isinstance(v, dict):
            return "{" + "".join(f"{self.gen.const(k)}: {self.expr(e)}, " for k, e in v.items()) + "}"
        return self.gen.const(v)

    def emit(self, fn: Callable[..., Any], fmt: str, args: tuple[Any, ...]) -> Any:
        """``fn(*values)`` now, and ``name = fmt(*expressions)`` in the source (folded when nothing is traced)."""
        if not any(_traced(a) for a in args):
            return fn(*args)
        value = fn(*(_value_of(a) for a in args))
        name = f"t{self.count}"
        self.count += 1
        self.gen.line(f"{name} = " + fmt.format(*(self.expr(a) for a in args)))
        return _V(self, name, value)

    def call(self, op_name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        op = OPS[op_name]
        if not any(_traced(a) for a in args) and not any(_traced(v) for v in kwargs.values()):
            return op.forward(*args, **kwargs)
        value = op.forward(*(_value_of(a) for a in args), **{k: _value_of(v) for k, v in kwargs.items()})
        name = f"t{self.count}"
        self.count += 1
        parts = [self.expr(a) for a in args]
        if kwargs:
            parts.append("**" + self.expr(kwargs))
        self.gen.line(f"{name} = {self.gen.op(op_name)}({', '.join(parts)})")
        return _V(self, name, value)


class _EmitNamespace:
    """The ``F`` of the VJPs while generating: ``F.sin(x)`` computes and writes down the table's forward."""

    def __init__(self, em: _Emitter) -> None:
        self._em = em

    def __getattr__(self, name: str) -> Any:
        if name not in OPS:
            raise AttributeError(name)
        em = self._em
        fn = functools.partial(_call_op, em, name)
        setattr(self, name, fn)
        return fn


def _call_op(em: _Emitter, name: str, *args: Any, **kwargs: Any) -> Any:
    return em.call(name, args, kwargs)


def _traced(v: Any) -> bool:
    if isinstance(v, _V):
        return True
    if isinstance(v, (tuple, list)):
        return any(_traced(e) for e in v)
    if isinstance(v, dict):
        return any(_traced(e) for e in v.values())
    return False


def _value_of(v: Any) -> Any:
    if isinstance(v, _V):
        return v.value
    if isinstance(v, (tuple, list)):
        return type(v)(_value_of(e) for e in v)
    return v


# ------------------------------------------------------------------------------------------------
# one tape entry per result of a compiled call


class _Composite:
    """The tape's "op" for one result of a compiled call (``Tape._backward`` calls ``gradients``)."""

    vjps = ()  # not None: the tape records it
    variadic = False
    elementwise = False
    special = True  # the tape's backward pass calls ``gradients``

    def __init__(self, plan: _Plan, out_index: int) -> None:
        self.plan, self.out_index = plan, out_index
        self.name = f"function:{getattr(plan.graph, 'name', 'traced')}"

    def gradients(self, F: Any, higher: bool, args: tuple[Any, ...], vals: list[Any], env: tuple[Any, ...],
                  out: Tensor, hits: tuple[int, ...], g: Any, mask: Any) -> list[tuple[int, Any, Any]]:
        """``(argument position, gradient, None)`` for each watched argument the result depends on."""
        if not higher and mask is None:
            fn = self.plan.backward_function(self.out_index, hits)
            out_shape = np.shape(self.plan.traced[self.plan.outputs[self.out_index][1]])
            if fn is not None and np.shape(g) == out_shape:
                return [(i, gi, None) for i, gi in zip(hits, fn(g, env, vals)) if gi is not None]
        return self._replay(higher, args, vals, hits, g, mask)

    def _replay(self, higher: bool, args: tuple[Any, ...], vals: list[Any], hits: tuple[int, ...], g: Any,
                mask: Any) -> list[tuple[int, Any, Any]]:
        """The gradient by running the graph op by op on a tape of its own (masks, higher derivatives)."""
        compiled = self.plan.compiled
        n = compiled.n_inputs
        if higher:
            ins = list(args)  # the real tensors: outer tapes record the recomputation against them
            seen: set[int] = set()
            for i, t in enumerate(ins):  # one tensor at two positions (f(x, x)): one slot each on the inner tape
                if id(t) in seen and isinstance(t, Tensor):
                    ins[i] = apply(OPS["positive"], (t,))  # recorded, so outer tapes still reach t through it
                seen.add(id(t))
        else:
            ins = [Tensor(v) for v in vals]
        inner = Tape(watch_accessed_variables=False)
        inner.watch([ins[i] for i in hits])
        with inner:
            vals = compiled.run_values(ins[:n], ins[n:], check=False)  # the forward passed its guards
        target = vals[compiled.leaves[self.out_index].id]
        if inner._slot(target) is None:
            return []
        masks = {id(target): mask} if mask is not None else None
        sources = [ins[i] for i in hits]
        got = inner._backward([target], sources, [g], "none", free=True, masks=masks, raw=True)
        return [(i, gi, None) for i, gi in zip(hits, got) if gi is not None]


# ------------------------------------------------------------------------------------------------
# the decorator


#: How many traces one input signature may have (each a different outcome of the body's Python
#: decisions on traced values) before it runs eagerly instead, with a :class:`RetraceWarning`.
MAX_TRACES_PER_SIGNATURE = 8


class RetraceWarning(RuntimeWarning):
    """A traced function keeps meeting new values where its body uses tensors as Python values."""


class _Variants:
    """The traces of one signature that differ in their guards; a call replays the first that holds."""

    __slots__ = ("graphs",)

    def __init__(self, graphs: list[_Compiled]) -> None:
        self.graphs = graphs

    def call(self, inputs: list[Tensor]) -> Any:
        for graph in self.graphs:
            try:
                return graph.call(inputs)
            except _GuardMiss:
                continue
        raise _GuardMiss


class _Eager:
    """A signature past :data:`MAX_TRACES_PER_SIGNATURE`: every call runs the Python body."""

    __slots__ = ("graphs",)

    def __init__(self, graphs: list[_Compiled]) -> None:
        self.graphs = graphs  # kept for trace_count

    def call(self, inputs: list[Tensor]) -> Any:
        raise _GuardMiss  # Function.__call__ runs the body


class Function:
    """A traced function; ``trace_count`` says how many traces it has made (signatures and variants)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        functools.update_wrapper(self, fn)
        self.python_function = fn
        self._graphs: dict[Any, _Compiled] = {}
        self._pinned: dict[int, Any] = {}  # objects keyed by identity stay alive, so ids are never reused
        self._bound: dict[int, Function] = {}
        # the entry of the signature of n positional tensors holding float64 scalars, the common call of
        # an optimisation loop, found without building its key (reset when it changes)
        self._fast: tuple[int, Any, Any] | None = None  # (n, entry, its whole float code once compiled)

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        """As a method: one traced function per instance (its Variables are its own)."""
        if instance is None:
            return self
        bound = self._bound.get(id(instance))
        if bound is None:
            bound = Function(functools.partial(self.python_function, instance))
            self._bound[id(instance)] = bound
            self._pinned[id(instance)] = instance
        return bound

    def _static_key(self, a: Any) -> Any:
        """Signature part of a non-tensor argument: numbers and strings by value, other objects by identity."""
        if a is None or isinstance(a, (bool, int, float, complex, str)):
            if isinstance(a, float) and math.isnan(a):
                return ("float", "nan")
            return (type(a).__name__, repr(a))
        if isinstance(a, tuple):
            return ("tuple", tuple(self._static_key(e) for e in a))
        if isinstance(a, dict):
            return ("dict", tuple((repr(k), self._static_key(v)) for k, v in a.items()))
        self._pinned[id(a)] = a
        return ("object", id(a))

    @property
    def trace_count(self) -> int:
        return sum(1 if isinstance(g, _Compiled) else len(g.graphs) for g in self._graphs.values())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        fast = self._fast
        if fast is not None and not kwargs and len(args) == fast[0]:
            for a in args:
                if a.__class__ is not Tensor or a._value.__class__ is not _F64:
                    break
            else:  # the same signature as the key below would build
                try:
                    if not _ACTIVE and fast[2] is not None:  # nothing records: the float code, directly
                        return fast[2](*args)
                    out = fast[1].call(args)
                    if fast[2] is None and not _ACTIVE and fast[1].__class__ is _Compiled and fast[1].plan._whole:
                        self._fast = (fast[0], fast[1], fast[1].plan._forward)
                    return out
                except _GuardMiss:
                    return self._missed((_SCALAR_KEY,) * len(args), list(args), list(args), len(args), [])
        tensors: list[Tensor] = []
        key: list[Any] = []
        call_args: list[Any] = []
        for a in (args + tuple(kwargs[k] for k in sorted(kwargs))) if kwargs else args:
            if isinstance(a, Tensor):
                tensors.append(a)
                call_args.append(a)
                v = a._value  # a numpy array or scalar (see tape.apply)
                key.append(("T", v.shape, v.dtype))
            elif _is_tensor_like(a):
                t = Tensor(as_array(a))
                tensors.append(t)
                call_args.append(t)
                key.append(("T", t.shape, t.dtype))
            else:
                call_args.append(a)
                key.append(("V", self._static_key(a)))
        sig = (tuple(key), tuple(sorted(kwargs))) if kwargs else tuple(key)
        graph = self._graphs.get(sig)
        if graph is None:
            graph = self._trace(call_args, tensors, len(args), sorted(kwargs))
            self._graphs[sig] = graph
        if not kwargs and args and all(k == _SCALAR_KEY for k in key):
            self._fast = (len(args), graph, None)
        try:
            return graph.call(tensors)
        except _GuardMiss:  # a value the trace depends on differs (only a traced graph with guards raises it)
            return self._missed(sig, call_args, tensors, len(args), sorted(kwargs))

    def _missed(self, sig: Any, call_args: list[Any], tensors: list[Tensor], n_pos: int, kw: list[str]) -> Any:
        """No trace of this signature holds for these values: trace again, or past the bound, run eagerly."""
        self._fast = None  # its entry changes below
        while True:
            entry = self._graphs[sig]
            if isinstance(entry, _Eager):
                out = self.python_function(*call_args[:n_pos], **dict(zip(kw, call_args[n_pos:])))
                return _map(out, lambda t: t if isinstance(t, Tensor) else _as_tensor(t))
            graphs = entry.graphs if isinstance(entry, _Variants) else [entry]
            if len(graphs) >= MAX_TRACES_PER_SIGNATURE:
                self._graphs[sig] = _Eager(graphs)
                warnings.warn(self._retrace_message(graphs), RetraceWarning, stacklevel=3)
                continue
            graph = self._trace(call_args, tensors, n_pos, kw)
            self._graphs[sig] = _Variants([graph, *graphs])  # the newest first: the values seen last
            try:
                return graph.call(tensors)
            except _GuardMiss:  # the body decided differently on a replay of its own trace: trace again
                continue

    def _retrace_message(self, graphs: list[_Compiled]) -> str:
        seen: dict[tuple[str, str], set[bytes]] = {}
        for graph in graphs:
            for guard in graph.guards:
                value = guard.value
                data = value.tobytes() if isinstance(value, np.ndarray) else repr(value).encode()
                seen.setdefault((guard.site, guard.kind), set()).add(data)
        changing = [f"a traced value {_DESCRIBE[kind]} at {site}" for (site, kind), v in seen.items() if len(v) > 1]
        name = getattr(self.python_function, "__name__", "the function")
        return (
            f"difftape.function {name!r} was traced {len(graphs)} times for one input signature because "
            f"{'; '.join(changing) or 'its Python decisions on traced values'} kept changing; it now runs "
            "eagerly for that signature (the same results, without the compiled replay). Write "
            "difftape.where(condition, a, b) instead of if/else on a tensor, or pass such a number as a "
            "Python argument (each new number traces once)"
        )

    def _trace(self, call_args: list[Any], tensors: list[Tensor], n_pos: int, kw: list[str]) -> _Compiled:
        trace = _Trace(tensors)
        # in this thread, tapes record the replay below, not the tracing run, and tensors used as
        # Python values tell this trace (its guards)
        outer = _begin_trace(trace)
        try:
            out = self.python_function(*call_args[:n_pos], **dict(zip(kw, call_args[n_pos:])))
        finally:
            _end_trace(outer)
        return _Compiled(trace, out, getattr(self.python_function, "__name__", "traced"))


def function(fn: Callable[..., Any] | None = None) -> Any:
    """Decorator (``tf.function``): trace once per input signature, then replay the compiled graph.

    Python control flow on tensor values is guarded, not frozen: a traced value the body used as a
    Python bool, int, float, index or numpy array is checked at each replay, and a call for which
    it differs traces again (one trace per outcome, up to ``MAX_TRACES_PER_SIGNATURE`` per
    signature; past that the signature runs eagerly, with a ``RetraceWarning``). Every call
    therefore gives what eager execution gives. Write ``difftape.where`` for a branch on values,
    or pass a number as a Python argument, to keep one compiled trace.
    """
    if fn is None:
        return function
    return Function(fn)


_TRACE_CODE = Function._trace.__code__
