"""One progress bar on stderr for every long run: ``check``, ``jacobian``, ``hessian``, ``diff``,
``--batch`` and ``minimize``.

The answers layer knows how far a computation is (the elements a checker perturbs, the passes of
a Jacobian, the lines of a batch) and reports it through a plain callback ``on_step(done, total)``;
it knows nothing of terminals. :class:`Progress` is that callback for the command line. It shows
nothing unless stderr is a terminal and the run has taken :data:`DEFAULT_AFTER` seconds (the
environment variable ``DIFFTAPE_PROGRESS_AFTER`` sets another delay: ``0`` shows it from the first
step, as the tests do); then one line, redrawn at most every :data:`EVERY` seconds::

    difftape check  [#########---------------]  412/1,000 derivatives  41%  ETA 0:03

A finished run erases the line (the result follows on stdout as if there had been none); an
interrupted one (Ctrl-C) ends it with a newline, so that the command's own one-line message starts
on a line of its own. Only the standard library is imported: start-up is measured.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

#: Seconds a run must have taken before the bar shows.
DEFAULT_AFTER = 1.0
#: The environment variable that overrides :data:`DEFAULT_AFTER` (seconds, e.g. ``0``).
AFTER_VARIABLE = "DIFFTAPE_PROGRESS_AFTER"
#: Seconds between redraws (at most about five a second).
EVERY = 0.2
#: Width of the bar itself, in characters, when the terminal is wide enough.
BAR_WIDTH = 24


def delay() -> float:
    """The seconds before a bar shows: ``DIFFTAPE_PROGRESS_AFTER`` if it is a number >= 0, else the default."""
    text = os.environ.get(AFTER_VARIABLE)
    if text is None:
        return DEFAULT_AFTER
    try:
        value = float(text)
    except ValueError:
        return DEFAULT_AFTER
    return value if value >= 0 and value == value else DEFAULT_AFTER


def clock_text(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) for a duration."""
    s = int(round(max(seconds, 0.0)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"


def _bytes(n: float, scale: float) -> str:
    """``n`` bytes in the unit that suits ``scale`` bytes (the total): KB, MB or GB."""
    for unit, size in (("GB", 1e9), ("MB", 1e6)):
        if scale >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n / 1e3:,.1f} KB"


class Progress:
    """A bar with count/total, percentage and ETA on stderr, for a run that reports ``(done, total)``.

    Call it (or :meth:`update`) with the steps done so far; use it as a context manager so that
    the line is erased at the end, or ended with a newline when the run is interrupted.

    - ``label``: what runs (``"check"``, ``"grad --batch"``);
    - ``unit``: what is counted (``"elements"``, ``"passes"``, ``"lines"``); ``"bytes"`` shows MB;
    - ``total``: the steps of the whole run when known (the callback may also give it);
    - ``bound``: the total is a limit the run may stop short of (``minimize --steps``): the time
      left is shown as "at most";
    - ``stream``, ``enabled``, ``after``, ``clock``: for tests (default: stderr, when it is a terminal).
    """

    def __init__(
        self,
        label: str,
        *,
        unit: str = "steps",
        total: int | None = None,
        bound: bool = False,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        after: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream: Any = sys.stderr if stream is None else stream
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            try:
                enabled = bool(isatty()) if isatty is not None else False
            except (OSError, ValueError):  # a closed stream
                enabled = False
        self.enabled = enabled
        self.label, self.unit, self.total, self.bound = label, unit, total, bound
        self.after = delay() if after is None else after
        self.clock = clock
        self.start = clock()
        self.last = -float("inf")
        self.done = 0
        self.note = ""
        self.shown = False

    # -- the callback --------------------------------------------------------------------------
    def __call__(self, done: int, total: int | None = None) -> None:
        self.update(done, total)

    def update(self, done: int, total: int | None = None, note: str = "") -> None:
        """``done`` steps of ``total`` (or of the total given before); ``note`` is shown after the count."""
        self.done = done
        if total is not None:
            self.total = total
        if note:
            self.note = note
        if not self.enabled:
            return
        now = self.clock()
        if now - self.start < self.after or now - self.last < EVERY:
            return
        self.last = now
        self._draw(now)

    def _draw(self, now: float) -> None:
        columns = _columns(self.stream)
        line = self.line(now, columns)
        self.shown = True  # before writing: a Ctrl-C right after the write still ends the line
        try:
            self.stream.write("\r" + line + "\x1b[K")
            self.stream.flush()
        except (OSError, ValueError):  # stderr went away: the run goes on without a bar
            self.enabled = self.shown = False

    def line(self, now: float | None = None, columns: int = 80) -> str:
        """The text of the bar as it stands, at most ``columns - 1`` characters."""
        now = self.clock() if now is None else now
        elapsed = max(now - self.start, 0.0)
        total, done = self.total, self.done
        count = _bytes(done, total or done) if self.unit == "bytes" else f"{done:,}"
        parts: list[str] = []
        frac = None
        if total:
            frac = min(max(done / total, 0.0), 1.0)
            total_text = _bytes(total, total) if self.unit == "bytes" else f"{total:,}"
            parts.append(f"{count}/{total_text}" + ("" if self.unit == "bytes" else f" {self.unit}"))
            parts.append(f"{frac:4.0%}".strip())
        else:
            parts.append(count if self.unit == "bytes" else f"{count} {self.unit}")
            if elapsed > 0 and self.unit != "bytes":
                parts.append(f"{done / elapsed:,.0f} {self.unit}/s")
        if frac is not None:
            if done > 0 and frac < 1:
                left = elapsed * (total - done) / done  # type: ignore[operator]
                parts.append(("at most " if self.bound else "ETA ") + clock_text(left))
            elif frac >= 1:
                parts.append("ETA 0:00")
            else:
                parts.append("ETA --:--")
        if self.note:  # last: a narrow terminal cuts it first
            parts.append(self.note)
        head = f"difftape {self.label}"
        tail = "  ".join(parts)
        room = columns - 1 - len(head) - len(tail) - 6
        if frac is not None and room >= 10:
            width = min(BAR_WIDTH, room)
            filled = int(frac * width)
            text = f"{head}  [{'#' * filled}{'-' * (width - filled)}]  {tail}"
        else:
            text = f"{head}  {tail}"
        return text[: max(columns - 1, 1)]

    # -- the end -------------------------------------------------------------------------------
    def close(self, interrupted: bool = False) -> None:
        """Erase the line (or, after an interrupt, end it) if it was shown."""
        if not self.shown:
            return
        self.shown = False
        try:
            self.stream.write("\n" if interrupted else "\r\x1b[K")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        self.close(interrupted=kind is not None and issubclass(kind, KeyboardInterrupt))


class PointsBar:
    """The bar of a batch: the input's bytes done (when its size is known: a file), else its lines.

    ``on_block(lines, bytes)`` is ``stream_ndjson``'s callback; ``on_partition(report)`` the one of a
    job over partitions (each report has ``lines`` and ``size``, its bytes). The lines so far, the
    rate and (for partitions) the partitions done are shown beside the count.
    """

    def __init__(self, label: str, total_bytes: int | None = None, partitions: int | None = None,
                 **options: Any) -> None:
        self.bar = Progress(label, unit="bytes" if total_bytes else "lines", total=total_bytes or None, **options)
        self.partitions = partitions
        self.lines = self.bytes = self.parts = 0

    def on_block(self, lines: int, nbytes: int) -> None:
        self.lines += lines
        self.bytes += nbytes
        self._show()

    def on_partition(self, report: Any) -> None:
        self.parts += 1
        self.on_block(int(report.lines), int(report.size))

    def _show(self) -> None:
        if self.bar.total is None:
            self.bar.update(self.lines)
            return
        elapsed = max(self.bar.clock() - self.bar.start, 1e-9)
        note = f"{self.lines:,} points  {self.lines / elapsed:,.0f} points/s"
        if self.partitions is not None:
            note += f"  {self.parts}/{self.partitions} partitions"
        self.bar.update(self.bytes, note=note)

    def close(self, interrupted: bool = False) -> None:
        self.bar.close(interrupted)

    def __enter__(self) -> PointsBar:
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        self.bar.__exit__(kind, value, tb)


def remaining_bytes(stream: Any) -> int | None:
    """The bytes left to read of ``stream`` when it is a regular file, else None (a pipe, a terminal)."""
    import stat

    try:
        info = os.fstat(stream.fileno())
        if stat.S_ISREG(info.st_mode):
            return max(info.st_size - stream.tell(), 0)
    except (OSError, AttributeError, ValueError):  # not a real file (a pipe, or a test's stream)
        pass
    return None


def _columns(stream: Any) -> int:
    """The terminal's width (``COLUMNS`` first, as shells set it), 80 when it cannot be told."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (OSError, ValueError, AttributeError):
        return 80
