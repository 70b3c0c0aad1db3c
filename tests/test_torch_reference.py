"""difftape against PyTorch: values, gradients, JVPs, HVPs and Hessians of every op torch has.

An outside check of difftape's numbers by an independent implementation. Every operation of the
registry (``difftape.ops.OPS``) that PyTorch has is run at many shapes (size-1 axes, broadcasting,
empty arrays where the op allows them), parameters (axis, keepdims, ddof, ord, ...) and both float
dtypes, and compared with the same computation written in torch:

- the value (and its dtype: torch at the same dtype);
- the gradient of ``sum(w * f(x))`` for a random weight ``w`` (reverse mode, ``difftape.grad``);
- the JVP along random tangents (``difftape.jvp`` against ``torch.func.jvp``);
- the HVP of ``sum(w * f(x))`` (``difftape.hvp`` against ``torch.autograd.functional.hvp``);
- the whole Hessian of ``sum(w * f(x))`` (``difftape.hessian``, nested tapes) for small inputs.

float64 is compared with ``rtol = 1e-10``, float32 with float32 tolerances (against torch in
float64 on the same float32 inputs: the reference is the exact answer, not another rounding of it).
Inputs come from the shared case table's domains (``tests/op_cases.py``: away from kinks and
domain boundaries), so both sides are smooth there; what difftape documents at kinks (README
"Conventions") is asserted separately, against closed forms. Random programs of the command-line
language (``difftape.answers.program.Program``) are compared with the same program in torch.

A check that fails because of a bug in difftape is a strict xfail with the bug in its reason.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from op_cases import DISTINCT, FACTORS, POS, REAL, WELL, Domain, domain_of

torch = pytest.importorskip("torch")

import difftape as dt  # noqa: E402
from difftape.answers.program import Program  # noqa: E402
from difftape.errors import DifftapeError  # noqa: E402
from difftape.ops import OPS  # noqa: E402

# torch.func's own warning, at its first use
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

TF = torch.nn.functional
Shape = tuple[int, ...]
F64, F32 = "float64", "float32"
NP = {F64: np.float64, F32: np.float32}
HESSIAN_MAX = 24  # the whole Hessian only for inputs of at most this many elements in all


# ----------------------------------------------------------------------------------------
# one spec: one op at one shape with one set of parameters


@dataclass(frozen=True)
class Spec:
    """``dt_fn(*xs)`` with difftape and ``th_fn(*ts)`` with torch compute the same function.

    grad: "fd" (differentiable: every check), "zero" (zero derivative that stays connected:
    floor, sign, ...; asserted as zeros), "none" (no gradient: value only).
    """

    id: str
    op: str
    dt_fn: Callable[..., Any]
    th_fn: Callable[..., Any]
    inputs: tuple[tuple[Shape, Domain], ...]
    grad: str = "fd"
    dtypes: tuple[str, ...] = (F64, F32)
    tol: float = 1.0  # a multiplier on the tolerances (ill-conditioned ops: det, solve, ...)
    xfail: Mapping[str, str] = field(default_factory=dict)  # check -> the precise bug

    def values(self, dtype: str) -> list[np.ndarray]:
        rng = np.random.default_rng(zlib.crc32(self.id.encode()))
        out = []
        for shape, dom in self.inputs:
            v = dom(rng, shape)
            out.append(v if v.dtype == np.bool_ else v.astype(NP[dtype]))
        return out

    @property
    def size(self) -> int:
        return sum(int(np.prod(s, dtype=np.int64)) for s, _ in self.inputs)

    def __repr__(self) -> str:
        return f"<Spec {self.id}>"


SPECS: list[Spec] = []
_IDS: set[str] = set()


def spec(op: str, dt_fn: Callable[..., Any], th_fn: Callable[..., Any], *inputs: tuple[Shape, Domain],
         tag: str = "", **flags: Any) -> None:
    """Add one spec (ids: the op, the input shapes, then the parameters)."""
    assert op in OPS, op
    shapes = ",".join("x".join(map(str, s)) or "()" for s, _ in inputs)
    ident = f"{op}[{shapes}]{tag}"
    if ident not in _IDS:  # a random shape may repeat a listed one
        _IDS.add(ident)
        SPECS.append(Spec(ident, op, dt_fn, th_fn, tuple(inputs), **flags))


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()) + 12345)


def random_shape(rng: np.random.Generator, ndim: tuple[int, int] = (0, 3), size: tuple[int, int] = (1, 4)) -> Shape:
    return tuple(int(d) for d in rng.integers(size[0], size[1] + 1, int(rng.integers(ndim[0], ndim[1] + 1))))


def broadcast_partner(rng: np.random.Generator, shape: Shape) -> Shape:
    """A shape that broadcasts with ``shape``: a suffix of it with some axes set to 1."""
    keep = int(rng.integers(0, len(shape) + 1))
    tail = shape[len(shape) - keep:]
    return tuple(1 if rng.random() < 0.35 else d for d in tail)


def _dims(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, tuple) else (axis,)
    return tuple(sorted(a % ndim for a in axes))


def _both(k: int, *which: int) -> tuple[str, ...]:
    """float32 too for the variants listed (float64 for all: it is where tolerances are tight)."""
    return (F64, F32) if k in which else (F64,)


# ----------------------------------------------------------------------------------------
# elementwise

UNARY = {  # registry name -> torch function
    "negative": torch.neg, "positive": torch.positive, "abs": torch.abs, "sqrt": torch.sqrt,
    "square": torch.square, "exp": torch.exp, "expm1": torch.expm1, "log": torch.log, "log1p": torch.log1p,
    "log2": torch.log2, "log10": torch.log10, "sin": torch.sin, "cos": torch.cos, "tan": torch.tan,
    "arcsin": torch.asin, "arccos": torch.acos, "arctan": torch.atan, "sinh": torch.sinh, "cosh": torch.cosh,
    "tanh": torch.tanh, "arcsinh": torch.asinh, "arccosh": torch.acosh, "arctanh": torch.atanh,
    "sigmoid": torch.sigmoid, "relu": torch.relu, "softplus": TF.softplus, "sinc": torch.sinc,
    "deg2rad": torch.deg2rad, "rad2deg": torch.rad2deg,
    "sign": torch.sign, "floor": torch.floor, "ceil": torch.ceil, "round": torch.round,
}
ZERO_GRAD = {"sign", "floor", "ceil", "round", "floor_divide"}
for _name, _tf in UNARY.items():
    _r = _rng(_name)
    for _k, _shape in enumerate([(), (1,), (0,), (2, 1, 3), random_shape(_r), random_shape(_r)]):
        spec(_name, lambda x, _n=_name: getattr(dt, _n)(x), lambda x, _f=_tf: _f(x), (_shape, domain_of(_name)),
             grad="zero" if _name in ZERO_GRAD else "fd", dtypes=_both(_k, 3, 4))
OFF_TENTH_HALVES = Domain("away from (k+1/2)/10",
                          lambda rng, s: (rng.integers(-30, 30, s) + rng.uniform(-0.4, 0.4, s)) / 10)
spec("round", lambda x: dt.round(x, 1), lambda x: torch.round(x, decimals=1), ((5,), OFF_TENTH_HALVES),
     tag="decimals=1", grad="zero")

BINARY = {
    "add": torch.add, "subtract": torch.sub, "multiply": torch.mul, "divide": torch.div,
    "power": torch.pow, "maximum": torch.maximum, "minimum": torch.minimum, "arctan2": torch.atan2,
    "hypot": torch.hypot, "logaddexp": torch.logaddexp, "remainder": torch.remainder,
    "floor_divide": torch.floor_divide,
}
BINARY_SHAPES: list[tuple[Shape, Shape]] = [
    ((), ()), ((3,), ()), ((), (3,)), ((2, 3), (3,)), ((2, 1), (1, 3)), ((1,), (4,)), ((0,), (1,)), ((2, 0), (2, 1)),
]
for _name, _tf in BINARY.items():
    _r = _rng(_name)
    _extra = []
    for _ in range(2):
        _s = random_shape(_r, (1, 3))
        _extra.append((_s, broadcast_partner(_r, _s)) if _r.random() < 0.5 else (broadcast_partner(_r, _s), _s))
    for _k, (_sa, _sb) in enumerate(BINARY_SHAPES + _extra):
        spec(_name, lambda a, b, _n=_name: getattr(dt, _n)(a, b), lambda a, b, _f=_tf: _f(a, b),
             (_sa, domain_of(_name, 0)), (_sb, domain_of(_name, 1)),
             grad="zero" if _name in ZERO_GRAD else "fd", dtypes=_both(_k, 3, 8))
# x ** p for integer and float literals (numpy and torch both special-case small powers)
for _p in (0, 1, 2, 3, -1, -2, 0.5, 2.5):
    spec("power", lambda x, _p=_p: x ** _p, lambda x, _p=_p: x ** _p, ((2, 3), POS), tag=f"x**{_p}")
spec("power", lambda x: 2.0 ** x, lambda x: 2.0 ** x, ((4,), REAL), tag="2.0**x")

# where: the condition is a constant of the spec (a bool array), the branches are inputs
for _k, (_sc, _sa, _sb) in enumerate([((2, 3), (3,), (2, 1)), ((), (), ()), ((4,), (), (4,)), ((0, 2), (2,), ())]):
    _c = _rng(f"where{_k}").random(_sc) < 0.5
    spec("where", lambda a, b, _c=_c: dt.where(_c, a, b),
         lambda a, b, _c=_c: torch.where(torch.as_tensor(np.asarray(_c)), a, b),
         (_sa, REAL), (_sb, REAL), tag=f"cond{_sc}", dtypes=_both(_k, 0))
for _k, (_sx, _sl, _sh) in enumerate([((2, 3), (3,), ()), ((4,), (), ()), ((), (), ()), ((2, 1), (1, 3), (2, 3))]):
    spec("clip", dt.clip, torch.clamp, (_sx, domain_of("clip", 0)), (_sl, domain_of("clip", 1)),
         (_sh, domain_of("clip", 2)), dtypes=_both(_k, 0))

# ----------------------------------------------------------------------------------------
# comparisons and logic (values only), stop_gradient, *_like, full

COMPARE = {
    "less": torch.lt, "less_equal": torch.le, "greater": torch.gt, "greater_equal": torch.ge, "equal": torch.eq,
    "not_equal": torch.ne, "logical_and": torch.logical_and, "logical_or": torch.logical_or,
}
for _name, _tf in COMPARE.items():
    for _sa, _sb in [((2, 3), (3,)), ((), (4,)), ((0,), ())]:
        spec(_name, lambda a, b, _n=_name: getattr(dt, _n)(a, b), lambda a, b, _f=_tf: _f(a, b),
             (_sa, domain_of(_name, 0)), (_sb, domain_of(_name, 1)), grad="none")
for _name, _tf in {"logical_not": torch.logical_not, "isfinite": torch.isfinite, "isnan": torch.isnan,
                   "isinf": torch.isinf}.items():
    for _s in [(2, 3), (), (0,)]:
        spec(_name, lambda x, _n=_name: getattr(dt, _n)(x), lambda x, _f=_tf: _f(x), (_s, domain_of(_name)),
             grad="none")
for _s in [(2, 3), (), (0, 2)]:
    spec("stop_gradient", dt.stop_gradient, torch.detach, (_s, REAL), grad="none")
    spec("zeros_like", dt.zeros_like, torch.zeros_like, (_s, REAL), grad="none")
    spec("ones_like", dt.ones_like, torch.ones_like, (_s, REAL), grad="none")
for _shape, _sv in [((2, 3), ()), ((2, 3), (3,)), ((2, 3), (2, 1)), ((), ()), ((0, 3), (3,))]:
    spec("full", lambda v, _s=_shape: dt.full(_s, v), lambda v, _s=_shape: torch.broadcast_to(v, _s).clone(),
         (_sv, REAL), tag=f"shape={_shape}")

# ----------------------------------------------------------------------------------------
# reductions


def _th_prod(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    for d in reversed(_dims(axis, x.ndim)):
        x = torch.prod(x, dim=d, keepdim=keepdims)
    return x


def _th_reduce(fn: Callable[..., Any]) -> Callable[..., Any]:
    def run(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        if x.ndim == 0:
            return fn(x.reshape(1), dim=0)
        return fn(x, dim=_dims(axis, x.ndim), keepdim=keepdims)

    return run


REDUCE = {
    "sum": _th_reduce(torch.sum), "mean": _th_reduce(torch.mean), "prod": _th_prod,
    "max": _th_reduce(torch.amax), "min": _th_reduce(torch.amin), "logsumexp": _th_reduce(torch.logsumexp),
}
REDUCE_PARAMS: list[tuple[Shape, dict[str, Any]]] = [
    ((2, 3), {}), ((2, 3), {"axis": 0}), ((2, 3), {"axis": -1, "keepdims": True}), ((2, 1, 3), {"axis": (0, 2)}),
    ((2, 1, 3), {"axis": 1}), ((), {}), ((1,), {"axis": 0, "keepdims": True}),
    ((3, 2, 2), {"axis": None, "keepdims": True}),
]
for _name, _tf in REDUCE.items():
    _r = _rng(_name)
    _params = list(REDUCE_PARAMS)
    if _name in ("sum", "prod"):
        _params += [((0, 3), {"axis": 0}), ((0,), {})]
    for _ in range(2):
        _s = random_shape(_r, (1, 3))
        _params.append((_s, {"axis": int(_r.integers(-len(_s), len(_s))), "keepdims": bool(_r.random() < 0.5)}))
    for _k, (_s, _kw) in enumerate(_params):
        spec(_name, lambda x, _n=_name, _kw=_kw: getattr(dt, _n)(x, **_kw), lambda x, _f=_tf, _kw=_kw: _f(x, **_kw),
             (_s, domain_of(_name)), tag=str(_kw), dtypes=_both(_k, 1, 3))
for _name, _tf in {"var": torch.var, "std": torch.std}.items():
    for _k, (_s, _kw) in enumerate([((2, 3), {}), ((2, 3), {"axis": 0}), ((3, 4), {"axis": 1, "ddof": 1}),
                                    ((2, 1, 3), {"axis": (0, 2), "keepdims": True}), ((5,), {"ddof": 2}),
                                    ((4, 2), {"axis": -2, "ddof": 1, "keepdims": True})]):
        _tkw = {"dim": _kw.get("axis"), "correction": _kw.get("ddof", 0), "keepdim": _kw.get("keepdims", False)}
        spec(_name, lambda x, _n=_name, _kw=_kw: getattr(dt, _n)(x, **_kw),
             lambda x, _f=_tf, _tkw=_tkw: _f(x, **_tkw), (_s, DISTINCT), tag=str(_kw), dtypes=_both(_k, 1, 2))


def _th_norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
    """numpy's norm for vector norms and the Frobenius norm (what difftape supports)."""
    if ord in (None, "fro"):
        dims = _dims(axis, x.ndim)
        return torch.linalg.vector_norm(x, 2, dim=dims, keepdim=keepdims) if x.ndim else x.abs()
    return torch.linalg.vector_norm(x, ord, dim=axis, keepdim=keepdims)


