"""Shared helpers of the benchmark scripts: timing, optional libraries, tables and verdicts.

Every script puts the repository root first on ``sys.path`` (through this module), so a
benchmark measures the difftape of the work tree it is run from. Timings use
``time.perf_counter``: each case is warmed up, calibrated to a number of calls per sample,
then sampled ``repeat`` times; the cases of one table are sampled in turn (round-robin), so
that a burst of load on a shared machine hits every case alike. Medians are the figures that
the targets are judged on; the best sample is printed beside them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SKIPPED = "skipped (not installed)"


# ---------------------------------------------------------------------------------------------
# command line


def arguments(doc: str | None, **defaults: Any) -> argparse.Namespace:
    """``--quick`` (a fast smoke run) and ``--repeat N`` (samples per case), plus script options."""
    ap = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    ap.add_argument("--quick", action="store_true", help="few, short samples: a smoke run, not a measurement")
    ap.add_argument("--repeat", type=int, default=None, help="samples per case (default: 7, or 3 with --quick)")
    for name, (default, help_text) in defaults.items():
        ap.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default, help=help_text)
    args = ap.parse_args()
    if args.repeat is None:
        args.repeat = 3 if args.quick else 7
    return args


def optional(name: str) -> Any:
    """The module, or None when it is not installed (or fails to import)."""
    try:
        return importlib.import_module(name)
    except Exception:  # noqa: BLE001 - a broken optional install is as good as a missing one here
        return None


# ---------------------------------------------------------------------------------------------
# timing


@dataclass
class Timing:
    """Seconds per call, one entry per sample."""

    samples: list[float]

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def calibrate(fn: Callable[[], Any], min_time: float) -> int:
    """Calls per sample so that one sample lasts at least ``min_time`` seconds (after one warm-up call)."""
    fn()
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time or number >= 1 << 22:
            return number
        number = max(number * 2, int(number * min_time / max(elapsed, 1e-9) * 1.2))


def sample(fn: Callable[[], Any], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def measure(cases: dict[str, Callable[[], Any]], repeat: int, min_time: float, warmup: int = 3) -> dict[str, Timing]:
    """Time every case, interleaved: calibrate each, then ``repeat`` rounds of one sample per case."""
    numbers = {}
    for name, fn in cases.items():
        for _ in range(warmup):
            fn()
        numbers[name] = calibrate(fn, min_time)
    timings: dict[str, Timing] = {name: Timing([]) for name in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            timings[name].samples.append(sample(fn, numbers[name]))
    return timings


def child_env() -> dict[str, str]:
    """The environment for timed child processes: as on a user's machine, ``.pyc`` files get written
    (a session may set PYTHONDONTWRITEBYTECODE, which makes every run recompile any module edited since)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    return env


# ---------------------------------------------------------------------------------------------
# output


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table, columns left-aligned, two spaces apart."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells if i < len(r)) for i in range(len(headers))]
    lines = []
    for k, row in enumerate(cells):
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def target_line(what: str, measured: float, limit: float, unit: str = "", best: float | None = None) -> str:
    """``PASS  what: 1.23 (target <= 1.50)``, lower is better; judged on ``measured`` (a median)."""
    also = f" [from best samples: {best:.2f}{unit}]" if best is not None else ""
    return f"{verdict(measured <= limit):4}  {what}: {measured:.2f}{unit} (target <= {limit:.2f}{unit}){also}"


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:.3f}"


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def _git_state() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "difftape"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return f"{head}{' + uncommitted changes in difftape/' if dirty else ''}" if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def header(title: str, quick: bool) -> None:
    """What was measured, where: versions, cores, the BLAS variables that slow numpy down here."""
    import numpy as np

    import difftape

    print(f"== {title}{'  [--quick: smoke run, not a measurement]' if quick else ''}")
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} cores, "
        f"difftape {getattr(difftape, '__version__', '?')} at {Path(difftape.__file__).parent} (git {_git_state()})"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if load is not None:
        busy = "  (busy: other processes inflate the times; ratios of interleaved cases hold up better)"
        print(f"load average (1 min) at start: {load:.2f}{busy if load > 0.5 * (os.cpu_count() or 1) else ''}")
    blas = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP_", "MKL_"))}
    if blas:
        print("environment: " + ", ".join(f"{k}={v}" for k, v in sorted(blas.items())))
    print()
