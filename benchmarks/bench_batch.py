"""Benchmark: 100,000 scalar points of ``sin(x)**2 * exp(-x/3)`` and its derivative.

Run from the repository root:  python benchmarks/bench_batch.py [--quick] [--points N] [--subset N]

- hand-vectorised numpy: the value and the derivative written out by hand on the whole array;
- difftape (and HIPS autograd, PyTorch when installed) in a Python loop, one point at a time,
  timed on a subset of the points and extrapolated to all of them;
- difftape on the whole array through one Tape (an elementwise program: the gradient of the sum
  is every point's derivative), for reference;
- ``difftape grad PROGRAM --batch`` end to end (a new process reading one NDJSON object a line on
  stdin, ``{"x": 0.25}``, and writing one JSON line per point), when ``difftape grad --help``
  lists ``--batch``; target (issue 6): under 1 s for 100,000 points. Its output is checked against
  numpy, line by line. Also a shell loop of one ``difftape grad`` process per point, extrapolated.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as c
import numpy as np

import difftape as dt

PROGRAM = "sin(x)**2 * exp(-x/3)"
TARGET_S = 1.0


def hand(x):
    s, e = np.sin(x), np.exp(-x / 3.0)
    value = s * s * e
    return value, e * s * (2.0 * np.cos(x) - s / 3.0)


def difftape_point(xi: float):
    x = dt.constant(xi)
    with dt.Tape() as tape:
        tape.watch(x)
        y = dt.sin(x) ** 2 * dt.exp(-x / 3)
    return y, tape.gradient(y, x)


def difftape_vector(x: np.ndarray):
    xt = dt.constant(x)
    with dt.Tape() as tape:
        tape.watch(xt)
        y = dt.sin(xt) ** 2 * dt.exp(-xt / 3)
    return y.numpy(), tape.gradient(y, xt).numpy()


def cli_command() -> list[str]:
    script = Path(sys.executable).parent / "difftape"
    return [str(script)] if script.exists() else [sys.executable, "-m", "difftape"]


def has_batch() -> bool:
    out = subprocess.run([*cli_command(), "grad", "--help"], capture_output=True, text=True, env=c.child_env())
    return "--batch" in out.stdout


def loop_time(fn, points: np.ndarray, repeat: int) -> float:
    """Median seconds of one pass of ``fn`` over ``points``, one call per point."""
    for xi in points[:20]:
        fn(float(xi))
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for xi in points:
            fn(float(xi))
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def run_batch(xs: np.ndarray, repeat: int) -> tuple[list[float], str]:
    """Wall seconds of each end-to-end run, and a note on the output's correctness."""
    ndjson = "".join(json.dumps({"x": float(v)}) + "\n" for v in xs)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "points.ndjson"
        path.write_text(ndjson)
        cmd = [*cli_command(), "grad", PROGRAM, "--batch"]
        walls, out, env = [], None, c.child_env()
        for _ in range(repeat):
            with path.open("rb") as stdin:
                start = time.perf_counter()
                proc = subprocess.run(cmd, stdin=stdin, capture_output=True, env=env)
                walls.append(time.perf_counter() - start)
            out = proc
    if out.returncode != 0:
        return walls, f"exit status {out.returncode}: {' '.join(out.stderr.decode(errors='replace').split())[:300]}"
    lines = out.stdout.decode().splitlines()
    if len(lines) != len(xs):
        return walls, f"WRONG: {len(lines)} output lines for {len(xs)} input lines"
    value, deriv = hand(xs)
    worst, errors = 0.0, 0
    for i, line in enumerate(lines):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            return walls, f"WRONG: line {i + 1} is not JSON: {line[:120]!r}"
        if "error" in obj:
            errors += 1
            continue
        try:
            got_v, got_g = float(obj["value"]), float(obj["grad"]["x"])
        except (KeyError, TypeError, ValueError):
            return walls, f"cannot read line {i + 1} as a grad result: {line[:160]!r}"
        scale = max(1.0, abs(deriv[i]))
        worst = max(worst, abs(got_v - value[i]) / max(1.0, abs(value[i])), abs(got_g - deriv[i]) / scale)
    verdict = "ok" if errors == 0 and worst < 1e-12 else "WRONG"
    return walls, f"{verdict}: {len(lines)} lines, {errors} error lines, max relative difference from numpy {worst:.1e}"


