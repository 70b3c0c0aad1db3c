"""Issue 18: hostile input ends cleanly (ASCII digits, closed stdin, a full disk, Ctrl-C, endless
input, closed pipes, the quoted line of an error). Every subprocess runs under a timeout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from difftape.errors import QUOTE_WIDTH, DifftapeError
from difftape.language import parser
from difftape.language.parser import parse

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 60
DIFFTAPE = [sys.executable, "-m", "difftape"]


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    if "stdout" not in kw:
        kw.setdefault("capture_output", True)
    return subprocess.run([*DIFFTAPE, *args], timeout=TIMEOUT, cwd=ROOT, **kw)


def shell(command: str) -> subprocess.CompletedProcess:
    """``command`` under sh, with ``difftape`` standing for this interpreter's module."""
    line = command.replace("difftape", " ".join(f"'{a}'" for a in DIFFTAPE), 1)
    return subprocess.run(["sh", "-c", line], capture_output=True, timeout=TIMEOUT, cwd=ROOT)


def no_traceback(done: subprocess.CompletedProcess) -> None:
    assert b"Traceback" not in done.stderr and b"internal" not in done.stderr, done.stderr


# -- numbers are ASCII ---------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["৪ + 1", "x**2٣", "١", "2.٥", "1e٣"])
def test_non_ascii_digits_are_not_numbers(source):
    with pytest.raises(DifftapeError) as info:
        parse(source)
    assert info.value.kind == "syntax"
    if source != "1e٣":  # there the name 'e' after '1' is the first thing wrong
        assert "ASCII digits" in info.value.message


def test_non_ascii_digit_on_the_command_line_is_a_syntax_error():
    done = run("eval", "x**2٣", "--at", "x=2")
    assert done.returncode == 2
    assert b"error[syntax] at 1:5" in done.stderr and b"ASCII digits 0-9" in done.stderr
    done = run("eval", "x", "--at", "x=৪")
    assert done.returncode == 2 and b"error[syntax]" in done.stderr


def test_ascii_numbers_still_parse():
    assert [s.value for s in parse("12").statements] and parse("1.5e3").statements[0].value == 1500.0


# -- stdin, stdout, pipes ------------------------------------------------------------------------


def test_closed_stdin_is_an_io_error():
    done = shell("difftape eval - <&-")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(b"error[io]: stdin is closed")
    no_traceback(done)


def test_closed_stdin_for_batch_points_is_an_io_error():
    done = shell("difftape eval x --batch <&-")
    assert done.returncode == 2
    assert b"error[io]" in done.stderr
    assert json.loads(done.stdout)["error"]["kind"] == "io"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("args", [("eval", "1+1"), ("eval", "1+1", "--json"), ("grad", "x**2", "--at", "3.0")])
def test_a_full_disk_is_an_io_error(args):
    with open("/dev/full", "wb") as full:
        done = run(*args, stdout=full, stderr=subprocess.PIPE)
    assert done.returncode == 2
    assert done.stderr.decode().strip() == "error[io]: cannot write the output to stdout: No space left on device"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_under_batch_is_an_io_error():
    with open("/dev/full", "wb") as full:
        done = run("grad", "x**2", "--batch", input=b'{"x": 1.0}\n' * 10, stdout=full, stderr=subprocess.PIPE)
    assert done.returncode == 2
    assert b"error[io]" in done.stderr
    no_traceback(done)


