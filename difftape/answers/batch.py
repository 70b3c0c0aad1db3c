"""Batches: one program evaluated, differentiated and rendered over many points at once.

A batch is a list of points, each a mapping of input names to values (one NDJSON line of
``difftape grad PROGRAM --batch``). Points whose values have the same shapes and dtypes
form a group; each group is compiled once (so every node has its static per-point shape)
and run vectorised, not once per point:

- a value that depends on the points is *batched*: a node of per-point shape ``S`` holds an
  array of shape ``(B,) + S``, one row per point;
- a value shared by all points (literals, constants, random draws, leaf bindings and
  ``--at`` inputs that no point overrides) keeps its shape ``S`` and is computed once per
  group; a shared leaf that is differentiated is broadcast to the batch first, so that each
  point gets its own derivative.

Per op, the batching rule of its registry entry (``Op.batch``, see ``ops/batching.py``) runs the
op on batched operands so that each point keeps its meaning. Every rule is written with the
engine's own ops (``tape.apply``), so a tape records the batched run and the registry's VJPs
differentiate it. An op without a rule falls back to running that one node point by point
(slow but right).

Points are independent, so the per-point gradients are the gradient of the sum over the
batch w.r.t. the batched leaves; a Jacobian seeds one per-point output element at a time,
for the whole batch at once. A vectorised run that fails (one singular matrix among many)
is split in halves until the failing points are isolated; single points then run through
:class:`~difftape.answers.program.Program`, so a point's result or error is exactly the one
``difftape`` gives for it alone.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np

from difftape.engine.tape import Tape, apply
from difftape.engine.tensor import Tensor, as_array
from difftape.errors import DifftapeError, did_you_mean
from difftape.ir.graph import Graph, Node, draw
from difftape.ops import OPS
from difftape.ops.batching import per_point

#: Largest number of array elements one node of a vectorised run should hold (chunks of points).
CHUNK_ELEMENTS = 1 << 22
#: Most points in one vectorised run.
MAX_CHUNK = 1 << 16
#: A failing run of at most this many points is answered point by point (through Program).
SMALL = 4
#: JSON strings accepted for non-finite numbers.
NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
COMMANDS = ("eval", "grad", "jacobian", "check")
#: The commands BatchProgram.answer runs vectorised (``check`` has its own: answers/batch_check.py).
VECTORISED = ("eval", "grad", "jacobian")
#: Commands answered point by point (one Program a line), through a callable the caller gives.
POINTWISE = ("hessian", "jvp", "vjp", "hvp")


# ----------------------------------------------------------------------------------------
# running a graph over a batch


def _raw(x: Any) -> Any:
    return x._value if isinstance(x, Tensor) else x


class _SharedValueError(Exception):
    """A value shared by all points failed: every point of the group gets this error."""

    def __init__(self, error: DifftapeError) -> None:
        super().__init__(error.message)
        self.error = error


#: The graph-level node kinds (graph.GRAPH_KINDS) that BatchGraph.run handles as Graph.run does.
GRAPH_KINDS_RUN = ("literal", "random", "input", "variable", "const")


class BatchGraph:
    """A compiled graph (static shapes per point) run over batches of points.

    Node by node as ``Graph.run`` (random draws first, in source order; leaves through the same
    promotion as ``Program``), but on batched values. Values shared by all points are computed
    once and kept for later runs.
    """

    def __init__(self, graph: Graph, *, seed: int = 0, float_dtype: Any = np.float64) -> None:
        graph.check_values()
        self.graph = graph
        self.seed = int(seed)
        self.float_dtype = np.dtype(float_dtype)
        self._shared: dict[int, Any] = {}
        self._drawn = False
        self._rules = [OPS[n.op].batch if n.op in OPS else None for n in graph.nodes]

    def _draws(self) -> None:
        rng = np.random.default_rng(self.seed)
        for node in sorted((n for n in self.graph.nodes if n.op == "random"), key=lambda n: n.params["order"]):
            self._shared[node.id] = draw(rng, node.params)  # float64 drawn, then rounded, as Graph.run

    def run(
        self,
        B: int,
        values: Mapping[str, Any],
        watched: Iterable[str] = (),
        tapes: Sequence[Tape] = (),
    ) -> tuple[Any, bool, dict[str, tuple[Any, bool]]]:
        """Evaluate the graph for ``B`` points; ``values`` holds the batched inputs, (B,) + shape each.

        Leaves named in ``watched`` are made batched float tensors and watched on ``tapes``.
        Returns (target value, whether it is batched, {leaf name: (value, batched)}).
        """
        graph = self.graph
        nodes = graph.nodes
        watched = set(watched)
        shared = self._shared
        if not self._drawn:
            self._draws()
            self._drawn = True
        vals: list[Any] = [None] * len(nodes)
        batched = [False] * len(nodes)
        leaves: dict[str, tuple[Any, bool]] = {}
        for node in nodes:
            i, op = node.id, node.op
            b = False
            if op == "literal":
                v = node.params["value"]
            elif op == "random":
                v = shared[i]
            elif op == "input":
                if node.name in values:
                    v, b = values[node.name], True
                else:
                    v = graph.values[node.name]
            elif op == "variable":
                v, b = vals[node.inputs[0]], batched[node.inputs[0]]
            elif op == "const":
                v, b = vals[node.inputs[0]], batched[node.inputs[0]]
                if b:
                    v = Tensor(_raw(v))  # a const never carries a gradient
            else:
                flags = tuple(batched[j] for j in node.inputs)
                args = tuple(vals[j] for j in node.inputs)
                if not any(flags):
                    v = shared.get(i)
                    if v is None:
                        v = shared[i] = self._shared_op(node, args)
                else:
                    b = True
                    v = self._batched_op(B, node, args, flags)
            if node.leaf:
                v, b = self._leaf(B, node, v, b, watched, tapes)
                leaves[node.name] = (v, b)
            vals[i] = v
            batched[i] = b
        return vals[graph.target], batched[graph.target], leaves

    def _shared_op(self, node: Node, args: tuple) -> Any:
        try:
            return OPS[node.op].forward(*args, **node.params)
        except (ArithmeticError, ValueError, TypeError, IndexError, np.linalg.LinAlgError) as err:
            raise _SharedValueError(self.graph._error("value", f"{node.op} failed: {err}", node)) from None

    def _batched_op(self, B: int, node: Node, args: tuple, flags: tuple) -> Any:
        op = OPS[node.op]
        rule = self._rules[node.id]
        shapes = tuple(tuple(self.graph.nodes[j].shape) for j in node.inputs)
        out = rule(apply, B, op, node, args, flags, shapes) if rule is not None else NotImplemented
        if out is NotImplemented:
            out = per_point(apply, B, op, node, args, flags)
        return out

    def _leaf(self, B: int, node: Node, v: Any, b: bool, watched: set[str], tapes: Sequence[Tape]) -> tuple[Any, bool]:
        """As Program does: a watched leaf becomes a float tensor on the tapes (here batched, one per point)."""
        if node.name not in watched:  # as Program: a leaf is an array, even a plain number (then strongly typed)
            if b:
                return (v if isinstance(v, Tensor) else Tensor(np.asarray(v))), True
            return as_array(_raw(v)), False
        arr = np.asarray(_raw(v))
        if not b:
            arr = np.broadcast_to(arr, (B,) + arr.shape)
        if arr.dtype.kind not in "fc" or (arr.dtype.kind == "f" and arr.dtype != self.float_dtype):
            arr = arr.astype(self.float_dtype)
        t = Tensor(arr)
        for tape in tapes:
            tape.watch(t)
        return t, True


# ----------------------------------------------------------------------------------------
# point values


def point_value(v: Any, dtype: Any) -> np.ndarray:
    """One input value of a point as ``--at`` would give it; ValueError (with the reason) if it is not one.

    Numbers keep their kind (int -> int64, bool), except that floats, and lists holding one, take
    the program's float dtype, as ``--at`` values do; "nan", "inf", "-inf" are floats.
    """
    arr = _point_array(v)
    if arr.dtype.kind == "f" and arr.dtype != np.dtype(dtype):
        arr = arr.astype(dtype)
    return arr


def _point_array(v: Any) -> np.ndarray:
    t = type(v)
    if t is float or t is bool:
        return np.asarray(v)
    if t is int:
        if not -(2**63) <= v < 2**63:
            raise ValueError(f"the number {v} is out of range (64-bit integers)")
        return np.asarray(v, dtype=np.int64)
    if t is str:
        if v in NONFINITE:
            return np.asarray(NONFINITE[v])
        raise ValueError(f"{json.dumps(v)} is not a number (only the strings \"nan\", \"inf\" and \"-inf\" are)")
    if isinstance(v, np.ndarray) or isinstance(v, (np.generic, int, float)):
        arr = np.asarray(v)
    elif isinstance(v, (list, tuple)):
        try:
            arr = np.array(v)
        except (ValueError, OverflowError):
            arr = None
        if arr is None or arr.dtype.kind not in "biuf":
            arr = _fix_list(v)
    else:
        what = "null" if v is None else "an object" if isinstance(v, dict) else type(v).__name__
        raise ValueError(f"a value must be a number or a (nested) list of numbers, not {what}")
    if arr.dtype.kind not in "biuf":
        raise ValueError("a value must be a number or a (nested) list of numbers")
    return arr


def _fix_list(v: Any) -> np.ndarray:
    """A nested list with "nan"/"inf" strings (or a bad element, or ragged): its array, or ValueError."""

    def fix(e: Any, depth: int = 1) -> Any:
        if isinstance(e, list):
            if depth > 32:  # numpy arrays have at most 64 dimensions; deeper would exhaust the stack
                raise ValueError("a list nested more than 32 deep (arrays have at most 32 dimensions here)")
            return [fix(x, depth + 1) for x in e]
        if isinstance(e, str):
            if e in NONFINITE:
                return NONFINITE[e]
            raise ValueError(f"{json.dumps(e)} in a list is not a number")
        if isinstance(e, bool) or isinstance(e, (int, float)):
            if isinstance(e, int) and not -(2**63) <= e < 2**63:
                raise ValueError(f"the number {e} is out of range (64-bit integers)")
            return e
        what = "null" if e is None else "an object" if isinstance(e, dict) else type(e).__name__
        raise ValueError(f"a list must hold numbers, not {what}")

    fixed = fix(v)
    try:
        arr = np.array(fixed)
    except ValueError:
        raise ValueError("a ragged list: every row must have the same length") from None
    if arr.dtype.kind not in "biuf":
        raise ValueError("a ragged list: every row must have the same length")
    return arr


@dataclass
class _Column:
    """The values of one input over some points: stacked when they share a signature, else one by one."""

    stacked: np.ndarray | None = None  # (n,) + shape, when every point has the same shape and dtype
    items: list[np.ndarray | None] = field(default_factory=list)  # else one array per point (None: bad)
    codes: np.ndarray | None = None  # signature code per point (-1: bad value)
    errors: dict[int, str] = field(default_factory=dict)


_FAST = {float: None, bool: np.bool_, int: np.int64}  # None: the program's float dtype


def _column(raw: list[Any], dtype: Any) -> _Column:
    types = set(map(type, raw))
    if len(types) == 1:
        t = next(iter(types))
        if t in _FAST:
            try:
                return _Column(stacked=np.array(raw, dtype=_FAST[t] or dtype))
            except OverflowError:
                pass
    col = _Column(items=[None] * len(raw))
    codes = np.empty(len(raw), dtype=np.int64)
    sigs: dict[tuple, int] = {}
    for j, v in enumerate(raw):
        try:
            arr = point_value(v, dtype)
        except ValueError as err:
            codes[j] = -1
            col.errors[j] = str(err)
            continue
        col.items[j] = arr
        codes[j] = sigs.setdefault((arr.shape, arr.dtype.str), len(sigs))
    if not col.errors and len(sigs) == 1:
        return _Column(stacked=np.stack(col.items))
    col.codes = codes
    return col


@dataclass
class Group:
    """Points with the same input shapes and dtypes: ``lines`` (indices into the batch) and stacked values."""

    lines: np.ndarray
    values: dict[str, np.ndarray]


# ----------------------------------------------------------------------------------------
# results of a vectorised run


@dataclass
class Answer:
    """The results of a command for B points: value (B,) + shape and derivative blocks (B,) + ... (or None)."""

    value: np.ndarray
    derivs: dict[str, np.ndarray | None] | None = None
    summed: bool = False

    def point(self, i: int, command: str, of: str) -> Any:
        """Point ``i`` as the result object of Program (an array for eval)."""
        from difftape.answers.program import GradResult, JacobianResult

        value = self.value[i]
        if command == "eval":
            return np.asarray(value)
        derivs = {n: (None if d is None else np.asarray(d[i])) for n, d in (self.derivs or {}).items()}
        if command == "grad":
            return GradResult(of, np.asarray(value), derivs, self.summed)
        return JacobianResult(of, np.asarray(value), derivs)


def _plain(a: np.ndarray) -> np.ndarray:
    return a + 0.0 if a.dtype.kind == "f" else a  # derivatives never show -0.0 (as Program's)


def _line_error(err: DifftapeError) -> DifftapeError:
    """A point's error: the program position (if any) moves into the message."""
    where = f" (at {err.line}:{err.column} of the program)" if err.line is not None else ""
    return DifftapeError(err.kind, err.message + where)


