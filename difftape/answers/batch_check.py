"""``check --batch`` and ``check --points N``: the gradient checks of many points at once, vectorised.

Points are grouped by input signature as :class:`~difftape.answers.batch.BatchProgram` groups them;
each group is compiled once and the checks of :mod:`difftape.answers.checker` run over a leading
batch axis, so that every verdict is the one ``difftape check`` gives at that point alone:

- the tape's gradients of all the points in one batched reverse pass (as ``grad --batch``);
- the numerical references batched: the complex step perturbs one element of every point at once
  (one batched run of the float64 model per element); Ridders' tableau runs for every point at
  once, each point with its own steps, its own retreat from the edge of the domain and its own stop;
- directional mode: the same random directions for every point (each point's own check draws the
  same ones from ``--seed``), forward mode over the batch, the tape's gradient dotted with them;
- the analytic gradient (``--expect``, or the one ``diff`` derives, once per signature) batched;
- a point whose target or gradient is not finite gets ``error[domain]``, the others their verdicts.

The complex step is used only where every op of the program is complex-analytic (as for one
point), and a point whose complex step is not finite falls back to Ridders alone. A vectorised run
that fails is halved until the failing points stand alone; those are checked by
:meth:`Program.check` itself. ``order=2`` is checked point by point (``Program.check``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from difftape.answers import numeric
from difftape.answers.batch import (
    CHUNK_ELEMENTS,
    MAX_CHUNK,
    SMALL,
    BatchGraph,
    BatchProgram,
    Group,
    JsonLines,
    _line_error,
    _raw,
)
from difftape.answers.checker import (
    FULL_LIMIT,
    FULL_LIMIT_ORDER2,
    _not_finite,
    check_options,
    directional_bound,
    tolerances,
)
from difftape.answers.program import CheckResult, CheckRow, Program
from difftape.engine.tensor import Tensor
from difftape.errors import DifftapeError, did_you_mean

#: The most points ``check --points N`` draws.
MAX_POINTS = 10_000_000
#: The most input elements ``--points`` draws in all (points x elements of one point).
MAX_DRAWN_ELEMENTS = 50_000_000

_EPS = float(np.finfo(np.float64).eps)
# the method of each numerical reference, as one point's check names them (a bit per method)
_METHODS = (
    "complex step (h=1e-30)",
    "central differences with Richardson extrapolation (Ridders)",
    "complex step along random directions",
    "central differences along random directions (Ridders)",
)
_COMPLEX, _RIDDERS, _COMPLEX_DIR, _RIDDERS_DIR = 1, 2, 4, 8


class _LeafGraph(BatchGraph):
    """A BatchGraph whose named leaves can be replaced by given (batched) tensors: the point moved."""

    overrides: Mapping[str, Any] = {}

    def _leaf(self, B: int, node: Any, v: Any, b: bool, watched: set[str], tapes: Sequence[Any]) -> tuple[Any, bool]:
        o = self.overrides.get(node.name)
        if o is not None:
            return o, True
        return super()._leaf(B, node, v, b, watched, tapes)

    def run_with(self, B: int, values: Mapping[str, Any], overrides: Mapping[str, Any]) -> tuple[Any, bool]:
        """The target over ``B`` points with the leaves in ``overrides`` replaced (each a (B,) + shape array)."""
        self.overrides = {k: Tensor(v) for k, v in overrides.items()}
        try:
            out, ob, _ = self.run(B, values)
        finally:
            self.overrides = {}
        return out, ob


def _marked(graph: Any) -> tuple[Any, list[str]]:
    """The graph with each ``stop_gradient`` node marked as a named leaf (its key), so that a numerical
    derivative can hold it at its value at the point, as ``Program._held`` does for one point."""
    from difftape.ir.graph import Graph, Node

    held = [n for n in graph.nodes if n.op == "stop_gradient"]
    if not held:
        return graph, []
    nodes = list(graph.nodes)
    keys = []
    for n in held:
        key = n.name if n.leaf and n.name else f"%{n.id}"
        keys.append(key)
        nodes[n.id] = Node(n.id, n.op, n.inputs, n.params, n.shape, n.dtype, n.span, key, True)
    marked = Graph(nodes, graph.target, graph.target_name, graph.inputs, graph.variables, graph.consts,
                   graph.bindings, graph.source, graph.values, graph.missing, graph.dtype)
    return marked, keys


def _per_point_sum(a: Any, B: int, batched: bool) -> np.ndarray:
    """sum(target) of each point: (B,)."""
    arr = np.asarray(_raw(a))
    if not batched:
        return np.broadcast_to(np.sum(arr), (B,))
    return arr.reshape(B, -1).sum(axis=1) if arr.ndim > 1 else arr


def _bcast(v: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Per-point scalars (B,) shaped to broadcast against (B,) + shape."""
    return v.reshape(v.shape + (1,) * len(shape))


# ----------------------------------------------------------------------------------------
# the numerical references, every point at once


