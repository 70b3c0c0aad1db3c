"""Benchmark: parsing a 10 KB program (target: under 50 ms), plus compiling it.

Run from the repository root:  python benchmarks/bench_parse.py [--kb 10] [--repeat 30]

The program is a chain of dense one-line bindings (about 2 characters per token, a
hard case for the lexer and the parser). The parser is built once before timing, as it
is in a running process. Both wall-clock and CPU time are reported, best and median of
the repeats: on a shared machine other processes inflate wall-clock time, and the
best CPU time is the figure that compares with the target.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from difftape.language.compiler import compile_program  # noqa: E402
from difftape.language.parser import parse  # noqa: E402

TARGET_MS = 50.0


def make_program(kb: float) -> str:
    """Bindings v1 = f(v0), v2 = f(v1), ... until the text reaches ``kb`` kilobytes."""
    lines = ["x = randn(4, 3)", "v0 = sum(x, axis=0)"]
    size = sum(len(line) + 1 for line in lines)
    i = 1
    while size < kb * 1000:
        line = f"v{i} = sin(v{i - 1}) * 2.5 + sum(x[0:3, 1], axis=0) ** 2 - exp(-v{i - 1} / 3)  # step {i}"
        lines.append(line)
        size += len(line) + 1
        i += 1
    return "\n".join(lines)


def timings(fn, repeat: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU milliseconds of each run."""
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        cpu.append((time.process_time() - start_cpu) * 1000)
        wall.append((time.perf_counter() - start) * 1000)
    return wall, cpu


def summary(ms: list[float]) -> str:
    return f"best {min(ms):6.1f} ms, median {statistics.median(ms):6.1f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kb", type=float, default=10.0, help="program size in kilobytes (default 10)")
    ap.add_argument("--repeat", type=int, default=30, help="timed runs (default 30)")
    args = ap.parse_args()
    source = make_program(args.kb)
    start = time.perf_counter()
    parse("x")  # builds the parser (or loads Lark's cache): once per process
    first = (time.perf_counter() - start) * 1000
    parse_wall, parse_cpu = timings(lambda: parse(source), args.repeat)
    both_wall, both_cpu = timings(lambda: compile_program(source), max(3, args.repeat // 5))
    print(f"program: {len(source):,} characters, {source.count(chr(10)) + 1} lines")
    print(f"parser set-up (first parse in this process): {first:.1f} ms")
    print(f"parse            wall {summary(parse_wall)} | cpu {summary(parse_cpu)}")
    print(f"parse + compile  wall {summary(both_wall)} | cpu {summary(both_cpu)}")
    best = min(parse_cpu)
    verdict = "OK" if best < TARGET_MS else "SLOWER THAN"
    print(f"{verdict}: best parse CPU time {best:.1f} ms against the target of {TARGET_MS:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
