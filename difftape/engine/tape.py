"""The tape: records operations on watched tensors and plays them backwards.

``apply`` is the engine's single hot path (with ``unary(op)`` and ``binary(op)``, the same
specialised to one op of one or two inputs: ``difftape.sin``, ``Tensor.__mul__``): it runs an
op's numpy forward and offers the result to every active recorder (tapes, and the tracer of
``difftape.function`` (tracing.py)). A ``Tape`` keeps an entry only when an input is tracked,
so constants cost nothing.

Slots instead of dictionaries: every tensor a tape tracks has a slot, an integer. A recorded
output's slot is the index of its entry in ``_entries``; the k-th watched tensor's slot is -(k+1).
The backward pass keeps the gradients in one list indexed by slot and walks the entries from
last to first, so it needs no lookup by identity. A tensor carries its slot itself
(``Tensor._tok``, ``Tensor._idx``), stamped with the tape's current recording token, so that
the common case (one tape recording) finds an input's slot with one identity test. A tensor
that two tapes track (nested tapes) keeps its first stamp; the other tape keeps it in a
small dictionary (``_other``), which every lookup consults when the stamp is not its own.

``Tape.gradient`` applies each op's vector-Jacobian products from ``ops.py``:

- with plain numpy when no other recorder is active (first derivatives, fast);
- with difftape's own ops when an outer tape is recording, so that the backward pass
  is itself recorded and can be differentiated again (higher-order derivatives).

Recording is per thread: each thread has its own list of active recorders (``_STATE``, a
``threading.local``), so a tape, a ForwardAccumulator or a trace entered in one thread records
that thread's ops only, and a tensor a tape tracks in one thread is a plain value in another.
The hot path pays one test when nothing records anywhere (``_ACTIVE``, every thread's
recorders, is empty) and one thread-local read when something does (``_STATE.solo``: this
thread's one Tape, when that is all it records on; every other case goes through ``_record_all``).

The first-order backward loop is inlined, without masks or tensors (call the VJP, unbroadcast
where the shape differs, add), and falls to the general path only for an op that needs it
(``where``, a mask, a compiled function's entry). Every rule beyond that, the general path's
per-entry rule, the where-masks and how they combine, is ``transforms/reverse.py``'s: the
symbolic derivative and ``graph --grad`` follow the same code.
A non-persistent tape drops each entry, and the gradient of each output, as soon as the
backward pass is done with it, so intermediates die as it goes; a gradient buffer the pass
allocated itself is accumulated into in place.

Gradients that an elementwise ``where`` did not select are exactly zero, even when
the branch it did not select has a nan or infinite slope there: the positions are
tracked as a mask through elementwise ops and through the ops that only move values
about (reshape, indexing, sum, ...), and only once a ``where`` has made one, so the
common path pays nothing.
"""

from __future__ import annotations

import threading
from _thread import get_ident as _get_ident
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np

from difftape.engine import tensor as _tensor_module
from difftape.engine.tensor import Tensor, Variable, as_array, numpy_value
from difftape.errors import DifftapeError
from difftape.ops import OPS, Op
from difftape.transforms import reverse
from difftape.transforms.reverse import needs_output as _needs_output
from difftape.transforms.reverse import unbroadcast as _unbroadcast  # (difftape.function's backward uses it)
from difftape.transforms.reverse import vjp_reads as _vjp_reads

_ACTIVE: list[Any] = []  # every thread's active recorders: empty when nothing records anywhere (the hot path's test)
_EMPTY: dict[str, Any] = {}
NUMPY = SimpleNamespace(**{name: op.forward for name, op in OPS.items()})
_new = object.__new__
_INPLACE = 4096  # gradient buffers of at least this many elements are accumulated into in place
_ndarray = np.ndarray


class _Token:
    """One recording generation of a tape; tensors it tracks are stamped with it (``Tensor._tok``).

    ``live`` turns False when the tape forgets what it recorded (after a non-persistent
    gradient, or ``reset``): a stale stamp may then be replaced by another tape's.
    """

    __slots__ = ("live",)

    def __init__(self) -> None:
        self.live = True


# This thread's recording state (a plain ``threading.local``, whose attribute reads are the cheapest):
#   recorders  the recorders active in this thread, the innermost last
#   solo       this thread's one Tape when it is all the thread records on, else None (the hot path
#              records on it directly)
#   traces     the ``difftape.function`` traces running in this thread (the innermost is told of tensors
#              used as Python values)
# Only the thread itself changes them (``_enter``, ``_leave``); a thread that never recorded has none yet.
_STATE = threading.local()


def _recorders() -> list[Any]:
    """The recorders active in this thread, outermost first (the list itself: change it by ``_enter``/``_leave``)."""
    try:
        return _STATE.recorders
    except AttributeError:  # this thread's first use
        recs: list[Any] = []
        _STATE.recorders, _STATE.traces, _STATE.solo, _STATE.end = recs, [], None, _ThreadEnd(recs)
        return recs


