"""Directional derivatives of a program: ``jvp`` (forward mode), ``vjp`` and ``hvp``.

- ``jvp``: J v, the derivative of the target along tangents of some inputs (the others held
  fixed), by forward mode: one pass, whatever the number of outputs.
- ``vjp``: u' J, the gradient of ``sum(target * cotangent)`` for every differentiated input.
- ``hvp``: H v for a scalar target, forward over reverse (the tape's backward pass recorded by a
  forward accumulator).

Each runs the program's graph on the engine with its leaves replaced by the primal tensors, so
the numbers are exactly those of ``grad`` and ``jacobian``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from difftape.answers.program import Program, _plain, _Record, _singular_is_a_value_error
from difftape.engine.forward import ForwardAccumulator
from difftape.engine.tape import Tape
from difftape.engine.tensor import Tensor
from difftape.errors import DifftapeError, did_you_mean


class JvpResult(_Record):
    of: str
    value: np.ndarray
    jvp: np.ndarray

    _field_names = ("of", "value", "jvp")

    def __init__(self, of: str, value: np.ndarray, jvp: np.ndarray) -> None:
        self.of, self.value, self.jvp = of, value, jvp


class VjpResult(_Record):
    of: str
    value: np.ndarray
    vjp: dict[str, np.ndarray | None]

    _field_names = ("of", "value", "vjp")

    def __init__(self, of: str, value: np.ndarray, vjp: dict[str, np.ndarray | None]) -> None:
        self.of, self.value, self.vjp = of, value, vjp


class HvpResult(_Record):
    of: str
    value: np.ndarray
    hvp: dict[str, np.ndarray]

    _field_names = ("of", "value", "hvp")

    def __init__(self, of: str, value: np.ndarray, hvp: dict[str, np.ndarray]) -> None:
        self.of, self.value, self.hvp = of, value, hvp


def _primals(program: Program, names: list[str], watched: set[str]) -> dict[str, Tensor]:
    """The differentiated leaves' values, as float tensors of the program's float dtype."""
    _, leaves = program._run([], watched)
    out = {}
    for n in names:
        if n not in leaves:
            raise DifftapeError("name", f"{n} is not used by {program.of}")
        out[n] = Tensor(np.array(program._leaf_value(leaves[n]._value), copy=True))
    return out


def _tangents(program: Program, tangents: Mapping[str, Any], primals: Mapping[str, Tensor], what: str) -> dict:
    out = {}
    for n, v in tangents.items():
        if n not in primals:
            raise DifftapeError(
                "name", f"--{what} {n}: not a differentiated input of the program{did_you_mean(n, list(primals))}"
            )
        arr = np.asarray(v, dtype=primals[n].dtype)
        shape = tuple(primals[n].shape)
        if arr.shape != shape:
            try:
                arr = np.broadcast_to(arr, shape).copy()
            except ValueError:
                raise DifftapeError("shape", f"--{what} {n} has shape {arr.shape}, but {n} has shape {shape}") from None
        out[n] = arr
    return out


def _names(program: Program, given: Iterable[str], wrt: Iterable[str] | None, watch: Iterable[str]) -> tuple:
    names, watched = program.sources(wrt if wrt is not None else None, watch)
    extra = [n for n in given if n not in names and n in program.consts]
    if extra:
        raise DifftapeError("name", f"{extra[0]} is a const: add --watch {extra[0]} to give it a tangent")
    live = [n for n in names if n in watched]
    return live, watched


@_singular_is_a_value_error
def jvp(program: Program, tangents: Mapping[str, Any], wrt: Iterable[str] | None = None,
        watch: Iterable[str] = ()) -> JvpResult:
    """The value and J v: the derivative of the target along ``tangents`` ({input: direction})."""
    if not tangents:
        raise DifftapeError("usage", "jvp needs a direction: --tangent NAME=VALUE (one per input to move)")
    names, watched = _names(program, tangents, wrt, watch)
    primals = _primals(program, names, watched)
    ts = _tangents(program, tangents, primals, "tangent")
    given = [n for n in names if n in ts]
    with ForwardAccumulator([primals[n] for n in given], [ts[n] for n in given]) as acc:
        out, _ = program._run([], watched, overrides=primals)
    t = acc.jvp(out, unconnected="zero")
    return JvpResult(program.of, program._as_float(out._value), _plain(t).astype(program.float_dtype, copy=False))


@_singular_is_a_value_error
def vjp(program: Program, cotangent: Any, wrt: Iterable[str] | None = None, watch: Iterable[str] = (),
        unconnected: str = "none") -> VjpResult:
    """The value and u' J for each differentiated input: the gradient of ``sum(target * cotangent)``."""
    names, watched = _names(program, (), wrt, watch)
    primals = _primals(program, names, watched)
    with Tape() as tape:
        tape.watch(list(primals.values()))
        out, _ = program._run([], watched, overrides=primals)
    u = np.asarray(cotangent, dtype=program.float_dtype)
    if u.shape != tuple(out.shape):
        try:
            u = np.broadcast_to(u, tuple(out.shape)).copy()
        except ValueError:
            raise DifftapeError(
                "shape", f"--cotangent has shape {u.shape}, but {program.of} has shape {tuple(out.shape)}"
            ) from None
    grads = tape.gradient(out, [primals[n] for n in names], output_gradients=u, unconnected=unconnected)
    return VjpResult(program.of, program._as_float(out._value),
                     {n: None if g is None else _plain(g) for n, g in zip(names, grads)})