def main() -> int:
    args = c.arguments(
        __doc__,
        points=(100_000, "points in the batch (default 100000)"),
        subset=(1_000, "points timed in the per-point Python loops (default 1000; --quick: 200)"),
    )
    subset = 200 if args.quick and args.subset == 1_000 else args.subset
    c.header(f"batches: {args.points:,} points of {PROGRAM} and its derivative", args.quick)
    rng = np.random.default_rng(0)
    xs = rng.uniform(-2.0, 5.0, args.points)
    scale = args.points / subset
    rows: list[list[str]] = []

    ref_v, ref_g = hand(xs)
    t_hand = c.measure({"hand": lambda: hand(xs)}, args.repeat, 0.05 if not args.quick else 0.01)["hand"].median
    rows.append(["hand-vectorised numpy", f"{t_hand * 1e3:.2f} ms", "1.00x", "measured"])

    v, g = difftape_vector(xs)
    ok = np.allclose(v, ref_v, rtol=1e-12) and np.allclose(g, ref_g, rtol=1e-12, atol=1e-15)
    t_vec = c.measure({"vec": lambda: difftape_vector(xs)}, args.repeat, 0.05 if not args.quick else 0.01)["vec"].median
    rows.append(
        [
            "difftape, one Tape over the whole array",
            f"{t_vec * 1e3:.2f} ms",
            f"{t_vec / t_hand:.1f}x",
            "measured" + ("" if ok else " (WRONG result)"),
        ]
    )

    loop_repeat = 1 if args.quick else 3
    sub = xs[:subset]
    y, gp = difftape_point(float(sub[0]))
    assert np.isclose(float(y), ref_v[0]) and np.isclose(float(gp), ref_g[0]), "difftape per-point result differs"
    t = loop_time(difftape_point, sub, loop_repeat) * scale
    rows.append(
        [
            "difftape Tape, Python loop per point",
            f"{t:.2f} s",
            f"{t / t_hand:.0f}x",
            f"extrapolated from {subset:,} points",
        ]
    )

    ag = c.optional("autograd")
    if ag is not None:
        import autograd.numpy as anp

        ag_grad = ag.grad(lambda x: anp.sin(x) ** 2 * anp.exp(-x / 3))
        assert np.isclose(ag_grad(float(sub[0])), ref_g[0])
        t = loop_time(ag_grad, sub, loop_repeat) * scale
        rows.append(
            [
                "HIPS autograd.grad, Python loop per point",
                f"{t:.2f} s",
                f"{t / t_hand:.0f}x",
                f"extrapolated from {subset:,} points",
            ]
        )
    else:
        rows.append(["HIPS autograd.grad, Python loop per point", c.SKIPPED, "", ""])

    torch = c.optional("torch")
    if torch is not None:

        def torch_point(xi):
            x = torch.tensor(xi, dtype=torch.float64, requires_grad=True)
            y = torch.sin(x) ** 2 * torch.exp(-x / 3)
            return y, torch.autograd.grad(y, x)[0]

        assert np.isclose(float(torch_point(float(sub[0]))[1]), ref_g[0])
        t = loop_time(torch_point, sub, loop_repeat) * scale
        rows.append(
            [
                "PyTorch, Python loop per point",
                f"{t:.2f} s",
                f"{t / t_hand:.0f}x",
                f"extrapolated from {subset:,} points",
            ]
        )
    else:
        rows.append(["PyTorch, Python loop per point", c.SKIPPED, "", ""])

    n_proc = 2 if args.quick else 5
    cmd = [*cli_command(), "grad", PROGRAM, "--at"]
    env = c.child_env()
    subprocess.run([*cmd, "0.5"], capture_output=True, env=env)
    walls = []
    for xi in xs[:n_proc]:
        start = time.perf_counter()
        subprocess.run([*cmd, repr(float(xi))], capture_output=True, check=True, env=env)
        walls.append(time.perf_counter() - start)
    t = statistics.median(walls) * args.points
    rows.append(
        [
            "shell loop: one `difftape grad` process per point",
            f"{t / 3600:.1f} h",
            f"{t / t_hand:.0f}x",
            f"extrapolated from {n_proc} runs",
        ]
    )

    batch_line = None
    if has_batch():
        run_batch(xs[:1], 1)  # warm-up: fresh .pyc files, OS caches
        walls, note = run_batch(xs, 1 if args.quick else 3)
        t = statistics.median(walls)
        rows.append(
            [
                f"difftape grad --batch, {args.points:,} NDJSON lines on stdin",
                f"{t:.3f} s",
                f"{t / t_hand:.0f}x",
                f"end to end, median of {len(walls)} runs; output {note}",
            ]
        )
        if note.startswith("ok"):
            t1 = statistics.median(run_batch(xs[:1], 1 if args.quick else 3)[0])
            per_point = f"{(t - t1) / max(1, len(xs) - 1) * 1e6:.1f} us per further point"
            rows.append(["difftape grad --batch, 1 line (its fixed cost)", f"{t1:.3f} s", "", f"so {per_point}"])
        batch_line = c.target_line(f"difftape grad --batch, {args.points:,} points, end to end, s", t, TARGET_S)
        if not note.startswith("ok"):
            batch_line = f"FAIL  difftape grad --batch: output not right ({note})"
    else:
        rows.append(["difftape grad --batch (CLI)", "not available yet", "", "`difftape grad --help` has no --batch"])

    print(f"{args.points:,} points, x uniform in [-2, 5); value and derivative of each")
    print(c.table(["method", "time", "vs hand numpy", "how"], rows))
    print()
    print("target (issue 6):")
    print(batch_line or "----  difftape grad --batch < 1 s: not available yet (no --batch option)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
