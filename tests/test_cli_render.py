"""Rendering without the command line: strict JSON values and numpy-style text."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from difftape.io import render


def strict_loads(text: str):
    """json.loads that refuses the NaN/Infinity tokens Python's json accepts by default."""

    def refuse(token: str):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.array(8), 8),
        (np.int64(8), 8),
        (np.array([1, 2]), [1, 2]),
        (np.array(12.0), 12.0),
        (np.array([[1.0, 0.0], [1.0, 0.0]]), [[1.0, 0.0], [1.0, 0.0]]),
        (np.array([True, False]), [True, False]),
        (np.array([np.nan, np.inf, -np.inf, 1.5]), ["nan", "inf", "-inf", 1.5]),
        (float("nan"), "nan"),
        (np.zeros((2, 0)), [[], []]),
        ({"a": None, "b": (1, 2.5)}, {"a": None, "b": [1, 2.5]}),
    ],
)
def test_jsonable(value, expected):
    assert render.jsonable(value) == expected
    assert strict_loads(render.dumps(value)) == expected


def test_ints_stay_ints_and_floats_stay_floats():
    out = strict_loads(render.dumps({"i": np.array([1, 2]), "f": np.array([1.0, 2.0])}))
    assert all(type(v) is int for v in out["i"])
    assert all(type(v) is float for v in out["f"])
    assert render.dumps(np.array(1.0)) == "1.0"


def test_floats_round_trip_bit_for_bit():
    rng = np.random.default_rng(1)
    a = rng.standard_normal(50) * 10.0 ** rng.integers(-300, 300, 50)
    back = np.array(strict_loads(render.dumps(a)))
    assert back.tobytes() == a.tobytes()
    f32 = rng.standard_normal(20).astype(np.float32)
    back32 = np.array(strict_loads(render.dumps(f32))).astype(np.float32)
    assert back32.tobytes() == f32.tobytes()


def test_dumps_never_writes_nan_tokens():
    text = render.dumps({"v": np.array([[np.nan], [np.inf]], dtype=np.float32)})
    assert "NaN" not in text and "Infinity" not in text
    assert strict_loads(text) == {"v": [["nan"], ["inf"]]}


def test_format_array_scalars_like_python():
    assert render.format_array(np.array(12.0)) == "12.0"
    assert render.format_array(np.float64(0.1)) == "0.1"
    assert render.format_array(np.array(8)) == "8"
    assert render.format_array(np.float32(0.1)) == "0.1"
    assert render.format_array(np.array(np.nan)) == "nan"
    assert render.format_array(np.array(True)) == "True"


def test_format_array_full_precision():
    text = render.format_array(np.array([1 / 3, 2.0]), precision=None)
    assert "0.3333333333333333" in text
    assert render.format_array(np.array([[1.0, 0.0], [1.0, 0.0]])) == "[[1. 0.]\n [1. 0.]]"


def test_grad_text_aligns_labels_and_explains_nulls():
    res = SimpleNamespace(of="y", value=np.ones(2), grad={"x": np.ones(2), "abc": None}, summed=True)
    text = render.grad_text(res, {"abc": "abc is a const"})
    lines = text.splitlines()
    assert lines[0] == "of y      shape (2,)  float64"
    assert "sum(y)" in lines[2]
    assert lines[3] == "grad x    shape (2,)  float64"
    assert lines[5] == "grad abc  null  (abc is a const)"


def test_check_text_reports_method_and_mismatch():
    row = SimpleNamespace(tape=np.ones(2), numeric=np.ones(2), numeric_error=1e-12, analytic=np.zeros(2),
                          max_abs_err=1.0, max_rel_err=float("inf"), ok=False)
    res = SimpleNamespace(of="y", ok=False, method="central differences", inputs={"x": row})
    text = render.check_text(res, 1e-6, 1e-8)
    assert "method     central differences" in text.splitlines()
    assert "numeric_error" in text and "1e-12" in text
    assert "MISMATCH" in text and "analytic x" in text
    obj = strict_loads(render.dumps(render.check_json(res, 1e-6, 1e-8)))
    assert obj["inputs"]["x"]["max_rel_err"] == "inf"
    assert list(obj)[:3] == ["of", "ok", "inputs"]


def test_error_json_shape():
    assert render.error_json("syntax", "bad", 1, 3) == {
        "error": {"kind": "syntax", "message": "bad", "line": 1, "column": 3}
    }


def test_multi_line_target_names_print_on_one_line():
    text = render.eval_text("[1,\n 2]", np.array([1, 2]))
    assert text.splitlines() == ["of [1, 2]  shape (2,)  int64", "[1 2]"]


def test_a_very_long_target_is_named_short_in_text_and_whole_in_json():
    """A program of many terms named itself whole on the header line (half a megabyte at 100,000 terms)."""
    from click.testing import CliRunner

    from difftape.cli import cli
    from difftape.io.render import LABEL

    source = "+".join(["x"] * 300)
    text = CliRunner().invoke(cli, ["grad", source, "--at", "x=2"]).output
    head = text.splitlines()[0]
    assert len(head) < LABEL + 60 and "(599 characters)" in head and head.startswith("of x+x+x")
    assert text.splitlines()[1] == "600.0"
    out = CliRunner().invoke(cli, ["grad", source, "--at", "x=2", "--json"]).output
    assert json.loads(out)["of"] == source
