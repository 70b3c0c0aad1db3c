"""Derivatives for papers and for SymPy: ``diff --format latex`` and ``--format sympy``.

Both print the same expression as :mod:`.printer` (the language's text); LaTeX writes
``\\frac{a}{b}``, ``\\sin``, ``\\cdot`` and powers as superscripts, SymPy's text is what
``sympy.sympify`` reads back (SymPy's own names: ``atan``, ``Abs``, ``Piecewise``; functions
SymPy lacks written out: ``sigmoid(x)`` as ``1/(1 + exp(-x))``). SymPy's text is for scalar
derivatives (it has no numpy arrays); LaTeX also prints vector and matrix expressions
(``A x`` for a matrix product, ``\\sum`` for a sum, ``x^{T}``).

Constants are exact where they are known (``1/log(10)``, ``pi``): :func:`exact_constant`.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from difftape.errors import DifftapeError
from difftape.transforms.symbolic.expr import Expr

SUM, TERM, UNARY, POWER, ATOM = 1, 2, 3, 4, 5

#: Irrational constants a float coefficient may be a small rational multiple of: (text, latex, sympy, value).
KNOWN = [
    ("e", "e", "E", math.e),
    ("log(10)", r"\ln 10", "log(10)", math.log(10.0)),
    ("log(2)", r"\ln 2", "log(2)", math.log(2.0)),
    ("pi", r"\pi", "pi", math.pi),
    ("pi**2", r"\pi^{2}", "pi**2", math.pi**2),
    ("sqrt(2)", r"\sqrt{2}", "sqrt(2)", math.sqrt(2.0)),
    ("sqrt(pi)", r"\sqrt{\pi}", "sqrt(pi)", math.sqrt(math.pi)),
]


def _table() -> None:
    """Values of the elementary functions at small integers (``cosh(3)``): a program's constant
    subexpressions are folded to floats when compiled, and these are how they print exactly."""
    latex = {"exp": "e^{%d}", "sqrt": r"\sqrt{%d}", "log": r"\ln %d", "sin": r"\sin %d", "cos": r"\cos %d",
             "tan": r"\tan %d", "sinh": r"\sinh %d", "cosh": r"\cosh %d", "tanh": r"\tanh %d",
             "arctan": r"\arctan %d"}
    sym = {"arctan": "atan"}
    for name, tex in latex.items():
        fn = getattr(np, name)
        for k in range(1, 11):
            if name in ("sqrt",) and int(math.isqrt(k)) ** 2 == k:
                continue
            if name == "log" and k in (1, 2, 10):
                continue
            v = float(fn(float(k)))
            if v != 0 and math.isfinite(v) and v not in _VALUES:
                _VALUES.add(v)
                KNOWN.append((f"{name}({k})", tex % k, f"{sym.get(name, name)}({k})", v))


_VALUES: set[float] = {v for *_, v in KNOWN}
_table()


def exact_constant(c: float) -> tuple[Fraction, int, int] | None:
    """``(r, k, e)`` with ``c == r * KNOWN[k] ** e`` (to within 2 ulp; r a small fraction, e = +-1)."""
    if not isinstance(c, float) or not math.isfinite(c) or c == 0 or float(c).is_integer():
        return None
    if Fraction(c).limit_denominator(1000) == Fraction(c):
        return None  # 0.25, 0.04: a number that prints exactly as it is
    for k, (_, _, _, v) in enumerate(KNOWN):
        for e in (-1, 1):
            q = c / v if e == 1 else c * v
            r = Fraction(q).limit_denominator(60)
            if r != 0 and abs(float(r) - q) <= 4e-16 * abs(q) and (abs(r.numerator) <= 60):
                back = float(r) * v if e == 1 else float(r) / v
                if abs(back - c) <= 4.5e-16 * abs(c):
                    return r, k, e
    return None


def _is_bool(e: Expr) -> bool:
    d = e.dtype
    if isinstance(d, type):
        return d is bool
    try:
        return np.dtype(d).kind == "b"
    except TypeError:
        return False


class _Printer:
    """One format: the pieces that differ between LaTeX and SymPy's text."""

    latex = False

    def __init__(self) -> None:
        self.memo: dict[int, tuple[str, int]] = {}

    # -- numbers ------------------------------------------------------------------------
    def number(self, v: Any) -> tuple[str, int]:
        if isinstance(v, (bool, np.bool_)):
            return (r"\mathrm{true}" if v else r"\mathrm{false}") if self.latex else ("True" if v else "False"), ATOM
        if isinstance(v, Fraction) and v.denominator != 1:
            if self.latex:
                sign = "-" if v < 0 else ""
                return f"{sign}\\frac{{{abs(v.numerator)}}}{{{v.denominator}}}", ATOM if v > 0 else UNARY
            return f"{v.numerator}/{v.denominator}", TERM
        if isinstance(v, Fraction):
            v = v.numerator
        if isinstance(v, (int, np.integer)):
            return str(int(v)), ATOM if v >= 0 else UNARY
        f = float(v)
        if math.isnan(f):
            return (r"\mathrm{NaN}" if self.latex else "nan"), ATOM
        if math.isinf(f):
            t = r"\infty" if self.latex else "oo"
            return (t, ATOM) if f > 0 else ("-" + t, UNARY)
        exact = exact_constant(f)
        if exact is not None:
            r, k, e = exact
            return self.scaled(r, k, e)
        text = str(int(f)) if f.is_integer() and abs(f) < 1e16 else repr(f)
        return text, ATOM if f >= 0 else UNARY

    def scaled(self, r: Fraction, k: int, e: int) -> tuple[str, int]:
        name = KNOWN[k][1] if self.latex else KNOWN[k][2]
        num, den = abs(r.numerator), r.denominator
        sign = "-" if r < 0 else ""
        top = ([str(num)] if num != 1 else []) + ([name] if e == 1 else [])
        bottom = ([str(den)] if den != 1 else []) + ([name] if e == -1 else [])
        if self.latex:
            t = " ".join(top) or "1"
            if bottom:
                return f"{sign}\\frac{{{t}}}{{{' '.join(bottom)}}}", UNARY if sign else ATOM
            return sign + t, UNARY if sign else (ATOM if len(top) == 1 else TERM)
        t = "*".join(top) or "1"
        if bottom:
            b = "*".join(bottom)
            b = f"({b})" if len(bottom) > 1 or "*" in b else b
            return f"{sign}{t}/{b}", TERM
        return sign + t, UNARY if sign else (ATOM if len(top) == 1 and "*" not in t else POWER)

    # -- structure ----------------------------------------------------------------------
    def wrap(self, pair: tuple[str, int], need: int) -> str:
        text, level = pair
        if level >= need:
            return text
        return f"\\left({text}\\right)" if self.latex else f"({text})"

    def show(self, e: Expr) -> tuple[str, int]:
        hit = self.memo.get(id(e))
        if hit is None:
            hit = self.memo[id(e)] = self.build(e)
        return hit

    def build(self, e: Expr) -> tuple[str, int]:
        op = e.op
        if op == "name":
            return self.name(str(e.value)), ATOM
        if op == "const":
            if isinstance(e.value, np.ndarray):
                return self.array(e.value), ATOM
            if e.shape and not self.latex:
                raise self.scalar_only()
            return self.number(e.value)
        if op == "plus":
            return self.plus(e)
        if op == "times":
            return self.times(e)
        if op == "random":
            raise DifftapeError("unsupported", f"diff: the derivative uses the unnamed random draw {e.value}; "
                                "bind it to a name (r = randn(...))")
        if op == "power":
            return self.power(self.show(e.args[0]), self.show(e.args[1]))
        return self.call(e)

    def name(self, n: str) -> str:
        if self.latex and len(n) > 1 and not n[1:].isdigit():
            base, _, sub = n.partition("_")
            return f"\\mathrm{{{base}}}" + (f"_{{{sub}}}" if sub else "") if not sub else f"{base}_{{{sub}}}"
        if self.latex and len(n) > 1:
            return f"{n[0]}_{{{n[1:]}}}"
        return n

    def plus(self, e: Expr) -> tuple[str, int]:
        out = ""
        terms = sorted(e.args, key=lambda t: _negative_term(t))
        for k, t in enumerate(terms):
            if _negative_term(t):
                text = self.wrap(self.show(_negate(t)), TERM)
                out += ("-" if k == 0 else " - ") + text
            else:
                text = self.wrap(self.show(t), SUM)
                out += ("" if k == 0 else " + ") + text
        return out, SUM

    def power(self, base: tuple[str, int], exp: tuple[str, int]) -> tuple[str, int]:
        if self.latex:
            return f"{self.wrap(base, ATOM)}^{{{exp[0]}}}", POWER
        return f"{self.wrap(base, ATOM)}**{self.wrap(exp, UNARY if exp[1] != UNARY else ATOM)}", POWER

    def times(self, e: Expr) -> tuple[str, int]:
        c = e.value
        neg = not isinstance(c, bool) and c < 0
        mag = -c if neg else c
        num: list[tuple[str, int]] = []
        den: list[tuple[str, int]] = []
        if mag != 1:
            if isinstance(mag, Fraction) and mag.denominator != 1:
                if mag.numerator != 1:
                    num.append((str(mag.numerator), ATOM))
                den.append((str(mag.denominator), ATOM))
            elif isinstance(mag, float) and exact_constant(mag) is not None:
                r, k, ex = exact_constant(mag)  # type: ignore[misc]
                name = (KNOWN[k][1] if self.latex else KNOWN[k][2], ATOM if self.latex or "*" not in KNOWN[k][2]
                        else POWER)
                if r.numerator != 1:
                    num.append((str(r.numerator), ATOM))
                if r.denominator != 1:
                    den.append((str(r.denominator), ATOM))
                (num if ex == 1 else den).append(name)
            else:
                num.append(self.number(mag))
        for b, x in sorted(zip(e.args, e.exps), key=lambda p: p[0].op == "const"):
            if b.op == "const" and not isinstance(b.value, np.ndarray) and b.shape and b.value == 1:
                if self.latex:
                    continue  # a shape carrier: broadcasting, which formulas leave implicit
                raise self.scalar_only()
            base = self.show(b)
            if x == 1:
                num.append(base)
            elif x == -1:
                den.append(base)
            elif x > 0:
                num.append(self.power(base, self.exponent(x)))
            else:
                den.append(self.power(base, self.exponent(-x)))
        if self.latex:
            sep = r" \cdot "
            top = sep.join(self.wrap(p, POWER if len(num) > 1 else SUM if den else TERM) for p in num) or "1"
            if den:
                bottom = sep.join(self.wrap(p, POWER if len(den) > 1 else SUM) for p in den)
                text = f"\\frac{{{top}}}{{{bottom}}}"
                level = ATOM
            else:
                text, level = top, (num[0][1] if len(num) == 1 else TERM)
            return ("-" + self.wrap((text, level), POWER), UNARY) if neg else (text, level)
        top = "*".join(self.wrap(p, TERM if k == 0 and p[1] == TERM and "/" not in p[0] else POWER)
                       for k, p in enumerate(num)) or "1"
        level = TERM if len(num) > 1 or den else num[0][1] if num else ATOM
        if den:
            bottom = "*".join(self.wrap(p, POWER) for p in den)
            top = f"{top}/{bottom if len(den) == 1 else '(' + bottom + ')'}"
        return ("-" + self.wrap((top, level), TERM), UNARY) if neg else (top, level)

    def exponent(self, x: Any) -> tuple[str, int]:
        if isinstance(x, float) and x.is_integer():
            x = int(x)
        if isinstance(x, float):
            x = Fraction(x).limit_denominator(1000) if float(Fraction(x).limit_denominator(1000)) == x else x
        return self.number(x)

    def scalar_only(self) -> DifftapeError:
        return DifftapeError("unsupported", "--format sympy prints scalar derivatives (SymPy has no numpy arrays); "
                             "use --format text or latex for this one")

    def array(self, v: np.ndarray) -> str:
        if not self.latex:
            raise self.scalar_only()
        if v.ndim == 1:
            v = v.reshape(-1, 1)
        if v.ndim != 2:
            raise DifftapeError("unsupported", "--format latex prints arrays of at most two axes")
        rows = [" & ".join(self.number(x.item())[0] for x in row) for row in v]
        return "\\begin{pmatrix}" + r" \\ ".join(rows) + "\\end{pmatrix}"

    def call(self, e: Expr) -> tuple[str, int]:
        raise NotImplementedError


