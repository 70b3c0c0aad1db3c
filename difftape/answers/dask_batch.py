"""Batches beyond one process: partitions of NDJSON or Parquet points, answered on Dask workers.

A job is a list of input files (``--at-file 'points/*.parquet'``) cut into *partitions*: a whole
file, or a block of a big one (a byte range of NDJSON that starts and ends at line boundaries, or
a run of Parquet row groups). Each partition is answered exactly as one ``--batch`` run answers
it (:class:`~difftape.answers.batch.BatchProgram` through ``stream_ndjson`` / ``JsonLines``; this
module holds no evaluator of its own), with error objects numbered by the line (or row) of the
whole input file, and its output is written in the input's format:

- NDJSON in, NDJSON out: the very lines ``difftape COMMAND --batch --at-file FILE`` prints;
- Parquet in (one column per input, one row per point), Parquet out: one string column ``result``
  holding those lines (without the newline), row for row.

An output file is written under a temporary name and renamed when complete, so a partition that
Dask runs again after a worker died replaces, never duplicates, and a half-written file is never
seen under the final name. Each worker process keeps the compiled program of a job (per input
signature, as ``BatchProgram`` does) for all the partitions it answers.

Nothing here imports Dask at module level: the partition functions run the same way in-process
(``--output`` without ``--scheduler``, and Parquet or several files on stdout), and only
:func:`connect` and :func:`map_partitions` need ``dask``/``distributed``.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from difftape.errors import DifftapeError

#: What to run when the optional extra is missing.
INSTALL = 'pip install "difftape[dask]"'
#: An NDJSON file larger than this is cut into blocks of about this many bytes.
PARTITION_BYTES = 32 << 20
#: Parquet row groups are gathered into partitions of about this many rows.
PARTITION_ROWS = 1 << 20
#: Rows of a Parquet partition answered together (as a block of lines of ``stream_ndjson``).
PARQUET_BLOCK = 8_192
#: Rows per row group of a Parquet output file.
OUTPUT_ROW_GROUP = 1 << 17
#: File name endings read as Parquet; anything else is NDJSON.
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")


def require(module: str) -> Any:
    """Import an optional dependency of this path, or raise error[environment] naming the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DifftapeError(
            "environment",
            f"this needs the optional package {module.split('.')[0]!r}, which is not installed for this Python "
            f"({sys.executable}); install difftape's Dask extra: {INSTALL}",
        ) from None


# ----------------------------------------------------------------------------------------
# the job: what every worker needs to rebuild the program


@dataclass(frozen=True)
class BatchSpec:
    """A program, its shared values and one command with its options: all a worker needs to answer points.

    ``token`` names the job, so that a worker compiles its program once for all the partitions it runs.
    """

    source: str
    command: str
    of: str | None = None
    at: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    dtype: str = "float64"
    options: Mapping[str, Any] = field(default_factory=dict)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def program(self) -> Any:
        """The BatchProgram of this job in this process (compiled once per worker, then kept)."""
        with _CACHE_LOCK:
            prog = _PROGRAMS.get(self.token)
            if prog is not None:
                _PROGRAMS.move_to_end(self.token)
                return prog
        from difftape.answers.batch import BatchProgram

        prog = BatchProgram(self.source, of=self.of, at=dict(self.at), seed=self.seed, dtype=self.dtype)
        with _CACHE_LOCK:
            _PROGRAMS[self.token] = prog
            while len(_PROGRAMS) > _KEEP_PROGRAMS:
                _PROGRAMS.popitem(last=False)
        return prog

    def checker(self) -> Any:
        """The BatchChecker of a ``check`` job in this process (its options checked; kept as the program is)."""
        with _CACHE_LOCK:
            checker = _CHECKERS.get(self.token)
        if checker is not None:
            return checker
        from difftape.answers.batch_check import BatchChecker

        checker = BatchChecker(self.program(), **dict(self.options))
        with _CACHE_LOCK:
            _CHECKERS[self.token] = checker
            while len(_CHECKERS) > _KEEP_PROGRAMS:
                _CHECKERS.popitem(last=False)
        return checker


