"""Batches over files and on Dask (issue 17): every output line is the one the single-process ``--batch`` gives.

The fast tests cut files into partitions and answer them in this process; the ``slow`` ones start a real
``distributed.LocalCluster`` (two worker processes, on 127.0.0.1, no dashboard) and run the command line
and ``difftape.batch.map_partitions`` against it, including a worker killed in the middle of a run.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import difftape.answers.dask_batch as db
from difftape.answers.batch import BatchProgram, run_ndjson
from difftape.cli import cli
from difftape.errors import DifftapeError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

PROGRAM = "sum(sin(x) * y) + y**2"


def single(args: list[str], path: Path) -> tuple[str, int]:
    """The single-process ``--batch`` over one file: its stdout and exit status."""
    res = CliRunner().invoke(cli, [*args, "--batch", "--at-file", str(path)])
    return res.stdout, res.exit_code


def points_text(rng: np.random.Generator, n: int, *, bad_every: int = 97) -> str:
    """NDJSON points of PROGRAM: x a scalar or a vector of 2 or 3, y a number; some bad lines of every kind."""
    lines = []
    bad = ["{bad", "", "[1, 2]", '{"x": "text", "y": 1.0}', '{"z": 1}', '{"x": [1.0, [2.0]], "y": 1}',
           '{"x": null, "y": 2}', '{"x": 1e400, "y": 1}', '{"x": "nan", "y": "inf"}']
    for i in range(n):
        if i % bad_every == bad_every - 1:
            lines.append(bad[(i // bad_every) % len(bad)])
            continue
        k = int(rng.integers(0, 3))
        x = float(rng.normal()) if k == 0 else rng.normal(size=k + 1).tolist()
        y = int(rng.integers(-3, 4)) if i % 5 == 0 else float(rng.normal())
        lines.append(json.dumps({"x": x, "y": y}))
    return "\n".join(lines) + "\n"


def write_parquet(path: Path, rng: np.random.Generator, n: int, row_group: int) -> list[dict]:
    """A Parquet file of points (a null here and there); returns the rows as JSON would give them."""
    x = [float(v) for v in rng.normal(size=n)]
    v = [rng.normal(size=3).tolist() for _ in range(n)]
    k = [int(i) for i in rng.integers(-5, 5, size=n)]
    for i in range(0, n, 37):
        x[i] = None
    table = pa.table({"x": pa.array(x, pa.float64()), "v": pa.array(v, pa.list_(pa.float64())),
                      "k": pa.array(k, pa.int64())})
    pq.write_table(table, path, row_group_size=row_group)
    return table.to_pylist()


PARQUET_PROGRAM = "sum(v * x) + k * x**2"


# ----------------------------------------------------------------------------------------
# partitions in this process


def test_blocks_of_a_big_file_answer_every_line_once_as_the_whole_file_does(tmp_path):
    rng = np.random.default_rng(3)
    text = points_text(rng, 3000)
    lines = text.split("\n")
    lines[0] = "\ufeff" + lines[0]  # a byte-order mark at the start of the file is dropped
    lines[1200] = "\ufeff" + lines[1200]  # in the middle it is not: that line is an error, and stays one
    lines[1500] = lines[1500] + "\r"  # a CRLF line
    path = tmp_path / "big.ndjson"
    path.write_bytes("\n".join(lines).removesuffix("\n").encode("utf-8"))  # no newline at the end
    blank = sum(1 for line in lines[:3000] if not line.strip())  # blank lines are skipped (no output line)
    for command in ("eval", "grad", "jacobian"):
        want, code = single([command, PROGRAM], path)
        assert code == 2 and want.count("\n") == 3000 - blank
        parts = db.plan([str(path)], partition_bytes=4096)
        assert len(parts) > 20 and len({p.name for p in parts}) == len(parts)
        spec = db.BatchSpec(PROGRAM, command, options={} if command == "eval" else {"wrt": None, "watch": ()})
        out = io.StringIO()
        job = db.run_in_process(spec, parts, None, write=out.write)
        assert out.getvalue() == want
        assert job.lines == 3000 and job.failed == want.count('{"error"')


def test_block_cuts_fall_at_line_starts_and_skip_a_bom_line(tmp_path):
    path = tmp_path / "p.ndjson"
    body = b'{"x": 1}\n' * 10 + b'\xef\xbb\xbf{"x": 2}\n' + b'{"x": 3}\n' * 10
    path.write_bytes(body)
    for size in range(1, 40):
        parts = db.plan([str(path)], partition_bytes=size)
        starts = [p.start for p in parts]
        assert starts[0] == 0 and [p.end for p in parts][-1] == len(body)
        assert all(a.end == b.start for a, b in zip(parts, parts[1:]))
        for s in starts[1:]:
            assert body[s - 1 : s] == b"\n" and body[s : s + 3] != b"\xef\xbb\xbf"


def test_parquet_points_are_answered_as_the_same_points_in_ndjson(tmp_path):
    rng = np.random.default_rng(5)
    rows = write_parquet(tmp_path / "p.parquet", rng, 2500, row_group=400)
    nd = tmp_path / "p.ndjson"
    nd.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for command in ("eval", "grad", "jacobian"):
        want, code = single([command, PARQUET_PROGRAM], nd)
        got, code2 = single([command, PARQUET_PROGRAM], tmp_path / "p.parquet")
        assert (got, code2) == (want, code) and code == 2  # the nulls are errors, in place
        assert '"line": 38,' in got  # row 37 (0-based) is null: numbered as its line


def test_output_dir_parquet_row_groups_and_ndjson_files(tmp_path, monkeypatch):
    rng = np.random.default_rng(6)
    write_parquet(tmp_path / "a.parquet", rng, 3000, row_group=500)
    (tmp_path / "b.ndjson").write_text(points_text(rng, 800))
    monkeypatch.setattr(db, "PARTITION_ROWS", 1000)
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["grad", PARQUET_PROGRAM, "--batch", "--at-file", str(tmp_path / "a.parquet"),
                                   "--output", str(out)])
    assert res.exit_code == 2, res.output
    names = sorted(os.listdir(out))
    assert names == [f"a.part-{k:05d}.parquet" for k in range(3)]
    got = "".join("".join(db.parquet_lines(str(out / n))) for n in names)
    assert got == single(["grad", PARQUET_PROGRAM], tmp_path / "a.parquet")[0]
    res = CliRunner().invoke(cli, ["grad", PROGRAM, "--at-file", str(tmp_path / "*.ndjson"), "--output", str(out)])
    assert (out / "b.ndjson").read_text() == single(["grad", PROGRAM], tmp_path / "b.ndjson")[0]
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


def test_a_partition_that_fails_midway_leaves_no_output_file(tmp_path, monkeypatch):
    path = tmp_path / "p.ndjson"
    path.write_text(points_text(np.random.default_rng(1), 50))
    out = tmp_path / "out"
    out.mkdir()
    spec = db.BatchSpec(PROGRAM, "grad", options={"wrt": None, "watch": ()})
    part = db.plan([str(path)])[0]
    real = db.answer_partition

    def dying(spec, part, write):
        write('{"of": "half a file"}\n')
        raise KeyboardInterrupt  # as a worker process dies: nothing after this line runs

    monkeypatch.setattr(db, "answer_partition", dying)
    with pytest.raises(KeyboardInterrupt):
        db.run_partition(spec, part, str(out))
    assert os.listdir(out) == []
    monkeypatch.setattr(db, "answer_partition", real)
    db.run_partition(spec, part, str(out))
    assert os.listdir(out) == ["p.ndjson"]
    assert (out / "p.ndjson").read_text() == single(["grad", PROGRAM], path)[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scheduler", "local"], "--output"),
        (["--output", "OUT"], "--at-file"),
        (["--at-file", "P/*.ndjson", "--workers", "2", "--output", "OUT"], "--scheduler local"),
        (["--at-file", "P/*.ndjson", "--scheduler", "local"], "--output DIR"),
        (["--at-file", "P/*.ndjson"], "matches 2 files"),
        (["--at-file", "P/none*.ndjson", "--output", "OUT"], "no file matches"),
        (["--at-file", "P/*.ndjson", "--output", "P"], "would overwrite the points"),
        (["--at-file", "P", "--output", "OUT"], "is a directory"),
    ],
)
def test_usage_errors(tmp_path, args, message):
    (tmp_path / "P").mkdir()
    for name in ("a.ndjson", "b.ndjson"):
        (tmp_path / "P" / name).write_text('{"x": 1.0}\n')
    args = [a.replace("P", str(tmp_path / "P")).replace("OUT", str(tmp_path / "OUT")) for a in args]
    res = CliRunner().invoke(cli, ["grad", "x**2", *args])
    assert res.exit_code == 2
    assert message in res.stderr and "Traceback" not in res.output
    if message != "is a directory":  # batch errors are JSON on stdout too (click's own, for a directory, are not)
        assert json.loads(res.stdout.strip().splitlines()[-1])["error"]["message"]


def test_unreadable_parquet_is_a_clear_error(tmp_path):
    (tmp_path / "bad.parquet").write_text("not parquet")
    res = CliRunner().invoke(cli, ["grad", "x**2", "--at-file", str(tmp_path / "bad.parquet")])
    assert res.exit_code == 2 and "cannot read" in res.stderr and "as Parquet" in res.stderr


def test_check_over_partitions_needs_check_batch(tmp_path):
    (tmp_path / "p.ndjson").write_text('{"x": 1.0}\n')
    from difftape.answers import batch

    points = ["--at-file", str(tmp_path / "p.ndjson")] if "check" in batch.COMMANDS else []
    res = CliRunner().invoke(cli, ["check", "x**2", *points, "--output", str(tmp_path / "out"), "--scheduler", "local"])
    if "check" in batch.COMMANDS:  # once check --batch exists, partitions answer it like the others
        assert res.exit_code in (0, 1), res.output
    else:
        assert res.exit_code == 2 and "check has no --batch" in res.stderr


def test_a_missing_extra_names_the_install_command(tmp_path, monkeypatch):
    (tmp_path / "p.ndjson").write_text('{"x": 1.0}\n')
    for mod in ("dask", "distributed"):
        monkeypatch.setitem(sys.modules, mod, None)  # import fails as if not installed
    res = CliRunner().invoke(cli, ["grad", "x**2", "--at-file", str(tmp_path / "p.ndjson"),
                                   "--output", str(tmp_path / "out"), "--scheduler", "local"])
    assert res.exit_code == 2
    assert 'error[environment]' in res.stderr and 'pip install "difftape[dask]"' in res.stderr
    import difftape.batch

    with pytest.raises(DifftapeError, match=r"difftape\[dask\]"):
        difftape.batch.map_partitions("x**2", [1, 2])


def test_a_bad_scheduler_address_is_an_environment_error(tmp_path):
    (tmp_path / "p.ndjson").write_text('{"x": 1.0}\n')
    res = CliRunner().invoke(cli, ["grad", "x**2", "--at-file", str(tmp_path / "p.ndjson"),
                                   "--output", str(tmp_path / "out"), "--scheduler", "nonsense::"])
    assert res.exit_code == 2 and "error[environment]: cannot reach the Dask scheduler at nonsense::" in res.stderr


def test_the_cost_of_one_point_is_checked_before_any_file_is_read(tmp_path):
    (tmp_path / "p.ndjson").write_text('{"x": 1.0}\n')
    res = CliRunner().invoke(cli, ["grad", "sum(x**2)", "--at-file", str(tmp_path / "*.ndjson"),
                                   "--output", str(tmp_path / "out"), "--max-flops", "1"])
    assert res.exit_code == 2 and "error[limit]" in res.stderr and not (tmp_path / "out").exists()


def test_the_plain_batch_path_imports_no_dask_and_no_arrow(tmp_path):
    path = tmp_path / "p.ndjson"
    path.write_text('{"x": 1.0}\n')
    code = ("import sys; from difftape.cli import main\n"
            "try:\n    main(['grad', 'x**2', '--batch', '--at-file', sys.argv[1]])\n"
            "except SystemExit:\n    pass\n"
            "bad = [m for m in ('dask', 'distributed', 'pyarrow', 'pandas') if m in sys.modules]\n"
            "print('IMPORTED', bad)")
    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert "IMPORTED []" in res.stdout, res.stdout + res.stderr


def test_progress_line_says_points_rate_and_eta(monkeypatch):
    from difftape.io.progress import PointsBar

    monkeypatch.setenv("COLUMNS", "200")
    stream = io.StringIO()
    p = PointsBar("grad --batch", 1000, 4, stream=stream, enabled=True, after=0)
    p.on_partition(db.PartitionReport("a", lines=250, size=250))
    text = stream.getvalue()
    p.close()
    assert "250 points" in text and "points/s" in text and "ETA" in text and "1/4 partitions" in text
    assert "25%" in text and stream.getvalue().endswith("\r\x1b[K")  # erased at the end
    quiet = io.StringIO()
    q = PointsBar("grad --batch", 1000, 4, stream=quiet, after=0)  # not a terminal: nothing
    q.on_partition(db.PartitionReport("a", lines=250, size=250))
    q.close()
    assert quiet.getvalue() == ""


# ----------------------------------------------------------------------------------------
# run_on_dask's reading of its futures, with a fake client (deterministic: the states a lost worker causes)


class _Future:
    """A Dask future as run_on_dask sees it: key, status, result() (waiting for a rerun), release, cancel."""

    def __init__(self, key: str, fn, args) -> None:
        self.key, self.status, self.runs, self.released, self.cancelled = key, "pending", 0, False, False
        self._fn, self._args, self._fail, self._error = fn, args, None, None

    def compute(self) -> None:  # the task runs on a worker
        self.runs += 1
        if self._fail is not None:
            self.status, self._error = "error", self._fail
            return
        self._value = self._fn(*self._args)
        self.status = "finished"

    def lose(self) -> None:  # the worker holding the result died; Dask will run the task again
        self.status = "lost"

    def result(self):
        if self.status in ("lost", "pending"):  # as Dask's result(): waits for the task to be run again
            self.compute()
        if self.status == "cancelled":
            raise self._cancelled
        if self._error is not None:
            raise self._error
        return self._value

    def release(self) -> None:
        self.released = True

    def cancel(self) -> None:
        self.cancelled = True


class _Client:
    def __init__(self) -> None:
        self.futures: list[_Future] = []

    def submit(self, fn, *args, key, pure, priority):
        self.futures.append(_Future(key, fn, args))
        return self.futures[-1]


def _fake_cluster(monkeypatch, tmp_path, events):
    """A job of 4 files on a fake client whose as_completed applies ``events[i]`` to future i before yielding it."""
    distributed = pytest.importorskip("distributed")

    def as_completed(futures):
        for i, f in enumerate(futures):
            f.compute()
            events.get(i, lambda f: None)(f)
            yield f

    monkeypatch.setattr(distributed, "as_completed", as_completed)
    rng = np.random.default_rng(21)
    src = tmp_path / "points"
    src.mkdir()
    inputs = []
    for k in range(4):
        inputs.append(src / f"f{k}.ndjson")
        inputs[-1].write_text(points_text(rng, 60, bad_every=1000))
    out = tmp_path / "out"
    out.mkdir()
    spec = db.BatchSpec(PROGRAM, "grad", options={"wrt": None, "watch": (), "unconnected": "none"})
    return _Client(), spec, db.plan([str(p) for p in inputs]), out, inputs


@pytest.mark.parametrize("turns", ["lost", "pending"])
def test_a_partition_whose_result_a_dying_worker_lost_is_not_reported_failed(monkeypatch, tmp_path, turns):
    # Future 1 was done when as_completed yielded it, but its worker died before it was read: Dask shows it
    # "lost" (then "pending") and runs it again. It is the partition's result, not an error.
    client, spec, parts, out, inputs = _fake_cluster(monkeypatch, tmp_path, {1: lambda f: setattr(f, "status", turns)})
    job = db.run_on_dask(client, spec, parts, str(out))
    assert job.partitions == 4 and job.lines == 4 * 60 and job.failed == 0
    assert [f.runs for f in client.futures] == [1, 2, 1, 1]
    assert all(f.released for f in client.futures)  # collected: Dask may forget them (no run after the job)
    assert sorted(os.listdir(out)) == [p.name for p in inputs]
    _same_as_single(out, inputs, ["grad", PROGRAM])


#: An exception named as distributed's KilledWorker (which _task_error recognises by its name).
KilledWorker = type("KilledWorker", (Exception,), {})


@pytest.mark.parametrize(
    ("fail", "kind", "message"),
    [
        (DifftapeError("io", "disk full"), "io", "disk full"),
        (RuntimeError("boom"), "internal", "partition f2.ndjson (of "),
        (KilledWorker("x"), "environment", "the worker running it died every time"),
    ],
)
@pytest.mark.parametrize("lost_first", [False, True])
def test_a_partition_that_really_failed_is_still_reported(monkeypatch, tmp_path, fail, kind, message, lost_first):
    def event(f):
        f._fail = fail
        if lost_first:  # done, lost with its worker, and then its rerun fails
            f.lose()
        else:
            f.compute()

    client, spec, parts, out, _ = _fake_cluster(monkeypatch, tmp_path, {2: event})
    with pytest.raises(DifftapeError) as info:
        db.run_on_dask(client, spec, parts, str(out))
    assert info.value.kind == kind and message in info.value.message
    assert [f.cancelled for f in client.futures] == [False, False, True, True]  # the ones not collected


def test_a_cancelled_partition_is_an_environment_error(monkeypatch, tmp_path):
    distributed = pytest.importorskip("distributed")

    def cancel(f):
        f.status, f._cancelled = "cancelled", distributed.client.FutureCancelledError(f.key, "scheduler restarted")

    client, spec, parts, out, _ = _fake_cluster(monkeypatch, tmp_path, {0: cancel})
    with pytest.raises(DifftapeError) as info:
        db.run_on_dask(client, spec, parts, str(out))
    assert info.value.kind == "environment" and "f0.ndjson" in info.value.message
    assert "was cancelled on the cluster" in info.value.message


# ----------------------------------------------------------------------------------------
# on a real cluster


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    import logging

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None, silence_logs=logging.CRITICAL)
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def _same_as_single(out: Path, inputs: list[Path], args: list[str]) -> None:
    for path in inputs:
        want, _ = single(args, path)
        if db.is_parquet(str(path)):
            assert "".join(db.parquet_lines(str(out / path.name))) == want
        else:
            assert (out / path.name).read_text() == want, path.name


@pytest.mark.slow
def test_cluster_answers_every_line_as_the_single_process(client, tmp_path, monkeypatch):
    assert all(a.startswith("tcp://127.0.0.1:") for a in client.scheduler_info()["workers"])
    rng = np.random.default_rng(11)
    src = tmp_path / "points"
    src.mkdir()
    for k in range(4):
        (src / f"f{k}.ndjson").write_text(points_text(rng, 200 + 50 * k))
    big = src / "big.ndjson"
    big.write_text(points_text(rng, 5000))
    monkeypatch.setattr(db, "PARTITION_BYTES", 32 << 10)  # the big file is cut into blocks, not the others
    address = client.scheduler.address
    for command in ("eval", "grad", "jacobian"):
        out = tmp_path / f"out-{command}"
        res = CliRunner().invoke(cli, [command, PROGRAM, "--batch", "--at-file", str(src / "*.ndjson"),
                                       "--output", str(out), "--scheduler", address])
        assert res.exit_code == 2, res.output  # some lines are bad
        assert "lines failed; the first, big.part-00000.ndjson line 97" in res.stderr
        blocks = sorted(n for n in os.listdir(out) if n.startswith("big."))
        assert len(blocks) > 3
        want, _ = single([command, PROGRAM], big)
        assert "".join((out / n).read_text() for n in blocks) == want
        _same_as_single(out, sorted(src.glob("f*.ndjson")), [command, PROGRAM])
        assert sorted(os.listdir(out)) == sorted(blocks + [f"f{k}.ndjson" for k in range(4)])
    pqs = tmp_path / "pq"
    pqs.mkdir()
    for k in range(2):
        write_parquet(pqs / f"g{k}.parquet", rng, 900, row_group=300)
    out = tmp_path / "out-pq"
    res = CliRunner().invoke(cli, ["grad", PARQUET_PROGRAM, "--at-file", str(pqs / "*.parquet"), "--output",
                                   str(out), "--scheduler", address, "--wrt", "x,v"])
    assert res.exit_code == 2, res.output
    _same_as_single(out, sorted(pqs.glob("*.parquet")), ["grad", PARQUET_PROGRAM, "--wrt", "x,v"])


N_KILL = 10


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(client, tmp_path):
    rng = np.random.default_rng(12)
    src = tmp_path / "points"
    src.mkdir()
    program = "sum(outer(x, x) @ x) * exp(-sum(x**2))"
    inputs = []
    for k in range(N_KILL):
        path = src / f"p{k:02d}.ndjson"
        path.write_text("".join(json.dumps({"x": rng.normal(size=4).tolist()}) + "\n" for _ in range(4000)))
        inputs.append(path)
    spec = db.BatchSpec(program, "jacobian", options={"wrt": None, "watch": (), "unconnected": "zero"})
    parts = db.plan([str(p) for p in inputs])
    out = tmp_path / "out"
    out.mkdir()
    result: dict = {}

    def run() -> None:
        try:
            result["job"] = db.run_on_dask(client, spec, parts, str(out))
        except BaseException as err:  # noqa: BLE001 - reported by the test below
            result["error"] = err

    before = client.run(os.getpid)
    thread = threading.Thread(target=run)
    thread.start()
    victim = None
    deadline = time.monotonic() + 30
    while victim is None and time.monotonic() < deadline:
        busy = {w: ks for w, ks in client.processing().items() if ks}
        done = [n for n in os.listdir(out) if n.endswith(".ndjson")]
        if done and busy:
            victim = next(iter(busy))
            os.kill(before[victim], signal.SIGKILL)  # the worker process, in the middle of its partition
        time.sleep(0.01)
    assert victim is not None, "the run ended before a worker could be killed"
    thread.join(90)
    assert not thread.is_alive()
    assert "error" not in result, result.get("error")
    assert result["job"].lines == N_KILL * 4000 and result["job"].failed == 0
    assert len(done) < len(inputs)  # the kill was mid-run
    assert sorted(os.listdir(out)) == sorted(p.name for p in inputs)  # no temporaries, nothing extra
    _same_as_single(out, inputs, ["jacobian", program])
    client.wait_for_workers(2, timeout=30)
    assert before[victim] not in client.run(os.getpid).values()


@pytest.mark.slow
def test_map_partitions_on_dataframes_and_bags(client, tmp_path):
    import dask.bag as dbag
    import dask.dataframe as dd
    import pandas as pd

    import difftape.batch

    rng = np.random.default_rng(13)
    frame = pd.DataFrame({"x": rng.normal(size=1200), "y": rng.normal(size=1200)})
    frame.loc[17, "y"] = np.nan  # a value, not an error: nan
    ddf = dd.from_pandas(frame, npartitions=3)
    got = difftape.batch.map_partitions("sin(x) * y**2", ddf, command="grad").compute()
    assert list(got.index) == list(frame.index) and list(got.columns) == ["result"]
    prog = BatchProgram("sin(x) * y**2")
    for part in ddf.partitions:
        rows = part.compute()
        text = "".join(json.dumps({"x": x, "y": y if y == y else "nan"}) + "\n" for x, y in zip(rows.x, rows.y))
        want = run_ndjson(prog, text, "grad").text()
        assert "".join(v + "\n" for v in got.loc[rows.index, "result"]) == want

    points = [{"x": float(v)} for v in rng.normal(size=500)]
    points[42] = {"x": "bad"}
    bag = dbag.from_sequence(points, npartitions=4)
    res = difftape.batch.map_partitions("x**3", bag, command="jacobian").compute()
    assert len(res) == 500 and res[0]["jacobian"]["x"] == 3 * points[0]["x"] ** 2
    assert res[42]["error"]["kind"] == "value"

    path = tmp_path / "p.ndjson"
    path.write_text(points_text(rng, 900))
    lines = dbag.read_text(str(path), blocksize=None)
    got_lines = difftape.batch.map_partitions(PROGRAM, lines, command="eval").compute()
    assert "".join(got_lines) == single(["eval", PROGRAM], path)[0]

    with pytest.raises(DifftapeError, match="syntax|expected"):
        difftape.batch.map_partitions("x +* 2", bag)
    with pytest.raises(DifftapeError, match="DataFrame or Bag"):
        difftape.batch.map_partitions("x**2", [1, 2])


@pytest.mark.slow
def test_scheduler_local_command_prints_a_loopback_dashboard(tmp_path):
    src = tmp_path / "points"
    src.mkdir()
    rng = np.random.default_rng(14)
    for k in range(3):
        (src / f"q{k}.ndjson").write_text(points_text(rng, 400))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "difftape", "grad", PROGRAM, "--batch", "--at-file", str(src / "*.ndjson"),
           "--output", str(out), "--scheduler", "local", "--workers", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    first = res.stderr.splitlines()[0]
    assert first.startswith("difftape: Dask dashboard at http://127.0.0.1:") or "serves no dashboard" in first
    _same_as_single(out, sorted(src.glob("*.ndjson")), ["grad", PROGRAM])
