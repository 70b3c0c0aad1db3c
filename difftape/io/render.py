"""Turning results into text for people and strict JSON for programs.

Kept apart from the command line so that both renderings can be tested without click,
and so that one place decides how numbers look: the text follows numpy's printing defaults
(8 digits, aligned; :func:`set_precision` changes it, and ``None`` shows every float with as
many digits as it takes to identify it, numpy's ``floatmode="unique"``), and the JSON writes
floats with Python's ``repr`` so that they read back bit for bit. JSON has no NaN or
Infinity; those become the strings ``"nan"``, ``"inf"`` and ``"-inf"``.

Results are duck-typed on the contract of ``difftape/program.py`` (GradResult, ...), so
this module never imports it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

#: Widest line numpy may print an array on (fixed, so that output does not depend on the terminal).
LINE_WIDTH = 100
#: numpy's default precision: the digits the text shows (``--precision N``; None: round-trip digits).
DEFAULT_PRECISION = 8
_precision: list[int | None] = [DEFAULT_PRECISION]


def set_precision(precision: int | None) -> None:
    """The digits text output shows from now on: N (numpy's ``precision``), or None for every digit
    it takes to read the float back exactly (``--precision full``). JSON is always exact."""
    _precision[0] = precision


# ----------------------------------------------------------------------------------------
# JSON


def jsonable(x: Any) -> Any:
    """``x`` as plain JSON-ready Python: nested lists, ints kept ints, non-finite floats as strings."""
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, (np.ndarray, np.generic)):
        return _array_jsonable(np.asarray(x))
    if isinstance(x, int):
        return x
    if isinstance(x, float):
        return _float(x)
    if isinstance(x, complex):
        return str(x)
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "__array__"):  # a difftape Tensor
        return _array_jsonable(np.asarray(x))
    raise TypeError(f"cannot write a {type(x).__name__} as JSON")


def _float(v: float) -> float | str:
    if math.isfinite(v):
        return v
    if math.isnan(v):
        return "nan"
    return "inf" if v > 0 else "-inf"


def _array_jsonable(a: np.ndarray) -> Any:
    kind = a.dtype.kind
    if kind in "biu":
        return a.tolist()  # bool -> true/false, ints -> exact Python ints
    if kind == "f":
        out = a.tolist()  # float32 widens exactly to a Python float
        if np.isfinite(a).all():
            return out
        return _map_nested(out, _float)
    if kind == "c":
        return _map_nested(a.tolist(), str)
    return _map_nested(a.tolist(), str)


def _map_nested(x: Any, fn: Any) -> Any:
    if isinstance(x, list):
        return [_map_nested(v, fn) for v in x]
    return fn(x)


#: Arrays of numbers from this size are written in bulk by :func:`_array_text` (same text, ~10x faster).
BULK = 4096


def dumps(obj: Any) -> str:
    """One line of strict JSON (no NaN/Infinity tokens; floats written by ``repr``, which round-trips)."""
    import json  # (here: a command without --json never loads it)

    if isinstance(obj, Mapping) and _holds_bulk(obj):  # a Jacobian of millions of numbers: not element by element
        return "{" + ", ".join(f"{json.dumps(str(k))}: {dumps(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, np.ndarray) and obj.size >= BULK and obj.dtype.kind in "biuf":
        return _array_text(obj)
    return json.dumps(jsonable(obj), allow_nan=False)  # ASCII: valid UTF-8 whatever the arguments held


def _holds_bulk(obj: Any) -> bool:
    if isinstance(obj, Mapping):
        return any(_holds_bulk(v) for v in obj.values())
    if not isinstance(obj, np.ndarray) and hasattr(obj, "__array__") and not isinstance(obj, np.generic):
        obj = np.asarray(obj)  # a difftape Tensor
    return isinstance(obj, np.ndarray) and obj.size >= BULK and obj.dtype.kind in "biuf"


def _array_text(a: np.ndarray) -> str:
    """``json.dumps(jsonable(a))`` of a large array of numbers, written in bulk.

    With msgspec (:mod:`difftape.jsonlib`) one ``encode`` writes the nested lists; the floats it writes
    otherwise than ``repr`` (below 1e-4, from 1e16, non-finite: see :func:`json_numbers`) go in as
    numbered strings (the only strings there) and their ``repr`` text replaces them; ``", "`` is
    ``json.dumps``'s separator. Without msgspec, ``json.dumps``.
    """
    import json

    from difftape import jsonlib

    fast = jsonlib.fast()
    if fast is None:
        return json.dumps(jsonable(a), allow_nan=False)
    if a.dtype.kind != "f":
        return fast[1](a.tolist()).decode("ascii").replace(",", ", ")
    a = a.astype(np.float64, copy=False)
    mag = np.abs(a)
    odd = ~((mag < 1e16) & ((mag >= 1e-4) | (a == 0)))
    if not odd.any():
        return fast[1](a.tolist()).decode("ascii").replace(",", ", ")
    where = np.flatnonzero(odd)
    texts = [_float_text(v) for v in a.reshape(-1)[where].tolist()]
    cells = a.astype(object)
    cells.reshape(-1)[where] = [str(k) for k in range(len(where))]
    text = fast[1](cells.tolist()).decode("ascii").replace(",", ", ")
    import re

    return re.sub(r'"(\d+)"', lambda m: texts[int(m.group(1))], text)


_BOOL_TEXT = {True: "true", False: "false"}


def json_column(a: Any) -> list[str]:
    """``[dumps(a[0]), dumps(a[1]), ...]`` in bulk: the JSON text of each row of a batch (batch axis first).

    The same text as :func:`dumps` writes for each row alone (floats by ``repr``, non-finite ones as
    strings), without its per-value Python work: 100,000 rows are a few ``map`` calls.
    """
    a = np.asarray(a)
    if a.ndim == 0:
        return [dumps(row) for row in a]
    text = json_rows(["", "\n"], [a])
    return text.split("\n")[:-1] if len(a) else []


def json_rows(pieces: list[str], arrays: list[Any]) -> str:
    """The text of every row: ``pieces[0] + dumps(arrays[0][i]) + pieces[1] + ... + pieces[-1]``, rows joined.

    ``pieces`` has one more entry than ``arrays`` (the JSON of one output line around its holes); each
    array has the batch axis first, all the same length. An array of numbers is written element by element
    in bulk (:func:`json_numbers`), its brackets and ``", "`` separators spliced in from its row shape, and
    everything is put together by one ``join``: the text is :func:`dumps`'s without a Python call per row.
    Others go row by row through :func:`dumps`.
    """
    seps: list[str] = [pieces[0]]
    columns: list[list[str] | None] = []  # None: the hole's text is in ``joined`` (numbers written together)
    numbers: list[np.ndarray] = []  # (n, elements of a row) per hole of numbers
    for arr, piece in zip(arrays, pieces[1:]):
        a = np.asarray(arr)
        row_shape = a.shape[1:]
        size = int(np.prod(row_shape, dtype=np.int64))
        if a.dtype.kind in "biuf" and size > 0:
            numbers.append(a.reshape(len(a), size))
            inner = _row_separators(row_shape)
            seps[-1] += inner[0]
            columns.extend([None] * size)
            seps.extend(inner[1:])
        else:
            columns.append([dumps(row) for row in a])
            seps.append("")
        seps[-1] += piece
    if not columns:
        raise ValueError("json_rows needs at least one array")
    n = len(arrays[0])
    if n == 0:
        return ""
    holes = len(columns)
    width = 2 * holes
    parts: list[str] = [""] * (n * width)
    kinds = {m.dtype.kind for m in numbers}
    if len(numbers) == holes and len(kinds) == 1 and kinds != {"u"}:  # one kind of numbers: written at once
        # (floats widen to float64 exactly, ints to int64, as each alone; uint64 beside int64 would not)
        flat = json_numbers((numbers[0] if len(numbers) == 1 else np.hstack(numbers)).reshape(-1))
        parts[0::2] = flat
    else:
        k = 0
        for m in numbers:
            while columns[k] is not None:
                k += 1
            flat = json_numbers(m.reshape(-1))
            for j in range(m.shape[1]):
                columns[k + j] = flat[j :: m.shape[1]]
            k += m.shape[1]
        for k, col in enumerate(columns):
            parts[2 * k :: width] = col  # type: ignore[assignment]
    for k in range(holes - 1):
        parts[2 * k + 1 :: width] = [seps[k + 1]] * n
    parts[width - 1 :: width] = [seps[-1] + seps[0]] * n  # the end of one row and the start of the next
    parts[-1] = seps[-1]
    return seps[0] + "".join(parts)


def _row_separators(shape: tuple[int, ...]) -> list[str]:
    """The text between the elements of one row of ``shape`` as ``json.dumps`` writes nested lists:
    ``["[", ", ", "]"]`` for (2,); ``["[[", ", ", "], [", ", ", "]]"]`` for (2, 2); ``["", ""]`` for ()."""
    size = int(np.prod(shape, dtype=np.int64))
    seps = [""] * (size + 1)
    seps[0] = "[" * len(shape)
    seps[size] = "]" * len(shape)
    strides = [int(np.prod(shape[d + 1 :], dtype=np.int64)) for d in range(len(shape))]
    for k in range(1, size):
        depth = sum(1 for st in strides if k % st == 0)  # the axes whose index rolls over at element k
        seps[k] = "]" * (depth - 1) + ", " + "[" * (depth - 1)
    return seps


def json_numbers(a: np.ndarray) -> list[str]:
    """The JSON text of each element of a 1-D array of numbers, as :func:`dumps` writes it in an array:
    ints and bools as Python does, floats by ``repr`` (float32 widened first), non-finite floats as the
    strings ``"nan"``, ``"inf"``, ``"-inf"``.

    With msgspec (:mod:`difftape.jsonlib`) one ``encode`` of the whole array writes them, split at its
    commas; the floats whose notation it writes otherwise than ``repr`` (below 1e-4, from 1e16, non-finite)
    are then written by ``repr``. Else ``map(float.__repr__)``.
    """
    from difftape import jsonlib

    kind = a.dtype.kind
    if kind == "f":
        a = a.astype(np.float64, copy=False)  # float32 widens exactly, as tolist() does
    values = a.tolist()
    fast = jsonlib.fast()
    if fast is not None and values:
        out = fast[1](values).decode("ascii")[1:-1].split(",")
        if kind == "f":
            mag = np.abs(a)
            odd = ~((mag < 1e16) & ((mag >= 1e-4) | (a == 0)))  # non-finite, tiny or huge: repr's notation
            if odd.any():
                for i in np.flatnonzero(odd).tolist():
                    out[i] = _float_text(values[i])
        return out
    if kind == "f":
        out = list(map(float.__repr__, values))
        bad = ~np.isfinite(a)
        if bad.any():
            for i in np.flatnonzero(bad).tolist():
                out[i] = _float_text(values[i])
        return out
    if kind == "b":
        return list(map(_BOOL_TEXT.__getitem__, values))
    return list(map(int.__repr__, values))


def _float_text(v: float) -> str:
    """One float as :func:`dumps` writes it inside an array."""
    if math.isfinite(v):
        return repr(v)
    return '"nan"' if math.isnan(v) else '"inf"' if v > 0 else '"-inf"'


def error_json(kind: str, message: str, line: int | None = None, column: int | None = None) -> dict[str, Any]:
    """The ``{"error": {...}}`` object that ``--json`` prints on stdout when a command fails."""
    return {"error": {"kind": kind, "message": message, "line": line, "column": column}}


def _meta(a: Any) -> dict[str, Any]:
    arr = np.asarray(a)
    return {"shape": list(arr.shape), "dtype": str(arr.dtype)}


def eval_json(of: str, value: Any) -> dict[str, Any]:
    """``{"of", "value", "shape", "dtype"}``."""
    return {"of": of, "value": jsonable(value), **_meta(value)}


def grad_json(res: Any) -> dict[str, Any]:
    """``{"of", "value", "grad": {input: array or null}, "shape", "dtype", "summed"}``."""
    grads = {name: (None if g is None else jsonable(g)) for name, g in res.grad.items()}
    return {"of": res.of, "value": jsonable(res.value), "grad": grads, **_meta(res.value), "summed": bool(res.summed)}


def jacobian_json(res: Any) -> dict[str, Any]:
    """``{"of", "value", "jacobian": {input: array}, "shape", "dtype"}``; blocks are value.shape + input.shape."""
    jac = {name: None if j is None else jsonable(j) for name, j in res.jacobian.items()}
    return {"of": res.of, "value": jsonable(res.value), "jacobian": jac, **_meta(res.value)}


def hessian_json(res: Any) -> dict[str, Any]:
    """``{"of", "value", "hessian": {input: {input2: array}}, "dtype"}``."""
    hess = {a: {b: None if block is None else jsonable(block) for b, block in row.items()}
            for a, row in res.hessian.items()}
    return {"of": res.of, "value": jsonable(res.value), "hessian": hess, **_meta(res.value)}


def jvp_json(res: Any) -> dict[str, Any]:
    """``{"of", "value", "jvp", "shape", "dtype"}``: J v has the target's shape."""
    return {"of": res.of, "value": jsonable(res.value), "jvp": jsonable(res.jvp), **_meta(res.value)}


def vjp_json(res: Any) -> dict[str, Any]:
    """``{"of", "value", "vjp": {input: array or null}, "shape", "dtype"}``."""
    vjps = {name: None if g is None else jsonable(g) for name, g in res.vjp.items()}
    return {"of": res.of, "value": jsonable(res.value), "vjp": vjps, **_meta(res.value)}


def hvp_json(res: Any) -> dict[str, Any]:
    """``{"of", "value", "hvp": {input: array}, "shape", "dtype"}``."""
    return {"of": res.of, "value": jsonable(res.value), "hvp": {n: jsonable(h) for n, h in res.hvp.items()},
            **_meta(res.value)}


def check_json(res: Any, rtol: float, atol: float) -> dict[str, Any]:
    """``{"of", "ok", "inputs": {input: {"max_abs_err", "max_rel_err", ...}}, "method", "rtol", "atol"}``."""
    inputs = {}
    for name, row in res.inputs.items():
        inputs[name] = {
            "max_abs_err": jsonable(float(row.max_abs_err)),
            "max_rel_err": jsonable(float(row.max_rel_err)),
            "ok": bool(row.ok),
            "numeric_error": jsonable(float(row.numeric_error)),
            "tape": None if row.tape is None else jsonable(row.tape),
            "numeric": None if row.numeric is None else jsonable(row.numeric),
            "analytic": None if row.analytic is None else jsonable(row.analytic),
            "analytic_expr": getattr(row, "analytic_expr", None),
            "analytic_source": getattr(row, "analytic_source", "none"),
            "mode": getattr(row, "mode", "full"),
        }
        forward = getattr(row, "forward", None)
        if forward is not None:
            inputs[name]["forward"] = jsonable(forward)
    return {"of": res.of, "ok": bool(res.ok), "inputs": inputs, "method": res.method,
            "rtol": jsonable(float(rtol)), "atol": jsonable(float(atol)),
            "mode": getattr(res, "mode", "full"), "order": int(getattr(res, "order", 1))}


# ----------------------------------------------------------------------------------------
# text

#: The longest target text shows whole; JSON's "of" is always whole.
LABEL = 100


def short(of: str) -> str:
    """The target as text output names it: whole up to LABEL characters, else its start and its size
    (a program of 100,000 terms would otherwise print a header line of half a megabyte)."""
    if len(of) <= LABEL:
        return of
    return f"{of[:LABEL - 20].rstrip()} ... ({len(of):,} characters)"


def format_array(a: Any, precision: int | None | str = "current") -> str:
    """numpy-style text: floats to ``precision`` digits (numpy's printing rules; default: the one
    :func:`set_precision` set), or None for the shortest round-trip digits.

    Scalars print as Python would (``12.0``, ``8``, ``nan``, ``0.87758256``); arrays as numpy does.
    """
    digits = _precision[0] if precision == "current" else precision
    arr = np.asarray(a)
    if arr.ndim == 0:
        v = arr.item()
        if arr.dtype.kind == "f":
            if digits is None or not math.isfinite(v):
                # str() of a numpy float is its shortest round-trip repr in its own precision.
                return str(arr.dtype.type(v))
            return _scalar_text(np.array2string(arr.reshape(1), precision=int(digits))[1:-1].strip())
        return str(v)
    if digits is None:
        return np.array2string(arr, floatmode="unique", max_line_width=LINE_WIDTH, separator=" ")
    return np.array2string(arr, precision=int(digits), max_line_width=LINE_WIDTH, separator=" ")


def _scalar_text(text: str) -> str:
    """numpy's ``12.`` and ``1.e-20`` for one number, as Python writes them: ``12.0``, ``1e-20``."""
    if text.endswith("."):
        return text + "0"
    return text.replace(".e", "e")


def describe(a: Any) -> str:
    """``shape (2, 2)  float64``."""
    arr = np.asarray(a)
    return f"shape {tuple(arr.shape)}  {arr.dtype}"


class _Text:
    """Builds output as (label, rest) headers and raw lines; labels are padded to one width on render."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str] | str] = []

    def head(self, label: str, rest: str) -> None:
        # a target named by its source text may span lines: keep one header on one line
        self.items.append((" ".join(label.split()), " ".join(rest.split()) if "\n" in rest else rest))

    def line(self, text: str) -> None:
        self.items.append(text)

    def array(self, label: str, a: Any) -> None:
        self.head(label, describe(a))
        self.line(format_array(a))

    def render(self) -> str:
        width = max((len(i[0]) for i in self.items if isinstance(i, tuple)), default=0)
        out = [f"{i[0].ljust(width)}  {i[1]}".rstrip() if isinstance(i, tuple) else i for i in self.items]
        return "\n".join(out)


def eval_text(of: str, value: Any) -> str:
    """``of y  shape ()  int64`` and the value."""
    t = _Text()
    t.array(f"of {of}", value)
    return t.render()


def grad_text(res: Any, why_null: Mapping[str, str] | None = None) -> str:
    """The value, a note when the target was summed, then each gradient (or why it is null)."""
    why_null = why_null or {}
    t = _Text()
    t.array(f"of {short(res.of)}", res.value)
    if res.summed:
        t.line(f"note: {short(res.of)} is not a scalar (shape {tuple(np.shape(res.value))}); "
               f"the gradients are of sum({short(res.of)})")
    for name, g in res.grad.items():
        if g is None:
            t.head(f"grad {name}", "null" + (f"  ({why_null[name]})" if name in why_null else ""))
        else:
            t.array(f"grad {name}", g)
    return t.render()


def directional_text(res: Any, key: str) -> str:
    """``jvp``/``vjp``/``hvp``: the value, then the directional derivative(s)."""
    t = _Text()
    t.array(f"of {short(res.of)}", res.value)
    found = getattr(res, key)
    if key == "jvp":
        t.array("jvp", found)
    else:
        for name, g in found.items():
            if g is None:
                t.head(f"{key} {name}", f"null  ({short(res.of)} does not depend on {name})")
            else:
                t.array(f"{key} {name}", g)
    return t.render()


def jacobian_text(res: Any) -> str:
    """The value, then each Jacobian block (shape value.shape + input.shape)."""
    t = _Text()
    t.array(f"of {short(res.of)}", res.value)
    for name, j in res.jacobian.items():
        if j is None:
            t.head(f"jacobian {name}", f"null  ({short(res.of)} does not depend on {name})")
        else:
            t.array(f"jacobian {name}", j)
    return t.render()


def hessian_text(res: Any) -> str:
    """The value, then each Hessian block d2/(da db) (shape a.shape + b.shape)."""
    t = _Text()
    t.array(f"of {short(res.of)}", res.value)
    for a, row in res.hessian.items():
        for b, block in row.items():
            if block is None:
                t.head(f"hessian {a} {b}", "null")
            else:
                t.array(f"hessian {a} {b}", block)
    return t.render()


def _g(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else str(x)


def check_text(res: Any, rtol: float, atol: float) -> str:
    """A table of the worst differences per input, and the arrays of each input that failed."""
    head = _Text()
    head.head("check", short(res.of))
    modes = sorted({getattr(r, "mode", "full") for r in res.inputs.values()})
    if modes != ["full"]:  # (every element is the default for small inputs: no line for it)
        order = int(getattr(res, "order", 1))
        head.head("mode", ", ".join(modes) + (" (second derivatives)" if order == 2 else ""))
    head.head("method", res.method)
    head.head("tolerance", f"rtol {_g(rtol)}  atol {_g(atol)}")
    lines = [head.render()] + _check_table(res)
    side = [[name] + [f"{label} {format_array(v)}" for label, v in
                      (("tape", row.tape), ("analytic", row.analytic), ("numeric", row.numeric)) if v is not None]
            for name, row in res.inputs.items() if row.ok and row.tape is not None and np.size(row.tape) == 1]
    if side:
        widths = [max(len(r[i]) for r in side if i < len(r)) for i in range(max(len(r) for r in side))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in side]
    for name, row in res.inputs.items():
        if row.ok:
            continue
        t = _Text()
        # directional modes compare one number per random direction v: say so in the labels
        along = " . v" if getattr(row, "forward", None) is not None else ""
        if row.tape is not None:
            t.array(f"tape {name}{along}", row.tape)
        if getattr(row, "forward", None) is not None:
            t.array(f"forward {name}{along}", row.forward)
        if row.numeric is not None:
            t.array(f"numeric {name}{along}", row.numeric)
        if row.analytic is not None:
            t.array(f"analytic {name}{along}", row.analytic)
        lines.append(t.render())
    if res.ok:
        lines.append("ok: every gradient agrees within the tolerance")
    else:
        bad = ", ".join(n for n, r in res.inputs.items() if not r.ok) or "(no input)"
        lines.append(f"MISMATCH: {bad} beyond the tolerance")
    return "\n".join(lines)


def _check_table(res: Any) -> list[str]:
    """The lines of the table of a check: per input its worst differences, the analytic reference, the verdict."""
    header = ["input", "max_abs_err", "max_rel_err", "numeric_error", "analytic", "result"]
    rows = [header]
    for name, row in res.inputs.items():
        rows.append([
            name,
            _g(float(row.max_abs_err)),
            _g(float(row.max_rel_err)),
            _g(float(row.numeric_error)),
            _analytic_label(row),
            "ok" if row.ok else "MISMATCH",
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def check_points_json(summary: Any) -> dict[str, Any]:
    """``check --points N --json``: ``{"of", "ok", "points", "checked", "mismatched", "failed", "method", "rtol",
    "atol", "mode", "order", "seed", "drawn", "mismatches", "worst", "first_error"}``."""
    st = summary.stats
    worst = None
    if st.worst is not None:
        _, number, res = st.worst
        worst = {"point": number, "at": jsonable(summary.worst_at), "check": check_json(res, res.rtol, res.atol)}
    first_error = None
    if st.first_error is not None:
        number, err = st.first_error
        first_error = {"point": number, "kind": err.kind, "message": err.message}
    return {"of": summary.of, "ok": st.mismatched == 0 and st.failed == 0, "points": summary.points,
            "checked": st.checked, "mismatched": st.mismatched, "failed": st.failed,
            "method": "; ".join(sorted(st.methods)) or "none", "rtol": jsonable(float(summary.rtol)),
            "atol": jsonable(float(summary.atol)), "mode": ", ".join(sorted(st.modes)) or "none",
            "order": int(summary.order), "seed": int(summary.seed),
            "drawn": {n: list(s) for n, s in summary.shapes.items()}, "mismatches": list(st.mismatches),
            "worst": worst, "first_error": first_error}


def check_points_text(summary: Any) -> str:
    """``check --points N``: how many points, how many mismatched, the worst point and its differences."""
    st = summary.stats
    head = _Text()
    head.head("check", short(summary.of))
    drawn = ", ".join(f"{n} ~ randn({', '.join(map(str, s))})" for n, s in summary.shapes.items())
    head.head("points", f"{summary.points:,} drawn with --seed {summary.seed}: {drawn}")
    modes = sorted(st.modes)
    if modes and modes != ["full"]:
        head.head("mode", ", ".join(modes) + (" (second derivatives)" if summary.order == 2 else ""))
    head.head("method", "; ".join(sorted(st.methods)) or "none")
    head.head("tolerance", f"rtol {_g(summary.rtol)}  atol {_g(summary.atol)}")
    ok = st.checked - st.mismatched
    head.head("checked", f"{st.checked:,} of {summary.points:,} points: {ok:,} ok, {st.mismatched:,} MISMATCH")
    if st.failed:
        number, err = st.first_error
        head.head("failed", f"{st.failed:,} points (the first, point {number:,}: error[{err.kind}]: {err.message})")
    table: list[str] = []
    if st.worst is not None:
        _, number, res = st.worst
        at = "  ".join(f"{n}={' '.join(format_array(v).split())}" for n, v in (summary.worst_at or {}).items())
        head.head("worst", f"point {number:,}  {at}".rstrip())
        table = _check_table(res)
    lines = [head.render()] + table
    if st.mismatched:
        shown = ", ".join(f"{k:,}" for k in st.mismatches[:10]) + (", ..." if st.mismatched > 10 else "")
        lines.append(f"MISMATCH at {st.mismatched:,} of {summary.points:,} points: {shown}")
    elif st.failed:
        lines.append(f"ok at the {st.checked:,} points checked; {st.failed:,} of {summary.points:,} could not be "
                     "checked")
    else:
        lines.append(f"ok: every gradient agrees within the tolerance at all {summary.points:,} points")
    return "\n".join(lines)


def _analytic_label(row: Any) -> str:
    """The analytic reference of a check row: its expression and where it came from."""
    source = getattr(row, "analytic_source", "none")
    if row.analytic is None:
        return "none"
    expr = getattr(row, "analytic_expr", None) or "yes"
    return f"{expr} ({'derived' if source == 'diff' else '--expect'})"


def _diff_items(res: Any) -> list[tuple[tuple[str, ...], Any]]:
    out = []
    for k, v in res.printed.items():
        if isinstance(v, dict):
            out.extend(((k, k2), t) for k2, t in v.items())
        else:
            out.append(((k,), v))
    return out


def graph_json(of: str, graph: Any, first: int | None = None) -> dict[str, Any]:
    """``{"of", "target", "nodes": [...]}`` and, for a graph with its backward pass (``first`` forward
    nodes, then the backward ones), ``"grad": [...]``. Each node is ``{"id", "op", "label", "inputs",
    "shape", "dtype", "weak", "span": {"line", "column", "end_line", "end_column"} or null, "binds"}``."""
    rows = [_graph_node(graph, n) for n in graph.nodes]
    out: dict[str, Any] = {"of": of, "target": int(graph.target)}
    if first is None:
        out["nodes"] = rows
    else:
        out["nodes"], out["grad"] = rows[:first], rows[first:]
    return out


def _graph_node(graph: Any, node: Any) -> dict[str, Any]:
    span = node.span
    dtype = node.dtype
    weak = isinstance(dtype, type)
    return {
        "id": int(node.id),
        "op": node.op,
        "label": graph.node_label(node),
        "inputs": [int(i) for i in node.inputs],
        "shape": None if node.shape is None else [int(d) for d in node.shape],
        "dtype": None if dtype is None else (dtype.__name__ if weak else str(np.dtype(dtype))),
        "weak": weak,
        "span": None if span is None else {"line": span.line, "column": span.column, "end_line": span.end_line,
                                           "end_column": span.end_column},
        "binds": node.name,
    }


def diff_json(res: Any, order: int = 1) -> dict[str, Any]:
    """``{"of": NAME, "diff": {input: "EXPR"}, "order": N}``; order 2 nests ``{a: {b: "EXPR"}}``.

    With a point, ``"value"`` (the same structure, numbers) follows ``"diff"``; side notes, when
    there are any, are ``"notes"``.
    """
    out: dict[str, Any] = {"of": res.of, "diff": dict(getattr(res, "printed", None) or res.diff)}
    values = getattr(res, "values", None)
    if values is not None:
        out["value"] = _map_nested(values, jsonable)
    out["order"] = int(order)
    notes = getattr(res, "notes", None)
    if notes:
        out["notes"] = list(notes)
    return out


def diff_text(res: Any, order: int = 1) -> str:
    """One derivative a line, aligned (``d/dx  3*x**2``), each followed by its value when there is a point,
    then the side notes."""
    from difftape.transforms.symbolic.derive import head  # (only diff prints these; it has derive loaded)

    items = _diff_items(res) if getattr(res, "printed", None) is not None else [((k,), v) for k, v in res.diff.items()]
    heads = {key: head(key, order) for key, _ in items}
    width = max((len(h) for h in heads.values()), default=0)
    values = getattr(res, "values", None)
    lines = [f"of {short(res.of)}"]
    for key, expr in items:
        lines.append(f"{heads[key].ljust(width)}  {expr}")
        if values is not None:
            v = values[key[0]] if len(key) == 1 else values[key[0]][key[1]]
            text = format_array(v).splitlines()
            pad = " " * (width + 2)
            lines.append(f"{pad}= {text[0]}")
            lines.extend(f"{pad}  {line}" for line in text[1:])
    if not items:
        lines.append("(no variables to differentiate)")
    lines.extend(f"note: {n}" for n in getattr(res, "notes", None) or [])
    return "\n".join(lines)
