"""The one table of per-op test cases (not a test module): every per-op test reads it.

A :class:`Case` is one use of one operation of ``difftape.ops.OPS``: the op, its inputs
(a name, a shape and a *domain*: where the values are drawn, e.g. positive, (-1, 1), away
from every kink by more than the finite-difference steps), the call written once against a
namespace (``call(ns, *inputs)`` runs as the Python API with ``ns = difftape`` and as an
independent numpy reference with ``ns = REF``), the same call as a program of the
command-line language (``program``, inputs given as ``--at`` values; ``None`` where the
language has no syntax for it, e.g. fancy indexing), and the flags the tests need.

``tests/test_op_cases.py`` runs every check on every case; ``test_every_op_has_a_case``
fails naming any op with tensor inputs that has no case, so a new op cannot be added to the
table of operations without one here. Other test modules take their value domains from
here (:func:`domain_of`) instead of keeping tables of their own.

To add an op: add its cases to ``CASES`` (and, when numpy lacks it, its reference to ``REF``).
A check that fails because of a bug gets ``xfail={"check": "the precise bug"}``; the test
module turns that into a strict xfail, so it is noticed the moment the bug is fixed.
"""

from __future__ import annotations

import operator
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

Shape = tuple[int, ...]

# ----------------------------------------------------------------------------------------
# domains: (rng, shape) -> float64 array inside the domain, away from its kinks


@dataclass(frozen=True)
class Domain:
    """Where an input's values come from; ``label`` says it in words (test ids, reports)."""

    label: str
    draw: Callable[[np.random.Generator, Shape], np.ndarray]
    differentiable: bool = True  # False: a condition or mask (bool), never watched
    integral: bool = True  # int64 (and bool) versions of the values are meaningful inputs

    def __call__(self, rng: np.random.Generator, shape: Shape) -> np.ndarray:
        return np.asarray(self.draw(rng, shape))


def uniform(lo: float, hi: float) -> Domain:
    return Domain(f"[{lo}, {hi}]", lambda rng, shape: rng.uniform(lo, hi, shape))


def nonzero(lo: float = 0.3, hi: float = 2.0) -> Domain:
    """|x| in [lo, hi] with a random sign (away from the kink at 0)."""
    return Domain(f"+-[{lo}, {hi}]", lambda rng, shape: rng.uniform(lo, hi, shape) * rng.choice([-1.0, 1.0], shape))


def distinct(rng: np.random.Generator, shape: Shape, signed: bool = False) -> np.ndarray:
    """Values at least 0.2 apart (no ties anywhere), optionally with random signs and |x| >= 0.3."""
    n = int(np.prod(shape, dtype=np.int64))
    v = (rng.permutation(n) * 0.3 + 0.3 + rng.uniform(0, 0.1, n)).reshape(shape)
    return v * rng.choice([-1.0, 1.0], shape) if signed else v - 0.3 * n / 2


def _apart(odd: int) -> Callable[[np.random.Generator, Shape], np.ndarray]:
    """a = 2i + u, b = 2j + 1 + u (u in [0, 0.4)): every broadcast pair of a and b differs by >= 0.6."""
    return lambda rng, shape: 2.0 * rng.integers(-1, 2, shape) + odd + rng.uniform(0, 0.4, shape)