#: Programs of recent jobs in this (worker) process, by job token.
_PROGRAMS: OrderedDict[str, Any] = OrderedDict()
_KEEP_PROGRAMS = 8
#: The checkers of recent ``check`` jobs, by job token.
_CHECKERS: OrderedDict[str, Any] = OrderedDict()
_CACHE_LOCK = threading.Lock()
#: The engine's tape keeps its active recorders in one process-wide list, so a worker with several
#: threads answers one partition at a time (run workers with --nthreads 1 to use every core).
_RUN_LOCK = threading.Lock()


def check_command(command: str) -> None:
    """A clear error for a command that batches over partitions do not answer."""
    from difftape.answers import batch

    if command not in batch.COMMANDS:
        raise DifftapeError(
            "usage",
            f"{command} has no --batch in this version of difftape, so it cannot run over partitions either; "
            f"batches answer: {', '.join(batch.COMMANDS)}",
        )


# ----------------------------------------------------------------------------------------
# partitions


@dataclass(frozen=True)
class Partition:
    """One piece of the job: ``path`` bytes [start, end) (NDJSON) or row groups [start, end) (Parquet).

    ``first_line`` is the 0-based number of its first line (row) in the file, so that error objects
    give the line of the whole file; ``name`` is the output file's name.
    """

    path: str
    fmt: str  # "ndjson" or "parquet"
    start: int
    end: int
    first_line: int
    name: str
    size: int  # bytes of input (for progress)
    rows: int | None = None  # points, when known before running (Parquet)


def is_parquet(path: str) -> bool:
    return path.lower().endswith(PARQUET_SUFFIXES)


def expand(pattern: str) -> list[str]:
    """The files of ``--at-file``: the path itself if it is a file, else the glob's matches, sorted."""
    if os.path.isfile(pattern):
        return [pattern]
    if glob.has_magic(pattern):
        paths = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        if not paths:
            raise DifftapeError("usage", f"no file matches --at-file {pattern!r}")
        return paths
    if os.path.isdir(pattern):
        raise DifftapeError("usage", f"--at-file {pattern!r} is a directory; give a file or a glob such as "
                                     f"'{os.path.join(pattern, '*.ndjson')}'")
    raise DifftapeError("usage", f"cannot read {pattern}: No such file or directory")


def plan(paths: Sequence[str], *, partition_bytes: int | None = None, partition_rows: int | None = None,
         split: bool = True) -> list[Partition]:
    """Cut the files into partitions, in order; NDJSON blocks still need their ``first_line`` (see :func:`count_lines`).

    An NDJSON block boundary is moved to the start of a line (and past a line that starts with a
    byte-order mark, which only the first line of a file may drop), so that every line is in exactly one
    partition and is read as the whole file's reading reads it.
    """
    partition_bytes = partition_bytes or PARTITION_BYTES
    partition_rows = partition_rows or PARTITION_ROWS
    names: dict[str, str] = {}
    out: list[Partition] = []
    for path in paths:
        base = os.path.basename(path)
        if base in names:
            raise DifftapeError("usage", f"two input files have the same name, {base!r} ({names[base]} and {path}), "
                                         "so their outputs would too; give files with distinct names")
        names[base] = path
        stem, ext = os.path.splitext(base)
        if is_parquet(path):
            pieces = _parquet_pieces(path, partition_rows if split else None)
            fmt = "parquet"
        else:
            pieces = _ndjson_pieces(path, partition_bytes if split else None)
            fmt = "ndjson"
        for k, (start, end, first, size, rows) in enumerate(pieces):
            name = base if len(pieces) == 1 else f"{stem}.part-{k:05d}{ext}"
            out.append(Partition(path, fmt, start, end, first, name, size, rows))
    return out


def _ndjson_pieces(path: str, block: int | None) -> list[tuple[int, int, int, int, int | None]]:
    try:
        size = os.path.getsize(path)
        if block is None or size <= block:
            return [(0, size, 0, size, None)]
        cuts = [0]
        with open(path, "rb") as fh:
            for nominal in range(block, size, block):
                if nominal <= cuts[-1]:
                    continue
                cut = _line_start(fh, nominal, size)
                if cut < size and cut > cuts[-1]:
                    cuts.append(cut)
    except OSError as err:
        raise DifftapeError("usage", f"cannot read {path}: {err.strerror or err}") from None
    cuts.append(size)
    # first_line -1: not known yet (counted on the workers)
    return [(a, b, 0 if a == 0 else -1, b - a, None) for a, b in zip(cuts, cuts[1:])]


