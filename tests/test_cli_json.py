"""The --json contract: one strict JSON object per run, with the documented keys, shapes and types."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from difftape.cli import cli


def strict_loads(text: str):
    """json.loads that refuses NaN/Infinity tokens."""

    def refuse(token: str):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def as_json(*args: str, code: int = 0, input: str | None = None) -> dict:
    """Run ``difftape CMD --json ARGS...``; stdout must be exactly one JSON object and one newline."""
    argv = [args[0], "--json", *args[1:]]
    result = CliRunner().invoke(cli, argv, input=input, prog_name="difftape")
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.output
    assert result.stdout.endswith("\n") and result.stdout.count("\n") == 1, result.stdout
    obj = strict_loads(result.stdout)
    assert isinstance(obj, dict)
    return obj


def shape_of(nested) -> tuple[int, ...]:
    return np.array(nested, dtype=object).shape if isinstance(nested, list) else ()


def test_eval_keys():
    obj = as_json("eval", "y = x*2; x = [[1,2,3],[4,5,6]]")
    assert list(obj)[:2] == ["of", "value"]
    assert obj == {"of": "y", "value": [[2, 4, 6], [8, 10, 12]], "shape": [2, 3], "dtype": "int64"}


def test_eval_booleans_are_json_booleans():
    obj = as_json("eval", "x > 1", "--at", "[0, 2]")
    assert obj["value"] == [False, True]
    assert all(type(v) is bool for v in obj["value"])


def test_grad_keys_and_shapes():
    obj = as_json("grad", "y = sum(W @ x); W = ones(2,3); x = [1.0, 2.0, 3.0]")
    assert list(obj)[:3] == ["of", "value", "grad"]
    assert obj["of"] == "y" and obj["value"] == 12.0
    assert shape_of(obj["grad"]["W"]) == (2, 3) and shape_of(obj["grad"]["x"]) == (3,)
    assert obj["grad"]["x"] == [2.0, 2.0, 2.0]
    assert obj["grad"]["W"] == [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]


def test_jacobian_blocks_have_value_shape_plus_input_shape():
    obj = as_json("jacobian", "y = W @ x; W = ones(2,3); x = [1.0, 2.0, 3.0]")
    assert list(obj)[:3] == ["of", "value", "jacobian"]
    assert shape_of(obj["value"]) == (2,)
    assert shape_of(obj["jacobian"]["x"]) == (2, 3)
    assert shape_of(obj["jacobian"]["W"]) == (2, 2, 3)


def test_hessian_blocks_have_input_shape_pairs():
    obj = as_json("hessian", "sum(x**2) * y", "--at", "x=[1.0, 2.0, 3.0]", "--at", "y=2.0")
    assert list(obj)[:3] == ["of", "value", "hessian"]
    assert obj["value"] == 28.0
    h = obj["hessian"]
    assert shape_of(h["x"]["x"]) == (3, 3) and shape_of(h["x"]["y"]) == (3,)
    assert shape_of(h["y"]["x"]) == (3,) and h["y"]["y"] == 0.0
    assert h["x"]["x"] == [[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]]


def test_check_keys():
    obj = as_json("check", "x**2", "--at", "[1.0, 2.0]", "--expect", "2*x")
    assert list(obj)[:3] == ["of", "ok", "inputs"]
    assert obj["ok"] is True
    row = obj["inputs"]["x"]
    assert list(row)[:2] == ["max_abs_err", "max_rel_err"]
    assert row["tape"] == [2.0, 4.0] and row["analytic"] == [2.0, 4.0]
    assert isinstance(row["numeric_error"], float) and isinstance(obj["method"], str)


def test_graph_json():
    obj = as_json("graph", "y = x*2", "--at", "1.0")
    assert obj["of"] == "y" and [n["op"] for n in obj["nodes"]] == ["input", "literal", "multiply"]
    assert "graph" not in obj and "grad" not in obj  # structured nodes, not the text table (issue 14)


def test_non_finite_values_are_strings():
    obj = as_json("eval", "log(x)", "--at", "[0.0, -1.0, 1.0]")
    assert obj["value"] == ["-inf", "nan", 0.0]
    obj = as_json("grad", "sqrt(x)", "--at", "0.0")
    assert obj["grad"]["x"] == "inf"


def test_floats_round_trip_exactly_through_json():
    src = "y = exp(x) / 3; x = randn(4)"
    x = np.array(as_json("eval", src, "--of", "x", "--seed", "3")["value"])
    obj = as_json("grad", src, "--seed", "3")
    assert np.array(obj["grad"]["x"]).tobytes() == (np.exp(x) / 3).tobytes()


def test_float32_values_read_back_exactly():
    obj = as_json("eval", "randn(5)", "--dtype", "float32")
    assert obj["dtype"] == "float32"
    back = np.array(obj["value"])
    assert back.astype(np.float32).astype(np.float64).tobytes() == back.tobytes()


def test_key_order_is_stable():
    a = CliRunner().invoke(cli, ["grad", "--json", "x*y", "--at", "x=1.0", "--at", "y=2.0"]).stdout
    b = CliRunner().invoke(cli, ["grad", "--json", "x*y", "--at", "y=2.0", "--at", "x=1.0"]).stdout
    assert a == b
    assert list(strict_loads(a)["grad"]) == ["x", "y"]  # order of first appearance in the source


@pytest.mark.parametrize(
    ("args", "kind"),
    [
        (["eval", "(1 + "], "syntax"),
        (["eval", "1 +* 2"], "syntax"),
        (["eval", "x", "--at", "x=[1,"], "syntax"),
        (["eval", "x"], None),  # an input without a value: the program's error
        (["eval", "x", "--of", "nope", "--at", "1"], None),
        (["hessian", "x", "--at", "[1.0, 2.0]"], "shape"),
        (["eval", "x", "--at", "1", "--at", "2"], "usage"),
        (["eval", "--what"], "usage"),
        (["eval"], "usage"),
        (["grad", "x", "--at", "1", "--wrt", ""], "usage"),
    ],
)
def test_errors_are_json_objects(args, kind):
    obj = as_json(*args, code=2)
    assert list(obj) == ["error"]
    err = obj["error"]
    assert list(err) == ["kind", "message", "line", "column"]
    assert isinstance(err["message"], str) and err["message"]
    assert err["line"] is None or isinstance(err["line"], int)
    assert err["column"] is None or isinstance(err["column"], int)
    if kind is not None:
        assert err["kind"] == kind


def test_syntax_error_json_positions():
    err = as_json("eval", "y = 1\nz = y +* 2", code=2)["error"]
    assert err["kind"] == "syntax" and err["line"] == 2 and err["column"] >= 7


def test_mismatch_is_still_one_object():
    obj = as_json("check", "x**2", "--at", "3.0", "--expect", "x=3*x", code=1)
    assert obj["ok"] is False and obj["inputs"]["x"]["ok"] is False


@pytest.mark.parametrize("library", ["msgspec", "stdlib"])
def test_large_arrays_are_written_in_bulk_with_the_same_text(monkeypatch, library):
    """dumps writes big arrays in bulk (a 25M-element Jacobian took ~19 s element by element): the text
    must be json.dumps's exactly, non-finite, tiny, huge, float32, int and bool values included."""
    import json

    import numpy as np

    from difftape import jsonlib
    from difftape.io import render

    if library == "stdlib":
        monkeypatch.setenv(jsonlib.ENV, "stdlib")
    jsonlib.reset()
    monkeypatch.setattr(render, "BULK", 1)
    rng = np.random.default_rng(5)
    pool = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-5, 1e16, 1e300, 5e-324, 1e-4, 9.999e-5, 1e15,
                     123456789012345678.0, -1e-7, 0.1, 1 / 3])
    try:
        for _ in range(60):
            shape = tuple(int(d) for d in rng.integers(1, 6, size=rng.integers(1, 4)))
            n = int(np.prod(shape))
            b = np.where(rng.random(n) < 0.5, rng.choice(pool, n),
                         rng.standard_normal(n) * 10.0 ** rng.integers(-8, 20, n)).reshape(shape)
            with np.errstate(all="ignore"):
                arrays = [b, b.astype(np.float32), rng.integers(-10**12, 10**12, size=shape), b > 0]
            for arr in arrays:
                payload = {"value": arr, "grad": {"x": arr, "y": None}, "of": "x"}
                assert render.dumps(payload) == json.dumps(render.jsonable(payload), allow_nan=False)
                assert render.dumps(arr) == json.dumps(render.jsonable(arr), allow_nan=False)
    finally:
        jsonlib.reset()