@_singular_is_a_value_error
def hvp(program: Program, tangents: Mapping[str, Any], wrt: Iterable[str] | None = None,
        watch: Iterable[str] = ()) -> HvpResult:
    """The value and H v of a scalar target: the derivative of the gradient along ``tangents``."""
    if not tangents:
        raise DifftapeError("usage", "hvp needs a direction: --tangent NAME=VALUE (one per input to move)")
    shape = program.target_shape
    if shape != ():
        raise DifftapeError("shape", f"hvp needs a scalar target, but {program.of} has shape {shape}")
    names, watched = _names(program, tangents, wrt, watch)
    primals = _primals(program, names, watched)
    ts = _tangents(program, tangents, primals, "tangent")
    given = [n for n in names if n in ts]
    with ForwardAccumulator([primals[n] for n in given], [ts[n] for n in given]) as acc:
        with Tape() as tape:
            tape.watch(list(primals.values()))
            out, _ = program._run([], watched, overrides=primals)
        grads = tape.gradient(out, [primals[n] for n in names], unconnected="zero")
    hv = {n: _plain(acc.jvp(g, unconnected="zero")).astype(program.float_dtype, copy=False)
          for n, g in zip(names, grads)}
    return HvpResult(program.of, program._as_float(out._value), hv)


def jacobian_columns(program: Program, names: list[str], watched: set[str],
                     on_step: Callable[[int, int], Any] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The Jacobian blocks by forward mode: one pass per input element (cheaper than one reverse pass per
    output element when the inputs are fewer). Returns (value, {name: block of shape out + input}).

    ``on_step(done, total)`` is called after each pass (the command line's progress bar)."""
    primals = _primals(program, names, watched)
    out, _ = program._run([], watched, overrides=primals)
    oshape = tuple(out.shape)
    blocks = {}
    total = sum(int(np.prod(primals[n].shape, dtype=np.int64)) for n in names)
    done = 0
    for n in names:
        p = primals[n]
        cols = []
        for k in range(int(np.prod(p.shape, dtype=np.int64))):
            e = np.zeros(p.shape, dtype=p.dtype)
            e.reshape(-1)[k] = 1
            with ForwardAccumulator([p], [e]) as acc:
                y, _ = program._run([], watched, overrides=primals)
            cols.append(np.asarray(acc.jvp(y, unconnected="zero")._value))
            done += 1
            if on_step is not None:
                on_step(done, total)
        stacked = np.stack(cols, axis=-1) if cols else np.zeros(oshape + (0,), dtype=program.float_dtype)
        blocks[n] = stacked.reshape(oshape + tuple(p.shape)).astype(program.float_dtype, copy=False)
    return program._as_float(out._value), blocks