for _k, (_s, _kw) in enumerate([((2, 3), {}), ((4,), {}), ((2, 3), {"axis": 1}), ((2, 3), {"axis": 0, "ord": 1}),
                                ((3, 2), {"axis": 0, "ord": 3}), ((2, 3), {"axis": 1, "ord": 0.5}),
                                ((2, 3), {"axis": -1, "ord": math.inf}), ((2, 3), {"axis": 0, "ord": -math.inf}),
                                ((2, 3), {"axis": 1, "ord": 2, "keepdims": True}),
                                ((2, 3, 2), {"axis": (0, 2), "keepdims": True}), ((2, 3), {"ord": "fro"}),
                                ((5,), {"ord": 1.5}), ((1,), {"ord": 2}), ((0,), {})]):
    spec("norm", lambda x, _kw=_kw: dt.norm(x, **_kw), lambda x, _kw=_kw: _th_norm(x, **_kw),
         (_s, domain_of("norm")), tag=str(_kw), dtypes=_both(_k, 0, 3))

# along one axis
for _name, _tf in {"softmax": torch.softmax, "log_softmax": torch.log_softmax}.items():
    for _k, (_s, _ax) in enumerate([((2, 3), -1), ((2, 3), 0), ((4,), 0), ((1, 3), 0), ((2, 1, 3), 1), ((2, 0), -1)]):
        spec(_name, lambda x, _n=_name, _ax=_ax: getattr(dt, _n)(x, axis=_ax), lambda x, _f=_tf, _ax=_ax: _f(x, _ax),
             (_s, REAL), tag=f"axis={_ax}", dtypes=_both(_k, 0))
