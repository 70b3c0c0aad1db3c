"""Benchmark: points/s of ``grad --batch`` against the number of Dask workers (issue 17).

Run from the repository root:  python benchmarks/bench_dask.py [--quick] [--points N] [--files N] [--workers 1,2]

The points (``{"x": ...}`` of ``sin(x)**2 * exp(-x/3)``, 10,000,000 by default, ``--quick`` 1,000,000) are
written as ``--files`` NDJSON files. Then, on the same files:

- single process: ``difftape grad PROGRAM --batch`` (one process, every file on its stdin, its output
  to a file): the throughput of one core;
- Dask: a ``distributed.LocalCluster`` on 127.0.0.1 with N worker processes of one thread each,
  started and warmed up (one small job, so the workers have imported difftape) before the clock
  starts; then one job over the files (``difftape.answers.dask_batch.run_on_dask``, what
  ``--scheduler`` runs), each partition written to its own file.

Points/s per worker is compared with the single process's points/s; target: at least 0.8x with 2
workers. The outputs of every run are checked to be byte-identical to the single process's. Each
run is timed once (they are long); the load average is printed, since other processes on the
machine take cores away from the workers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as c
import numpy as np

PROGRAM = "sin(x)**2 * exp(-x/3)"
TARGET = 0.8


def cli_command() -> list[str]:
    script = Path(sys.executable).parent / "difftape"
    return [str(script)] if script.exists() else [sys.executable, "-m", "difftape"]


def write_points(folder: Path, points: int, files: int) -> list[Path]:
    paths = []
    per = -(-points // files)
    rng = np.random.default_rng(0)
    for k in range(files):
        n = min(per, points - k * per)
        if n <= 0:
            break
        xs = rng.uniform(-5, 5, size=n).tolist()
        path = folder / f"points-{k:04d}.ndjson"
        path.write_text("".join(f'{{"x": {x!r}}}\n' for x in xs))
        paths.append(path)
    return paths


def digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def single_process(paths: list[Path], out: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one ``--batch`` process over every file (``cat`` feeds its stdin)."""
    cat = subprocess.Popen(["cat", *map(str, paths)], stdout=subprocess.PIPE)
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    with open(out, "wb") as fh:
        res = subprocess.run([*cli_command(), "grad", PROGRAM, "--batch"], stdin=cat.stdout, stdout=fh,
                             stderr=subprocess.PIPE, env=c.child_env())
    seconds = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0  # the difftape process only: cat is waited for after
    cat.wait()
    if res.returncode != 0:
        raise SystemExit(f"single process failed: {res.stderr.decode()[-500:]}")
    return seconds, cpu


def two_processes(paths: list[Path], tmp: Path) -> tuple[float, float]:
    """The anchor of scaling: two independent ``--batch`` processes at once, half of the files each."""
    halves = [paths[0::2], paths[1::2]]
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    procs = []
    for k, half in enumerate(halves):
        cat = subprocess.Popen(["cat", *map(str, half)], stdout=subprocess.PIPE)
        fh = open(tmp / f"half-{k}.ndjson", "wb")  # noqa: SIM115 - closed below
        procs.append((cat, fh, subprocess.Popen([*cli_command(), "grad", PROGRAM, "--batch"], stdin=cat.stdout,
                                                stdout=fh, env=c.child_env())))
        cat.stdout.close()
    for cat, fh, proc in procs:
        proc.wait()
        cat.wait()
        fh.close()
    seconds = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0
    cat_cpu = 0.0  # cat's CPU is in RUSAGE_CHILDREN too; it is small next to difftape's (copying bytes)
    for k in range(2):
        (tmp / f"half-{k}.ndjson").unlink()
    return seconds, cpu - cat_cpu


def _warm(spec: object) -> None:
    from difftape.answers import dask_batch as db

    db.answer_points(spec, [{"x": i / 10} for i in range(1000)])


def _worker_cpu() -> float:
    return time.process_time()


