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

Issue 16 (``--million``, on by default; ``--million-points N``, ``--columnar-points N``):

- the JSON libraries on the blocks ``--batch`` parses and writes (8,192 lines of ``{"x": ...}``; parse:
  the block as one array, dump: one column of floats): the standard library, msgspec (difftape's fast
  path, ``difftape[fast]``) and orjson (measured only: it reads integers beyond 64 bits as floats, silently);
- ``difftape grad PROGRAM --batch`` on 1,000,000 NDJSON points (seed 0) end to end, with msgspec and with
  ``DIFFTAPE_JSON=stdlib``; the two outputs must be byte-identical; target < 1.5 s;
- the columnar path, ``--at-file points.npy --output out.npy`` (10,000,000 points by default: the fixed
  cost of start-up, ~0.25 s, is then a small part), in points/s end to end; target >= 5,000,000 points/s;
  its output is checked against numpy; beside it hand-written numpy in this process, and ``torch.func.vmap``
  of ``torch.func.grad`` and ``jax.vmap(jax.grad)`` where installed.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c
import numpy as np

import difftape as dt

PROGRAM = "sin(x)**2 * exp(-x/3)"
TARGET_S = 1.0
MILLION_TARGET_S = 1.5
COLUMNAR_TARGET = 5_000_000  # points per second, end to end


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
        million_points=(1_000_000, "NDJSON points of the issue 16 run (default 1000000)"),
        columnar_points=(10_000_000, "points of the columnar run (default 10000000)"),
        no_million=(0, "1: skip the issue 16 part"),
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
    if not args.no_million:
        million(args)
    return 0


def json_blocks(repeat: int) -> list[list[str]]:
    """Parse and dump of one --batch block (8,192 lines) with each JSON library, per 1,000,000 lines."""
    block = 8_192
    xs = np.random.default_rng(1).uniform(-2.0, 5.0, block)
    text = "".join(json.dumps({"x": float(v)}) + "\n" for v in xs).encode()
    joined = b"[" + text[:-1].replace(b"\n", b",") + b"]"
    values = xs.tolist()
    scale = 1_000_000 / block
    libs = {"json (stdlib)": (lambda: json.loads(joined), lambda: list(map(float.__repr__, values)))}
    ms = c.optional("msgspec")
    if ms is not None:
        import msgspec.json

        dec, enc = msgspec.json.Decoder().decode, msgspec.json.Encoder().encode
        libs["msgspec (difftape[fast])"] = (lambda: dec(joined), lambda: enc(values).decode()[1:-1].split(","))
    oj = c.optional("orjson")
    if oj is not None:
        libs["orjson (measured only)"] = (lambda: oj.loads(joined),
                                          lambda: oj.dumps(xs, option=oj.OPT_SERIALIZE_NUMPY).decode()[1:-1].split(","))
    rows = []
    for name, (parse, dump) in libs.items():
        t = c.measure({"p": parse, "d": dump}, repeat, 0.05)
        rows.append([name, f"{t['p'].median * scale * 1e3:.0f} ms", f"{t['d'].median * scale * 1e3:.0f} ms"])
    for name in ("msgspec (difftape[fast])", "orjson (measured only)"):
        if name.split()[0] not in {k.split()[0] for k in libs}:
            rows.append([name, c.SKIPPED, ""])
    return rows


def timed_cli(args: list[str], stdin_path: Path | None, env: dict[str, str], repeat: int) -> tuple[list[float], Any]:
    walls, proc = [], None
    for _ in range(repeat):
        stdin = stdin_path.open("rb") if stdin_path is not None else subprocess.DEVNULL
        try:
            start = time.perf_counter()
            proc = subprocess.run([*cli_command(), *args], stdin=stdin, capture_output=True, env=env)
            walls.append(time.perf_counter() - start)
        finally:
            if stdin_path is not None:
                stdin.close()
    return walls, proc


