"""Notes for results that are off (issue 14): said on stderr, the answer itself stands (exit 0).

- a value or derivative with a non-finite element: ``note: grad x has nan at [1]``;
- an integer result of ``eval`` whose int64 arithmetic wrapped around: the program is run again with
  its integer numbers as floats, and where the two disagree the note says so and suggests a float
  literal.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


def nonfinite(label: str, value: Any) -> str | None:
    """``grad x has nan at [1]`` (or ``grad x is inf``) for the first non-finite element, else None."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.dtype.kind not in "fc":
        return None
    bad = ~np.isfinite(arr)
    if not bad.any():
        return None
    if arr.ndim == 0:
        return f"note: {label} is {_word(arr.item())}"
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    more = int(bad.sum()) - 1
    where = "[" + ", ".join(map(str, first)) + "]"
    tail = f" (and {more:,} more non-finite element{'s' * (more != 1)})" if more else ""
    return f"note: {label} has {_word(arr[first])} at {where}{tail}"


def _word(v: Any) -> str:
    v = complex(v)
    if np.isnan(v.real) or np.isnan(v.imag):
        return "nan"
    part = v.real if not np.isfinite(v.real) else v.imag
    return "inf" if part > 0 else "-inf"


def nonfinite_notes(items: Iterable[tuple[str, Any]]) -> list[str]:
    """The non-finite notes of (label, array) pairs, in order."""
    return [n for n in (nonfinite(label, v) for label, v in items) if n is not None]


def wrapped(prog: Any, value: Any) -> str | None:
    """The note for an int64 result that wrapped around, else None.

    The program runs again with every integer literal and input as a float64: an overflow shows as
    a difference far beyond float rounding. (Should that run fail, there is no note.)
    """
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        return None
    try:
        exact = _as_floats(prog)
    except Exception:  # noqa: BLE001 - only a note: no note when the float run cannot be made
        return None
    if exact is None or np.shape(exact) != arr.shape:
        return None
    ints = arr.astype(np.float64)
    with np.errstate(all="ignore"):
        off = ~(np.abs(exact - ints) <= 1e-6 * np.abs(exact) + 1)
    if not off.any():
        return None
    first = tuple(int(i) for i in np.argwhere(off)[0]) if arr.ndim else ()
    where = " at [" + ", ".join(map(str, first)) + "]" if first else ""
    return (f"note: the result wrapped around: its int64 arithmetic overflowed (in floating point it is about "
            f"{float(exact[first]):.6g}{where}); write a float literal (2.0 instead of 2) to compute in floating "
            "point")


def _as_floats(prog: Any) -> np.ndarray | None:
    from difftape.ir.graph import Graph, Node

    graph = prog.graph
    nodes = []
    for n in graph.nodes:
        if n.op == "literal":
            v = n.params["value"]
            if type(v) is int:
                n = Node(n.id, n.op, n.inputs, {**n.params, "value": float(v)}, n.shape, float, n.span, n.name, n.leaf)
            elif isinstance(v, np.ndarray) and v.dtype.kind in "iu":
                n = Node(n.id, n.op, n.inputs, {**n.params, "value": v.astype(np.float64)}, n.shape,
                         np.dtype(np.float64), n.span, n.name, n.leaf)
        nodes.append(n)
    values = {}
    for name, v in graph.values.items():
        a = np.asarray(v._value if hasattr(v, "_value") else v)
        values[name] = a.astype(np.float64) if a.dtype.kind in "iu" else v
    floats = Graph(nodes, graph.target, graph.target_name, graph.inputs, graph.variables, graph.consts,
                   graph.bindings, graph.source, values, graph.missing, graph.dtype)
    with np.errstate(all="ignore"):
        out = floats.run(seed=prog.seed)
    return np.asarray(out._value, dtype=np.float64)