def ridders_batch(f: Callable[[np.ndarray, np.ndarray], np.ndarray], idx: np.ndarray, x: np.ndarray,
                  h: np.ndarray, shrink: float = 1.4, levels: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """:func:`numeric.ridders` for many points: ``f(points, t)`` gives the function of each point at its ``t``.

    Each point keeps its own step (shrunk where a side is not finite), its own tableau and its own
    stop, so the estimate and error of each point are those of ``numeric.ridders`` at that point.
    """
    m = len(idx)
    h = np.array(h, dtype=np.float64, copy=True)
    x = np.asarray(x, dtype=np.float64)
    c2 = shrink * shrink
    need = np.arange(m)
    for _ in range(12):  # start inside the domain: shrink while either side is not finite
        if not need.size:
            break
        fp = f(idx[need], x[need] + h[need])
        fm = f(idx[need], x[need] - h[need])
        bad = need[~(np.isfinite(fp) & np.isfinite(fm))]
        h[bad] /= 10
        need = bad
    t0 = (f(idx, x + h) - f(idx, x - h)) / (2 * h)
    prev = [t0]
    best = t0.copy()
    err = np.full(m, np.inf)
    last0 = t0.copy()
    active = np.ones(m, dtype=bool)
    for i in range(1, levels):
        a = np.flatnonzero(active)
        if not a.size:
            break
        h[a] /= shrink
        ha, xa = h[a], x[a]
        fp, fm = f(idx[a], xa + ha), f(idx[a], xa - ha)
        r0 = (fp - fm) / (2 * ha)
        floor = numeric.roundoff(fp, fm, ha)
        row = [r0]
        fac = c2
        ea, ba = err[a], best[a]
        for j in range(1, i + 1):
            up = prev[j - 1][a]
            rj = (row[j - 1] * fac - up) / (fac - 1)
            row.append(rj)
            fac *= c2
            e = np.maximum(np.maximum(np.abs(rj - row[j - 1]), np.abs(rj - up)), floor)
            better = e <= ea
            ea = np.where(better, e, ea)
            ba = np.where(better, rj, ba)
        err[a], best[a] = ea, ba
        last0[a] = r0
        stop = np.abs(row[i] - prev[i - 1][a]) >= 2 * ea
        new = []
        for j in range(i + 1):
            full = np.full(m, np.nan)
            full[a] = row[j]
            new.append(full)
        prev = new
        active[a[stop]] = False
    err = np.where(np.isfinite(err), err, np.abs(last0 - t0))
    return best, err


# ----------------------------------------------------------------------------------------
# the verdicts of B points


@dataclass
class RowBlock:
    """One input's check at B points (the fields of :class:`CheckRow`, batch axis first)."""

    tape: np.ndarray
    numeric: np.ndarray
    numeric_error: np.ndarray
    analytic: np.ndarray | None
    max_abs_err: np.ndarray
    max_rel_err: np.ndarray
    ok: np.ndarray
    analytic_expr: str | None
    analytic_source: str
    mode: str
    forward: np.ndarray | None = None


@dataclass
class CheckBlock:
    """The checks of B points of one signature; :meth:`result` is point ``i`` as ``Program.check`` gives it."""

    of: str
    rtol: float
    atol: float
    mode: str
    rows: dict[str, RowBlock]
    methods: np.ndarray  # (B,) bits of _METHODS
    label: str
    ok: np.ndarray  # (B,)
    score: np.ndarray  # (B,): the largest difference next to its tolerance (> 1: beyond it)

    def result(self, i: int) -> CheckResult:
        res = CheckResult(self.of, bool(self.ok[i]), "", self.rtol, self.atol, mode=self.mode)
        for n, r in self.rows.items():
            row = CheckRow(np.asarray(r.tape[i]), None, float(r.numeric_error[i]), None, float(r.max_abs_err[i]),
                           float(r.max_rel_err[i]), bool(r.ok[i]), r.analytic_expr, r.analytic_source)
            row.numeric = np.asarray(r.numeric[i])
            row.analytic = None if r.analytic is None else np.asarray(r.analytic[i])
            if r.forward is not None:
                row.forward = np.asarray(r.forward[i])
            row.mode = r.mode
            res.inputs[n] = row
        res.method = method_text(int(self.methods[i]), self.label)
        return res

    def json_lines(self) -> list[str]:
        """The JSON line of each point (``check --json``'s object, with its newline), in bulk.

        The object of point 0 is written by the renderer with holes where the per-point values go,
        which are then filled column by column: the same text as ``dumps(check_json(result(i)))``.
        """
        import json

        from difftape.io.render import check_json, dumps, json_column

        payload = check_json(self.result(0), self.rtol, self.atol)
        columns: list[list[str]] = []
        marks: dict[str, int] = {}

        def hole(column: list[str]) -> str:
            mark = f"\x00{len(columns)}\x00"
            marks[json.dumps(mark)] = len(columns)
            columns.append(column)
            return mark

        payload["ok"] = hole(json_column(self.ok))
        texts = {int(b): json.dumps(method_text(int(b), self.label)) for b in np.unique(self.methods)}
        payload["method"] = hole([texts[b] for b in self.methods.tolist()])
        for n, r in self.rows.items():
            row = payload["inputs"][n]
            for key in ("max_abs_err", "max_rel_err", "ok", "numeric_error", "tape", "numeric", "analytic",
                        "forward"):
                value = getattr(r, key)
                if value is not None and key in row:
                    row[key] = hole(json_column(value))
        text = dumps(payload) + "\n"
        spots = sorted((text.index(m), m) for m in marks)
        pieces, order, at = [], [], 0
        for pos, m in spots:
            pieces.append(text[at:pos])
            order.append(columns[marks[m]])
            at = pos + len(m)
        pieces.append(text[at:])
        out = []
        for values in zip(*order):
            parts = [pieces[0]]
            for value, piece in zip(values, pieces[1:]):
                parts.append(value)
                parts.append(piece)
            out.append("".join(parts))
        return out


def method_text(bits: int, label: str) -> str:
    """The ``method`` of one point's check from its bits (names sorted and joined, as ``checker`` does)."""
    names = sorted(name + label for k, name in enumerate(_METHODS) if bits & (1 << k))
    return "; ".join(names) or "none"


def _compare(got: np.ndarray, ref: np.ndarray, rtol: float, atol: float, slack: np.ndarray) -> tuple:
    """``program._compare`` for B points at once: (abs_err, rel_err, ok, score), each (B,); ``slack`` is
    each point's error, (B,), or each element's, shaped as ``got``."""
    B = got.shape[0]
    got = np.asarray(got, np.float64).reshape(B, -1)
    ref = np.asarray(ref, np.float64).reshape(B, -1)
    if got.shape[1] == 0:
        zero = np.zeros(B)
        return zero, zero, np.ones(B, dtype=bool), zero
    same_nonfinite = (~np.isfinite(got) | ~np.isfinite(ref)) & (got == ref) | (np.isnan(got) & np.isnan(ref))
    diff = np.where(same_nonfinite, 0.0, np.abs(got - ref))
    diff = np.where(np.isnan(diff), np.inf, diff)
    abs_err = diff.max(axis=1)
    rel = np.where(diff == 0, 0.0, diff / np.abs(ref))
    rel_err = np.where(np.isnan(rel), np.inf, rel).max(axis=1)
    bound = atol + rtol * np.abs(np.where(np.isfinite(ref), ref, 0.0)) + np.asarray(slack).reshape(B, -1)
    ok = np.all(diff <= bound, axis=1)
    score = np.where(diff == 0, 0.0, diff / np.where(bound > 0, bound, 1e-300)).max(axis=1)
    return abs_err, rel_err, ok, score


def _compare_directional(got: np.ndarray, ref: np.ndarray, rtol: float, atol: float, slack: np.ndarray,
                         scale: np.ndarray, spread: np.ndarray, eps: float) -> tuple:
    """The directional comparison of ``checker._Checker._row`` for B points: (B, K) arrays in."""
    ref = np.asarray(ref, np.float64)
    diff = np.abs(got - ref)
    big = np.maximum(scale, np.abs(ref))
    bound = (directional_bound(atol, rtol, got.shape[1], eps, scale, spread, ref)
             + np.asarray(slack).reshape(got.shape[0], -1))
    abs_err = diff.max(axis=1, initial=0.0)
    rel_err = (diff / np.maximum(big, 1e-300)).max(axis=1, initial=0.0)
    ok = np.all(diff <= bound, axis=1)
    score = np.where(diff == 0, 0.0, diff / np.where(bound > 0, bound, 1e-300)).max(axis=1, initial=0.0)
    return abs_err, rel_err, ok, score


def score_of(res: CheckResult) -> float:
    """How far the worst difference of a point-by-point check is from its tolerance (for ranking points)."""
    worst = 0.0
    for row in res.inputs.values():
        got = None if row.tape is None else np.asarray(row.tape, np.float64)
        if got is None:
            continue
        for ref in (row.numeric, row.analytic, row.forward):
            if ref is None:
                continue
            ref = np.asarray(ref, np.float64)
            if ref.shape != got.shape:
                continue
            diff = np.abs(got - ref)
            bound = res.atol + res.rtol * np.maximum(np.abs(ref), np.abs(got)) + row.numeric_error
            with np.errstate(all="ignore"):
                ratio = np.where(diff == 0, 0.0, diff / np.where(bound > 0, bound, 1e-300))
            ratio = np.where(np.isnan(ratio), np.inf, ratio)
            worst = max(worst, float(np.max(ratio, initial=0.0)))
    if not res.ok:
        worst = max(worst, 1.0 + 1e-12)
    return worst


# ----------------------------------------------------------------------------------------
# one input signature


class _Signature:
    """A group's program compiled once: the tape run, the float64 model, the analytic gradients."""

    def __init__(self, checker: BatchChecker, first: Mapping[str, Any]) -> None:
        from difftape.answers.checker import _reference

        prog = checker.prog
        self.program = Program(prog.source, of=prog.of_name, at={**prog.at, **first}, seed=prog.seed,
                               dtype=prog.dtype)
        p = self.program
        names, watched = p.sources(checker.wrt, checker.watch)
        self.names = [n for n in names if n in watched]
        self.watched = watched
        if not self.names:
            raise DifftapeError("value", f"nothing to check: {p.of} has no input to differentiate (no variable, "
                                         "no --watch)")
        p.graph.check_values()
        self.runner = _LeafGraph(p.graph, seed=p.seed, float_dtype=p.float_dtype)
        ref = _reference(p)
        marked, self.held = _marked(ref.graph)
        self.ref = _LeafGraph(marked, seed=ref.seed, float_dtype=np.float64)
        self.float64 = p.float_dtype == np.float64
        self.label = "" if self.float64 else " (float64 model)"
        self.analytic_ops = all(getattr(node, "op", "") in numeric.ANALYTIC_OPS or node.op not in _ops()
                                for node in ref.graph.nodes)
        named = p.graph.named_nodes()
        self.shapes = {n: tuple(p.graph.nodes[named[n]].shape or ()) for n in self.names}
        size = sum(math.prod(s) for s in self.shapes.values())
        limit = FULL_LIMIT if checker.order == 1 else FULL_LIMIT_ORDER2
        self.mode = ("full" if size <= limit else "directional") if checker.mode == "auto" else checker.mode
        per_point = max([math.prod(node.shape or ()) for node in p.graph.nodes] + [size, 1])
        self.chunk = max(1, min(MAX_CHUNK, CHUNK_ELEMENTS // per_point))
        self._analytic: dict[str, tuple[str | None, str]] | None = None
        self._expr: dict[str, Any] = {}

    def analytic_texts(self, expect: Mapping[str, str]) -> dict[str, tuple[str | None, str]]:
        """{name: (text, origin)}: --expect, else the derived gradient (once per signature)."""
        if self._analytic is None:
            derived = self.program._derived([n for n in self.names if n not in expect])
            self._analytic = {n: ((expect[n], "expect") if n in expect else derived.get(n, (None, "none")))
                              for n in self.names}
        return self._analytic

    def expression(self, name: str, text: str, origin: str, leaves: Mapping[str, tuple[Any, bool]]) -> _LeafGraph:
        """The analytic gradient's text compiled once (as ``Program._analytic`` compiles it per point)."""
        runner = self._expr.get(name)
        if runner is None:
            from difftape.language.compiler import compile_program

            values = {k: (np.asarray(_raw(v))[0] if b else np.asarray(_raw(v))) for k, (v, b) in leaves.items()}
            try:
                graph = compile_program(text, values=values, dtype=self.program.dtype)
            except DifftapeError as exc:
                where = "--expect" if origin == "expect" else "the derived gradient"
                raise DifftapeError(exc.kind, f"in {where} for {name}: {exc.message}") from None
            runner = self._expr[name] = _LeafGraph(graph, seed=self.program.seed,
                                                   float_dtype=self.program.float_dtype)
        return runner


def _ops() -> Any:
    from difftape.ops import OPS

    return OPS


# ----------------------------------------------------------------------------------------
# the checker


@dataclass
class CheckStats:
    """What checking some points found: counts, the first mismatch, the worst point, the first error."""

    points: int = 0
    checked: int = 0
    mismatched: int = 0
    failed: int = 0
    first_mismatch: int | None = None  # its line (or point) number
    mismatches: list[int] = field(default_factory=list)
    worst: tuple[float, int, CheckResult] | None = None  # (score, number, result)
    first_error: tuple[int, DifftapeError] | None = None
    methods: set[str] = field(default_factory=set)
    modes: set[str] = field(default_factory=set)

    def block(self, numbers: np.ndarray, block: CheckBlock) -> int | None:
        """Count the verdicts of a vectorised block (points numbered ``numbers``, ascending); the index of
        its point that is the worst so far, if one is."""
        self.checked += len(numbers)
        self.modes.add(block.mode)
        for b in np.unique(block.methods).tolist():
            name = method_text(int(b), block.label)
            if name != "none":
                self.methods.update(name.split("; "))
        bad = np.flatnonzero(~block.ok)
        if bad.size:
            self.mismatched += int(bad.size)
            room = 1000 - len(self.mismatches)
            if room > 0:
                self.mismatches.extend(numbers[bad[:room]].tolist())
                self.mismatches.sort()
            first = int(numbers[bad[0]])
            if self.first_mismatch is None or first < self.first_mismatch:
                self.first_mismatch = first
        if not len(numbers):
            return None
        k = int(np.argmax(np.where(np.isnan(block.score), np.inf, block.score)))
        score, number = float(block.score[k]), int(numbers[k])
        if self.worst is None or score > self.worst[0] or (score == self.worst[0] and number < self.worst[1]):
            self.worst = (score, number, block.result(k))
            return k
        return None

    def verdict(self, number: int, res: CheckResult, score: float) -> bool:
        """Count one point's verdict; whether it is the worst so far."""
        self.checked += 1
        self.modes.add(getattr(res, "mode", "full"))
        if res.method and res.method != "none":
            self.methods.update(res.method.split("; "))
        if not res.ok:
            self.mismatched += 1
            if len(self.mismatches) < 1000:
                self.mismatches.append(number)
                self.mismatches.sort()
            if self.first_mismatch is None or number < self.first_mismatch:
                self.first_mismatch = number
        if self.worst is None or score > self.worst[0] or (score == self.worst[0] and number < self.worst[1]):
            self.worst = (score, number, res)
            return True
        return False

    def error(self, number: int, err: DifftapeError) -> None:
        self.failed += 1
        if self.first_error is None or number < self.first_error[0]:
            self.first_error = (number, err)

    def exit_status(self) -> int:
        """1 if any point mismatched (the finding that matters most), else 2 if any failed, else 0."""
        return 1 if self.mismatched else 2 if self.failed else 0


class BatchChecker:
    """``check`` for many points of one program (a :class:`BatchProgram`): vectorised per signature.

    The options are those of :func:`difftape.answers.checker.check`; they are validated here, once,
    so that a bad option fails before any point is read.
    """

    def __init__(self, prog: BatchProgram, expect: Mapping[str, str] | None = None, rtol: float | None = None,
                 atol: float | None = None, wrt: Iterable[str] | None = None, watch: Iterable[str] = (),
                 mode: str = "auto", directions: int = 3, order: int = 1) -> None:
        check_options(mode, directions, order)
        self.prog = prog
        self.wrt = None if wrt is None else list(wrt)
        self.watch = tuple(watch)
        self.mode, self.directions, self.order = mode, int(directions), int(order)
        self.rtol, self.atol = tolerances(prog.dtype, rtol, atol)
        self.rtol_arg, self.atol_arg = rtol, atol
        names, watched = prog.base.sources(self.wrt, self.watch)
        names = [n for n in names if n in watched]
        if not names:
            raise DifftapeError("value", f"nothing to check: {prog.of} has no input to differentiate (no variable, "
                                         "no --watch)")
        self.expect = self._expect(dict(expect or {}), names)
        self._sigs: dict[tuple, _Signature | DifftapeError] = {}

    @staticmethod
    def _expect(expect: dict[str, str], names: list[str]) -> dict[str, str]:
        if "" in expect:
            if len(names) != 1:
                raise DifftapeError(
                    "usage",
                    "--expect EXPR needs exactly one input to differentiate; this program has "
                    f"{len(names)} ({', '.join(names)}): use --expect NAME=EXPR",
                )
            expect[names[0]] = expect.pop("")
        for n, text in expect.items():
            if n not in names:
                raise DifftapeError("name", f"--expect {n}=...: {n} is not differentiated here{did_you_mean(n, names)}")
            from difftape.language.parser import parse

            try:
                parse(text)
            except DifftapeError as exc:
                exc.message = f"in --expect for {n}: {exc.message}"
                exc.source = text
                raise
        return expect

    # -- driving ---------------------------------------------------------------------------------
    def answer(self, points: list[Any], bad: Mapping[int, DifftapeError], sink: JsonLines, stats: CheckStats) -> None:
        """Check one block of NDJSON points into ``sink`` (one JSON line each), counting into ``stats``."""
        from difftape.io.render import check_json

        def number(line: int) -> int:
            return sink.numbers[line] if sink.numbers is not None else sink.offset + line + 1

        def fail(lines: Iterable[int], err: DifftapeError) -> None:
            lines = list(lines)
            sink.fail(lines, err)
            for line in lines:
                stats.error(number(line), err)

        def verdict(line: int, res: CheckResult, score: float) -> None:
            sink.put(line, check_json(res, res.rtol, res.atol))
            stats.verdict(number(line), res, score)

        def verdicts(lines: np.ndarray, block: CheckBlock) -> None:
            for line, text in zip(lines.tolist(), block.json_lines()):
                sink.put_text(line, text)
            stats.block(np.array([number(line) for line in lines.tolist()], dtype=np.int64), block)

        stats.points += len(points)
        for line, err in sorted(bad.items()):
            fail((line,), err)
        groups = self.prog.plan(points, bad, fail)
        for group in groups:
            self.check_group(group, verdict, fail, verdicts)

    def results(self, points: Sequence[Mapping[str, Any]]) -> list[CheckResult | DifftapeError]:
        """Per point: its CheckResult (as ``Program.check``), or the DifftapeError of that point."""
        out: list[Any] = [None] * len(points)

        def fail(lines: Iterable[int], err: DifftapeError) -> None:
            for line in lines:
                out[line] = err

        def verdict(line: int, res: CheckResult, score: float) -> None:
            out[line] = res

        for group in self.prog.plan(list(points), {}, fail):
            self.check_group(group, verdict, fail)
        return out

    def check_group(self, group: Group, verdict: Callable[[int, CheckResult, float], None],
                    fail: Callable[[Iterable[int], DifftapeError], None],
                    verdicts: Callable[[np.ndarray, CheckBlock], None] | None = None) -> None:
        """Check the points of one group: ``verdict(line, result, score)`` or ``fail(lines, error)`` each;
        with ``verdicts``, the points of a vectorised run go to ``verdicts(lines, block)`` together."""
        try:
            sig = self.signature(group)
        except DifftapeError as err:
            fail(group.lines.tolist(), _line_error(err))
            return
        n = len(group.lines)
        for lo in range(0, n, sig.chunk):
            self._solve(sig, group, lo, min(n, lo + sig.chunk), verdict, fail, verdicts)

    def signature(self, group: Group) -> _Signature:
        key = tuple((k, v.shape[1:], v.dtype.str) for k, v in group.values.items())
        sig = self._sigs.get(key)
        if sig is None:
            try:
                with np.errstate(all="ignore"):
                    sig = _Signature(self, {k: v[0] for k, v in group.values.items()})
            except DifftapeError as err:
                sig = err
            self._sigs[key] = sig
        if isinstance(sig, DifftapeError):
            raise sig
        return sig

    def _solve(self, sig: _Signature, group: Group, lo: int, hi: int,
               verdict: Callable[[int, CheckResult, float], None],
               fail: Callable[[Iterable[int], DifftapeError], None],
               verdicts: Callable[[np.ndarray, CheckBlock], None] | None = None) -> None:
        lines = group.lines[lo:hi]
        if self.order == 2:  # point by point: one Program.check each
            for j in range(lo, hi):
                self._one(group, j, verdict, fail)
            return
        try:
            with np.errstate(all="ignore"):
                block, errors = _Run(self, sig, {k: v[lo:hi] for k, v in group.values.items()}, hi - lo).check()
        except Exception:  # noqa: BLE001 - some point failed: isolate it
            if hi - lo <= SMALL:
                for j in range(lo, hi):
                    self._alone(group, j, verdict, fail)
                return
            mid = (lo + hi) // 2
            self._solve(sig, group, lo, mid, verdict, fail, verdicts)
            self._solve(sig, group, mid, hi, verdict, fail, verdicts)
            return
        for j, err in errors.items():
            fail((int(lines[j]),), err)
        if block is not None:
            kept = np.array([j for j in range(hi - lo) if j not in errors], dtype=np.int64)
            if verdicts is not None:
                verdicts(lines[kept], block)
                return
            for k, j in enumerate(kept.tolist()):
                verdict(int(lines[j]), block.result(k), float(block.score[k]))

    def _alone(self, group: Group, j: int, verdict: Callable[[int, CheckResult, float], None],
               fail: Callable[[Iterable[int], DifftapeError], None]) -> None:
        """A point the vectorised check failed for, checked alone."""
        self._one(group, j, verdict, fail)

    def _one(self, group: Group, j: int, verdict: Callable[[int, CheckResult, float], None],
             fail: Callable[[Iterable[int], DifftapeError], None]) -> None:
        """One point through ``Program.check``: exactly what ``difftape check`` answers for it alone."""
        prog = self.prog
        line = int(group.lines[j])
        point = {k: v[j] for k, v in group.values.items()}
        try:
            with np.errstate(all="ignore"):
                p = Program(prog.source, of=prog.of_name, at={**prog.at, **point}, seed=prog.seed, dtype=prog.dtype)
                res = p.check(expect=self.expect or None, rtol=self.rtol_arg, atol=self.atol_arg, wrt=self.wrt,
                              watch=self.watch, mode=self.mode, directions=self.directions, order=self.order)
        except DifftapeError as err:
            fail((line,), _line_error(err))
            return
        except Exception as err:  # noqa: BLE001 - never lose a point to a traceback
            msg = f"internal error: {type(err).__name__}: {err} (this is a bug in difftape; please report it)"
            fail((line,), DifftapeError("internal", msg))
            return
        verdict(line, res, score_of(res))


class _Run:
    """The first-order check of B points of one signature, vectorised."""

    def __init__(self, checker: BatchChecker, sig: _Signature, values: dict[str, np.ndarray], B: int) -> None:
        self.c, self.sig, self.values, self.B = checker, sig, values, B
        self.methods = np.zeros(B, dtype=np.int64)

    # -- the tape --------------------------------------------------------------------------------
    def check(self) -> tuple[CheckBlock | None, dict[int, DifftapeError]]:
        from difftape.engine.tape import Tape

        sig, B = self.sig, self.B
        names = sig.names
        with Tape() as tape:
            out, ob, leaves = sig.runner.run(B, self.values, sig.watched, [tape])
        sources = [leaves[n][0] for n in names]
        if isinstance(out, Tensor):
            grads = [np.asarray(g._value) for g in tape.gradient(out, sources, unconnected="zero")]
        else:  # the target depends on no point: every gradient is 0
            grads = [np.zeros((B,) + sig.shapes[n], dtype=sig.program.float_dtype) for n in names]
        value = np.asarray(_raw(out))
        # (+ 0.0: derivatives never show -0.0, as Program's)
        tape_g = {n: np.broadcast_to(g + 0.0 if g.dtype.kind == "f" else g, (B,) + sig.shapes[n])
                  for n, g in zip(names, grads)}
        # no verdict where there is no derivative: the errors of one point's check, point by point
        errors: dict[int, DifftapeError] = {}
        totals = value.reshape(B, -1).sum(axis=1) if ob and value.ndim > 1 else (value if ob else None)
        finite = np.ones(B, dtype=bool) if totals is None else np.isfinite(totals)
        if totals is None and not np.all(np.isfinite(np.sum(value))):
            finite[:] = False
        for n in names:
            g = tape_g[n]
            if g.dtype.kind in "fc":
                finite &= np.isfinite(g.reshape(B, -1)).all(axis=1) if g.ndim > 1 else np.isfinite(g)
        for j in np.flatnonzero(~finite).tolist():
            vj = value[j] if ob else value
            err = _not_finite(f"{sig.program.of}", vj if np.ndim(vj) == 0 else np.sum(vj))
            for n in names:
                err = err or _not_finite(f"the gradient with respect to {n}", tape_g[n][j])
            errors[j] = err or DifftapeError("domain", "there is no derivative to check at this point")
        keep = np.flatnonzero(finite)
        if not keep.size:
            return None, errors
        if keep.size < B:
            self.B = B = int(keep.size)
            self.values = {k: v[keep] for k, v in self.values.items()}
            leaves = {k: ((np.asarray(_raw(v))[keep], True) if b else (v, b)) for k, (v, b) in leaves.items()}
            tape_g = {n: g[keep] for n, g in tape_g.items()}
            self.methods = self.methods[keep]
        self.leaves = leaves
        self.base = {n: np.array(np.asarray(_raw(leaves[n][0]), dtype=np.float64), copy=True) for n in names}
        self.held = self._held() if sig.held else {}
        return self.first_order({n: np.asarray(g, dtype=np.float64) for n, g in tape_g.items()}), errors

    def _held(self) -> dict[str, np.ndarray]:
        """The value of each const-of-variables node at each point, from the float64 model (as ``Program._held``)."""
        sig = self.sig
        _, _, leaves = sig.ref.run(self.B, self._ref_values())
        out = {}
        for key in sig.held:
            v, b = leaves[key]
            arr = np.asarray(_raw(v))
            out[key] = arr if b else np.broadcast_to(arr, (self.B,) + arr.shape)
        return out

    def _ref_values(self, idx: np.ndarray | None = None) -> dict[str, np.ndarray]:
        vals = self.values if idx is None else {k: v[idx] for k, v in self.values.items()}
        if self.sig.float64:
            return vals
        return {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in vals.items()}

    def total(self, idx: np.ndarray, name: str, z: np.ndarray) -> np.ndarray:
        """sum(target) of the float64 model at points ``idx`` with input ``name`` at ``z`` (the others at the point)."""
        over = {key: v[idx] for key, v in self.held.items()}
        for n in self.sig.names:
            over[n] = z if n == name else self.base[n][idx]
        out, ob = self.sig.ref.run_with(len(idx), self._ref_values(idx), over)
        return _per_point_sum(out, len(idx), ob)

    # -- first order -----------------------------------------------------------------------------
    def first_order(self, tape: dict[str, np.ndarray]) -> CheckBlock:
        c, sig, B = self.c, self.sig, self.B
        texts = sig.analytic_texts(c.expect)
        rng = np.random.default_rng(sig.program.seed)
        rows: dict[str, RowBlock] = {}
        ok = np.ones(B, dtype=bool)
        score = np.zeros(B)
        for n in sig.names:
            text, origin = texts[n]
            analytic = self.analytic(n, text, origin) if origin != "none" else None
            tape_g = tape[n]
            if sig.mode == "full":
                num, errs = self.numeric_gradient(n, tape_g)
                abs_err, rel_err, good, sc = _compare(tape_g, num, c.rtol, c.atol, errs)
                err = errs.reshape(B, -1).max(axis=1, initial=0.0)
                if analytic is not None:
                    a2, r2, g2, s2 = _compare(tape_g, analytic, c.rtol, c.atol, np.zeros(B))
                    abs_err, rel_err, good, sc = (np.fmax(abs_err, a2), np.fmax(rel_err, r2), good & g2,
                                                  np.fmax(sc, s2))
                # (as checker._Checker._row: the largest of 0 and each reference's, a nan skipped)
                row = RowBlock(tape_g, num, np.fmax(err, 0.0), analytic, np.fmax(abs_err, 0.0),
                               np.fmax(rel_err, 0.0), good, text, origin, "full")
            else:
                row, sc = self.directional(n, tape_g, analytic, text, origin, rng)
                good = row.ok
            rows[n] = row
            ok &= good
            score = np.fmax(score, np.where(good, sc, np.fmax(sc, 1.0 + 1e-12)))
        mode = "full" if sig.mode == "full" else "directional"
        return CheckBlock(sig.program.of, c.rtol, c.atol, mode, rows, self.methods, sig.label, ok, score)

    def analytic(self, n: str, text: str, origin: str) -> np.ndarray:
        """The analytic gradient at every point: the text compiled once, run over the batch."""
        sig, B = self.sig, self.B
        runner = sig.expression(n, text, origin, self.leaves)
        graph = runner.graph
        values = {k: np.asarray(_raw(v)) for k, (v, b) in self.leaves.items() if b and k in graph.inputs}
        out, ob, _ = runner.run(B, values)
        value = np.asarray(_raw(out), dtype=np.float64)
        shape = sig.shapes[n]
        eshape = value.shape[1:] if ob else value.shape
        try:
            np.broadcast_shapes(eshape, shape)
            if np.broadcast_shapes(eshape, shape) != shape:
                raise ValueError
        except ValueError:
            raise DifftapeError("shape", f"--expect for {n} has shape {eshape}, but {n} has shape {shape}") from None
        if ob:
            value = value.reshape((B,) + (1,) * (len(shape) - len(eshape)) + eshape)
        return np.broadcast_to(value, (B,) + shape).copy()

    def numeric_gradient(self, n: str, tape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every element of every point: the complex step where the program allows it, else Ridders (a
        second opinion where an element disagrees with the ``tape``); and the error of each element."""
        x0 = self.base[n]
        B = self.B
        size = x0[0].size if x0.ndim > 1 else 1
        flat = x0.reshape(B, size)
        grad = np.full((B, size), np.nan)
        err = np.zeros((B, size))
        todo = np.arange(B)
        if self.sig.analytic_ops:
            try:
                g, e = self._complex_gradient(n, flat)
                good = np.isfinite(g).all(axis=1)
                grad[good], err[good] = g[good], e[good][:, None]
                self.methods[good] |= _COMPLEX
                todo = np.flatnonzero(~good)
            except Exception:  # noqa: BLE001 - an op refused complex input: central differences
                pass
        if todo.size:
            g, e = self._ridders_gradient(n, flat, todo, np.asarray(tape, dtype=np.float64).reshape(B, size))
            grad[todo], err[todo] = g, e
            self.methods[todo] |= _RIDDERS
        return grad.reshape(x0.shape), err.reshape(x0.shape)

    def _complex_gradient(self, n: str, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        B, size = flat.shape
        shape = self.base[n].shape
        idx = np.arange(B)
        h = 1e-30
        grad = np.empty((B, size))
        base = flat.astype(np.complex128)
        for i in range(size):
            xi = flat[:, i]
            hi = np.where(xi != 0, np.maximum(np.minimum(h, h * np.abs(xi)), 1e-310), h)
            z = base.copy()
            z[:, i] += 1j * hi
            grad[:, i] = np.imag(self.total(idx, n, z.reshape(shape))) / hi
        err = np.abs(grad).max(axis=1, initial=0.0) * 4 * _EPS
        return grad, err

    def _ridders_gradient(self, n: str, flat: np.ndarray, todo: np.ndarray,
                          tape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``numeric.richardson_gradient`` at the points ``todo``, element by element, every point at once,
        with its second opinions where an element disagrees with the ``tape``; (gradient, errors)."""
        shape = self.base[n].shape[1:]
        x = flat[todo]
        m, size = x.shape
        grad = np.empty((m, size))
        errs = np.empty((m, size))
        c = self.c

        def bound(ref: np.ndarray) -> np.ndarray:
            return c.atol + c.rtol * np.abs(ref)
        for i in range(size):
            xi = x[:, i]
            s0 = 0.1 * np.maximum(np.abs(xi), 1.0)
            two = (0.0 < np.abs(xi)) & (np.abs(xi) < 1.0)
            tail = [s0 * 10.0**-k for k in (1, 2, 3)]
            cand = np.stack([s0, np.where(two, 0.1 * np.abs(xi), tail[0]), np.where(two, tail[0], tail[1]),
                             np.where(two, tail[1], tail[2]), np.where(two, tail[2], np.nan)], axis=1)
            count = np.where(two, 5, 4)
            nsteps = np.where(two, 2, 1)
            g = np.full(m, np.nan)
            err = np.full(m, np.inf)

            def along(p: np.ndarray, t: np.ndarray, i: int = i) -> np.ndarray:
                z = x[p].copy()
                z[:, i] = t
                return np.real(self.total(todo[p], n, z.reshape((len(p),) + shape)))

            for k in range(5):
                stop = (k >= nsteps) & (err <= 1e-10 * np.maximum(np.abs(g), 1.0))
                act = np.flatnonzero((k < count) & ~stop)
                if not act.size:
                    break
                est, est_err = ridders_batch(along, act, xi[act], cand[act, k])
                better = est_err < err[act]
                g[act[better]], err[act[better]] = est[better], est_err[better]
            g, err = _second_opinions(along, xi, tail[2], tape[todo, i], bound, g, err)
            grad[:, i] = g
            errs[:, i] = err
        return grad, errs

    # -- directional -----------------------------------------------------------------------------
    def directional(self, n: str, tape_g: np.ndarray, analytic: np.ndarray | None, text: str | None, origin: str,
                    rng: np.random.Generator) -> tuple[RowBlock, np.ndarray]:
        c, sig, B = self.c, self.sig, self.B
        k = c.directions
        shape = sig.shapes[n]
        vs = []
        for _ in range(k):
            v = rng.standard_normal(shape)
            vs.append(v / max(float(np.sqrt(np.sum(v * v))), 1e-300) * np.sqrt(max(v.size, 1)))
        axes = tuple(range(1, tape_g.ndim))
        rev = np.stack([np.sum(tape_g * v, axis=axes) for v in vs], axis=1)
        fwd = np.stack([self._jvp(n, v) for v in vs], axis=1)
        scale = np.stack([np.sum(np.abs(tape_g * v), axis=axes) for v in vs], axis=1)
        spread = np.stack([np.sqrt(np.sum((tape_g * v) ** 2, axis=axes)) for v in vs], axis=1)
        eps = float(np.finfo(sig.program.float_dtype).eps)
        nums = [self.numeric_directional(n, v, rev[:, j], scale[:, j], spread[:, j], eps) for j, v in enumerate(vs)]
        num = np.stack([d for d, _ in nums], axis=1)
        err = np.stack([e for _, e in nums], axis=1)  # (B, K): each direction's own
        ana = None if analytic is None else np.stack([np.sum(analytic * v, axis=axes) for v in vs], axis=1)
        abs_err, rel_err, ok, score = np.zeros(B), np.zeros(B), np.ones(B, dtype=bool), np.zeros(B)
        slack_seen = np.zeros(B)
        for ref, slack in ((fwd, np.zeros(B)), (num, err), (ana, np.zeros(B))):
            if ref is None:
                continue
            a, r, g, s = _compare_directional(rev, ref, c.rtol, c.atol, slack, scale, spread, eps)
            abs_err, rel_err, ok, score = np.fmax(abs_err, a), np.fmax(rel_err, r), ok & g, np.fmax(score, s)
            slack_seen = np.fmax(slack_seen, np.max(slack, axis=1) if np.ndim(slack) == 2 else slack)
        if analytic is not None:  # element by element too, as checker._Checker.first_order
            a, r, g, s = _compare(tape_g, analytic, c.rtol, c.atol, np.zeros(B))
            abs_err, rel_err, ok, score = np.fmax(abs_err, a), np.fmax(rel_err, r), ok & g, np.fmax(score, s)
        row = RowBlock(rev, num, slack_seen, ana, abs_err, rel_err, ok, text, origin,
                       f"directional ({k} direction{'s' * (k != 1)})", fwd)
        return row, score

    def _jvp(self, n: str, v: np.ndarray) -> np.ndarray:
        """J v of every point by forward mode over the batch (as ``forward.jvp`` for one point)."""
        from difftape.engine.forward import ForwardAccumulator

        sig, B = self.sig, self.B
        dtype = sig.program.float_dtype
        primals = {m: Tensor(np.array(np.asarray(_raw(self.leaves[m][0])), dtype=dtype, copy=True))
                   for m in sig.names}
        tangent = np.broadcast_to(np.asarray(v, dtype=dtype), (B,) + sig.shapes[n]).copy()
        runner = sig.runner
        runner.overrides = primals
        try:
            with ForwardAccumulator([primals[n]], [tangent]) as acc:
                out, ob, _ = runner.run(B, self.values)
        finally:
            runner.overrides = {}
        if not ob or not isinstance(out, Tensor):
            return np.zeros(B)
        t = np.asarray(acc.jvp(out, unconnected="zero")._value)
        return _per_point_sum(t.astype(dtype, copy=False), B, True).astype(np.float64)

    def numeric_directional(self, n: str, v: np.ndarray, tape: np.ndarray, scale_of: np.ndarray,
                            spread_of: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
        """The derivative along ``v`` at every point: one complex-step run, else Ridders (and its second
        opinions where it disagrees with the ``tape``'s, whose terms are ``scale_of`` in size)."""
        x0 = self.base[n]
        B = self.B
        d = np.full(B, np.nan)
        err = np.zeros(B)
        todo = np.arange(B)
        if self.sig.analytic_ops:
            h = 1e-30 / max(float(np.max(np.abs(v))), 1.0)
            try:
                got = np.imag(self.total(np.arange(B), n, x0 + 1j * h * v)) / h
                good = np.isfinite(got)
                d[good] = got[good]
                err[good] = np.abs(got[good]) * 4 * _EPS * max(1.0, float(np.sum(np.abs(v))))
                self.methods[good] |= _COMPLEX_DIR
                todo = np.flatnonzero(~good)
            except Exception:  # noqa: BLE001
                pass
        if todo.size:
            axes = tuple(range(1, x0.ndim))
            scale = 0.1 * np.maximum(np.max(np.abs(x0[todo]), axis=axes, initial=0.0) if axes else np.abs(x0[todo]),
                                     1.0)

            def along(p: np.ndarray, t: np.ndarray) -> np.ndarray:
                pts = todo[p]
                return np.real(self.total(pts, n, x0[pts] + _bcast(t, v.shape) * v))

            # numeric.directional's tries: the scale, then decades below it while a point has not converged
            est, e = np.full(todo.size, np.nan), np.full(todo.size, np.inf)
            for k in range(numeric.DIRECTIONAL_DECADES + 1):
                act = np.arange(todo.size) if k == 0 else \
                    np.flatnonzero(~(e <= 1e-10 * np.maximum(np.abs(est), 1.0)))
                if not act.size:
                    break
                got, got_err = ridders_batch(lambda p, t, act=act: along(act[p], t), np.arange(act.size),
                                             np.zeros(act.size), scale[act] * 10.0**-k)
                better = got_err < e[act]
                est[act[better]], e[act[better]] = got[better], got_err[better]
            k_dirs = self.c.directions
            sc, sp = scale_of[todo], spread_of[todo]

            def bound(ref: np.ndarray, p: np.ndarray) -> np.ndarray:
                return directional_bound(self.c.atol, self.c.rtol, k_dirs, eps, sc[p], sp[p], ref)

            est, e = _second_opinions(lambda p, t: along(p, t), np.zeros(todo.size),
                                      scale * 10.0**-numeric.DIRECTIONAL_DECADES, tape[todo], bound, est, e,
                                      per_point=True)
            d[todo], err[todo] = est, e
            self.methods[todo] |= _RIDDERS_DIR
        return d, err


def _second_opinions(f: Callable[[np.ndarray, np.ndarray], np.ndarray], x: np.ndarray, last: np.ndarray,
                     tape: np.ndarray, bound: Callable[..., np.ndarray], best: np.ndarray, err: np.ndarray,
                     per_point: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """:func:`numeric.second_opinion` for many points: Ridders from decades below each point's ``last`` step
    where a point's estimate disagrees with its ``tape`` value (``bound(ref)``: the tolerance; with
    ``per_point``, ``bound(ref, points)`` for the tolerance of some of the points)."""
    best, err = best.copy(), err.copy()

    def tol(ref: np.ndarray, p: np.ndarray) -> np.ndarray:
        return bound(ref, p) if per_point else bound(ref)

    with np.errstate(invalid="ignore"):
        todo = ~(np.abs(tape - best) <= tol(best, np.arange(best.size)) + err)
    if not np.any(todo):
        return best, err
    with np.errstate(invalid="ignore"):
        gap = np.abs(tape - best) / 4
    for k in range(1, numeric.SECOND_DECADES + 1):
        act = np.flatnonzero(todo)
        if not act.size:
            break
        h = last[act] * 10.0**-k
        est, e = ridders_batch(f, act, x[act], h)
        with np.errstate(invalid="ignore"):
            b = tol(est, act)
            precise = (e <= b) | (e <= err[act]) | (e <= gap[act])
            taken = precise & (np.abs(tape[act] - est) <= b + e)
        best[act[taken]], err[act[taken]] = est[taken], e[taken]
        todo[act[taken]] = False
    return best, err


# ----------------------------------------------------------------------------------------
# --points N: random points


@dataclass
class PointsSummary:
    """What ``check --points N`` found, for the renderer."""

    of: str
    points: int
    seed: int
    shapes: dict[str, tuple[int, ...]]
    rtol: float
    atol: float
    order: int
    stats: CheckStats
    worst_at: dict[str, Any] | None = None


def draw_points(prog: BatchProgram, count: int, seed: int, lo: int = 0, hi: int | None = None,
                rng: np.random.Generator | None = None) -> tuple[Group, list[str]]:
    """Points ``lo:hi`` of ``count`` random points: every input standard normal, of its --at value's shape.

    Point ``j`` is the same whatever ``count`` (rows of one stream of draws, seeded by ``seed``); a bool
    --at value (a mask) stays as given, and bindings stay as bound.
    """
    shapes = drawn_shapes(prog)
    hi = count if hi is None else hi
    rng = rng or points_rng(seed)
    sizes = [math.prod(s) for s in shapes.values()]
    block = rng.standard_normal((hi - lo, sum(sizes)))
    values = {}
    at = 0
    dtype = prog.base.float_dtype
    for (name, shape), size in zip(shapes.items(), sizes):
        part = block[:, at : at + size].reshape((hi - lo,) + shape)
        values[name] = part.astype(dtype) if dtype != np.float64 else part
        at += size
    return Group(np.arange(lo, hi, dtype=np.int64), values), list(shapes)


def points_rng(seed: int) -> np.random.Generator:
    """The stream the --points are drawn from (apart from the program's own randn and the directions)."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(1,)))


def drawn_shapes(prog: BatchProgram) -> dict[str, tuple[int, ...]]:
    """The inputs --points draws and their shapes: every input, scalar unless --at gives it a value."""
    out = {}
    for name in prog.base.graph.inputs:
        value = prog.at.get(name)
        if value is not None and np.asarray(value).dtype.kind == "b":
            continue
        out[name] = () if value is None else tuple(np.shape(value))
    return out


def check_points_limit(prog: BatchProgram, count: int) -> None:
    """``error[limit]`` for a --points N too large to draw."""
    if count > MAX_POINTS:
        raise DifftapeError("limit", f"--points {count:,}: at most {MAX_POINTS:,} points are drawn at once; check "
                                     "fewer, or give the points with --batch")
    shapes = drawn_shapes(prog)
    if not shapes:
        raise DifftapeError("usage", "--points draws the program's inputs, but it has none (every name is bound): "
                                     "there is nothing to draw")
    per = sum(math.prod(s) for s in shapes.values())
    if count * per > MAX_DRAWN_ELEMENTS:
        raise DifftapeError("limit", f"--points {count:,} would draw {count * per:,} input elements ({per:,} a "
                                     f"point), over the limit of {MAX_DRAWN_ELEMENTS:,}; check fewer points")
