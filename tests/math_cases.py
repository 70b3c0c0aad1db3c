"""A seeded set of programs for ``difftape diff``, each with its SymPy twin (tests/test_diff_math.py,
benchmarks/bench_diff.py).

A case is a difftape program, the inputs it is differentiated with respect to (scalars, or arrays with
their shapes), the order, and the same target written for SymPy (bindings inlined; arrays as matrices of
element symbols). Families:

- ``scalar``: random compositions of one variable (elementary functions, powers, quotients);
- ``multi``: programs of two or three variables with bindings the target refers to;
- ``second``: second derivatives of two-variable expressions (the whole Hessian) and third ones;
- ``array``: vector and matrix programs (sums, dot products, layers, least squares).

Everything is drawn from ``random.Random(seed)``, so the set is the same on every run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# (difftape name, SymPy name, domain it needs: "any", "pos" (argument > 0), "unit" (|argument| < 1))
UNARY = [
    ("sin", "sin", "any"), ("cos", "cos", "any"), ("tan", "tan", "any"), ("exp", "exp", "any"),
    ("log", "log", "pos"), ("sqrt", "sqrt", "pos"), ("tanh", "tanh", "any"), ("arctan", "atan", "any"),
    ("sinh", "sinh", "any"), ("cosh", "cosh", "any"), ("arcsin", "asin", "unit"), ("log10", "log10", "pos"),
    ("arcsinh", "asinh", "any"), ("log1p", "log1p", "pos"), ("square", "square", "any"),
]


@dataclass
class Case:
    family: str
    program: str
    sympy: str  # the target, in SymPy's syntax (bindings inlined)
    wrt: list[str]
    order: int = 1
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # array inputs (scalars: absent)
    lo: float = 0.3
    hi: float = 1.7

    @property
    def ident(self) -> str:
        extra = f" --order {self.order}" if self.order != 1 else ""
        return f"{self.family}: {self.program}{extra}"


def _leaf(rng: random.Random, names: list[str]) -> tuple[str, str]:
    r = rng.random()
    if r < 0.75:
        n = rng.choice(names)
        return n, n
    k = rng.choice([2, 3, 5, 1, 7])
    return str(k), str(k)


def _tree(rng: random.Random, depth: int, names: list[str]) -> tuple[str, str]:
    """(difftape text, SymPy text) of a random expression, fully parenthesised."""
    if depth == 0:
        return _leaf(rng, names)
    r = rng.random()
    if r < 0.45:
        name, sname, dom = rng.choice(UNARY)
        a, sa = _tree(rng, depth - 1, names)
        if dom == "pos":
            a, sa = f"({a})**2 + 1", f"({sa})**2 + 1"
        elif dom == "unit":
            a, sa = f"({a})/(({a})**2 + 2)", f"({sa})/(({sa})**2 + 2)"
        if name == "log10":
            return f"log10({a})", f"(log({sa})/log(10))"
        if name == "log1p":
            return f"log1p({a})", f"log(1 + ({sa}))"
        if name == "square":
            return f"square({a})", f"(({sa})**2)"
        return f"{name}({a})", f"{sname}({sa})"
    if r < 0.85:
        op = rng.choice(["+", "-", "*", "/", "*"])
        a, sa = _tree(rng, depth - 1, names)
        b, sb = _tree(rng, rng.randint(0, depth - 1), names)
        if op == "/":
            b, sb = f"(({b})**2 + 1)", f"(({sb})**2 + 1)"
        return f"({a}) {op} ({b})", f"({sa}) {op} ({sb})"
    a, sa = _tree(rng, depth - 1, names)
    k = rng.choice([2, 3, -1, -2, 4])
    if k < 0:
        return f"(({a})**2 + 1)**{k}", f"((({sa})**2 + 1)**({k}))"
    return f"({a})**{k}", f"(({sa})**{k})"


def _tidy(text: str) -> str:
    """The program text without the redundant parentheses around names and numbers."""
    import re

    prev = None
    while prev != text:
        prev = text
        text = re.sub(r"(?<![\w)])\((\w+)\)", r"\1", text)
        text = re.sub(r"(?<![\w)])\((\w+\(\w+\))\)", r"\1", text)
    return text


def _mentions(text: str, name: str) -> bool:
    import re

    return re.search(rf"\b{name}\b", text) is not None


def scalar_cases(rng: random.Random, n: int) -> list[Case]:
    out: list[Case] = []
    seen: set[str] = set()
    fixed = [  # the examples and classic ones
        ("x**x", "x**x"), ("arctan(1/x)", "atan(1/x)"), ("log10(x)", "log(x)/log(10)"),
        ("exp(x**2)", "exp(x**2)"), ("x*log(x)", "x*log(x)"), ("sin(x)/x", "sin(x)/x"),
        ("sqrt(x**2 + 1)", "sqrt(x**2 + 1)"), ("x/(x**2 + 1)", "x/(x**2 + 1)"), ("tanh(x)**2", "tanh(x)**2"),
        ("exp(sin(x))*x**2", "exp(sin(x))*x**2"), ("log(x**2 + 1)/x", "log(x**2 + 1)/x"),
        ("(x + 1)/(x - 2)", "(x + 1)/(x - 2)"), ("1/(1 + x**2)**2", "1/(1 + x**2)**2"),
    ]
    for prog, sym in fixed:
        out.append(Case("scalar", prog, sym, ["x"]))
        seen.add(prog)
    while len(out) < n:
        a, sa = _tree(rng, rng.randint(1, 3), ["x"])
        a = _tidy(a)
        if not _mentions(a, "x") or a in seen:
            continue
        seen.add(a)
        out.append(Case("scalar", a, sa, ["x"]))
    return out


def multi_cases(rng: random.Random, n: int) -> list[Case]:
    out: list[Case] = []
    fixed = [
        ("x**y", "x**y", ["x", "y"]),
        ("u = x*y + sin(x); u**2 + exp(u)", "(x*y + sin(x))**2 + exp(x*y + sin(x))", ["x", "y"]),
        ("r = sqrt(x**2 + y**2); log(r)/r", "log(sqrt(x**2 + y**2))/sqrt(x**2 + y**2)", ["x", "y"]),
    ]
    for prog, sym, wrt in fixed:
        out.append(Case("multi", prog, sym, wrt))
    while len(out) < n:
        names = ["x", "y"] if rng.random() < 0.6 else ["x", "y", "z"]
        u, su = _tree(rng, rng.randint(1, 2), names)
        v, sv = _tree(rng, rng.randint(1, 2), names + ["u"])
        u, v = _tidy(u), _tidy(v)
        if not _mentions(v, "u"):
            v, sv = f"u*({v})", f"u*({sv})"
        sv_inl = sv.replace("u", f"({su})")
        prog = f"u = {u}; {v}"
        used = [m for m in names if _mentions(u, m) or _mentions(v, m)]
        if len(used) < 2:
            continue
        out.append(Case("multi", prog, sv_inl, used))
    return out


def second_cases(rng: random.Random, n: int) -> list[Case]:
    out: list[Case] = [
        Case("second", "x*y", "x*y", ["x", "y"], 2),
        Case("second", "exp(x**2)", "exp(x**2)", ["x"], 3),
        Case("second", "x**y", "x**y", ["x", "y"], 2),
        Case("second", "sin(x)*cos(y)", "sin(x)*cos(y)", ["x", "y"], 2),
        Case("second", "log(x**2 + y**2)", "log(x**2 + y**2)", ["x", "y"], 2),
    ]
    while len(out) < n:
        if rng.random() < 0.25:
            a, sa = _tree(rng, rng.randint(1, 2), ["x"])
            a = _tidy(a)
            if not _mentions(a, "x"):
                continue
            out.append(Case("second", a, sa, ["x"], rng.choice([2, 3])))
            continue
        a, sa = _tree(rng, rng.randint(1, 2), ["x", "y"])
        a = _tidy(a)
        if not _mentions(a, "x") or not _mentions(a, "y"):
            continue
        out.append(Case("second", a, sa, ["x", "y"], 2))
    return out


# array programs: (program, SymPy builder, shapes of the inputs)
ARRAYS: list[tuple[str, dict[str, tuple[int, ...]], int]] = [
    ("sum(x**2)", {"x": (3,)}, 1),
    ("sum(sin(x)*x)", {"x": (4,)}, 1),
    ("dot(a, x)", {"a": (3,), "x": (3,)}, 1),
    ("sum(exp(x))/sum(x**2)", {"x": (3,)}, 1),
    ("norm(x)", {"x": (3,)}, 1),
    ("sum(tanh(W @ x + b)**2)", {"W": (2, 3), "x": (3,), "b": (2,)}, 1),
    ("sum(h**2); h = tanh(W @ x + b)", {"W": (2, 3), "x": (3,), "b": (2,)}, 1),
    ("mean((X @ w - y)**2)", {"X": (5, 3), "w": (3,), "y": (5,)}, 1),
    ("sum(A @ x)", {"A": (2, 2), "x": (2,)}, 1),
    ("x @ A @ x", {"A": (2, 2), "x": (2,)}, 1),
    ("logsumexp(x)", {"x": (3,)}, 1),
    ("sum(x**2 * y)", {"x": (2,), "y": ()}, 2),
    ("sum(x**3)", {"x": (3,)}, 2),
    ("x @ A @ x", {"A": (2, 2), "x": (2,)}, 2),
    ("sum(sin(x))*y", {"x": (2,), "y": ()}, 2),
    ("norm(x)", {"x": (3,)}, 2),
    ("prod(x)", {"x": (3,)}, 1),
    ("sum(x / (1 + x**2))", {"x": (3,)}, 1),
    ("sum(log(1 + exp(x)))", {"x": (3,)}, 1),
    ("trace(A @ A)", {"A": (2, 2)}, 1),
]


def array_cases(rng: random.Random, n: int) -> list[Case]:
    out = [Case("array", prog, prog, list(shapes), order, dict(shapes)) for prog, shapes, order in ARRAYS]
    unary = ["sin", "cos", "exp", "tanh", "arctan", "sinh"]
    while len(out) < n:
        f, g = rng.choice(unary), rng.choice(unary)
        k = rng.choice([3, 4])
        kind = rng.randrange(4)
        if kind == 0:
            prog, shapes = f"sum({f}(x)*{g}(y))", {"x": (k,), "y": (k,)}
        elif kind == 1:
            prog, shapes = f"sum({f}(A @ x))", {"A": (2, k), "x": (k,)}
        elif kind == 2:
            prog, shapes = f"{f}(sum(x**2))*sum({g}(x))", {"x": (k,)}
        else:
            prog, shapes = f"sum({f}(x))**2", {"x": (k,)}
        order = 2 if rng.random() < 0.3 and "A" not in shapes else 1
        out.append(Case("array", prog, prog, list(shapes), order, shapes))
    return out


def all_cases(seed: int = 13, counts: tuple[int, int, int, int] = (200, 80, 70, 50)) -> list[Case]:
    """The whole set (about 400 cases), the same for the same seed."""
    rng = random.Random(seed)
    return (scalar_cases(rng, counts[0]) + multi_cases(rng, counts[1]) + second_cases(rng, counts[2])
            + array_cases(rng, counts[3]))


# ----------------------------------------------------------------------------------------
# SymPy's side


def sympy_env() -> dict[str, Any]:
    import sympy as sp

    return {"log10": lambda a: sp.log(a) / sp.log(10), "square": lambda a: a**2, "log1p": lambda a: sp.log(1 + a),
            "atan": sp.atan, "asin": sp.asin, "asinh": sp.asinh}


def sympy_scalar(case: Case) -> Any:
    """The case's target as a SymPy expression of real symbols."""
    import sympy as sp

    env = sympy_env()
    env.update({n: sp.Symbol(n, real=True) for n in ("x", "y", "z")})
    return sp.sympify(case.sympy, locals=env)