# ----------------------------------------------------------------------------------------
# the program over a batch


class BatchProgram:
    """A program answering eval, grad or jacobian for many points, vectorised per input signature.

    ``at`` holds values shared by every point (a point's own value overrides them); each point
    gives values for the program's inputs and may override leaf bindings (``x = randn(2)``),
    which are otherwise per-program constants shared by all points.
    """

    def __init__(
        self,
        source: str,
        *,
        of: str | None = None,
        at: Mapping[str, Any] | None = None,
        seed: int = 0,
        dtype: str = "float64",
    ) -> None:
        from difftape.answers.program import Program

        self.base = Program(source, of=of, at=at, seed=seed, dtype=dtype)
        self.source, self.of_name, self.seed, self.dtype = source, of, int(seed), dtype
        self.at = dict(self.base.at)
        graph = self.base.graph
        self.of: str = self.base.of
        order = {n: i for i, n in enumerate([*graph.inputs, *graph.variables, *graph.consts, *graph.bindings])}
        self._order = order
        self.settable = [*graph.inputs, *(n for n in graph.variables if n not in graph.inputs), *graph.consts]
        self.names = set(graph.inputs) | set(graph.bindings)
        self.required = [n for n in graph.inputs if n not in self.at]
        self._runners: dict[tuple, BatchGraph | DifftapeError] = {}

    def runner(self, group: Group) -> BatchGraph:
        """The program compiled for the input signature of ``group`` (once per signature; kept)."""
        from difftape.language.compiler import compile_program

        key = tuple((k, v.shape[1:], v.dtype.str) for k, v in group.values.items())
        runner = self._runners.get(key)
        if runner is None:
            first = {k: v[0] for k, v in group.values.items()}
            try:
                graph = compile_program(self.source, of=self.of_name, values={**self.at, **first}, dtype=self.dtype)
                runner = BatchGraph(graph, seed=self.seed, float_dtype=self.base.float_dtype)
            except DifftapeError as err:
                runner = err
            self._runners[key] = runner
        if isinstance(runner, DifftapeError):
            raise runner
        return runner

    # -- the Python API ------------------------------------------------------------------------
    def evaluate(self, points: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Per point: the target's value (as ``Program.evaluate``), or the DifftapeError of that point."""
        return self._objects(points, "eval", {})

    def grad(
        self,
        points: Sequence[Mapping[str, Any]],
        wrt: Iterable[str] | None = None,
        watch: Iterable[str] = (),
        unconnected: str = "none",
    ) -> list[Any]:
        """Per point: a GradResult (as ``Program.grad``), or the DifftapeError of that point."""
        return self._objects(points, "grad", {"wrt": wrt, "watch": watch, "unconnected": unconnected})

    def jacobian(
        self,
        points: Sequence[Mapping[str, Any]],
        wrt: Iterable[str] | None = None,
        watch: Iterable[str] = (),
        unconnected: str = "none",
    ) -> list[Any]:
        """Per point: a JacobianResult (as ``Program.jacobian``), or the DifftapeError of that point."""
        return self._objects(points, "jacobian", {"wrt": wrt, "watch": watch, "unconnected": unconnected})

    def check(self, points: Sequence[Mapping[str, Any]], **options: Any) -> list[Any]:
        """Per point: a CheckResult (as ``Program.check``), or the DifftapeError of that point.

        The options are those of ``Program.check`` (expect, rtol, atol, wrt, watch, mode, directions,
        order); the checks run vectorised per input signature (``answers/batch_check.py``)."""
        from difftape.answers.batch_check import BatchChecker

        return BatchChecker(self, **options).results(points)

    def _objects(self, points: Sequence[Any], command: str, options: dict[str, Any]) -> list[Any]:
        out: list[Any] = [None] * len(points)

        def emit(lines: np.ndarray, answer: Answer) -> None:
            for i, line in enumerate(lines.tolist()):
                out[line] = answer.point(i, command, self.of)

        def fail(lines: Iterable[int], err: DifftapeError) -> None:
            for line in lines:
                out[line] = err

        self.answer(list(points), command, emit, fail, **options)
        return out

    # -- the engine of both the API and the command line -------------------------------------------
    def answer(
        self,
        points: list[Any],
        command: str,
        emit: Callable[[np.ndarray, Answer], None],
        fail: Callable[[Iterable[int], DifftapeError], None],
        *,
        wrt: Iterable[str] | None = None,
        watch: Iterable[str] = (),
        unconnected: str = "none",
        bad: Mapping[int, DifftapeError] | None = None,
        on_pass: Callable[[int, int, int], Any] | None = None,
    ) -> None:
        """Answer ``command`` for every point: ``emit(lines, answer)`` per vectorised run, ``fail`` per error.

        ``bad`` marks points that are already known to be bad (unreadable lines); they are failed first.
        ``on_pass(done, total, points)`` is told of each backward pass of a vectorised Jacobian over
        ``points`` points (one pass per element of a point's target: a long run for large targets).
        """
        job = self._job(command, emit, fail, wrt, watch, unconnected)
        bad = dict(bad or {})
        for line, err in sorted(bad.items()):
            fail((line,), err)
        groups = self.plan(points, bad, fail)
        job.on_pass = on_pass
        for group in groups:
            job.run_group(group)

    def answer_group(
        self,
        group: Group,
        command: str,
        emit: Callable[[np.ndarray, Answer], None],
        fail: Callable[[Iterable[int], DifftapeError], None],
        *,
        wrt: Iterable[str] | None = None,
        watch: Iterable[str] = (),
        unconnected: str = "none",
    ) -> None:
        """:meth:`answer` for points that are already one group of batched arrays (a columnar file's rows:
        ``difftape.answers.columnar``), in the program's input order; no per-point work."""
        self._job(command, emit, fail, wrt, watch, unconnected).run_group(group)

    def _job(self, command: str, emit: Callable[[np.ndarray, Answer], None],
             fail: Callable[[Iterable[int], DifftapeError], None], wrt: Iterable[str] | None,
             watch: Iterable[str], unconnected: str) -> _Job:
        """The vectorised run of ``command`` (its options checked before any point): answer and answer_group's."""
        from difftape.answers.program import check_unconnected

        if command not in VECTORISED:
            raise DifftapeError("usage", f"unknown batch command {command!r}: choose {', '.join(VECTORISED)}"
                                + (" (check: BatchProgram.check)" if command == "check" else ""))
        check_unconnected(unconnected)
        if command == "eval":
            names, watched = [], set()
        else:
            names, watched = self.base.sources(list(wrt) if wrt is not None else None, watch)
        return _Job(self, command, names, watched, unconnected, emit, fail)

    def plan(
        self, points: list[Any], bad: Mapping[int, Any], fail: Callable[[Iterable[int], DifftapeError], None]
    ) -> list[Group]:
        """Check each point's names and values and group the points by input shapes and dtypes."""
        n = len(points)
        if bad:
            good = np.array([i for i in range(n) if i not in bad], dtype=np.int64)
            items = [points[i] for i in good.tolist()]
        else:
            good = np.arange(n, dtype=np.int64)
            items = points
        if not items:
            return []
        not_dicts: list[int] = []
        if set(map(type, items)) != {dict}:
            not_dicts = [j for j, t in enumerate(map(type, items)) if t is not dict]
        for j in not_dicts:
            kind = "an array" if isinstance(items[j], list) else json.dumps(items[j])[:40]
            fail((int(good[j]),), DifftapeError("value", f"a line must be a JSON object of input values, like "
                                                         f"{{\"x\": 0.5}}, not {kind}"))
        if not_dicts:
            keep = np.ones(len(items), dtype=bool)
            keep[not_dicts] = False
            good = good[keep]
            items = [it for it, k in zip(items, keep.tolist()) if k]
        by_keys = None
        if len(set(map(len, items))) == 1:  # the usual case: every point has the same names
            keys = frozenset(items[0])
            try:
                for k in keys:
                    deque(map(itemgetter(k), items), maxlen=0)  # KeyError if a point lacks k
                by_keys = [(keys, None)]
            except KeyError:
                pass
        if by_keys is None:
            keysets = list(map(frozenset, items))
            ids = {ks: i for i, ks in enumerate(sorted(set(keysets), key=lambda s: sorted(s)))}
            codes = np.fromiter(map(ids.__getitem__, keysets), dtype=np.int64, count=len(keysets))
            by_keys = [(ks, np.flatnonzero(codes == i)) for ks, i in ids.items()]
        groups: list[Group] = []
        for keys, pos in by_keys:
            lines = good if pos is None else good[pos]
            problem = self._check_names(keys)
            if problem is not None:
                fail(lines.tolist(), problem)
                continue
            sub = items if pos is None else [items[p] for p in pos.tolist()]
            groups.extend(self._split(sorted(keys, key=self._order.get), sub, lines, fail))
        groups.sort(key=lambda g: int(g.lines[0]))
        return groups

    def _check_names(self, keys: frozenset[str]) -> DifftapeError | None:
        for k in sorted(keys):
            if k not in self.names:
                hint = did_you_mean(k, self.settable)
                listed = ", ".join(self.settable) or "none"
                return DifftapeError("name", f"'{k}' is not an input of the program{hint}; it takes: {listed}")
        missing = [n for n in self.required if n not in keys]
        if missing:
            more = f"; also missing: {', '.join(missing[1:])}" if len(missing) > 1 else ""
            return DifftapeError("name", f"no value for input '{missing[0]}'{more}")
        return None

    def _split(
        self, keys: list[str], sub: list[dict], lines: np.ndarray, fail: Callable[[Iterable[int], DifftapeError], None]
    ) -> list[Group]:
        """Points with the same names: convert the values, then group by shapes and dtypes."""
        columns = {k: _column(list(map(itemgetter(k), sub)), self.dtype) for k in keys}
        if all(c.stacked is not None for c in columns.values()):
            return [Group(lines, {k: c.stacked for k, c in columns.items()})]
        m = len(sub)
        codes = np.zeros((len(keys), m), dtype=np.int64)
        messages: dict[int, str] = {}
        for r, k in enumerate(keys):
            c = columns[k]
            if c.codes is not None:
                codes[r] = c.codes
                for j, msg in c.errors.items():
                    messages.setdefault(j, f"input '{k}': {msg}")
        for j in sorted(messages):
            fail((int(lines[j]),), DifftapeError("value", messages[j]))
        ok = np.flatnonzero((codes >= 0).all(axis=0))
        if not len(ok):
            return []
        _, inverse = np.unique(codes[:, ok], axis=1, return_inverse=True)
        inverse = np.asarray(inverse).reshape(-1)
        out = []
        for g in range(int(inverse.max()) + 1):
            pos = ok[inverse == g]
            values = {}
            for k, c in columns.items():
                if c.stacked is not None:
                    values[k] = c.stacked[pos]
                else:
                    values[k] = np.stack([c.items[p] for p in pos.tolist()])
            out.append(Group(lines[pos], values))
        return out


class _Job:
    """One command over the groups of one batch: compile per group, chunk, run, split failing runs."""

    def __init__(
        self,
        prog: BatchProgram,
        command: str,
        names: list[str],
        watched: set[str],
        unconnected: str,
        emit: Callable[[np.ndarray, Answer], None],
        fail: Callable[[Iterable[int], DifftapeError], None],
    ) -> None:
        self.prog, self.command, self.names, self.watched = prog, command, names, watched
        self.unconnected, self.emit, self.fail = unconnected, emit, fail
        self.on_pass: Callable[[int, int, int], Any] | None = None  # (done, total, points) per Jacobian pass

    def run_group(self, group: Group) -> None:
        try:
            runner = self.prog.runner(group)
        except DifftapeError as err:
            self._failed(group.lines, _line_error(err))
            return
        graph = runner.graph
        size = self._chunk_size(graph)
        n = len(group.lines)
        for lo in range(0, n, size):
            self._solve(runner, group, lo, min(n, lo + size))

    def _chunk_size(self, graph: Graph) -> int:
        per_point = max([math.prod(node.shape or ()) for node in graph.nodes] + [1])
        if self.command == "jacobian":
            target = math.prod(graph.nodes[graph.target].shape or ())
            leaves = sum(math.prod(n.shape or ()) for n in graph.nodes if n.leaf and n.name in self.watched)
            per_point = max(per_point, target * max(leaves, 1))
        return max(1, min(MAX_CHUNK, CHUNK_ELEMENTS // max(per_point, 1)))

    def _failed(self, lines: np.ndarray, err: DifftapeError) -> None:
        self.fail(lines.tolist(), err)

    def _solve(self, runner: BatchGraph, group: Group, lo: int, hi: int) -> None:
        """Run points lo:hi vectorised; if that fails, halve until the failing points stand alone."""
        lines = group.lines[lo:hi]
        try:
            answer = self.run(runner, {k: v[lo:hi] for k, v in group.values.items()}, hi - lo)
        except _SharedValueError as failure:
            self._failed(lines, _line_error(failure.error))
            return
        except Exception:  # noqa: BLE001 - some point failed (or memory ran out): isolate it
            if hi - lo <= SMALL:
                for j in range(lo, hi):
                    self._alone(group, j)
                return
            mid = (lo + hi) // 2
            self._solve(runner, group, lo, mid)
            self._solve(runner, group, mid, hi)
            return
        self.emit(lines, answer)

    def _alone(self, group: Group, j: int) -> None:
        """One point through Program: exactly what ``difftape`` answers for it alone."""
        from difftape.answers.program import Program

        prog = self.prog
        lines = group.lines[j : j + 1]
        point = {k: v[j] for k, v in group.values.items()}
        try:
            p = Program(prog.source, of=prog.of_name, at={**prog.at, **point}, seed=prog.seed, dtype=prog.dtype)
            if self.command == "eval":
                value = p.evaluate()
                answer = Answer(np.asarray(value)[None])
            else:
                options = {"wrt": self.names, "watch": self._watch(), "unconnected": self.unconnected}
                res = p.grad(**options) if self.command == "grad" else p.jacobian(**options)
                derivs = res.grad if self.command == "grad" else res.jacobian
                answer = Answer(
                    np.asarray(res.value)[None],
                    {n: (None if d is None else np.asarray(d)[None]) for n, d in derivs.items()},
                    bool(getattr(res, "summed", False)),
                )
        except DifftapeError as err:
            self._failed(lines, _line_error(err))
            return
        except Exception as err:  # noqa: BLE001 - never lose a point to a traceback
            msg = f"internal error: {type(err).__name__}: {err} (this is a bug in difftape; please report it)"
            self._failed(lines, DifftapeError("internal", msg))
            return
        self.emit(lines, answer)

    def _watch(self) -> list[str]:
        return [n for n in self.watched if n in self.prog.base.consts]

    # -- one vectorised run ------------------------------------------------------------------------
    def run(self, runner: BatchGraph, values: dict[str, np.ndarray], B: int) -> Answer:
        shape = tuple(runner.graph.nodes[runner.graph.target].shape or ())
        if self.command == "eval":
            out, ob, _ = runner.run(B, values)
            value = np.asarray(_raw(out))
            return Answer(value if ob else np.broadcast_to(value, (B,) + value.shape))
        persistent = self.command == "jacobian"
        with Tape(persistent=persistent) as tape:
            out, ob, leaves = runner.run(B, values, self.watched, [tape])
        value = np.asarray(_raw(out))
        if not ob:
            value = np.broadcast_to(value, (B,) + value.shape)
        if value.dtype.kind not in "fc":
            value = value.astype(runner.float_dtype)
        live = [n for n in self.names if n in self.watched and n in leaves]
        found: dict[str, Any] = {}
        if live and ob:
            sources = [leaves[n][0] for n in live]
            if self.command == "grad":
                grads = tape.gradient(out, sources, unconnected=self.unconnected)
                found = {n: (None if g is None else np.asarray(g._value)) for n, g in zip(live, grads)}
            else:
                found = self._jacobian(tape, out, live, sources, shape, B)
        derivs: dict[str, np.ndarray | None] = {}
        for n in self.names:
            d = found.get(n)
            if d is None and self.unconnected == "zero" and n in leaves:
                v, b = leaves[n]
                leaf_shape = np.shape(_raw(v))[1:] if b else np.shape(_raw(v))
                extra = shape if self.command == "jacobian" else ()
                d = np.zeros((B,) + extra + leaf_shape, dtype=runner.float_dtype)
            derivs[n] = None if d is None else _plain(d)
        return Answer(value, derivs, summed=len(shape) > 0)

    def _jacobian(
        self, tape: Tape, out: Tensor, live: list[str], sources: list[Tensor], shape: tuple, B: int
    ) -> dict[str, Any]:
        """One backward pass per per-point output element, seeded for the whole batch at once."""
        n_out = math.prod(shape)
        if n_out == 0:
            return {}
        from difftape.language.compiler import MAX_ELEMENTS

        for src in sources:  # a block over the limit: each point alone reports it (Program.jacobian)
            if n_out * math.prod(src.shape[1:] if src.ndim else ()) > MAX_ELEMENTS:
                raise DifftapeError("limit", "a jacobian block over the element limit")
        dtype = out.dtype if out.dtype.kind in "fc" else np.dtype(np.float64)
        rows: list[list[Any]] = [[] for _ in live]
        connected = [False] * len(live)
        seed = np.zeros((B, n_out), dtype=dtype)
        for k in range(n_out):
            seed[:, k] = 1
            grads = tape.gradient(out, sources, output_gradients=seed.reshape((B,) + shape).copy(), unconnected="none")
            seed[:, k] = 0
            if self.on_pass is not None:
                self.on_pass(k + 1, n_out, B)
            for i, g in enumerate(grads):
                if g is not None:
                    connected[i] = True
                rows[i].append(g)
        found = {}
        for i, n in enumerate(live):
            if not connected[i]:
                continue
            src_shape = sources[i].shape
            zero = np.zeros(src_shape, dtype=sources[i].dtype)
            block = np.stack([zero if g is None else np.asarray(g._value) for g in rows[i]], axis=1)
            found[n] = block.reshape((B,) + shape + tuple(src_shape[1:]))
        return found


# ----------------------------------------------------------------------------------------
# NDJSON in, JSON lines out (the command line's --batch)


#: Lines parsed by one ``json.loads`` (a bad line sends only its block to the line-by-line parser).
PARSE_BLOCK = 4096


def parse_ndjson(data: bytes | str, *, bom: bool = True) -> tuple[list[Any], dict[int, DifftapeError]]:
    """The lines of NDJSON text as parsed objects (None for a bad line) and the errors of the bad lines.

    Every line counts, blank ones too (they are errors), so that output line i answers input line i;
    the newline at the end of the last line is optional. A block of lines is parsed by one
    decode of the lines joined into an array when each line is one ``{...}`` without other
    braces (then no line can reach into another, so this is the same as parsing line by line);
    otherwise, or if that fails, the block is parsed line by line. The block decode is msgspec's
    when installed (:mod:`difftape.jsonlib`; ASCII input is decoded as bytes, without a copy to
    text), else ``json.loads``; a block msgspec refuses goes to ``json.loads`` as before.
    """
    from difftape import jsonlib

    fast = jsonlib.fast()
    text: bytes | str
    if isinstance(data, bytes):
        if fast is not None and data.isascii():  # ASCII is UTF-8 as it is: no BOM, nothing to decode
            text = data
        else:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                return _parse_lines(data.removesuffix(b"\n").split(b"\n"))
    else:
        text = data
    if bom and isinstance(text, str) and text.startswith("\ufeff"):
        text = text[1:]
    if not text:
        return [], {}
    nl, cr, crlf = ("\n", "\r", "\r\n") if isinstance(text, str) else (b"\n", b"\r", b"\r\n")
    if cr in text:  # type: ignore[operator]
        text = text.replace(crlf, nl)  # type: ignore[arg-type]
    text = text.removesuffix(nl)  # type: ignore[arg-type]
    objs = _parse_text(text, text.count(nl) + 1)  # type: ignore[arg-type]  # the usual case: one decode
    if objs is not None:
        return objs, {}
    lines = text.split(nl)  # type: ignore[arg-type]
    if len(lines) <= PARSE_BLOCK:
        return _parse_lines(lines)
    out: list[Any] = []
    errors: dict[int, DifftapeError] = {}
    for start in range(0, len(lines), PARSE_BLOCK):
        block = lines[start : start + PARSE_BLOCK]
        objs = _parse_block(block)
        if objs is None:
            objs, bad = _parse_lines(block)
            errors.update((start + i, err) for i, err in bad.items())
        out.extend(objs)
    return out, errors


def _parse_block(lines: list[str] | list[bytes]) -> list[Any] | None:
    """The lines parsed as one JSON array when that is safe and every line is good, else None."""
    nl = b"\n" if lines and isinstance(lines[0], bytes) else "\n"
    return _parse_text(nl.join(lines), len(lines))  # type: ignore[attr-defined]


_SHAPE = {str: ("{", "}", "}\n{", "\n"), bytes: (b"{", b"}", b"}\n{", b"\n")}


def _parse_text(text: str | bytes, n: int) -> list[Any] | None:
    """``n`` lines of text parsed as one JSON array when that is safe and every line is good, else None.

    ``text`` is bytes only when it is ASCII and msgspec is in use (see :func:`parse_ndjson`).
    """
    lb, rb, sep, nl = _SHAPE[type(text)]
    if not (
        text[:1] == lb
        and text[-1:] == rb
        and text.count(lb) == n  # type: ignore[arg-type]
        and text.count(rb) == n  # type: ignore[arg-type]
        and text.count(sep) == n - 1  # type: ignore[arg-type]  # so each of the n - 1 newlines is "}\n{"
    ):
        return None
    from difftape import jsonlib

    fast = jsonlib.fast()
    if fast is not None:
        joined = b"[" + text.replace(nl, b",") + b"]" if isinstance(text, bytes) else "[" + text.replace(nl, ",") + "]"
        try:
            objs = fast[0](joined)
        except (ValueError, RecursionError):  # msgspec's DecodeError is a ValueError
            objs = None  # beyond strict JSON (NaN, 1e400, a lone surrogate), or bad: json.loads decides
        if objs is not None:
            return objs if len(objs) == n else None
        if isinstance(text, bytes):
            text = text.decode("ascii")
    try:
        objs = json.loads("[" + text.replace("\n", ",\n") + "]")  # type: ignore[union-attr]
    except (ValueError, RecursionError):
        return None
    return objs if len(objs) == n else None


def _parse_lines(lines: Sequence[str | bytes]) -> tuple[list[Any], dict[int, DifftapeError]]:
    objs: list[Any] = [None] * len(lines)
    errors: dict[int, DifftapeError] = {}
    for i, line in enumerate(lines):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as err:
                errors[i] = DifftapeError("value", f"the line is not UTF-8 text (bad byte at offset {err.start})")
                continue
        if not line.strip():
            errors[i] = DifftapeError("value", "an empty line: expected a JSON object of input values, like "
                                               "{\"x\": 0.5}")
            continue
        try:
            objs[i] = json.loads(line)
        except json.JSONDecodeError as err:
            errors[i] = DifftapeError("value", f"invalid JSON: {err.msg} (column {err.colno})")
        except (ValueError, RecursionError) as err:
            errors[i] = DifftapeError("value", f"invalid JSON: {err}")
    return objs, errors


class JsonLines:
    """The output lines of one block of input lines, in order: results in bulk, errors one by one."""

    def __init__(self, n: int, command: str, of: str, offset: int = 0, numbers: Sequence[int] | None = None,
                 on_lines: Callable[[int], Any] | None = None) -> None:
        self.out: list[str | None] = [None] * n
        self.on_lines = on_lines  # told how many lines each put/emit/fail answered (progress)
        self.command, self.of, self.offset = command, of, offset
        self.numbers = numbers  # the input line number of each point (blank lines skipped), else offset + i + 1
        self.failed = 0
        self.first_error: tuple[int, DifftapeError] | None = None  # (input line number, error)

    def put(self, line: int, payload: Mapping[str, Any]) -> None:
        """The answer of one point, as a JSON object (the point-by-point commands)."""
        from difftape.io.render import dumps

        self.out[line] = dumps(payload) + "\n"
        if self.on_lines is not None:
            self.on_lines(1)

    def put_text(self, line: int, text: str) -> None:
        """The answer of one point as its JSON line, written already (with its newline)."""
        self.out[line] = text
        if self.on_lines is not None:
            self.on_lines(1)

    def emit(self, lines: np.ndarray, answer: Answer) -> None:
        from difftape.io.render import json_rows

        pieces, fields = self._template(answer)
        text = json_rows(pieces, [answer.value if f is None else answer.derivs[f] for f in fields])
        first, count = int(lines[0]), len(lines)
        if int(lines[-1]) - first == count - 1:
            # consecutive lines (the usual case): one string for all, kept at the first line's place
            self.out[first] = text
            self.out[first + 1 : first + count] = repeat("", count - 1)
        else:  # each line ends with the template's newline, and JSON text holds no other
            for line, row in zip(lines.tolist(), text.split("\n")):
                self.out[line] = row + "\n"
        if self.on_lines is not None:
            self.on_lines(count)

    def _template(self, answer: Answer) -> tuple[list[str], list[str | None]]:
        """The JSON of one point with holes where the per-point values go, from the renderer itself."""
        from difftape.io.render import dumps, eval_json, grad_json, jacobian_json

        res = answer.point(0, self.command, self.of)
        if self.command == "eval":
            payload = eval_json(self.of, res)
        elif self.command == "grad":
            payload = grad_json(res)
        else:
            payload = jacobian_json(res)
        marks: dict[str, str | None] = {}

        def hole(field_name: str | None) -> str:
            mark = f"\x00{len(marks)}\x00"
            marks[json.dumps(mark)] = field_name
            return mark

        payload["value"] = hole(None)
        blocks = payload.get("grad" if self.command == "grad" else "jacobian", {})
        for name in list(blocks):
            if blocks[name] is not None:
                blocks[name] = hole(name)
        text = dumps(payload) + "\n"
        spots = sorted((text.index(m), m) for m in marks)
        pieces, fields, at = [], [], 0
        for pos, m in spots:
            pieces.append(text[at:pos])
            fields.append(marks[m])
            at = pos + len(m)
        pieces.append(text[at:])
        return pieces, fields

    def fail(self, lines: Iterable[int], err: DifftapeError) -> None:
        from difftape.io.render import dumps

        count = 0
        for line in lines:
            count += 1
            number = self.numbers[line] if self.numbers is not None else self.offset + line + 1
            self.out[line] = dumps({"error": {"kind": err.kind, "message": err.message, "line": number,
                                              "column": None}}) + "\n"
            self.failed += 1
            if self.first_error is None or number < self.first_error[0]:
                self.first_error = (number, err)
        if self.on_lines is not None and count:
            self.on_lines(count)

    def text(self) -> str:
        return "".join(self.out)  # type: ignore[arg-type]


@dataclass
class BatchReport:
    """What a batch did: lines answered, lines failed, the first failure; the output when collected."""

    lines: int = 0
    failed: int = 0
    first_error: tuple[int, DifftapeError] | None = None  # (input line number, error)
    output: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(self.output)


#: Input lines answered together: a block is parsed, run and written while the next one is read.
STREAM_BLOCK = 8_192
#: Bytes asked of the input at a time.
READ_SIZE = 1 << 18
#: Longest input line (bytes): a stream without newlines (``--at-file /dev/zero``) gets a ``limit``
#: error instead of being read until memory runs out. 64 MB holds a few million numbers.
MAX_LINE_BYTES = 64 << 20


def stream_ndjson(
    prog: BatchProgram,
    read: Callable[[int], bytes],
    write: Callable[[str], Any],
    command: str,
    *,
    wrt: Iterable[str] | None = None,
    watch: Iterable[str] = (),
    unconnected: str = "none",
    block_lines: int | None = None,
    on_block: Callable[[int, int], Any] | None = None,
    ignore_extra: bool = False,
    echo: bool = False,
    pointwise: Callable[[Any], Mapping[str, Any]] | None = None,
    answer_block: Callable[[list[Any], Mapping[int, DifftapeError], JsonLines], None] | None = None,
) -> BatchReport:
    """Answer ``command`` for each NDJSON line that ``read(n)`` gives (b"" at the end), writing JSON lines.

    Blank lines are skipped (no output line; error objects still give input line numbers). With
    ``ignore_extra``, keys that name nothing of the program are dropped instead of failing the line;
    with ``echo``, each output line also has the input point under ``"at"``. The commands of
    :data:`POINTWISE` are answered one point at a time by ``pointwise(program)`` (a JSON object);
    ``answer_block(points, bad, sink)``, when given, answers each block instead (``check``: answers/batch_check.py).

    Lines are answered in blocks of about ``block_lines`` lines as they arrive, so memory stays
    bounded and the work overlaps a producer that writes line by line; each input signature is
    compiled once for all blocks. ``write`` gets each block's output, in input order;
    ``on_block(lines, bytes)`` is called as the lines of a block are answered (after each vectorised
    run, with its share of the block's bytes): over the whole batch its arguments add up to the
    lines and bytes read.
    """
    block_lines = block_lines or STREAM_BLOCK
    report = BatchReport()
    pending: list[bytes] = []
    pending_lines = 0
    first = True
    eof = False
    while not eof:
        chunk = read(READ_SIZE)
        eof = not chunk
        if chunk:
            pending.append(chunk)
            newlines = chunk.count(b"\n")
            pending_lines += newlines
            if not newlines and sum(map(len, pending)) > MAX_LINE_BYTES:
                _check_line_length(pending, report.lines + pending_lines + 1)
            if pending_lines < block_lines:
                continue
        data = b"".join(pending)
        cut = len(data) if eof else data.rfind(b"\n") + 1
        block, rest = data[:cut], data[cut:]
        pending, pending_lines = ([rest] if rest else []), rest.count(b"\n")
        if first and block.startswith(b"\xef\xbb\xbf"):
            block = block[3:]
        first = False
        if not block:
            continue
        numbers = None
        read_lines = block.count(b"\n") + (not block.endswith(b"\n"))
        if _has_blank_line(block):
            numbers, block = _without_blank_lines(block, report.lines)
            if not block:
                report.lines += read_lines
                continue
        points, bad = parse_ndjson(block, bom=False)
        shown = list(points) if echo else None
        if ignore_extra:
            points = [{k: v for k, v in p.items() if k in prog.names} if isinstance(p, dict) else p for p in points]
        share = _Share(on_block, len(points), len(block)) if on_block is not None else None
        sink = JsonLines(len(points), command, prog.of, offset=report.lines, numbers=numbers,
                         on_lines=None if share is None else share.add)
        if answer_block is not None:
            answer_block(points, bad, sink)
        elif command in POINTWISE and pointwise is not None:
            _answer_pointwise(prog, points, bad, sink, pointwise)
        else:
            prog.answer(points, command, sink.emit, sink.fail, wrt=wrt, watch=watch, unconnected=unconnected,
                        bad=bad, on_pass=None if share is None else share.passes)
        write(sink.text() if shown is None else _echoed(sink.text(), shown))
        report.lines += read_lines
        report.failed += sink.failed
        if sink.first_error is not None and report.first_error is None:
            report.first_error = sink.first_error
        if share is not None:
            share.finish()
    return report


class _Share:
    """A block's lines and bytes, told to ``on_block(lines, bytes)`` as its lines are answered."""

    def __init__(self, on_block: Callable[[int, int], Any], lines: int, nbytes: int) -> None:
        self.on_block, self.lines, self.nbytes = on_block, lines, nbytes
        self.told_lines = self.told_bytes = 0

    def add(self, lines: int) -> None:
        done = min(self.told_lines + lines, self.lines)
        nbytes = max(self.nbytes * done // max(self.lines, 1), self.told_bytes)
        if done > self.told_lines:
            self.on_block(done - self.told_lines, nbytes - self.told_bytes)
            self.told_lines, self.told_bytes = done, nbytes

    def passes(self, done: int, total: int, points: int) -> None:
        """``done`` of ``total`` passes of a run over the next ``points`` lines: their share of the bytes."""
        target = self.nbytes * (self.told_lines * total + points * done) // max(self.lines * total, 1)
        target = min(target, self.nbytes)
        if target > self.told_bytes:
            self.on_block(0, target - self.told_bytes)
            self.told_bytes = target

    def finish(self) -> None:
        """Whatever is left of the block (lines no run answered, rounding of the bytes)."""
        if self.told_lines < self.lines or self.told_bytes < self.nbytes:
            self.on_block(self.lines - self.told_lines, self.nbytes - self.told_bytes)
            self.told_lines, self.told_bytes = self.lines, self.nbytes


#: A blank line (searched up to a block's final newline, which ends its last line and starts none).
_BLANK_LINE = re.compile(rb"(?:^|\n)[ \t\r]*(?:\n|\Z)")


def _has_blank_line(block: bytes) -> bool:
    """Whether a block of lines has a blank (or whitespace-only) line. Lines that all start with ``{``
    (NDJSON as written) have none, which two counts show at memory speed; only other blocks are searched."""
    end = len(block) - block.endswith(b"\n")  # the final newline ends the last line and starts none
    if block[:1] == b"{" and block.count(b"\n{", 0, end) == block.count(b"\n", 0, end):
        return False
    return _BLANK_LINE.search(block, 0, end) is not None


def _without_blank_lines(block: bytes, offset: int) -> tuple[list[int], bytes]:
    """The block without its blank lines, and the input line number of each line kept."""
    lines = block.removesuffix(b"\n").split(b"\n")
    kept = [(offset + i + 1, line) for i, line in enumerate(lines) if line.strip(b" \t\r")]
    return [n for n, _ in kept], b"".join(line + b"\n" for _, line in kept)


def _echoed(text: str, points: Sequence[Any]) -> str:
    """Each output line with its input point added under ``"at"`` (null for a line that did not parse)."""
    from difftape.io.render import dumps

    out = []
    for line, point in zip(text.split("\n"), points):
        try:
            at = dumps(point)
        except (TypeError, ValueError):
            at = "null"
        out.append(line[:-1] + ', "at": ' + at + "}\n")
    return "".join(out)


def _answer_pointwise(
    prog: BatchProgram, points: list[Any], bad: Mapping[int, DifftapeError], sink: JsonLines,
    answer: Callable[[Any], Mapping[str, Any]],
) -> None:
    """One Program a point, answered by ``answer`` (hessian, jvp, vjp, hvp: no vectorised rule yet)."""
    from difftape.answers.program import Program

    for i, point in enumerate(points):
        if i in bad:
            sink.fail((i,), bad[i])
            continue
        if not isinstance(point, dict):
            sink.fail((i,), DifftapeError("value", "expected a JSON object of input values, like {\"x\": 0.5}"))
            continue
        err = prog._check_names(frozenset(point))
        if err is not None:
            sink.fail((i,), err)
            continue
        try:
            values = {}
            for k, v in point.items():
                try:
                    values[k] = point_value(v, prog.base.float_dtype)
                except ValueError as bad_value:
                    raise DifftapeError("value", f"the value of '{k}': {bad_value}") from None
            at = {**prog.at, **values}
            with np.errstate(all="ignore"):
                payload = answer(Program(prog.source, of=prog.of_name, at=at, seed=prog.seed, dtype=prog.dtype))
        except DifftapeError as error:
            sink.fail((i,), error)
            continue
        sink.put(i, payload)


def _check_line_length(pending: list[bytes], number: int) -> None:
    """The ``limit`` error when the unfinished last line of ``pending`` is over :data:`MAX_LINE_BYTES`."""
    tail = 0
    for piece in reversed(pending):
        cut = piece.rfind(b"\n")
        tail += len(piece) - cut - 1 if cut >= 0 else len(piece)
        if cut >= 0:
            break
    if tail > MAX_LINE_BYTES:
        raise DifftapeError("limit", f"line {number:,} of the batch input is longer than {MAX_LINE_BYTES:,} bytes "
                                     "(the limit of one line); is it NDJSON, one JSON object a line?")


def run_ndjson(
    prog: BatchProgram,
    data: bytes | str,
    command: str,
    *,
    wrt: Iterable[str] | None = None,
    watch: Iterable[str] = (),
    unconnected: str = "none",
    block_lines: int | None = None,
    on_block: Callable[[int, int], Any] | None = None,
) -> BatchReport:
    """``stream_ndjson`` over NDJSON held in memory; the report keeps the output (``report.text()``)."""
    import io

    report_out: list[str] = []
    stream = io.BytesIO(data.encode("utf-8") if isinstance(data, str) else data)
    report = stream_ndjson(prog, stream.read, report_out.append, command, wrt=wrt, watch=watch,
                           unconnected=unconnected, block_lines=block_lines, on_block=on_block)
    report.output = report_out
    return report
