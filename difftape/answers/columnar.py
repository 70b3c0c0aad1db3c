"""Batches of points that are already arrays: ``--at-file`` and ``--output FILE`` in .npy, .npz, Parquet, Arrow.

A columnar file holds one column per input, one row per point (the leading axis):

- ``.npy``: a structured array with one field per input (a field may have a shape: one array per point),
  or a plain array when the program has exactly one input left without a value;
- ``.npz``: one array per input name, all with the same length;
- ``.parquet`` / ``.pq`` and ``.arrow`` / ``.feather`` (Arrow IPC; pyarrow, the optional extra): one column
  per input, of numbers, or fixed-size lists of numbers (nested for matrices) for array inputs.

The columns become the batched values of one group directly (numpy casts, as ``--at`` values and NDJSON
numbers are converted: floats to the program's float dtype, integers to int64, booleans kept), so there is
no Python work per point; the program runs vectorised exactly as for NDJSON lines
(:class:`~difftape.answers.batch.BatchProgram`), and answers row for row what the same points as NDJSON
lines would get.

Results go either to stdout, as the JSON lines ``--batch`` prints, or into ``--output FILE`` of one of the
formats above (chosen by its suffix), with one column per result: ``value``, then ``grad.NAME`` (or
``jacobian.NAME``) per input, each row of the point's shape, and, only when some point failed, ``error``
(``error[kind]: message``, empty for the points that succeeded; their rows of the other columns hold NaN, 0
for integers). A derivative that is null (a name the target does not depend on, under ``--unconnected
none``) has no column. A file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from difftape.errors import DifftapeError

#: File name endings of columnar files, and their format.
SUFFIXES = {".npy": "npy", ".npz": "npz", ".parquet": "parquet", ".pq": "parquet", ".parq": "parquet",
            ".arrow": "arrow", ".feather": "arrow"}
#: Rows answered and written to stdout together (whole lines, Ctrl-C held off per block).
TEXT_BLOCK = 65_536
#: Rows of one group (one call of BatchProgram.answer_group; the runs inside are smaller still).
GROUP_ROWS = 1 << 20
#: Rows of a structured .npy output put together and written at a time.
WRITE_ROWS = 1 << 16
INSTALL = 'pip install "difftape[dask]" (or pip install pyarrow)'


def file_format(path: str) -> str | None:
    """``"npy"``, ``"npz"``, ``"parquet"`` or ``"arrow"`` by the name's ending; None for anything else."""
    return SUFFIXES.get(os.path.splitext(path)[1].lower())


def _pyarrow(what: str) -> Any:
    try:
        import pyarrow as pa
    except ImportError:
        raise DifftapeError("environment", f"{what} needs the optional package 'pyarrow', which is not installed; "
                                           f"{INSTALL}") from None
    return pa


# ----------------------------------------------------------------------------------------
# reading


def read_columns(path: str, inputs: list[str]) -> dict[str, np.ndarray]:
    """The columns of a columnar file as numpy arrays, points first (unconverted); error[usage] for a file
    that cannot be opened, error[value] for one that is not what its name says or holds no usable columns.
    ``inputs`` are the program's inputs without a value (a plain .npy array is the one of them)."""
    fmt = file_format(path)
    if fmt is None:
        raise DifftapeError("usage", f"{path}: not a columnar file (.npy, .npz, .parquet, .arrow)")
    if not os.path.isfile(path):
        raise DifftapeError("usage", f"cannot read {path}: " + ("it is a directory" if os.path.isdir(path)
                                                                 else "No such file or directory"))
    try:
        if fmt == "npy":
            columns = _read_npy(path, inputs)
        elif fmt == "npz":
            with np.load(path, allow_pickle=False) as z:
                columns = {k: z[k] for k in z.files}
        else:
            columns = _read_arrow(path, fmt)
    except DifftapeError:
        raise
    except PermissionError as err:
        raise DifftapeError("usage", f"cannot read {path}: {err.strerror or err}") from None
    except Exception as err:  # noqa: BLE001 - numpy's and pyarrow's many errors for a file that is not one
        raise DifftapeError("value", f"cannot read {path} as {fmt}: {type(err).__name__}: {err}") from None
    if not columns:
        raise DifftapeError("value", f"{path} holds no columns (expected one per input of the program)")
    lengths = {k: (len(v) if np.ndim(v) else None) for k, v in columns.items()}
    if None in lengths.values():
        bad = next(k for k, v in lengths.items() if v is None)
        raise DifftapeError("value", f"{path}: {bad!r} is a single number, not a column (one value per point, "
                                     "the points along the first axis)")
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k} {n:,}" for k, n in lengths.items())
        raise DifftapeError("value", f"{path}: the columns have different lengths ({shown}); each holds one value "
                                     "per point")
    for k, v in columns.items():
        if v.dtype.kind not in "biuf":
            raise DifftapeError("value", f"{path}: column {k!r} holds {v.dtype} values; expected numbers (floats, "
                                         "integers or booleans)")
    return columns