for _name, _tf in {"cumsum": torch.cumsum, "cumprod": torch.cumprod}.items():
    for _k, (_s, _ax) in enumerate([((2, 3), 1), ((2, 3), 0), ((2, 3), None), ((5,), 0), ((1,), 0), ((), None),
                                    ((2, 1, 3), -1), ((0, 3), 0)]):
        spec(_name, lambda x, _n=_name, _ax=_ax: getattr(dt, _n)(x, axis=_ax),
             lambda x, _f=_tf, _ax=_ax: _f(x.flatten(), 0) if _ax is None else _f(x, _ax),
             (_s, FACTORS), tag=f"axis={_ax}", dtypes=_both(_k, 0))
for _k, (_sy, _kw) in enumerate([((4, 3), {"dx": 0.5, "axis": 0}), ((5,), {}), ((2, 3), {"axis": -1, "dx": 2.0}),
                                 ((1, 2), {"axis": 0}), ((2,), {"dx": 0.1})]):
    spec("trapezoid", lambda y, _kw=_kw: dt.trapezoid(y, **_kw),
         lambda y, _kw=_kw: torch.trapezoid(y, dx=_kw.get("dx", 1.0), dim=_kw.get("axis", -1)),
         (_sy, REAL), tag=str(_kw), dtypes=_both(_k, 0))
for _sy, _sx, _ax in [((5,), (5,), -1), ((2, 4), (4,), -1), ((3, 2), (3, 2), 0)]:
    spec("trapezoid", lambda y, x, _ax=_ax: dt.trapezoid(y, x, axis=_ax),
         lambda y, x, _ax=_ax: torch.trapezoid(y, x, dim=_ax), (_sy, REAL), (_sx, DISTINCT), tag=f"x,axis={_ax}")

# ----------------------------------------------------------------------------------------
# linear algebra

for _k, (_sa, _sb) in enumerate([((2, 3), (3, 2)), ((3,), (3,)), ((3,), (2, 3, 2)), ((2, 1, 2, 3), (2, 3, 2)),
                                 ((2, 3), (3,)), ((1, 3), (3, 1)), ((0, 3), (3, 2)), ((2, 0), (0, 3))]):
    spec("matmul", dt.matmul, torch.matmul, (_sa, REAL), (_sb, REAL), dtypes=_both(_k, 0))


def _th_dot(a: Any, b: Any) -> Any:
    """numpy's dot for the shapes used here: a scalar multiplies, 1-D and 2-D are matmul."""
    return a * b if a.ndim == 0 or b.ndim == 0 else torch.matmul(a, b)


for _k, (_sa, _sb) in enumerate([((2, 3), (3,)), ((3,), (3,)), ((), (2, 3)), ((2, 3), (3, 4)), ((3,), (3, 2))]):
    spec("dot", dt.dot, _th_dot, (_sa, REAL), (_sb, REAL), dtypes=_both(_k, 0))
for _sa, _sb in [((2,), (3,)), ((2, 2), ()), ((1,), (4,)), ((0,), (2,))]:
    spec("outer", dt.outer, lambda a, b: torch.outer(a.flatten(), b.flatten()), (_sa, REAL), (_sb, REAL))
for _s in [(3, 3), (2, 3), (3, 2), (1, 1)]:
    spec("trace", dt.trace, torch.trace, (_s, REAL))


def _th_cofactor(x: Any) -> Any:
    """d det / dx by torch's own derivative of det (differentiable again: torch.func composes)."""
    return torch.func.grad(lambda a: torch.linalg.det(a).sum())(x)


for _k, _s in enumerate([(3, 3), (2, 2, 2), (1, 1), (4, 4), (2, 1, 3, 3)]):
    spec("inv", dt.inv, torch.linalg.inv, (_s, WELL), tol=10, dtypes=_both(_k, 0))
    spec("det", dt.det, torch.linalg.det, (_s, WELL), tol=10, dtypes=_both(_k, 0))
    spec("cofactor", dt.cofactor, _th_cofactor, (_s, WELL), tol=10, dtypes=_both(_k, 0))
for _k, (_sa, _sb) in enumerate([((3, 3), (3,)), ((3, 3), (3, 2)), ((2, 3, 3), (3, 2)), ((1, 1), (1,)),
                                 ((2, 2, 2), (2, 2, 1))]):
    spec("solve", dt.solve, torch.linalg.solve, (_sa, WELL), (_sb, REAL), tol=10, dtypes=_both(_k, 0))
for _s, _kd in [((3,), 0), ((3,), 1), ((3,), -2), ((3, 4), 0), ((3, 4), -1), ((3, 4), 2), ((1,), 0), ((2, 2), 1)]:
    spec("diag", lambda x, _kd=_kd: dt.diag(x, _kd), lambda x, _kd=_kd: torch.diag(x, _kd), (_s, REAL),
         tag=f"k={_kd}")
