"""Readable numbers (issue 14, item 7): text follows numpy's printing defaults (8 digits, aligned),
``--precision N`` changes the digits, ``--precision full`` shows round-trip digits; JSON stays exact."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from difftape.cli import cli
from difftape.io import render


def text(*args: str, code: int = 0) -> str:
    res = CliRunner().invoke(cli, list(args))
    assert res.exit_code == code, res.output
    return res.output


@pytest.fixture(autouse=True)
def _default_precision():
    yield
    render.set_precision(render.DEFAULT_PRECISION)


@pytest.mark.parametrize("value", [
    np.array([1 / 3, 2.0, -7.25]), np.array([[1e-9, 1.0], [12345.678901234, -0.5]]), np.linspace(0, 1, 7),
    np.array([np.nan, np.inf, 1.5]), np.array([1, 2, 3]), np.array([True, False]),
])
def test_arrays_print_as_numpy_prints_them_by_default(value):
    expected = np.array2string(value, max_line_width=render.LINE_WIDTH, separator=" ")
    assert render.format_array(value) == expected


@pytest.mark.parametrize(("value", "shown"), [
    (1 / 3, "0.33333333"), (12.0, "12.0"), (1e-20, "1e-20"), (2.5e300, "2.5e+300"), (-0.125, "-0.125"),
    (float("nan"), "nan"), (float("-inf"), "-inf"), (np.float32(0.1), "0.1"),
])
def test_scalars_are_numpys_digits_written_as_python_writes_them(value, shown):
    assert render.format_array(np.asarray(value)) == shown


def test_precision_n_and_full_on_the_command_line():
    assert text("eval", "x/3", "--at", "1.0").splitlines()[-1] == "0.33333333"
    assert text("eval", "x/3", "--at", "1.0", "--precision", "3").splitlines()[-1] == "0.333"
    assert text("eval", "x/3", "--at", "1.0", "--precision", "full").splitlines()[-1] == repr(1 / 3)
    full = text("grad", "sum(x**2/3)", "--at", "x=[1.0, 2.0]", "--precision", "full")
    assert "0.6666666666666666" in full and "1.3333333333333333" in full


def test_json_stays_exact_whatever_the_precision():
    out = json.loads(text("eval", "x/3", "--at", "1.0", "--json", "--precision", "2"))
    assert out["value"] == 1 / 3


@pytest.mark.parametrize("bad", ["-1", "18", "many", "3.5"])
def test_a_bad_precision_is_a_usage_error(bad):
    out = text("eval", "x", "--at", "1.0", "--precision", bad, code=2)
    assert "--precision" in out


def test_the_real_command():
    proc = subprocess.run([sys.executable, "-m", "difftape", "grad", "sin(x)", "--at", "x=[0.5, 1.5]"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "[0.87758256 0.0707372 ]" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "difftape", "grad", "sin(x)", "--at", "x=0.5", "--precision", "full"],
                          capture_output=True, text=True, timeout=120)
    assert repr(float(np.cos(0.5))) in proc.stdout
