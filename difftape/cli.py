"""The ``difftape`` command line (click): eval, grad, jacobian, hessian, check and graph.

Every command reads a program (argument, ``-f FILE`` or ``-`` for stdin), binds its
inputs from ``--at``, builds a :class:`difftape.answers.program.Program` and prints one result,
as aligned text for people or one strict JSON object (``--json``) for programs.

Failure is part of the interface: exit 1 means ``check`` found a mismatch, exit 2 a bad
program, option or value, with the message (line:col and a caret) on stderr and, under
``--json``, an ``{"error": ...}`` object on stdout. No input may produce a traceback, so
:class:`DifftapeGroup` runs click in non-standalone mode and maps every exception itself.

Start-up time is measured, so this module itself imports only click (and the package's
``errors``/``__version__``); numpy, the compiler and the renderer are imported inside the
commands. (The package ``__init__`` still imports the engine eagerly: see the CLI requests.)
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn


def _interrupted_hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
    """Ctrl-C before the command's own handler runs (while Python imports click, numpy, ...):
    one line and exit 130, as later, instead of a KeyboardInterrupt traceback."""
    if issubclass(kind, KeyboardInterrupt):
        import os

        try:
            sys.stderr.write("Aborted!\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - nothing is left to tell the user with
            pass
        os._exit(130)
    sys.__excepthook__(kind, value, tb)


# Only where nobody chose a hook (an interactive shell such as IPython has its own).
if sys.excepthook is sys.__excepthook__:
    sys.excepthook = _interrupted_hook

import click  # noqa: E402 - after the hook, so that an interrupt while importing it is handled

from difftape import __version__  # noqa: E402
from difftape.errors import DifftapeError  # noqa: E402

if TYPE_CHECKING:
    from difftape.answers.program import Program

# One instance of each path type for all the options (each click.Path() asks gettext for its name: file
# look-ups at start-up, once per option otherwise).
_FILE_OR_DASH = click.Path(dir_okay=False, allow_dash=True)
_FILE = click.Path(dir_okay=False)
_PATH = click.Path()

#: Environment variable for click's shell completion, fixed so that ``python -m difftape`` uses it too.
COMPLETE_VAR = "_DIFFTAPE_COMPLETE"

#: Defaults of --max-flops and --max-elements (the same as difftape/language/cost.py's; a test keeps them so,
#: and the module is not imported at start-up).
DEFAULT_MAX_FLOPS = 2e10
DEFAULT_MAX_ELEMENTS = 200_000_000
#: Default of diff's --max-terms (difftape/transforms/symbolic/derive.py's DEFAULT_MAX_TERMS; a test keeps them so).
DEFAULT_MAX_TERMS = 50_000

#: Defaults of ``check`` (the contract of program.py).
DEFAULT_RTOL = 1e-6
DEFAULT_ATOL = 1e-8

# ``NAME=VALUE`` at the top level of an --at/--expect text (``==`` is a comparison, not a binding).
_NAMED = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(?!=)")

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _State:
    """What the running command learnt about its options, for the error handler (None: not parsed yet)."""

    json: bool | None = None
    notes: list[str] = []  # said on stderr after the output (a non-finite result, a wrap-around)


# ----------------------------------------------------------------------------------------
# the group: error handling for every command


_LONG_OPTION = re.compile(r"--[A-Za-z][A-Za-z0-9-]*(=.*)?", re.S)


class _Deferred:
    """An option or argument of a subcommand, made when its command's ``params`` are first read: start-up
    makes the ~20 of the command that runs, not the ~200 of every command (a few ms of click)."""

    __slots__ = ("cls", "decls", "attrs")

    def __init__(self, cls: type[click.Parameter], decls: tuple[str, ...], attrs: dict[str, Any]) -> None:
        self.cls, self.decls, self.attrs = cls, decls, attrs

    def make(self) -> click.Parameter:
        return self.cls(self.decls, **self.attrs)


def _deferred(cls: type[click.Parameter], decls: tuple[str, ...], attrs: dict[str, Any]) -> Callable[[Any], Any]:
    def decorator(f: Any) -> Any:
        if isinstance(f, click.Command):
            f.params.append(cls(decls, **attrs))
        else:
            f.__dict__.setdefault("__click_params__", []).append(_Deferred(cls, decls, attrs))
        return f

    return decorator


def _option(*decls: str, **attrs: Any) -> Callable[[Any], Any]:
    """``click.option`` for a :class:`ProgramCommand`: the Option is made when the command needs it."""
    return _deferred(click.Option, decls, attrs)


def _argument(*decls: str, **attrs: Any) -> Callable[[Any], Any]:
    """``click.argument`` for a :class:`ProgramCommand`, likewise."""
    return _deferred(click.Argument, decls, attrs)


class ProgramCommand(click.Command):
    """A command whose PROGRAM argument may start with '-' (every loss ``-sum(...)``), written as it is.

    Before click parses the words, each one that is not one of the command's options (nor the value
    of one) is the program, even if it starts with '-'; it is moved behind a ``--``. Options after a
    ``--`` of the user's are still options when they are known ones. A word that looks like a long
    option but is none (``--x``) stays an option, and its error says how to pass such a program.

    Its parameters may be :class:`_Deferred` (``_option``, ``_argument``): made on the first read of
    ``params``, in order.
    """

    @property  # type: ignore[override]
    def params(self) -> list[click.Parameter]:
        if self._deferred:
            self._params = [p.make() if p.__class__ is _Deferred else p for p in self._params]
            self._deferred = False
        return self._params

    @params.setter
    def params(self, value: list[Any]) -> None:
        self._params = value
        self._deferred = any(p.__class__ is _Deferred for p in value)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_program = any(isinstance(p, click.Argument) and p.name == "program" for p in self.params)
        if takes_program and not ctx.resilient_parsing:
            args = _program_behind_dashes(self.get_params(ctx), list(args))
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as err:
            if err.option_name.startswith("--"):
                err.message = err.message.rstrip(".") + (
                    "; if it is the program, put the program after `--`, and the options before it "
                    f"(difftape {ctx.info_name} --at ... -- \"{err.option_name}\")")
            raise


def _program_behind_dashes(params: Iterable[click.Parameter], args: list[str]) -> list[str]:
    """``args`` with the words that are no option (nor an option's value) moved behind one ``--``."""
    takes_value: dict[str, bool] = {}
    for p in params:
        if isinstance(p, click.Option):
            for o in (*p.opts, *p.secondary_opts):
                takes_value[o] = not p.is_flag and not p.count
    options: list[str] = []
    words: list[str] = []
    after_dashes = False
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a == "--" and not after_dashes:
            after_dashes = True
            continue
        head = a.split("=", 1)[0] if a.startswith("--") else a
        if head in takes_value:
            options.append(a)
            if takes_value[head] and head == a:
                if i == len(args) or args[i] in takes_value:
                    raise click.BadOptionUsage(head, f"Option '{head}' requires an argument.")
                options.append(args[i])  # its value, whatever it starts with (--at -1)
                i += 1
        elif a == "-" or not a.startswith("-") or after_dashes:
            words.append(a)
        elif _LONG_OPTION.fullmatch(a):
            options.append(a)  # an unknown option: click says so (and how to pass such a program)
        else:
            words.append(a)  # -sum(y*log(p)), -x**2, -2*x: a program
    return options + ["--", *words] if words else options


class DifftapeGroup(click.Group):
    """A click group whose ``main`` turns every failure into exit 2 and a message, never a traceback."""

    command_class = ProgramCommand

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; in standalone mode (the default) this exits with the status code."""
        complete_var = complete_var or COMPLETE_VAR
        if not standalone_mode:
            return click.Group.main(self, args, prog_name, complete_var, standalone_mode=False, **extra)
        argv = list(sys.argv[1:] if args is None else args)

        def call() -> Any:
            return click.Group.main(self, argv, prog_name, complete_var, standalone_mode=False, **extra)

        sys.exit(run_guarded(call, argv))

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; Ctrl-C goes past click (which would print an empty line first) to run_guarded."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _InterruptedError() from None


class _InterruptedError(Exception):
    """Ctrl-C during a command, carried past click: exit 130 with one line."""


def _wants_json(argv: Sequence[str]) -> bool:
    """Whether errors should also go to stdout as JSON: the parsed flag, else ``--json`` before ``--``."""
    if _State.json is not None:
        return _State.json
    return "--json" in argv  # (options may follow a `--` too)


def _fail(text: str, payload: dict[str, Any], argv: Sequence[str]) -> int:
    click.echo(text, err=True)
    if _wants_json(argv):
        from difftape.io.render import dumps

        click.echo(dumps(payload))
    return 2


def run_guarded(call: Callable[[], Any], argv: Sequence[str]) -> int:
    """Run ``call`` (click in non-standalone mode) and map its outcome to an exit status.

    0 success, 1 a mismatch (``check`` returns it), 2 any error: a DifftapeError, a click
    usage error, or, as a last resort, any other exception (reported as ``internal``).
    """
    try:
        return _run_guarded(call, argv)
    except Exception as err:  # noqa: BLE001 - reporting the error failed too: say so in the plainest way
        try:
            sys.stderr.write(f"error[internal]: could not report an error ({type(err).__name__})\n")
        except Exception:  # noqa: BLE001 - nothing is left to tell the user with
            pass
        return 2


def _run_guarded(call: Callable[[], Any], argv: Sequence[str]) -> int:
    from click.exceptions import Abort

    _State.json = None
    try:
        rv = call()
        return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    except DifftapeError as err:
        return _fail(err.render(), {"error": err.to_json()}, argv)
    except click.ClickException as err:
        err.show()
        return _fail_quiet({"kind": "usage", "message": err.format_message(), "line": None, "column": None}, argv)
    except Abort:
        _say("Aborted!")
        return 130
    except (KeyboardInterrupt, _InterruptedError):
        _say("Aborted!")
        return 130
    except (BrokenPipeError, _OutputClosedError):
        _silence_stdout()
        return 0
    except ModuleNotFoundError as err:
        msg = (f"difftape's dependency {err.name!r} is not installed for this Python ({sys.executable}); "
               "install difftape with pip (pip install .), which brings numpy and click")
        return _fail(f"error[environment]: {msg}", {"error": {"kind": "environment", "message": msg,
                                                              "line": None, "column": None}}, argv)
    except MemoryError:
        msg = "the program needs more memory than is available; make its arrays smaller"
        return _fail(f"error[limit]: {msg}", {"error": {"kind": "limit", "message": msg, "line": None,
                                                        "column": None}}, argv)
    except Exception as err:  # noqa: BLE001 - the last resort: never show a traceback
        msg = (f"internal error: {type(err).__name__}: {err} (this is a bug in difftape; "
               "please report it with the command that caused it)")
        return _fail(f"error[internal]: {msg}", {"error": {"kind": "internal", "message": msg, "line": None,
                                                           "column": None}}, argv)


def _say(text: str) -> None:
    """One line on stderr, if stderr can take it."""
    try:
        click.echo(text, err=True)
    except Exception:  # noqa: BLE001 - nothing is left to tell the user with
        pass


def _fail_quiet(error: dict[str, Any], argv: Sequence[str]) -> int:
    """Exit 2 for an error whose text is already on stderr; the JSON object goes to stdout if asked."""
    if _wants_json(argv):
        from difftape.io.render import dumps

        click.echo(dumps({"error": error}))
    return 2


def _silence_stdout() -> None:
    """After a closed pipe (``difftape ... | head``), point stdout at devnull so the exit flush is quiet."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


# ----------------------------------------------------------------------------------------
# shared options


def _names(_ctx: click.Context, _param: click.Parameter, values: Iterable[str]) -> tuple[str, ...]:
    """Flatten repeatable, comma-separated name lists (``--wrt a,b --wrt c``), keeping order, once each."""
    out: list[str] = []
    for value in values:
        for name in value.split(","):
            name = name.strip()
            if not name:
                raise click.BadParameter(f"empty name in {value!r}; write names separated by commas, e.g. a,b")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise click.BadParameter(f"{name!r} is not a name")
            if name not in out:
                out.append(name)
    return tuple(out)


def _precision(_ctx: click.Context, _param: click.Parameter, value: str) -> int | None:
    """--precision N (0 to 17) or 'full' (None: round-trip digits)."""
    if value == "full":
        return None
    try:
        digits = int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a number of digits nor 'full'") from None
    if not 0 <= digits <= 17:
        raise click.BadParameter(f"{digits} is not between 0 and 17 (or 'full')")
    return digits


def _tolerance(_ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    import math

    if value is None:
        return None
    if not math.isfinite(value) or value < 0:
        raise click.BadParameter(f"{value} is not a finite number >= 0")
    return value


_PROGRAM_HELP = (
    "PROGRAM is the program text; '-' (or -f -) reads it from stdin. "
    "A program may start with '-' (difftape grad \"-sum(y*log(p))\" --at ...); a word that looks like an "
    "option goes after '--' (difftape eval --at x=2 -- \"--x\"), and options may follow it."
)


def _program_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command takes: the program, --at, --of, --seed, --dtype, --json."""
    decorators = [
        _argument("program", required=False, metavar="PROGRAM"),
        _option("-f", "--file", "file", type=_FILE_OR_DASH, metavar="FILE",
                     help="Read the program from FILE ('-' for stdin) instead of the PROGRAM argument."),
        _option("--at", "at", multiple=True, metavar="NAME=VALUE",
                     help="Value of an input, any constant expression: 2, [1,2], randn(3), pi/4. Repeatable. "
                          "'--at VALUE' (no name) when exactly one input is unbound. The i-th --at draws its "
                          "random numbers with seed SEED+i."),
        _option("--of", "of", metavar="NAME", help="The target: the name whose value (and derivatives) to "
                                                        "compute. Default: the program's bare expression."),
        _option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Seed of randn/rand, so that results are reproducible."),
        _option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True,
                     help="Float precision of the program's arrays."),
        _option("--json", "as_json", is_flag=True,
                     help="Print one strict JSON object on stdout (errors too: {\"error\": {...}})."),
        _option("--precision", "precision", default="8", show_default=True, metavar="N|full",
                     callback=_precision,
                     help="Digits of the numbers in text output (numpy's printing rules); 'full' shows every "
                          "digit it takes to read a float back exactly. JSON is always exact."),
        _option("--max-flops", "max_flops", type=click.FloatRange(min=0), default=DEFAULT_MAX_FLOPS,
                     show_default=True, metavar="N",
                     help="Refuse (error[limit]) work estimated, from the static shapes before running, at more "
                          "than N floating-point operations (a Jacobian counts one pass per target element)."),
        _option("--max-elements", "max_elements", type=click.IntRange(min=0), default=DEFAULT_MAX_ELEMENTS,
                     show_default=True, metavar="N",
                     help="Refuse (error[limit]) programs whose arrays would hold more than N elements in "
                          "memory at once (every value, gradients and Jacobian/Hessian results included)."),
    ]
    for decorate in reversed(decorators):
        f = decorate(f)
    return f


def _derivative_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--wrt and --watch, shared by grad, jacobian, hessian and check."""
    f = _option("--watch", "watch", multiple=True, callback=_names, metavar="NAMES",
                     help="Also differentiate with respect to these consts (comma list, repeatable).")(f)
    f = _option("--wrt", "wrt", multiple=True, callback=_names, metavar="NAMES",
                     help="Differentiate only with respect to these names (comma list, repeatable). "
                          "Default: every variable, plus watched consts.")(f)
    return f


_BATCH_HELP = (
    "Many points at once: read NDJSON from stdin (or --at-file), one JSON object of input values a line "
    "({\"x\": 0.5} or {\"x\": [1, 2], \"W\": [[1, 0], [0, 1]]}; numbers, nested lists and the strings "
    "\"nan\", \"inf\", \"-inf\"), and write one JSON line per input line, in order, with the keys of --json "
    "(batch output is always JSON). --at values and the program's leaf bindings are shared by all points "
    "unless a line gives its own. A bad line gets {\"error\": {\"kind\", \"message\", \"line\", "
    "\"column\"}} on its output line (line: its line number in the input) and the other lines still run. "
    "Exit status: 0 if every line succeeded, 2 if any failed."
)


_CHECK_BATCH_HELP = _BATCH_HELP.replace(
    "Exit status: 0 if every line succeeded, 2 if any failed.",
    "Each line is the object check --json prints for that point. Exit status: 1 if any point mismatched, else 2 if "
    "any line failed (a bad line, or a point where there is no derivative), else 0.")


def _batch_options(f: Callable[..., Any], batch_help: str = _BATCH_HELP) -> Callable[..., Any]:
    """--batch, --at-file, --ignore-extra and --echo, shared by every command that takes points."""
    f = _option("--echo", "echo", is_flag=True,
                     help="With --batch: copy each input point into its output line, under \"at\".")(f)
    f = _option("--ignore-extra", "ignore_extra", is_flag=True,
                     help="With --batch: ignore keys of a line that name nothing of the program (default: the "
                          "line is an error).")(f)
    f = _option("--at-file", "at_file", type=_FILE_OR_DASH, metavar="F",
                help="Read the --batch points from the file F instead of stdin (implies --batch): NDJSON, or "
                     "columns of points: .npy (a structured array, a field per input), .npz (an array per "
                     "input), .parquet or .arrow (a column per input; arrays as fixed-size lists).")(f)
    f = _option("--batch", "batch", is_flag=True, help=batch_help)(f)
    return f


_OUTPUT_HELP = (
    "With --batch: write the results into the directory DIR, one file per partition (an input file, or a block "
    "of a big one), in the input's format: NDJSON lines, or Parquet with one column 'result' of those lines. "
    "A path ending in .npy, .npz, .parquet or .arrow that is not an existing directory is one columnar FILE "
    "instead (the points from a columnar --at-file): columns value, grad.NAME (or jacobian.NAME) and, when a "
    "point failed, error. Each file is written under a temporary name and then renamed."
)
_SCHEDULER_HELP = (
    "With --batch and --output: answer the partitions on Dask (pip install \"difftape[dask]\"): 'local' starts a "
    "LocalCluster on 127.0.0.1, anything else is the address of a running scheduler (tcp://HOST:8786). The files "
    "must be readable, and DIR writable, at the same paths on every worker."
)


def _distributed_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--output, --scheduler and --workers: a batch over many files, in this process or on Dask."""
    f = _option("--workers", "workers", type=click.IntRange(min=1), metavar="N",
                     help="Number of worker processes of --scheduler local (default: one per core).")(f)
    f = _option("--scheduler", "scheduler", metavar="ADDRESS", help=_SCHEDULER_HELP)(f)
    f = _option("--output", "output", type=_PATH, metavar="DIR|FILE", help=_OUTPUT_HELP)(f)
    return f


def _unconnected_option(default: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--unconnected: what a derivative w.r.t. a name the target does not depend on is (null or zeros)."""
    return _option("--unconnected", type=click.Choice(["none", "zero"]), default=default, show_default=True,
                        help="Derivative w.r.t. a name the target does not depend on: none (null) or zero (zeros).")


# ----------------------------------------------------------------------------------------
# reading the program and its inputs


def _read_source(program: str | None, file: str | None) -> str:
    if program is not None and file is not None:
        raise click.UsageError("give the program either as the PROGRAM argument or with -f FILE, not both")
    if program is None and file is None:
        raise click.UsageError("no program: give it as the PROGRAM argument, with -f FILE, or '-' to read stdin")
    from difftape.language.parser import MAX_PROGRAM_CHARS

    limit = 4 * MAX_PROGRAM_CHARS  # bytes: UTF-8 takes up to 4 a character; the parser counts characters
    if (program if file is None else file) == "-":
        stream = _stdin("give the program as an argument or with -f FILE")
        try:
            data = stream.read(limit + 1)
        except OSError as err:
            raise DifftapeError("io", f"cannot read the program from stdin: {err.strerror or err}") from None
        name = "stdin"
    elif file is not None:
        try:
            with open(file, "rb") as fh:
                data = fh.read(limit + 1)
        except OSError as err:
            raise DifftapeError("usage", f"cannot read {file}: {err.strerror or err}") from None
        name = file
    else:
        return program.removeprefix("\ufeff")  # type: ignore[union-attr]  # (a BOM pasted in)
    if len(data) > limit:
        raise DifftapeError("limit", f"{name} holds more than {limit:,} bytes: too long for a program "
                                     f"(the limit is {MAX_PROGRAM_CHARS:,} characters)")
    try:
        return data.decode("utf-8-sig")  # a byte-order mark at the start (editors on Windows) is not text
    except UnicodeDecodeError as err:
        raise DifftapeError("usage", f"{name} is not UTF-8 text (bad byte at offset {err.start})") from None


def _stdin(instead: str) -> Any:
    """The binary stdin, or the ``io`` error when there is none (``difftape eval - <&-``)."""
    try:
        return click.get_binary_stream("stdin")
    except (RuntimeError, AttributeError, ValueError):
        raise DifftapeError("io", f"stdin is closed: {instead}, or open stdin") from None


def _split_named(item: str) -> tuple[str | None, str]:
    """``"x=2"`` -> ("x", "2"); ``"2"`` -> (None, "2"); ``"x==2"`` -> (None, "x==2")."""
    m = _NAMED.match(item)
    if m is None:
        return None, item
    return m.group(1), item[m.end():]


def _in_option(err: DifftapeError, option: str, item: str, text: str) -> DifftapeError:
    """Say which option a value error comes from; its line:col and caret stay those of the value text."""
    return DifftapeError(err.kind, f"in {option} {item!r}: {err.message}", err.line, err.column,
                         err.source if err.source is not None else text, err.end_column)


def _parse_at(items: Sequence[str], seed: int, dtype: str) -> tuple[dict[str, Any], list[Any]]:
    """The --at options as {name: array} plus the values given without a name."""
    from difftape.answers.program import parse_value

    named: dict[str, Any] = {}
    bare: list[Any] = []
    for i, item in enumerate(items):
        name, text = _split_named(item)
        if name is not None and name in named:
            raise DifftapeError("usage", f"--at {name}=... is given twice")
        try:
            value = parse_value(text, seed=seed + i, dtype=dtype)
        except DifftapeError as err:
            raise _in_option(err, "--at", item, text) from None
        if name is None:
            bare.append(value)
        else:
            named[name] = value
    if len(bare) > 1:
        raise DifftapeError("usage", "only one --at VALUE may leave out the name; write --at NAME=VALUE")
    return named, bare


def _at_values(opts: Mapping[str, Any], seed: int | None = None) -> dict[str, Any]:
    """The --at values by name; a nameless --at is under the key "" (it binds the one unbound input)."""
    named, bare = _parse_at(opts["at"], opts["seed"] if seed is None else seed, opts["dtype"])
    return {**named, "": bare[0]} if bare else named


def _program(source: str, opts: Mapping[str, Any]) -> Program:
    """Compile the program with its --at values."""
    from difftape.answers.program import Program

    with _located(source):
        return Program(source, of=opts["of"], at=_at_values(opts), seed=opts["seed"], dtype=opts["dtype"])


def _batch_program(source: str, opts: Mapping[str, Any], seed: int | None = None) -> Any:
    """The BatchProgram of a --batch run (compiled once per input signature) with its --at values."""
    from difftape.answers.batch import BatchProgram

    seed = opts["seed"] if seed is None else seed
    return BatchProgram(source, of=opts["of"], at=_at_values(opts, seed), seed=seed, dtype=opts["dtype"])


def _wrt_options(opts: Mapping[str, Any]) -> dict[str, Any]:
    """--wrt, --watch and --unconnected as the answers take them (wrt None: every variable)."""
    options = {"wrt": list(opts["wrt"]) or None, "watch": tuple(opts["watch"])}
    if "unconnected" in opts:
        options["unconnected"] = opts["unconnected"]
    return options


@contextmanager
def _located(source: str) -> Iterator[None]:
    """Attach the program text to positioned errors that lack one, so that render() can show the caret."""
    try:
        yield
    except DifftapeError as err:
        if err.source is None and err.line is not None:
            err.with_source(source)
        raise


def _expectations(items: Sequence[str]) -> dict[str, str] | None:
    """--expect NAME=EXPR / --expect EXPR as the ``expect`` mapping of Program.check ("" = the only input)."""
    out: dict[str, str] = {}
    for item in items:
        name, text = _split_named(item)
        key = name or ""
        if key in out:
            what = f"--expect {name}=..." if name else "--expect EXPR without a name"
            raise DifftapeError("usage", f"{what} is given twice")
        if not text.strip():
            raise DifftapeError("usage", f"--expect {item!r} has no expression")
        out[key] = text
    return out or None


# ----------------------------------------------------------------------------------------
# running a command


def _check_cost(prog: Any, command: str, opts: Mapping[str, Any]) -> None:
    """Refuse a command whose estimated work or memory is over --max-flops / --max-elements."""
    from difftape.language.cost import check_cost

    if command == "graph":  # it only compiles
        return
    wrt = list(opts.get("wrt") or ()) or None
    if wrt is not None or opts.get("watch"):
        wrt = list(dict.fromkeys((wrt or list(prog.graph.variables)) + list(opts.get("watch") or ())))
    extra: dict[str, Any] = {}
    if command == "check":
        from difftape.answers.checker import FULL_LIMIT

        extra = {"check_mode": opts.get("mode", "auto"), "directions": int(opts.get("directions", 3)),
                 "order": int(opts.get("order", 1)), "full_limit": FULL_LIMIT}
    check_cost(prog.graph, command, wrt=wrt, max_flops=opts.get("max_flops", DEFAULT_MAX_FLOPS),
               max_elements=opts.get("max_elements", DEFAULT_MAX_ELEMENTS), **extra)


def _execute(opts: Mapping[str, Any], action: Callable[[Program], tuple[dict[str, Any], str, int]],
             command: str = "eval") -> int:
    """Read, compile, run ``action`` and print its result; numpy warnings are off (non-finite values are values)."""
    import warnings

    import numpy as np

    from difftape.io.render import dumps

    _State.json = bool(opts["as_json"])
    from difftape.io.render import set_precision

    set_precision(opts.get("precision", 8))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        source = _read_source(opts["program"], opts["file"])
        prog = _program(source, opts)
        with _located(source):
            _check_cost(prog, command, opts)
        _settle()
        _State.notes = []
        with _located(source):
            payload, text, code = action(prog)
        out = dumps(payload) if opts["as_json"] else text
    _write_out(_printable(out) + "\n")
    for note in _State.notes:
        _say(note)
    return code


def _note(items: Iterable[tuple[str, Any]]) -> None:
    """Notes on stderr for the non-finite elements of a result's (label, array) pairs."""
    import numpy as np

    items = list(items)
    if all(getattr(v, "dtype", None) is not None and v.dtype.kind == "f" and np.isfinite(v).all() for _, v in items):
        return  # nothing to say (the common case; the notes module is not imported for it)
    from difftape.answers.notes import nonfinite_notes

    _State.notes += nonfinite_notes(items)


class _OutputClosedError(Exception):
    """The reader of stdout went away (``difftape ... | head``): not a failure, the run ends with 0.

    Not an OSError, so that click (which turns EPIPE into exit 1) lets it through to run_guarded."""


@contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) off while a write runs, so that output ends at a whole line; an
    interrupt that came meanwhile is raised (as KeyboardInterrupt) when the write is done.

    (``_signal``, the C module Python starts with: ``signal`` itself builds its enums on import.)"""
    import _signal as signal

    block = getattr(signal, "pthread_sigmask", None)
    if block is None:  # pragma: no cover - Windows: no signal masks
        yield
        return
    old = block(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        block(signal.SIG_SETMASK, old)  # a pending SIGINT is delivered here


def _write_out(text: str) -> None:
    """Write ``text`` to stdout whole and flush it: a closed pipe ends the run quietly with 0, any other
    write failure (a full disk: ``>/dev/full``) is an ``io`` error."""
    try:
        stream = sys.stdout
        if stream is None:
            raise ValueError("stdout is closed")
        with _sigint_held():
            stream.write(text)
            stream.flush()
    except BrokenPipeError:
        _silence_stdout()
        raise _OutputClosedError() from None
    except (OSError, ValueError, RuntimeError, AttributeError) as err:
        _silence_stdout()
        why = getattr(err, "strerror", None) or str(err) or type(err).__name__
        raise DifftapeError("io", f"cannot write the output to stdout: {why}") from None


def _settle() -> None:
    """Move what start-up and compiling made (modules, the syntax tree, the graph) out of the
    cyclic collector's sight: they live until exit, and rescanning them at every collection
    while the program runs made long programs superlinear."""
    import gc

    gc.freeze()


def _batch_mode(opts: Mapping[str, Any]) -> bool:
    return (bool(opts.get("batch")) or opts.get("at_file") is not None or opts.get("scheduler") is not None
            or opts.get("output") is not None)


@contextmanager
def _points_stream(opts: Mapping[str, Any]) -> Iterator[Any]:
    """The binary stream of --batch points: the file of --at-file F, else stdin."""
    path = opts.get("at_file")
    if path is None or path == "-":
        yield _stdin("give the --batch points with --at-file F")
        return
    try:
        fh = open(path, "rb")
    except OSError as err:
        raise DifftapeError("usage", f"cannot read {path}: {err.strerror or err}") from None
    with fh:
        yield fh


def _execute_batch(opts: Mapping[str, Any], command: str) -> int:
    """--batch: compile once per input signature, answer NDJSON lines vectorised, block by block as they come."""
    import warnings

    import numpy as np

    from difftape.answers.batch import stream_ndjson

    columnar = _columnar_route(opts)
    if columnar is not None:
        return _execute_columnar(opts, command, columnar or None)
    if _partitioned(opts):
        return _execute_partitioned(opts, command)
    _State.json = True  # batch output is always JSON, errors of the whole command too
    points_from_stdin = opts.get("at_file") in (None, "-")
    program_from_stdin = (opts["program"] if opts["file"] is None else opts["file"]) == "-"
    if points_from_stdin and program_from_stdin:
        raise click.UsageError("--batch reads its points from stdin, so the program cannot come from stdin too: "
                               "give it as an argument or with -f FILE, or give the points with --at-file F")
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        source = _read_source(opts["program"], opts["file"])
        with _located(source):
            prog = _batch_program(source, opts)
            options: dict[str, Any] = {"ignore_extra": bool(opts.get("ignore_extra")), "echo": bool(opts.get("echo"))}
            stats = None
            if command == "check":
                checker, stats = _batch_checker(prog, opts)
                options["answer_block"] = lambda points, bad, sink: checker.answer(points, bad, sink, stats)
            elif command in ("hessian", "jvp", "vjp", "hvp"):
                options["pointwise"] = _pointwise(command, opts, prog.base)
            elif command != "eval":
                options.update(_wrt_options(opts))
                prog.base.sources(options["wrt"], options["watch"])  # a bad --wrt fails before reading
            _check_cost(prog.base, command, opts)  # the work of one point
        write = _write_out  # whole lines: each block's text is written with Ctrl-C held off

        with _points_stream(opts) as stream, _points_bar(command, stream) as progress:
            read = getattr(stream, "read1", stream.read)
            report = stream_ndjson(prog, read, write, command, on_block=progress.on_block, **options)
    if stats is not None:
        return _check_batch_status(stats, report.lines)
    if report.failed:
        line, err = report.first_error  # type: ignore[misc]
        click.echo(f"difftape: {report.failed} of {report.lines} lines failed; the first, line {line}: "
                   f"error[{err.kind}]: {err.message}", err=True)
        return 2
    return 0


def _check_options(opts: Mapping[str, Any]) -> dict[str, Any]:
    """The options of one check (as Program.check takes them) from the command line's."""
    return {"expect": _expectations(opts["expect"]), "rtol": opts["rtol"], "atol": opts["atol"],
            "wrt": list(opts["wrt"]) or None, "watch": tuple(opts["watch"]), "mode": opts["mode"],
            "directions": opts["directions"], "order": int(opts["order"])}


def _batch_checker(prog: Any, opts: Mapping[str, Any]) -> tuple[Any, Any]:
    """The BatchChecker of ``check --batch`` (its options checked before any point is read) and its counts."""
    from difftape.answers.batch_check import BatchChecker, CheckStats

    if opts.get("plot_file"):
        raise click.UsageError("--plot draws one point's check: it does not go with --batch or --points")
    return BatchChecker(prog, **_check_options(opts)), CheckStats()


def _check_batch_status(stats: Any, lines: int, unit: str = "line") -> int:
    """The exit status of ``check --batch`` (or ``--points``: ``unit`` "point"), with one line on stderr
    for what went wrong."""
    if stats.mismatched:
        click.echo(f"difftape: MISMATCH at {stats.mismatched:,} of {stats.checked:,} points checked; the first, {unit} "
                   f"{stats.first_mismatch:,}", err=True)
    if stats.failed:
        number, err = stats.first_error
        click.echo(f"difftape: {stats.failed:,} of {lines:,} {unit}s failed; the first, {unit} {number:,}: "
                   f"error[{err.kind}]: {err.message}", err=True)
    return stats.exit_status()


def _execute_check_points(opts: Mapping[str, Any]) -> int:
    """``check --points N``: N random points, checked vectorised; a summary (or, with --batch, one JSON line each)."""
    import warnings

    import numpy as np

    from difftape.answers import batch_check as bc
    from difftape.io.render import check_json, check_points_json, check_points_text, dumps, json_column, set_precision

    as_lines = bool(opts.get("batch"))
    if opts.get("at_file") is not None or opts.get("output") is not None or opts.get("scheduler") is not None \
            or opts.get("workers") is not None:
        raise click.UsageError("--points N draws its points: it does not go with --at-file, --output or --scheduler")
    if opts.get("ignore_extra") or opts.get("echo"):
        raise click.UsageError("--ignore-extra and --echo are for --batch points read from NDJSON; the lines of "
                               "--points --batch always hold their point under \"at\"")
    _State.json = bool(opts["as_json"]) or as_lines
    set_precision(opts.get("precision", 8))
    count, seed = int(opts["points"]), int(opts["seed"])
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        source = _read_source(opts["program"], opts["file"])
        with _located(source):
            prog = _batch_program(source, opts, seed)
            checker, stats = _batch_checker(prog, opts)
            bc.check_points_limit(prog, count)
            from difftape.answers.program import Program

            first, _ = bc.draw_points(prog, 1, seed)
            one = Program(source, of=opts["of"], at={**prog.at, **{k: v[0] for k, v in first.values.items()}},
                          seed=seed, dtype=opts["dtype"])
            _check_cost(one, "check", opts)  # the work of one point
        _settle()
        rng = bc.points_rng(seed)
        shapes = bc.drawn_shapes(prog)
        per = max(1, sum(int(np.prod(s)) for s in shapes.values()))
        chunk = max(1, min(1 << 16, (1 << 22) // per))
        worst_at: dict[str, Any] = {}
        for lo in range(0, count, chunk):
            hi = min(count, lo + chunk)
            group, _ = bc.draw_points(prog, count, seed, lo, hi, rng)
            out: list[str] = [""] * (hi - lo) if as_lines else []

            def point(line: int, group: Any = group, lo: int = lo) -> dict[str, Any]:
                return {n: v[line - lo] for n, v in group.values.items()}

            def verdict(line: int, res: Any, score: float, point: Any = point, out: list[str] = out,
                        lo: int = lo) -> None:
                if stats.verdict(line + 1, res, score) and not as_lines:
                    worst_at.clear()
                    worst_at.update(point(line))
                if as_lines:
                    out[line - lo] = dumps({**check_json(res, res.rtol, res.atol), "at": point(line)}) + "\n"

            def fail(lines: Any, err: Any, point: Any = point, out: list[str] = out, lo: int = lo) -> None:
                for line in lines:
                    stats.error(line + 1, err)
                    if as_lines:
                        out[line - lo] = dumps({"error": {"kind": err.kind, "message": err.message, "line": line + 1,
                                                          "column": None}, "at": point(line)}) + "\n"

            def verdicts(lines: Any, block: Any, group: Any = group, out: list[str] = out, lo: int = lo) -> None:
                worst = stats.block(lines + 1, block)
                if worst is not None and not as_lines:
                    worst_at.clear()
                    worst_at.update({n: v[int(lines[worst]) - lo] for n, v in group.values.items()})
                if as_lines:
                    rows = lines - lo
                    at = [json_column(v[rows]) for v in group.values.values()]
                    keys = [dumps(n) for n in group.values]
                    for line, text, *values in zip(lines.tolist(), block.json_lines(), *at):
                        point = ", ".join(f"{k}: {v}" for k, v in zip(keys, values))
                        out[line - lo] = f'{text[:-2]}, "at": {{{point}}}}}\n'

            stats.points += hi - lo
            with _located(source):
                checker.check_group(group, verdict, fail, verdicts)
            if as_lines:
                _write_out(_printable("".join(out)))
    if as_lines:
        return _check_batch_status(stats, count, "point")
    summary = bc.PointsSummary(prog.of, count, seed, shapes, checker.rtol, checker.atol, checker.order, stats,
                               worst_at or None)
    text = dumps(check_points_json(summary)) if opts["as_json"] else check_points_text(summary)
    _write_out(_printable(text) + "\n")
    return stats.exit_status()


def _columnar_output(opts: Mapping[str, Any]) -> str | None:
    """--output FILE.npy|.npz|.parquet|.arrow (a path of that name that is not an existing directory)."""
    import os

    out = opts.get("output")
    if out is None or os.path.isdir(out):
        return None
    from difftape.answers.columnar import file_format

    return out if file_format(out) is not None else None


def _columnar_route(opts: Mapping[str, Any]) -> str | None:
    """Whether a batch goes through difftape.answers.columnar: None if not, else the output FILE ("" for
    stdout). Columnar output, or a .npy/.npz/.arrow input; Parquet to stdout or a DIR stays partitioned."""
    out = _columnar_output(opts)
    if out is not None:
        return out
    path = opts.get("at_file")
    if path is None or path == "-" or opts.get("output") is not None or opts.get("scheduler") is not None:
        return None
    import os
    from glob import has_magic

    from difftape.answers.columnar import file_format

    if has_magic(path) and not os.path.isfile(path):
        return None  # a glob: partitions
    return "" if file_format(path) in ("npy", "npz", "arrow") else None


def _execute_columnar(opts: Mapping[str, Any], command: str, out_file: str | None) -> int:
    """--batch over a columnar file (difftape.answers.columnar): its columns are the batched inputs, answered
    vectorised; the results go to stdout as JSON lines, or into the columnar --output FILE."""
    import warnings

    import numpy as np

    from difftape.answers import columnar as col
    from difftape.answers.batch import VECTORISED, JsonLines

    _State.json = True
    path = opts.get("at_file")
    if command not in VECTORISED:
        raise click.UsageError(f"{command} reads its --batch points from NDJSON (or Parquet); columnar files "
                               f"(--at-file F.npy, --output F.npy) are answered by {', '.join(VECTORISED)}")
    if opts.get("scheduler") is not None or opts.get("workers") is not None:
        raise click.UsageError("--output FILE writes one columnar file in this process: --scheduler and --workers "
                               "answer partitions into --output DIR")
    if path is None or path == "-" or col.file_format(path) is None:
        raise click.UsageError(f"--output {out_file} is a columnar file, so its points come from one too: "
                               "--at-file F.npy|.npz|.parquet|.arrow (for NDJSON points give --output DIR)")
    if opts.get("echo"):
        raise click.UsageError("--echo copies NDJSON points into their lines; a columnar file's rows are in "
                               "the file already, in the same order as the results")
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        source = _read_source(opts["program"], opts["file"])
        with _located(source):
            prog = _batch_program(source, opts)
            options: dict[str, Any] = {}
            if command != "eval":
                options = _wrt_options(opts)
                prog.base.sources(options["wrt"], options["watch"])  # a bad --wrt fails before reading
            _check_cost(prog.base, command, opts)  # the work of one point
        if out_file is not None:
            col.check_output(out_file)
        columns = col.read_columns(path, prog.required)
        n = len(next(iter(columns.values())))
        values, problem = col.prepare(prog, columns, ignore_extra=bool(opts.get("ignore_extra")))
        if out_file is None:  # JSON lines on stdout, block by block: whole lines
            failed, first = 0, None
            for lo in range(0, n, col.TEXT_BLOCK):
                hi = min(n, lo + col.TEXT_BLOCK)
                sink = JsonLines(hi - lo, command, prog.of, offset=lo)
                if problem is not None:
                    sink.fail(range(hi - lo), problem)
                else:
                    col.answer_rows(prog, values, lo, hi, command, sink.emit, sink.fail, **options)
                _write_out(sink.text())
                failed += sink.failed
                first = first or sink.first_error
        else:
            if problem is not None:
                raise problem
            rows = col.ColumnSink(n, command)
            col.answer_rows(prog, values, 0, n, command, rows.emit, rows.fail, **options)
            col.write_columns(out_file, rows.table(), {"command": command, "of": prog.of, "dtype": opts["dtype"],
                                                       "summed": rows.summed, "points": n})
            failed, first = rows.failed, rows.first_error
    if failed:
        line, err = first  # type: ignore[misc]
        click.echo(f"difftape: {failed} of {n} points failed; the first, row {line}: error[{err.kind}]: "
                   f"{err.message}", err=True)
        return 2
    return 0


def _partitioned(opts: Mapping[str, Any]) -> bool:
    """Whether a batch goes through difftape.answers.dask_batch: files by partition (Parquet, globs, --output, Dask)."""
    import os

    if opts.get("scheduler") is not None or opts.get("output") is not None or opts.get("workers") is not None:
        return True
    path = opts.get("at_file")
    if path is None or path == "-":
        return False
    from glob import has_magic

    from difftape.answers.dask_batch import is_parquet

    return is_parquet(path) or (has_magic(path) and not os.path.isfile(path))


def _execute_partitioned(opts: Mapping[str, Any], command: str) -> int:
    """--batch over files: Parquet or NDJSON, one or many (a glob), to stdout or --output DIR, here or on Dask.

    Every partition is answered as one --batch run answers it (difftape.answers.dask_batch); Dask is
    imported only for --scheduler.
    """
    import os
    import warnings

    import numpy as np

    from difftape.answers import dask_batch as db

    _State.json = True
    db.check_command(command)
    scheduler, output, workers = opts.get("scheduler"), opts.get("output"), opts.get("workers")
    path = opts.get("at_file")
    if output is not None and os.path.isfile(output):
        raise click.UsageError(f"--output {output!r} is a file: --output names a directory, one result file per "
                               "partition (or FILE.npy|.npz|.parquet|.arrow, a columnar file of eval, grad or "
                               "jacobian answers)")
    if _columnar_output(opts) is not None:
        raise click.UsageError(f"--output {output} is a columnar file: {command} --batch answers into a "
                               "directory, --output DIR")
    if workers is not None and scheduler != "local":
        raise click.UsageError("--workers N sets the number of workers of --scheduler local")
    if path is None or path == "-":
        raise click.UsageError("--output and --scheduler answer files of points: give them with --at-file, e.g. "
                               "--at-file 'points/*.ndjson' (NDJSON or Parquet)")
    if scheduler is not None and output is None:
        raise click.UsageError("--scheduler writes one result file per partition: give the directory with --output DIR")
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        source = _read_source(opts["program"], opts["file"])
        with _located(source):
            at = _at_values(opts)
            options: dict[str, Any] = _wrt_options(opts) if command != "eval" else {}
            if command == "check":
                if opts.get("plot_file"):
                    raise click.UsageError("--plot draws one point's check: it does not go with --batch")
                options = _check_options(opts)
            spec = db.BatchSpec(source, command, of=opts["of"], at=at, seed=opts["seed"], dtype=opts["dtype"],
                                options=options)
            prog = spec.program()  # a bad program or option fails here, before any file is read
            if command == "check":
                spec.checker()
            elif command != "eval":
                prog.base.sources(options["wrt"], options["watch"])
            _check_cost(prog.base, command, opts)  # the work of one point
    paths = [os.path.abspath(p) for p in db.expand(path)]
    from difftape.answers.columnar import file_format

    arrays = [p for p in paths if file_format(p) in ("npy", "npz", "arrow")]
    if arrays:
        raise click.UsageError(f"{arrays[0]} is a columnar file: partitions (--output DIR, globs, --scheduler) are "
                               "NDJSON or Parquet; answer it alone, to stdout or into --output FILE (.npy, .npz, "
                               ".parquet, .arrow)")
    if output is None and len(paths) > 1:
        raise click.UsageError(f"--at-file {path!r} matches {len(paths)} files; give --output DIR to answer each "
                               "into a file of its own (or one file at a time)")
    parts = db.plan(paths, split=output is not None)
    if output is None:
        job = db.run_in_process(spec, parts, None, write=_write_out)  # whole lines, Ctrl-C held off
    else:
        output = os.path.abspath(db.prepare_output(output, paths))
        with _points_bar(command, None, len(parts), sum(p.size for p in parts)) as progress:
            if scheduler is None:
                job = db.run_in_process(spec, parts, output, progress=progress.on_partition)
            else:
                client, cluster = db.connect(scheduler, workers)
                try:
                    link = db.dashboard_link(client)
                    click.echo(f"difftape: Dask dashboard at {link}" if link else
                               "difftape: the Dask scheduler serves no dashboard (it needs bokeh: "
                               f"{db.INSTALL})", err=True)
                    job = db.run_on_dask(client, spec, parts, output, progress.on_partition)
                finally:
                    client.close()
                    if cluster is not None:
                        cluster.close()
        click.echo(f"difftape: {job.lines:,} points in {job.partitions} partitions written to {output} "
                   f"({job.seconds:.1f} s)", err=True)
    if job.mismatched:
        name, line = job.first_mismatch  # type: ignore[misc]
        click.echo(f"difftape: MISMATCH at {job.mismatched:,} of {job.lines:,} points; the first, {name} line {line}",
                   err=True)
    if job.failed:
        name, line, kind, message = job.first_error  # type: ignore[misc]
        click.echo(f"difftape: {job.failed} of {job.lines} lines failed; the first, {name} line {line}: "
                   f"error[{kind}]: {message}", err=True)
    return 1 if job.mismatched else 2 if job.failed else 0


def _pointwise(command: str, opts: Mapping[str, Any], base: Program) -> Callable[[Program], dict[str, Any]]:
    """The answer of one --batch point for the commands answered point by point (hessian, jvp, vjp, hvp);
    the options (--wrt, --tangent, --cotangent) are read once, and checked on the program before any line."""
    from difftape.answers import forward
    from difftape.io import render

    wrt = list(opts["wrt"]) or None
    watch = tuple(opts["watch"])
    base.sources(wrt, watch, intermediates=command == "hessian")  # a bad --wrt fails before reading
    if command == "hessian":
        return lambda p: render.hessian_json(p.hessian(wrt=wrt, watch=watch, unconnected=opts["unconnected"]))
    if command == "vjp":
        if opts["cotangent"] is None:
            raise DifftapeError("usage", "give the cotangent: --cotangent VALUE (the target's shape)")
        from difftape.answers.program import parse_value

        with _located(opts["cotangent"]):
            u = parse_value(opts["cotangent"], seed=opts["seed"] + 1000, dtype=opts["dtype"])
        return lambda p: render.vjp_json(forward.vjp(p, u, wrt=wrt, watch=watch, unconnected=opts["unconnected"]))
    with _located(base.source):
        ts = _nameless(_directions(opts["tangent"], opts, "--tangent"), base, wrt, "--tangent")
    if command == "jvp":
        return lambda p: render.jvp_json(forward.jvp(p, ts, wrt=wrt, watch=watch))
    return lambda p: render.hvp_json(forward.hvp(p, ts, wrt=wrt, watch=watch))


def _progress(label: str, unit: str, **options: Any) -> Any:
    """The progress bar of a long run (difftape/io/progress.py): on stderr, only when it is a terminal and
    the run has taken a second (DIFFTAPE_PROGRESS_AFTER sets another delay); erased at the end."""
    from difftape.io.progress import Progress

    return Progress(label, unit=unit, **options)


def _points_bar(command: str, stream: Any, partitions: int | None = None, total: int | None = None) -> Any:
    """The bar of a --batch: bytes of a file (or of the partitions), else lines read from a pipe.

    None when the results stream to a terminal: they are the progress there, and a bar would be
    drawn over them."""
    from difftape.io.progress import PointsBar, remaining_bytes

    try:
        streaming = partitions is None and sys.stdout.isatty()
    except (AttributeError, ValueError):  # no stdout, or a closed one
        streaming = False
    return PointsBar(f"{command} --batch", remaining_bytes(stream) if total is None else total, partitions,
                     enabled=False if streaming else None)


def _printable(text: str) -> str:
    """``text`` with what stdout cannot encode (lone surrogates from undecodable argv bytes) escaped."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return text.encode(encoding, "backslashreplace").decode(encoding, "replace")
    return text


def _why_null(prog: Program, name: str, watch: Sequence[str]) -> str:
    if name in getattr(prog, "consts", ()) and name not in watch:
        return f"{name} is a const: add --watch {name} to differentiate with respect to it"
    return f"{prog.of} does not depend on {name}; --unconnected zero gives zeros"


# ----------------------------------------------------------------------------------------
# the commands


@click.group(cls=DifftapeGroup, context_settings=_CONTEXT, invoke_without_command=True, epilog=(
    "\b\n"
    "Examples:\n"
    "  difftape eval \"x**3\" --at 2\n"
    "  difftape grad \"y = x**2; x = randn(2,2)\" --seed 7\n"
    "  difftape check \"sin(x)\" --at x=0.5 --expect \"cos(x)\"\n"
    "  difftape diff \"sin(x)*exp(x)\"\n"
    "  difftape grad -f model.dt --at w=\"ones(3)\" --json\n"
    "  difftape eval \"-x**2\" --at x=2         (a program may start with '-')\n"
    "\n"
    "Exit status: 0 success; 1 check found a mismatch; 2 a bad program, option or value (the message is "
    "on stderr; with --json an {\"error\": {\"kind\", \"message\", \"line\", \"column\"}} object is also "
    "printed on stdout). With --batch, 2 also when any input line failed; the "
    "other lines are still answered (check --batch: 1 when any point mismatched).\n"
    "\n"
    "\b\n"
    "Shell completion (click's): add one line to your shell's start-up file:\n"
    "  bash  eval \"$(_DIFFTAPE_COMPLETE=bash_source difftape)\"\n"
    "  zsh   eval \"$(_DIFFTAPE_COMPLETE=zsh_source difftape)\"\n"
    "  fish  _DIFFTAPE_COMPLETE=fish_source difftape | source"
))
@click.version_option(__version__, "--version", "-V", prog_name="difftape", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context) -> int | None:
    """difftape: exact derivatives of small numpy programs.

    A program is statements separated by ';' or newlines: bindings 'name = expr' and at most one bare
    expression, the target (--of NAME picks another). Names that are never bound are inputs: give
    them values with --at NAME=VALUE. Every command reads the program as an argument, with -f FILE,
    or from stdin ('-'). Bare 'difftape' on a terminal opens a session ('difftape repl').
    """
    if ctx.invoked_subcommand is not None:
        return None
    if sys.stdin.isatty() and sys.stdout.isatty():
        from difftape import repl

        return repl.run()
    click.echo(ctx.get_help(), err=True)  # not a terminal: no command is a usage error, as it always was
    return 2


@cli.command("eval", context_settings=_CONTEXT, short_help="Evaluate the target.",
             epilog=(
    "\b\n"
    "Examples:\n"
    "  difftape eval \"x**3\" --at 2\n"
    "  difftape eval \"W*x + b; W = ones(2,2); b = zeros(2); x = [1,0]\"\n"
    "  difftape eval \"y = x**2; x = randn(2,2)\" --seed 7 --of x --json\n"
    "  echo \"sum(v**2)\" | difftape eval - --at v=\"[1,2,3]\"\n"
    "  difftape eval --at x=2 -- \"-x**2\""
))
@_program_options
@_batch_options
@_distributed_options
def eval_cmd(**opts: Any) -> int:
    """Evaluate the target and print its value (ints stay ints).

    PROGRAM is the program text; '-' (or -f -) reads it from stdin. A program may start with '-' (before '--' or
    after it). With --batch, one JSON line per NDJSON input line (exit 2 if any line failed).
    """
    if _batch_mode(opts):
        return _execute_batch(opts, "eval")

    def action(prog: Program) -> tuple[dict[str, Any], str, int]:
        from difftape.answers.notes import wrapped
        from difftape.io.render import eval_json, eval_text

        value = prog.evaluate()
        _note([("value", value)])
        wrap = wrapped(prog, value)
        if wrap is not None:
            _State.notes.append(wrap)
        return eval_json(prog.of, value), eval_text(prog.of, value), 0

    return _execute(opts, action, "eval")


@cli.command("grad", context_settings=_CONTEXT, short_help="The value and the gradient w.r.t. each variable.",
             epilog=(
    "\b\n"
    "Examples:\n"
    "  difftape grad \"x**3\" --at 2\n"
    "  difftape grad \"x1*x2\" --at x1=1 --at x2=1\n"
    "  difftape grad \"y = x**2; x = randn(2,2)\" --seed 7 --json\n"
    "  difftape grad \"a*x; a = const(1.0); x = 1.0\" --wrt a            (null: a is a const)\n"
    "  difftape grad \"a*x; a = const(1.0); x = 1.0\" --wrt a --watch a  (1.0)\n"
    "  difftape grad --at x=2 -- \"-x**2\"\n"
    "  printf '{\"x\": 0.5}\\n{\"x\": 1.5}\\n' | difftape grad \"sin(x)**2\" --batch\n"
    "  cat points.ndjson | difftape grad \"sum((W @ x - y)**2); W = ones(2, 3)\" --batch --wrt W"
))
@_program_options
@_derivative_options
@_unconnected_option("none")
@_batch_options
@_distributed_options
def grad_cmd(**opts: Any) -> int:
    """Print the target's value (as a float, as differentiated) and its gradient w.r.t. each variable.

    A non-scalar target is summed first (the output says so). A const is differentiated only when
    watched (--watch); otherwise, like an input the target does not depend on, its gradient is null.
    PROGRAM is the program text; '-' (or -f -) reads it from stdin. A program may start with '-' (before '--' or
    after it). With --batch, one JSON line per NDJSON input line (exit 2 if any line failed).
    """
    if _batch_mode(opts):
        return _execute_batch(opts, "grad")

    def action(prog: Program) -> tuple[dict[str, Any], str, int]:
        from difftape.io.render import grad_json, grad_text

        res = prog.grad(wrt=list(opts["wrt"]) or None, watch=tuple(opts["watch"]), unconnected=opts["unconnected"])
        why = {n: _why_null(prog, n, opts["watch"]) for n, g in res.grad.items() if g is None}
        _note([("value", res.value), *((f"grad {n}", g) for n, g in res.grad.items())])
        return grad_json(res), grad_text(res, why), 0

    return _execute(opts, action, "grad")


@cli.command("jacobian", context_settings=_CONTEXT, short_help="The value and the full Jacobian w.r.t. each variable.",
             epilog=(
    "\b\n"
    "Examples:\n"
    "  difftape jacobian \"x**2\" --at \"[1,2,3]\"\n"
    "  difftape jacobian \"A @ x; A = [[1,2],[3,4]]\" --at x=\"[1,1]\" --json"
))
@_program_options
@_derivative_options
@_unconnected_option("zero")
@_batch_options
@_distributed_options
def jacobian_cmd(**opts: Any) -> int:
    """Print the target's value and its full Jacobian w.r.t. each variable.

    The block for input x has shape value.shape + x.shape. PROGRAM is the program text; '-' (or -f -)
    reads it from stdin. A program may start with '-' (before '--' or after it). With --batch, one JSON line
    per NDJSON input line (exit 2 if any line failed).
    """
    if _batch_mode(opts):
        return _execute_batch(opts, "jacobian")

    def action(prog: Program) -> tuple[dict[str, Any], str, int]:
        from difftape.io.render import jacobian_json, jacobian_text

        with _progress("jacobian", "passes") as bar:
            res = prog.jacobian(wrt=list(opts["wrt"]) or None, watch=tuple(opts["watch"]),
                                unconnected=opts["unconnected"], on_step=bar)
        _note([("value", res.value), *((f"jacobian {n}", j) for n, j in res.jacobian.items())])
        return jacobian_json(res), jacobian_text(res), 0

    return _execute(opts, action, "jacobian")


@cli.command("hessian", context_settings=_CONTEXT, short_help="The value and the Hessian blocks of a scalar target.",
             epilog=(
    "\b\n"
    "Examples:\n"
    "  difftape hessian \"x**3\" --at 2\n"
    "  difftape hessian \"sum(x**2 * y)\" --at x=\"[1,2]\" --at y=3 --json"
))
@_program_options
@_derivative_options
@_unconnected_option("zero")
@_batch_options
def hessian_cmd(**opts: Any) -> int:
    """Print the scalar target's value and its Hessian blocks d2/(da db) for each pair of variables.

    The block for (a, b) has shape a.shape + b.shape. A non-scalar target is an error: use jacobian
    (of its gradient) instead. PROGRAM is the program text; '-' (or -f -) reads it from stdin. A program may
    start with '-' (before '--' or after it). With --batch, one JSON line per NDJSON input line.
    """
    if _batch_mode(opts):
        return _execute_batch(opts, "hessian")

    def action(prog: Program) -> tuple[dict[str, Any], str, int]:
        from difftape.io.render import hessian_json, hessian_text

        with _progress("hessian", "passes") as bar:
            res = prog.hessian(wrt=list(opts["wrt"]) or None, watch=tuple(opts["watch"]),
                               unconnected=opts["unconnected"], on_step=bar)
        _note([("value", res.value), *((f"hessian {a} {b}", block) for a, row in res.hessian.items()
                                        for b, block in row.items())])
        return hessian_json(res), hessian_text(res), 0

    return _execute(opts, action, "hessian")


@cli.command("check", context_settings=_CONTEXT,
             short_help="Compare tape and numerical (or --expect) gradients; exit 1 on a mismatch.",
             epilog=(
    "\b\n"
    "Examples:\n"
    "  difftape check \"sin(x)\" --at x=0.5\n"
    "  difftape check \"x**2\" --at 3 --expect \"2*x\"\n"
    "  difftape check \"x*y\" --at x=2 --at y=3 --expect x=y --expect y=x --json\n"
    "  difftape check \"abs(x) * x\" --at \"[1.0, -2.0]\" --rtol 1e-4 --atol 1e-6\n"
    "  printf '{\"x\": 0.5}\\n{\"x\": 2.0}\\n' | difftape check \"sin(x)**2\" --batch\n"
    "  difftape check \"sum(tanh(W @ x)); W = randn(2, 3)\" --at x=\"zeros(3)\" --points 10000\n"
    "\n"
    "Many points: --batch (or --at-file F) checks each NDJSON line and prints one JSON line per point, the keys "
    "of --json; --points N checks N random points (every input standard normal, of the shape of its --at value, "
    "scalar without one; bindings stay as bound; drawn with --seed, so the same N points every run) and prints "
    "a summary: how many points mismatched, and the worst one (with --batch: one JSON line per point, its point "
    "under \"at\"). First derivatives are checked vectorised (the tape's gradients in one batched reverse pass, "
    "the numerical ones for every point at once); --order 2 is checked point by point.\n"
    "\n"
    "Exit status: 0 every gradient agrees; 1 a mismatch (at any point of a batch); 2 no verdict: a bad program, "
    "option or value, a point where there is no derivative (error[domain]) or nothing to check (with "
    "--batch/--points: 1 if any point mismatched, else 2 if any point failed)."
))
@_program_options
@_derivative_options
@_option("--expect", "expect", multiple=True, metavar="[NAME=]EXPR",
              help="An analytic gradient in the language, e.g. 2*x; NAME= says for which input "
                   "(needed when there are several). Repeatable.")
@_option("--rtol", type=float, default=None, callback=_tolerance,
              help=f"Relative tolerance. [default: {DEFAULT_RTOL:g} for float64, 1e-3 for float32]")
@_option("--atol", type=float, default=None, callback=_tolerance,
              help=f"Absolute tolerance. [default: {DEFAULT_ATOL:g} for float64, 1e-5 for float32]")
@_option("--mode", type=click.Choice(["auto", "full", "directional"]), default="auto", show_default=True,
              help="full: every element against its own numerical derivative; directional: random directions "
                   "(reverse u.v, forward J v and the numerical directional derivative against each other), "
                   "whatever the size; auto: full up to 1,000 input elements, directional beyond.")
@_option("--directions", type=click.IntRange(1, 1000), default=3, show_default=True,
              help="Random directions per input in directional mode (drawn with --seed).")
@_option("--order", type=click.Choice(["1", "2"]), default="1", show_default=True,
              help="2: check second derivatives (the Hessian, or Hessian-vector products for large inputs) "
                   "against differences of the gradient, and forward-over-reverse against reverse-over-reverse.")
@_option("--plot", "plot_file", type=_FILE, metavar="FILE",
              help="Also draw the tape, analytic and numeric gradients and their relative differences (log axis) "
                   "to FILE (.png, .svg, .pdf; needs matplotlib: pip install \"difftape[plot]\").")
@_option("--points", "points", type=click.IntRange(min=1), metavar="N",
              help="Check N random points (seeded by --seed): every input standard normal, with the shape of its "
                   "--at value (scalar without one); bindings stay as bound. Prints a summary (the count of "
                   "mismatches and the worst point); with --batch, one JSON line per point.")
@(lambda f: _batch_options(f, _CHECK_BATCH_HELP))
@_distributed_options
def check_cmd(**opts: Any) -> int:
    """Compare the tape's derivatives with numerical ones (and with --expect), per input.

    Prints the numerical method, its error estimate and the largest absolute and relative difference
    for each input; exits 1 when any exceeds the tolerance, 2 where there is nothing to check or no
    derivative at the point (a value or gradient that is not finite). PROGRAM is the program text;
    '-' (or -f -) reads it from stdin. A program may start with '-' (before '--' or after it).
    """
    if opts.get("points") is not None:
        return _execute_check_points(opts)
    if _batch_mode(opts):
        return _execute_batch(opts, "check")

    def action(prog: Program) -> tuple[dict[str, Any], str, int]:
        from difftape.io.render import check_json, check_text

        expect = _expectations(opts["expect"])
        with _progress("check", "derivatives") as bar:
            res = prog.check(expect=expect, rtol=opts["rtol"], atol=opts["atol"],
                             wrt=list(opts["wrt"]) or None, watch=tuple(opts["watch"]), mode=opts["mode"],
                             directions=opts["directions"], order=int(opts["order"]), on_step=bar)
        code = 0 if res.ok else 1
        if opts.get("plot_file"):
            from difftape.io.plot_image import plot_check

            plot_check(res, opts["plot_file"])
        return check_json(res, res.rtol, res.atol), check_text(res, res.rtol, res.atol), code

    return _execute(opts, action, "check")


def _directions(items: Sequence[str], opts: Mapping[str, Any], option: str) -> dict[str, Any]:
    """--tangent NAME=VALUE (repeatable; a nameless value when there is one input) as {name: array}."""
    named, bare = _parse_at(items, opts["seed"] + 1000, opts["dtype"])
    if bare:
        named[""] = bare[0]
    if not named:
        raise DifftapeError("usage", f"give a direction: {option} NAME=VALUE (repeatable)")
    return named


def _nameless(directions: dict[str, Any], prog: Program, wrt: list[str] | None, option: str) -> dict[str, Any]:
    if "" not in directions:
        return directions
    names = wrt or prog.variables
    if len(names) != 1:
        listed = ", ".join(names) or "none"
        raise DifftapeError("usage", f"{option} VALUE without a name needs exactly one input to move; this program "
                                     f"differentiates {len(names)} ({listed}): use {option} NAME=VALUE")
    out = dict(directions)
    out[names[0]] = out.pop("")
    return out


def _forward_command(key: str, opts: Mapping[str, Any]) -> int:
    if _batch_mode(opts):
        return _execute_batch(opts, key)
    def action(prog: Program) -> tuple[dict[str, Any], str, int]:
        from difftape.answers import forward
        from difftape.io import render

        wrt = list(opts["wrt"]) or None
        watch = tuple(opts["watch"])
        if key == "vjp":
            if opts["cotangent"] is None:
                raise DifftapeError("usage", "give the cotangent: --cotangent VALUE (the target's shape)")
            from difftape.answers.program import parse_value

            with _located(opts["cotangent"]):
                u = parse_value(opts["cotangent"], seed=opts["seed"] + 1000, dtype=opts["dtype"])
            res = forward.vjp(prog, u, wrt=wrt, watch=watch, unconnected=opts["unconnected"])
            _note([("value", res.value), *((f"vjp {n}", g) for n, g in res.vjp.items())])
            return render.vjp_json(res), render.directional_text(res, "vjp"), 0
        with _located(prog.source):
            ts = _nameless(_directions(opts["tangent"], opts, "--tangent"), prog, wrt, "--tangent")
        if key == "jvp":
            res = forward.jvp(prog, ts, wrt=wrt, watch=watch)
            _note([("value", res.value), ("jvp", res.jvp)])
            return render.jvp_json(res), render.directional_text(res, "jvp"), 0
        res = forward.hvp(prog, ts, wrt=wrt, watch=watch)
        _note([("value", res.value), *((f"hvp {n}", h) for n, h in res.hvp.items())])
        return render.hvp_json(res), render.directional_text(res, "hvp"), 0

    return _execute(opts, action, key)


_TANGENT = _option("--tangent", "tangent", multiple=True, metavar="NAME=VALUE",
                        help="The direction for an input, any constant expression of its shape (repeatable; "
                             "inputs without one stay fixed). '--tangent VALUE' when one input is moved.")


@cli.command("jvp", context_settings=_CONTEXT, short_help="Forward mode: the derivative along a direction, J v.",
             epilog=(
    "\b\n"
    "Examples:\n"
    "  difftape jvp \"sin(x)*x\" --at 2.0 --tangent 1.0\n"
    "  difftape jvp \"W @ x; W = randn(3, 2)\" --at x=\"[1.0, 2.0]\" --tangent x=\"[1.0, 0.0]\" --json"
))
@_program_options
@_derivative_options
@_TANGENT
@_batch_options
def jvp_cmd(**opts: Any) -> int:
    """Print the target's value and J v, its derivative along --tangent (one forward pass).

    The result has the target's shape, whatever the number of inputs. PROGRAM is the program text;
    '-' (or -f -) reads it from stdin.
    """
    return _forward_command("jvp", opts)


@cli.command("vjp", context_settings=_CONTEXT, short_help="Reverse mode weighted by a cotangent: u' J per input.",
             epilog=(
    "\b\n"
    "Examples:\n"
    "  difftape vjp \"x**2\" --at x=\"[1.0, 2.0]\" --cotangent \"[1.0, -1.0]\"\n"
    "  difftape vjp \"A @ x; A = randn(3, 2)\" --at x=\"[1.0, 2.0]\" --cotangent \"[1, 0, 0]\" --json"
))
@_program_options
@_derivative_options
@_unconnected_option("none")
@_option("--cotangent", metavar="VALUE", help="The weights u of the target's elements (its shape).")
@_batch_options
def vjp_cmd(**opts: Any) -> int:
    """Print the target's value and u' J for each variable: the gradient of sum(target * u).

    PROGRAM is the program text; '-' (or -f -) reads it from stdin.
    """
    return _forward_command("vjp", opts)


@cli.command("hvp", context_settings=_CONTEXT, short_help="Hessian-vector product H v (forward over reverse).",
             epilog=(
    "\b\n"
    "Examples:\n"
    "  difftape hvp \"sum(x**3)\" --at x=\"[1.0, 2.0]\" --tangent x=\"[1.0, 0.0]\"\n"
    "  difftape hvp \"x**2 * y\" --at x=1.0 --at y=2.0 --tangent x=1.0 --json"
))
@_program_options
@_derivative_options
@_TANGENT
@_batch_options
def hvp_cmd(**opts: Any) -> int:
    """Print the scalar target's value and H v for each variable (the derivative of the gradient along
    --tangent), by forward mode over the reverse pass: no Hessian is formed.

    PROGRAM is the program text; '-' (or -f -) reads it from stdin.
    """
    return _forward_command("hvp", opts)


@cli.command("graph", context_settings=_CONTEXT, short_help="Print the compiled graph as text or Graphviz DOT.",
             epilog=(
    "\b\n"
    "Examples:\n"
    "  difftape graph \"sin(x)*x\" --at 1.0\n"
    "  difftape graph \"W*x + b; W = ones(2,2); b = zeros(2); x = [1,0]\" --dot | dot -Tsvg > g.svg"
))
@_program_options
@_option("--dot", is_flag=True, help="Print Graphviz DOT instead of text.")
@_option("--grad", "with_grad", is_flag=True, help="Add the backward (gradient) nodes.")
def graph_cmd(**opts: Any) -> int:
    """Print the compiled graph: one node a line (id, op, inputs, shape, dtype, source span).

    PROGRAM is the program text; '-' (or -f -) reads it from stdin. A program may start with '-' (before '--' or
    after it).
    """

    def action(prog: Program) -> tuple[dict[str, Any], str, int]:
        from difftape.io.render import graph_json

        fmt = "dot" if opts["dot"] else "text"
        first = None
        if opts["with_grad"]:
            from difftape.answers.program import grad_graph_text

            graph = prog.grad_graph()
            first = len(prog.graph.nodes)
            text = graph.to_dot() if fmt == "dot" else grad_graph_text(graph, first)
        else:
            graph = prog.graph
            text = graph.to_dot() if fmt == "dot" else graph.to_text()
        text = text.rstrip("\n")
        payload = graph_json(prog.of, graph, first)
        if fmt == "dot":  # the DOT text too, for a script that draws it
            payload.update({"format": "dot", "graph": text})
        return payload, text, 0

    return _execute(opts, action, "graph")


@cli.command("diff", context_settings=_CONTEXT, short_help="The derivative as a simplified expression.",
             epilog=(
    "\b\n"
    "Examples:\n"
    "  difftape diff \"x**3\"                                  (3*x**2)\n"
    "  difftape diff \"sin(x)*exp(x)\"\n"
    "  difftape diff \"sum(W @ x); W = randn(2, 3)\" --at x=\"[1.0, 2.0, 3.0]\" --wrt x\n"
    "  difftape diff \"sin(x)\" --order 2                      (-sin(x))\n"
    "  difftape diff \"x*y\" --order 2                       (the Hessian: d2/dxdy 1)\n"
    "  difftape diff \"x**2 * y\" --json\n"
    "  difftape diff \"sin(x)/x\" --format latex"
))
@_program_options
@_derivative_options
@_option("--order", type=click.IntRange(1, 8), default=1, show_default=True,
              help="Differentiate this many times (2: the whole Hessian, mixed partials included; "
                   "3 and more: scalar inputs only).")
@_option("--format", "fmt", type=click.Choice(["text", "latex", "sympy"]), default="text", show_default=True,
              help="How to print the derivatives: the language (text), LaTeX, or text SymPy parses.")
@_option("--max-terms", "max_terms", type=click.IntRange(min=1), default=DEFAULT_MAX_TERMS, show_default=True,
              metavar="N",
              help="Refuse (error[limit]) a derivation that would build more than N expression nodes (about 0.1 ms "
                   "each; refused early when the growth of the orders so far says the orders asked would).")
def diff_cmd(**opts: Any) -> int:
    """Print the derivative of the target w.r.t. each variable as an expression in the language.

    The expression is simplified and is itself a valid difftape program: evaluated with the same
    values (and --seed), it gives the numbers `grad` gives wherever it is defined (what the tape
    does at the few points where it is not is said in a note). With --at, each derivative is
    followed by its value there. A non-scalar target is summed first.
    Inputs without a value are taken as scalars. PROGRAM is the program text; '-' (or -f -)
    reads it from stdin. A program may start with '-' (before '--' or after it).
    """

    def action(prog: Program) -> tuple[dict[str, Any], str, int]:
        from difftape.io.render import diff_json, diff_text
        from difftape.transforms.symbolic import derive

        wrt = list(opts["wrt"]) or None
        if opts["watch"]:
            wrt = list(dict.fromkeys((wrt or prog.variables) + list(opts["watch"])))
        with _progress("diff", "orders" if opts["order"] > 2 else "blocks") as bar:
            res = derive(prog.source, wrt=wrt, of=opts["of"], order=opts["order"], values=prog.at or None,
                         seed=opts["seed"], fmt=opts["fmt"], max_terms=opts["max_terms"], on_step=bar)
        return diff_json(res, opts["order"]), diff_text(res, opts["order"]), 0

    return _execute(opts, action, "diff")


# ----------------------------------------------------------------------------------------
# minimize and plot: using the gradients


def _positive(_ctx: click.Context, _param: click.Parameter, value: float | None) -> float | None:
    import math

    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"{value} is not a finite number > 0")
    return value


@cli.command("minimize", context_settings=_CONTEXT, short_help="Minimise the scalar target over its variables.",
             epilog=(
    "\b\n"
    "Examples:\n"
    "  difftape minimize \"(x - 3)**2 + (y + 1)**2; x = 0.0; y = 0.0\"\n"
    "  difftape minimize \"(1 - a)**2 + 100*(b - a**2)**2\" --at a=-1.2 --at b=1 --json\n"
    "  difftape minimize \"sum((A @ w - y)**2); A = const(randn(20, 3)); y = const(randn(20)); w = zeros(3)\"\n"
    "  difftape minimize \"(x - 3)**2\" --at x=0 --method adam --lr 0.1 --steps 5000 --trace\n"
    "\n"
    "Methods: lbfgs (quasi-Newton with a strong-Wolfe line search; no --lr), gd (steepest descent with "
    "the same line search; --lr is the first trial step, default 1), adam and sgd (the optimisers of "
    "difftape.optimizers with a fixed learning rate --lr, defaults 0.001 and 0.01 as in TensorFlow).\n"
    "\n"
    "Exit status: 0 converged (the gradient norm reached --tol); 1 not converged (the step limit, no "
    "lower value found, or a value that stopped being finite: the reason is printed); 2 a bad program, "
    "option or value. Ctrl-C stops with status 130."
))
@_program_options
@_derivative_options
@_option("--method", type=click.Choice(["lbfgs", "adam", "sgd", "gd"]), default="lbfgs", show_default=True,
              help="The minimiser.")
@_option("--lr", type=float, default=None, callback=_positive,
              help="Learning rate of adam/sgd (default 0.001/0.01), first trial step of gd (default 1).")
@_option("--steps", type=click.IntRange(min=0), default=1000, show_default=True,
              help="The most steps (iterations) to take.")
@_option("--tol", type=float, default=1e-6, show_default=True, callback=_tolerance,
              help="Converged when the gradient's 2-norm (over all variables) is at most this.")
@_option("--trace", is_flag=True, help="Print one line per step (one JSON line with --json), step 0 first.")
def minimize_cmd(**opts: Any) -> int:
    """Minimise the scalar target over its variables (or --wrt), starting from their bindings and --at.

    Prints the final value, the argmin of each variable, the steps taken and why it stopped.
    PROGRAM is the program text; '-' (or -f -) reads it from stdin. A program that starts with '-'
    goes after '--'.
    """
    from difftape.io.render import dumps

    state: dict[str, Any] = {"step": None, "value": None}
    progress = _progress("minimize", "steps", total=opts["steps"], bound=True,
                         enabled=False if opts["trace"] else None)

    def on_step(step: int, point: dict[str, Any], value: float, grad_norm: float) -> None:
        from difftape.answers.minimize import trace_json, trace_text

        state["step"], state["value"] = step, value
        if opts["trace"]:
            line = dumps(trace_json(step, point, value, grad_norm)) if opts["as_json"] else \
                trace_text(step, point, value, grad_norm)
            click.echo(line)
        progress.update(step, note=f"value {value:.6g}  grad_norm {grad_norm:.3g}")

    def action(prog: Program) -> tuple[dict[str, Any], str, int]:
        from difftape.answers.minimize import minimize_program, result_json, result_text

        res = minimize_program(prog, wrt=list(opts["wrt"]) or None, watch=tuple(opts["watch"]),
                               method=opts["method"], lr=opts["lr"], steps=opts["steps"], tol=opts["tol"],
                               callback=on_step)
        progress.close()
        return result_json(res), result_text(res), 0 if res.converged else 1

    try:
        return _execute(opts, action)
    except KeyboardInterrupt:
        progress.close(interrupted=True)
        where = "" if state["step"] is None else f" at step {state['step']} (value {state['value']!r})"
        click.echo(f"difftape: interrupted{where}; stopped without a result", err=True)
        return 130
    finally:
        progress.close()


@cli.command("plot", context_settings=_CONTEXT, short_help="Draw the target and its derivative over a range.",
             epilog=(
    "\b\n"
    "Examples:\n"
    "  difftape plot \"sin(x)*exp(-x/3)\" --range x=-3:3\n"
    "  difftape plot \"abs(x) + x**2\" --range x=-2:2 --order 2\n"
    "  difftape plot \"tanh(w*x)\" --range x=-pi:pi --at w=2 --output tanh.png\n"
    "  difftape plot \"1/x\" --range x=-1:1 --points 200 --csv > table.csv\n"
    "\n"
    "Pictures (--output FILE.png|.svg|.pdf) need matplotlib: pip install \"difftape[plot]\". Jumps, poles "
    "and nan are drawn as gaps."
))
@_program_options
@_option("--range", "range_", metavar="NAME=LO:HI",
              help="The input to sweep and its bounds (constant expressions: x=-3:3, t=0:2*pi). The name may be "
                   "left out when exactly one input has no value.")
@_option("--points", type=click.IntRange(2, 1_000_000), default=1000, show_default=True,
              help="How many evenly spaced points, both ends included.")
@_option("--order", type=click.IntRange(1, 2), default=1, show_default=True,
              help="Draw derivatives up to this order (2: f, f' and f'').")
@_option("--output", "output", type=_FILE, metavar="FILE",
              help="Write a picture instead of drawing in the terminal (.png, .svg, .pdf; needs matplotlib).")
@_option("--csv", "as_csv", is_flag=True, help="Print the table as CSV: x,f,df (and d2f with --order 2).")
def plot_cmd(**opts: Any) -> int:
    """Draw the scalar target and its derivatives over a range of one scalar input.

    The other inputs are fixed by --at (or their bindings). The points are evaluated at once,
    vectorised. By default the curves are drawn in the terminal (Unicode braille, one panel each,
    as wide as the terminal). PROGRAM is the program text; '-' (or -f -) reads it from stdin. A
    program that starts with '-' goes after '--'.
    """

    def action(prog: Program) -> tuple[dict[str, Any], str, int]:
        import shutil

        from difftape.answers.plot import parse_range, sweep

        if opts["range_"] is None:
            raise DifftapeError("usage", "plot needs the input to sweep: --range NAME=LO:HI, e.g. --range x=-3:3")
        name, lo, hi = parse_range(opts["range_"], seed=opts["seed"], dtype=opts["dtype"])
        if name is not None and name in prog.at:
            raise DifftapeError("usage", f"{name} is given by both --at and --range: leave out --at {name}=...")
        if opts["output"] is not None:
            from difftape.io.plot_image import figure_format

            figure_format(opts["output"])  # a bad name fails before the work
        sw = sweep(prog.source, name=name, lo=lo, hi=hi, points=opts["points"], order=opts["order"],
                   of=opts["of"], at=prog.at, seed=opts["seed"], dtype=opts["dtype"])
        columns = sw.table_columns()
        payload: dict[str, Any] = {"of": sw.of, "wrt": sw.name, "x": sw.x,
                                   **{c: v for c, v in zip(columns[1:], sw.curves)}, "failed": sw.failed}
        curves = list(zip(sw.labels(), sw.curves, sw.gaps))
        note = ""
        if sw.failed:
            note = (f"note: {sw.failed} of {len(sw.x)} points could not be evaluated (the first: {sw.error}); "
                    "they are gaps")
        if opts["output"] is not None:
            from difftape.io.plot_image import draw_function

            title = f"{' '.join(sw.of.split())} and its derivative{'s' if sw.order > 1 else ''}"
            draw_function(opts["output"], sw.x, curves, title=title, xlabel=sw.name)
        if opts["as_csv"]:
            if note:
                click.echo(note, err=True)
            lines = [",".join(columns)]
            table = [sw.x.tolist(), *(c.tolist() for c in sw.curves)]
            lines.extend(",".join(map(repr, row)) for row in zip(*table))
            return payload, "\n".join(lines), 0
        if opts["output"] is not None:
            text = f"wrote {opts['output']}: {', '.join(sw.labels())} of {' '.join(sw.of.split())} over " \
                   f"{sw.name} in [{lo:g}, {hi:g}], {len(sw.x)} points"
        else:
            from difftape.io.plot_text import render

            size = shutil.get_terminal_size((80, 24))
            title = [f"of {' '.join(sw.of.split())}  over {sw.name} in [{lo:g}, {hi:g}], {len(sw.x)} points"]
            text = "\n".join(title + [render(sw.x, curves, xlabel=sw.name, width=size.columns,
                                             height=size.lines - 1)])
        return payload, text + ("\n" + note if note else ""), 0

    return _execute(opts, action)


@cli.command("repl", context_settings=_CONTEXT, short_help="An interactive session (also reads commands from a pipe).",
             epilog=(
    "\b\n"
    "Examples:\n"
    "  difftape repl\n"
    "  printf 'y = x**2\\n:at x=3\\n:grad y\\n' | difftape repl      (prints the gradient 6.0)"
))
@_option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of randn/rand, so that results are reproducible.")
@_option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True,
              help="Float precision of the program's arrays.")
def repl_cmd(seed: int, dtype: str) -> int:
    """A session over one growing program: bindings persist across lines, a bare expression is printed,
    and :commands answer (:at x=2, :grad y, :diff y, :check y, :graph, :help).

    On a terminal it has history and completion of names and functions; from a pipe it reads one line
    at a time, so scripts can drive it (exit status 2 if any line failed). Errors are printed with their
    caret and the session goes on.
    """
    from difftape import repl

    return repl.run(seed=seed, dtype=dtype)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``difftape`` console script and ``python -m difftape``; exits with the status."""
    cli.main(args=argv)
    raise SystemExit(0)  # pragma: no cover - cli.main always exits