for _k, (_sub, _shapes) in enumerate([("ij,j->i", [(2, 3), (3,)]), ("ij,jk->ki", [(2, 3), (3, 2)]),
                                      ("ii->i", [(3, 3)]), ("ii->", [(3, 3)]), ("i,i->", [(4,), (4,)]),
                                      ("bij,bjk->bik", [(2, 2, 3), (2, 3, 2)]), ("ij->", [(2, 3)]),
                                      ("i,j,k->ijk", [(2,), (3,), (2,)]), ("ij,ij->ij", [(2, 3), (2, 3)]),
                                      ("ij->ji", [(2, 3)])]):
    spec("einsum", lambda *xs, _sub=_sub: dt.einsum(_sub, *xs), lambda *xs, _sub=_sub: torch.einsum(_sub, *xs),
         *[(s, REAL) for s in _shapes], tag=_sub, dtypes=_both(_k, 1))

# ----------------------------------------------------------------------------------------
# shapes and indexing

for _s, _new in [((2, 3), (3, -1)), ((2, 3), (6,)), ((), (1, 1)), ((1, 4), (2, 2)), ((0, 3), (3, 0))]:
    spec("reshape", lambda x, _n=_new: dt.reshape(x, _n), lambda x, _n=_new: torch.reshape(x, _n), (_s, REAL),
         tag=f"to={_new}")
for _s in [(2, 3), (), (2, 1, 2)]:
    spec("ravel", dt.ravel, torch.flatten, (_s, REAL))
for _s, _axes in [((2, 3, 2), (2, 0, 1)), ((2, 3), None), ((4,), None), ((2, 1, 3), (1, 2, 0))]:
    spec("transpose", lambda x, _a=_axes: dt.transpose(x, _a),
         lambda x, _a=_axes: x.permute(*(_a if _a is not None else reversed(range(x.ndim)))), (_s, REAL),
         tag=f"axes={_axes}")
for _shapes, _ax in [([(2, 3), (2, 2), (2, 3)], 1), ([(2,), (3,)], 0), ([(1, 2), (3, 2)], 0), ([(0, 2), (2, 2)], 0),
                     ([(2, 1, 2), (2, 2, 2)], -2)]:
    spec("concatenate", lambda *xs, _ax=_ax: dt.concatenate(list(xs), axis=_ax),
         lambda *xs, _ax=_ax: torch.cat(xs, _ax), *[(s, REAL) for s in _shapes], tag=f"axis={_ax}")
for _shapes, _ax in [([(3,), (3,), (3,)], 1), ([(), ()], 0), ([(2, 3), (2, 3)], -1), ([(0,), (0,)], 0)]:
    spec("stack", lambda *xs, _ax=_ax: dt.stack(list(xs), axis=_ax), lambda *xs, _ax=_ax: torch.stack(xs, _ax),
         *[(s, REAL) for s in _shapes], tag=f"axis={_ax}")


def _th_expand(x: Any, axis: Any) -> Any:
    axes = axis if isinstance(axis, tuple) else (axis,)
    nd = x.ndim + len(axes)
    for a in sorted(a % nd for a in axes):
        x = x.unsqueeze(a)
    return x


for _s, _ax in [((3,), (0, 2)), ((3,), 0), ((2, 3), -1), ((), 0)]:
    spec("expand_dims", lambda x, _ax=_ax: dt.expand_dims(x, _ax), lambda x, _ax=_ax: _th_expand(x, _ax), (_s, REAL),
         tag=f"axis={_ax}")
for _s, _ax in [((1, 3), 0), ((1, 3, 1), None), ((2, 1, 1), (1, 2)), ((1,), None)]:
    spec("squeeze", lambda x, _ax=_ax: dt.squeeze(x, _ax),
         lambda x, _ax=_ax: x.squeeze() if _ax is None else x.squeeze(_ax), (_s, REAL), tag=f"axis={_ax}")
for _s, _to in [((3,), (2, 3)), ((), (2, 2)), ((2, 1), (2, 3)), ((1, 3), (4, 2, 3)), ((1,), (0,))]:
    spec("broadcast_to", lambda x, _to=_to: dt.broadcast_to(x, _to), lambda x, _to=_to: torch.broadcast_to(x, _to),
         (_s, REAL), tag=f"to={_to}")

# getitem and its adjoint scatter, with the indices torch reads as numpy does (torch has no negative steps)
INDICES: list[tuple[Any, str, Shape]] = [
    (2, "2", (5,)), (-1, "-1", (5,)), (slice(1, 4), "1:4", (5,)), ((slice(None), 0), ":,0", (3, 4)),
    ((slice(1, None), slice(None, None, 2)), "1:,::2", (3, 4)), ((0, 1), "0,1", (2, 3)),
    (np.array([0, 2, 2, 4, 0]), "array", (5,)), ((np.array([0, 2, 0]), np.array([1, 1, 1])), "arrays", (3, 4)),
    ((Ellipsis, 1), "...,1", (2, 3, 4)), ((None, slice(None), None), "None,:,None", (2, 3)),
    (np.array([[True, False, True], [False, True, True]]), "mask", (2, 3)), ((), "()", (2, 3)),
    (slice(0, 0), "0:0", (4,)), ((np.array([[0, 0], [2, 1]]), slice(1, 3)), "array,1:3", (3, 4)),
]


def _th_index(index: Any) -> Any:
    parts = index if isinstance(index, tuple) else (index,)
    out = tuple(torch.from_numpy(p) if isinstance(p, np.ndarray) else p for p in parts)
    return out if isinstance(index, tuple) else out[0]


def _th_scatter(g: Any, index: Any, shape: Shape) -> Any:
    """getitem's adjoint: torch's own VJP of indexing (linear, so at any point)."""
    return torch.func.vjp(lambda z: z[_th_index(index)], torch.zeros(shape, dtype=g.dtype))[1](g)[0]


for _index, _text, _shape in INDICES:
    spec("getitem", lambda x, _i=_index: x[_i], lambda x, _i=_index: x[_th_index(_i)], (_shape, REAL), tag=_text)
    spec("scatter", lambda g, _i=_index, _s=_shape: dt.scatter(g, index=_i, shape=_s),
         lambda g, _i=_index, _s=_shape: _th_scatter(g, _i, _s), (np.empty(_shape)[_index].shape, REAL), tag=_text)

for _k, (_s, _ax) in enumerate([((2, 3), -1), ((3, 2), 0), ((5,), 0), ((1,), 0), ((2, 1, 3), 1), ((0, 2), 0)]):
    spec("sort", lambda x, _ax=_ax: dt.sort(x, axis=_ax),
         lambda x, _ax=_ax: torch.sort(x, dim=_ax, stable=True).values, (_s, DISTINCT), tag=f"axis={_ax}",
         dtypes=_both(_k, 0))
    spec("argsort", lambda x, _ax=_ax: dt.argsort(x, axis=_ax),
         lambda x, _ax=_ax: torch.argsort(x, dim=_ax, stable=True), (_s, DISTINCT), tag=f"axis={_ax}", grad="none")
# with ties: both sorts are stable, so both give each element the gradient of the place it moves to
spec("sort", lambda x: dt.sort(x, axis=-1), lambda x: torch.sort(x, dim=-1, stable=True).values,
     ((3, 4), domain_of("less")), tag="ties")
spec("argsort", lambda x: dt.argsort(x, axis=-1), lambda x: torch.argsort(x, dim=-1, stable=True),
     ((3, 4), domain_of("less")), tag="ties", grad="none")