def _negative_term(t: Expr) -> bool:
    if t.op == "times":
        return not isinstance(t.value, bool) and t.value < 0
    if t.op == "const" and not isinstance(t.value, np.ndarray):
        return not isinstance(t.value, bool) and t.value < 0
    return False


def _negate(t: Expr) -> Expr:
    from difftape.transforms.symbolic.simplify import negative

    return negative(t)


_SYMPY_NAMES = {"arcsin": "asin", "arccos": "acos", "arctan": "atan", "arcsinh": "asinh", "arccosh": "acosh",
                "arctanh": "atanh", "abs": "Abs", "sign": "sign", "floor": "floor", "ceil": "ceiling",
                "maximum": "Max", "minimum": "Min", "arctan2": "atan2"}
_SAME = {"sin", "cos", "tan", "exp", "log", "sqrt", "sinh", "cosh", "tanh"}
_COMPARE = {"less": "<", "less_equal": "<=", "greater": ">", "greater_equal": ">="}


class SympyPrinter(_Printer):
    """Text that ``sympy.sympify`` parses to the same function (of real symbols)."""

    def call(self, e: Expr) -> tuple[str, int]:
        op, a = e.op, e.args
        if e.shape:
            raise self.scalar_only()
        if any(x.shape for x in a):
            raise self.scalar_only()
        args = [self.show(x)[0] for x in a]
        if op in _SAME or op in _SYMPY_NAMES:
            return f"{_SYMPY_NAMES.get(op, op)}({', '.join(args)})", ATOM
        one = args[0] if args else ""

        def inner(level: int) -> str:
            return self.wrap(self.show(a[0]), level)

        simple: dict[str, Any] = {
            "log10": lambda: (f"log({one}, 10)", ATOM),
            "log2": lambda: (f"log({one}, 2)", ATOM),
            "log1p": lambda: (f"log({inner(SUM)} + 1)", ATOM),
            "expm1": lambda: (f"exp({one}) - 1", SUM),
            "sigmoid": lambda: (f"1/(1 + exp({self.show(_negate(a[0]))[0]}))", TERM),
            "softplus": lambda: (f"log(1 + exp({one}))", ATOM),
            "square": lambda: self.power(self.show(a[0]), ("2", ATOM)),
            "relu": lambda: (f"Max(0, {one})", ATOM),
            "negative": lambda: (f"-{inner(POWER)}", UNARY),
            "positive": lambda: self.show(a[0]),
        }
        if op in simple and len(a) == 1:
            return simple[op]()
        if op in ("where", "guard"):
            return f"Piecewise(({args[1]}, {args[0]}), ({args[2]}, True))", ATOM
        if op in _COMPARE:
            return f"{args[0]} {_COMPARE[op]} {args[1]}", 0
        if op == "equal":
            return f"Eq({args[0]}, {args[1]})", ATOM
        if op == "not_equal":
            return f"Ne({args[0]}, {args[1]})", ATOM
        if op in ("logical_and", "logical_or", "logical_not"):
            return f"{ {'logical_and': 'And', 'logical_or': 'Or', 'logical_not': 'Not'}[op]}({', '.join(args)})", ATOM
        if op == "stop_gradient":
            return args[0], self.show(a[0])[1]
        raise DifftapeError("unsupported", f"--format sympy has no form for {op}(); use --format text")