class _ThreadEnd:
    """Dropped with its thread's state when the thread ends: what the thread left entered (a tape
    never exited) stops counting as active, so that no other thread's ops pay for it."""

    __slots__ = ("recorders",)

    def __init__(self, recorders: list[Any]) -> None:
        self.recorders = recorders

    def __del__(self) -> None:
        try:
            for rec in self.recorders:
                try:
                    _ACTIVE.remove(rec)
                except ValueError:  # (not there: nothing to undo)
                    pass
                if rec.__class__ is Tape:
                    rec._thread = None
        except (AttributeError, TypeError, NameError):
            # at interpreter shutdown (after Ctrl-C mid-run) the module's globals may be gone already:
            # nothing is left to undo, and a message on stderr would break the one-line interrupt
            pass


def _enter(rec: Any, index: int = -1) -> None:
    """Make ``rec`` record this thread's ops: the innermost recorder, or at ``index`` among them.

    ``_ACTIVE`` changes by ``append`` and ``remove`` alone, each one step for other threads
    (recorders compare by identity: no Python code runs inside them).
    """
    try:
        recs = _STATE.recorders
    except AttributeError:
        recs = _recorders()
    if index < 0:
        recs.append(rec)
    else:
        recs.insert(index, rec)
    _ACTIVE.append(rec)
    _STATE.solo = rec if len(recs) == 1 and rec.__class__ is Tape else None


def _leave(rec: Any) -> int:
    """Stop ``rec`` recording this thread's ops; where it was among them (-1: it was not recording here)."""
    try:
        recs = _STATE.recorders
    except AttributeError:
        return -1  # (this thread never recorded)
    if recs and recs[-1] is rec:  # (the innermost: the common case)
        i = len(recs) - 1
    else:
        for i, r in enumerate(recs):  # noqa: B007 - (i is the answer)
            if r is rec:
                break
        else:
            return -1
    del recs[i]
    _ACTIVE.remove(rec)
    _STATE.solo = recs[0] if len(recs) == 1 and recs[0].__class__ is Tape else None
    return i


def _begin_trace(trace: Any) -> tuple[list[Any], list[Any]]:
    """Run a ``difftape.function`` trace in this thread: it alone records here (tapes record the replay
    instead) and hears of tensors used as Python values. Answers what ``_end_trace`` restores."""
    recs = list(_recorders())
    for rec in recs:
        _leave(rec)
    _enter(trace)
    traces = _STATE.traces
    _STATE.traces = [trace]
    tracing = _tensor_module._TRACING
    if not tracing:  # (two threads may both add it: any entry is this one)
        tracing.append(_THREAD_TRACE)
    return recs, traces


def _end_trace(outer: tuple[list[Any], list[Any]]) -> None:
    """Undo ``_begin_trace`` (given what it answered)."""
    recs, traces = outer
    for rec in list(_recorders()):
        _leave(rec)
    for rec in recs:
        _enter(rec)
    _STATE.traces = traces
    # Tensor's conversions read _TRACING[-1] after testing _TRACING: emptying it is safe only while
    # no other thread may be between the two (once threads are about, it stays, and passes on nothing)
    if not traces and threading.active_count() == 1:
        _tensor_module._TRACING.clear()


class _ThisThreadsTrace:
    """What ``tensor._TRACING`` holds while any thread traces: tells this thread's innermost trace, if any."""

    __slots__ = ()

    def used(self, t: Tensor, kind: str) -> None:
        _recorders()  # (this thread's state, made if it has none yet)
        traces = _STATE.traces
        if traces:
            traces[-1].used(t, kind)


_THREAD_TRACE = _ThisThreadsTrace()


def apply(op: Op, args: tuple[Any, ...], params: dict[str, Any] = _EMPTY) -> Tensor:
    """Run ``op`` on tensors, arrays or numbers and record it on every active recorder."""
    vals = []
    for a in args:
        c = a.__class__
        if c is Tensor or c is Variable:
            vals.append(a._value)
        elif c is float or c is int:
            vals.append(a)
        elif isinstance(a, Tensor):
            vals.append(a._value)
        elif isinstance(a, (list, tuple)):
            return _apply_sequences(op, args, params)
        else:
            vals.append(a)
    out = _new(Tensor)
    try:
        out._value = numpy_value(op.forward(*vals, **params) if params else op.forward(*vals))
    except _FAILURES as exc:
        raise _eager_error(op, vals, params, exc) from None
    out._tok = None
    if _ACTIVE:
        _record_all(op, args, vals, out, params)
    return out


# numpy's refusals of an op's inputs (a try costs nothing); see api.eager_error
_FAILURES = (TypeError, ValueError, IndexError, OverflowError, AttributeError)


def _eager_error(op: Op, vals: Any, params: dict[str, Any], exc: Exception) -> DifftapeError:
    """numpy's exception as a DifftapeError worded by the op's shape rule (api.eager_error)."""
    from difftape.engine.api import eager_error

    return eager_error(op, vals, params, exc)


_MISSING: Any = object()  # no argument given


def _arity(op: Op, n: int, got: int) -> DifftapeError:
    return DifftapeError("arity", f"{op.name}() takes {n} argument{'s' * (n != 1)}, got {got}")


