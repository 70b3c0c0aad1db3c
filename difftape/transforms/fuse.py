"""Fused, multithreaded elementwise kernels for ``difftape.function`` replays of large arrays.

numpy computes ``sum(exp(sin(x)) * x**2)`` and its gradient one op at a time: each op a pass over
memory (megabytes, far beyond the caches) on one core. When a traced graph (``engine/tracing.py``'s
``_Plan``) has chains of elementwise ops on one large shape, :func:`compile_forward` runs each chain
(a *group*) as one kernel: the same numpy calls on blocks of ~16,000 elements (rows of the leading
axis), so every intermediate of a block stays in cache, and the blocks split between the cores
(numpy's loops release the GIL). Only the group's values that something outside it uses (a later
op, a result) are written out in full, by their last op straight into the output's rows (``out=``,
for ufuncs: no block temporary, no copy); a full ``sum`` at the end of a chain is added up block by
block and the block sums then by numpy. Groups under :data:`MIN_SIZE` elements (262,144: the
arrays of a few MB where the second core pays) are left to numpy's passes; groups under
:data:`MIN_THREADED` (the same by default) would run on the caller's thread alone.

Results: every elementwise value is numpy's, bit for bit (the same loops on the same numbers; a
block is a slice). A fused full ``sum`` adds in another order than numpy's pairwise sum: within
``n * eps * sum(abs(terms))`` of it (a few ulps of the sum in practice; tests/test_speed_paths.py
holds it to ``4 * log2(n) * eps * sum(abs(terms))``) and the same from call to call (the blocks
depend on the shape only, not on the threads). numpy's error state (``np.errstate``) holds in
the worker threads too (each block runs in a copy of the caller's context).

Measured here (benchmarks/bench_layer.py), threads over numpy blocks beat numexpr, whose own
exp/sin are slower than numpy's SIMD loops and whose results differ from numpy's by ulps: numexpr
is not used. Applies to the compiled forward of a replay that nobody records (a Tape recording
the call needs every value kept, so it runs the unfused code) and without guards.
"""

from __future__ import annotations

import contextvars
import itertools
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from difftape.engine import tracing as _t
from difftape.ops import OPS

#: groups on arrays of at least this many elements are fused: below it a block kernel on one thread
#: measured no faster than numpy's passes (the intermediates of 2 MB fit in L2 anyway), and the layer's
#: 1000x64 group was 5-10% slower fused (benchmarks/bench_layer.py); the gain is the second core's
MIN_SIZE = 1 << 18
#: elements per block (a few intermediates of a block fit in L2)
BLOCK = 1 << 14
#: threads a kernel runs on (the caller's and helpers)
THREADS = max(1, min(os.cpu_count() or 1, 8))
#: groups on fewer elements run on the caller's thread alone: their work (a few hundred microseconds)
#: gains less from a second core than the hand-over costs, and a BLAS pool still spinning after a
#: matrix product (the layer's W @ x) competes with the helper for the cores
MIN_THREADED = 1 << 18

_pool: Any = None


def _executor() -> Any:
    global _pool
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor  # only when a fused kernel first runs

        _pool = ThreadPoolExecutor(max_workers=max(1, THREADS - 1), thread_name_prefix="difftape-fuse")
    return _pool


