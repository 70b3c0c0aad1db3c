"""Issue 11 item 6: a progress bar on stderr (count, percentage, ETA) for check, jacobian, hessian, diff and
--batch, only when stderr is a terminal and the run has taken a second (DIFFTAPE_PROGRESS_AFTER sets the delay).

The commands run for real, with a pseudo-terminal as their stderr; the answers layer reports its steps through
``on_step(done, total)`` callbacks, checked here directly too.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from difftape.answers.program import Program
from difftape.io import progress as bars

BAR = re.compile(r"difftape (\S+(?: --batch)?)  (?:\[[#-]+\]  )?([\d,.]+(?: [KMG]B)?)/([\d,.]+(?: [KMG]B)?)")


class Stream:
    """A stream that says whether it is a terminal and keeps what is written."""

    def __init__(self, tty: bool = True) -> None:
        self.tty, self.text = tty, ""

    def isatty(self) -> bool:
        return self.tty

    def write(self, s: str) -> None:
        self.text += s

    def flush(self) -> None:
        pass


# ----------------------------------------------------------------------------------------
# the bar itself


def test_nothing_before_the_delay_then_a_bar_with_count_percentage_and_eta(monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    t = [0.0]
    s = Stream()
    bar = bars.Progress("check", unit="derivatives", total=200, stream=s, after=1.0, clock=lambda: t[0])
    t[0] = 0.5
    bar(10, 200)
    assert s.text == ""  # under a second: nothing
    t[0] = 2.0
    bar(50, 200)
    line = s.text
    assert line.startswith("\rdifftape check  [######") and line.endswith("\x1b[K")
    assert "50/200 derivatives" in line and "25%" in line and "ETA 0:06" in line  # 2 s for 50: 6 s for 150
    bar.close()
    assert s.text.endswith("\r\x1b[K")  # erased: the result follows as if there had been no bar


def test_redrawn_at_most_five_times_a_second():
    t = [10.0]
    s = Stream()
    bar = bars.Progress("jacobian", unit="passes", total=10_000, stream=s, after=0.0, clock=lambda: t[0])
    for k in range(1, 1001):  # 1,000 steps in 0.5 s
        t[0] = 10.0 + k * 0.0005
        bar(k, 10_000)
    assert 2 <= s.text.count("\r") <= 4


def test_not_a_terminal_shows_nothing_and_an_interrupt_ends_the_line():
    quiet = Stream(tty=False)
    bar = bars.Progress("hessian", total=5, stream=quiet, after=0.0)
    bar(3, 5)
    bar.close()
    assert quiet.text == ""
    s = Stream()
    with pytest.raises(KeyboardInterrupt), bars.Progress("hessian", total=5, stream=s, after=0.0) as bar:
        bar(3, 5)
        raise KeyboardInterrupt
    assert "3/5" in s.text and s.text.endswith("\n")  # the line ends; the message comes on a line of its own


def test_the_line_fits_the_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    s = Stream()
    bar = bars.Progress("minimize", total=1000, stream=s, after=0.0)
    bar.update(5, note="value 0.123456  grad_norm 0.0001")
    drawn = s.text.removeprefix("\r").removesuffix("\x1b[K")
    assert len(drawn) <= 39 and drawn.startswith("difftape minimize  5/1,000 steps")


def test_unknown_total_counts_with_a_rate():
    s = Stream()
    t = [0.0]
    bar = bars.Progress("grad --batch", unit="lines", stream=s, after=0.0, clock=lambda: t[0])
    t[0] = 2.0
    bar(40_000)
    assert "40,000 lines" in s.text and "20,000 lines/s" in s.text and "%" not in s.text


@pytest.mark.parametrize(("value", "delay"), [(None, 1.0), ("0", 0.0), ("2.5", 2.5), ("soon", 1.0), ("-1", 1.0),
                                              ("nan", 1.0)])
def test_the_delay_comes_from_the_environment(monkeypatch, value, delay):
    if value is None:
        monkeypatch.delenv(bars.AFTER_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(bars.AFTER_VARIABLE, value)
    assert bars.delay() == delay


# ----------------------------------------------------------------------------------------
# the answers layer reports its steps


def _steps(fn):
    seen: list[tuple[int, int]] = []
    fn(lambda done, total: seen.append((done, total)))
    return seen


def _counted(seen: list[tuple[int, int]], total: int) -> None:
    assert seen, "no step reported"
    dones = [d for d, _ in seen]
    assert dones == sorted(dones) and all(t == total for _, t in seen)
    assert seen[-1] == (total, total)


@pytest.mark.parametrize("program", ["sum(sin(x) * x)", "sum(abs(x) * x)"], ids=["complex-step", "ridders"])
def test_check_reports_one_step_per_element(program):
    p = Program(program, at={"x": np.linspace(0.1, 1, 7)})
    seen = _steps(lambda cb: p.check(on_step=cb))
    _counted(seen, 7)
    assert len(seen) == 7


def test_check_directional_and_second_order_report_their_steps():
    p = Program("sum(sin(x) * y)", at={"x": np.linspace(0.1, 1, 5), "y": np.ones(5)})
    _counted(_steps(lambda cb: p.check(mode="directional", directions=4, on_step=cb)), 8)  # 4 per input
    _counted(_steps(lambda cb: p.check(order=2, on_step=cb)), 20)  # a Hessian pass and a row per element
    _counted(_steps(lambda cb: p.check(order=2, mode="directional", directions=2, on_step=cb)), 4)


def test_jacobian_reports_its_passes_in_either_mode():
    rev = Program("x * y", at={"x": np.ones(6), "y": np.ones(6)})  # 6 outputs, 12 inputs: reverse
    _counted(_steps(lambda cb: rev.jacobian(on_step=cb)), 6)
    fwd = Program("sum(x) * ones(50)", at={"x": np.ones(3)})  # 3 inputs, 50 outputs: forward
    _counted(_steps(lambda cb: fwd.jacobian(on_step=cb)), 3)


def test_hessian_reports_one_pass_per_input_element():
    p = Program("sum(x**3) * y", at={"x": np.ones(4), "y": 2.0})
    _counted(_steps(lambda cb: p.hessian(on_step=cb)), 5)


def test_a_batch_reports_within_a_block(monkeypatch):
    from difftape.answers import batch

    monkeypatch.setattr(batch, "CHUNK_ELEMENTS", 64)  # a few points a vectorised run
    prog = batch.BatchProgram("sin(x) * 2")
    lines = "".join(json.dumps({"x": [0.1 * i] * 8}) + "\n" for i in range(40))
    calls: list[tuple[int, int]] = []
    report = batch.run_ndjson(prog, lines, "jacobian", on_block=lambda n, b: calls.append((n, b)))
    assert report.lines == 40 and report.failed == 0
    assert len(calls) > 1  # one block, reported run by run
    assert sum(n for n, _ in calls) == 40 and sum(b for _, b in calls) == len(lines.encode())


def test_a_batch_of_one_large_jacobian_reports_its_passes():
    from difftape.answers import batch

    prog = batch.BatchProgram("sin(x) * 2")
    line = json.dumps({"x": [0.5] * 50}) + "\n"
    calls: list[tuple[int, int]] = []
    report = batch.run_ndjson(prog, line, "jacobian", on_block=lambda n, b: calls.append((n, b)))
    assert report.lines == 1 and report.failed == 0
    assert len(calls) > 10 and all(n == 0 for n, _ in calls[:-1])  # bytes move pass by pass, the line at the end
    assert sum(n for n, _ in calls) == 1 and sum(b for _, b in calls) == len(line)


# ----------------------------------------------------------------------------------------
# the real commands, with a pseudo-terminal as stderr


def _run(args: list[str], *, tty: bool = True, after: str | None = "0", interrupt_when: str | None = None,
         timeout: float = 120) -> tuple[int, str, str]:
    """Run ``difftape ARGS`` with stderr a pseudo-terminal (or a pipe); (exit status, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if k != bars.AFTER_VARIABLE}
    env["COLUMNS"] = "200"
    if after is not None:
        env[bars.AFTER_VARIABLE] = after
    with tempfile.TemporaryFile() as out:
        if tty:
            master, slave = os.openpty()
            err_target = slave
        else:
            err_target = subprocess.PIPE
        proc = subprocess.Popen([sys.executable, "-m", "difftape", *args], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=err_target, env=env)
        if not tty:
            _, err = proc.communicate(timeout=timeout)
            out.seek(0)
            return proc.returncode, out.read().decode(), err.decode()
        os.close(slave)
        buf = b""
        deadline = time.monotonic() + timeout
        sent = False
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.2)
                if ready:
                    try:
                        chunk = os.read(master, 65536)
                    except OSError:  # the child closed the terminal (EIO)
                        break
                    if not chunk:
                        break
                    buf += chunk
                    if interrupt_when is not None and not sent and interrupt_when.encode() in buf:
                        proc.send_signal(signal.SIGINT)
                        sent = True
                elif proc.poll() is not None:
                    break
            else:
                raise AssertionError(f"difftape {args} ran for more than {timeout} s")
            code = proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
            os.close(master)
        out.seek(0)
        return code, out.read().decode(), buf.decode(errors="replace").replace("\r\n", "\n")