def unary(op: Op) -> Callable[..., Tensor]:
    """The function ``x -> apply(op, (x,))`` for an op of one input and no parameters, with the
    common case (a tensor, no recorder or one tape) inlined: ``difftape.sin`` and ``-t`` are these."""
    fast = op.fast
    recorded = op.vjps is not None

    def call(x: Any = _MISSING, /, *rest: Any) -> Tensor:
        if x.__class__ is not Tensor or rest:
            if x is _MISSING or rest:
                raise _arity(op, 1, len(rest) + (x is not _MISSING))
            return apply(op, (x,))
        v = x._value
        out = _new(Tensor)
        try:
            out._value = fast(v)  # a tensor's value is a numpy array or scalar: Python's operator is the ufunc
        except _FAILURES as exc:
            raise _eager_error(op, (v,), _EMPTY, exc) from None
        out._tok = None
        if _ACTIVE:
            try:
                tape = _STATE.solo  # this thread's one tape
            except AttributeError:  # (a thread that never recorded)
                tape = None
            if tape is None:
                _record_all(op, (x,), (v,), out, _EMPTY)
                return out
            tok = x._tok
            if tok is None or not recorded:
                return out
            if tok is tape._tok:
                s = x._idx
            else:
                s = tape._other.get(id(x))
                if s is None:
                    return out
            entries = tape._entries
            out._tok = tape._tok
            out._idx = len(entries)
            if v.__class__ is _ndarray and v.size >= _SLIM:
                entries.append(_slim(op, (op, x, v, out, s)))
            else:
                entries.append((op, x, v, out, s))  # a unary entry (see Tape._entries)
        return out

    return call


def binary(op: Op, swap: bool = False) -> Callable[..., Tensor]:
    """The function ``(a, b) -> apply(op, (a, b))`` for an op of two inputs and no parameters, with
    the common case inlined: ``difftape.multiply`` and ``t * u`` are these (``swap``: ``u.__rmul__(t)``)."""
    fast = op.fast
    recorded = op.vjps is not None

    def call(a: Any = _MISSING, b: Any = _MISSING, /, *rest: Any) -> Tensor:
        if swap:
            a, b = b, a
        ca = a.__class__
        cb = b.__class__
        if ca is Tensor and not rest:
            va = a._value
            if cb is Tensor:
                vb = b._value
            elif cb is float or cb is int:
                vb = b
            else:
                return _apply_two(op, a, b, rest)
        elif cb is Tensor and (ca is float or ca is int) and not rest:
            va = a
            vb = b._value
        else:  # two numbers (numpy's rules, not Python's), a Variable, an array, a list, ...
            return _apply_two(op, a, b, rest)
        out = _new(Tensor)
        try:
            out._value = fast(va, vb)
        except _FAILURES as exc:
            raise _eager_error(op, (va, vb), _EMPTY, exc) from None
        out._tok = None
        if _ACTIVE:
            try:
                tape = _STATE.solo  # this thread's one tape
            except AttributeError:  # (a thread that never recorded)
                tape = None
            if tape is None:
                _record_all(op, (a, b), (va, vb), out, _EMPTY)
                return out
            if not recorded:
                return out
            mine = tape._tok
            sa = sb = None
            if ca is Tensor:
                tok = a._tok
                if tok is mine:
                    sa = a._idx
                elif tok is not None:
                    sa = tape._other.get(id(a))
            if cb is Tensor:
                tok = b._tok
                if tok is mine:
                    sb = b._idx
                elif tok is not None:
                    sb = tape._other.get(id(b))
            if sa is None and sb is None:
                return out
            entries = tape._entries
            out._tok = mine
            out._idx = len(entries)
            if out._value.__class__ is _ndarray and out._value.size >= _SLIM:
                entries.append(_slim(op, (op, a, b, va, vb, out, sa, sb)))
            else:
                entries.append((op, a, b, va, vb, out, sa, sb))  # a binary entry (see Tape._entries)
        return out

    return call


def _apply_two(op: Op, a: Any, b: Any, rest: tuple[Any, ...]) -> Tensor:
    if rest or a is _MISSING or b is _MISSING:
        raise _arity(op, 2, len(rest) + (a is not _MISSING) + (b is not _MISSING))
    return apply(op, (a, b))


def _record_all(op: Op, args: tuple[Any, ...], vals: Any, out: Tensor, params: dict[str, Any]) -> None:
    """Offer ``out`` to every recorder active in this thread (tapes get the input values they were computed from)."""
    for rec in _recorders():
        if rec.__class__ is not Tape:
            rec._record(op, args, params, out)
        else:
            rec._push(op, args, vals, params, out)


_tensor_module._install_operators(unary, binary)


def _apply_sequences(op: Op, args: tuple[Any, ...], params: dict[str, Any]) -> Tensor:
    """``apply`` with (nested) lists among the arguments: recorders and VJPs see tensors or arrays only."""
    args = tuple(
        (_pack(a) if _holds_tensor(a) else as_array(a)) if isinstance(a, (list, tuple)) else a for a in args
    )
    return apply(op, args, params)