def _th_take(a: Any, idx: np.ndarray, axis: Any) -> Any:
    t = torch.from_numpy(idx)
    if axis is None:
        return torch.take(a, t)
    return a[(slice(None),) * (axis % a.ndim) + (t,)]


IDX = np.array([[0, 2, 2], [1, 1, 0]])  # repeated indices: their gradients add up
for _s, _idx, _ax in [((2, 3), IDX, 1), ((2, 3), np.array([4, 0, 4, 4]), None), ((3, 2), np.array([2, 0]), 0),
                      ((2, 3, 2), np.array([[1], [0]]), -1), ((3,), np.array(1), 0),
                      ((2, 3), np.array([], dtype=np.int64), 1)]:
    spec("take", lambda a, _i=_idx, _ax=_ax: dt.take(a, _i, axis=_ax), lambda a, _i=_idx, _ax=_ax: _th_take(a, _i, _ax),
         (_s, REAL), tag=f"idx={_idx.tolist()},axis={_ax}")
for _s, _idx, _ax in [((2, 4), IDX, 1), ((3, 2), np.array([[2, 0], [0, 0]]), 0), ((2, 3), np.array([[1], [2]]), -1),
                      ((2, 3), np.array([[0, 1, 1]]), 0), ((4,), np.array([3, 3, 0]), 0)]:
    spec("take_along_axis", lambda a, _i=_idx, _ax=_ax: dt.take_along_axis(a, _i, axis=_ax),
         lambda a, _i=_idx, _ax=_ax: torch.take_along_dim(a, torch.from_numpy(_i), dim=_ax), (_s, REAL),
         tag=f"idx={_idx.tolist()},axis={_ax}")


def _th_add_along(g: Any, idx: np.ndarray, axis: int, size: int) -> Any:
    axis %= g.ndim
    out = torch.zeros(g.shape[:axis] + (size,) + g.shape[axis + 1:], dtype=g.dtype)
    return out.scatter_add(axis, torch.from_numpy(np.broadcast_to(idx, g.shape).copy()), g)


for _s, _idx, _ax, _size in [((2, 3), IDX, 1, 4), ((2, 2), np.array([[2, 0], [0, 0]]), 0, 3),
                             ((3,), np.array([1, 1, 0]), 0, 2), ((2, 3), np.array([[0, 1, 1]]), -1, 2)]:
    spec("add_along_axis", lambda g, _i=_idx, _ax=_ax, _n=_size: dt.add_along_axis(g, _i, axis=_ax, size=_n),
         lambda g, _i=_idx, _ax=_ax, _n=_size: _th_add_along(g, _i, _ax, _n), (_s, REAL),
         tag=f"idx={_idx.tolist()},axis={_ax},size={_size}")

def test_add_along_axis_indices_must_fit() -> None:
    """Indices one long on the axis were broadcast along it eagerly (a value), while the shape rule (and so
    the language) rejects them and the gradient failed with numpy's reshape error: now both reject them."""
    g, idx = np.arange(6.0).reshape(2, 3), np.array([[0], [1]])
    with pytest.raises(DifftapeError, match="do not fit"):
        dt.add_along_axis(g, idx, axis=-1, size=2)
    with pytest.raises(DifftapeError, match="do not fit"):
        dt.grad(lambda v: dt.sum(dt.add_along_axis(v, idx, axis=-1, size=2)))(g)


#: ops of the registry with no spec here, and why (test_every_op_is_compared keeps this honest)
NOT_COMPARED = {
    name: "a constructor without tensor inputs: test_constructors compares its values"
    for name in ("zeros", "ones", "eye", "arange", "linspace")
}


def test_every_op_is_compared() -> None:
    missing = sorted(set(OPS) - {s.op for s in SPECS} - set(NOT_COMPARED))
    assert not missing, f"ops of difftape.ops.OPS with no torch comparison: {missing}"


@pytest.mark.parametrize("name, args, kwargs, th", [
    ("zeros", ((2, 3),), {}, lambda: torch.zeros(2, 3, dtype=torch.float64)),
    ("ones", ((3,),), {}, lambda: torch.ones(3, dtype=torch.float64)),
    ("eye", (3,), {}, lambda: torch.eye(3, dtype=torch.float64)),
    ("eye", (2, 4), {}, lambda: torch.eye(2, 4, dtype=torch.float64)),
    ("arange", (5,), {}, lambda: torch.arange(5)),
    ("arange", (1.0, 2.0, 0.25), {}, lambda: torch.arange(1.0, 2.0, 0.25, dtype=torch.float64)),
    ("linspace", (0.0, 1.0, 7), {}, lambda: torch.linspace(0.0, 1.0, 7, dtype=torch.float64)),
    ("linspace", (-2.0, 3.0, 1), {}, lambda: torch.linspace(-2.0, 3.0, 1, dtype=torch.float64)),
])
def test_constructors(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], th: Callable[[], Any]) -> None:
    got = np.asarray(getattr(dt, name)(*args, **kwargs).numpy())
    ref = th().numpy()
    assert got.dtype == ref.dtype and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-15, atol=1e-15)


# ----------------------------------------------------------------------------------------
# the comparisons


def _rtol(dtype: str, tol: float = 1.0) -> float:
    return (1e-10 if dtype == F64 else 5e-5) * tol


def assert_close(got: Any, ref: Any, dtype: str, tol: float = 1.0, what: str = "") -> None:
    """``got`` (difftape) equals ``ref`` (torch in float64) to rtol, with atol scaled by the largest |ref|."""
    got = np.asarray(got.numpy() if hasattr(got, "numpy") else got)
    ref = np.asarray(ref)
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, torch {ref.shape}"
    if ref.dtype.kind in "biu":
        np.testing.assert_array_equal(got, ref, err_msg=what)
        return
    rtol = _rtol(dtype, tol)
    finite = ref[np.isfinite(ref)]
    scale = max(1.0, float(np.max(np.abs(finite)))) if finite.size else 1.0
    np.testing.assert_allclose(got.astype(np.float64), ref.astype(np.float64), rtol=rtol, atol=rtol * scale,
                               equal_nan=True, err_msg=what)


def _t(x: np.ndarray, grad: bool = False) -> Any:
    """A float64 torch tensor of x (bool stays bool)."""
    t = torch.from_numpy(np.array(x, dtype=np.float64) if x.dtype != np.bool_ else np.array(x))
    return t.requires_grad_(True) if grad else t


def _np(t: Any) -> np.ndarray:
    return t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def _weights(s: Spec, dtype: str) -> tuple[np.ndarray, Any]:
    """A random weight w of the output's shape: the gradient of sum(w * f) is the VJP with cotangent w."""
    shape = tuple(s.th_fn(*[_t(x) for x in s.values(F64)]).shape)
    rng = np.random.default_rng(zlib.crc32(s.id.encode()) + 1)
    w = np.asarray(rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape), dtype=NP[dtype])
    return w, torch.from_numpy(w.astype(np.float64))


def _tangents(s: Spec, dtype: str) -> list[np.ndarray]:
    rng = np.random.default_rng(zlib.crc32(s.id.encode()) + 2)
    return [np.asarray(rng.uniform(-1, 1, shape), dtype=NP[dtype]) for shape, _ in s.inputs]


