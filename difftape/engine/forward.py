"""Forward-mode differentiation on the engine: ``ForwardAccumulator`` and the functional forms.

``ForwardAccumulator(primals, tangents)`` (TensorFlow's name) is a recorder, like a tape: while
it is active, every op that reads a tensor with a tangent computes its output's tangent at
once, with the op's JVP (``transforms/forward.py``). ``acc.jvp(y)`` is then the directional
derivative of ``y`` along the tangents, J v, for the cost of about one more forward pass
whatever the number of outputs.

Tangents are computed with numpy when nothing else records, and with difftape's own recorded
ops when another recorder is active, so they can be differentiated: a tape inside an
accumulator gives forward-over-reverse Hessian-vector products (``hvp``), an accumulator
inside a tape reverse-over-forward.

The functional forms follow JAX's names: ``jvp(f, primals, tangents)``, ``vjp(f, *primals)``,
``grad(f, argnums)``, ``value_and_grad(f, argnums)`` and ``hvp(f, x, v)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from difftape.engine import tape as _tape
from difftape.engine.tape import NUMPY, Tape
from difftape.engine.tensor import Tensor, Variable, as_array, constant
from difftape.errors import DifftapeError
from difftape.ops import Op
from difftape.transforms import forward as rules


def _flat(x: Any) -> tuple[list[Any], bool]:
    if isinstance(x, (list, tuple)):
        return list(x), True
    return [x], False


def _is_float(v: Any) -> bool:
    return np.asarray(v).dtype.kind in "fc"


class ForwardAccumulator:
    """Computes Jacobian-vector products alongside the forward computation (``tf.autodiff.ForwardAccumulator``).

    ``primals`` are tensors (one, or a list/tuple); ``tangents`` the direction for each, of the
    same shape. Use it as a context manager; inside, ``jvp(target)`` answers the tangent of any
    tensor computed from the primals (None for one that does not depend on them, or zeros with
    ``unconnected="zero"``).
    """

    def __init__(self, primals: Any, tangents: Any) -> None:
        ps, many = _flat(primals)
        ts = list(tangents) if many and isinstance(tangents, (list, tuple)) else [tangents]
        if len(ps) != len(ts):
            raise DifftapeError("usage", f"ForwardAccumulator: {len(ps)} primals but {len(ts)} tangents")
        self._tangents: dict[int, Any] = {}
        self._keep: list[Any] = []  # keeps ids valid while the accumulator lives
        for i, (p, t) in enumerate(zip(ps, ts)):
            if not isinstance(p, Tensor):
                raise DifftapeError("type", f"ForwardAccumulator: primal {i} must be a tensor, got {type(p).__name__}")
            if not _is_float(p._value):
                raise DifftapeError("type", f"ForwardAccumulator: primal {i} is {p.dtype}: tangents need floats")
            tv = t if isinstance(t, Tensor) else Tensor(as_array(t, p.dtype))
            if tuple(tv.shape) != tuple(p.shape):
                raise DifftapeError(
                    "shape", f"ForwardAccumulator: tangent {i} has shape {tuple(tv.shape)}, its primal {tuple(p.shape)}"
                )
            self._set(p, tv if isinstance(t, Tensor) else tv._value)

    def _set(self, x: Any, t: Any) -> None:
        self._tangents[id(x)] = t
        self._keep.append(x)

    # -- recorder protocol ------------------------------------------------------------------
    def __enter__(self) -> ForwardAccumulator:
        _tape._enter(self)  # (this thread's ops only: recording is per thread)
        return self

    def __exit__(self, *exc: Any) -> None:
        _tape._leave(self)

    def _record(self, op: Op, args: tuple[Any, ...], params: dict[str, Any], out: Tensor) -> None:
        """Called by the engine for every op applied while active: give ``out`` its tangent."""
        flat, seq = _inputs(op, args)
        tangents = [self._tangents.get(id(a)) if isinstance(a, Tensor) else None for a in flat]
        if all(t is None for t in tangents) or op.vjps is None:
            return
        index = _tape._leave(self)  # the tangent's own ops are not this accumulator's to record
        try:
            higher = bool(_tape._recorders())
            F = _namespace(higher)
            xs = list(flat) if higher else [a._value if isinstance(a, Tensor) else np.asarray(a) for a in flat]
            y = out if higher else out._value
            ts = [_as(t, higher) if t is not None else None for t in tangents]
            with np.errstate(all="ignore"):
                t_out = rules.jvp(F, op, xs, params, y, ts, _apply if higher else _forward, _transposer(higher))
        finally:
            _tape._enter(self, index)
        if t_out is None:
            return
        if not higher:
            t_out = np.asarray(t_out, dtype=_float_dtype(out._value))
        self._set(out, t_out)

    # -- answers -----------------------------------------------------------------------------
    def jvp(self, target: Any, unconnected: str = "none") -> Any:
        """The tangent of ``target`` (a tensor or a list/tuple of them)."""
        if unconnected not in ("none", "zero"):
            raise DifftapeError("usage", f"unconnected must be 'none' or 'zero', got {unconnected!r}")
        targets, many = _flat(target)
        out = []
        for t in targets:
            tan = self._tangents.get(id(t)) if isinstance(t, Tensor) else None
            if tan is None:
                out.append(Tensor(rules.zero_tangent(t._value if isinstance(t, Tensor) else t))
                           if unconnected == "zero" else None)
            else:
                out.append(tan if isinstance(tan, Tensor) else Tensor(tan))
        return (type(target)(out) if isinstance(target, tuple) else out) if many else out[0]


def _inputs(op: Op, args: tuple[Any, ...]) -> tuple[list[Any], bool]:
    if op.variadic and len(args) == 1 and isinstance(args[0], (list, tuple)):
        return list(args[0]), True
    return list(args), False


def _float_dtype(v: Any) -> np.dtype:
    dt = np.asarray(v).dtype
    return dt if dt.kind in "fc" else np.dtype(np.float64)


def _namespace(higher: bool) -> Any:
    if higher:
        from difftape.engine import api

        return api.NAMESPACE
    return NUMPY


def _as(t: Any, higher: bool) -> Any:
    if higher:
        return t if isinstance(t, Tensor) else Tensor(t)
    return t._value if isinstance(t, Tensor) else t


def _forward(op: Op, args: Sequence[Any], params: dict[str, Any]) -> Any:
    return op.forward(*args, **params)


def _apply(op: Op, args: Sequence[Any], params: dict[str, Any]) -> Any:
    return _tape.apply(op, tuple(args), params)


def _transposer(higher: bool) -> Callable[..., Any]:
    """``J_i t`` from the VJP of input i: reverse mode over the VJP, which is linear in its cotangent."""

    def transpose(vjp: Callable[..., Any], t: Any, y: Any, xs: Sequence[Any], params: dict[str, Any], i: int) -> Any:
        from difftape.engine import api

        y_value = y._value if isinstance(y, Tensor) else np.asarray(y)
        g = Tensor(np.zeros(np.shape(y_value), dtype=_float_dtype(y_value)))
        ins = [a if isinstance(a, Tensor) else Tensor(np.asarray(a)) for a in xs]
        with Tape() as inner:
            inner.watch(g)
            u = vjp(api.NAMESPACE, g, y if isinstance(y, Tensor) else Tensor(y_value), *ins, **params)
        if not isinstance(u, Tensor):
            return None  # the VJP does not read g: this input's Jacobian is 0
        # the VJP may answer in the broadcast shape (reverse mode sums it down): the adjoint of that
        # sum broadcasts the tangent
        seed = t if isinstance(t, Tensor) else Tensor(np.asarray(t))
        if tuple(seed.shape) != tuple(u.shape):
            seed = api.NAMESPACE.broadcast_to(seed, tuple(u.shape))
        out = inner.gradient(u, g, output_gradients=seed, unconnected="zero")
        return out if higher else out._value

    return transpose


# ----------------------------------------------------------------------------------------
# functional forms


def _primals(primals: Sequence[Any]) -> list[Tensor]:
    out = []
    for p in primals:
        t = p if isinstance(p, Tensor) else constant(p)
        if not _is_float(t._value):
            t = constant(np.asarray(t._value, dtype=np.float64))
        out.append(t)
    return out


def jvp(f: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any]) -> tuple[Any, Any]:
    """``(f(*primals), J v)``: the value and its directional derivative along ``tangents``."""
    if not isinstance(primals, (list, tuple)) or not isinstance(tangents, (list, tuple)):
        raise DifftapeError("usage", "jvp(f, primals, tangents): primals and tangents are lists or tuples")
    ps = _primals(primals)
    with ForwardAccumulator(ps, list(tangents)) as acc:
        y = f(*ps)
    return y, acc.jvp(y, unconnected="zero")


def vjp(f: Callable[..., Any], *primals: Any) -> tuple[Any, Callable[[Any], Any]]:
    """``(f(*primals), vjp_fn)`` where ``vjp_fn(cotangent)`` is u' J for each primal (a tuple)."""
    ps = _primals(primals)
    with Tape(persistent=True) as tape:
        tape.watch(ps)
        y = f(*ps)

    def vjp_fn(cotangent: Any) -> tuple[Any, ...]:
        c = cotangent if isinstance(cotangent, Tensor) else Tensor(as_array(cotangent))
        if tuple(c.shape) != tuple(np.shape(y._value if isinstance(y, Tensor) else y)):
            raise DifftapeError("shape", f"vjp: cotangent has shape {tuple(c.shape)}, the output {tuple(np.shape(y))}")
        return tuple(tape.gradient(y, ps, output_gradients=c, unconnected="zero"))

    return y, vjp_fn


