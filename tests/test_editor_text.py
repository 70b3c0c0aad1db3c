"""Text the way editors save it (issue 14, item 4): a UTF-8 byte-order mark at the start of a file,
stdin or argument is ignored; a tab counts as one column, so the caret stands under the right
character; CRLF line ends are fine."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from difftape.cli import cli
from difftape.errors import DifftapeError
from difftape.language.compiler import compile_program

BOM = "\ufeff"


def invoke(*args: str, stdin: bytes | None = None, code: int = 0) -> str:
    res = CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)
    assert res.exit_code == code, res.output
    return res.output


def caret_under(rendered: str) -> str:
    """The character the caret of a rendered error stands under."""
    lines = rendered.splitlines()
    k = next(i for i, t in enumerate(lines) if "^" in t and i > 0)
    quote = lines[k - 1]
    return quote[lines[k].index("^")]


@pytest.mark.parametrize("how", ["file", "stdin", "argument"])
def test_a_byte_order_mark_is_ignored(tmp_path, how):
    text = BOM + "y = x**2\r\n"
    if how == "file":
        path = tmp_path / "p.dt"
        path.write_bytes(text.encode("utf-8"))
        out = invoke("eval", "-f", str(path), "--at", "x=3", "--json")
    elif how == "stdin":
        out = invoke("eval", "-", "--at", "x=3", "--json", stdin=text.encode("utf-8"))
    else:
        out = invoke("eval", text, "--at", "x=3", "--json")
    assert json.loads(out)["value"] == 9


def test_a_byte_order_mark_keeps_the_columns_of_errors():
    with pytest.raises(DifftapeError) as info:
        compile_program(BOM + "y = 2*x +* 1")
    err = info.value
    assert (err.line, err.column) == (1, 10)
    assert caret_under(err.render()) == "*"


def test_the_real_command_reads_a_file_with_a_bom_and_crlf(tmp_path):
    path = tmp_path / "windows.dt"
    path.write_bytes((BOM + "# a model\r\nf(t) = t**2\r\ny = f(x) + 1\r\n").encode("utf-8"))
    proc = subprocess.run([sys.executable, "-m", "difftape", "grad", "-f", str(path), "--at", "x=2.0", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["grad"] == {"x": 4.0}


@pytest.mark.parametrize("source", [
    "\ty = 2*x +* 1",
    "y = x\n\t\tz = y +* 1",
    "y = 2 *\tx +* 1",
])
def test_a_tab_counts_as_one_column_under_the_caret(source):
    with pytest.raises(DifftapeError) as info:
        compile_program(source)
    rendered = info.value.render()
    assert caret_under(rendered) == "*", rendered
    assert "\t" not in rendered


def test_tabs_in_the_real_command():
    proc = subprocess.run([sys.executable, "-m", "difftape", "eval", "\ty =\tx +* 1", "--at", "x=1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert caret_under(proc.stderr) == "*"


def test_crlf_line_ends_are_fine():
    out = json.loads(invoke("eval", "a = 2\r\nb = 3\r\n# note\r\na * b\r\n", "--json"))
    assert out["value"] == 6 and out["of"] == "a * b"
    with pytest.raises(DifftapeError) as info:
        compile_program("a = 2\r\nb = a +* 1\r\n")
    err = info.value
    assert (err.line, err.column) == (2, 8)
    assert "\r" not in err.render()