def _holds_tensor(seq: Any) -> bool:
    return any(isinstance(e, Tensor) or (isinstance(e, (list, tuple)) and _holds_tensor(e)) for e in seq)


def _pack(seq: Any) -> Tensor:
    """A (nested) list holding tensors as one tensor, by recorded ``stack`` ops (so it stays differentiable)."""
    parts = [_pack(e) if isinstance(e, (list, tuple)) and _holds_tensor(e) else e for e in seq]
    return apply(OPS["stack"], tuple(parts), {"axis": 0})


def _is_float(t: Tensor) -> bool:
    return t.dtype.kind in "fc"


#: entries of arrays of at least this many elements keep only the values their VJPs read (see _slim)
_SLIM = 1 << 16


def _slim(op: Op, entry: tuple[Any, ...]) -> tuple[Any, ...]:
    """A unary or binary entry with the large values no VJP of ``op`` reads (its output, an input)
    replaced by stand-ins.

    A tape keeps every value it recorded until the backward pass: ``exp(sin(x))`` kept ``sin(x)``,
    which neither VJP reads (exp's reads its output, sin's its input), a whole array for nothing, and
    each fresh array costs page faults (issue 6's elementwise case). The stand-in of a value (and of
    its tensor) is a zero-strided view of one zero with the value's shape and dtype: what the backward
    pass reads of a value no VJP reads (its shape, to sum a gradient down; its class). Which values a
    VJP reads is ``reverse.vjp_reads``'s answer (from the bytecode; True when unsure).
    """
    reads = _vjp_reads(op)
    n = len(reads)  # an entry is (op, the n input tensors, their n values, the output, the n slots)
    uses = [any(r is not None and r[j] for r in reads) for j in range(n + 1)]
    if all(uses):
        return entry
    e = list(entry)
    if not uses[0] and e[2 * n + 1]._value.__class__ is _ndarray:
        e[2 * n + 1] = _tensor_of(_zeros_like(e[2 * n + 1]._value))
    for i in range(n):
        v = e[1 + n + i]
        if not uses[1 + i] and v.__class__ is _ndarray and v.size >= _SLIM:
            e[1 + n + i] = stand = _zeros_like(v)
            if e[1 + i].__class__ is Tensor:
                e[1 + i] = _tensor_of(stand)
    return tuple(e)


def _zeros_like(v: np.ndarray) -> np.ndarray:
    """A read-only array of ``v``'s shape and dtype that takes no memory (one zero, zero strides)."""
    return np.broadcast_to(v.dtype.type(0), v.shape)


def _tensor_of(v: Any) -> Tensor:
    t = _new(Tensor)
    t._value = v
    t._tok = None
    return t


def _fresh(gi: Any, g: Any, y: Any, vals: Any) -> bool:
    """Whether ``gi`` is an array the backward pass just allocated (so it may be added into in place)."""
    if gi.__class__ is not _ndarray or gi.base is not None or gi is g or gi is y:
        return False
    return not any(gi is v for v in vals)