_BOM = b"\xef\xbb\xbf"


def _line_start(fh: Any, pos: int, size: int) -> int:
    """The start of the first line at or after ``pos`` that does not begin with a byte-order mark."""
    at = pos - 1  # a line starts at pos if the byte before it is a newline
    while True:
        fh.seek(at)
        while True:
            chunk = fh.read(1 << 16)
            if not chunk:
                return size
            i = chunk.find(b"\n")
            if i >= 0:
                cut = at + i + 1
                break
            at += len(chunk)
        fh.seek(cut)
        if fh.read(3) != _BOM:
            return cut
        at = cut  # a line starting with a BOM stays with the line before it


def _parquet_pieces(path: str, rows_per: int | None) -> list[tuple[int, int, int, int, int | None]]:
    pq = require("pyarrow.parquet")
    try:
        meta = pq.ParquetFile(path).metadata
    except Exception as err:  # noqa: BLE001 - pyarrow raises several kinds for a file that is not Parquet
        raise DifftapeError("value", f"cannot read {path} as Parquet: {err}") from None
    size = os.path.getsize(path)
    groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    if not groups:
        return [(0, 0, 0, size, 0)]
    pieces = []
    start = first = rows = 0
    for i, n in enumerate(groups):
        rows += n
        if rows_per is not None and rows >= rows_per and i + 1 < len(groups):
            pieces.append([start, i + 1, first, rows])
            start, first, rows = i + 1, first + rows, 0
    pieces.append([start, len(groups), first, rows])
    total = sum(groups) or 1
    return [(a, b, f, max(1, size * r // total), r) for a, b, f, r in pieces]


def count_lines(part: Partition) -> int:
    """Lines of an NDJSON block (each line's first byte is in it): what comes before the next block."""
    n = 0
    with open(part.path, "rb") as fh:
        fh.seek(part.start)
        left = part.end - part.start
        while left > 0:
            chunk = fh.read(min(left, 1 << 22))
            if not chunk:
                break
            n += chunk.count(b"\n")
            left -= len(chunk)
    return n


def number_lines(parts: Sequence[Partition], counts: Mapping[int, int]) -> list[Partition]:
    """Fill in ``first_line`` of NDJSON blocks from the line counts of the blocks before them (by index)."""
    out: list[Partition] = []
    line = 0
    prev_path = None
    for i, p in enumerate(parts):
        if p.path != prev_path:
            line, prev_path = 0, p.path
        if p.first_line < 0:
            p = Partition(p.path, p.fmt, p.start, p.end, line, p.name, p.size, p.rows)
        out.append(p)
        if p.fmt == "ndjson" and i in counts:
            line += counts[i]
    return out


def needs_count(parts: Sequence[Partition]) -> list[int]:
    """Indices of the NDJSON blocks whose line count numbers a later block of the same file."""
    later = {p.path for p in parts if p.first_line < 0}
    return [i for i, p in enumerate(parts) if p.fmt == "ndjson" and p.path in later and
            not (i + 1 == len(parts) or parts[i + 1].path != p.path)]


# ----------------------------------------------------------------------------------------
# answering one partition


@dataclass
class PartitionReport:
    """What one partition did (sent back from a worker: plain values only)."""

    name: str
    lines: int = 0
    failed: int = 0
    first_error: tuple[int, str, str] | None = None  # (line of the input file, kind, message)
    size: int = 0
    seconds: float = 0.0
    fatal: tuple[str, str] | None = None  # (kind, message): the partition could not be answered at all
    mismatched: int = 0  # check: points whose gradients disagree
    first_mismatch: int | None = None  # check: the line of the input file of the first


def answer_partition(spec: BatchSpec, part: Partition, write: Callable[[str], Any]) -> PartitionReport:
    """Answer the points of ``part``, writing NDJSON text (``write`` gets blocks of whole lines, in order)."""
    t0 = time.perf_counter()
    report = PartitionReport(part.name, size=part.size)
    with _RUN_LOCK:
        prog = spec.program()
        if part.fmt == "ndjson":
            _answer_ndjson(spec, prog, part, write, report)
        else:
            _answer_parquet(spec, prog, part, write, report)
    report.seconds = time.perf_counter() - t0
    return report


def _options(spec: BatchSpec) -> dict[str, Any]:
    return dict(spec.options)


def _answer_block(spec: BatchSpec, prog: Any, block: list[Any], sink: Any, bad: Mapping[int, DifftapeError],
                  stats: Any) -> None:
    """One block of points into ``sink``: ``check`` through its checker (counting into ``stats``), else vectorised."""
    if spec.command == "check":
        spec.checker().answer(block, bad, sink, stats)
    else:
        prog.answer(block, spec.command, sink.emit, sink.fail, bad=dict(bad), **_options(spec))


def _check_stats(spec: BatchSpec) -> Any:
    if spec.command != "check":
        return None
    from difftape.answers.batch_check import CheckStats

    return CheckStats()


def _count_mismatches(report: PartitionReport, stats: Any, offset: int = 0) -> None:
    if stats is not None and stats.mismatched:
        report.mismatched = stats.mismatched
        report.first_mismatch = stats.first_mismatch + offset


def _answer_ndjson(spec: BatchSpec, prog: Any, part: Partition, write: Callable[[str], Any],
                   report: PartitionReport) -> None:
    import warnings

    import numpy as np

    from difftape.answers.batch import stream_ndjson

    offset = part.first_line
    sink = write if offset == 0 else (lambda text: write(_renumber(text, offset)))
    try:
        fh = open(part.path, "rb")
    except OSError as err:
        raise DifftapeError("usage", f"cannot read {part.path}: {err.strerror or err}") from None
    with fh, warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        fh.seek(part.start)
        left = [part.end - part.start]

        def read(n: int) -> bytes:
            if left[0] <= 0:
                return b""
            chunk = fh.read(min(n, left[0]))
            left[0] -= len(chunk)
            return chunk

        stats = _check_stats(spec)
        if stats is not None:
            checker = spec.checker()
            got = stream_ndjson(prog, read, sink, spec.command,
                                answer_block=lambda points, bad, out: checker.answer(points, bad, out, stats))
        else:
            got = stream_ndjson(prog, read, sink, spec.command, **_options(spec))
    report.lines, report.failed = got.lines, got.failed
    _count_mismatches(report, stats, offset)
    if got.first_error is not None:
        line, err = got.first_error
        report.first_error = (line + offset, err.kind, err.message)


def _renumber(text: str, offset: int) -> str:
    """Error objects of a block numbered by the line of the whole file (``stream_ndjson`` counts from the block)."""
    if '{"error": ' not in text:
        return text
    from difftape.io.render import dumps

    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.startswith('{"error": '):
            obj = json.loads(line)
            obj["error"]["line"] += offset
            lines[i] = dumps(obj)
    return "\n".join(lines)


def _answer_parquet(spec: BatchSpec, prog: Any, part: Partition, write: Callable[[str], Any],
                    report: PartitionReport) -> None:
    import warnings

    import numpy as np

    from difftape.answers.batch import JsonLines

    pq = require("pyarrow.parquet")
    try:
        pf = pq.ParquetFile(part.path)
        skip = _index_columns(pf.schema_arrow)
    except Exception as err:  # noqa: BLE001 - not Parquet, or unreadable
        raise DifftapeError("value", f"cannot read {part.path} as Parquet: {err}") from None
    line = part.first_line
    first_error = None
    stats = _check_stats(spec)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for g in range(part.start, part.end):
            try:
                table = pf.read_row_group(g)
            except Exception as err:  # noqa: BLE001
                raise DifftapeError("value", f"cannot read row group {g} of {part.path}: {err}") from None
            points = table_points(table, skip)
            for lo in range(0, len(points), PARQUET_BLOCK):
                block = points[lo : lo + PARQUET_BLOCK]
                sink = JsonLines(len(block), spec.command, prog.of, offset=line)
                _answer_block(spec, prog, block, sink, {}, stats)
                write(sink.text())
                line += len(block)
                report.lines += len(block)
                report.failed += sink.failed
                if sink.first_error is not None and first_error is None:
                    first_error = sink.first_error
    if first_error is not None:
        number, err = first_error
        report.first_error = (number, err.kind, err.message)
    _count_mismatches(report, stats)


def _index_columns(schema: Any) -> set[str]:
    """Columns that pandas stored for its index (not points' values): named in the file's pandas metadata."""
    meta = schema.pandas_metadata or {}
    return {c for c in meta.get("index_columns", []) if isinstance(c, str)}


def table_points(table: Any, skip: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The rows of an Arrow table as points ({column: value}); a null is None (that point's error).

    Chunk by chunk through ``to_pylist`` (Python numbers and nested lists, as JSON would give them),
    which is fast and, unlike Arrow's numpy conversions, does not import pandas.
    """
    skip = set(skip)
    names = [n for n in table.column_names if n not in skip]
    if not names:
        return [{} for _ in range(table.num_rows)]
    cols = []
    for name in names:
        values: list[Any] = []
        for chunk in table.column(name).chunks:
            values.extend(chunk.to_pylist())
        cols.append(values)
    return [dict(zip(names, row)) for row in zip(*cols)]


# ----------------------------------------------------------------------------------------
# writing a partition's output atomically


def temp_path(output_dir: str, name: str) -> str:
    return os.path.join(output_dir, f".{name}.{uuid.uuid4().hex[:12]}.tmp")


def run_partition(spec: BatchSpec, part: Partition, output_dir: str) -> PartitionReport:
    """Answer one partition into ``output_dir/part.name``: written under a temporary name, then renamed.

    This is the task a Dask worker runs; if the worker dies before the rename, the final name never
    holds part of a file, and Dask's retry writes the whole file again.
    """
    final = os.path.join(output_dir, part.name)
    tmp = temp_path(output_dir, part.name)
    try:
        return _run_partition(spec, part, final, tmp)
    except DifftapeError as err:  # sent back as values: a DifftapeError does not cross processes intact
        return PartitionReport(part.name, size=part.size, fatal=(err.kind, err.message))
    except OSError as err:  # a full disk, an output directory that went away
        what = err.strerror or str(err)
        return PartitionReport(part.name, size=part.size, fatal=("io", f"partition {part.name} of {part.path}: "
                                                                       f"{what} ({err.filename or final})"))


def _run_partition(spec: BatchSpec, part: Partition, final: str, tmp: str) -> PartitionReport:
    try:
        if part.fmt == "ndjson":
            with open(tmp, "w", encoding="utf-8", newline="\n") as out:
                report = answer_partition(spec, part, out.write)
                out.flush()
                os.fsync(out.fileno())
        else:
            report = _write_parquet(spec, part, tmp)
        os.replace(tmp, final)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return report


def _write_parquet(spec: BatchSpec, part: Partition, tmp: str) -> PartitionReport:
    pa = require("pyarrow")
    pq = require("pyarrow.parquet")
    schema = pa.schema([("result", pa.string())])
    rows: list[str] = []
    with pq.ParquetWriter(tmp, schema) as writer:

        def flush() -> None:
            writer.write_table(pa.table({"result": pa.array(rows, pa.string())}, schema=schema))
            rows.clear()

        def write(text: str) -> None:
            if text:
                rows.extend(text.removesuffix("\n").split("\n"))
            if len(rows) >= OUTPUT_ROW_GROUP:
                flush()

        report = answer_partition(spec, part, write)
        if rows or report.lines == 0:
            flush()
    return report


def parquet_lines(path: str) -> list[str]:
    """The ``result`` column of a Parquet output file as NDJSON lines (each with its newline)."""
    pq = require("pyarrow.parquet")
    return [line + "\n" for line in pq.read_table(path, columns=["result"]).column("result").to_pylist()]


def clean_temporaries(output_dir: str, parts: Iterable[Partition]) -> None:
    """Remove what attempts that died left behind (their temporary files) for this job's partitions."""
    for p in parts:
        for leftover in glob.glob(os.path.join(glob.escape(output_dir), f".{glob.escape(p.name)}.*.tmp")):
            try:
                os.unlink(leftover)
            except OSError:
                pass


# ----------------------------------------------------------------------------------------
# the whole job


@dataclass
class JobReport:
    """The sum of the partitions' reports; ``first_error`` is (partition name, line, kind, message)."""

    partitions: int = 0
    lines: int = 0
    failed: int = 0
    first_error: tuple[str, int, str, str] | None = None
    seconds: float = 0.0
    mismatched: int = 0  # check: points whose gradients disagree
    first_mismatch: tuple[str, int] | None = None  # (partition name, line)

    def add(self, rep: PartitionReport) -> None:
        self.partitions += 1
        self.lines += rep.lines
        self.failed += rep.failed
        self.mismatched += rep.mismatched
        if rep.first_mismatch is not None and self.first_mismatch is None:
            self.first_mismatch = (rep.name, rep.first_mismatch)
        if rep.first_error is not None and self.first_error is None:
            self.first_error = (rep.name, *rep.first_error)


#: Told of each partition as it is done (the command line's progress bar; this layer draws nothing).
OnPartition = Callable[[PartitionReport], Any]


def run_in_process(spec: BatchSpec, parts: Sequence[Partition], output_dir: str | None,
                   write: Callable[[str], Any] | None = None, progress: OnPartition | None = None) -> JobReport:
    """The job in this process, partition after partition: into ``output_dir``, or as NDJSON through ``write``."""
    job = JobReport()
    t0 = time.perf_counter()
    counts = {i: count_lines(parts[i]) for i in needs_count(parts)}
    parts = number_lines(parts, counts)
    for part in parts:
        if output_dir is not None:
            rep = run_partition(spec, part, output_dir)
        else:
            assert write is not None
            rep = answer_partition(spec, part, write)
        if rep.fatal is not None:
            raise DifftapeError(*rep.fatal)
        job.add(rep)
        if progress is not None:
            progress(rep)
    job.seconds = time.perf_counter() - t0
    return job


def connect(scheduler: str, workers: int | None, *, dashboard: bool = True) -> tuple[Any, Any]:
    """A Dask client: of a new LocalCluster on 127.0.0.1 (``"local"``), or of the scheduler at an address.

    Returns (client, cluster or None); the caller closes both.
    """
    require("dask")
    distributed = require("distributed")
    import logging

    if scheduler == "local":
        n = workers or os.cpu_count() or 1
        cluster = distributed.LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address="127.0.0.1:0" if dashboard else None, silence_logs=logging.ERROR,
        )
        try:
            return distributed.Client(cluster), cluster
        except BaseException:
            cluster.close()
            raise
    if workers is not None:
        raise DifftapeError("usage", "--workers sets the size of --scheduler local; a cluster at an address has "
                                     "the workers it was started with")
    try:
        return distributed.Client(scheduler, timeout="20s"), None
    except (OSError, TimeoutError, ValueError) as err:
        raise DifftapeError("environment", f"cannot reach the Dask scheduler at {scheduler}: {err}") from None


def dashboard_link(client: Any) -> str | None:
    """The dashboard's address, or None when the scheduler serves none (no bokeh, or turned off)."""
    try:
        services = client.scheduler_info().get("services", {})
    except Exception:  # noqa: BLE001
        return None
    if "dashboard" not in services:
        return None
    return client.dashboard_link


def run_on_dask(client: Any, spec: BatchSpec, parts: Sequence[Partition], output_dir: str,
                progress: OnPartition | None = None) -> JobReport:
    """The job on the cluster of ``client``: one task per partition, results gathered as they finish.

    A task whose worker dies is run again by Dask (up to ``distributed.scheduler.allowed-failures``
    times); since each output is renamed into place only when complete, nothing is lost or doubled.
    A result lost with its worker after the task finished is waited for as Dask reruns it (see
    :func:`_partition_result`), and a collected result is released, so it is not run again.
    """
    distributed = require("distributed")
    t0 = time.perf_counter()
    token = spec.token
    todo = needs_count(parts)
    counts: dict[int, int] = {}
    if todo:
        futs = client.map(count_lines, [parts[i] for i in todo], key=[f"difftape-count-{token}-{i}" for i in todo],
                          pure=False)
        counts = dict(zip(todo, _gather(client, futs, distributed)))
    parts = number_lines(parts, counts)
    futures = [
        client.submit(run_partition, spec, p, output_dir, key=f"difftape-{token}-{i:06d}", pure=False,
                      priority=len(parts) - i)
        for i, p in enumerate(parts)
    ]
    by_key = {f.key: parts[i] for i, f in enumerate(futures)}
    job = JobReport()
    reports: dict[str, PartitionReport] = {}
    try:
        for fut in distributed.as_completed(futures):
            rep = _partition_result(fut, by_key[fut.key], distributed)
            # Collected: let Dask forget it, so that a worker dying later does not run it (and write its file) again.
            fut.release()
            if rep.fatal is not None:
                raise DifftapeError(*rep.fatal)
            reports[fut.key] = rep
            if progress is not None:
                progress(rep)
    except BaseException:
        for f in futures:
            if f.key not in reports:
                f.cancel()
        raise
    for f in futures:  # totals in partition order, so that the first error is the first in the input
        job.add(reports[f.key])
    clean_temporaries(output_dir, parts)
    job.seconds = time.perf_counter() - t0
    return job


def _gather(client: Any, futures: list[Any], distributed: Any) -> list[Any]:
    out = []
    for f in futures:
        try:
            out.append(f.result())
        except Exception as err:  # noqa: BLE001
            raise _task_error(err, "counting lines", distributed) from None
    return out


def _partition_result(fut: Any, part: Partition, distributed: Any) -> PartitionReport:
    """The report of a partition's task, judged by its result alone, never by the status it was yielded with.

    ``as_completed`` yields a future once it is done, but a worker that dies afterwards loses the
    results it holds: the future turns "lost" (or "pending") and Dask runs the task again. ``result()``
    waits for that run, so only a task that really failed (or was cancelled) is an error.
    """
    what = f"partition {part.name} (of {part.path})"
    try:
        return fut.result()
    except distributed.CancelledError:
        raise DifftapeError("environment", f"{what} was cancelled on the cluster") from None
    except Exception as err:  # noqa: BLE001
        raise _task_error(err, what, distributed) from None


def _task_error(err: BaseException, what: str, distributed: Any) -> DifftapeError:
    if isinstance(err, DifftapeError):
        return DifftapeError(err.kind, err.message)
    if type(err).__name__ == "KilledWorker":
        return DifftapeError("environment", f"{what}: the worker running it died every time it was tried "
                                            "(Dask's distributed.scheduler.allowed-failures); see the workers' logs")
    if isinstance(err, OSError):
        return DifftapeError("io", f"{what}: {err}")
    return DifftapeError("internal", f"{what} failed on a worker: {type(err).__name__}: {err}")


def prepare_output(output_dir: str, paths: Sequence[str]) -> str:
    """Create ``output_dir`` if needed; refuse one that would overwrite the inputs."""
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as err:
        raise DifftapeError("io", f"cannot create the output directory {output_dir}: {err.strerror or err}") from None
    if not os.path.isdir(output_dir):
        raise DifftapeError("usage", f"--output {output_dir!r} is not a directory")
    out_real = os.path.realpath(output_dir)
    for p in paths:
        if os.path.realpath(os.path.dirname(os.path.abspath(p))) == out_real:
            raise DifftapeError("usage", f"--output {output_dir!r} is the directory of the input {p}: its results "
                                         "would overwrite the points; give another directory")
    return output_dir


# ----------------------------------------------------------------------------------------
# the Python API: difftape.batch.map_partitions


def map_partitions(
    program: str | Any,
    collection: Any,
    command: str = "grad",
    *,
    of: str | None = None,
    at: Mapping[str, Any] | None = None,
    seed: int = 0,
    dtype: str = "float64",
    wrt: Iterable[str] | None = None,
    watch: Iterable[str] = (),
    unconnected: str | None = None,
) -> Any:
    """See :func:`difftape.batch.map_partitions`."""
    require("dask")
    from difftape.answers.batch import BatchProgram

    if isinstance(program, BatchProgram):
        source, of, at, seed, dtype = program.source, program.of_name, program.at, program.seed, program.dtype
    elif isinstance(program, str):
        source = program
    else:
        raise DifftapeError("type", f"map_partitions takes the program's text (or a BatchProgram), "
                                    f"not {type(program).__name__}")
    check_command(command)
    if unconnected is None:
        unconnected = "zero" if command == "jacobian" else "none"
    options: dict[str, Any] = {}
    if command == "check":  # (the check's own options keep their defaults)
        options = {"wrt": list(wrt) if wrt is not None else None, "watch": tuple(watch)}
    elif command != "eval":
        options = {"wrt": list(wrt) if wrt is not None else None, "watch": tuple(watch), "unconnected": unconnected}
    spec = BatchSpec(source, command, of=of, at=dict(at or {}), seed=seed, dtype=dtype, options=options)
    prog = spec.program()  # errors in the program or options show here, not on a worker
    if command == "check":
        spec.checker()
    elif command != "eval":
        prog.base.sources(options["wrt"], options["watch"])
    kind = type(collection).__module__.split(".")[:2]
    if kind[:2] == ["dask", "bag"]:
        return collection.map_partitions(_bag_partition, spec)
    if kind[:2] == ["dask", "dataframe"] or hasattr(collection, "map_partitions") and hasattr(collection, "columns"):
        pd = require("pandas")
        meta = pd.DataFrame({"result": pd.Series([], dtype="string")})
        return collection.map_partitions(_frame_partition, spec, meta=meta)
    raise DifftapeError("type", f"map_partitions takes a Dask DataFrame or Bag, not {type(collection).__name__}")


def answer_points(spec: BatchSpec, points: list[Any], bad: Mapping[int, DifftapeError] | None = None,
                  numbers: list[int] | None = None) -> list[str]:
    """The JSON line (without its newline) of each point, as ``--batch`` writes it; lines numbered from 1
    (or by ``numbers``: the input line number of each point, where blank lines were skipped)."""
    import warnings

    import numpy as np

    from difftape.answers.batch import JsonLines

    out: list[str] = []
    with _RUN_LOCK, warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        prog = spec.program()
        for lo in range(0, max(len(points), 1), PARQUET_BLOCK):
            block = points[lo : lo + PARQUET_BLOCK]
            if not block:
                break
            sink = JsonLines(len(block), spec.command, prog.of, offset=lo,
                             numbers=None if numbers is None else numbers[lo : lo + len(block)])
            block_bad = {i - lo: e for i, e in (bad or {}).items() if lo <= i < lo + len(block)}
            _answer_block(spec, prog, block, sink, block_bad, _check_stats(spec))
            text = sink.text()
            out.extend(text.removesuffix("\n").split("\n") if text else [])
    return out


def _bag_partition(items: Iterable[Any], spec: BatchSpec) -> list[Any]:
    """A bag partition: dicts give dicts (the parsed result objects); text lines give JSON lines."""
    items = list(items)
    if items and all(isinstance(x, (str, bytes)) for x in items):
        kept = [i for i, x in enumerate(items) if x.strip()]  # blank lines are skipped, as --batch skips them
        if not kept:
            return []
        points, bad = _text_points([items[i] for i in kept])
        return [line + "\n" for line in answer_points(spec, points, bad, numbers=[i + 1 for i in kept])]
    return [json.loads(line) for line in answer_points(spec, items)]


def _text_points(items: list[str | bytes]) -> tuple[list[Any], dict[int, DifftapeError]]:
    """Bag items that are NDJSON lines (``read_text``'s, with or without the newline) parsed one point each."""
    from difftape.answers.batch import parse_ndjson

    raw = [(x if isinstance(x, bytes) else x.encode("utf-8", "surrogateescape")).removesuffix(b"\n") for x in items]
    points, bad = parse_ndjson(b"\n".join(raw), bom=False)
    if len(points) == len(items):
        return points, bad
    points, bad = [None] * len(items), {}  # some item held a newline of its own: each item alone
    for i, line in enumerate(raw):
        got, errs = parse_ndjson(line, bom=False)
        if not line.strip():
            bad[i] = DifftapeError("value", "an empty line: expected a JSON object of input values, like {\"x\": 0.5}")
        elif len(got) != 1:
            bad[i] = DifftapeError("value", "a bag item holds several lines: give one JSON object an item")
        elif errs:
            bad[i] = errs[0]
        else:
            points[i] = got[0]
    return points, bad


def _frame_partition(df: Any, spec: BatchSpec) -> Any:
    """A DataFrame partition: one point a row (columns are inputs); a ``result`` column of JSON lines, same index."""
    import pandas as pd

    names = [str(c) for c in df.columns]
    cols = [_pylist(df[c]) for c in df.columns]
    points = [dict(zip(names, row)) for row in zip(*cols)] if names else [{} for _ in range(len(df))]
    lines = answer_points(spec, points)
    return pd.DataFrame({"result": pd.Series(lines, index=df.index, dtype="string")})


def _pylist(series: Any) -> list[Any]:
    """A column's values as Python numbers and lists (numpy arrays in object columns become lists)."""
    import numpy as np

    values = series.tolist()
    if series.dtype == object:
        return [v.tolist() if isinstance(v, np.ndarray) else v for v in values]
    return values
