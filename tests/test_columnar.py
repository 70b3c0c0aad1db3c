"""Columnar batches: --at-file .npy/.npz/.parquet/.arrow and --output FILE in those formats (issue 16).

Every answer is held to the NDJSON path's for the same points: the same JSON lines on stdout, and in an
--output FILE the same numbers, bit for bit, column by column.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from difftape.answers import columnar
from difftape.cli import cli

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
feather = pytest.importorskip("pyarrow.feather")

RNG = np.random.default_rng(160)
N = 300
PROGRAM = "sum(sin(x) * y) + sum(W @ x) * k"


def make_points(n: int = N) -> dict[str, np.ndarray]:
    """x: vectors of 2, y: floats with odd values among them, W: 2x2 matrices, k: integers."""
    y = RNG.normal(size=n)
    y[:6] = [0.0, -0.0, 5e-324, 1e-7, 1e300, np.nan]
    return {"x": RNG.normal(size=(n, 2)), "y": y, "W": RNG.normal(size=(n, 2, 2)),
            "k": RNG.integers(-3, 4, n)}


def ndjson(points: dict[str, np.ndarray]) -> str:
    names = list(points)
    rows = zip(*(points[k].tolist() for k in names))
    return "".join(json.dumps(dict(zip(names, (("nan" if v != v else v) if isinstance(v, float) else v
                                                for v in row)))) + "\n" for row in rows)


def write(path: Path, points: dict[str, np.ndarray]) -> Path:
    fmt = columnar.file_format(str(path))
    if fmt == "npz":
        np.savez(path, **points)
    elif fmt == "npy":
        rec = np.empty(len(points["x"]), dtype=[(k, v.dtype, v.shape[1:]) for k, v in points.items()])
        for k, v in points.items():
            rec[k] = v
        np.save(path, rec)
    else:
        table = pa.table({k: _arrow(v) for k, v in points.items()})
        pq.write_table(table, path) if fmt == "parquet" else feather.write_feather(table, path)
    return path


def _arrow(v: np.ndarray):
    arr = pa.array(v.reshape(-1))
    for size in reversed(v.shape[1:]):
        arr = pa.FixedSizeListArray.from_arrays(arr, size)
    return arr


def run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(cli, list(args), input=stdin)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".parquet", ".arrow"])
@pytest.mark.parametrize("command", ["eval", "grad", "jacobian"])
def test_columnar_input_answers_what_ndjson_answers(tmp_path, suffix, command):
    points = make_points()
    want = run(command, PROGRAM, "--batch", stdin=ndjson(points))
    assert want.exit_code == 0, want.output
    got = run(command, PROGRAM, "--at-file", str(write(tmp_path / f"p{suffix}", points)))
    assert got.exit_code == 0, got.output
    assert got.stdout == want.stdout
    assert got.stdout.count("\n") == N


@pytest.mark.parametrize("out_suffix", [".npy", ".npz", ".parquet", ".arrow"])
@pytest.mark.parametrize("command", ["grad", "jacobian", "eval"])
def test_output_file_holds_the_ndjson_answers(tmp_path, out_suffix, command):
    points = make_points()
    lines = [json.loads(line) for line in run(command, PROGRAM, "--batch", stdin=ndjson(points)).stdout.splitlines()]
    out = tmp_path / f"out{out_suffix}"
    res = run(command, PROGRAM, "--at-file", str(write(tmp_path / "p.npz", points)), "--output", str(out))
    assert res.exit_code == 0, res.output
    cols = read_output(out)
    key = {"grad": "grad", "jacobian": "jacobian"}.get(command)
    expect = {"value": [line["value"] for line in lines]}
    if key:
        for name in lines[0][key]:
            expect[f"{key}.{name}"] = [line[key][name] for line in lines]
    assert sorted(cols) == sorted(expect)
    for name, values in expect.items():
        want = np.array(json.loads(json.dumps(values).replace('"nan"', "NaN")), dtype=float)
        got = np.asarray(cols[name], dtype=float)
        assert got.shape == want.shape, name
        assert np.array_equal(got, want, equal_nan=True), name
        assert np.array_equal(np.signbit(got), np.signbit(want)), name


def read_output(path: Path) -> dict[str, np.ndarray]:
    fmt = columnar.file_format(str(path))
    if fmt == "npy":
        rec = np.load(path)
        return {k: rec[k] for k in rec.dtype.names}
    if fmt == "npz":
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    table = pq.read_table(path) if fmt == "parquet" else feather.read_table(path)
    assert json.loads(table.schema.metadata[b"difftape"])["points"] == table.num_rows
    return {k: np.array(table.column(k).to_pylist()) for k in table.column_names}


def test_a_failing_point_gets_its_error_in_place(tmp_path):
    a = RNG.normal(size=(50, 2, 2))
    a[7] = [[1.0, 2.0], [2.0, 4.0]]  # singular
    src = write(tmp_path / "a.npz", {"A": a})
    want = run("grad", "sum(inv(A))", "--batch", stdin=ndjson({"A": a}))
    assert want.exit_code == 2
    got = run("grad", "sum(inv(A))", "--at-file", str(src))
    assert got.exit_code == 2 and got.stdout == want.stdout
    assert "row 8" in got.stderr and "1 of 50 points failed" in got.stderr
    for suffix in (".npz", ".parquet"):
        out = tmp_path / f"o{suffix}"
        res = run("grad", "sum(inv(A))", "--at-file", str(src), "--output", str(out))
        assert res.exit_code == 2, res.output
        cols = read_output(out)
        error = [e or "" for e in cols["error"].tolist()]
        assert error[7].startswith("error[value]") and error[:7] == [""] * 7 and error[8:] == [""] * 42
        assert np.isnan(cols["value"][7]) and np.isnan(cols["grad.A"][7]).all()
        line = json.loads(want.stdout.splitlines()[3])
        assert cols["value"][3] == line["value"]


def test_ignore_extra_and_unknown_columns(tmp_path):
    src = write(tmp_path / "p.npz", {"x": RNG.normal(size=5), "id": np.arange(5)})
    res = run("grad", "x**2", "--at-file", str(src))
    assert res.exit_code == 2
    assert all("'id' is not an input" in json.loads(line)["error"]["message"] for line in res.stdout.splitlines())
    res = run("grad", "x**2", "--at-file", str(src), "--ignore-extra")
    assert res.exit_code == 0 and res.stdout.count("\n") == 5
    res = run("grad", "x**2", "--at-file", str(src), "--output", str(tmp_path / "o.npy"))
    assert res.exit_code == 2 and json.loads(res.stdout)["error"]["kind"] == "name"
    assert not (tmp_path / "o.npy").exists()


def test_a_plain_npy_array_is_the_one_input(tmp_path):
    x = RNG.normal(size=20)
    np.save(tmp_path / "x.npy", x)
    got = run("grad", "sin(x)", "--at-file", str(tmp_path / "x.npy"))
    assert got.exit_code == 0 and got.stdout == run("grad", "sin(x)", "--batch", stdin=ndjson({"x": x})).stdout
    res = run("grad", "sin(x) * y", "--at-file", str(tmp_path / "x.npy"))
    assert res.exit_code == 2 and "\"value\"" in res.stdout and "structured array" in res.stdout


@pytest.mark.parametrize("content, suffix, kind, words", [
    (b"not an array", ".npy", "value", "cannot read"),
    (b"PK\x03\x04 broken", ".npz", "value", "cannot read"),
    (b"PAR1 broken", ".parquet", "value", "cannot read"),
    (b"ARROW1 broken", ".arrow", "value", "cannot read"),
    (None, ".npz", "value", "different lengths"),
    ("strings", ".npz", "value", "expected numbers"),
    ("nulls", ".parquet", "value", "nulls"),
    ("missing", ".npy", "usage", "No such file"),
])
def test_bad_files_are_clear_errors(tmp_path, content, suffix, kind, words):
    path = tmp_path / f"bad{suffix}"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is None:
        np.savez(path, x=np.zeros(3), y=np.zeros(4))
    elif content == "strings":
        np.savez(path, x=np.array(["a", "b"]))
    elif content == "nulls":
        pq.write_table(pa.table({"x": pa.array([1.0, None])}), path)
    # (Parquet to stdout is the partitioned path's, where a null is the error of its row alone)
    for extra in ([], ["--output", str(tmp_path / "o.npy")])[content == "nulls":]:
        res = run("grad", "x * 2", "--at-file", str(path), *extra)
        assert res.exit_code == 2, res.output
        err = json.loads(res.stdout)["error"]
        assert err["kind"] == kind and words in err["message"], err
        assert "Traceback" not in res.output
    assert not (tmp_path / "o.npy").exists()


def test_output_file_needs_a_columnar_input_and_a_batch_command(tmp_path):
    (tmp_path / "p.ndjson").write_text('{"x": 1.0}\n')
    res = run("grad", "x**2", "--at-file", str(tmp_path / "p.ndjson"), "--output", str(tmp_path / "o.npy"))
    assert res.exit_code == 2 and "--output DIR" in res.output
    np.save(tmp_path / "x.npy", np.ones(3))
    res = run("hessian", "x**3", "--at-file", str(tmp_path / "x.npy"))
    assert res.exit_code == 2 and "eval, grad, jacobian" in res.output
    res = run("check", "x**3", "--at-file", str(tmp_path / "x.npy"))  # check batches read NDJSON or Parquet
    assert res.exit_code == 2 and "eval, grad, jacobian" in res.output and "error[internal]" not in res.output
    res = run("grad", "x**3", "--at-file", str(tmp_path / "x.npy"), "--output", str(tmp_path / "no" / "o.npy"))
    assert res.exit_code == 2 and "does not exist" in res.output
    res = run("grad", "x**3", "--at-file", str(tmp_path / "x.npy"), "--echo")
    assert res.exit_code == 2 and "--echo" in res.output


def test_output_dir_with_a_columnar_name_stays_a_directory(tmp_path):
    """An existing directory is --output DIR whatever its name; Parquet partitions still go there."""
    src = write(tmp_path / "in" / "p.parquet", make_points(20)) if (tmp_path / "in").mkdir() is None else None
    out = tmp_path / "out.npy"
    out.mkdir()
    res = run("grad", PROGRAM, "--at-file", str(src), "--output", str(out))
    assert res.exit_code == 0, res.output
    assert (out / "p.parquet").is_file()
    res = run("grad", PROGRAM, "--at-file", str(src), "--output", str(tmp_path / "fresh.parquet"))
    assert res.exit_code == 0 and (tmp_path / "fresh.parquet").is_file()
    assert sorted(read_output(tmp_path / "fresh.parquet")) == ["grad.W", "grad.k", "grad.x", "grad.y", "value"]


def test_partitions_refuse_array_files(tmp_path):
    """--output DIR and globs read NDJSON or Parquet: a .npy there is a clear error, not lines of garbage."""
    np.save(tmp_path / "x.npy", np.ones(3))
    for extra in (["--output", str(tmp_path / "out")], []):
        pattern = str(tmp_path / "x.npy") if extra else str(tmp_path / "*.npy")
        res = run("grad", "x**2", "--at-file", pattern, *extra)
        assert res.exit_code == 2 and "is a columnar file" in res.output, res.output
