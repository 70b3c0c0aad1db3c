"""What a command will cost, estimated from the static shapes before anything runs.

A program can be small text and huge work (``det(A); A = randn(7000, 7000)``), and a command
can multiply the work of the program (a Jacobian is one reverse pass per element of the
target). :func:`check_cost` refuses, with an ``error[limit]`` that says how large the work is
and which option raises the limit, when the estimate is over ``--max-flops`` (floating-point
operations) or ``--max-elements`` (array elements alive at once: every node's value is kept
for the backward pass, and a Jacobian or Hessian result is an array of its own).

The estimates are deliberately simple and on the high side of right within a small factor:

- an op costs the elements of its output, unless :data:`FLOPS` has a rule for it (the
  linear algebra, whose cost grows faster than its output: these rules are meant to move into
  the op registry of ``difftape/ops.py`` later, next to each op's shape rule);
- a gradient is the forward pass plus a backward pass of twice its cost; a Jacobian is one
  reverse pass per target element; a Hessian one reverse-over-reverse pass per input element;
  ``check`` about :data:`CHECK_RUNS_PER_ELEMENT` forward runs per input element;
- each pass also pays :data:`FLOPS_PER_NODE` per node, the interpreter's own work, so that a
  hundred thousand passes over tiny arrays are not free.

Nodes whose shape is not known statically (an input without a value) count as nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from difftape.errors import DifftapeError

#: Default of ``--max-flops``: about a minute of work on one core of a laptop at worst.
DEFAULT_MAX_FLOPS = 2e10
#: Default of ``--max-elements``: 200 million elements alive at once (1.6 GB of float64).
DEFAULT_MAX_ELEMENTS = 200_000_000
#: The interpreter's own work per node and pass, in flop-equivalents (a few microseconds).
FLOPS_PER_NODE = 2_000
#: Forward runs per input element of ``check`` (central differences with extrapolation).
CHECK_RUNS_PER_ELEMENT = 24

Shape = tuple[int, ...]


def _size(shape: Sequence[int]) -> int:
    return math.prod(shape)


def _matmul(out: Shape, a: Shape, b: Shape) -> float:
    """2 * (output elements) * (the contracted length)."""
    if not a or not b:
        return float(_size(out))
    k = a[-1]
    return 2.0 * max(_size(out), 1) * k


def _inv(out: Shape, a: Shape) -> float:
    """inv: LU and inversion of each n x n matrix in the batch, about 2 n^3."""
    if len(a) < 2:
        return float(_size(out))
    return 2.0 * _size(a[:-2]) * a[-1] ** 3


def _det(out: Shape, a: Shape) -> float:
    """det: LU of each n x n matrix in the batch, about 2/3 n^3."""
    if len(a) < 2:
        return float(_size(out))
    return 2.0 / 3.0 * _size(a[:-2]) * a[-1] ** 3


def _solve(out: Shape, a: Shape, b: Shape) -> float:
    """LU of ``a`` (2/3 n^3) and the two triangular solves (2 n^2 per right-hand side)."""
    if len(a) < 2:
        return float(_size(out))
    n = a[-1]
    batch = _size(a[:-2])
    rhs = max(_size(out) // max(batch * n, 1), 1)
    return batch * (2.0 / 3.0 * n**3 + 2.0 * n * n * rhs)


#: Ops whose cost is not the elements of their output: op name -> cost(output shape, *input shapes).
FLOPS: dict[str, Callable[..., float]] = {
    "matmul": _matmul,
    "dot": _matmul,
    "inv": _inv,
    "det": _det,
    "solve": _solve,
}


def op_flops(op: str, out: Shape, inputs: Sequence[Shape]) -> float:
    """The estimated floating-point operations of one op with these static shapes."""
    rule = FLOPS.get(op)
    if rule is not None:
        try:
            return float(rule(out, *inputs))
        except (TypeError, ValueError, IndexError):  # an unusual arity: count the output
            pass
    return float(max(_size(out), 1))


class Estimate:
    """The forward pass of a graph: flops, elements of all values, and the op that costs most."""

    def __init__(self, graph: Any) -> None:
        self.flops = 0.0
        self.elements = 0
        self.nodes = len(graph.nodes)
        self.largest: tuple[float, Any] | None = None
        nodes = graph.nodes
        flops, elements, largest, most = 0.0, 0, None, 0.0
        prod = math.prod
        for node in nodes:  # one pass over what may be 100,000 nodes: op_flops inlined for the common case
            shape = node.shape
            if shape is None:
                continue
            size = prod(shape)
            elements += size
            if any(nodes[i].shape is None for i in node.inputs):
                continue
            if node.op in FLOPS:
                f = op_flops(node.op, tuple(shape), [tuple(nodes[i].shape) for i in node.inputs])
            else:
                f = float(size if size > 1 else 1)
            flops += f
            if largest is None or f > most:
                largest, most = node, f
        self.flops, self.elements = flops, elements
        if largest is not None:
            self.largest = (most, largest)


def _describe(node: Any) -> str:
    where = f" at {node.span.line}:{node.span.column}" if getattr(node, "span", None) is not None else ""
    shapes = "x".join(str(d) for d in node.shape) if node.shape else "scalar"
    return f"{node.op}{where} ({shapes} result)"


def _fmt(x: float) -> str:
    return f"{x:.2g}" if x >= 1e6 else f"{x:,.0f}"


def check_cost(
    graph: Any,
    command: str,
    *,
    wrt: Sequence[str] | None = None,
    max_flops: float = DEFAULT_MAX_FLOPS,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    check_mode: str = "full",
    directions: int = 3,
    order: int = 1,
    full_limit: int = 1000,
) -> Estimate:
    """Raise ``error[limit]`` when ``command`` on ``graph`` would exceed the limits; else the estimate.

    ``wrt`` names the inputs differentiated (default: every variable); the ones whose shape is
    known count. For ``check``: its mode ("auto" is full up to ``full_limit`` input elements),
    directions per input and derivative order.
    """
    est = Estimate(graph)
    target = graph.nodes[graph.target]
    out_elements = _size(target.shape) if target.shape is not None else 1
    named = graph.named_nodes()
    wrt_elements = 0
    for name in graph.variables if wrt is None else wrt:
        node = graph.nodes[named[name]] if name in named else None
        if node is not None and node.shape is not None:
            wrt_elements += _size(node.shape)
    per_pass = est.flops + FLOPS_PER_NODE * est.nodes
    live = est.elements
    why = ""
    if command == "eval":
        flops = per_pass
    elif command in ("grad", "diff"):
        flops = 3 * per_pass
        live = 2 * est.elements
    elif command == "jacobian":
        if 0 < wrt_elements < out_elements:  # forward mode: one pass per input element
            passes = wrt_elements
            why = f" ({passes:,} forward passes, one per input element)"
        else:
            passes = max(out_elements, 1)
            why = f" ({passes:,} reverse passes, one per element of the target)"
        flops = per_pass + passes * 2 * per_pass
        live = 2 * est.elements + out_elements * wrt_elements
    elif command in ("jvp", "vjp"):
        flops = 3 * per_pass
        live = 2 * est.elements
    elif command == "hvp":
        flops = 8 * per_pass
        live = 4 * est.elements
    elif command == "hessian":
        passes = max(wrt_elements, 1)
        flops = 3 * per_pass + passes * 6 * per_pass
        live = 4 * est.elements + wrt_elements * wrt_elements
        why = f" ({passes:,} second-order passes, one per input element)"
    elif command == "check":
        limit = full_limit if order == 1 else 60
        full = check_mode == "full" or (check_mode == "auto" and wrt_elements <= limit)
        if full and order == 1:
            passes = CHECK_RUNS_PER_ELEMENT * max(wrt_elements, 1)
            why = f" (about {passes:,} runs of the program for the numerical gradient)"
        elif full:  # the Hessian: differences of the gradient along every input element
            passes = 3 * CHECK_RUNS_PER_ELEMENT * max(wrt_elements, 1)
            why = f" (about {passes:,} gradient runs for the numerical Hessian)"
        else:  # a few runs per random direction, whatever the size
            passes = (CHECK_RUNS_PER_ELEMENT + 3) * directions * (3 if order == 2 else 1)
            why = f" (about {passes:,} runs along {directions} random direction{'s' * (directions != 1)})"
        flops = 3 * per_pass + passes * per_pass
        live = 2 * est.elements
    else:
        flops = per_pass
    largest = ""
    if est.largest is not None and est.largest[0] > 0.5 * est.flops and est.largest[0] > 1e6:
        largest = f"; the largest op is {_describe(est.largest[1])}, {_fmt(est.largest[0])} flops"
    if flops > max_flops:
        raise DifftapeError(
            "limit",
            f"`{command}` of this program would take about {_fmt(flops)} floating-point operations{why}, "
            f"over the limit of {_fmt(max_flops)}{largest}; if you mean it, raise the limit with "
            f"--max-flops {_fmt(_round_up(flops))}",
        )
    if live > max_elements:
        raise DifftapeError(
            "limit",
            f"`{command}` of this program would keep about {_fmt(live)} array elements in memory at once{why}, "
            f"about {_bytes(live)} as float64, over the limit of {_fmt(max_elements)}; if you mean "
            f"it, raise the limit with --max-elements {int(_round_up(live))}",  # (an integer option)
        )
    return est


def _round_up(x: float) -> float:
    """A round number a little above ``x``, for the suggested option value."""
    if x <= 0:
        return 1.0
    e = math.floor(math.log10(x))
    return math.ceil(x / 10**e * 1.0001) * 10**e if x / 10**e < 9.99 else 10 ** (e + 1)


def _bytes(elements: float) -> str:
    size = elements * 8
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"  # pragma: no cover