def on_dask(paths: list[Path], out: Path, workers: int, warm: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the workers and of this process, the scheduler's) of one job."""
    import distributed

    from difftape.answers import dask_batch as db

    spec = db.BatchSpec(PROGRAM, "grad", options={"wrt": None, "watch": (), "unconnected": "none"})
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster) as client:
        warm_out = out.parent / f"warm-{workers}"
        warm_out.mkdir()
        db.run_on_dask(client, spec, db.plan([str(warm)]), str(warm_out))
        client.run(_warm, spec)  # every worker has imported difftape and compiled the program
        out.mkdir()
        cpu0 = sum(client.run(_worker_cpu).values()) + time.process_time()
        t0 = time.perf_counter()
        db.run_on_dask(client, spec, db.plan([str(p) for p in paths]), str(out))
        seconds = time.perf_counter() - t0
        cpu = sum(client.run(_worker_cpu).values()) + time.process_time() - cpu0
        return seconds, cpu


def main() -> None:
    args = c.arguments(__doc__, points=(10_000_000, "number of points"), files=(20, "number of NDJSON files"),
                       workers=("1,2", "worker counts to run, comma-separated"))
    points = min(args.points, 1_000_000) if args.quick else args.points
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    c.header(f"grad --batch over {points:,} points in {args.files} files: single process vs Dask workers", args.quick)
    if c.optional("distributed") is None:
        print(f"distributed: {c.SKIPPED} (pip install \"difftape[dask]\")")
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-dask-"))
    try:
        src = tmp / "points"
        src.mkdir()
        t0 = time.perf_counter()
        paths = write_points(src, points, args.files)
        warm = tmp / "warm.ndjson"
        warm.write_text("".join(f'{{"x": {i / 10}}}\n' for i in range(1000)))
        size = sum(p.stat().st_size for p in paths)
        print(f"input: {len(paths)} files, {size / 1e6:.0f} MB, written in {time.perf_counter() - t0:.1f} s\n")

        ref = tmp / "single.ndjson"
        load = os.getloadavg()[0]
        single_s, single_cpu = single_process(paths, ref)
        want = digest([ref])
        ref.unlink()
        rows = [[f"single process (load {load:.1f})", 1, f"{single_s:.1f}", f"{points / single_s:,.0f}",
                 f"{points / single_s:,.0f}", "1.00", f"{points / single_cpu:,.0f}", "1.00", "yes"]]
        load = os.getloadavg()[0]
        two_s, two_cpu = two_processes(paths, tmp)
        rows.append([f"2 single processes at once (load {load:.1f})", 2, f"{two_s:.1f}", f"{points / two_s:,.0f}",
                     f"{points / two_s / 2:,.0f}", f"{points / two_s / 2 / (points / single_s):.2f}",
                     f"{points / two_cpu:,.0f}", f"{single_cpu / two_cpu:.2f}", "-"])
        ratio_at, cpu_ratio_at = {}, {}
        for n in counts:
            out = tmp / f"out-{n}"
            load = os.getloadavg()[0]
            seconds, cpu = on_dask(paths, out, n, warm)
            same = digest([out / p.name for p in paths]) == want
            shutil.rmtree(out)
            per = points / seconds / n
            ratio_at[n] = per / (points / single_s)
            cpu_ratio_at[n] = (points / cpu) / (points / single_cpu)
            rows.append([f"Dask, {n} worker{'s' if n > 1 else ''} (load {load:.1f})", n, f"{seconds:.1f}",
                         f"{points / seconds:,.0f}", f"{per:,.0f}", f"{ratio_at[n]:.2f}", f"{points / cpu:,.0f}",
                         f"{cpu_ratio_at[n]:.2f}", "yes" if same else "NO"])
        print(c.table(["run", "cores", "seconds", "points/s", "per core", "per core vs single",
                       "points per CPU s", "vs single", "same output"], rows))
        print("\n(per core: points/s over the worker count, by the wall clock; points per CPU s: over the CPU time "
              "of the workers and of the driver, which holds the scheduler: what a busy machine cannot take away)")
        if 2 in ratio_at:
            ok = ratio_at[2] >= TARGET
            print(f"{c.verdict(ok):4}  2 workers, points/s per core vs the single process: {ratio_at[2]:.2f} "
                  f"(target >= {TARGET:.2f})")
            print(f"info  2 workers, points per CPU second vs the single process: {cpu_ratio_at[2]:.3f} (Dask's own "
                  "work: the workers' event loops and the scheduler; the issue's target is the wall-clock figure)")
        if any(r[-1] == "NO" for r in rows):
            print("FAIL  an output differs from the single process's")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
