"""``difftape repl``: an interactive session over one growing program (issue 14, item 10).

Lines are read from a terminal (with readline's history and completion of names and functions)
or from a pipe (``printf 'y = x**2\\n:at x=3\\n:grad y\\n' | difftape repl``), so scripts and tests
drive the same session a person does. A line is either program text or a command:

- bindings and function definitions (``y = x**2``, ``f(t) = t + 1``) join the session; binding
  a name again replaces its binding (the session is checked by compiling it, so a cycle or a
  bad shape is refused with its caret, and the session stays as it was);
- a bare expression is evaluated with the session's bindings and values, and printed;
- ``:at x=3`` (several: ``:at x=[1, 2]; y=0.5``) gives inputs values; ``:grad y``, ``:jacobian y``,
  ``:hessian y``, ``:diff y``, ``:check y``, ``:graph [y]`` and ``:eval y`` answer for a name;
  ``:del NAME``, ``:list``, ``:precision N|full``, ``:help`` and ``:quit`` manage the session.

No input ends the session with a traceback: every error is printed as ``error[kind]: ...`` (with a
caret where it has one) and the session goes on. Read from a pipe, the exit status is 2 when any
line failed, else 0.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from difftape.errors import DifftapeError

PROMPT = "dt> "

HELP = """\
Program lines:   y = x**2      f(t) = t**2 + 1      f(x) + y   (a bare expression is printed)
Commands:
  :at NAME=VALUE[; NAME=VALUE...]   give inputs values (any constant expression)
  :eval NAME      :grad NAME      :jacobian NAME      :hessian NAME
  :diff NAME      :check NAME     :graph [NAME]
  :del NAME       :list           :precision N|full   :max-terms N   :help   :quit"""

_COMMANDS = ("at", "eval", "grad", "jacobian", "hessian", "diff", "check", "graph", "del", "list", "precision",
             "max-terms", "help", "quit", "q", "exit")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Session:
    """The program built so far (statements by name, in order), the input values, and how to print."""

    def __init__(self, out: Callable[[str], None], err: Callable[[str], None], *, seed: int = 0,
                 dtype: str = "float64") -> None:
        self.out, self.err = out, err
        self.seed, self.dtype = seed, dtype
        self.statements: dict[str, str] = {}  # name -> its text (a binding or a definition)
        self.at: dict[str, str] = {}  # input name -> its value's text
        self.failed = 0
        self.max_terms: int | None = None  # :max-terms N (None: diff's default)

    # -- the program -----------------------------------------------------------------------------
    def source(self, extra: str = "", of: str | None = None) -> str:
        """The session's program (with ``extra``, a bare expression): only the statements that ``extra``
        or ``of`` use, directly or not, so that an unrelated binding without its values does not stop it."""
        roots = _uses(extra) if extra else {of} if of is not None else set(self.statements)
        needed: list[str] = []
        todo = [n for n in roots if n in self.statements]
        seen = set(todo)
        while todo:
            name = todo.pop()
            needed.append(name)
            for used in _uses(self.statements[name]):
                if used in self.statements and used not in seen:
                    seen.add(used)
                    todo.append(used)
        kept = [text for name, text in self.statements.items() if name in seen]
        return "\n".join([*kept, *([extra] if extra else [])])

    def names(self) -> list[str]:
        """Names worth completing: the session's bindings, functions and inputs, and the built-ins."""
        from difftape.language.compiler import function_names

        return [*self.statements, *self.at, *function_names(), *(":" + c for c in _COMMANDS)]

    def handle(self, line: str) -> bool:
        """Run one line; False when the session should end. Errors are printed, never raised."""
        try:
            return self._handle(line)
        except DifftapeError as err:
            self.failed += 1
            self.err(err.render())
        except (KeyboardInterrupt, EOFError):
            raise
        except RecursionError:
            self.failed += 1
            self.err("error[limit]: the line nests too deeply")
        except MemoryError:
            self.failed += 1
            self.err("error[limit]: the line needs more memory than is available")
        except Exception as err:  # noqa: BLE001 - a session never ends in a traceback
            self.failed += 1
            self.err(f"error[internal]: internal error: {type(err).__name__}: {err} (this is a bug in difftape; "
                     "please report it with the line that caused it)")
        return True

    def _handle(self, line: str) -> bool:
        text = line.strip().removeprefix("\ufeff")
        if not text or text.startswith("#"):
            return True
        if text.startswith(":"):
            return self._command(text[1:].strip())
        self._program_line(line.strip())
        return True

    def _program_line(self, text: str) -> None:
        from difftape.language.compiler import compile_program
        from difftape.language.parser import parse
        from difftape.language.syntax import Assign, Define

        program = parse(text)  # errors point into the line itself
        named = [s for s in program.statements if isinstance(s, (Assign, Define))]
        bare = [s for s in program.statements if not isinstance(s, (Assign, Define))]
        if named:
            trial = dict(self.statements)
            for s in named:
                trial.pop(s.name, None)  # binding a name again replaces it (and keeps the newest last)
                trial[s.name] = s.span.text(text)
            source = "\n".join(trial.values())
            last_binding = next((s.name for s in reversed(named) if isinstance(s, Assign)), None)
            of = last_binding or next((n for n in reversed(trial) if not _is_define(trial[n])), None)
            if of is not None:
                compile_program(source, of=of, dtype=self.dtype)  # refuse what cannot compile
            self.statements = trial
        if bare:
            expr = bare[0].span.text(text)
            self._answer("eval", self.source(expr), None)

    # -- commands --------------------------------------------------------------------------------
    def _command(self, text: str) -> bool:
        word, _, rest = text.partition(" ")
        rest = rest.strip()
        if word in ("quit", "q", "exit"):
            return False
        if word == "help":
            self.out(HELP)
        elif word == "at":
            self._set_values(rest)
        elif word == "list":
            self._list()
        elif word == "del":
            for name in rest.replace(",", " ").split():
                if self.statements.pop(name, None) is None and self.at.pop(name, None) is None:
                    raise DifftapeError("name", f":del {name}: the session has no binding or value named {name!r}")
        elif word == "precision":
            from difftape.io.render import set_precision

            if rest == "full":
                set_precision(None)
            elif rest.isdigit() and int(rest) <= 17:
                set_precision(int(rest))
            else:
                raise DifftapeError("usage", ":precision takes a number of digits (0 to 17) or 'full'")
        elif word == "max-terms":
            if not rest.isdigit() or int(rest) < 1:
                raise DifftapeError(
                    "usage", ":max-terms takes a positive whole number of expression nodes, as in :max-terms 500000"
                )
            self.max_terms = int(rest)
        elif word in ("eval", "grad", "jacobian", "hessian", "diff", "check", "graph"):
            of = rest or None
            if of is not None and not _NAME.fullmatch(of):
                raise DifftapeError("usage", f":{word} takes the name of a binding or input, not {of!r}")
            bindings = [n for n, t in self.statements.items() if not _is_define(t)]
            if not bindings:
                raise DifftapeError("usage", f":{word}: the session has no bindings yet; write one, as in y = x**2")
            if of is None:
                of = bindings[-1]  # the newest binding
            elif of not in bindings:
                from difftape.errors import did_you_mean

                raise DifftapeError("name", f":{word} {of}: the session has no binding named {of!r}"
                                            f"{did_you_mean(of, bindings)}; its bindings: {', '.join(bindings)}")
            self._answer(word, self.source(of=of), of)
        else:
            from difftape.errors import did_you_mean

            raise DifftapeError("usage", f"unknown command ':{word}'{did_you_mean(word, _COMMANDS)}; :help lists them")
        return True

    def _set_values(self, rest: str) -> None:
        from difftape.answers.program import parse_value

        if not rest:
            for name, value in self.at.items():
                self.out(f"{name} = {value}")
            return
        new: dict[str, str] = {}
        for item in _split_items(rest):
            m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(?!=)(.*)$", item, re.S)
            if m is None:
                raise DifftapeError("usage", f":at {item.strip()!r}: write NAME=VALUE, as in :at x=3")
            name, value = m.group(1), m.group(2).strip()
            if not value:
                raise DifftapeError("usage", f":at {name}=: give a value, as in :at {name}=3")
            try:
                parse_value(value, seed=self.seed, dtype=self.dtype)  # a bad value is refused now
            except DifftapeError as err:
                raise DifftapeError(err.kind, f"in :at {name}={value}: {err.message}", err.line, err.column,
                                    err.source if err.source is not None else value, err.end_column) from None
            new[name] = value
        self.at.update(new)

    def _list(self) -> None:
        for text in self.statements.values():
            self.out(text)
        for name, value in self.at.items():
            self.out(f":at {name}={value}")

    def _values(self, source: str, of: str | None) -> dict[str, Any]:
        """The session's values for the names the program has (others are kept for later lines)."""
        from difftape.answers.program import parse_value
        from difftape.language.compiler import compile_program

        known = compile_program(source, of=of, dtype=self.dtype).named_nodes()
        return {n: parse_value(v, seed=self.seed + i, dtype=self.dtype)
                for i, (n, v) in enumerate(self.at.items()) if n in known}

    def _answer(self, command: str, source: str, of: str | None) -> None:
        import warnings

        import numpy as np

        from difftape.answers.program import Program
        from difftape.io import render

        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            try:
                prog = Program(source, of=of, at=self._values(source, of), seed=self.seed, dtype=self.dtype)
                if command == "eval":
                    value = prog.evaluate()
                    self.out(render.eval_text(prog.of, value))
                elif command == "grad":
                    self.out(render.grad_text(prog.grad()))
                elif command == "jacobian":
                    self.out(render.jacobian_text(prog.jacobian()))
                elif command == "hessian":
                    self.out(render.hessian_text(prog.hessian()))
                elif command == "check":
                    res = prog.check()
                    self.out(render.check_text(res, res.rtol, res.atol))
                elif command == "graph":
                    self.out(prog.graph.to_text().rstrip("\n"))
                else:
                    from difftape.transforms.symbolic import derive
                    from difftape.transforms.symbolic.derive import DEFAULT_MAX_TERMS

                    limit = DEFAULT_MAX_TERMS if self.max_terms is None else self.max_terms
                    res = derive(prog.source, of=of, values=prog.at, max_terms=limit, limit_option=":max-terms")
                    self.out(render.diff_text(res))
            except DifftapeError as err:
                if err.source is None and err.line is not None:
                    err.with_source(source)
                raise


