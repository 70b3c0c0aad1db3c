"""The one error type of difftape.

Every failure a user can cause (a bad program, option, value or API call) is a
``DifftapeError``. It carries a kind, a message and, when it comes from program
text, the 1-based line and column and the source line, so that the command line
can print a caret under the spot and emit the same facts as JSON.
"""

from __future__ import annotations

from collections.abc import Iterable


class DifftapeError(Exception):
    """A user-facing error: ``kind`` names the family, ``message`` says what and how to fix it.

    ``line``/``column`` are 1-based positions in ``source`` (the whole program text);
    ``end_column`` (exclusive) widens the caret to cover a span on that line.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        line: int | None = None,
        column: int | None = None,
        source: str | None = None,
        end_column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.line = line
        self.column = column
        self.source = source
        self.end_column = end_column

    def with_source(self, source: str) -> DifftapeError:
        """Attach the program text (positions are already set) and return self."""
        if self.source is None:
            self.source = source
        return self

    def source_line(self) -> str | None:
        """The text of the line the error points at, or None."""
        if self.source is None or self.line is None:
            return None
        lines = self.source.splitlines() or [""]
        if 1 <= self.line <= len(lines):
            return lines[self.line - 1]
        return ""

    def render(self) -> str:
        """Compiler-style text: ``error[kind] at L:C: message``, the line and a caret."""
        where = f" at {self.line}:{self.column}" if self.line is not None else ""
        out = [f"error[{self.kind}]{where}: {self.message}"]
        text = self.source_line()
        if text is not None and self.column is not None:
            gutter = f"{self.line} | "
            width = max(1, (self.end_column or self.column + 1) - self.column)
            out.append(gutter + text)
            out.append(" " * (len(gutter) + self.column - 1) + "^" * width)
        return "\n".join(out)

    def to_json(self) -> dict:
        """The ``{"kind", "message", "line", "column"}`` object of the JSON contract."""
        return {"kind": self.kind, "message": self.message, "line": self.line, "column": self.column}

    def __str__(self) -> str:
        return self.render()


def did_you_mean(name: str, choices: Iterable[str], n: int = 1) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` (up to ``n``), or nothing.

    difflib is imported here, on the error path only: a command that succeeds never loads it.
    """
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=n)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