def run_blocks(
    kernel: Callable[..., Any], n: int, rows: int, args: tuple[Any, ...], threaded: bool = True
) -> list[list[Any]]:
    """``kernel(lo, hi, *args)`` over rows ``0..n`` split between the threads (one unless ``threaded``);
    its partial sums, in row order.

    The rows are cut into :data:`PIECES` pieces a thread, each taken by whichever thread is free (the
    caller's too): on a machine whose other processes keep a helper waiting, the caller does that
    helper's share instead of waiting for it. Pieces are whole blocks, so every block and its partial
    sum is the same whoever computes it, and however many threads there are.
    """
    n_blocks = -(-n // rows)
    threads = min(THREADS, n_blocks) if threaded else 1
    if threads <= 1:
        return kernel(0, n, *args)
    k = min(n_blocks, threads * PIECES)
    cuts = [min(n, (n_blocks * i // k) * rows) for i in range(k + 1)]
    cuts[-1] = n
    job = _Job(kernel, cuts, args)
    pool = _executor()
    for _ in range(threads - 1):
        pool.submit(contextvars.copy_context().run, job.work)  # numpy's errstate goes along
    job.work()
    parts = job.wait()
    return [[p for part in parts for p in part[j]] for j in range(len(parts[0]))]


#: pieces a thread of a threaded kernel, see :func:`run_blocks`
PIECES = 4


class _Job:
    """The pieces of one threaded kernel call: taken in turn, their results kept in row order."""

    def __init__(self, kernel: Callable[..., Any], cuts: list[int], args: tuple[Any, ...]) -> None:
        self.kernel, self.cuts, self.args = kernel, cuts, args
        self.n = len(cuts) - 1
        self.parts: list[Any] = [None] * self.n
        self.error: BaseException | None = None
        self._next = itertools.count()  # next() on it is one step under the GIL: each piece is taken once
        self._lock = threading.Lock()
        self._left = self.n
        self._done = threading.Event()

    def work(self) -> None:
        """Compute pieces until none is left to take."""
        while True:
            i = next(self._next)
            if i >= self.n:
                return
            try:
                self.parts[i] = self.kernel(self.cuts[i], self.cuts[i + 1], *self.args)
            except BaseException as err:  # noqa: BLE001 - raised in the caller's thread by wait()
                if self.error is None:
                    self.error = err
            with self._lock:
                self._left -= 1
                if self._left == 0:
                    self._done.set()

    def wait(self) -> list[Any]:
        """Every piece's result, once the pieces other threads took are done (or the first error)."""
        self._done.wait()
        if self.error is not None:
            raise self.error
        return self.parts


def add_up(parts: list[Any]) -> Any:
    """The total of a fused sum's block sums (numpy's pairwise sum over them, in their dtype)."""
    return np.sum(np.array(parts))


# ------------------------------------------------------------------------------------------------
# finding the groups


def _big_shape(v: Any) -> tuple[int, ...] | None:
    if isinstance(v, np.ndarray) and v.size >= MIN_SIZE and v.ndim >= 1 and v.dtype.kind in "biuf":
        return v.shape
    return None


def _how(v: Any, shape: tuple[int, ...]) -> str | None:
    """How a block sees an input of a group on ``shape``: "slice" (its rows), "whole" (broadcast), None (neither)."""
    s = np.shape(v)
    if len(s) == len(shape) and s[0] == shape[0] and shape[0] > 1:
        return "slice" if np.broadcast_shapes(s, shape) == shape else None
    if len(s) < len(shape) or (len(s) == len(shape) and s[0] == 1):
        try:
            return "whole" if np.broadcast_shapes(s, shape) == shape else None
        except ValueError:
            return None
    return None


def _is_total(node: Any) -> bool:
    return node.op == "sum" and node.params.get("axis") is None and not node.params.get("keepdims")


def groups(plan: Any) -> list[list[Any]]:
    """Chains of elementwise nodes on one large shape (each ending, perhaps, in full sums), in order.

    A node joins the open group of its shape when each input is the group's, or outside it and not
    computed from it (so the group runs as one kernel where its last node was); a full sum of a
    member joins too, and what uses a sum is outside the group.
    """
    found: list[list[Any]] = []
    # shape -> (members in order, ids of the elementwise members, ids computed from the group outside it)
    open_group: dict[tuple[int, ...], tuple[list[Any], set[int], set[int]]] = {}
    for node in plan.env_nodes:
        nid = node.id
        op = OPS[node.op]
        ins = plan.ins[nid]
        joined = None
        if _is_total(node) and ins[0][0] == "e":
            for s, entry in open_group.items():
                if ins[0][1] in entry[1]:
                    entry[0].append(node)
                    entry[2].add(nid)  # a sum is whole only after the kernel
                    joined = s
                    break
        elif op.kind in ("elementwise", "compare") and plan.dyn[nid] is None:
            shape = _big_shape(plan.traced[nid])
            if shape is not None:
                entry = open_group.get(shape) or ([], set(), set())
                ok = all(
                    (k == "e" and (v in entry[1] or (v not in entry[2] and _how(plan.traced[v], shape) is not None)))
                    or (k == "k" and _how(v, shape) is not None)
                    for k, v in ins
                )
                if ok:
                    open_group[shape] = entry
                    entry[0].append(node)
                    entry[1].add(nid)
                    joined = shape
        for s, (_, ids, tainted) in open_group.items():
            if s != joined and any(k == "e" and (v in ids or v in tainted) for k, v in ins):
                tainted.add(nid)
    for members, _, _ in open_group.values():
        if sum(1 for m in members if m.op != "sum") >= 2:
            found.append(members)
    return found


# ------------------------------------------------------------------------------------------------
# generating


def compile_forward(plan: Any, slow: Callable[..., Any]) -> Callable[..., Any] | None:
    """The plan's forward with its groups fused (``tracing._Plan._compile_forward``), or None: nothing to fuse."""
    if plan.guards:
        return None
    found = groups(plan)
    if not found:
        return None
    member_of = {m.id: k for k, g in enumerate(found) for m in g}
    last = {g[-1].id: k for k, g in enumerate(found)}
    users: dict[int, set[int]] = {}
    for node in plan.env_nodes:
        for kind, v in plan.ins[node.id]:
            if kind == "e":
                users.setdefault(v, set()).add(node.id)
    results = {v for kind, v in plan.outputs if kind == "e"}
    frees = plan.last_uses()
    gen = _t._Source(plan.n_args)
    made: set[int] = set()  # values the main code holds (the kernels' own stay inside them)
    for node in plan.env_nodes:
        nid = node.id
        if nid in member_of:
            if nid in last:
                group = found[last[nid]]
                made.update(_emit_group(plan, gen, group, users, results))
                done = [v for m in group for v in frees.get(m.id, ()) if v in made]
                if done:
                    gen.line(f"del {', '.join(f'v{v}' for v in done)}")
            continue
        gen.line(f"v{nid} = {gen.call(OPS[node.op], plan.ins[nid], node.params, plan.dyn[nid])}")
        made.add(nid)
        done = [v for v in frees.get(nid, ()) if v in made]
        if done:
            gen.line(f"del {', '.join(f'v{v}' for v in done)}")
    gen.line(f"return ({''.join(f'v{v}, ' for v in plan._out_ids())})")
    return gen.build([f"v{i}" for i in plan.arg_ids])


#: the ufunc each arithmetic operator is on arrays (the generated code writes ``a + b`` for them)
_OPERATOR_UFUNCS = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.true_divide}


def _ufunc_of(node: Any) -> Any:
    """The numpy ufunc that computes ``node`` (so it can write into ``out=``), or None."""
    if node.params:
        return None
    fn = _OPERATOR_UFUNCS.get(node.op, OPS[node.op].forward)
    return fn if isinstance(fn, np.ufunc) and fn.nout == 1 else None


def _emit_group(plan: Any, gen: Any, members: list[Any], users: dict[int, set[int]], results: set[int]) -> list[int]:
    """Write one group's kernel and its call into ``gen``; the ids of the values the main code now holds."""
    ids = {m.id for m in members}
    shape = next(plan.traced[m.id].shape for m in members if m.op != "sum")
    row = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    rows = max(1, BLOCK // max(row, 1))
    kgen = _t._Source(0)
    inputs: list[str] = []  # the kernel's input parameters, as the main code names them
    inside: dict[Any, str] = {}
    for m in members:
        for kind, v in plan.ins[m.id]:
            if kind == "e" and v not in ids and ("e", v) not in inside:
                how = _how(plan.traced[v], shape)
                name = f"i{len(inputs)}"
                inputs.append(f"v{v}")
                inside[("e", v)] = (name, how)
            elif kind == "k" and isinstance(v, np.ndarray) and _how(v, shape) == "slice" and ("k", id(v)) not in inside:
                name = f"i{len(inputs)}"
                inputs.append(gen.const(v))
                inside[("k", id(v))] = (name, "slice")
    kept = [m for m in members if m.op != "sum" and (m.id in results or users.get(m.id, set()) - ids)]
    kept_ids = {m.id for m in kept}
    totals = [m for m in members if m.op == "sum"]
    params = ["lo", "hi", *(name for name, _ in inside.values()), *(f"o{m.id}" for m in kept)]
    kgen.line("".join(f"p{m.id} = []; " for m in totals) + "pass")
    kgen.line(f"for a in range(lo, hi, {rows}):")
    kgen.line(f"    b = min(a + {rows}, hi)")
    for name, how in inside.values():
        kgen.line(f"    v_{name} = {name}[a:b]" if how == "slice" else f"    v_{name} = {name}")
    for m in members:
        refs = []
        for kind, v in plan.ins[m.id]:
            if kind == "e" and v in ids:
                refs.append(("e", v))
            elif kind == "e":
                refs.append(("e", "_" + inside[("e", v)][0]))
            elif ("k", id(v)) in inside:
                refs.append(("e", "_" + inside[("k", id(v))][0]))
            else:
                refs.append(("k", v))
        expr = kgen.call(OPS[m.op], refs, m.params, None)  # block inputs are v_i<k>
        ufunc = _ufunc_of(m) if m.id in kept_ids else None
        if m.op == "sum":
            kgen.line(f"    p{m.id}.append({expr})")
        elif ufunc is not None:  # straight into the output's rows: no block temporary, no copy
            args = "".join(kgen.ref(r) + ", " for r in refs)
            kgen.line(f"    v{m.id} = {kgen.const(ufunc)}({args}out=o{m.id}[a:b])")
        else:
            kgen.line(f"    v{m.id} = {expr}")
            if m.id in kept_ids:
                kgen.line(f"    o{m.id}[a:b] = v{m.id}")
    kgen.line(f"return ({''.join(f'p{m.id}, ' for m in totals)})")
    kernel = kgen.build(params)
    empty = gen.const(np.empty)
    for m in kept:
        v = plan.traced[m.id]  # in the layout numpy gave it (a tall product is Fortran-ordered): a
        order = "F" if v.flags.f_contiguous and not v.flags.c_contiguous else "C"  # later axis sum adds alike
        gen.line(f"v{m.id} = {empty}({gen.const(v.shape)}, {gen.const(v.dtype)}, {order!r})")
    args = "".join(a + ", " for a in inputs) + "".join(f"v{m.id}, " for m in kept)
    threaded = int(np.prod(shape, dtype=np.int64)) >= MIN_THREADED
    gen.line(f"parts = {gen.const(run_blocks)}({gen.const(kernel)}, {shape[0]}, {rows}, ({args}), {threaded})")
    for j, m in enumerate(totals):
        gen.line(f"v{m.id} = {gen.const(add_up)}(parts[{j}])")
    return [m.id for m in kept] + [m.id for m in totals]
