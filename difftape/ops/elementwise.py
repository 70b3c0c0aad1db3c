"""Elementwise operations: arithmetic, functions of one or two arrays, comparisons and logic."""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

from difftape.ops import batching
from difftape.ops.core import (
    FloatForm,
    register,
    result_dtype,
    safe,
    zero_vjp,
)

# ----------------------------------------------------------------------------------------
# elementwise forwards that numpy lacks or that need care


def _sigmoid(x: Any) -> Any:
    # exp(-log(1 + exp(-x))): accurate in relative terms and finite for any x.
    return np.exp(-np.logaddexp(0.0, np.negative(x)))


def _relu(x: Any) -> Any:
    return np.maximum(x, 0)


def _softplus(x: Any) -> Any:
    return np.logaddexp(0.0, x)


# Forwards of the arithmetic operators. numpy's scalar types have fast operators (scalar math
# ~0.1 us) while a ufunc call on a scalar costs ~1-2 us; with a numpy operand the operator *is*
# the ufunc (same loops, promotion and errstate), so the result is identical. Two Python
# numbers go through the ufunc so that they follow numpy's rules (int64 overflow, 1/0 = inf).
_NUMPY = (np.ndarray, np.generic)


def _add(a: Any, b: Any) -> Any:
    return a + b if isinstance(a, _NUMPY) or isinstance(b, _NUMPY) else np.add(a, b)


def _subtract(a: Any, b: Any) -> Any:
    return a - b if isinstance(a, _NUMPY) or isinstance(b, _NUMPY) else np.subtract(a, b)


def _multiply(a: Any, b: Any) -> Any:
    return a * b if isinstance(a, _NUMPY) or isinstance(b, _NUMPY) else np.multiply(a, b)


def _divide(a: Any, b: Any) -> Any:
    return a / b if isinstance(a, _NUMPY) or isinstance(b, _NUMPY) else np.true_divide(a, b)


def _negative(x: Any) -> Any:
    return -x if isinstance(x, _NUMPY) else np.negative(x)


def _positive(x: Any) -> Any:
    return +x if isinstance(x, _NUMPY) else np.positive(x)


def _int_like(v: Any) -> bool:
    """Whether v has an integer dtype (cheaply: this runs on every power)."""
    t = type(v)
    if t is int:
        return True
    if t is float or t is bool:
        return False
    dt = getattr(v, "dtype", None)
    return dt.kind in "iu" if isinstance(dt, np.dtype) else bool(np.issubdtype(np.result_type(v), np.integer))


def _power(a: Any, b: Any) -> Any:
    # Python semantics: an integer to a negative integer power is a float (2**-1 == 0.5).
    if _int_like(a) and _int_like(b) and np.any(np.asarray(b) < 0):
        return np.power(np.asarray(a, dtype=np.float64), b)
    return np.power(a, b)


def _tie_share(F: Any, a: Any, b: Any) -> Any:
    """1 where a wins, 0.5 on a tie, 0 where b wins (maximum's gradient for a)."""
    return F.where(a > b, 1.0, F.where(a == b, 0.5, 0.0))


def _pow_base_vjp(F: Any, g: Any, y: Any, a: Any, b: Any) -> Any:
    if type(b) in (int, float) and b != 0:
        # A literal exponent (x**2): the slope is b*x**(b-1), with no `where` passes over the
        # array, in the base's own dtype; for b == 2, 2*x is exactly 2*x**1.
        return g * (b * a if b == 2 else b * a ** (b - 1))
    return g * F.where(b == 0, 0.0, b * a ** F.where(b == 0, 1.0, b - 1))


def _pow_exp_vjp(F: Any, g: Any, y: Any, a: Any, b: Any) -> Any:
    return g * y * F.log(safe(F, a))


_LN2, _LN10 = math.log(2.0), math.log(10.0)