def _strict(text: str) -> dict:
    def refuse(token: str) -> None:
        raise AssertionError(f"not strict JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def _bars(stderr: str) -> list[tuple[str, str, str]]:
    return BAR.findall(stderr)


CASES = [
    (["check", "sum(abs(x) * sin(x))", "--at", "x=linspace(0.1, 1, 300)", "--json"], "check", "300"),
    (["jacobian", "sin(x) * 2", "--at", "x=ones(400)", "--json"], "jacobian", "400"),
    (["hessian", "sum(x**3)", "--at", "x=ones(300)", "--json"], "hessian", "300"),
    (["diff", "tan(tan(x))", "--order", "6", "--json"], "diff", "6"),
]


@pytest.mark.parametrize(("args", "label", "total"), CASES, ids=[c[1] for c in CASES])
def test_the_bar_on_a_terminal_and_strict_json_on_stdout(args, label, total):
    code, out, err = _run(args)
    assert code == 0, err
    bars = _bars(err)
    assert bars, f"no bar on the terminal: {err!r}"
    assert all(b[0] == label and b[2] == total for b in bars)
    first = int(bars[0][1].replace(",", ""))
    assert 1 <= first <= int(total)
    assert err.endswith("\r\x1b[K")  # erased at the end
    payload = _strict(out)
    assert "error" not in payload
    # stdout is exactly what it is without a terminal
    code2, out2, err2 = _run(args, tty=False)
    assert code2 == 0 and out2 == out and err2 == ""


def test_a_batch_bar_counts_bytes_of_a_file(tmp_path):
    points = tmp_path / "points.ndjson"
    points.write_text("".join(json.dumps({"x": [0.01 * i] * 200}) + "\n" for i in range(60)))
    code, out, err = _run(["jacobian", "sin(x) * 2", "--batch", "--at-file", str(points)])
    assert code == 0, err
    bars = _bars(err)
    assert bars and all(b[0] == "jacobian --batch" and b[2].endswith("KB") for b in bars)
    assert "points" in err and err.endswith("\r\x1b[K")
    lines = out.splitlines()
    assert len(lines) == 60 and all("jacobian" in _strict(line) for line in lines)


def test_no_batch_bar_over_results_that_stream_to_the_same_terminal(tmp_path):
    points = tmp_path / "points.ndjson"
    points.write_text("".join(json.dumps({"x": [0.01 * i] * 100}) + "\n" for i in range(30)))
    env = dict(os.environ, COLUMNS="200", **{bars.AFTER_VARIABLE: "0"})
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "difftape", "jacobian", "sin(x) * 2", "--batch", "--at-file",
                             str(points)], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    seen = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            assert ready, "no output for a minute"
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        assert proc.wait(timeout=60) == 0
        os.close(master)
    text = seen.decode()
    assert text.count('"of": "sin(x) * 2"') == 30 and "difftape jacobian --batch" not in text


