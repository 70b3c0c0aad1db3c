"""``check`` time against input size: full vs directional mode, and against torch's gradcheck.

The program is the issue's ``sum(tanh(W @ x) ** 2)`` with ``W`` of shape (n, n) and ``x`` of shape
(n,), for several n. Each row times ``difftape.answers.checker.check`` (what ``difftape check``
runs, without process start-up) in full mode (every element: the cost grows with n**2 elements)
and in directional mode (3 random directions: about constant in the number of elements), and,
where torch is installed, ``torch.autograd.gradcheck(fast_mode=True)`` on the same function in
float64 (PyTorch's own fast mode), as a ratio measured in the same run.

A second table times many points (``check --points N`` / ``check --batch``) of small programs: the
vectorised check of ``difftape.answers.batch_check`` over N points (the summary, and the JSON lines
``--batch`` prints) against ``Program.check`` point by point at the same points (what N runs of
``difftape check --at ...`` compute, without their start-ups), extrapolated from a subset of the
points; the verdicts of the subset are compared too (column "agree"). Then the command itself,
``difftape check ... --points N``, end to end.

    python benchmarks/bench_check.py [--quick] [--sizes 10,30,100,300] [--points 10000] [--subset 300]
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
from _common import arguments, child_env, header, optional, table

from difftape.answers.checker import check
from difftape.answers.program import Program


def timed(fn, repeat: int) -> float:
    """Median seconds of ``repeat`` calls (after one warm-up)."""
    fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return float(np.median(samples))


def main() -> None:
    args = arguments(__doc__, sizes=("10,30,100,300", "matrix sizes n (W is n x n)"),
                     points=(10_000, "points of the many-points table"),
                     subset=(300, "points checked one by one (the per-point time is extrapolated from them)"))
    header("check: time against input size (full vs directional) and torch.autograd.gradcheck(fast_mode)", args.quick)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.quick:
        sizes = [s for s in sizes if s <= 100] or sizes[:1]
    repeat = 1 if args.quick else 3
    torch = optional("torch")
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        at = {"W": rng.standard_normal((n, n)) / np.sqrt(n), "x": rng.standard_normal(n)}
        program = Program("sum(tanh(W @ x) ** 2)", at=at)
        elements = n * n + n
        t_dir = timed(lambda program=program: check(program, mode="directional"), repeat)
        t_full = None
        if elements <= 11_000 or not args.quick:
            t_full = timed(lambda program=program: check(program, mode="full"), repeat)
        t_torch = None
        if torch is not None:
            W = torch.tensor(at["W"], requires_grad=True)
            x = torch.tensor(at["x"], requires_grad=True)

            def torch_check(W=W, x=x):
                assert torch.autograd.gradcheck(lambda w, v: (torch.tanh(w @ v) ** 2).sum(), (W, x), fast_mode=True)

            t_torch = timed(torch_check, repeat)
        rows.append([
            n, elements,
            f"{t_full:.3f}" if t_full is not None else "-",
            f"{t_dir:.3f}",
            f"{t_torch:.3f}" if t_torch is not None else "skipped (not installed)",
            f"{t_dir / t_torch:.2f}x" if t_torch else "-",
        ])
    print(table(["n", "input elements", "full (s)", "directional (s)", "torch fast gradcheck (s)",
                 "directional / torch"], rows))
    print()
    print("target: the 300 x 300 case checks in under 3 s (directional; `difftape check` end to end adds start-up)")
    print()
    many_points(args)


#: Small programs for the many-points table: analytic (complex step), not analytic (Ridders), a layer.
MANY = [
    ("sin(x)**2 * exp(-x/3) + x*y", {}, "auto"),
    ("abs(x) * x + y**3", {}, "auto"),
    ("sum(tanh(W @ x) ** 2); W = randn(3, 4)", {"x": "zeros(4)"}, "auto"),
    ("sum(tanh(W @ x) ** 2); W = randn(3, 4)", {"x": "zeros(4)"}, "directional"),
]


def many_points(args) -> None:
    """``check --points N``: vectorised against point by point, at the same points."""
    from difftape.answers import batch_check as bc
    from difftape.answers.batch import BatchProgram
    from difftape.io.render import check_json, dumps

    n = 2_000 if args.quick else args.points
    subset = min(n, 50 if args.quick else args.subset)
    print(f"many points: check of {n:,} random points (`check --points {n}`), vectorised vs point by point "
          f"(Program.check at each point, extrapolated from {subset:,} of them)")
    rows = []
    ratios = []
    for source, at_text, mode in MANY:
        from difftape.answers.program import parse_value

        at = {k: parse_value(v) for k, v in at_text.items()}
        prog = BatchProgram(source, at=at)
        checker = bc.BatchChecker(prog, mode=mode)
        group, names = bc.draw_points(prog, n, seed=0)
        found: dict[int, bool] = {}

        def vectorised(found=found, checker=checker, group=group) -> None:
            stats = bc.CheckStats()
            checker._sigs.clear()  # each sample compiles the signature again, as a fresh command does
            checker.check_group(group, lambda line, res, score: found.__setitem__(line, res.ok)
                                if line < subset else stats.verdict(line + 1, res, score),
                                lambda lines, err: None)

        def as_lines(checker=checker, group=group) -> None:
            out: list[str] = []  # as --batch writes them: each vectorised run's lines in bulk
            checker._sigs.clear()
            checker.check_group(group, lambda line, res, score: out.append(dumps(check_json(res, res.rtol, res.atol))),
                                lambda lines, err: None, lambda lines, block: out.extend(block.json_lines()))

        points = [{k: v[j] for k, v in group.values.items()} for j in range(subset)]
        single_ok: list[bool] = []

        def one_by_one(points=points, single_ok=single_ok, source=source, at=at, mode=mode) -> None:
            single_ok.clear()
            for p in points:
                res = Program(source, at={**at, **p}).check(mode=mode)
                single_ok.append(res.ok)

        repeat = 1 if args.quick else 3
        t_vec = timed(vectorised, repeat)
        t_lines = timed(as_lines, repeat)
        t_one = timed(one_by_one, 1) / subset
        agree = all(found.get(j) == ok for j, ok in enumerate(single_ok))
        ratio = t_one * n / t_vec
        ratios.append(ratio)
        rows.append([source + ("" if mode == "auto" else f"  [{mode}]"), f"{n:,}", f"{t_vec:.3f}", f"{t_lines:.3f}",
                     f"{t_one * 1e3:.2f}", f"{t_one * n:.1f}", f"{ratio:.0f}x", "yes" if agree else "NO"])
    print(table(["program", "points", "vectorised (s)", "with JSON lines (s)", "point by point (ms/point)",
                 "point by point, all (s)", "ratio", "agree"], rows))
    print()
    source = MANY[0][0]
    cmd = [sys.executable, "-m", "difftape", "check", source, "--points", str(n)]
    subprocess.run(cmd, capture_output=True, env=child_env(), check=False)  # warm-up (.pyc files)
    start = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), check=False)
    t_cmd = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run([*cmd[:-2], "--at", "x=0.5", "--at", "y=0.3"], capture_output=True, env=child_env(), check=False)
    t_one_cmd = time.perf_counter() - start
    last = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr.strip()
    print(f"`difftape check \"{source}\" --points {n}` end to end: {t_cmd:.2f} s (exit {run.returncode}: {last}); "
          f"one point, end to end: {t_one_cmd:.2f} s")
    print(f"vectorised / point by point: {min(ratios):.0f}x to {max(ratios):.0f}x faster "
          f"(median {float(np.median(ratios)):.0f}x)")


if __name__ == "__main__":
    main()