_LATEX_FUNCS = {"sin": r"\sin", "cos": r"\cos", "tan": r"\tan", "exp": r"\exp", "log": r"\ln", "sinh": r"\sinh",
                "cosh": r"\cosh", "tanh": r"\tanh", "arcsin": r"\arcsin", "arccos": r"\arccos", "arctan": r"\arctan",
                "log10": r"\log_{10}", "log2": r"\log_{2}", "sign": r"\operatorname{sgn}",
                "arcsinh": r"\operatorname{arsinh}", "arccosh": r"\operatorname{arcosh}",
                "arctanh": r"\operatorname{artanh}", "sigmoid": r"\sigma", "softplus": r"\operatorname{softplus}",
                "relu": r"\operatorname{ReLU}", "det": r"\det", "trace": r"\operatorname{tr}",
                "logsumexp": r"\operatorname{logsumexp}", "softmax": r"\operatorname{softmax}",
                "diag": r"\operatorname{diag}", "max": r"\max", "min": r"\min", "prod": r"\prod",
                "log1p": r"\operatorname{log1p}", "expm1": r"\operatorname{expm1}", "floor": r"\operatorname{floor}",
                "ceil": r"\operatorname{ceil}", "mean": r"\operatorname{mean}", "outer": r"\operatorname{outer}",
                "inv": r"\operatorname{inv}"}