def test_nothing_when_stderr_is_not_a_terminal_or_the_run_is_short():
    args = ["jacobian", "sin(x) * 2", "--at", "x=ones(200)", "--json"]
    code, out, err = _run(args, tty=False)
    assert code == 0 and err == "" and "jacobian" in _strict(out)
    code, out, err = _run(args, after="600")  # a terminal, but the run is shorter than the delay
    assert code == 0 and err == ""


def test_ctrl_c_ends_the_line_then_one_message_and_status_130():
    args = ["check", "sum(abs(x) * sin(x))", "--at", "x=linspace(0.1, 1, 1000)", "--mode", "full",
            "--max-flops", "1e12"]
    code, out, err = _run(args, interrupt_when="derivatives")
    assert code == 130, err
    assert out == ""
    assert re.search(r"derivatives[^\n]*\nAborted!\n$", err), repr(err[-300:])


@pytest.mark.slow
def test_the_bar_shows_after_the_default_second_on_a_long_run():
    """No DIFFTAPE_PROGRESS_AFTER: the default delay, on a run that takes a few seconds."""
    args = ["check", "sum(abs(x) * sin(x))", "--at", "x=linspace(0.1, 1, 2000)", "--mode", "full", "--json"]
    start = time.monotonic()
    code, out, err = _run(args, after=None)
    took = time.monotonic() - start
    assert code == 0, err
    if took < 2.0:  # pragma: no cover - a machine fast enough that the run ends before the bar is due
        pytest.skip(f"the run took only {took:.1f} s")
    bars = _bars(err)
    assert bars and all(b[2] == "2,000" for b in bars)
    assert int(bars[0][1].replace(",", "")) > 1  # not from the first step: a second had passed
    assert _strict(out)["ok"] is True