# unary elementwise: (name, forward, vjp)
register(
    "negative",
    _negative,
    lambda F, g, y, x: -g,
    fast=operator.neg,
    analytic=True,
    pyfloat=FloatForm("(-{0})", exact=True),
)
register(
    "positive",
    _positive,
    lambda F, g, y, x: g,
    fast=operator.pos,
    analytic=True,
    pyfloat=FloatForm("(+{0})", exact=True),
)
register("abs", np.abs, lambda F, g, y, x: g * F.sign(x), pyfloat=FloatForm("abs({0})", exact=True))
register("sign", np.sign, zero_vjp)
register("sqrt", np.sqrt, lambda F, g, y, x: g * 0.5 / y, analytic=True, pyfloat=FloatForm(fn=math.sqrt, exact=True))
register("square", np.square, lambda F, g, y, x: g * 2 * x, analytic=True, pyfloat=FloatForm("({0} * {0})", exact=True))
register("exp", np.exp, lambda F, g, y, x: g * y, analytic=True, pyfloat=FloatForm(fn=math.exp))
register("expm1", np.expm1, lambda F, g, y, x: g * (y + 1), analytic=True, pyfloat=FloatForm(fn=math.expm1))
register("log", np.log, lambda F, g, y, x: g / x, analytic=True, pyfloat=FloatForm(fn=math.log))
register("log1p", np.log1p, lambda F, g, y, x: g / (x + 1), analytic=True, pyfloat=FloatForm(fn=math.log1p))
register("log2", np.log2, lambda F, g, y, x: g / (x * _LN2), analytic=True, pyfloat=FloatForm(fn=math.log2))
register("log10", np.log10, lambda F, g, y, x: g / (x * _LN10), analytic=True, pyfloat=FloatForm(fn=math.log10))
register("sin", np.sin, lambda F, g, y, x: g * F.cos(x), analytic=True, pyfloat=FloatForm(fn=math.sin))
register("cos", np.cos, lambda F, g, y, x: -g * F.sin(x), analytic=True, pyfloat=FloatForm(fn=math.cos))
register("tan", np.tan, lambda F, g, y, x: g * (1 + y * y), analytic=True, pyfloat=FloatForm(fn=math.tan))
register("arcsin", np.arcsin, lambda F, g, y, x: g / F.sqrt(1 - x * x), analytic=True, pyfloat=FloatForm(fn=math.asin))
register("arccos", np.arccos, lambda F, g, y, x: -g / F.sqrt(1 - x * x), analytic=True, pyfloat=FloatForm(fn=math.acos))
register("arctan", np.arctan, lambda F, g, y, x: g / (1 + x * x), analytic=True, pyfloat=FloatForm(fn=math.atan))
register("sinh", np.sinh, lambda F, g, y, x: g * F.cosh(x), analytic=True, pyfloat=FloatForm(fn=math.sinh))
register("cosh", np.cosh, lambda F, g, y, x: g * F.sinh(x), analytic=True, pyfloat=FloatForm(fn=math.cosh))
register("tanh", np.tanh, lambda F, g, y, x: g * (1 - y * y), analytic=True, pyfloat=FloatForm(fn=math.tanh))
register(
    "arcsinh", np.arcsinh, lambda F, g, y, x: g / F.sqrt(x * x + 1), analytic=True, pyfloat=FloatForm(fn=math.asinh)
)
register(
    "arccosh", np.arccosh, lambda F, g, y, x: g / F.sqrt(x * x - 1), analytic=True, pyfloat=FloatForm(fn=math.acosh)
)
register("arctanh", np.arctanh, lambda F, g, y, x: g / (1 - x * x), analytic=True, pyfloat=FloatForm(fn=math.atanh))
register("sigmoid", _sigmoid, lambda F, g, y, x: g * y * (1 - y))
register("relu", _relu, lambda F, g, y, x: F.where(x > 0, g, 0.0))
register("softplus", _softplus, lambda F, g, y, x: g * F.sigmoid(x))
register("floor", np.floor, zero_vjp)
register("ceil", np.ceil, zero_vjp)
register("round", np.round, zero_vjp, params=(("decimals", 0),))

# binary elementwise
register(
    "add",
    _add,
    lambda F, g, y, a, b: g,
    lambda F, g, y, a, b: g,
    fast=operator.add,
    analytic=True,
    pyfloat=FloatForm("({0} + {1})", exact=True),
)
register(
    "subtract",
    _subtract,
    lambda F, g, y, a, b: g,
    lambda F, g, y, a, b: -g,
    fast=operator.sub,
    analytic=True,
    pyfloat=FloatForm("({0} - {1})", exact=True),
)
register(
    "multiply",
    _multiply,
    lambda F, g, y, a, b: g * b,
    lambda F, g, y, a, b: g * a,
    fast=operator.mul,
    analytic=True,
    pyfloat=FloatForm("({0} * {1})", exact=True),
)
register(
    "divide",
    _divide,
    lambda F, g, y, a, b: g / b,
    lambda F, g, y, a, b: -g * y / b,
    fast=operator.truediv,
    analytic=True,
    pyfloat=FloatForm("({0} / {1})", exact=True),
)
register("floor_divide", np.floor_divide, zero_vjp, zero_vjp, pyfloat=FloatForm("({0} // {1})"))
register(
    "remainder",
    np.remainder,
    lambda F, g, y, a, b: g,
    lambda F, g, y, a, b: -g * F.floor_divide(a, b),
    pyfloat=FloatForm("({0} % {1})"),
)
register("power", _power, _pow_base_vjp, _pow_exp_vjp, analytic=True, pyfloat=FloatForm(fn=math.pow))
register(
    "maximum", np.maximum, lambda F, g, y, a, b: g * _tie_share(F, a, b), lambda F, g, y, a, b: g * _tie_share(F, b, a)
)
register(
    "minimum", np.minimum, lambda F, g, y, a, b: g * _tie_share(F, b, a), lambda F, g, y, a, b: g * _tie_share(F, a, b)
)
register(
    "arctan2",
    np.arctan2,
    lambda F, g, y, a, b: g * b / (a * a + b * b),
    lambda F, g, y, a, b: -g * a / (a * a + b * b),
    pyfloat=FloatForm(fn=math.atan2),
)
register(
    "where",
    np.where,
    None,
    lambda F, g, y, c, a, b: F.where(c, g, 0.0),
    lambda F, g, y, c, a, b: F.where(c, 0.0, g),
    args=("condition", "x", "y"),
    dtype=lambda c, a, b, **_: result_dtype(a, b),
)
register(
    "clip",
    np.clip,
    lambda F, g, y, x, lo, hi: F.where(x < lo, 0.0, F.where(x > hi, 0.0, g)),
    # numpy's clip is minimum(maximum(x, lo), hi): where lo > hi the value is hi, so hi takes the gradient
    lambda F, g, y, x, lo, hi: F.where(lo > hi, 0.0, F.where(x < lo, g, 0.0)),
    lambda F, g, y, x, lo, hi: F.where(lo > hi, g, F.where(x < lo, 0.0, F.where(x > hi, g, 0.0))),
    args=("x", "lo", "hi"),
)

