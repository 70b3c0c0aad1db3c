"""``difftape.function``: trace a Python function into a graph once per signature, then replay.

As with ``tf.function``, the Python body runs once for each new input signature
(the shapes and dtypes of tensor arguments, the values of other arguments); the
operations it performed are recorded and later calls replay them on the new inputs
without running the Python body. Tensors, numpy arrays and lists are tensor arguments;
Python numbers are values, as in TensorFlow: each new number traces again, and the
body sees the number itself, so ``x * 0.5`` keeps a float32 ``x`` float32 exactly as
eager code does. Results that are not tensors (``cube(2)`` computes the Python int 8)
come back as tensors. Variables captured from outside are read at each
call, so ``assign`` is seen. Anything the body computed outside difftape's operations
(Python control flow on values, numpy calls, random draws) is fixed at trace time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from .tape import _ACTIVE, apply
from .tensor import Tensor, Variable, as_array


class _Trace:
    """Recorder that keeps every op applied while the Python body runs."""

    def __init__(self, inputs: list[Tensor]) -> None:
        self.slots: dict[int, int] = {id(t): i for i, t in enumerate(inputs)}
        self.keep: list[Tensor] = list(inputs)  # keep ids valid while tracing
        # (op, input refs, params, params with slot refs or None when no traced tensor is in them)
        self.steps: list[tuple[Any, tuple[Any, ...], dict[str, Any], dict[str, Any] | None]] = []

    def _ref(self, a: Any) -> tuple[str, Any]:
        if isinstance(a, Tensor):
            slot = self.slots.get(id(a))
            if slot is not None:
                return ("slot", slot)
            if isinstance(a, Variable):
                return ("var", a)
            return ("const", a)
        return ("const", a)

    def _param(self, v: Any) -> Any:
        """A parameter with every traced tensor in it (``x[i]``: the index) replaced by its slot."""
        if isinstance(v, Tensor) and id(v) in self.slots:
            return _Ref("slot", self.slots[id(v)])
        if isinstance(v, (tuple, list)):
            return type(v)(self._param(e) for e in v)
        return v

    def _record(self, op: Any, args: tuple[Any, ...], params: dict[str, Any], out: Tensor) -> None:
        dynamic = {k: self._param(v) for k, v in params.items()}
        if not any(_has_ref(v) for v in dynamic.values()):
            dynamic = None
        self.steps.append((op, tuple(self._ref(a) for a in args), params, dynamic))
        self.slots[id(out)] = len(self.keep)
        self.keep.append(out)


class _Ref:
    __slots__ = ("kind", "value")

    def __init__(self, kind: str, value: Any) -> None:
        self.kind, self.value = kind, value


class _Graph:
    """A traced body: the steps and where the outputs come from."""

    def __init__(self, trace: _Trace, n_inputs: int, output: Any) -> None:
        self.steps = trace.steps
        self.n_inputs = n_inputs
        self.output = _map(
            output, lambda t: _Ref(*trace._ref(t)) if isinstance(t, Tensor) else _Ref("const", _as_tensor(t))
        )

    def run(self, inputs: list[Tensor]) -> Any:
        slots: list[Any] = list(inputs)
        for op, refs, params, dynamic in self.steps:
            args = tuple(slots[v] if kind == "slot" else v for kind, v in refs)
            if dynamic is not None:
                params = {k: _resolve(v, slots) for k, v in dynamic.items()}
            slots.append(apply(op, args, params))
        return _map(self.output, lambda ref: slots[ref.value] if ref.kind == "slot" else ref.value, leaf=_Ref)


def _has_ref(v: Any) -> bool:
    return isinstance(v, _Ref) or (isinstance(v, (tuple, list)) and any(_has_ref(e) for e in v))


def _resolve(v: Any, slots: list[Any]) -> Any:
    if isinstance(v, _Ref):
        return slots[v.value]
    if isinstance(v, (tuple, list)):
        return type(v)(_resolve(e, slots) for e in v)
    return v


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


class Function:
    """A traced function; ``trace_count`` says how many signatures have been traced."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        functools.update_wrapper(self, fn)
        self.python_function = fn
        self._graphs: dict[Any, _Graph] = {}
        self._pinned: dict[int, Any] = {}  # objects keyed by identity stay alive, so ids are never reused
        self._bound: dict[int, Function] = {}

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
            return (type(a).__name__, repr(a))
        if isinstance(a, tuple):
            return ("tuple", tuple(self._static_key(e) for e in a))
        if isinstance(a, dict):
            return ("dict", tuple((repr(k), self._static_key(v)) for k, v in a.items()))
        self._pinned[id(a)] = a
        return ("object", id(a))

    @property
    def trace_count(self) -> int:
        return len(self._graphs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tensors: list[Tensor] = []
        key: list[Any] = []
        call_args: list[Any] = []
        for a in list(args) + [kwargs[k] for k in sorted(kwargs)]:
            if _is_tensor_like(a):
                t = a if isinstance(a, Tensor) else Tensor(as_array(a))
                tensors.append(t)
                call_args.append(t)
                key.append(("T", t.shape, str(t.dtype)))
            else:
                call_args.append(a)
                key.append(("V", self._static_key(a)))
        sig = (tuple(key), tuple(sorted(kwargs)))
        graph = self._graphs.get(sig)
        if graph is None:
            graph = self._trace(call_args, tensors, len(args), sorted(kwargs))
            self._graphs[sig] = graph
        return graph.run(tensors)

    def _trace(self, call_args: list[Any], tensors: list[Tensor], n_pos: int, kw: list[str]) -> _Graph:
        trace = _Trace(tensors)
        outer = list(_ACTIVE)  # tapes record the replay below, not the tracing run
        _ACTIVE[:] = [trace]
        try:
            out = self.python_function(*call_args[:n_pos], **dict(zip(kw, call_args[n_pos:])))
        finally:
            _ACTIVE[:] = outer
        return _Graph(trace, len(tensors), out)


def function(fn: Callable[..., Any] | None = None) -> Any:
    """Decorator (``tf.function``): trace once per input signature, then replay the graph."""
    if fn is None:
        return function
    return Function(fn)