_LATEX_COMPARE = {"less": "<", "less_equal": r"\le", "greater": ">", "greater_equal": r"\ge", "equal": "=",
                  "not_equal": r"\ne"}


class LatexPrinter(_Printer):
    r"""LaTeX for a formula: ``\frac{a}{b}``, ``\sin x``, ``a \cdot b``; matrix products by juxtaposition."""

    latex = True

    def call(self, e: Expr) -> tuple[str, int]:
        op, a = e.op, e.args
        if op == "sqrt":
            return f"\\sqrt{{{self.show(a[0])[0]}}}", ATOM
        if op == "exp":
            return f"e^{{{self.show(a[0])[0]}}}", POWER
        if op == "abs":
            return f"\\left|{self.show(a[0])[0]}\\right|", ATOM
        if op == "square":
            return self.power(self.show(a[0]), ("2", ATOM))
        if op == "norm":
            return f"\\left\\|{self.show(a[0])[0]}\\right\\|", ATOM
        if op == "matmul" or op == "dot":
            return f"{self.wrap(self.show(a[0]), POWER)} {self.wrap(self.show(a[1]), POWER)}", TERM
        if op == "transpose":
            return f"{self.wrap(self.show(a[0]), ATOM)}^{{T}}", POWER
        if op == "sum":
            return f"\\sum {self.wrap(self.show(a[0]), POWER)}", TERM
        if op == "eye":
            return f"I_{{{e.param('N')}}}", ATOM
        if op in ("where", "guard"):
            c, x, y = (self.show(t)[0] for t in a)
            return f"\\begin{{cases}} {x} & {c} \\\\ {y} & \\text{{otherwise}} \\end{{cases}}", ATOM
        if op in _LATEX_COMPARE:
            return f"{self.show(a[0])[0]} {_LATEX_COMPARE[op]} {self.show(a[1])[0]}", 0
        if op == "getitem":
            idx = ", ".join(str(i) if isinstance(i, (int, np.integer)) else ":" for i in e.param("index"))
            return f"{self.wrap(self.show(a[0]), ATOM)}_{{{idx}}}", ATOM
        if op == "stop_gradient":
            return self.show(a[0])
        if op in ("reshape", "broadcast_to", "ravel", "expand_dims", "squeeze", "positive"):
            return self.show(a[0])
        if op == "negative":
            return f"-{self.wrap(self.show(a[0]), POWER)}", UNARY
        name = _LATEX_FUNCS.get(op, f"\\operatorname{{{op}}}")
        inner = ", ".join(self.show(x)[0] for x in a)
        if len(a) == 1 and op in _LATEX_FUNCS and op not in ("sigmoid",) and self.show(a[0])[1] == ATOM and len(
                inner) <= 3:
            return f"{name} {inner}", POWER
        return f"{name}\\left({inner}\\right)", ATOM


def to_format(root: Expr, fmt: str, bindings: list[tuple[str, Expr]] = ()) -> str:  # type: ignore[assignment]
    """``root`` as LaTeX or SymPy text; LaTeX lists the program's ``bindings`` after the formula."""
    printer: _Printer = LatexPrinter() if fmt == "latex" else SympyPrinter()
    try:
        text = _top(printer, root)
        if fmt == "latex" and bindings:
            text += ", \\quad " + ", \\quad ".join(f"{printer.name(n)} = {_top(printer, e)}" for n, e in bindings)
    except RecursionError:
        raise DifftapeError("limit", f"the derivative is nested too deeply for --format {fmt}") from None
    return text


def _top(printer: _Printer, root: Expr) -> str:
    # children first, without deep recursion: print the nodes in post-order
    from difftape.transforms.symbolic.expr import postorder

    for n in postorder(root):
        printer.show(n)
    return printer.show(root)[0]
