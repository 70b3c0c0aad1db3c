"""The one error type of difftape.

Every failure a user can cause (a bad program, option, value or API call) is a
``DifftapeError``. It carries a kind, a message and, when it comes from program
text, the 1-based line and column and the source line, so that the command line
can print a caret under the spot and emit the same facts as JSON.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Most characters of a source line an error quotes (a window around the column).
QUOTE_WIDTH = 160


def _printable_quote(text: str) -> str:
    """A quoted line with control characters (tabs too) shown as spaces, one column each, so that
    the caret under it stays in place (a tab counts as one column, as the lexer counts it) and a
    terminal is not driven by them."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else " " for c in text)


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
        """The text of the line the error points at, or None.

        Lines are what the lexer counts: text between ``\n`` (a ``\r`` before it is dropped), not
        ``str.splitlines``, which also breaks at ``\f``, ``\v``, ``\x1c``-``\x1e``, ``\x85``,
        ``\u2028`` and ``\u2029`` and so would quote the wrong line after one of them.
        """
        if self.source is None or self.line is None:
            return None
        if self.line < 1:
            return ""
        start = 0
        for _ in range(self.line - 1):
            start = self.source.find("\n", start) + 1
            if start == 0:
                return ""
        end = self.source.find("\n", start)
        text = self.source[start:] if end < 0 else self.source[start:end]
        return text[:-1] if text.endswith("\r") else text

    def render(self) -> str:
        """Compiler-style text: ``error[kind] at L:C: message``, the line and a caret.

        A long line is quoted as a window of :data:`QUOTE_WIDTH` characters around the column
        (``...`` marks what is left out), so a one-line program of megabytes is not printed whole.
        """
        where = f" at {self.line}:{self.column}" if self.line is not None else ""
        out = [f"error[{self.kind}]{where}: {self.message}"]
        text = self.source_line()
        if text is not None and self.column is not None:
            gutter = f"{self.line} | "
            width = max(1, (self.end_column or self.column + 1) - self.column)
            col = self.column - 1  # 0-based
            if len(text) > QUOTE_WIDTH:
                lo = max(0, min(col - QUOTE_WIDTH // 2, len(text) - QUOTE_WIDTH))
                hi = lo + QUOTE_WIDTH
                shown = ("..." if lo else "") + text[lo:hi] + ("..." if hi < len(text) else "")
                col = col - lo + (3 if lo else 0)
                width = max(1, min(width, hi - (self.column - 1)))
                text = shown
            out.append(gutter + _printable_quote(text))
            out.append(" " * (len(gutter) + col) + "^" * width)
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