def test_a_closed_pipe_is_not_a_failure():
    points = b"".join(b'{"x": %d.0}\n' % i for i in range(50_000))
    proc = subprocess.Popen([*DIFFTAPE, "grad", "x**2", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT)

    def feed() -> None:
        try:
            proc.stdin.write(points)
            proc.stdin.close()
        except BrokenPipeError:
            pass

    threading.Thread(target=feed, daemon=True).start()
    first = proc.stdout.readline()
    proc.stdout.close()  # `| head -n1`
    err = proc.stderr.read()
    assert proc.wait(timeout=TIMEOUT) == 0, err
    assert json.loads(first)["value"] == 0.0
    assert b"Traceback" not in err


def test_a_closed_pipe_after_plain_output_is_not_a_failure():
    proc = subprocess.Popen([*DIFFTAPE, "eval", "arange(300000)", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=TIMEOUT) == 0, err


# -- Ctrl-C ---------------------------------------------------------------------------------------


def test_ctrl_c_while_starting_up_is_one_line_and_130(tmp_path):
    # Importing click is the slow part of start-up: make it be interrupted there, every time.
    (tmp_path / "click.py").write_text("raise KeyboardInterrupt\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    done = run("eval", "1", env=env)
    assert done.returncode == 130
    assert done.stderr == b"Aborted!\n"


def test_ctrl_c_mid_batch_leaves_whole_lines_and_130():
    points = b"".join(b'{"x": [%d.0, 1.0, 2.0]}\n' % i for i in range(200_000))
    proc = subprocess.Popen([*DIFFTAPE, "grad", "sum(sin(x)**2)", "--batch"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)

    def feed() -> None:
        try:
            proc.stdin.write(points)
            proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass

    threading.Thread(target=feed, daemon=True).start()
    first = proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    rest = proc.stdout.read()
    err = proc.stderr.read()
    code = proc.wait(timeout=TIMEOUT)
    out = first + rest
    if code == 0:  # the whole batch was done before the signal came: nothing to check
        pytest.skip("the batch finished before the interrupt")
    assert code == 130
    assert err == b"Aborted!\n"
    assert out.endswith(b"\n")
    for line in out.decode().splitlines():
        assert "grad" in json.loads(line)


# -- endless input ---------------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_program_from_dev_zero_is_a_limit_error():
    done = run("eval", "-f", "/dev/zero")
    assert done.returncode == 2
    assert done.stderr.startswith(b"error[limit]: /dev/zero holds more than")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_batch_points_from_dev_zero_are_a_limit_error():
    done = run("eval", "x", "--at-file", "/dev/zero")
    assert done.returncode == 2
    error = json.loads(done.stdout)["error"]
    assert error["kind"] == "limit" and "longer than" in error["message"]


def test_program_and_line_length_are_bounded(monkeypatch):
    monkeypatch.setattr(parser, "MAX_PROGRAM_CHARS", 100)
    monkeypatch.setattr(parser, "MAX_LINE_CHARS", 40)
    with pytest.raises(DifftapeError, match="101 characters long, over the limit of 100") as info:
        parse("x" * 101)
    assert info.value.kind == "limit"
    with pytest.raises(DifftapeError, match="line 2 of the program is 41 characters") as info:
        parse("x = 1\n" + "y" * 41)
    assert info.value.kind == "limit"
    assert parse("x = 1\n" + "y" * 40).statements  # at the limit: fine


# -- quoting the right line --------------------------------------------------------------------------


@pytest.mark.parametrize("breaker", ["\f", "\v", "\x1c", "\x85", "\u2028", "\u2029"])
def test_the_quoted_line_is_the_lexer_line(breaker):
    source = f"y = 1  # a comment{breaker}with a break\nz = y +* 3"
    with pytest.raises(DifftapeError) as info:
        parse(source)
    err = info.value
    assert (err.line, err.column) == (2, 8)
    assert err.source_line() == "z = y +* 3"
    assert "2 | z = y +* 3" in err.render()


def test_a_form_feed_inside_a_line_is_quoted_in_place():
    with pytest.raises(DifftapeError) as info:
        parse("x\f+ * 1")
    lines = info.value.render().splitlines()
    assert lines[1] == "1 | x + * 1"
    assert lines[2].index("^") == lines[1].index("*")


def test_crlf_lines_are_quoted_without_the_cr():
    with pytest.raises(DifftapeError) as info:
        parse("a = 1\r\nb = +* 2\r\n")
    assert info.value.source_line() == "b = +* 2"


def test_a_long_line_is_quoted_as_a_window_around_the_column():
    source = "; ".join(f"a{i + 1} = a{i} + 1" for i in range(5_000)) + "; b = a1 +* 2"
    with pytest.raises(DifftapeError) as info:
        parse(source)
    head, quoted, caret = info.value.render().splitlines()
    assert len(quoted) < QUOTE_WIDTH + 20
    assert quoted.startswith("1 | ...") and quoted.endswith("b = a1 +* 2")
    assert quoted[caret.index("^")] == "*"
