"""``difftape diff`` against SymPy on the seeded set of tests/math_cases.py (about 400 programs).

For each case: the time ``derive`` takes, whether every printed derivative is numerically right
(at random points, against SymPy's derivative evaluated in 30 digits, rtol 1e-9), and for the
scalar cases the printed length against ``str(sympy.simplify(sympy.diff(...)))``, both in
difftape's text and in SymPy's own syntax (``--format sympy``: the same names, a fair count).

    python benchmarks/bench_diff.py            # the whole set
    python benchmarks/bench_diff.py --quick    # every fourth case
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import math_cases as mc  # noqa: E402

from difftape.language.compiler import compile_program  # noqa: E402
from difftape.transforms.symbolic import derive  # noqa: E402

RTOL = 1e-9


def sympy_derivatives(case: mc.Case) -> dict[tuple[str, ...], Any]:
    """{key: SymPy expression or array of them}, keys as derive's (``(a,)`` or ``(a, b)``)."""
    import sympy as sp

    if case.family != "array":
        f = mc.sympy_scalar(case)
        sym = {n: sp.Symbol(n, real=True) for n in case.wrt}
        if case.order == 1:
            return {(n,): sp.diff(f, sym[n]) for n in case.wrt}
        if case.order == 2:
            return {(a, b): sp.diff(f, sym[a], sym[b]) for a in case.wrt for b in case.wrt}
        return {(n,): sp.diff(f, sym[n], case.order) for n in case.wrt}
    f, symbols = mc.sympy_array(case)

    def elems(name: str) -> list[Any]:
        s = symbols[name]
        return [s] if case.shapes[name] == () else list(s)

    out: dict[tuple[str, ...], Any] = {}
    for a in case.wrt:
        da = [sp.diff(f, s) for s in elems(a)]
        if case.order == 1:
            out[(a,)] = (da, case.shapes[a])
            continue
        for b in case.wrt:
            out[(a, b)] = ([sp.diff(d, s) for d in da for s in elems(b)], case.shapes[a] + case.shapes[b])
    return out


def _env(case: mc.Case, point: dict[str, Any]) -> dict[Any, Any]:
    import sympy as sp

    env: dict[Any, Any] = {}
    for name, v in point.items():
        shape = case.shapes.get(name, ())
        if case.family != "array" or shape == ():
            env[sp.Symbol(name, real=True)] = sp.Float(repr(float(v)), 30)
        else:
            arr = np.asarray(v)
            for idx in np.ndindex(*shape):
                sym = f"{name}_" + "_".join(str(i) for i in idx)
                env[sp.Symbol(sym, real=True)] = sp.Float(repr(float(arr[idx])), 30)
    return env


def truth(expr: Any, case: mc.Case, point: dict[str, Any]) -> np.ndarray:
    """SymPy's derivative at ``point``, in 30 digits (mpmath), as float64."""
    env = _env(case, point)
    items, shape = expr if isinstance(expr, tuple) else ([expr], ())
    vals = []
    for e in items:
        v = complex(e.evalf(30, subs=env))
        vals.append(v.real if abs(v.imag) <= 1e-300 else np.nan)
    return np.array(vals).reshape(shape)


def leaf_values(program: str, point: dict[str, Any]) -> dict[str, Any]:
    """The program's leaves (inputs and the bindings of constants) at ``point``: what a derivative refers to."""
    graph = compile_program(program, values=point)
    named = graph.named_nodes()
    leaves = [n for n in named if graph.nodes[named[n]].leaf or n in point]
    _, vals = graph.run(outputs=leaves)
    return {k: np.asarray(getattr(v, "_value", v), dtype=np.float64) for k, v in vals.items()}


def ours(text: str, env: dict[str, Any]) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.asarray(compile_program(text, values=env).run()._value, dtype=np.float64)


def _flat(tree: dict[str, Any]) -> dict[tuple[str, ...], str]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update({(k, k2): t for k2, t in v.items()})
        else:
            out[(k,)] = v
    return out


def run_case(case: mc.Case, rng: np.random.Generator, npoints: int = 3) -> dict[str, Any]:
    """Derive (timed), then check every printed derivative at ``npoints`` random points."""
    pts = mc.points(case, rng, npoints + 3)
    at = pts[0] if case.family == "array" else None
    start = time.perf_counter()
    res = derive(case.program, wrt=case.wrt, order=case.order, values=at)
    seconds = time.perf_counter() - start
    printed = _flat(res.printed)
    refs = sympy_derivatives(case)
    checked = 0
    bad: list[str] = []
    for pt in pts:
        if checked >= npoints:
            break
        ok_point = True
        results = []
        env = leaf_values(case.program, pt)
        for key, ref in refs.items():
            want = truth(ref, case, pt)
            if not np.all(np.isfinite(want)) or np.max(np.abs(want), initial=0) > 1e12:
                ok_point = False
                break
            results.append((key, ours(printed[key], env), want))
        if not ok_point:
            continue
        checked += 1
        for key, got, want in results:
            if got.shape != want.shape and got.size == 1:
                got = np.broadcast_to(got, want.shape)
            err = np.abs(got - want)
            if got.shape != want.shape or not np.all(err <= RTOL * np.abs(want) + 1e-12):
                bad.append(f"{'/'.join(key)} at {pt}: printed {printed[key]} gives {got}, SymPy {want}")
    return {"case": case, "seconds": seconds, "printed": printed, "checked": checked, "bad": bad, "res": res}


def sympy_length(case: mc.Case) -> tuple[int, float]:
    """Total length of ``str(simplify(diff(...)))`` over the case's derivatives, and the time it took."""
    import sympy as sp

    start = time.perf_counter()
    total = sum(len(str(sp.simplify(e))) for e in sympy_derivatives(case).values())
    return total, time.perf_counter() - start


def sympy_format_length(case: mc.Case) -> int:
    res = derive(case.program, wrt=case.wrt, order=case.order, fmt="sympy")
    return sum(len(t) for t in _flat(res.printed).values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="every fourth case")
    args = ap.parse_args()
    cases = mc.all_cases()
    if args.quick:
        cases = cases[::4]
    rng = np.random.default_rng(13)
    ours_len = theirs = ours_sym = 0
    worst = 0.0
    failures = 0
    unchecked = 0
    sympy_seconds = 0.0
    for case in cases:
        r = run_case(case, rng)
        worst = max(worst, r["seconds"])
        if r["bad"]:
            failures += 1
            print("WRONG", case.ident, *r["bad"][:2], sep="\n  ")
        if not r["checked"]:
            unchecked += 1
        if case.family != "array":
            n, t = sympy_length(case)
            sympy_seconds += t
            theirs += n
            ours_len += sum(len(x) for x in r["printed"].values())
            ours_sym += sympy_format_length(case)
    print(f"cases {len(cases)}  wrong {failures}  without a checkable point {unchecked}  "
          f"slowest derive {worst:.3f} s")
    print(f"printed length, scalar cases: difftape {ours_len}  SymPy simplify {theirs}  "
          f"ratio {ours_len / theirs:.3f}  (in SymPy's syntax: {ours_sym}, ratio {ours_sym / theirs:.3f})  "
          f"[SymPy's simplify took {sympy_seconds:.1f} s]")


if __name__ == "__main__":
    main()