def _argnums(argnums: int | Sequence[int], n: int) -> tuple[list[int], bool]:
    many = not isinstance(argnums, int)
    nums = list(argnums) if many else [argnums]
    for a in nums:
        if not -n <= a < n:
            raise DifftapeError("usage", f"argnums {a} is out of range for {n} arguments")
    return [a % n for a in nums], many


def value_and_grad(f: Callable[..., Any], argnums: int | Sequence[int] = 0) -> Callable[..., tuple[Any, Any]]:
    """``g(*args) -> (f(*args), df/dargs[argnums])`` for a scalar ``f``."""

    def run(*args: Any) -> tuple[Any, Any]:
        nums, many = _argnums(argnums, len(args))
        ps = list(args)
        for a in nums:
            ps[a] = _primals([args[a]])[0] if not isinstance(args[a], Variable) else args[a]
        with Tape() as tape:
            tape.watch([ps[a] for a in nums])
            y = f(*ps)
        if not isinstance(y, Tensor) or y.ndim != 0:
            raise DifftapeError("shape", f"grad needs a scalar function, got shape {tuple(np.shape(y))}")
        grads = tape.gradient(y, [ps[a] for a in nums], unconnected="zero")
        return y, (tuple(grads) if many else grads[0])

    return run


def grad(f: Callable[..., Any], argnums: int | Sequence[int] = 0) -> Callable[..., Any]:
    """``g(*args) -> df/dargs[argnums]`` for a scalar ``f`` (a tuple when ``argnums`` is a sequence)."""
    vg = value_and_grad(f, argnums)

    def run(*args: Any) -> Any:
        return vg(*args)[1]

    return run


def hvp(f: Callable[..., Any], x: Any, v: Any) -> Any:
    """The Hessian of scalar ``f`` at ``x`` times ``v``, forward over reverse (one pass each way)."""
    xs, many = _flat(x)
    vs, _ = _flat(v)
    ps = _primals(xs)
    with ForwardAccumulator(ps, vs) as acc:
        with Tape() as tape:
            tape.watch(ps)
            y = f(*ps)
        if not isinstance(y, Tensor) or y.ndim != 0:
            raise DifftapeError("shape", f"hvp needs a scalar function, got shape {tuple(np.shape(y))}")
        grads = tape.gradient(y, ps, unconnected="zero")
    out = [acc.jvp(g, unconnected="zero") for g in grads]
    return out if many else out[0]