# no gradient: comparisons, logic, tests (their results are unconnected)
for _name, _fn in [
    ("less", np.less),
    ("less_equal", np.less_equal),
    ("greater", np.greater),
    ("greater_equal", np.greater_equal),
    ("equal", np.equal),
    ("not_equal", np.not_equal),
    ("logical_and", np.logical_and),
    ("logical_or", np.logical_or),
]:
    register(_name, _fn, nograd=2, kind="compare")
for _name, _fn in [
    ("logical_not", np.logical_not),
    ("isfinite", np.isfinite),
    ("isnan", np.isnan),
    ("isinf", np.isinf),
]:
    register(_name, _fn, nograd=1, kind="compare")
register(
    "stop_gradient",
    lambda x: x,
    nograd=1,
    kind="shape",
    doc="the value, with no gradient flowing through",
    batch=batching.direct,
    pyfloat=FloatForm("{0}", exact=True),
)

# ----------------------------------------------------------------------------------------
# more elementwise functions (numpy's names)

# sinc'(x) = (cos(pi x) - sinc(x)) / x loses digits to cancellation near 0 (and is 0/0 there), so
# for |x| < _SINC_CUT the VJP uses its Taylor series instead: a polynomial, so the tape's second
# and higher derivatives at and near 0 are right too (sinc''(0) = -pi**2/3). The series in
# t = (pi x)**2: sinc'(x) = 2 pi**2 x * sum_k>=1 (-1)**k k t**(k-1) / (2k+1)!, ten terms, whose
# remainder at the cut is below 1e-20; beyond the cut the closed form is exact to ~1e-14.
_SINC_CUT = 0.25
_SINC_SERIES = tuple((-1) ** k * k / math.factorial(2 * k + 1) for k in range(1, 11))


def _sinc_vjp(F: Any, g: Any, y: Any, x: Any) -> Any:
    near = F.abs(x) < _SINC_CUT
    t = x * x * (math.pi * math.pi)
    p = _SINC_SERIES[-1]
    for c in reversed(_SINC_SERIES[:-1]):
        p = p * t + c
    series = x * p * (2 * math.pi * math.pi)
    far = F.where(near, 1.0, x)  # the closed form only ever sees |x| >= the cut: no 0/0 anywhere
    closed = (F.cos(far * math.pi) - y) / far
    return g * F.where(near, series, closed)


_DEG = math.pi / 180.0
register(
    "hypot",
    np.hypot,
    # at (0, 0) the gradient is 0 (as norm's is there), and so are its derivatives (as abs's at 0): dividing
    # by inf there, rather than by 1, keeps a / 1 from giving the Hessian the identity
    lambda F, g, y, a, b: g * a / F.where(y == 0, math.inf, y),
    lambda F, g, y, a, b: g * b / F.where(y == 0, math.inf, y),
    doc="sqrt(x1**2 + x2**2) without overflow; the gradient at (0, 0) is 0",
    pyfloat=FloatForm(fn=math.hypot),
)
register(
    "logaddexp",
    np.logaddexp,
    # sigmoid(a - b): exact at +inf (slope 1), nan where both are -inf (as logsumexp of all -inf)
    lambda F, g, y, a, b: g * F.sigmoid(a - b),
    lambda F, g, y, a, b: g * F.sigmoid(b - a),
    doc="log(exp(x1) + exp(x2)) without overflow; both -inf: nan gradient (as logsumexp)",
)
register("sinc", np.sinc, _sinc_vjp, analytic=True, doc="sin(pi x) / (pi x), 1 at 0 (smooth there)")
register(
    "deg2rad",
    np.deg2rad,
    lambda F, g, y, x: g * _DEG,
    doc="degrees to radians",
    pyfloat=FloatForm("({0} * 0.017453292519943295)"),
)
register(
    "rad2deg",
    np.rad2deg,
    lambda F, g, y, x: g * (1.0 / _DEG),
    doc="radians to degrees",
    pyfloat=FloatForm("({0} * 57.29577951308232)"),
)
