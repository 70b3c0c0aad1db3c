"""The tape: records operations on watched tensors and plays them backwards.

``apply`` is the engine's single hot path: it runs an op's numpy forward and offers
the result to every active recorder (tapes, and the tracer of ``difftape.function``).
A ``Tape`` keeps an entry ``(op, inputs, params, output)`` only when an input is
watched, so constants cost nothing. ``Tape.gradient`` walks the entries in reverse
and applies each op's vector-Jacobian products from the table in ``ops.py``:

- with plain numpy when no other recorder is active (first derivatives, fast);
- with difftape's own ops when an outer tape is recording, so that the backward pass
  is itself recorded and can be differentiated again (higher-order derivatives).

Gradients that an elementwise ``where`` did not select are exactly zero, even when
the branch it did not select has a nan or infinite slope there: the positions are
tracked as a mask through elementwise ops and through the ops that only move values
about (reshape, indexing, sum, ...), and only once a ``where`` has made one, so the
common path pays nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np

from .errors import DifftapeError
from .ops import OPS, Op, shape_of, vjp_for
from .tensor import Tensor, Variable, as_array

_ACTIVE: list[Any] = []  # recorders (tapes, tracers); the innermost is last
_EMPTY: dict[str, Any] = {}
NUMPY = SimpleNamespace(**{name: op.forward for name, op in OPS.items()})


def apply(op: Op, args: tuple[Any, ...], params: dict[str, Any] = _EMPTY) -> Tensor:
    """Run ``op`` on tensors, arrays or numbers and record it on every active recorder."""
    vals = []
    converted = False
    for a in args:
        if isinstance(a, Tensor):
            vals.append(a._value)
        elif isinstance(a, (list, tuple)):
            vals.append(_pack(a) if _holds_tensor(a) else as_array(a))
            converted = True
        else:
            vals.append(a)
    if converted:  # recorders (and the VJPs, which read shapes) see tensors or arrays, never lists
        args = tuple(v if isinstance(a, (list, tuple)) else a for a, v in zip(args, vals))
        vals = [v._value if isinstance(v, Tensor) else v for v in vals]
    out = Tensor.__new__(Tensor)
    out._value = op.forward(*vals, **params)
    if _ACTIVE:
        for recorder in _ACTIVE:
            recorder._record(op, args, params, out)
    return out


def _holds_tensor(seq: Any) -> bool:
    return any(isinstance(e, Tensor) or (isinstance(e, (list, tuple)) and _holds_tensor(e)) for e in seq)


def _pack(seq: Any) -> Tensor:
    """A (nested) list holding tensors as one tensor, by recorded ``stack`` ops (so it stays differentiable)."""
    parts = [_pack(e) if isinstance(e, (list, tuple)) and _holds_tensor(e) else e for e in seq]
    return apply(OPS["stack"], tuple(parts), {"axis": 0})


# Ops whose VJP only moves, copies or sums the output gradient (no other values): a where-mask
# passes through them to the next elementwise op, where it zeroes the unselected branch's slope.
_STRUCTURAL = frozenset(
    name for name, op in OPS.items() if op.kind in ("shape", "index") or name in ("sum", "mean", "diag", "full")
)


def _is_float(t: Tensor) -> bool:
    return np.asarray(t._value).dtype.kind in "fc"


def _unbroadcast(F: Any, g: Any, shape: tuple[int, ...]) -> Any:
    """Sum a broadcast gradient down to ``shape``."""
    gshape = shape_of(g)
    if gshape == shape:
        return g
    lead = len(gshape) - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and gshape[lead + i] != 1)
    if axes:
        g = F.sum(g, axis=axes)
    return F.reshape(g, shape) if shape_of(g) != shape else g


def _unbroadcast_mask(m: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A position of the input is masked only when all positions it broadcast to are."""
    if m.shape == shape:
        return m
    m = np.broadcast_to(m, np.broadcast_shapes(m.shape, shape)) if m.ndim < len(shape) else m
    lead = m.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and m.shape[lead + i] != 1)
    return np.all(m, axis=axes).reshape(shape) if axes else m.reshape(shape)