def _uses(text: str) -> set[str]:
    """The names a statement or expression uses (and the functions it calls)."""
    from difftape.language.parser import parse
    from difftape.language.syntax import Assign, Call, Define, Name, walk

    names: set[str] = set()
    for stmt in parse(text).statements:
        node = stmt.body if isinstance(stmt, Define) else stmt.value if isinstance(stmt, Assign) else stmt
        for n in walk(node):
            if isinstance(n, Name):
                names.add(n.id)
            elif isinstance(n, Call):
                names.add(n.func)
    return names


def _is_define(text: str) -> bool:
    return bool(re.match(r"\s*[A-Za-z_][A-Za-z0-9_]*\s*\(", text))


def _split_items(text: str) -> list[str]:
    """``x=[1, 2]; y=3`` -> ["x=[1, 2]", " y=3"]: split at top-level ';'."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == ";" and depth <= 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [s for s in items if s.strip()]


# ----------------------------------------------------------------------------------------
# reading lines


def _piped_lines(stream: TextIO) -> Iterator[str]:
    for line in stream:
        yield line.rstrip("\r\n")


def _terminal_lines(session: Session) -> Iterator[str]:
    """Lines typed at a terminal: readline's editing, history and completion when it is there."""
    try:
        import readline
    except ImportError:  # pragma: no cover - Windows without pyreadline
        readline = None  # type: ignore[assignment]
    if readline is not None:
        def complete(text: str, state: int) -> str | None:
            options = [n for n in session.names() if n.startswith(text)]
            return options[state] if state < len(options) else None

        readline.set_completer(complete)
        readline.set_completer_delims(" \t\n()[],+-*/%@<>=!;")
        readline.parse_and_bind("tab: complete")
    while True:
        try:
            yield input(PROMPT)
        except KeyboardInterrupt:
            print("^C (:quit or Ctrl-D to leave)", file=sys.stderr)
        except EOFError:
            print(file=sys.stderr)
            return


def run(stdin: TextIO | None = None, *, interactive: bool | None = None, seed: int = 0,
        dtype: str = "float64") -> int:
    """Run a session on ``stdin`` (a terminal: prompts; a pipe: lines); the exit status."""
    import click

    stdin = sys.stdin if stdin is None else stdin
    if interactive is None:
        interactive = bool(getattr(stdin, "isatty", lambda: False)()) and stdin is sys.stdin
    from difftape.io.render import set_precision

    set_precision(8)  # every session starts at the commands' default (a :precision lasts for its session)
    session = Session(lambda t: click.echo(t), lambda t: click.echo(t, err=True), seed=seed, dtype=dtype)
    if interactive:
        click.echo("difftape session: program lines and :commands (:help lists them; :quit or Ctrl-D to leave)",
                   err=True)
    lines = _terminal_lines(session) if interactive else _piped_lines(stdin)
    for line in lines:
        if not session.handle(line):
            break
    return 0 if interactive or not session.failed else 2