def _read_npy(path: str, inputs: list[str]) -> dict[str, np.ndarray]:
    arr = np.load(path, allow_pickle=False, mmap_mode="r")
    if arr.dtype.names:
        return {name: np.asarray(arr[name]) for name in arr.dtype.names}
    if len(inputs) != 1:
        which = ", ".join(inputs) if inputs else "none"
        raise DifftapeError("value", f"{path} holds one plain array, but the program has {len(inputs)} inputs "
                                     f"without a value ({which}); give a structured array (one field per input) "
                                     "or an .npz (one array per input)")
    return {inputs[0]: np.asarray(arr)}


def _read_arrow(path: str, fmt: str) -> dict[str, np.ndarray]:
    pa = _pyarrow(f"reading {path}")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        meta = table.schema.pandas_metadata or {}
        skip = {c for c in meta.get("index_columns", []) if isinstance(c, str)}
    else:
        import pyarrow.ipc as ipc

        try:
            with pa.memory_map(path) as source:
                table = ipc.open_file(source).read_all()
        except pa.ArrowInvalid:
            with pa.memory_map(path) as source:
                table = ipc.open_stream(source).read_all()
        skip = set()
    return {name: _arrow_numpy(pa, name, table.column(name)) for name in table.column_names if name not in skip}


def _arrow_numpy(pa: Any, name: str, column: Any) -> np.ndarray:
    """An Arrow column of numbers, or of fixed-size lists of them (nested), as one numpy array; no nulls."""
    arr = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    if arr.null_count:
        raise DifftapeError("value", f"column {name!r} has {arr.null_count:,} nulls: every point needs a value")
    shape: list[int] = []
    t = arr.type
    while pa.types.is_fixed_size_list(t):
        shape.append(t.list_size)
        arr = arr.flatten()  # the values of the lists (slices respected)
        if arr.null_count:
            raise DifftapeError("value", f"column {name!r} has nulls inside its lists")
        t = arr.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        raise DifftapeError("value", f"column {name!r} has Arrow type {column.type}: expected numbers, or "
                                     "fixed-size lists of numbers (one array of one shape per point)")
    values = arr.to_numpy(zero_copy_only=False)
    rows = len(column)
    return values.reshape((rows, *shape))


def point_columns(columns: Mapping[str, np.ndarray], float_dtype: Any) -> tuple[dict[str, np.ndarray], str | None]:
    """The columns as batched values, converted as ``--at`` values and NDJSON numbers are (floats to the
    program's float dtype, integers to int64, booleans kept); also the first conversion that fails."""
    out: dict[str, np.ndarray] = {}
    for k, v in columns.items():
        kind = v.dtype.kind
        if kind == "f":
            v = v.astype(float_dtype, copy=False)
        elif kind == "u" and v.dtype.itemsize == 8 and v.size and int(v.max()) >= 2**63:
            return out, f"input '{k}': the number {int(v.max())} is out of range (64-bit integers)"
        elif kind in "iu":
            v = v.astype(np.int64, copy=False)
        out[k] = np.ascontiguousarray(v)
    return out, None


# ----------------------------------------------------------------------------------------
# answering


def prepare(prog: Any, columns: Mapping[str, np.ndarray], *, ignore_extra: bool = False
            ) -> tuple[dict[str, np.ndarray], DifftapeError | None]:
    """The columns as the batched inputs of ``prog`` (a BatchProgram), in the program's order, or the error
    that every point has (a column that names nothing of the program, a missing input, a value out of range),
    the error each of the same points as NDJSON lines gets."""
    names = {k: v for k, v in columns.items() if not ignore_extra or k in prog.names}
    problem = prog._check_names(frozenset(names))
    if problem is not None:
        return {}, problem
    values, bad = point_columns(names, prog.base.float_dtype)
    if bad is not None:
        return {}, DifftapeError("value", bad)
    return {k: values[k] for k in sorted(values, key=prog._order.get)}, None


def answer_rows(
    prog: Any,
    values: Mapping[str, np.ndarray],
    lo: int,
    hi: int,
    command: str,
    emit: Callable[[np.ndarray, Any], None],
    fail: Callable[[Iterable[int], DifftapeError], None],
    **options: Any,
) -> None:
    """Answer rows lo:hi of prepared columns (numbered from 0 at ``lo`` in the calls of ``emit`` and ``fail``),
    vectorised as ``BatchProgram.answer`` answers the same points parsed from NDJSON."""
    from difftape.answers.batch import Group

    for start in range(lo, hi, GROUP_ROWS):  # groups of a bounded size: their line numbers are small arrays
        end = min(hi, start + GROUP_ROWS)
        group = Group(np.arange(start - lo, end - lo, dtype=np.int64), {k: v[start:end] for k, v in values.items()})
        prog.answer_group(group, command, emit, fail, **options)