class Tape:
    """Records operations for reverse-mode differentiation (``tf.GradientTape``).

    Trainable Variables used inside the ``with`` block are watched automatically;
    ``watch`` adds any other tensor. A non-persistent tape answers one ``gradient``
    (or ``jacobian``) call and then frees its entries.
    """

    def __init__(self, persistent: bool = False, watch_accessed_variables: bool = True) -> None:
        self.persistent = persistent
        self.watch_accessed_variables = watch_accessed_variables
        # (op, inputs, input values at record time, params, output): a Variable assigned later
        # does not change the gradient of what was computed with its earlier value.
        self._entries: list[tuple[Op, tuple[Any, ...], tuple[Any, ...], dict[str, Any], Tensor]] = []
        self._tracked: dict[int, Tensor] = {}
        self._spent_variables: list[Tensor] = []  # watched_variables() after a non-persistent gradient
        self._used = False

    # -- recording -------------------------------------------------------------------------
    def __enter__(self) -> Tape:
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    def watch(self, tensor: Any) -> None:
        """Watch a tensor (or a list/tuple/dict of them) so gradients can be taken w.r.t. it."""
        for t in _flatten(tensor):
            if not isinstance(t, Tensor):
                raise DifftapeError(
                    "type", f"Tape.watch takes tensors, got {type(t).__name__} (wrap it with constant())"
                )
            self._tracked[id(t)] = t

    def watched_variables(self) -> list[Tensor]:
        """The watched tensors that are Variables, in the order they were first watched."""
        if self._used and not self.persistent:
            return list(self._spent_variables)
        return [t for t in self._tracked.values() if isinstance(t, Variable)]

    def _record(self, op: Op, args: tuple[Any, ...], params: dict[str, Any], out: Tensor) -> None:
        if op.vjps is None:
            return
        tracked = self._tracked
        hit = False
        for a in args:
            if isinstance(a, Tensor):
                if id(a) in tracked:
                    hit = True
                elif a._trainable and self.watch_accessed_variables:
                    tracked[id(a)] = a
                    hit = True
        if hit:
            vals = tuple(a._value if isinstance(a, Tensor) else a for a in args)
            self._entries.append((op, args, vals, params, out))
            tracked[id(out)] = out

    class _Pause:
        def __init__(self, tape: Tape) -> None:
            self.tape, self.index = tape, -1

        def __enter__(self) -> None:
            if self.tape in _ACTIVE:
                self.index = _ACTIVE.index(self.tape)
                _ACTIVE.pop(self.index)

        def __exit__(self, *exc: Any) -> None:
            if self.index >= 0:
                _ACTIVE.insert(self.index, self.tape)

    def stop_recording(self) -> Tape._Pause:
        """Context manager: operations inside it are not recorded on this tape."""
        return Tape._Pause(self)

    def reset(self) -> None:
        """Forget everything recorded so far (watched tensors included)."""
        self._entries.clear()
        self._tracked.clear()
        self._spent_variables = []
        self._used = False

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
        seeds = [np.ones_like(np.asarray(t._value)) if g is None else g for t, g in zip(targets, seeds)]
        grads = self._backward(targets, flat, seeds, unconnected)
        self._consume()
        return _unflatten(sources, grads)

    def jacobian(self, target: Any, sources: Any, unconnected: str = "zero") -> Any:
        """Full Jacobian(s): for each source, an array of shape ``target.shape + source.shape``."""
        self._check_usable("jacobian")
        flat = _flatten(sources)
        target_t = self._as_target(target)
        tshape = target_t.shape
        n = int(np.prod(tshape, dtype=np.int64))
        higher = len([r for r in _ACTIVE if r is not self]) > 0
        rows: list[list[Any]] = [[] for _ in flat]
        connected = [False] * len(flat)
        tdtype = np.asarray(target_t._value).dtype
        basis = np.zeros(n, dtype=tdtype if tdtype.kind in "fc" else np.float64)
        for k in range(n):
            basis[k] = 1
            grads = self._backward([target_t], flat, [basis.reshape(tshape).copy()], "none")
            basis[k] = 0
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
                from . import api

                full = api.reshape(api.stack(rows[i]), tshape + sshape) if n else api.zeros(tshape + sshape)
            else:
                stacked = np.stack([r._value for r in rows[i]]) if n else np.zeros((0,) + sshape)
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
            self._entries = []
            self._tracked = {}

    @staticmethod
    def _as_target(target: Any) -> Tensor:
        if isinstance(target, Tensor):
            return target
        if isinstance(target, (list, tuple)) and any(isinstance(t, Tensor) for t in target):
            raise DifftapeError("usage", "a target must be one tensor, not a list of them (stack them first)")
        return Tensor(as_array(target))

    def _backward(self, targets: list[Tensor], sources: list[Any], seeds: list[Any], unconnected: str) -> list[Any]:
        for i, s in enumerate(sources):
            if not isinstance(s, Tensor):
                raise DifftapeError("type", f"gradient sources must be tensors, got {type(s).__name__} at position {i}")
            if not _is_float(s) and id(s) in self._tracked:
                label = repr(s.name) if isinstance(s, Variable) and s.name else f"at position {i}"
                raise DifftapeError(
                    "type",
                    f"cannot differentiate with respect to the {s.dtype} tensor {label}: "
                    "make it a float (for example constant(2.0) or Variable(2.0))",
                )
        from . import api

        tracked = self._tracked
        higher = any(r is not self for r in _ACTIVE)
        F = api.NAMESPACE if higher else NUMPY
        grads: dict[int, Any] = {}
        masks: dict[int, np.ndarray] = {}
        for target, seed in zip(targets, seeds):
            if id(target) not in tracked:
                continue
            if higher:
                seed = seed if isinstance(seed, Tensor) else Tensor(as_array(seed))
            else:
                seed = np.asarray(seed._value if isinstance(seed, Tensor) else seed)
            tid = id(target)
            grads[tid] = grads[tid] + seed if tid in grads else seed
        keep = {id(s) for s in sources}
        with self.stop_recording():
            for op, args, vals, params, out in reversed(self._entries):
                oid = id(out)
                g = grads.get(oid)
                if g is None:
                    continue
                if oid not in keep:
                    del grads[oid]
                mask = masks.pop(oid, None)
                if higher:
                    ins, y = args, out
                else:
                    ins, y = vals, out._value
                for i, a in enumerate(args):
                    if not isinstance(a, Tensor) or id(a) not in tracked:
                        continue
                    vjp = vjp_for(op, i)
                    if vjp is None:
                        continue
                    gi = vjp(F, g, y, *ins, **params)
                    new_mask = None
                    if op.elementwise:
                        if op.name == "where":
                            c = np.asarray(vals[0], dtype=bool)
                            new_mask = ~c if i == 1 else c
                            if mask is not None:
                                new_mask = new_mask | mask
                        else:
                            new_mask = mask
                        if new_mask is not None:
                            gi = F.where(new_mask, 0.0, gi)
                            new_mask = _unbroadcast_mask(np.broadcast_to(new_mask, shape_of(gi)), a.shape)
                    elif mask is not None and op.name in _STRUCTURAL:
                        # gi is g moved about, so its masked positions are 0 already; carry the mask
                        # on: an input position is masked when every position it feeds is masked.
                        live = vjp(NUMPY, np.where(mask, 0.0, 1.0), out._value, *vals, **params)
                        new_mask = np.asarray(_unbroadcast(NUMPY, live, a.shape)) == 0
                    gi = _unbroadcast(F, gi, a.shape)
                    aid = id(a)
                    if aid in grads:
                        grads[aid] = grads[aid] + gi
                        if aid in masks and new_mask is not None:
                            masks[aid] = masks[aid] & new_mask
                        else:
                            masks.pop(aid, None)
                    else:
                        grads[aid] = gi
                        if new_mask is not None:
                            masks[aid] = new_mask
        out_list: list[Any] = []
        for s in sources:
            g = grads.get(id(s))
            if g is None:
                out_list.append(Tensor(np.zeros(s.shape, dtype=_grad_dtype(s))) if unconnected == "zero" else None)
            elif isinstance(g, Tensor):
                out_list.append(g)
            else:
                g = np.asarray(g)
                if g.dtype != s.dtype and _is_float(s):
                    g = g.astype(s.dtype)
                out_list.append(Tensor(g))
        return out_list


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
    """The recorders currently active, outermost first (for tests and tracing)."""
    return iter(list(_ACTIVE))