class Tape:
    """Records operations for reverse-mode differentiation (``tf.GradientTape``).

    Trainable Variables used inside the ``with`` block are watched automatically;
    ``watch`` adds any other tensor. A non-persistent tape answers one ``gradient``
    (or ``jacobian``) call and then frees its entries.
    """

    __slots__ = ("persistent", "watch_accessed_variables", "_entries", "_leaves", "_other", "_tok",
                 "_spent_variables", "_used", "_thread", "__weakref__")

    def __init__(self, persistent: bool = False, watch_accessed_variables: bool = True) -> None:
        self.persistent = persistent
        self.watch_accessed_variables = watch_accessed_variables
        # One entry per recorded op, in one of three flat layouts (fewer tuples to build on the hot path):
        #   (op, inputs, input values at record time, params, output, input slots)   any op (``_push``)
        #   (op, x, x's value, output, x's slot)                                      ``unary``
        #   (op, a, b, a's value, b's value, output, a's slot, b's slot)              ``binary``
        # A slot is None for an input not tracked. Values are kept as they were: a Variable assigned
        # later does not change the gradient of what was computed with its earlier value.
        self._entries: list[tuple[Any, ...]] = []
        self._leaves: list[Tensor] = []  # watched tensors, in order; the k-th has slot -(k+1)
        self._other: dict[int, int] = {}  # id -> slot, for tracked tensors stamped by another tape
        self._tok = _Token()
        self._spent_variables: list[Tensor] = []  # watched_variables() after a non-persistent gradient
        self._used = False
        self._thread: int | None = None  # the thread it records in, while entered (one thread's ops only)

    # -- recording -------------------------------------------------------------------------
    def __enter__(self) -> Tape:
        me = _get_ident()
        if self._thread is not None and self._thread != me:
            raise DifftapeError(
                "usage",
                "this Tape is recording in another thread: a tape records the operations of the thread "
                "that entered it; use one Tape per thread (each thread's tape sees only its own operations)",
            )
        self._thread = me
        _enter(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        if _leave(self) >= 0 and self not in _STATE.recorders:
            self._thread = None

    def watch(self, tensor: Any) -> None:
        """Watch a tensor (or a list/tuple/dict of them) so gradients can be taken w.r.t. it."""
        for t in _flatten(tensor):
            if not isinstance(t, Tensor):
                raise DifftapeError(
                    "type", f"Tape.watch takes tensors, got {type(t).__name__} (wrap it with constant())"
                )
            if self._slot(t) is None:
                self._watch_new(t)

    def _watch_new(self, t: Tensor) -> int:
        self._leaves.append(t)
        slot = -len(self._leaves)
        self._stamp(t, slot)
        return slot

    def _stamp(self, t: Tensor, slot: int) -> None:
        """Mark ``t`` as tracked here with ``slot``: on the tensor unless another live tape's stamp is there."""
        tok = t._tok
        if tok is None or not tok.live:
            t._tok = self._tok
            t._idx = slot
        else:
            self._other[id(t)] = slot

    def _slot(self, t: Any) -> int | None:
        """The slot of a tensor this tape tracks; None for anything else."""
        tok = getattr(t, "_tok", None)
        if tok is None:
            return None
        if tok is self._tok:
            return t._idx
        return self._other.get(id(t))

    def watched_variables(self) -> list[Tensor]:
        """The watched tensors that are Variables, in the order they were first watched."""
        if self._used and not self.persistent:
            return list(self._spent_variables)
        return [t for t in self._leaves if isinstance(t, Variable)]

    def _record(self, op: Op, args: tuple[Any, ...], params: dict[str, Any], out: Tensor) -> None:
        """The recorder protocol (``apply`` calls ``_push`` directly, with the values it has already)."""
        self._push(op, args, [a._value if isinstance(a, Tensor) else a for a in args], params, out)

    def _push(self, op: Any, args: tuple[Any, ...], vals: Any, params: Any, out: Tensor) -> None:
        """Keep an entry for ``out`` when a tracked tensor (or a trainable Variable) is among ``args``."""
        if op.vjps is None:
            return
        slots = []
        hit = False
        for a in args:
            s = self._slot(a)
            if s is None and isinstance(a, Variable) and a.trainable and self.watch_accessed_variables:
                s = self._watch_new(a)
            if s is not None:
                hit = True
            slots.append(s)
        if hit:
            entries = self._entries
            self._stamp(out, len(entries))
            entries.append((op, args, vals, params, out, tuple(slots)))

    class _Pause:
        def __init__(self, tape: Tape) -> None:
            self.tape, self.index = tape, -1

        def __enter__(self) -> None:
            self.index = _leave(self.tape)

        def __exit__(self, *exc: Any) -> None:
            if self.index >= 0:
                _enter(self.tape, self.index)

    def stop_recording(self) -> Tape._Pause:
        """Context manager: this thread's operations inside it are not recorded on this tape."""
        return Tape._Pause(self)

    def reset(self) -> None:
        """Forget everything recorded so far (watched tensors included)."""
        self._forget()
        self._spent_variables = []
        self._used = False

    def _forget(self) -> None:
        self._tok.live = False  # the stamps on tensors are stale now; a new generation starts
        self._tok = _Token()
        self._entries = []
        self._leaves = []
        self._other = {}

    # -- differentiation -------------------------------------------------------------------
    def gradient(
        self,
        target: Any,
        sources: Any,
        output_gradients: Any = None,
        unconnected: str = "none",
    ) -> Any:
        """d(sum of target)/d(source) for each source, answered in the structure of ``sources``.

        A source the target does not depend on, or that was never watched, gives None
        (``unconnected="zero"`` gives zeros). For a non-scalar target this is the gradient
        of its sum, or of ``sum(target * output_gradients)`` when those are given. A list
        or tuple of targets gives the gradient of their total (``output_gradients`` then
        being a list too, one per target, None for ones).
        """
        self._check_usable("gradient")
        if unconnected not in ("none", "zero"):
            raise DifftapeError("value", f"unconnected must be 'none' or 'zero', got {unconnected!r}")
        flat = _flatten(sources)
        if isinstance(target, (list, tuple)) and any(isinstance(t, Tensor) for t in target):
            targets = [self._as_target(t) for t in target]
            seeds = [None] * len(targets) if output_gradients is None else list(output_gradients)
            if len(seeds) != len(targets):
                raise DifftapeError(
                    "usage", f"output_gradients has {len(seeds)} entries for {len(targets)} targets"
                )
        else:
            targets, seeds = [self._as_target(target)], [output_gradients]
        for i, (t, g) in enumerate(zip(targets, seeds)):  # given weights: numeric, one per element of the target
            if g is not None and as_array(g).shape != t.shape:
                which = f" {i}" if len(targets) > 1 else ""
                raise DifftapeError("shape", f"output_gradients{which} has shape {as_array(g).shape}, but the target "
                                    f"has shape {t.shape}: it needs one weight per element of the target")
        seeds = [_ones(t._value) if g is None else g for t, g in zip(targets, seeds)]
        try:
            grads = self._backward(targets, flat, seeds, unconnected, free=not self.persistent)
        finally:
            self._consume()
        return _unflatten(sources, grads)

    def jacobian(
        self, target: Any, sources: Any, unconnected: str = "zero", *, on_step: Callable[[int, int], Any] | None = None
    ) -> Any:
        """Full Jacobian(s): for each source, an array of shape ``target.shape + source.shape``.

        One reverse pass per element of the target; ``on_step(done, total)``, if given, is called
        after each (the command line's progress bar)."""
        self._check_usable("jacobian")
        if unconnected not in ("none", "zero"):
            raise DifftapeError("value", f"unconnected must be 'none' or 'zero', got {unconnected!r}")
        flat = _flatten(sources)
        target_t = self._as_target(target)
        tshape = target_t.shape
        n = int(np.prod(tshape, dtype=np.int64))
        higher = any(r is not self for r in _recorders())
        rows: list[list[Any]] = [[] for _ in flat]
        connected = [False] * len(flat)
        tdtype = target_t.dtype
        basis = np.zeros(n, dtype=tdtype if tdtype.kind in "fc" else np.float64)
        for k in range(n):
            basis[k] = 1
            grads = self._backward([target_t], flat, [basis.reshape(tshape).copy()], "none", free=False)
            basis[k] = 0
            if on_step is not None:
                on_step(k + 1, n)
            for i, g in enumerate(grads):
                if g is None:
                    g = Tensor(np.zeros(flat[i].shape, dtype=_grad_dtype(flat[i])))
                else:
                    connected[i] = True
                rows[i].append(g)
        out = []
        for i, src in enumerate(flat):
            sshape = src.shape
            if higher:
                from difftape.engine import api

                full = api.reshape(api.stack(rows[i]), tshape + sshape) if n else api.zeros(tshape + sshape)
            else:
                stacked = np.stack([np.asarray(r._value) for r in rows[i]]) if n else np.zeros((0,) + sshape)
                full = Tensor(stacked.reshape(tshape + sshape))
            out.append(full if connected[i] or unconnected == "zero" else None)
        self._consume()
        return _unflatten(sources, out)

    # -- internals -------------------------------------------------------------------------
    def _check_usable(self, what: str) -> None:
        if self._used and not self.persistent:
            raise DifftapeError(
                "usage",
                f"this Tape is not persistent: {what}() can be called only once; use Tape(persistent=True)",
            )

    def _consume(self) -> None:
        if not self.persistent:
            self._spent_variables = self.watched_variables()
            self._used = True
            self._forget()

    @staticmethod
    def _as_target(target: Any) -> Tensor:
        if isinstance(target, Tensor):
            return target
        if isinstance(target, (list, tuple)) and any(isinstance(t, Tensor) for t in target):
            raise DifftapeError("usage", "a target must be one tensor, not a list of them (stack them first)")
        return Tensor(as_array(target))

    def _check_sources(self, sources: list[Any]) -> list[int | None]:
        """The sources' slots (None: not tracked), after checking they are tensors that can have gradients."""
        slots = []
        for i, s in enumerate(sources):
            if not isinstance(s, Tensor):
                raise DifftapeError("type", f"gradient sources must be tensors, got {type(s).__name__} at position {i}")
            slot = self._slot(s)
            if slot is not None and s._value.__class__ is not np.float64 and not _is_float(s):
                label = repr(s.name) if isinstance(s, Variable) and s.name else f"at position {i}"
                raise DifftapeError(
                    "type",
                    f"cannot differentiate with respect to the {s.dtype} tensor {label}: "
                    "make it a float (for example constant(2.0) or Variable(2.0))",
                )
            slots.append(slot)
        return slots

    def _backward(
        self,
        targets: list[Tensor],
        sources: list[Any],
        seeds: list[Any],
        unconnected: str,
        free: bool = False,
        masks: dict[int, np.ndarray] | None = None,
        raw: bool = False,
    ) -> list[Any]:
        """Gradients of the targets (weighted by ``seeds``) for each source; ``free`` empties the tape as it goes.

        ``masks`` (by id of a target) are where-masks the gradient of a target arrives with. ``raw``
        answers the accumulated gradients as they are (None where there is none): what a compiled
        function's tape entry hands on to the tape that recorded it.
        """
        source_slots = self._check_sources(sources)
        recs = _recorders()
        higher = len(recs) > 1 or (len(recs) == 1 and recs[0] is not self)
        if higher:
            from difftape.engine import api

            F: Any = api.NAMESPACE
        else:
            F = NUMPY
        entries = self._entries
        n = len(entries)
        # one gradient per slot: entries' outputs at 0..n-1, the watched tensors at -1, -2, ... (from the end)
        grads: list[Any] = [None] * (n + len(self._leaves))
        slot_masks: dict[int, np.ndarray] = {}
        for target, seed in zip(targets, seeds):
            k = self._slot(target)
            if k is None:
                continue
            if higher:
                seed = seed if isinstance(seed, Tensor) else Tensor(as_array(seed))
            else:
                seed = seed._value if isinstance(seed, Tensor) else seed
                if not isinstance(seed, (_ndarray, np.generic)):
                    seed = np.asarray(seed)
            grads[k] = seed if grads[k] is None else grads[k] + seed
            if masks and masks.get(id(target)) is not None:
                slot_masks[k] = masks[id(target)]
        keep = [k for k in source_slots if k is not None and k >= 0]  # sources that are recorded outputs
        kept: dict[int, Any] = {}
        mine: set[int] = set()  # slots whose gradient buffer this pass allocated (may be added into in place)
        # Walk the entries last to first: a non-persistent tape drops each as it goes (so what only
        # it kept alive dies), a persistent one leaves them for the next call.
        if free:
            self._entries = []
        slow = higher or bool(slot_masks)
        with self.stop_recording():
            for k in range(n - 1, -1, -1):
                g = grads[k]
                if g is None:
                    if free:
                        entries[k] = None
                    continue
                grads[k] = None
                e = entries[k]
                if free:
                    entries[k] = None
                if mine:
                    mine.discard(k)
                if keep and k in keep:
                    kept[k] = g
                n_e = len(e)
                if n_e == 5 and not slow:  # one input (unary), first derivatives
                    op, _, va, out, s = e
                    e = _ = None
                    y = out._value
                    if y.__class__ is _ndarray and free and y.size >= _INPLACE and not _needs_output(op, (s,)):
                        y = out = None  # the output's value may die before its input gradient is allocated
                    vjp = op.vjps[0]
                    if vjp is None:
                        continue
                    gi = vjp(F, g, y, va)
                    c = gi.__class__
                    if c is _ndarray:
                        if gi.shape != va.shape:
                            gi = _fit(F, gi, va)
                    elif c is not va.__class__:
                        gi = _fit(F, gi, va)
                    if gi.__class__ is not _ndarray or gi.size < _INPLACE:
                        prev = grads[s]
                        grads[s] = gi if prev is None else prev + gi
                    else:
                        _accumulate(grads, mine, s, gi, g, y, (va,))
                    va = y = out = gi = prev = None  # (no stale reference may keep a value alive)
                    continue
                if n_e == 8 and not slow:  # two inputs (binary), first derivatives; a and b unrolled (hot path)
                    op, _, _, va, vb, out, sa, sb = e
                    e = _ = None  # (the inputs themselves are not needed here)
                    y = out._value
                    if y.__class__ is _ndarray and free and y.size >= _INPLACE and not _needs_output(op, (sa, sb)):
                        y = out = None
                    vjps = op.vjps
                    if sa is not None and vjps[0] is not None:
                        gi = vjps[0](F, g, y, va, vb)
                        c = gi.__class__
                        if c is _ndarray:
                            if gi.shape != va.shape:
                                gi = _fit(F, gi, va)
                        elif c is not va.__class__:
                            gi = _fit(F, gi, va)
                        if gi.__class__ is not _ndarray or gi.size < _INPLACE:
                            prev = grads[sa]
                            grads[sa] = gi if prev is None else prev + gi
                        else:
                            _accumulate(grads, mine, sa, gi, g, y, (va, vb))
                    if sb is not None and vjps[1] is not None:
                        gi = vjps[1](F, g, y, va, vb)
                        c = gi.__class__
                        if c is _ndarray:
                            if gi.shape != vb.shape:
                                gi = _fit(F, gi, vb)
                        elif c is not vb.__class__:
                            gi = _fit(F, gi, vb)
                        if gi.__class__ is not _ndarray or gi.size < _INPLACE:
                            prev = grads[sb]
                            grads[sb] = gi if prev is None else prev + gi
                        else:
                            _accumulate(grads, mine, sb, gi, g, y, (va, vb))
                    va = vb = y = out = gi = prev = None
                    continue
                op, args, vals, params, out, slots = e if n_e == 6 else _general(e)
                e = None
                if slow or op.special or op.variadic:
                    # higher derivatives, a mask about, where, a compiled function's entry, a sequence of inputs
                    hits = tuple(i for i, s in enumerate(slots) if s is not None)
                    parts = _entry_gradients(F, higher, op, args, vals, params, out, hits, g,
                                             slot_masks.pop(k, None))
                    for i, gi, new_mask in parts:
                        s = slots[i]
                        prev = grads[s]
                        if prev is None:
                            grads[s] = gi
                        else:
                            grads[s] = prev + gi
                            mine.discard(s)
                        m = reverse.combine_masks(NUMPY, prev is None, slot_masks.get(s), new_mask)
                        if m is None:
                            slot_masks.pop(s, None)
                        else:
                            slot_masks[s] = m
                    slow = higher or bool(slot_masks)
                    continue
                # first derivatives with numpy, no masks: any other op
                y = out._value
                if y.__class__ is _ndarray and free and y.size >= _INPLACE and not _needs_output(op, slots):
                    y = out = None
                vjps = op.vjps
                i = -1
                for s in slots:
                    i += 1
                    if s is None or vjps[i] is None:
                        continue
                    gi = vjps[i](F, g, y, *vals, **params) if params else vjps[i](F, g, y, *vals)
                    x = vals[i]
                    if gi.__class__ is not x.__class__ or gi.__class__ is _ndarray:
                        gi = _fit(F, gi, x)
                    x = None  # (no stale reference from this loop may keep an input alive)
                    if gi.__class__ is not _ndarray or gi.size < _INPLACE:
                        prev = grads[s]
                        grads[s] = gi if prev is None else prev + gi
                    else:
                        _accumulate(grads, mine, s, gi, g, y, vals)
                args = vals = y = out = gi = prev = None
        found = [None if k is None else kept.get(k) if k >= 0 else grads[k] for k in source_slots]
        if raw:
            return found
        out_list: list[Any] = []
        for s, g in zip(sources, found):
            if g is None:
                out_list.append(Tensor(np.zeros(s.shape, dtype=_grad_dtype(s))) if unconnected == "zero" else None)
            elif isinstance(g, Tensor):
                out_list.append(g)
            else:
                if g.__class__ is not s._value.__class__ or g.__class__ is _ndarray:  # (else: one scalar type)
                    if not isinstance(g, (_ndarray, np.generic)):
                        g = np.asarray(g)
                    if g.dtype != s.dtype and _is_float(s):
                        g = g.astype(s.dtype)
                t = _new(Tensor)
                t._value = g[()] if g.__class__ is _ndarray and not g.shape else g  # (0-d: a numpy scalar)
                t._tok = None
                out_list.append(t)
        return out_list


def _entry_gradients(
    F: Any, higher: bool, op: Any, args: tuple[Any, ...], vals: list[Any], params: Any, out: Tensor,
    hits: tuple[int, ...], g: Any, mask: np.ndarray | None,
) -> list[tuple[int, Any, np.ndarray | None]]:
    """The general path for one entry: ``(input position, gradient, where-mask)`` for each watched input.

    Used for higher derivatives (F = recorded tensor ops), when a where-mask is about, and for
    entries that are not table ops (a compiled function: ``op.gradients`` answers for it). The
    rule is reverse.py's; masks are numpy arrays computed on the recorded values.
    """
    if op.__class__ is not Op:
        return op.gradients(F, higher, args, vals, params, out, hits, g, mask)
    if higher:
        return reverse.entry_gradients(F, op, hits, g, out, args, params, mask, M=NUMPY, my=out._value, mins=vals)
    return reverse.entry_gradients(F, op, hits, g, out._value, vals, params, mask)


def _general(e: tuple[Any, ...]) -> tuple[Any, ...]:
    """A unary or binary entry in the general layout ``(op, inputs, values, params, output, slots)``."""
    if len(e) == 5:
        op, x, v, out, s = e
        return op, (x,), (v,), _EMPTY, out, (s,)
    op, a, b, va, vb, out, sa, sb = e
    return op, (a, b), (va, vb), _EMPTY, out, (sa, sb)


def _fit(F: Any, gi: Any, x: Any) -> Any:
    """An input's gradient summed down to the input's shape (when the op broadcast it)."""
    try:
        return gi if gi.shape == x.shape else _unbroadcast(F, gi, x.shape)
    except AttributeError:  # a Python number
        return _unbroadcast(F, np.asarray(gi), np.shape(x))


def _accumulate(grads: list[Any], mine: set[int], s: int, gi: np.ndarray, g: Any, y: Any, vals: Any) -> None:
    """``grads[s] += gi`` for a large array ``gi``, in place into a buffer this backward pass allocated itself."""
    prev = grads[s]
    if prev is None:
        grads[s] = gi
        if gi.size >= _INPLACE and _fresh(gi, g, y, vals):
            mine.add(s)
    elif s in mine and prev.dtype == gi.dtype:
        prev += gi
    elif prev.__class__ is _ndarray and gi.size >= _INPLACE and prev.dtype == gi.dtype \
            and prev.shape == gi.shape and _fresh(gi, g, y, vals):
        gi += prev  # addition commutes exactly: the same values as prev + gi
        grads[s] = gi
        mine.add(s)
    else:
        grads[s] = gi = prev + gi
        if gi.__class__ is _ndarray and gi.size >= _INPLACE:
            mine.add(s)


def _ones(value: Any) -> Any:
    """The default seed: ones like the target (a numpy scalar for a 0-d target, which keeps scalar math fast)."""
    if isinstance(value, np.generic):
        return value.dtype.type(1)
    return np.ones_like(np.asarray(value))


def _grad_dtype(s: Tensor) -> np.dtype:
    dt = s.dtype
    return dt if dt.kind in "fc" else np.dtype(np.float64)


def _flatten(structure: Any) -> list[Any]:
    if isinstance(structure, dict):
        return list(structure.values())
    if isinstance(structure, (list, tuple)):
        return list(structure)
    return [structure]


def _unflatten(structure: Any, flat: list[Any]) -> Any:
    if isinstance(structure, dict):
        return dict(zip(structure.keys(), flat))
    if isinstance(structure, tuple):
        return tuple(flat)
    if isinstance(structure, list):
        return list(flat)
    return flat[0]


def active_recorders() -> Iterator[Any]:
    """The recorders active in this thread, outermost first (for tests and tracing)."""
    return iter(list(_recorders()))