def _scalar_dt(s: Spec, w: np.ndarray) -> Callable[..., Any]:
    return lambda *xs: dt.sum(s.dt_fn(*xs) * w)


def _scalar_th(s: Spec, w: Any) -> Callable[..., Any]:
    return lambda *ts: (s.th_fn(*ts) * w).sum()


def _items(check: str, kinds: tuple[str, ...], dtypes: tuple[str, ...] = (F64, F32),
           keep: Callable[[Spec], bool] = lambda s: True) -> list[Any]:
    out = []
    for s in SPECS:
        if s.grad not in kinds or not keep(s):
            continue
        for d in s.dtypes:
            if d in dtypes:
                marks = [pytest.mark.xfail(strict=True, reason=s.xfail[check])] if check in s.xfail else []
                out.append(pytest.param(s, d, id=f"{s.id}-{d}", marks=marks))
    return out


@pytest.mark.parametrize("s, dtype", _items("value", ("fd", "zero", "none")))
def test_value(s: Spec, dtype: str) -> None:
    xs = s.values(dtype)
    got = s.dt_fn(*xs)
    got = np.asarray(got.numpy() if hasattr(got, "numpy") else got)
    typed = s.th_fn(*[torch.from_numpy(np.array(x)) for x in xs])  # torch at the inputs' dtype: the result's dtype
    assert str(got.dtype) == str(typed.dtype).removeprefix("torch."), f"dtype {got.dtype}, torch {typed.dtype}"
    assert_close(got, _np(s.th_fn(*[_t(x) for x in xs])), dtype, s.tol, "value")


@pytest.mark.parametrize("s, dtype", _items("grad", ("fd", "zero")))
def test_grad(s: Spec, dtype: str) -> None:
    xs = s.values(dtype)
    w, wt = _weights(s, dtype)
    got = dt.grad(_scalar_dt(s, w), argnums=list(range(len(xs))))(*xs)
    if s.grad == "zero":  # floor, sign, ...: zero, as torch's (floor_divide has no derivative in torch)
        refs = [np.zeros(x.shape) for x in xs]
    else:
        ts = [_t(x, True) for x in xs]
        out = _scalar_th(s, wt)(*ts)
        grads = torch.autograd.grad(out, ts, allow_unused=True) if out.requires_grad else [None] * len(ts)
        refs = [np.zeros(x.shape) if r is None else _np(r) for x, r in zip(xs, grads)]
    for k, (g, r) in enumerate(zip(got, refs)):
        assert np.asarray(g.numpy()).dtype == NP[dtype], f"d/dx{k} has dtype {np.asarray(g.numpy()).dtype}"
        assert_close(g, r, dtype, s.tol, f"d/dx{k}")


@pytest.mark.parametrize("s, dtype", _items("jvp", ("fd", "zero")))
def test_jvp(s: Spec, dtype: str) -> None:
    xs, vs = s.values(dtype), _tangents(s, dtype)
    y, tangent = dt.jvp(s.dt_fn, xs, vs)
    if s.grad == "zero":
        ref = np.zeros(np.shape(y.numpy()))
    else:
        ref = _np(torch.func.jvp(s.th_fn, tuple(_t(x) for x in xs), tuple(_t(v) for v in vs))[1])
    assert_close(tangent, ref, dtype, s.tol, "jvp")


@pytest.mark.parametrize("s, dtype", _items("hvp", ("fd",), keep=lambda s: s.size > 0))
def test_hvp(s: Spec, dtype: str) -> None:
    xs, vs = s.values(dtype), _tangents(s, dtype)
    w, wt = _weights(s, dtype)
    got = dt.hvp(_scalar_dt(s, w), list(xs), list(vs))
    _, refs = torch.autograd.functional.hvp(_scalar_th(s, wt), tuple(_t(x) for x in xs), tuple(_t(v) for v in vs))
    for k, (g, r) in enumerate(zip(got, refs)):
        assert_close(g, _np(r), dtype, 10 * s.tol, f"hvp x{k}")


def _small(s: Spec) -> bool:
    """Inputs of at most HESSIAN_MAX elements and a non-empty output (torch's hessian needs one)."""
    sizes = [int(np.prod(shape, dtype=np.int64)) for shape, _ in s.inputs]
    return 0 < min(sizes) and sum(sizes) <= HESSIAN_MAX and s.th_fn(*[_t(x) for x in s.values(F64)]).numel() > 0


@pytest.mark.parametrize("s, dtype", _items("hessian", ("fd",), (F64,), keep=_small))
def test_hessian(s: Spec, dtype: str) -> None:
    xs = s.values(dtype)
    w, wt = _weights(s, dtype)
    got = dt.hessian(_scalar_dt(s, w), list(xs))
    refs = torch.autograd.functional.hessian(_scalar_th(s, wt), tuple(_t(x) for x in xs))
    for i in range(len(xs)):
        for j in range(len(xs)):
            assert_close(got[i][j], _np(refs[i][j]), dtype, 10 * s.tol, f"d2/dx{i}dx{j}")


# ----------------------------------------------------------------------------------------
# at kinks and special points: difftape's documented conventions (README "Conventions"), against
# closed forms; torch agrees on most of them (named where it does not)


def _g(f: Callable[..., Any], *xs: Any) -> list[np.ndarray]:
    xs = [np.asarray(x, dtype=np.float64) for x in xs]
    return [np.asarray(g.numpy()) for g in dt.grad(f, argnums=list(range(len(xs))))(*xs)]


def _tg(f: Callable[..., Any], *xs: Any) -> list[np.ndarray]:
    ts = [torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True) for x in xs]
    return [_np(g) for g in torch.autograd.grad(f(*ts), ts)]


