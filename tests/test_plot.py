"""difftape plot and check --plot: the sweep, its gaps, the terminal plot, CSV/JSON, and real pictures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from difftape.answers.plot import breaks, limits, parse_range, sweep
from difftape.cli import cli
from difftape.errors import DifftapeError
from difftape.io import plot_image
from difftape.io.plot_text import Canvas, _draw, nice_ticks, render

ROOT = Path(__file__).resolve().parents[1]
BRAILLE = {chr(c) for c in range(0x2800, 0x2900)}


def run(*args: str, code: int | None = 0, env: dict | None = None):
    result = CliRunner().invoke(cli, list(args), env=env, prog_name="difftape")
    assert "Traceback" not in result.output, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exc_info
    if code is not None:
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    return result


def _subprocess(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "COLUMNS": "72", "LINES": "30"}
    return subprocess.run([sys.executable, *args], capture_output=True, env=env, cwd=ROOT, timeout=120)


# ----------------------------------------------------------------------------------------
# the sweep


def test_values_and_derivatives_are_exact():
    sw = sweep("sin(x) * exp(-x/3)", name="x", lo=-3, hi=3, points=1000, order=2)
    x = np.linspace(-3, 3, 1000)
    f = np.sin(x) * np.exp(-x / 3)
    df = np.exp(-x / 3) * (np.cos(x) - np.sin(x) / 3)
    d2f = np.exp(-x / 3) * (-np.sin(x) - 2 * np.cos(x) / 3 + np.sin(x) / 9)
    np.testing.assert_allclose(sw.x, x, rtol=0, atol=0)
    for got, want in zip(sw.curves, (f, df, d2f)):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)
    assert sw.table_columns() == ["x", "f", "df", "d2f"] and sw.labels() == ["f", "f'", "f''"]
    assert not any(g.any() for g in sw.gaps)


def test_other_inputs_fixed_and_variable_bindings_swept():
    sw = sweep("a * x**2 + y", name="x", lo=0, hi=1, points=11, at={"a": np.float64(3.0), "y": np.float64(1.0)})
    np.testing.assert_allclose(sw.curves[1], 6 * sw.x, atol=1e-14)
    sw = sweep("w**3; w = 2.0", name="w", lo=-1, hi=1, points=5)
    np.testing.assert_allclose(sw.curves[0], sw.x**3)
    np.testing.assert_allclose(sw.curves[1], 3 * sw.x**2)
    sw = sweep("5.0 + 0*x", name="x", lo=-1, hi=1, points=4)  # constant: derivative 0
    assert sw.curves[1].tolist() == [0.0] * 4
    sw = sweep("sum(x * v); v = [1.0, 2.0]", name="x", lo=0, hi=1, points=3)
    np.testing.assert_allclose(sw.curves[1], 3.0)


def test_the_name_may_be_left_out_when_one_input_is_free():
    sw = sweep("x * y", name=None, lo=0, hi=1, points=3, at={"y": np.float64(2.0)})
    assert sw.name == "x"
    with pytest.raises(DifftapeError, match="exactly one input"):
        sweep("x * y", name=None, lo=0, hi=1)


@pytest.mark.parametrize("source, name, message", [
    ("x * v; v = [1.0, 2.0]", "x", "scalar target"),
    ("y = x**2; y + 1", "y", "computed from other names"),
    ("x**2", "z", "no input or variable named 'z'"),
    ("x**2 + z", "x", "no value for input 'z'"),
])
def test_sweep_errors(source, name, message):
    with pytest.raises(DifftapeError, match=message):
        sweep(source, name=name, lo=0, hi=1, points=5)


def test_points_and_order_are_checked():
    with pytest.raises(DifftapeError, match="points"):
        sweep("x", name="x", lo=0, hi=1, points=1)
    with pytest.raises(DifftapeError, match="order"):
        sweep("x", name="x", lo=0, hi=1, order=3)


def test_parse_range():
    assert parse_range("x=-3:3") == ("x", -3.0, 3.0)
    name, lo, hi = parse_range("t=-pi:2*pi")
    assert name == "t" and lo == pytest.approx(-np.pi) and hi == pytest.approx(2 * np.pi)
    assert parse_range("-1:1") == (None, -1.0, 1.0)
    assert parse_range("x=max([1, 2]):3")[1] == 2.0
    for bad in ("x=3:1", "x=0", "x=:1", "x=0:inf", "x=[1,2]:3", "x=0:y"):
        with pytest.raises(DifftapeError):
            parse_range(bad)


def test_a_point_that_fails_is_a_gap_and_the_others_are_answered():
    sw = sweep("sum(inv([[x, 1.0], [1.0, 1.0]]))", name="x", lo=-2, hi=4, points=7)
    assert sw.failed == 1 and "singular" in sw.error.lower()
    assert np.isnan(sw.curves[0][3]) and np.isnan(sw.curves[1][3])  # x = 1
    x = np.delete(sw.x, 3)
    np.testing.assert_allclose(np.delete(sw.curves[0], 3), (x - 2 + 1) / (x - 1) - 0 * x, rtol=1e-12)
    assert sw.gaps[0][2] and sw.gaps[0][3]


# ----------------------------------------------------------------------------------------
# gaps


def test_jumps_poles_and_kinks_in_the_derivative_are_gaps():
    sw = sweep("abs(x)", name="x", lo=-1, hi=1, points=1000)
    assert sw.gaps[0].sum() == 0  # a kink in f is a corner, not a gap
    assert np.flatnonzero(sw.gaps[1]).tolist() == [499]  # f' jumps from -1 to 1 at 0
    sw = sweep("1/x", name="x", lo=-1, hi=1, points=1000)
    assert np.flatnonzero(sw.gaps[0]).tolist() == [499]
    sw = sweep("floor(x)", name="x", lo=-2.5, hi=2.5, points=1000)
    assert sw.gaps[0].sum() == 5 and sw.gaps[1].sum() == 0
    sw = sweep("where(x > 0, 1.0, 0.0) + x", name="x", lo=-1, hi=1, points=101)
    assert np.flatnonzero(sw.gaps[0]).tolist() == [50]


def test_smooth_curves_have_no_gaps_even_when_steep():
    for source in ("x**3 - 2*x", "exp(x)", "tanh(40*x)", "sin(20*x)", "x**2 * 1e8", "1e-12 * x"):
        sw = sweep(source, name="x", lo=-3, hi=3, points=1000, order=2)
        assert [int(g.sum()) for g in sw.gaps] == [0, 0, 0], source


def test_nan_is_a_gap():
    sw = sweep("sqrt(x)", name="x", lo=-1, hi=1, points=11)
    assert np.isnan(sw.curves[0][:5]).all()
    assert sw.gaps[0][:5].all() and not sw.gaps[0][6:].any()


def test_breaks_without_a_derivative_finds_steps():
    x = np.linspace(0, 1, 101)
    y = np.where(x < 0.5, 0.0, 1.0) + 0.1 * x
    assert np.flatnonzero(breaks(x, y)).tolist() == [49]
    assert not breaks(x, np.sin(x)).any()


def test_limits_leave_out_poles():
    x = np.linspace(-1, 1, 1000)
    lo, hi = limits(1 / x)
    assert -200 < lo < -5 and 5 < hi < 200
    assert limits(np.full(5, 2.0)) == (pytest.approx(1.8), pytest.approx(2.2))
    assert limits(np.zeros(5)) == (-1.0, 1.0)
    assert limits(np.full(5, np.nan)) == (-1.0, 1.0)


# ----------------------------------------------------------------------------------------
# the terminal plot


def test_canvas_does_not_join_across_a_gap():
    canvas = Canvas(20, 2)
    px = np.array([0.0, 10.0, 29.0, 39.0])
    py = np.array([7.0, 7.0, 0.0, 0.0])
    _draw(canvas, px, py, np.array([False, True, False]))
    columns = canvas.bits.any(axis=0)
    assert columns[:6].all() and columns[14:].all()
    assert not columns[6:14].any()  # nothing drawn from x=10 to x=29 (dots 12..28)


def test_render_fits_the_width_and_labels_the_axes():
    sw = sweep("sin(x)", name="x", lo=-3, hi=3, points=500)
    text = render(sw.x, list(zip(sw.labels(), sw.curves, sw.gaps)), xlabel="x", width=60, height=30)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 60
    assert any(ch in BRAILLE for ch in text)
    assert lines[-2].strip().startswith("└")
    assert lines[-1].split() == ["-2", "0", "2", "x"]
    labelled = [line.split("┤")[0].strip() for line in lines if "┤" in line]
    assert labelled == ["1", "0", "-1", "1", "0", "-1"]


def test_nice_ticks():
    # a range below the rounding of its values must not loop (it once filled the memory)
    assert len(nice_ticks(1.0 - 2e-16, 1.0 + 2e-16, 5)) <= 6
    lo, hi = limits(np.array([1.0, 1.0 + 2e-16, 1.0 - 2e-16] * 10))
    assert (lo, hi) == (pytest.approx(0.9), pytest.approx(1.1))
    assert nice_ticks(-3, 3, 7) == [-3, -2, -1, 0, 1, 2, 3]
    assert nice_ticks(0, 1, 3) == [0, 0.5, 1]
    assert nice_ticks(-3.14159, 3.14159, 4) == [-2.5, 0, 2.5]


def test_plot_command_in_the_terminal():
    r = run("plot", "x**2", "--range", "x=-2:2", env={"COLUMNS": "50", "LINES": "24"})
    lines = r.stdout.splitlines()
    assert lines[0] == "of x**2  over x in [-2, 2], 1000 points"
    assert max(len(line) for line in lines) <= 50
    assert "f'" in r.stdout and any(ch in BRAILLE for ch in r.stdout)
    r = run("plot", "sin(x)", "--range", "x=-3:3", "--order", "2", env={"COLUMNS": "120", "LINES": "60"})
    assert "f''" in r.stdout and max(len(line) for line in r.stdout.splitlines()) <= 120


def test_plot_csv_and_json():
    r = run("plot", "x**3", "--range", "x=-1:1", "--points", "5", "--csv")
    rows = r.stdout.splitlines()
    assert rows[0] == "x,f,df"
    table = np.array([[float(v) for v in row.split(",")] for row in rows[1:]])
    np.testing.assert_allclose(table[:, 0], [-1, -0.5, 0, 0.5, 1])
    np.testing.assert_allclose(table[:, 1], table[:, 0] ** 3)
    np.testing.assert_allclose(table[:, 2], 3 * table[:, 0] ** 2)
    r = run("plot", "log(x)", "--range", "x=-1:1", "--points", "3", "--order", "2", "--csv")
    rows = r.stdout.splitlines()
    assert rows[0] == "x,f,df,d2f" and rows[1].startswith("-1.0,nan,")  # log is nan there
    assert rows[3] == "1.0,0.0,1.0,-1.0"
    obj = json.loads(run("plot", "x*y", "--range", "x=0:1", "--at", "y=2", "--points", "3", "--json").stdout)
    assert obj == {"of": "x*y", "wrt": "x", "x": [0.0, 0.5, 1.0], "f": [0.0, 1.0, 2.0], "df": [2.0, 2.0, 2.0],
                   "failed": 0}


def test_plot_command_errors():
    for args, kind in ((["x**2"], "usage"), (["x**2", "--range", "x=1:0"], "value"),
                       (["x**2", "--range", "q=0:1"], "name"), (["x**2", "--range", "x=0:1", "--at", "x=1"], "usage"),
                       (["x**2", "--range", "x=0:1", "--output", "a.gif"], "usage"),
                       (["x**2", "--range", "x=0:1", "--points", "1"], "usage")):
        r = run("plot", *args, "--json", code=2)
        assert json.loads(r.stdout)["error"]["kind"] == kind, args
    r = run("plot", "sum(inv([[x, 1.0], [1.0, 1.0]]))", "--range", "x=-2:4", "--points", "7")
    assert "note: 1 of 7 points could not be evaluated" in r.stdout


# ----------------------------------------------------------------------------------------
# pictures

mpl_image = pytest.importorskip("matplotlib.image")


def _colour_pixels(rgb: np.ndarray, hex_colour: str, tol: float = 0.06) -> int:
    want = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(rgb - want).max(axis=-1) < tol).sum())


def test_png_has_the_size_and_two_curves_of_different_colours(tmp_path):
    out = tmp_path / "f.png"
    r = run("plot", "sin(x)*exp(-x/3)", "--range", "x=-3:3", "--output", str(out))
    assert r.stdout.startswith(f"wrote {out}: f, f' of sin(x)*exp(-x/3)")
    img = mpl_image.imread(str(out))
    assert img.shape[:2] == (600, 800)
    rgb = img[..., :3]
    blue, orange = _colour_pixels(rgb, plot_image.COLOURS[0]), _colour_pixels(rgb, plot_image.COLOURS[1])
    assert blue > 500 and orange > 500
    # each curve is in its own panel: blue in the top half, orange in the bottom half
    assert _colour_pixels(rgb[:300], plot_image.COLOURS[0]) > 0.95 * blue
    assert _colour_pixels(rgb[300:], plot_image.COLOURS[1]) > 0.95 * orange
    assert out.read_bytes() == (run("plot", "sin(x)*exp(-x/3)", "--range", "x=-3:3", "--output", str(out))
                                and out.read_bytes())  # deterministic bytes


def test_png_order_2_has_three_colours_and_gaps_are_not_drawn(tmp_path):
    out = tmp_path / "g.png"
    run("plot", "abs(x)", "--range", "x=-1:1", "--order", "2", "--output", str(out))
    rgb = mpl_image.imread(str(out))[..., :3]
    assert rgb.shape[:2] == (800, 800)
    for colour in plot_image.COLOURS[:2]:
        assert _colour_pixels(rgb, colour) > 300
    # f' of abs is -1 then 1: with the jump a gap, no vertical orange line joins them at x = 0
    panel = rgb[270:530]
    orange = np.abs(panel - np.array([1.0, 0.498, 0.055])).max(axis=-1) < 0.06
    rows_per_column = orange.sum(axis=0)
    assert rows_per_column.max() < 20  # a vertical line would fill a column over ~200 rows


def test_svg_and_pdf(tmp_path):
    for ext, magic in ((".svg", b"<?xml"), (".pdf", b"%PDF")):
        out = tmp_path / f"f{ext}"
        run("plot", "x**2", "--range", "x=0:1", "--points", "50", "--output", str(out))
        assert out.read_bytes().startswith(magic)


def test_with_gaps_inserts_nan():
    x, y = plot_image.with_gaps(np.arange(4.0), np.arange(4.0) ** 2, np.array([False, True, False]))
    assert np.isnan(x[2]) and np.isnan(y[2]) and x.tolist()[:2] == [0.0, 1.0] and len(x) == 5


def test_missing_matplotlib_names_the_install_command(monkeypatch, tmp_path):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    r = run("plot", "x**2", "--range", "x=0:1", "--output", str(tmp_path / "a.png"), code=2)
    assert r.stderr.strip() == ("error[environment]: drawing a picture needs matplotlib, which is not installed for "
                                "this Python; install it with: pip install \"difftape[plot]\"")
    r = run("check", "sin(x)", "--at", "1.0", "--plot", str(tmp_path / "c.png"), code=2)
    assert "pip install \"difftape[plot]\"" in r.stderr


def test_draw_check_from_arrays(tmp_path):
    out = tmp_path / "c.png"
    tape = [np.array([1.0, 2.0, 3.0]), np.array(0.5)]
    numeric = [np.array([1.0, 2.0 + 1e-9, 3.0]), None]
    analytic = [np.array([1.0, 2.0, 3.0 * (1 + 1e-4)]), np.array(0.5)]
    plot_image.draw_check(str(out), ["W", "b"], tape, numeric, analytic, rtol=1e-6, title="check")
    rgb = mpl_image.imread(str(out))[..., :3]
    assert rgb.shape[:2] == (600, 800)
    assert _colour_pixels(rgb, plot_image.COLOURS[0]) > 50
    assert _colour_pixels(rgb, plot_image.COLOURS[3]) > 50  # the rtol line


def test_check_plot_option(tmp_path):
    out = tmp_path / "check.png"
    plain = run("check", "sin(x)*y", "--at", "x=[0.5, 1.0]", "--at", "y=2.0")
    with_plot = run("check", "sin(x)*y", "--at", "x=[0.5, 1.0]", "--at", "y=2.0", "--plot", str(out))
    assert with_plot.stdout == plain.stdout  # the report is the same
    assert mpl_image.imread(str(out)).shape[:2] == (600, 800)
    r = run("check", "x**2", "--at", "3.0", "--expect", "3*x", "--plot", str(out), code=1)  # a mismatch still 1
    assert "MISMATCH" in r.stdout


# ----------------------------------------------------------------------------------------
# real processes and start-up


def test_subprocess_plot_png_csv_and_terminal(tmp_path):
    out = tmp_path / "p.png"
    p = _subprocess("-m", "difftape", "plot", "tanh(w*x)", "--range", "x=-pi:pi", "--at", "w=2", "--output",
                    str(out))
    assert p.returncode == 0, p.stderr
    assert mpl_image.imread(str(out)).shape[:2] == (600, 800)
    p = _subprocess("-m", "difftape", "plot", "x**2", "--range", "x=0:1", "--points", "3", "--csv")
    assert p.stdout.decode().splitlines() == ["x,f,df", "0.0,0.0,0.0", "0.5,0.25,1.0", "1.0,1.0,2.0"]
    p = _subprocess("-m", "difftape", "plot", "x**2", "--range", "x=0:1")
    text = p.stdout.decode()
    assert p.returncode == 0 and max(len(line) for line in text.splitlines()) <= 72
    p = _subprocess("-m", "difftape", "plot", "x**2", "--range", "x=0")
    assert p.returncode == 2 and p.stderr.startswith(b"error[usage]") and b"Traceback" not in p.stderr


def test_start_up_imports_nothing_new():
    p = _subprocess("-X", "importtime", "-m", "difftape", "grad", "x**3", "--at", "2")
    assert p.returncode == 0
    modules = {line.split("|")[-1].strip() for line in p.stderr.decode().splitlines() if "|" in line}
    assert "difftape.cli" in modules
    for name in ("matplotlib", "difftape.optimize", "difftape.optimizers", "difftape.answers.plot",
                 "difftape.answers.minimize", "difftape.io.plot_text", "difftape.io.plot_image", "PIL"):
        assert name not in modules, name