def million(args) -> None:
    """Issue 16: 1,000,000 NDJSON points end to end per JSON library, and the columnar path's points/s."""
    repeat = 1 if args.quick else 3
    n, m = args.million_points, args.columnar_points
    print()
    print(f"issue 16: {n:,} NDJSON points and {m:,} columnar points of {PROGRAM} (x uniform in [-2, 5), seed 0)")
    print(c.table(["JSON library, one 8,192-line block", "parse, per 1M lines", "dump of floats, per 1M"],
                  json_blocks(3 if args.quick else 7)))
    rows: list[list[str]] = []
    lines: list[str] = []
    xs = np.random.default_rng(0).uniform(-2.0, 5.0, n)
    with tempfile.TemporaryDirectory() as tmp:
        nd = Path(tmp) / "points.ndjson"
        nd.write_text("".join(json.dumps({"x": float(v)}) + "\n" for v in xs))
        outputs = {}
        have_fast = c.optional("msgspec") is not None
        for lib in (["msgspec"] if have_fast else []) + ["stdlib"]:
            env = c.child_env()
            env["DIFFTAPE_JSON"] = "auto" if lib == "msgspec" else "stdlib"
            timed_cli(["grad", PROGRAM, "--batch"], nd, env, 1)  # warm-up
            walls, proc = timed_cli(["grad", PROGRAM, "--batch"], nd, env, repeat)
            t = statistics.median(walls)
            outputs[lib] = proc.stdout
            ok = proc.returncode == 0 and proc.stdout.count(b"\n") == n
            rows.append([f"grad --batch, {n:,} NDJSON lines, {lib}", f"{t:.2f} s", f"{n / t / 1e6:.2f} M/s",
                         f"median of {len(walls)}" + ("" if ok else f" (FAILED: exit {proc.returncode})")])
            if lib == "msgspec" or not have_fast:
                lines.append(c.target_line(f"grad --batch, {n:,} NDJSON points end to end ({lib}), s", t,
                                           MILLION_TARGET_S) if ok else f"FAIL  grad --batch ({lib}) failed")
        if len(outputs) == 2:
            same = outputs["msgspec"] == outputs["stdlib"]
            size = len(outputs["stdlib"])
            lines.append(f"{c.verdict(same):4}  msgspec and stdlib outputs byte-identical ({size:,} bytes)")
        else:
            lines.append("----  msgspec not installed: only the stdlib path measured (pip install \"difftape[fast]\")")

        cx = np.random.default_rng(0).uniform(-2.0, 5.0, m)
        npy, out = Path(tmp) / "points.npy", Path(tmp) / "out.npy"
        np.save(npy, cx)
        argv = ["grad", PROGRAM, "--at-file", str(npy), "--output", str(out)]
        timed_cli(argv, None, c.child_env(), 1)
        walls, proc = timed_cli(argv, None, c.child_env(), repeat)
        t = statistics.median(walls)
        note = f"exit {proc.returncode}: {proc.stderr.decode(errors='replace')[:200]}"
        if proc.returncode == 0:
            res = np.load(out)
            v, g = hand(cx)
            worst = max(float(np.max(np.abs(res["value"] - v))), float(np.max(np.abs(res["grad.x"] - g))))
            note = ("ok" if worst < 1e-12 else "WRONG") + f": max abs difference from numpy {worst:.1e}"
        rows.append([f"grad --at-file .npy --output .npy, {m:,} points", f"{t:.2f} s", f"{m / t / 1e6:.2f} M/s",
                     f"end to end, median of {len(walls)}; {note}"])
        rate = m / t if note.startswith("ok") else 0.0
        lines.append(f"{c.verdict(rate >= COLUMNAR_TARGET):4}  columnar grad, {m:,} points end to end: "
                     f"{rate / 1e6:.2f}M points/s (target >= {COLUMNAR_TARGET / 1e6:.0f}M points/s)")
    t_hand = c.measure({"h": lambda: hand(cx)}, repeat, 0.05)["h"].median
    rows.append([f"hand-written numpy on {m:,} points (in process)", f"{t_hand:.2f} s", f"{m / t_hand / 1e6:.1f} M/s",
                 "value and derivative, whole array"])
    rows.extend(vmap_rows(cx, repeat))
    print(c.table(["method", "time", "points/s", "how"], rows))
    print()
    print("targets (issue 16):")
    for line in lines:
        print(line)


def vmap_rows(cx: np.ndarray, repeat: int) -> list[list[str]]:
    """torch.func.vmap(grad) and jax.vmap(jax.grad) of the program over the points, in process, where installed."""
    rows = []
    m = len(cx)
    torch = c.optional("torch")
    if torch is not None:
        from torch.func import grad, vmap

        f = lambda x: torch.sin(x) ** 2 * torch.exp(-x / 3)
        xt = torch.from_numpy(cx)
        both = lambda: (f(xt), vmap(grad(f))(xt))
        assert np.allclose(both()[1].numpy(), hand(cx)[1], rtol=1e-12, atol=1e-15)
        t = c.measure({"t": both}, repeat, 0.05)["t"].median
        rows.append([f"torch.func.vmap(grad), {m:,} points (in process)", f"{t:.2f} s", f"{m / t / 1e6:.1f} M/s",
                     "value and derivative"])
    else:
        rows.append(["torch.func.vmap(grad)", c.SKIPPED, "", ""])
    jax = c.optional("jax")
    if jax is not None:
        jax.config.update("jax_enable_x64", True)
        jnp = jax.numpy
        f = lambda x: jnp.sin(x) ** 2 * jnp.exp(-x / 3)
        g = jax.jit(jax.vmap(jax.value_and_grad(f)))
        xj = jnp.asarray(cx)
        run = lambda: [a.block_until_ready() for a in g(xj)]
        t = c.measure({"j": run}, repeat, 0.05)["j"].median
        rows.append([f"jax.jit(vmap(value_and_grad)), {m:,} points", f"{t:.2f} s", f"{m / t / 1e6:.1f} M/s",
                     "in process"])
    else:
        rows.append(["jax.vmap(jax.grad)", c.SKIPPED, "", ""])
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