def _banded(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """Below -1.5, inside [-0.5, 0.5] or above 1.5: never within 0.1 of clip bounds drawn from +-[0.6, 1.4]."""
    band = rng.integers(0, 3, shape)
    return np.choose(band, [rng.uniform(-3, -1.5, shape), rng.uniform(-0.5, 0.5, shape), rng.uniform(1.5, 3, shape)])


def _well_conditioned(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    n = shape[-1]
    signs = rng.choice([-1.0, 1.0], shape[:-1])[..., None]
    return np.eye(n) * (n + 1.0) * signs + rng.uniform(-0.5, 0.5, shape)


def _rank_deficient(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """Square matrices of rank n - 1 (det 0, cofactors not all 0)."""
    n = shape[-1]
    a = rng.normal(size=shape[:-1] + (n - 1,))
    b = rng.normal(size=shape[:-2] + (n - 1, n))
    return a @ b


def _special(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    v = rng.uniform(-2, 2, shape).ravel()
    v[: max(1, v.size // 2)] = [np.nan, np.inf, -np.inf, 0.0, 1.5][: max(1, v.size // 2)]
    return rng.permutation(v).reshape(shape)


def _zeros(count: int) -> Callable[[np.random.Generator, Shape], np.ndarray]:
    """+-[0.5, 1.5] with exactly ``count`` zeros in every row (the last axis): prod's special points."""

    def draw(rng: np.random.Generator, shape: Shape) -> np.ndarray:
        v = rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
        rows = v.reshape(-1, shape[-1])
        for row in rows:
            row[rng.permutation(shape[-1])[:count]] = 0.0
        return rows.reshape(shape)

    return draw


REAL = Domain("the real line", lambda rng, shape: rng.uniform(-2, 2, shape))
POS = Domain("positive", lambda rng, shape: rng.uniform(0.5, 2, shape))
UNIT = Domain("(-1, 1)", lambda rng, shape: rng.uniform(-0.9, 0.9, shape))
NONZERO = Domain("away from 0", nonzero().draw)
ABOVE_ONE = Domain("(1, inf)", lambda rng, shape: rng.uniform(1.1, 3, shape))
ABOVE_MINUS_ONE = Domain("(-1, inf)", lambda rng, shape: rng.uniform(-0.9, 3, shape))
TAN = Domain("(-pi/2, pi/2)", lambda rng, shape: rng.uniform(-1.2, 1.2, shape))
WIDE = Domain("[-6, 6]", lambda rng, shape: rng.uniform(-6, 6, shape))
OFF_INTEGERS = Domain("away from integers",
                      lambda rng, shape: rng.integers(-3, 3, shape) + rng.uniform(0.1, 0.9, shape))
OFF_HALVES = Domain("away from half-integers",
                    lambda rng, shape: rng.integers(-3, 3, shape) + rng.uniform(-0.4, 0.4, shape))
OFF_TENTH_HALVES = Domain("away from (k+1/2)/10",
                          lambda rng, shape: (rng.integers(-30, 30, shape) + rng.uniform(-0.4, 0.4, shape)) / 10)
DISTINCT = Domain("no ties (values 0.2 apart)", distinct)
DISTINCT_ABS = Domain("no ties in |x|, away from 0", lambda rng, shape: distinct(rng, shape, signed=True))
EVEN = Domain("2i + [0, 0.4) (apart from ODD)", _apart(0))
ODD = Domain("2j + 1 + [0, 0.4) (apart from EVEN)", _apart(1))
SMALL = Domain("+-[0.1, 0.4]", nonzero(0.1, 0.4).draw)  # with |b| in [0.5, 2]: a/b is 0.05+ from an integer
FACTORS = Domain("away from 0: +-[0.5, 1.5]", nonzero(0.5, 1.5).draw)
DIVISOR = Domain("+-[0.5, 2]", nonzero(0.5, 2.0).draw)
BASE = Domain("[0.5, 2.5]", lambda rng, shape: rng.uniform(0.5, 2.5, shape))
EXPONENT = Domain("[-2, 2.5]", lambda rng, shape: rng.uniform(-2, 2.5, shape))
BANDED = Domain("away from clip bounds", _banded)
LOWER = Domain("[-1.4, -0.6]", lambda rng, shape: rng.uniform(-1.4, -0.6, shape))
UPPER = Domain("[0.6, 1.4]", lambda rng, shape: rng.uniform(0.6, 1.4, shape))
WELL = Domain("well-conditioned matrices", _well_conditioned)
SINGULAR = Domain("rank n-1 matrices (det 0)", _rank_deficient, integral=False)
SPECIAL = Domain("with nan, inf, -inf and 0", _special, integral=False)
SMALL_INTS = Domain("small integers (ties)", lambda rng, shape: rng.integers(-2, 3, shape).astype(np.float64))
BOOL = Domain("true/false", lambda rng, shape: rng.random(shape) < 0.5, differentiable=False)

# ----------------------------------------------------------------------------------------
# the numpy reference: numpy itself, and independent definitions of what numpy lacks


def _logsumexp(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _scatter(g: Any, index: Any = (), shape: Shape = ()) -> np.ndarray:
    out = np.zeros(shape)
    np.add.at(out, index, g)
    return out


def _cofactor(x: Any) -> np.ndarray:
    """d det / dx from its definition: cof[..., i, j] = (-1)**(i + j) * det(x without row i and column j)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    out = np.empty(x.shape)
    for i in range(n):
        for j in range(n):
            minor = np.delete(np.delete(x, i, axis=-2), j, axis=-1)
            out[..., i, j] = (-1) ** (i + j) * (np.linalg.det(minor) if n > 1 else 1.0)
    return out


REF = SimpleNamespace(**{name: getattr(np, name) for name in dir(np) if not name.startswith("_")})
REF.sigmoid = lambda x: 1.0 / (1.0 + np.exp(-x))
REF.relu = lambda x: np.where(x > 0, x, 0.0 * x)
REF.softplus = lambda x: np.log1p(np.exp(x))
REF.logsumexp = _logsumexp
REF.softmax = lambda x, axis=-1: np.exp(x - _logsumexp(x, axis=axis, keepdims=True))
REF.log_softmax = lambda x, axis=-1: x - _logsumexp(x, axis=axis, keepdims=True)
REF.norm = np.linalg.norm
REF.inv = np.linalg.inv
REF.det = np.linalg.det
REF.cofactor = _cofactor
REF.solve = np.linalg.solve
REF.scatter = _scatter
REF.stop_gradient = lambda x: x
REF.getitem = lambda x, index: x[index]


def _add_along_axis(g: Any, indices: Any, axis: int = 0, size: int = 0) -> np.ndarray:
    """take_along_axis's adjoint, by its definition: each g element added where its index points."""
    g = np.asarray(g, dtype=np.float64)
    idx = np.broadcast_to(np.asarray(indices), g.shape)
    out = np.zeros(g.shape[:axis] + (size,) + g.shape[axis + 1:])
    for pos in np.ndindex(g.shape):
        target = list(pos)
        target[axis] = idx[pos]
        out[tuple(target)] += g[pos]
    return out


REF.add_along_axis = _add_along_axis

# ----------------------------------------------------------------------------------------
# cases


@dataclass(frozen=True)
class Input:
    name: str
    shape: Shape
    domain: Domain


@dataclass(frozen=True)
class Case:
    """One use of one op. ``call(ns, *inputs)``: ns is ``difftape`` (the API) or :data:`REF` (numpy).

    grad: "fd" (compared with finite differences), "zero" (a zero gradient that stays connected,
    e.g. floor), "none" (no gradient at all: comparisons; the result is unconnected).
    second: the second derivative is checked too (nested tapes and ``difftape.hessian``).
    plain: ``call`` is ``ns.<op>(*inputs)``, so shape-exploring tests may call the op on other shapes.
    xfail: check name -> the bug that makes that check fail (a strict xfail in the tests).
    """

    id: str
    op: str
    inputs: tuple[Input, ...]
    call: Callable[..., Any]
    program: str | None
    grad: str = "fd"
    second: bool = True
    ints: bool = True
    plain: bool = False
    batch: bool = True
    diff: bool = True
    rtol: float = 1e-6
    atol: float = 1e-7
    xfail: Mapping[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [i.name for i in self.inputs]

    @property
    def wrt(self) -> list[int]:
        """Positions of the inputs that are differentiated."""
        return [k for k, i in enumerate(self.inputs) if i.domain.differentiable]

    def values(self, seed: int = 0, dtype: Any = np.float64, shapes: list[Shape] | None = None) -> list[np.ndarray]:
        """Input values inside their domains (the same for the same seed), cast to ``dtype``.

        bool inputs stay bool; an integer dtype rounds the values (meaningful only for the
        shapes and dtypes, not for the domain). ``shapes`` replaces the inputs' shapes.
        """
        rng = np.random.default_rng(zlib.crc32(self.id.encode()) + 7919 * seed)
        out = []
        for i, shape in zip(self.inputs, shapes or [i.shape for i in self.inputs]):
            v = i.domain(rng, shape)
            if v.dtype == np.bool_:
                out.append(v)
            elif np.dtype(dtype).kind in "iub":
                out.append(np.round(v).astype(dtype))
            else:
                out.append(v.astype(dtype))
        return out

    def __repr__(self) -> str:
        return f"<Case {self.id}>"


CASES: list[Case] = []


def case(op: str, call: Callable[..., Any], program: str | None, *inputs: tuple[str, Shape, Domain],
         id: str | None = None, **flags: Any) -> Case:
    """Add a case to :data:`CASES` (ids are unique: the op name, then a suffix)."""
    ident = id or op
    if any(c.id == ident for c in CASES):
        raise ValueError(f"duplicate case id {ident!r}")
    c = Case(ident, op, tuple(Input(*i) for i in inputs), call, program, **flags)
    CASES.append(c)
    return c


def _unary(name: str) -> Callable[..., Any]:
    return lambda ns, x: getattr(ns, name)(x)


def _binary(name: str) -> Callable[..., Any]:
    return lambda ns, a, b: getattr(ns, name)(a, b)


# known bugs (a check -> what is wrong), shared by the cases they break
POWER_DTYPE = dict.fromkeys(("rules", "program_rules"), (
    "power's dtype rule probes 1**1, so int ** negative int is int64 statically, but the forward follows Python "
    "(2**-1 == 0.5) and returns float64: `difftape graph \"x ** y\" --at x=2 --at y=-2` lists power as int64 while "
    "`eval` gives 0.25 float64"))
NORM_INF_DTYPE = dict.fromkeys(("rules", "program_rules"), (
    "norm with ord=inf/-inf of an int input returns int64 (max(abs(x)) keeps the dtype) while its dtype rule and "
    "numpy's linalg.norm give float64: `difftape eval \"norm(x, ord=inf)\" --at x=\"[1, -2]\"` prints int64 2, "
    "`graph` says float64"))
WEAK_LINALG_DTYPE = dict.fromkeys(("rules", "program_rules"), (
    "dot/outer's dtype rule is np.result_type with a Python number weak (float32 for 2.0 and a float32 array), but "
    "np.dot/np.outer turn a Python float into a float64 array: `difftape eval \"dot(b, 2.0)\" --at b=\"[1.0, 2.0]\" "
    "--dtype float32` gives float64 where `graph` says float32 (and difftape.dot(1.5, float32 tensor) is float64)"))

M = (2, 3)  # the usual matrix shape
V = (3,)  # a vector that broadcasts against M

# -- unary elementwise ---------------------------------------------------------------------
for _name, _dom, _shape in [
    ("negative", REAL, M), ("positive", REAL, M), ("abs", NONZERO, M), ("sqrt", POS, M), ("square", REAL, M),
    ("exp", REAL, M), ("expm1", REAL, ()), ("log", POS, M), ("log1p", ABOVE_MINUS_ONE, M), ("log2", POS, V),
    ("log10", POS, V), ("sin", WIDE, M), ("cos", WIDE, M), ("tan", TAN, M), ("arcsin", UNIT, M),
    ("arccos", UNIT, M), ("arctan", WIDE, M), ("sinh", REAL, M), ("cosh", REAL, M), ("tanh", REAL, ()),
    ("arcsinh", WIDE, M), ("arccosh", ABOVE_ONE, M), ("arctanh", UNIT, M), ("sigmoid", WIDE, M),
    ("relu", NONZERO, M), ("softplus", WIDE, M),
]:
    case(_name, _unary(_name), f"{_name}(x)", ("x", _shape, _dom), plain=True)

for _name, _dom in [("sign", NONZERO), ("floor", OFF_INTEGERS), ("ceil", OFF_INTEGERS), ("round", OFF_HALVES)]:
    case(_name, _unary(_name), f"{_name}(x)", ("x", M, _dom), grad="zero", plain=True)
case("round", lambda ns, x: ns.round(x, 1) * x, "round(x, 1) * x", ("x", V, OFF_TENTH_HALVES), id="round-decimals")
case("negative", lambda ns, x: -x, "-x", ("x", M, REAL), id="negative-operator")
# numpy's own ufuncs applied to tensors are recorded as the ops of the same name
case("cos", lambda ns, x: np.cos(x) * np.maximum(x, 1.0), "cos(x) * maximum(x, 1.0)", ("x", M, BANDED),
     id="cos-numpy-ufunc")
case("abs", lambda ns, x: ns.abs(x) * x, "abs(x) * x", ("x", V, NONZERO), id="abs-times-x")

# -- binary elementwise (broadcasting (2, 3) with (3,)) ------------------------------------
for _name, _da, _db in [
    ("add", REAL, REAL), ("subtract", REAL, REAL), ("multiply", REAL, REAL), ("divide", REAL, DIVISOR),
    ("remainder", SMALL, DIVISOR), ("power", BASE, EXPONENT), ("maximum", EVEN, ODD), ("minimum", EVEN, ODD),
    ("arctan2", NONZERO, DIVISOR),
]:
    case(_name, _binary(_name), f"{_name}(a, b)", ("a", M, _da), ("b", V, _db), plain=True,
         xfail={"rules_numbers": POWER_DTYPE["rules"]} if _name == "power" else {})
case("floor_divide", _binary("floor_divide"), "floor_divide(a, b)", ("a", M, SMALL), ("b", V, DIVISOR),
     grad="zero", plain=True)
# the operators, with literals (weakly typed Python numbers) and other broadcasts
case("add", lambda ns, a, b: a + b + 1, "a + b + 1", ("a", (3, 1), REAL), ("b", V, REAL), id="add-operator")
case("subtract", lambda ns, a, b: 2.5 - a - b, "2.5 - a - b", ("a", (), REAL), ("b", M, REAL), id="subtract-operator")
case("multiply", lambda ns, a, b: a * b * 2, "a * b * 2", ("a", (2, 1, 3), REAL), ("b", (4, 1), REAL),
     id="multiply-operator")
case("divide", lambda ns, a, b: a / b + 1 / b, "a / b + 1 / b", ("a", M, REAL), ("b", (), DIVISOR),
     id="divide-operator")
case("floor_divide", lambda ns, a, b: a // b + a * b, "a // b + a * b", ("a", V, SMALL), ("b", V, DIVISOR),
     id="floor_divide-operator")
case("remainder", lambda ns, a, b: a % b + 2.5 % b, "a % b + 2.5 % b", ("a", M, SMALL), ("b", V, DIVISOR),
     id="remainder-operator")
case("power", lambda ns, a, b: a ** b, "a ** b", ("a", V, BASE), ("b", (), EXPONENT), id="power-operator",
     xfail=POWER_DTYPE)
case("power", lambda ns, x: x ** 3 + x ** 2, "x ** 3 + x ** 2", ("x", M, REAL), id="power-literal-int")
case("power", lambda ns, x: x ** -2 + x ** 0.5, "x ** -2 + x ** 0.5", ("x", V, POS), id="power-literal-float",
     xfail=POWER_DTYPE)
case("power", lambda ns, x: 2 ** x, "2 ** x", ("x", V, REAL), id="power-literal-base", xfail=POWER_DTYPE)
case("maximum", lambda ns, x: ns.maximum(x, 1.0) + ns.minimum(x, -1.0), "maximum(x, 1.0) + minimum(x, -1.0)",
     ("x", M, BANDED), id="maximum-literal")

# -- selections --------------------------------------------------------------------------
case("where", lambda ns, c, a, b: ns.where(c, a, b), "where(c, a, b)", ("c", M, BOOL), ("a", V, REAL),
     ("b", (2, 1), REAL), plain=True)
case("where", lambda ns, x: ns.where(x > 0, ns.sqrt(ns.abs(x)), x ** 2), "where(x > 0, sqrt(abs(x)), x**2)",
     ("x", M, NONZERO), id="where-comparison")
case("clip", lambda ns, x, lo, hi: ns.clip(x, lo, hi), "clip(x, lo, hi)", ("x", M, BANDED), ("lo", V, LOWER),
     ("hi", (), UPPER), plain=True)
case("clip", lambda ns, x: ns.clip(x, -1, 1) * x, "clip(x, -1, 1) * x", ("x", V, BANDED), id="clip-literal")

# -- no gradient: comparisons, logic, tests, stop_gradient, *_like -------------------------
for _name, _op, _fn in [("less", "<", operator.lt), ("less_equal", "<=", operator.le), ("greater", ">", operator.gt),
                        ("greater_equal", ">=", operator.ge), ("equal", "==", operator.eq),
                        ("not_equal", "!=", operator.ne)]:
    case(_name, _binary(_name), f"{_name}(a, b)", ("a", M, SMALL_INTS), ("b", V, SMALL_INTS), grad="none",
         plain=True)
    case(_name, lambda ns, a, b, _fn=_fn: _fn(a, b), f"a {_op} b", ("a", V, SMALL_INTS),
         ("b", (), SMALL_INTS), grad="none", id=f"{_name}-operator")
for _name in ("logical_and", "logical_or"):
    case(_name, _binary(_name), f"{_name}(a, b)", ("a", M, SMALL_INTS), ("b", V, SMALL_INTS), grad="none",
         plain=True)
case("logical_not", _unary("logical_not"), "logical_not(x)", ("x", M, SMALL_INTS), grad="none", plain=True)
for _name in ("isfinite", "isnan", "isinf"):
    case(_name, _unary(_name), f"{_name}(x)", ("x", M, SPECIAL), grad="none", plain=True)
case("stop_gradient", _unary("stop_gradient"), "stop_gradient(x)", ("x", M, REAL), grad="none", plain=True)
case("zeros_like", _unary("zeros_like"), "zeros_like(x)", ("x", M, REAL), grad="none", plain=True)
case("ones_like", _unary("ones_like"), "ones_like(x)", ("x", M, REAL), grad="none", plain=True)
case("full", lambda ns, v: ns.full((2, 3), v), "full((2, 3), v)", ("v", (), REAL))
case("full", lambda ns, v: ns.full((2, 3), v) ** 2, "full((2, 3), v)**2", ("v", V, REAL), id="full-broadcast")
case("full", lambda ns, v: ns.full((2, 3), v) * v, "full((2, 3), v) * v", ("v", (2, 1), REAL), id="full-column")
case("full", lambda ns, v: ns.full((), v) * 2.0, "full((), v) * 2.0", ("v", (), REAL), id="full-scalar")

# -- reductions --------------------------------------------------------------------------
for _name, _dom in [("sum", REAL), ("mean", REAL), ("prod", FACTORS), ("max", DISTINCT),
                    ("min", DISTINCT), ("logsumexp", REAL), ("var", DISTINCT), ("std", DISTINCT)]:
    case(_name, _unary(_name), f"{_name}(x)", ("x", M, _dom), plain=True)
    case(_name, lambda ns, x, _n=_name: getattr(ns, _n)(x, axis=1), f"{_name}(x, axis=1)", ("x", M, _dom),
         id=f"{_name}-axis")
    case(_name, lambda ns, x, _n=_name: getattr(ns, _n)(x, axis=(0, -1), keepdims=True) * x,
         f"{_name}(x, axis=(0, -1), keepdims=True) * x", ("x", (2, 1, 3), _dom), id=f"{_name}-keepdims")
case("sum", lambda ns, x: ns.sum(x ** 2), "sum(x**2)", ("x", (), REAL), id="sum-scalar")
# prod is a polynomial: smooth at zeros, where its gradient cannot divide by x
case("prod", lambda ns, x: ns.prod(x, axis=1), "prod(x, axis=1)", ("x", M, Domain("one zero a row", _zeros(1))),
     id="prod-one-zero")
case("prod", lambda ns, x: ns.prod(x, axis=-1), "prod(x, axis=-1)", ("x", M, Domain("two zeros a row", _zeros(2))),
     id="prod-two-zeros")
case("var", lambda ns, x: ns.var(x, axis=0, ddof=1), "var(x, axis=0, ddof=1)", ("x", (3, 2), DISTINCT), id="var-ddof")
case("std", lambda ns, x: ns.std(x, ddof=1), "std(x, ddof=1)", ("x", (4,), DISTINCT), id="std-ddof")
case("norm", _unary("norm"), "norm(x)", ("x", M, DISTINCT_ABS), plain=True)
case("norm", lambda ns, x: ns.norm(x, axis=1), "norm(x, axis=1)", ("x", M, DISTINCT_ABS), id="norm-axis")
for _ord, _text in [(1, "1"), (3, "3"), (0.5, "0.5"), (np.inf, "inf"), (-np.inf, "-inf")]:
    case("norm", lambda ns, x, _ord=_ord: ns.norm(x, _ord, 0), f"norm(x, ord={_text}, axis=0)",
         ("x", M, DISTINCT_ABS), id=f"norm-ord-{_text}", xfail=NORM_INF_DTYPE if "inf" in _text else {})
case("norm", lambda ns, x: ns.norm(x, 2, 1) ** 2, "norm(x, ord=2, axis=1)**2", ("x", M, DISTINCT_ABS), id="norm-ord-2")
case("norm", lambda ns, x: ns.norm(x, "fro"), None, ("x", M, DISTINCT_ABS), id="norm-fro")
case("norm", lambda ns, x: ns.norm(x, None, (0, 1), True) * x, "norm(x, axis=(0, 1), keepdims=True) * x",
     ("x", M, DISTINCT_ABS), id="norm-keepdims")
case("softmax", lambda ns, x: ns.softmax(x, axis=0) * x, "softmax(x, axis=0) * x", ("x", M, REAL))
case("log_softmax", _unary("log_softmax"), "log_softmax(x)", ("x", M, REAL), plain=True)

# -- linear algebra ----------------------------------------------------------------------
case("matmul", lambda ns, a, b: a @ b, "a @ b", ("a", M, REAL), ("b", (3, 2), REAL))
case("matmul", lambda ns, a, b: ns.matmul(a, b), "matmul(a, b)", ("a", V, REAL), ("b", V, REAL), id="matmul-vectors")
case("matmul", lambda ns, a, b: a @ b, "a @ b", ("a", V, REAL), ("b", (2, 3, 2), REAL), id="matmul-vector-stack")
case("matmul", lambda ns, a, b: a @ b, "a @ b", ("a", (2, 1, 2, 3), REAL), ("b", (2, 3, 2), REAL),
     id="matmul-broadcast-stacks")
case("matmul", lambda ns, a, b: (a @ b) ** 2, "(a @ b)**2", ("a", M, REAL), ("b", V, REAL), id="matmul-squared")
case("dot", lambda ns, a, b: ns.dot(a, b), "dot(a, b)", ("a", M, REAL), ("b", V, REAL))
case("dot", lambda ns, a, b: ns.dot(a, b), "dot(a, b)", ("a", (), REAL), ("b", M, REAL), id="dot-scalar",
     xfail={"rules": WEAK_LINALG_DTYPE["rules"]})
case("dot", lambda ns, b: ns.dot(b, 2.0) * b, "dot(b, 2.0) * b", ("b", V, REAL), id="dot-literal",
     xfail=WEAK_LINALG_DTYPE)
case("outer", lambda ns, a, b: ns.outer(a, b), "outer(a, b)", ("a", (2,), REAL), ("b", V, REAL))
case("outer", lambda ns, a, b: ns.outer(a, b) ** 2, "outer(a, b)**2", ("a", (2, 2), REAL), ("b", (), REAL),
     id="outer-flattens", xfail={"rules": WEAK_LINALG_DTYPE["rules"]})
case("trace", lambda ns, x: ns.trace(x) * x, "trace(x) * x", ("x", (3, 3), REAL))
case("trace", _unary("trace"), "trace(x)", ("x", M, REAL), id="trace-rectangular")
case("trace", lambda ns, x: ns.trace(x) ** 2, "trace(x)**2", ("x", (3, 2), REAL), id="trace-tall")
case("inv", _unary("inv"), "inv(x)", ("x", (3, 3), WELL), rtol=1e-5, atol=1e-6)
case("inv", _unary("inv"), "inv(x)", ("x", (2, 2, 2), WELL), id="inv-stack", rtol=1e-5, atol=1e-6)
case("det", _unary("det"), "det(x)", ("x", (3, 3), WELL), rtol=1e-5, atol=1e-6)
case("det", _unary("det"), "det(x)", ("x", (2, 2, 2), WELL), id="det-stack", rtol=1e-5, atol=1e-6)
case("det", _unary("det"), "det(x)", ("x", (3, 3), SINGULAR), id="det-singular", rtol=1e-5, atol=1e-6)
# det's gradient (d det / dx); diff has no printed form for its VJP (it raises "unsupported")
case("cofactor", _unary("cofactor"), "cofactor(x)", ("x", (3, 3), WELL), rtol=1e-5, atol=1e-6, diff=False)
case("cofactor", _unary("cofactor"), "cofactor(x)", ("x", (2, 2, 2), WELL), id="cofactor-stack", rtol=1e-5,
     atol=1e-6, diff=False)
case("cofactor", _unary("cofactor"), "cofactor(x)", ("x", (3, 3), SINGULAR), id="cofactor-singular", rtol=1e-5,
     atol=1e-6, diff=False)
case("solve", lambda ns, a, b: ns.solve(a, b), "solve(a, b)", ("a", (3, 3), WELL), ("b", V, REAL),
     rtol=1e-5, atol=1e-6)
case("solve", lambda ns, a, b: ns.solve(a, b), "solve(a, b)", ("a", (3, 3), WELL), ("b", (3, 2), REAL),
     id="solve-matrix", rtol=1e-5, atol=1e-6)
case("solve", lambda ns, a, b: ns.solve(a, b), "solve(a, b)", ("a", (2, 3, 3), WELL), ("b", (3, 2), REAL),
     id="solve-stack", rtol=1e-5, atol=1e-6)
case("diag", lambda ns, x: ns.diag(x) ** 2, "diag(x)**2", ("x", V, REAL))
case("diag", lambda ns, x: ns.diag(x, 1) ** 2, "diag(x, 1)**2", ("x", V, REAL), id="diag-vector-k")
case("diag", lambda ns, x: ns.diag(x, k=-1) ** 3, "diag(x, k=-1)**3", ("x", (3, 4), REAL), id="diag-matrix")

# -- shapes ------------------------------------------------------------------------------
case("reshape", lambda ns, x: ns.reshape(x, (3, -1)) ** 2 * [1.0, 2.0], "reshape(x, (3, -1))**2 * [1.0, 2.0]",
     ("x", M, REAL))
case("ravel", lambda ns, x: ns.ravel(x) ** 3, "ravel(x)**3", ("x", M, REAL))
case("transpose", lambda ns, x: ns.transpose(x, (2, 0, 1)) * x[0, 0, 0], "transpose(x, (2, 0, 1)) * x[0, 0, 0]",
     ("x", (2, 3, 2), REAL))
case("transpose", lambda ns, x: x.T ** 3 * [1.0, 2.0], "x.T**3 * [1.0, 2.0]", ("x", M, REAL), id="transpose-T")
case("concatenate", lambda ns, a, b: ns.concatenate([a, b * b, a], axis=1), "concatenate([a, b * b, a], axis=1)",
     ("a", M, REAL), ("b", (2, 2), REAL))
case("concatenate", lambda ns, a, b: ns.concatenate([a, b]) ** 2, "concatenate([a, b])**2", ("a", (2,), REAL),
     ("b", V, REAL), id="concatenate-vectors")
case("stack", lambda ns, a, b: ns.stack([a, b * b, a], axis=1), "stack([a, b * b, a], axis=1)", ("a", V, REAL),
     ("b", V, REAL))
case("stack", lambda ns, x: ns.stack([x, 2 * x, x ** 2]), "[x, 2 * x, x**2]", ("x", (), REAL), id="stack-list")
case("expand_dims", lambda ns, x: ns.expand_dims(x, (0, 2)) * x, "expand_dims(x, (0, 2)) * x", ("x", V, REAL))
case("squeeze", lambda ns, x: ns.squeeze(x, 0) ** 3, "squeeze(x, 0)**3", ("x", (1, 3), REAL))
case("squeeze", lambda ns, x: ns.squeeze(x) * 3.0, "squeeze(x) * 3.0", ("x", (1, 3, 1), REAL), id="squeeze-all")
case("broadcast_to", lambda ns, x: ns.broadcast_to(x, (2, 3)) ** 2, "broadcast_to(x, (2, 3))**2", ("x", V, REAL))

# -- indexing (getitem, reached through x[...]) and its adjoint scatter (reached through gradients) --
INDICES: list[tuple[Any, str, Shape, bool]] = [  # (index, id, shape, the language can write it)
    (2, "2", (5,), True), (-1, "-1", (5,), True), (slice(1, 4), "1:4", (5,), True),
    (slice(None, None, -1), "::-1", (5,), True), (slice(4, 0, -2), "4:0:-2", (5,), True),
    ((slice(None), 0), ":, 0", (3, 4), True), ((1, slice(None, None, -1)), "1, ::-1", M, True),
    ((slice(1, None), slice(None, None, 2)), "1:, ::2", (3, 4), True), ((0, 1), "0, 1", M, True),
    # what the language cannot write (index arrays, masks, None, Ellipsis): the Python API only
    (np.array([0, 2, 2, 4, 0]), "array", (5,), False),
    ((np.array([0, 2, 0]), np.array([1, 1, 1])), "arrays", (3, 4), False),
    ((np.array([[0, 0], [2, 1]]), slice(1, 3)), "array-slice", (3, 4), False),
    ((0, [0, 2, 2]), "int-list", M, False),
    ((np.array([0, 2]), 1), "array-int", (3, 2), False),
    ((Ellipsis, 1), "ellipsis", (2, 3, 4), False),
    ((0, Ellipsis, slice(None, None, 2)), "0-ellipsis-step", (2, 3, 4), False),
    ((None, slice(None), None), "newaxis", M, False),
    ((slice(None), None, -1), "newaxis-int", (3, 4), False),
    ((slice(None, None, -2), None, 1), "step-newaxis-int", (4, 3), False),
    (np.array([[True, False, True], [False, True, True]]), "mask", M, False),
    ((), "empty", M, False),
]
for _index, _text, _shape, _written in INDICES:
    _id = _text.replace(" ", "")
    case("getitem", lambda ns, x, _i=_index: x[_i] ** 2, f"x[{_text}]**2" if _written else None,
         ("x", _shape, REAL), id=f"getitem-{_id}")
    _out = np.empty(_shape)[_index].shape
    _w = np.arange(1.0, 1.0 + int(np.prod(_shape))).reshape(_shape)  # every element of the result matters
    case("scatter", lambda ns, g, _i=_index, _s=_shape, _w=_w: ns.scatter(g, index=_i, shape=_s) ** 2 * _w, None,
         ("g", _out, REAL), id=f"scatter-{_id}")
case("getitem", lambda ns, x: x[0] * x[1:], "x[0] * x[1:]", ("x", (4,), REAL), id="getitem-shared")
case("getitem", lambda ns, x: x[x > 0] ** 2, None, ("x", M, NONZERO), id="getitem-tensor-mask")
case("scatter", lambda ns, g: ns.scatter(g, 1, (3, 2)) * [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
     "scatter(g, 1, (3, 2)) * [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]", ("g", (2,), REAL))
case("scatter", lambda ns, g: ns.scatter(g, index=(np.array([0, 0, 2]),), shape=(4,)) ** 2, None,
     ("g", V, REAL), id="scatter-repeated")


# -- the operations of issue 10 (added through the registry alone) ---------------------------
IDX = np.array([[0, 2, 2], [1, 1, 0]])  # repeated indices: their gradients add up
for _name, _da, _db in [("hypot", NONZERO, NONZERO), ("logaddexp", WIDE, WIDE)]:
    case(_name, _binary(_name), f"{_name}(a, b)", ("a", M, _da), ("b", V, _db), plain=True)
for _name, _dom in [("sinc", WIDE), ("deg2rad", WIDE), ("rad2deg", WIDE)]:
    case(_name, _unary(_name), f"{_name}(x)", ("x", M, _dom), plain=True)
case("sinc", lambda ns, x: ns.sinc(x) * x, "sinc(x) * x", ("x", V, uniform(-0.2, 0.2)), id="sinc-near-0")
case("cumsum", lambda ns, x: ns.cumsum(x, axis=1) ** 2, "cumsum(x, axis=1)**2", ("x", M, REAL))
case("cumsum", lambda ns, x: ns.cumsum(x) ** 2, "cumsum(x)**2", ("x", M, REAL), id="cumsum-flat")
case("cumprod", lambda ns, x: ns.cumprod(x, axis=-1), "cumprod(x, axis=-1)", ("x", (2, 4), FACTORS))
case("cumprod", lambda ns, x: ns.cumprod(x, axis=0), "cumprod(x, axis=0)", ("x", (3, 4), Domain(
    "rows with two zeros", _zeros(2), integral=False)), id="cumprod-zeros")
case("trapezoid", lambda ns, y: ns.trapezoid(y ** 2, dx=0.5, axis=0), "trapezoid(y**2, dx=0.5, axis=0)",
     ("y", (4, 3), REAL))
case("trapezoid", lambda ns, y, x: ns.trapezoid(y * x, x), "trapezoid(y * x, x)", ("y", (5,), REAL),
     ("x", (5,), DISTINCT), id="trapezoid-x")
case("sort", lambda ns, x: ns.sort(x, axis=-1) * [1.0, 2.0, 3.0], "sort(x, axis=-1) * [1.0, 2.0, 3.0]",
     ("x", M, DISTINCT))
case("sort", lambda ns, x: ns.sort(x, axis=0) ** 2, "sort(x, axis=0)**2", ("x", (3, 2), DISTINCT), id="sort-axis-0")
case("argsort", lambda ns, x: ns.argsort(x, axis=-1), "argsort(x, axis=-1)", ("x", M, DISTINCT), grad="none")
case("take", lambda ns, a: ns.take(a, IDX, axis=1) ** 2, "take(a, [[0, 2, 2], [1, 1, 0]], axis=1)**2",
     ("a", M, REAL))
case("take", lambda ns, a: ns.take(a, [4, 0, 4, 4]) ** 2, "take(a, [4, 0, 4, 4])**2", ("a", M, REAL),
     id="take-flat")
case("take_along_axis", lambda ns, a: ns.take_along_axis(a, IDX, axis=1) ** 2,
     "take_along_axis(a, [[0, 2, 2], [1, 1, 0]], axis=1)**2", ("a", (2, 4), REAL))
case("add_along_axis", lambda ns, g: ns.add_along_axis(g, IDX, axis=1, size=4) ** 2, None, ("g", M, REAL))
case("einsum", lambda ns, a, x: ns.einsum("ij,j->i", a, x), 'einsum("ij,j->i", a, x)', ("a", M, REAL), ("x", V, REAL))
case("einsum", lambda ns, a, b: ns.einsum("ij,jk->ki", a, b) ** 2, 'einsum("ij,jk->ki", a, b)**2', ("a", M, REAL),
     ("b", (3, 2), REAL),
     id="einsum-matmul")
case("einsum", lambda ns, a: ns.einsum("ii->i", a) ** 2, 'einsum("ii->i", a)**2', ("a", (3, 3), REAL),
     id="einsum-diagonal")


# ----------------------------------------------------------------------------------------
# lookups for other test modules


def cases_of(op: str) -> list[Case]:
    return [c for c in CASES if c.op == op]


def domain_of(op: str, position: int = 0) -> Domain:
    """The domain of input ``position`` of ``op``'s first plain case (for tests that explore shapes)."""
    for c in CASES:
        if c.op == op and c.plain:
            return c.inputs[position].domain
    return cases_of(op)[0].inputs[position].domain


def plain_cases(kind: str | None = None) -> list[Case]:
    """Cases whose call is the op itself on its inputs (``kind``: an ``Op.kind`` to keep)."""
    from difftape.ops import OPS

    return [c for c in CASES if c.plain and (kind is None or OPS[c.op].kind == kind)]
