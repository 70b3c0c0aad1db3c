"""Benchmark: start-up of ``difftape grad "x**3" --at 2`` against ``python -c "import numpy, click, lark"``.

Run from the repository root:  python benchmarks/bench_startup.py [--quick] [--runs N] [--top N]

Both commands run as fresh processes of the interpreter running this script (the console script
``difftape`` next to it, else ``python -m difftape``), interleaved (A, B, A, B, ...) after warm-up
runs, and the medians of wall-clock time (and of the children's CPU time) are compared; target
(issue 6): ratio <= 1.15; issue 16: ratio to ``python -c "import numpy, click"`` (the runtime
dependencies alone, the floor) <= 1.05, so that the float code, the fused kernels and their
optional imports add nothing to start-up. ``python -c "import difftape.cli"`` (the imports alone) and ``python -c pass``
(the interpreter alone) are timed alongside, to show where the difference lies.

The children run without PYTHONDONTWRITEBYTECODE, as on a user's machine, so the warm-up runs
leave fresh ``.pyc`` files behind and no run pays for compiling stale ones. Then the command is
run under ``python -X importtime`` (median of a few runs per module): the top entries by
cumulative time, and the modules that the difftape command imports beyond the baseline's.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _common as c

PROGRAM = ["grad", "x**3", "--at", "2"]
TARGET = 1.15
FLOOR_TARGET = 1.05  # issue 16, against import numpy, click


def difftape_command() -> list[str]:
    script = Path(sys.executable).parent / "difftape"
    return [str(script), *PROGRAM] if script.exists() else [sys.executable, "-m", "difftape", *PROGRAM]


def run_once(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock and CPU (user+sys) seconds of one run of ``cmd``; it must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def importtime(cmd: list[str], env: dict[str, str], runs: int) -> dict[str, tuple[float, float, int]]:
    """module -> (median self us, median cumulative us, nesting level) under ``python -X importtime``."""
    argv = [sys.executable, "-X", "importtime", *(cmd[1:] if cmd[0] == sys.executable else cmd)]
    seen: dict[str, list[tuple[int, int, int]]] = {}
    for _ in range(runs):
        err = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL).stderr
        for line in err.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, cum_us, name = line[len("import time:") :].split("|")
            level = (len(name) - len(name.lstrip(" "))) // 2
            seen.setdefault(name.strip(), []).append((int(self_us), int(cum_us), level))
    return {
        name: (statistics.median(s for s, _, _ in v), statistics.median(k for _, k, _ in v), v[0][2])
        for name, v in seen.items()
    }


def main() -> int:
    args = c.arguments(
        __doc__,
        runs=(40, "timed runs of each command (default 40; --quick: 6)"),
        top=(15, "import-time entries to list (default 15)"),
    )
    runs = 6 if args.quick and args.runs == 40 else args.runs
    c.header("start-up: difftape grad vs import numpy, click, lark", args.quick)
    env = c.child_env()
    commands = {
        'difftape grad "x**3" --at 2': difftape_command(),
        'python -c "import numpy, click, lark"': [sys.executable, "-c", "import numpy, click, lark"],
        'python -c "import numpy, click"': [sys.executable, "-c", "import numpy, click"],
        'python -c "import difftape.cli"': [sys.executable, "-c", "import difftape.cli"],
        "python -c pass": [sys.executable, "-c", "pass"],
    }
    out = subprocess.run(commands['difftape grad "x**3" --at 2'], env=env, capture_output=True, text=True)
    print(f"difftape command: {' '.join(commands[next(iter(commands))])}")
    print(f"its output: {' | '.join(line.strip() for line in out.stdout.strip().splitlines())}")
    print()
    for cmd in commands.values():  # warm-up: OS file cache, fresh .pyc files
        for _ in range(3):
            run_once(cmd, env)
    walls: dict[str, list[float]] = {k: [] for k in commands}
    cpus: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            wall, cpu = run_once(cmd, env)
            walls[name].append(wall)
            cpus[name].append(cpu)
    base = 'python -c "import numpy, click, lark"'
    rows = []
    for name in commands:
        w, u = statistics.median(walls[name]), statistics.median(cpus[name])
        rows.append(
            [
                name,
                c.fmt_ms(w),
                c.fmt_ms(min(walls[name])),
                c.fmt_ms(u),
                f"{w / statistics.median(walls[base]):.2f}x",
            ]
        )
    print(f"{runs} interleaved runs of each command")
    print(c.table(["command", "wall ms median", "wall ms best", "cpu ms median", "wall vs import baseline"], rows))
    print()
    ratio = statistics.median(walls[next(iter(commands))]) / statistics.median(walls[base])
    cpu_ratio = statistics.median(cpus[next(iter(commands))]) / statistics.median(cpus[base])
    print("target (issue 6; medians):")
    best = min(walls[next(iter(commands))]) / min(walls[base])
    print(c.target_line("difftape grad / import numpy, click, lark (wall)", ratio, TARGET, "x", best=best))
    print(f"      (the same in CPU time: {cpu_ratio:.2f}x)")
    floor = 'python -c "import numpy, click"'
    first = next(iter(commands))
    print("target (issue 16; medians):")
    print(
        c.target_line(
            "difftape grad / import numpy, click (wall)",
            statistics.median(walls[first]) / statistics.median(walls[floor]),
            FLOOR_TARGET,
            "x",
            best=min(walls[first]) / min(walls[floor]),
        )
    )
    print(f"      (the same in CPU time: {statistics.median(cpus[first]) / statistics.median(cpus[floor]):.2f}x)")
    print()

    it_runs = 2 if args.quick else 5
    dt_imports = importtime(commands[next(iter(commands))], env, it_runs)
    base_imports = importtime(commands[base], env, it_runs)
    top = sorted(dt_imports.items(), key=lambda kv: -kv[1][1])[: args.top]
    print(
        f"python -X importtime of the difftape command (median of {it_runs} runs), top {args.top} by cumulative time:"
    )
    print(
        c.table(
            ["module", "cumulative ms", "self ms", "in baseline"],
            [
                [("  " * lvl) + name, f"{cum / 1000:.1f}", f"{s / 1000:.1f}", "yes" if name in base_imports else "no"]
                for name, (s, cum, lvl) in top
            ],
        )
    )
    extra = {k: v for k, v in dt_imports.items() if k not in base_imports}
    extra_self = sum(s for s, _, _ in extra.values())
    print()
    print(
        f"modules imported by the difftape command but not by the baseline: {len(extra)}, "
        f"{extra_self / 1000:.1f} ms of self time; the slowest:"
    )
    slow = sorted(extra.items(), key=lambda kv: -kv[1][0])[: args.top]
    print(
        c.table(
            ["module", "self ms", "cumulative ms"],
            [[k, f"{s / 1000:.1f}", f"{cum / 1000:.1f}"] for k, (s, cum, _) in slow],
        )
    )
    stdlib_extra = sorted(k for k in extra if "." not in k and not k.startswith(("difftape", "_")))
    print()
    print(f"top-level modules beyond the baseline (surprises?): {', '.join(stdlib_extra) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