@pytest.mark.parametrize("name, f, tf, xs, expected", [
    ("abs slope 0 at 0", lambda x: dt.sum(dt.abs(x)), lambda x: x.abs().sum(), ([0.0, 2.0, -1.0],), [[0, 1, -1]]),
    ("relu slope 0 at 0", lambda x: dt.sum(dt.relu(x)), lambda x: x.relu().sum(), ([0.0, 2.0, -1.0],), [[0, 1, 0]]),
    ("max ties share", lambda x: dt.max(x), lambda x: x.amax(), ([1.0, 3.0, 3.0],), [[0, 0.5, 0.5]]),
    ("min ties share along an axis", lambda x: dt.sum(dt.min(x, axis=1) * [1.0, 2.0]),
     lambda x: (x.amin(1) * torch.tensor([1.0, 2.0], dtype=torch.float64)).sum(),
     ([[1.0, 1.0, 3.0], [0.0, 0.0, 0.0]],), [[[0.5, 0.5, 0], [2 / 3, 2 / 3, 2 / 3]]]),
    ("maximum tie shares", lambda a, b: dt.sum(dt.maximum(a, b)), lambda a, b: torch.maximum(a, b).sum(),
     ([1.0, 2.0], [1.0, 3.0]), [[0.5, 0], [0.5, 1]]),
    ("clip passes at its bounds", lambda x: dt.sum(dt.clip(x, 0.0, 1.0)), lambda x: x.clamp(0.0, 1.0).sum(),
     ([0.0, 1.0, 2.0, -1.0],), [[1, 1, 0, 0]]),
    ("norm at 0", lambda x: dt.norm(x), lambda x: torch.linalg.vector_norm(x), ([0.0, 0.0],), [[0, 0]]),
    ("std at 0", lambda x: dt.std(x), lambda x: x.std(correction=0), ([1.5, 1.5, 1.5],), [[0, 0, 0]]),
    ("norm ord=1 at a zero element", lambda x: dt.norm(x, 1), lambda x: torch.linalg.vector_norm(x, 1),
     ([0.0, -2.0],), [[0, -1]]),
    ("x**0 slope 0", lambda x: dt.sum(x ** 0), lambda x: (x ** 0).sum(), ([0.0, 2.0],), [[0, 0]]),
    ("prod with one zero", lambda x: dt.prod(x), lambda x: x.prod(), ([0.0, 2.0, 3.0],), [[6, 0, 0]]),
    ("cumprod with a zero", lambda x: dt.sum(dt.cumprod(x) * [1.0, 2.0, 3.0]),
     lambda x: (x.cumprod(0) * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)).sum(),
     ([2.0, 0.0, 3.0],), [[1, 2 * (2 + 3 * 3), 0]]),
])
def test_conventions_torch_shares(name: str, f: Callable[..., Any], tf: Callable[..., Any], xs: tuple[Any, ...],
                                  expected: list[Any]) -> None:
    got, ref = _g(f, *xs), _tg(tf, *xs)
    for g, r, e in zip(got, ref, expected):
        np.testing.assert_allclose(g, np.asarray(e, dtype=np.float64), rtol=1e-14, atol=1e-15, err_msg=name)
        np.testing.assert_allclose(r, np.asarray(e, dtype=np.float64), rtol=1e-14, atol=1e-15, err_msg="torch")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_conventions_where_torch_differs() -> None:
    """The points where difftape's documented answer is not torch's: closed forms decide."""
    # hypot at (0, 0) has gradient 0 (torch: nan)
    assert [float(g) for g in _g(lambda a, b: dt.hypot(a, b), 0.0, 0.0)] == [0.0, 0.0]
    # arctan2 at (0, 0) has a nan gradient: the derivative does not exist (torch: 0)
    assert all(np.isnan(g) for g in _g(lambda a, b: dt.arctan2(a, b), 0.0, 0.0))
    # where is safe: the unselected branch's infinite slope contributes 0 (torch: nan)
    assert float(_g(lambda x: dt.where(x > 0, dt.sqrt(x), 0.0), -1.0)[0]) == 0.0
    assert np.isnan(_tg(lambda x: torch.where(x > 0, torch.sqrt(x), 0.0), -1.0)[0])
    # det of a singular matrix: its gradient is the cofactor matrix, not 0 (torch's is 0 here)
    a = np.array([[1.0, 2.0], [2.0, 4.0]])
    np.testing.assert_allclose(_g(lambda x: dt.det(x), a)[0], [[4.0, -2.0], [-2.0, 1.0]], rtol=1e-14)
    # var with ddof = n: inf, and d/dx_i = 2 (x_i - mean) / 0, signed (torch: +inf for both)
    np.testing.assert_array_equal(_g(lambda x: dt.var(x, ddof=2), [1.0, 2.0])[0], [-np.inf, np.inf])
    # sinc is smooth at 0: slope 0, second derivative -pi**2/3
    assert float(_g(lambda x: dt.sinc(x), 0.0)[0]) == 0.0
    np.testing.assert_allclose(np.asarray(dt.hessian(dt.sinc, np.array(0.0)).numpy()), -np.pi ** 2 / 3, rtol=1e-14)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_det_second_derivatives_at_singular_matrices(rank: int) -> None:
    """det's Hessian and cofactor's JVP at rank 1, 2 and 3 matrices against torch and the cofactor's definition."""
    rng = np.random.default_rng(rank)
    a = rng.normal(size=(3, rank)) @ rng.normal(size=(rank, 3))
    v = rng.normal(size=(3, 3))
    ref = torch.autograd.functional.hessian(torch.linalg.det, torch.from_numpy(a)).numpy()
    np.testing.assert_allclose(np.asarray(dt.hessian(dt.det, a).numpy()), ref, rtol=1e-10, atol=1e-12)
    _, tangent = dt.jvp(dt.cofactor, [a], [v])
    np.testing.assert_allclose(np.asarray(tangent.numpy()), np.tensordot(ref, v, 2), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("x", [[0.0, 2.0, 3.0], [0.0, 0.0, 3.0], [0.0, 0.0, 0.0], [[0.0, 2.0, 3.0], [1.0, 0.0, 0.0]]])
def test_prod_and_cumprod_second_derivatives_at_zeros(x: list[Any]) -> None:
    """prod and cumprod are polynomials: exact Hessians at zeros (torch's too), not a division by x."""
    x = np.asarray(x)
    w = np.linspace(1.0, 2.0, x.shape[-1])
    for f, tf in [(lambda v: dt.sum(dt.prod(v, axis=-1) * 1.5), lambda v: (v.prod(-1) * 1.5).sum()),
                  (lambda v: dt.sum(dt.cumprod(v, axis=-1) * w),
                   lambda v: (v.cumprod(-1) * torch.from_numpy(w)).sum())]:
        ref = torch.autograd.functional.hessian(tf, torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(np.asarray(dt.hessian(f, x).numpy()), ref, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------------------
# random programs of the command-line language, through Program, against the same program in torch
#
# An expression is (text, torch function of the inputs, shape); the inputs are x (a vector of 3) and
# y (a scalar). Every operation used is smooth on all of the reals at the values drawn (log and sqrt
# only of 1 + e**2, division only by 1 + e**2, where only on a comparison of an input, no ties).

N = 3
_TW = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
UNARY_TEXT: list[tuple[str, Callable[[Any], Any]]] = [
    ("sin({})", torch.sin), ("cos({})", torch.cos), ("tanh({})", torch.tanh), ("sigmoid({})", torch.sigmoid),
    ("softplus({})", TF.softplus), ("arctan({})", torch.atan), ("arcsinh({})", torch.asinh),
    ("exp(tanh({}))", lambda e: torch.exp(torch.tanh(e))), ("log(1 + ({})**2)", lambda e: torch.log(1 + e ** 2)),
    ("sqrt(1 + ({})**2)", lambda e: torch.sqrt(1 + e ** 2)), ("({})**2", torch.square), ("-({})", torch.neg),
    ("({}) * [0.5, -1.0, 2.0]", lambda e: e * _TW), ("hypot({}, 1.5)", lambda e: torch.hypot(e, torch.tensor(1.5,
                                                                                             dtype=e.dtype))),
]
REDUCE_TEXT: list[tuple[str, Callable[[Any], Any]]] = [
    ("sum({})", torch.sum), ("mean({})", torch.mean), ("logsumexp({})", lambda e: torch.logsumexp(e, 0)),
    # norm away from 0: its Hessian at 0 is a known bug (test_second_derivative_at_0_of_a_norm)
    ("norm(({}) + [1.0, 2.0, 3.0])", lambda e: torch.linalg.vector_norm(e + torch.tensor([1.0, 2.0, 3.0],
                                                                                        dtype=e.dtype))),
    ("prod({})", torch.prod), ("x @ ({})", None),
    ("max(({}) * [1.0, 1.1, 1.2])", lambda e: (e * torch.tensor([1.0, 1.1, 1.2], dtype=e.dtype)).amax()),
]
VECTOR_TEXT: list[tuple[str, Callable[[Any], Any]]] = [
    ("softmax({})", lambda e: torch.softmax(e, 0)), ("log_softmax({})", lambda e: torch.log_softmax(e, 0)),
    ("cumsum({})", lambda e: torch.cumsum(e, 0)), ("cumprod({})", lambda e: torch.cumprod(e, 0)),
    ("({})[::-1]", lambda e: torch.flip(e, (0,))),
]
BINARY_TEXT: list[tuple[str, Callable[[Any, Any], Any]]] = [
    ("({}) + ({})", torch.add), ("({}) - ({})", torch.sub), ("({}) * ({})", torch.mul),
    ("({}) / (1 + ({})**2)", lambda a, b: a / (1 + b ** 2)), ("arctan2({}, 2 + ({})**2)", lambda a, b: torch.atan2(
        a, 2 + b ** 2)), ("logaddexp({}, {})", torch.logaddexp),
    ("where(x > y, {}, {})", None),
]


@st.composite
def expressions(draw: Any, depth: int = 3) -> tuple[str, Callable[[dict[str, Any]], Any], Shape]:
    if depth == 0 or draw(st.integers(0, 4)) == 0:
        name = draw(st.sampled_from(["x", "y"]))
        return name, lambda env, _n=name: env[_n], ((N,) if name == "x" else ())
    kind = draw(st.sampled_from(["unary", "unary", "binary", "binary", "reduce", "vector"]))
    if kind == "unary":
        text, fn = draw(st.sampled_from(UNARY_TEXT))
        e, ef, shape = draw(expressions(depth - 1))
        return text.format(e), lambda env: fn(ef(env)), (N,) if "[0.5" in text else shape
    if kind == "binary":
        text, fn = draw(st.sampled_from(BINARY_TEXT))
        (a, af, sa), (b, bf, sb) = draw(expressions(depth - 1)), draw(expressions(depth - 1))
        if fn is None:  # where on a comparison of the inputs
            return text.format(a, b), lambda env: torch.where(env["x"] > env["y"], af(env), bf(env)), (N,)
        return text.format(a, b), lambda env: fn(af(env), bf(env)), sa or sb
    e, ef, shape = draw(expressions(depth - 1))
    if shape == ():  # a vector of three from a scalar
        e, ef = f"[{e}, 2 * ({e}), ({e})**2]", lambda env, _ef=ef: torch.stack([_ef(env), 2 * _ef(env),
                                                                                _ef(env) ** 2])
    text, fn = draw(st.sampled_from(REDUCE_TEXT if kind == "reduce" else VECTOR_TEXT))
    if fn is None:  # x @ e
        return text.format(e), lambda env: env["x"] @ ef(env), ()
    return text.format(e), lambda env: fn(ef(env)), () if kind == "reduce" else (N,)


# no subnormal-scale values: prod([1, 1e-201, 1e-300]) underflows to 0, where torch's second derivative of
# prod takes its zero path and gives d2/dx1dx2 = 0 (difftape: x0 = 1, the closed form)
_COORD = st.floats(-2, 2).map(lambda v: 0.0 if abs(v) < 1e-3 else v)
POINTS = st.tuples(st.lists(_COORD, min_size=N, max_size=N), _COORD)


def _program(text: str, point: tuple[list[float], float]) -> tuple[Program, list[str], dict[str, Any]]:
    at = {"x": np.array(point[0]), "y": np.array(point[1])}
    used = [n for n in ("x", "y") if n in Program(text, at={k: v for k, v in at.items() if _uses(text, k)}).inputs]
    prog = Program(text, at={n: at[n] for n in used})
    return prog, used, {n: torch.tensor(at[n], dtype=torch.float64) for n in used}


def _uses(text: str, name: str) -> bool:
    import re

    return re.search(rf"\b{name}\b", text) is not None


def _close(got: Any, ref: Any, what: str) -> None:
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), _np(ref), rtol=1e-9, atol=1e-10, err_msg=what)


PROGRAMS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROGRAMS
@given(expressions(), POINTS)
def test_program_grad(expr: tuple[str, Callable[..., Any], Shape], point: tuple[list[float], float]) -> None:
    text, fn, _ = expr
    prog, used, env = _program(text, point)
    result = prog.grad()
    ts = {n: t.clone().requires_grad_(True) for n, t in env.items()}
    out = fn(ts)
    _close(result.value, out, f"value of {text}")
    refs = torch.autograd.grad(out.sum(), list(ts.values()), allow_unused=True)
    for n, r in zip(ts, refs):
        _close(result.grad[n] if result.grad[n] is not None else 0.0, torch.zeros(()) if r is None else r,
               f"d/d{n} of {text}")


@PROGRAMS
@given(expressions(), POINTS)
def test_program_jacobian(expr: tuple[str, Callable[..., Any], Shape], point: tuple[list[float], float]) -> None:
    text, fn, _ = expr
    prog, used, env = _program(text, point)
    result = prog.jacobian(unconnected="zero")
    names = list(env)
    refs = torch.autograd.functional.jacobian(lambda *ts: fn(dict(zip(names, ts))), tuple(env.values()))
    for n, r in zip(names, refs):
        _close(result.jacobian[n], r, f"jacobian d/d{n} of {text}")


@PROGRAMS
@given(expressions(), POINTS)
def test_program_hessian(expr: tuple[str, Callable[..., Any], Shape], point: tuple[list[float], float]) -> None:
    text, fn, shape = expr
    if shape != ():
        text, fn = f"sum({text})", lambda env, _f=fn: _f(env).sum()
    prog, used, env = _program(text, point)
    result = prog.hessian(unconnected="zero")
    names = list(env)
    refs = torch.autograd.functional.hessian(lambda *ts: fn(dict(zip(names, ts))), tuple(env.values()))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            _close(result.hessian[a][b], refs[i][j], f"d2/d{a}d{b} of {text}")


# norm, hypot and std used to give the identity (and (I - 1/n)/n) here: now 0, as abs has
@pytest.mark.parametrize("name, f, x", [
    pytest.param("norm", lambda x: dt.norm(x), np.zeros(3), id="norm"),
    pytest.param("norm-axis", lambda x: dt.sum(dt.norm(x, axis=1)), np.zeros((2, 2)), id="norm-axis"),
    pytest.param("hypot", lambda x: dt.hypot(x[0], x[1]), np.zeros(2), id="hypot"),
    pytest.param("std", lambda x: dt.std(x), np.full(3, 1.5), id="std"),
    pytest.param("abs", lambda x: dt.sum(dt.abs(x)), np.zeros(3), id="abs"),  # the convention, which holds
    pytest.param("norm-ord-3", lambda x: dt.norm(x, 3), np.zeros(3), id="norm-ord-3"),
])
def test_second_derivative_at_0_of_a_norm(name: str, f: Callable[..., Any], x: np.ndarray) -> None:
    """d2/dt2 f(x + t*u) at t = 0, where f(x + t*u) = c*|t|: 0, by abs's convention at its kink."""
    u = np.random.default_rng(0).normal(size=x.shape)
    u = u - u.mean() if name == "std" else u
    with np.errstate(all="ignore"):
        second = float(np.vdot(u, np.asarray(dt.hvp(f, x, u).numpy())))
    assert second == 0.0, f"{name}: u'Hu = {second}"
