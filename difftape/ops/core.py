"""The operation registry: one entry per operation holds everything that operation is.

An :class:`Op` is registered once, with :func:`register`, in the module of its family
(``elementwise.py``, ``reductions.py``, ``linalg.py``, ``shape.py``, ``constructors.py``). The entry
holds its numpy forward, one vector-Jacobian product (VJP) per tensor input, its static shape and
dtype rules, its batching rule (or the trait it is derived from: elementwise, reduction,
along-axis), whether the complex step applies (``analytic``), whether a where-mask passes through
it (``mask_through``), whether ``Tensor`` has it as a method, its family and its doc line. The
engine, the compiler, ``difftape.function``, batches, ``check``, ``diff``, the docs and the tests
all read these entries, and nothing else knows an operation by name.

A VJP is written once, against a namespace ``F`` of functions named like the ops:
``vjp(F, g, ans, *inputs, **params)``. The tape runs it with ``F`` = plain numpy (first
derivatives, fast) or ``F`` = difftape's own recorded ops (higher derivatives); the symbolic
differentiator runs it with symbolic ``F``; the compiled backward pass with an ``F`` that writes
code. A VJP returns the gradient in the broadcast shape; reverse mode sums it down to each input.

A batching rule is ``rule(apply, B, op, node, args, batched, shapes)``: ``apply(op, args, params)``
runs an op on the engine (so a tape records the batched run), ``args`` are the operands (batched
ones with a leading axis of ``B`` points), ``node.params``/``node.shape`` the op's static
parameters and per-point result shape. It returns the batched value, or ``NotImplemented`` to run
that node point by point.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Shape = tuple[int, ...]

#: The families, in the order the docs list them: name -> heading.
FAMILY_TITLES = {
    "elementwise": "elementwise",
    "compare": "comparisons and logic (no gradient)",
    "reduction": "reductions (`axis` int or tuple, `keepdims`)",
    "normalize": "along an axis",
    "linalg": "linear algebra",
    "shape": "shape",
    "index": "indexing (reached through `x[...]` and gradients)",
    "constructor": "constructors",
}


class Op:
    """One operation: everything the engine, the compiler, batches, ``check`` and ``diff`` know of it.

    A plain class with slots rather than a dataclass: the registry is built at import time on
    every start of the command line, and the engine reads these attributes in its hot path
    (``forward``, ``fast``, ``vjps``, ``variadic``, ``elementwise``).
    """

    __slots__ = (
        "name",
        "forward",
        "vjps",
        "args",
        "params",
        "kind",
        "shape",
        "dtype",
        "doc",
        "elementwise",
        "variadic",
        "special",
        "fast",
        "batch",
        "analytic",
        "mask_through",
        "method",
        "numpy",
        "jvp",
        "linear",
        "multilinear",
        "lead",
        "spread",
        "optional",
        "pyfloat",
    )

    def __init__(
        self,
        name: str,
        forward: Callable[..., Any],
        # one VJP per tensor input (a variadic op: one factory, position -> VJP); None: no gradient at all
        vjps: tuple[Callable[..., Any] | None, ...] | None,
        args: tuple[str, ...],  # tensor inputs in order; ("*xs",) for a sequence of tensors
        params: tuple[tuple[str, Any], ...],  # static keyword parameters with defaults
        kind: str,  # the family: a key of FAMILY_TITLES
        shape: Callable[..., Shape],
        dtype: Callable[..., np.dtype],
        doc: str = "",
        batch: Callable[..., Any] | None = None,
        analytic: bool = False,
        mask_through: bool = False,
        method: bool = False,
        numpy: tuple[Any, ...] = (),
        jvp: Callable[..., Any] | None = None,
        linear: bool = False,
        multilinear: bool = False,
        lead: tuple[str, ...] = (),
        spread: bool = False,
        optional: int = 0,
        pyfloat: FloatForm | None = None,
    ) -> None:
        self.name, self.forward, self.vjps, self.args, self.params = name, forward, vjps, args, params
        self.kind, self.shape, self.dtype, self.doc = kind, shape, dtype, doc
        self.elementwise = kind == "elementwise"
        self.variadic = args == ("*xs",)
        self.special = name == "where"  # the tape's backward pass takes its general path for it (masks)
        # the forward for when a numpy value is among the inputs (``tape.unary``/``tape.binary`` know it):
        # Python's operator, which *is* numpy's ufunc then, without the ufunc call's overhead on scalars
        self.fast = forward
        self.batch = batch  # the batching rule (None: point by point; constructors are never batched)
        self.analytic = analytic  # complex-analytic forward: the complex step gives the real derivative
        self.mask_through = mask_through  # the VJP only moves, copies or sums g: a where-mask passes through
        self.method = method  # Tensor has a method of this name (numpy's ndarray does)
        self.numpy = numpy  # the numpy functions this op stands for (np.linalg.norm for norm, ...)
        # forward mode (transforms/forward.py): an explicit rule ``jvp(F, tangents, y, *xs, **params)``,
        # or derived: linear ops apply their forward to the tangents, multilinear ones (matmul) to each
        # tangent in turn; elementwise ops from the VJP; anything else by transposing the VJP
        self.jvp = jvp
        self.linear = linear
        self.multilinear = multilinear
        # how a call is written, for the API binder and the compiler (numpy's signatures):
        self.lead = lead  # parameters given positionally before the tensors (a subscripts string)
        self.spread = spread  # a variadic op's tensors as separate arguments (f(s, a, b)), not one list
        self.optional = optional  # the last N tensor inputs may be left out (optional arrays): the op gets fewer
        # the op on Python floats, for code generated over 0-d float64 values (transforms/codegen_float.py);
        # None: that code calls the numpy forward for this op (and converts its result)
        self.pyfloat = pyfloat

    @property
    def family(self) -> str:
        """The family the docs list this op under (a key of :data:`FAMILY_TITLES`)."""
        return self.kind

    def __repr__(self) -> str:
        return f"<Op {self.name} ({self.kind})>"


class FloatForm:
    """How an op computes on Python floats, where the value numpy computes on float64 scalars is the same.

    Code generated for a signature of 0-d float64 inputs (``difftape.function`` replay, the command
    line's compiled program) computes on Python floats with these forms instead of numpy scalars,
    several times faster per op. Either ``template`` (an expression of the arguments ``{0}``, ``{1}``,
    ..., in Python float arithmetic: ``"({0} * {1})"``; ``"{0}"`` for an op that is the identity on a
    0-d value) or ``fn``, a function of floats called with the arguments (``math.sin``).

    ``exact``: the same IEEE-754 operation numpy performs (``+ - * /``, ``sqrt``, ``abs``), so bit for
    bit on every machine. Otherwise ``fn`` is a libm function that numpy may or may not call on a
    given build and CPU (numpy has SIMD loops of its own for some, exp, log and tanh on AVX-512 among
    them): the float code uses it only after a probe in this process finds numpy's results the same
    bits (``codegen_float.usable``), else it calls numpy's forward for that op.

    Where Python raises and numpy gives nan or inf (``math.log(0.0)``, ``1.0 / 0.0``), or where a
    value is not finite (numpy's warnings), the whole call runs the numpy code instead.
    """

    __slots__ = ("template", "fn", "exact")

    def __init__(self, template: str | None = None, fn: Callable[..., Any] | None = None, exact: bool = False) -> None:
        if (template is None) == (fn is None):
            raise ValueError("a FloatForm has a template or a function")
        self.template, self.fn, self.exact = template, fn, exact

    def __repr__(self) -> str:
        what = self.template if self.fn is None else getattr(self.fn, "__name__", repr(self.fn))
        return f"<FloatForm {what}{' exact' if self.exact else ''}>"


OPS: dict[str, Op] = {}

# ----------------------------------------------------------------------------------------
# static rules


def shape_of(x: Any) -> Shape:
    """Shape of an array, tensor, symbolic expression or Python number."""
    s = getattr(x, "shape", None)
    return tuple(s) if s is not None else ()


def broadcast_shape(*shapes: Shape, **_: Any) -> Shape:
    return tuple(np.broadcast_shapes(*shapes))


_PROBE = {int: 1, float: 1.0, bool: True}


def probe_value(dt: Any) -> Any:
    return _PROBE[dt] if dt in _PROBE else np.ones((), dtype=dt)


def probe_dtype(forward: Callable[..., Any]) -> Callable[..., np.dtype]:
    """dtype rule that runs the forward on 0-d values of the input dtypes (exact numpy promotion).

    An input dtype may be a Python type (int/float/bool) for a weakly-typed literal.
    """

    def rule(*dtypes: Any, **_: Any) -> np.dtype:
        with np.errstate(all="ignore"):
            return np.asarray(forward(*(probe_value(d) for d in dtypes))).dtype

    return rule


def np_dtype(d: Any) -> np.dtype:
    return np.asarray(probe_value(d)).dtype


def probe_on(forward: Callable[..., Any], *shapes: Shape) -> Callable[..., np.dtype]:
    """dtype rule that runs ``forward`` on ones of the given shapes (ops that need matrices)."""

    def rule(*dtypes: Any, **_: Any) -> np.dtype:
        arrays = [np.ones(s, dtype=np_dtype(d)) for s, d in zip(shapes, dtypes)]
        with np.errstate(all="ignore"):
            return np.asarray(forward(*arrays)).dtype

    return rule


def first_dtype(*dtypes: Any, **_: Any) -> np.dtype:
    return np_dtype(dtypes[0])


def result_dtype(*dtypes: Any, **_: Any) -> np.dtype:
    return np.result_type(*(probe_value(d) for d in dtypes))


def float_result(*dtypes: Any, **_: Any) -> np.dtype:
    dt = result_dtype(*dtypes)
    return dt if dt.kind == "f" else np.dtype(np.float64)


def normalize_axis(axis: Any, ndim: int) -> tuple[int, ...]:
    """Axis (None, int or tuple, negatives allowed) as a sorted tuple of non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        a = int(a)
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of bounds for an array of dimension {ndim}")
        out.append(a % ndim if ndim else 0)
    if len(set(out)) != len(out):
        raise ValueError(f"repeated axis in {axis}")
    return tuple(sorted(out))


def reduce_shape(shape: Shape, axis: Any = None, keepdims: bool = False, **_: Any) -> Shape:
    axes = normalize_axis(axis, len(shape))
    if keepdims:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def same_shape(shape: Shape, *_: Any, **__: Any) -> Shape:
    return shape


# ----------------------------------------------------------------------------------------
# registration

#: The default batching rule of each family that has one (set by ``batching.py``, which reads no op names).
DEFAULT_BATCH: dict[str, Callable[..., Any]] = {}


def register(
    name: str,
    forward: Callable[..., Any],
    *vjps: Callable[..., Any] | None,
    args: tuple[str, ...] | None = None,
    params: tuple[tuple[str, Any], ...] = (),
    kind: str = "elementwise",
    shape: Callable[..., Shape] | None = None,
    dtype: Callable[..., np.dtype] | None = None,
    nograd: int = 0,
    doc: str = "",
    fast: Callable[..., Any] | None = None,
    batch: Callable[..., Any] | None = None,
    analytic: bool = False,
    mask_through: bool | None = None,
    method: bool = False,
    numpy: Any = None,
    jvp: Callable[..., Any] | None = None,
    linear: bool = False,
    multilinear: bool = False,
    lead: tuple[str, ...] = (),
    spread: bool = False,
    optional: int = 0,
    pyfloat: FloatForm | None = None,
) -> Op:
    """Register an op. ``vjps`` one per input; ``nograd=N`` declares N inputs and no gradient.

    Defaults follow the family: elementwise ops broadcast and probe numpy for their dtype,
    reductions reduce over ``axis``; the batching rule is the family's (``DEFAULT_BATCH``) unless
    given; shape and indexing ops pass where-masks through.
    """
    if name in OPS:
        raise ValueError(f"op {name!r} is registered twice")
    if kind not in FAMILY_TITLES:
        raise ValueError(f"op {name!r}: unknown family {kind!r}")
    if args is None:
        n = nograd or len(vjps)
        args = ("x",) if n == 1 else ("x1", "x2", "x3")[:n]
    if shape is None:
        shape = {"elementwise": broadcast_shape, "compare": broadcast_shape, "reduction": reduce_shape}.get(
            kind, same_shape
        )
    if dtype is None:
        dtype = probe_dtype(forward) if kind in ("elementwise", "compare", "reduction") else first_dtype
    if batch is None:
        batch = DEFAULT_BATCH.get(kind)
    if mask_through is None:
        mask_through = kind in ("shape", "index")
    if numpy is None:
        found = getattr(np, name, None)
        numpy = (found,) if callable(found) else ()
    elif not isinstance(numpy, tuple):
        numpy = (numpy,)
    op = Op(
        name=name,
        forward=forward,
        vjps=tuple(vjps) if vjps else None,
        args=args,
        params=params,
        kind=kind,
        shape=shape,
        dtype=dtype,
        doc=doc,
        batch=batch,
        analytic=analytic,
        mask_through=mask_through,
        method=method,
        numpy=numpy,
        jvp=jvp,
        linear=linear,
        multilinear=multilinear,
        lead=lead,
        spread=spread,
        optional=optional,
        pyfloat=pyfloat,
    )
    if fast is not None:
        op.fast = fast
    OPS[name] = op
    return op


def vjp_for(op: Op, i: int) -> Callable[..., Any] | None:
    """The VJP of ``op`` for its i-th tensor input (None: no gradient flows there).

    A variadic op (``args == ("*xs",)``) registers one VJP factory: position -> VJP.
    """
    if op.vjps is None:
        return None
    if op.variadic:
        return op.vjps[0](i)
    return op.vjps[i]


def zero_vjp(F: Any, g: Any, y: Any, *xs: Any, **_: Any) -> Any:
    """The VJP of a piecewise-constant op (floor, sign, ...): zero."""
    return F.zeros_like(g)


def safe(F: Any, d: Any) -> Any:
    """The denominator d with exact zeros replaced by 1 (for gradients defined as 0 there)."""
    return F.where(d == 0, 1.0, d)


def size_of(s: Shape) -> int:
    """The number of elements of a shape."""
    return int(np.prod(s, dtype=np.int64))


def float_dtype_rule(dt: Any, **_: Any) -> np.dtype:
    """dtype rule of ops that always give floats (ints promote to float64)."""
    return float_result(dt)