class ColumnSink:
    """The results of ``n`` points gathered into columns: ``value``, ``grad.NAME``/``jacobian.NAME``, errors."""

    def __init__(self, n: int, command: str) -> None:
        self.n, self.command = n, command
        self.columns: dict[str, np.ndarray] = {}
        self.errors: dict[int, str] = {}
        self.failed = 0
        self.first_error: tuple[int, DifftapeError] | None = None  # (row number from 1, error)
        self.summed = False

    def emit(self, lines: np.ndarray, answer: Any) -> None:
        prefix = "grad" if self.command == "grad" else "jacobian"
        self.summed = self.summed or bool(answer.summed)
        blocks = {"value": answer.value}
        for name, d in (answer.derivs or {}).items():
            if d is not None:
                blocks[f"{prefix}.{name}"] = d
        first, count = int(lines[0]), len(lines)
        where: Any = slice(first, first + count) if int(lines[-1]) - first == count - 1 else lines
        for key, block in blocks.items():
            block = np.asarray(block)
            col = self.columns.get(key)
            if col is None:  # filled as the points are answered; the rows of failed points at the end
                col = np.empty((self.n, *block.shape[1:]), dtype=block.dtype)
                self.columns[key] = col
            elif col.shape[1:] != block.shape[1:]:
                raise DifftapeError("value", f"the points give {key} of different shapes ({col.shape[1:]} and "
                                             f"{block.shape[1:]}): one column holds one shape")
            col[where] = block

    def fail(self, lines: Iterable[int], err: DifftapeError) -> None:
        text = f"error[{err.kind}]: {err.message}"
        for line in lines:
            self.errors[int(line)] = text
            self.failed += 1
            if self.first_error is None or line + 1 < self.first_error[0]:
                self.first_error = (int(line) + 1, err)

    def table(self) -> dict[str, np.ndarray]:
        """The output columns, in order (value first), with ``error`` when some point failed."""
        out = dict(sorted(self.columns.items(), key=lambda kv: (kv[0] != "value", kv[0])))
        if not out:
            out["value"] = np.full(self.n, np.nan)
        if self.errors:
            width = max(map(len, self.errors.values()))
            err = np.zeros(self.n, dtype=f"<U{width}")
            rows = np.fromiter(self.errors, dtype=np.int64, count=len(self.errors))
            err[rows] = list(self.errors.values())
            for col in out.values():
                col[rows] = np.nan if col.dtype.kind in "fc" else 0
            out["error"] = err
        return out


# ----------------------------------------------------------------------------------------
# writing


def write_columns(path: str, columns: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
    """Write the output columns to ``path`` in the format of its name, under a temporary name, then renamed."""
    fmt = file_format(path)
    if fmt is None:
        raise DifftapeError("usage", f"--output {path}: not a columnar file name (.npy, .npz, .parquet, .arrow)")
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        if fmt == "npy":
            _write_npy(tmp, columns)
        elif fmt == "npz":
            with open(tmp, "wb") as fh:
                np.savez(fh, **columns)
        else:
            _write_arrow(tmp, fmt, columns, meta)
        os.replace(tmp, path)
    except OSError as err:
        raise DifftapeError("io", f"cannot write {path}: {err.strerror or err}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_npy(path: str, columns: Mapping[str, np.ndarray]) -> None:
    """One structured array (a field per column), written block by block: no second copy of the results."""
    n = len(next(iter(columns.values())))
    dtype = np.dtype([(k, v.dtype, v.shape[1:]) for k, v in columns.items()])
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (n,)}
    rec = np.empty(min(n, WRITE_ROWS), dtype=dtype)
    with open(path, "wb") as fh:
        if len(repr(header)) > 65000:  # version 1.0 headers hold at most 65535 bytes (thousands of columns)
            np.lib.format.write_array_header_2_0(fh, header)
        else:
            np.lib.format.write_array_header_1_0(fh, header)
        for lo in range(0, n, WRITE_ROWS):
            hi = min(n, lo + WRITE_ROWS)
            part = rec[: hi - lo]
            for k, v in columns.items():
                part[k] = v[lo:hi]
            fh.write(part.data)


def _write_arrow(path: str, fmt: str, columns: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
    import json

    pa = _pyarrow(f"writing {fmt}")
    arrays, names = [], []
    for k, v in columns.items():
        if v.dtype.kind == "U":
            arrays.append(pa.array([s or None for s in v.tolist()], type=pa.string()))
        else:
            arr = pa.array(np.ascontiguousarray(v).reshape(-1))
            for size in reversed(v.shape[1:]):
                arr = pa.FixedSizeListArray.from_arrays(arr, size)
            arrays.append(arr)
        names.append(k)
    table = pa.Table.from_arrays(arrays, names=names).replace_schema_metadata({"difftape": json.dumps(dict(meta))})
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    else:
        import pyarrow.ipc as ipc

        with pa.OSFile(path, "wb") as sink, ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)


def check_output(path: str) -> None:
    """A clear error before any work when ``--output FILE`` cannot be written (a missing folder)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise DifftapeError("usage", f"--output {path}: the folder {folder} does not exist")