def sympy_array(case: Case) -> tuple[Any, dict[str, Any]]:
    """(target, {name: SymPy matrix or symbol}) for an array case: numpy's functions on matrices of symbols."""
    import sympy as sp

    symbols: dict[str, Any] = {}
    for name, shape in case.shapes.items():
        if shape == ():
            symbols[name] = sp.Symbol(name, real=True)
        elif len(shape) == 1:
            symbols[name] = sp.Matrix(shape[0], 1, lambda i, j, n=name: sp.Symbol(f"{n}_{i}", real=True))
        else:
            symbols[name] = sp.Matrix(*shape, lambda i, j, n=name: sp.Symbol(f"{n}_{i}_{j}", real=True))

    def elementwise(fn: Any) -> Any:
        return lambda m: m.applyfunc(fn) if isinstance(m, sp.MatrixBase) else fn(m)

    def total(m: Any) -> Any:
        return sum(m) if isinstance(m, sp.MatrixBase) else m

    def power(a: Any, k: Any) -> Any:
        return a.applyfunc(lambda t: t**k) if isinstance(a, sp.MatrixBase) else a**k

    class V:
        """Just enough of numpy's arithmetic on SymPy matrices (elementwise * and **, @ as matmul)."""

        def __init__(self, m: Any) -> None:
            self.m = m

        def _o(self, o: Any) -> Any:
            return o.m if isinstance(o, V) else o

        def _zip(self, o: Any, fn: Any) -> V:
            a, b = self.m, self._o(o)
            am, bm = isinstance(a, sp.MatrixBase), isinstance(b, sp.MatrixBase)
            if am and bm:
                return V(sp.Matrix(a.shape[0], a.shape[1], lambda i, j: fn(a[i, j], b[i, j])))
            if am:
                return V(a.applyfunc(lambda t: fn(t, b)))
            if bm:
                return V(b.applyfunc(lambda t: fn(a, t)))
            return V(fn(a, b))

        def __add__(self, o): return self._zip(o, lambda p, q: p + q)  # noqa: E704
        def __radd__(self, o): return self._zip(o, lambda p, q: q + p)  # noqa: E704
        def __sub__(self, o): return self._zip(o, lambda p, q: p - q)  # noqa: E704
        def __rsub__(self, o): return self._zip(o, lambda p, q: q - p)  # noqa: E704
        def __mul__(self, o): return self._zip(o, lambda p, q: p * q)  # noqa: E704
        def __rmul__(self, o): return self._zip(o, lambda p, q: q * p)  # noqa: E704
        def __truediv__(self, o): return self._zip(o, lambda p, q: p / q)  # noqa: E704
        def __rtruediv__(self, o): return self._zip(o, lambda p, q: q / p)  # noqa: E704
        def __pow__(self, k): return V(power(self.m, self._o(k)))  # noqa: E704

        def __matmul__(self, o: Any) -> V:
            a, b = self.m, self._o(o)
            if a.shape[1] == 1 and b.shape[1] == 1:  # vector @ vector
                return V((a.T * b)[0, 0])
            if a.shape[1] == 1:  # vector @ matrix
                return V((a.T * b).T)
            return V(a * b)

    def wrap(fn: Any) -> Any:
        return lambda *a: V(fn(*(t.m if isinstance(t, V) else t for t in a)))

    env: dict[str, Any] = {name: wrap(elementwise(getattr(sp, sname))) for name, sname in
                           [("sin", "sin"), ("cos", "cos"), ("exp", "exp"), ("tanh", "tanh"), ("arctan", "atan"),
                            ("sinh", "sinh"), ("log", "log")]}
    env.update({
        "sum": wrap(total),
        "mean": wrap(lambda m: total(m) / len(m)),
        "dot": wrap(lambda a, b: (a.T * b)[0, 0]),
        "norm": wrap(lambda m: sp.sqrt(sum(t**2 for t in m))),
        "logsumexp": wrap(lambda m: sp.log(sum(sp.exp(t) for t in m))),
        "prod": wrap(lambda m: sp.Mul(*m)),
        "trace": wrap(lambda m: m.trace()),
    })
    env.update({n: V(s) for n, s in symbols.items()})
    body = case.sympy
    if ";" in body:
        target, *binds = [p.strip() for p in body.split(";")]
        for b in binds:
            k, v = (t.strip() for t in b.split("=", 1))
            env[k] = eval(v, {}, env)  # noqa: S307 - our own generated text
    else:
        target = body
    out = eval(target, {}, env)  # noqa: S307 - our own generated text
    return (out.m if isinstance(out, V) else out), symbols


def points(case: Case, rng: np.random.Generator, k: int) -> list[dict[str, Any]]:
    """``k`` random points in the case's box (arrays of its shapes)."""
    out = []
    for _ in range(k):
        pt: dict[str, Any] = {}
        for name in case.wrt:
            shape = case.shapes.get(name, ())
            v = rng.uniform(case.lo, case.hi, size=shape) * rng.choice([-1.0, 1.0], size=shape)
            pt[name] = float(v) if shape == () else v
        out.append(pt)
    return out
