"""Issue 18 item 4: the command line keeps its promises on random programs, bytes and options.

The promises: no traceback; exit status 0, 1 (``check`` only) or 2 (130 is Ctrl-C, not made
here); with ``--json`` one strict JSON object on stdout; no internal error; nothing written to
the file system (no ``--output`` here) and nothing read but the program file and ``--at-file``.

Programs are built from the op table (``difftape.ops.OPS``): unary and binary elementwise ops,
comparisons, reductions with axis/keepdims/ddof/ord, softmax, the linear algebra, shape ops, on
inputs of random shapes including empty and size-1 axes. Most runs are in process (click's
runner, milliseconds each), watched by an audit hook for file access; a few run as real
processes, each under a timeout. The whole file stays well under a minute.

Internal errors found in op VJPs that are being fixed in ops.py (issue 18 item 1: var/std with
ddof >= n or an empty reduction) are the explicit xfail cases at the end; the random tests skip
exactly those programs (and say so in the statistics), and fail on any other internal error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, reject, settings
from hypothesis import strategies as st

from difftape.cli import cli
from difftape.ops import OPS

ROOT = Path(__file__).resolve().parents[1]
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
COMMANDS = ["eval", "grad", "jacobian", "hessian", "check", "diff", "graph"]

SHAPES = [(), (0,), (1,), (3,), (1, 1), (1, 3), (2, 3), (3, 3), (0, 3), (2, 1, 3)]


# -- file access, seen by an audit hook ---------------------------------------------------------------

_WATCH: dict[str, list] = {"on": [], "opened": []}


def _audit(event_name: str, args: tuple) -> None:
    if _WATCH["on"] and event_name == "open":
        path, mode = args[0], args[1]
        _WATCH["opened"].append((path, mode))


sys.addaudithook(_audit)  # hooks cannot be removed: this one does nothing unless a test turns it on

_ALLOWED_READ_PREFIXES = tuple(
    str(Path(p).resolve()) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, ROOT / "difftape", *sys.path}
    if p
) + ("/dev/", "/proc/", "/sys/")


def _check_files(allowed: set[str]) -> None:
    for path, mode in _WATCH["opened"]:
        if isinstance(path, int):  # an already open file descriptor (stdin, stdout)
            continue
        text = os.fsdecode(path)
        if mode is not None and isinstance(mode, str) and any(c in mode for c in "wax+"):
            raise AssertionError(f"wrote {text} (mode {mode})")
        if isinstance(mode, int) and mode & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise AssertionError(f"wrote {text} (flags {mode})")
        resolved = str(Path(text).resolve())
        if resolved in allowed or resolved.startswith(_ALLOWED_READ_PREFIXES):
            continue
        raise AssertionError(f"read {text}, which is neither the program file nor --at-file")


def strict_loads(text: str):
    def refuse(token: str):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def _known_op_bug(program: str, output: str) -> bool:
    """The internal errors of issue 18 item 1 (var/std: ddof >= n, empty reductions), fixed elsewhere."""
    return "ZeroDivisionError" in output and ("var(" in program or "std(" in program)


def check_promises(argv: list[str], *, input: bytes | str | None = None, files: set[str] = frozenset(),
                   program: str = "") -> None:
    """Run the command line in process and assert every promise."""
    _WATCH["opened"].clear()
    _WATCH["on"].append(True)
    try:
        result = CliRunner().invoke(cli, argv, input=input, prog_name="difftape")
    finally:
        _WATCH["on"].pop()
    context = (argv, input if input is None or len(input) < 300 else input[:300], result.exit_code,
               result.stdout[:1500], result.stderr[:1500])
    if "error[internal]" in result.stderr and _known_op_bug(program, result.stderr):
        event("skipped: a known op VJP internal error (issue 18 item 1)")
        reject()
    assert result.exit_code in (0, 1, 2), context
    assert "Traceback" not in result.output, context
    assert result.exception is None or isinstance(result.exception, SystemExit), context
    assert "error[internal]" not in result.stderr, context
    if result.exit_code == 1:
        assert argv[0] == "check", context
    if result.exit_code == 2:
        assert result.stderr.strip(), context
    cut = argv.index("--") if "--" in argv else len(argv)
    if "--json" in argv[:cut] or "--batch" in argv[:cut]:
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        if "--batch" not in argv[:cut]:
            assert len(lines) == 1, context
        for line in lines:
            obj = strict_loads(line)
            assert isinstance(obj, dict), context
    # the files the command was told to read (-f FILE, --at-file F) are the ones it may read
    named = {argv[i + 1] for i, a in enumerate(argv[:cut][:-1]) if a in ("-f", "--file", "--at-file")}
    _check_files({str(Path(f).resolve()) for f in set(files) | named})


# -- random programs from the op table ------------------------------------------------------------------


def _value_text(shape: tuple[int, ...], seed: int) -> str:
    rng = np.random.default_rng(seed)
    if shape == ():
        return repr(float(np.round(rng.uniform(-2, 2), 3)))
    return json.dumps(np.round(rng.uniform(-2, 2, size=shape), 3).tolist())


_UNARY = sorted(n for n, o in OPS.items() if o.kind in ("elementwise", "compare") and len(o.args) == 1
                and not o.params)
_BINARY = sorted(n for n, o in OPS.items() if o.kind in ("elementwise", "compare") and len(o.args) == 2)
_REDUCTIONS = sorted(n for n, o in OPS.items() if o.kind == "reduction")


@st.composite
def expressions(draw, names: list[str]) -> str:
    """An expression of the inputs ``names``: op calls nested up to three deep."""
    depth = draw(st.integers(0, 3))
    expr = draw(st.sampled_from(names))
    for _ in range(depth):
        kind = draw(st.sampled_from(["unary", "binary", "reduction", "normalize", "linalg", "shape", "operator"]))
        if kind == "unary":
            expr = f"{draw(st.sampled_from(_UNARY))}({expr})"
        elif kind == "binary":
            other = draw(st.sampled_from(names + ["2", "0.5", "-1"]))
            a, b = draw(st.permutations([expr, other]))
            expr = f"{draw(st.sampled_from(_BINARY))}({a}, {b})"
        elif kind == "operator":
            other = draw(st.sampled_from(names + ["2", "0.5"]))
            expr = f"({expr} {draw(st.sampled_from(['+', '-', '*', '/', '**', '@', '<', '//', '%']))} {other})"
        elif kind == "reduction":
            op = draw(st.sampled_from(_REDUCTIONS))
            args = [expr]
            axis = draw(st.sampled_from([None, 0, -1, 1, (0, 1)]))
            if axis is not None:
                args.append(f"axis={axis}")
            if draw(st.booleans()):
                args.append("keepdims=True")
            if op in ("var", "std") and draw(st.booleans()):
                args.append(f"ddof={draw(st.integers(0, 3))}")
            if op == "norm" and draw(st.booleans()):
                args.append(f"ord={draw(st.sampled_from([1, 2, 'inf', 0, -1]))}")
            expr = f"{op}({', '.join(args)})"
        elif kind == "normalize":
            op = draw(st.sampled_from(["softmax", "log_softmax"]))
            expr = f"{op}({expr}, axis={draw(st.sampled_from([0, -1]))})"
        elif kind == "linalg":
            op = draw(st.sampled_from(["matmul", "dot", "outer", "trace", "inv", "det", "solve", "diag"]))
            if op in ("matmul", "dot", "outer", "solve"):
                expr = f"{op}({expr}, {draw(st.sampled_from(names))})"
            else:
                expr = f"{op}({expr})"
        else:
            op = draw(st.sampled_from(["ravel", "transpose", "expand_dims", "squeeze", "reshape", "concat",
                                       "stack", "index", "T"]))
            if op == "expand_dims":
                expr = f"expand_dims({expr}, axis=0)"
            elif op == "reshape":
                expr = f"reshape({expr}, -1)"
            elif op == "concat":
                expr = f"concatenate([{expr}, {expr}])"
            elif op == "stack":
                expr = f"stack([{expr}, {expr}])"
            elif op == "index":
                expr = f"{expr}[{draw(st.sampled_from(['0', '-1', '1:', '::2', ':, 0', '...']))}]"
            elif op == "T":
                expr = f"{expr}.T"
            else:
                expr = f"{op}({expr})"
    return expr


@st.composite
def programs(draw) -> tuple[str, list[str]]:
    """(program text, --at options): inputs of random shapes, maybe bound in the program instead."""
    n = draw(st.integers(1, 3))
    names = ["x", "y", "z"][:n]
    at: list[str] = []
    bindings: list[str] = []
    for i, name in enumerate(names):
        shape = draw(st.sampled_from(SHAPES))
        value = _value_text(shape, draw(st.integers(0, 1000)) + i)
        how = draw(st.sampled_from(["at", "bind", "randn"]))
        if how == "at":
            at += ["--at", f"{name}={value}"]
        elif how == "bind":
            bindings.append(f"{name} = {value}")
        else:
            bindings.append(f"{name} = randn{shape if len(shape) != 1 else '(' + str(shape[0]) + ')'}"
                            if shape else f"{name} = randn()")
    expr = draw(expressions(names))
    return "; ".join([expr, *bindings]), at


_OPTIONS = st.lists(st.sampled_from([
    ["--json"], ["--dtype", "float32"], ["--seed", "3"], ["--unconnected", "zero"], ["--max-flops", "1e6"],
    ["--max-elements", "50"], ["--wrt", "x"], ["--watch", "x"], ["--of", "x"], ["--rtol", "1e-3"],
    ["--order", "2"], ["--dot"], ["--grad"], ["--batch"],
]), max_size=3)

_COMMAND_OPTIONS = {
    "eval": {"--json", "--dtype", "--seed", "--max-flops", "--max-elements", "--of", "--batch"},
    "grad": {"--json", "--dtype", "--seed", "--unconnected", "--max-flops", "--max-elements", "--wrt", "--watch",
             "--of", "--batch"},
    "jacobian": {"--json", "--dtype", "--seed", "--unconnected", "--max-flops", "--max-elements", "--wrt", "--watch",
                 "--of", "--batch"},
    "hessian": {"--json", "--dtype", "--seed", "--unconnected", "--max-flops", "--max-elements", "--wrt",
                "--watch", "--of"},
    "check": {"--json", "--dtype", "--seed", "--max-flops", "--max-elements", "--wrt", "--watch", "--of", "--rtol"},
    "diff": {"--json", "--dtype", "--seed", "--max-flops", "--max-elements", "--wrt", "--watch", "--of", "--order"},
    "graph": {"--json", "--dtype", "--seed", "--max-flops", "--max-elements", "--of", "--dot", "--grad"},
}


@FUZZ
@given(command=st.sampled_from(COMMANDS), program=programs(), options=_OPTIONS, valid_only=st.booleans())
def test_random_programs_of_table_ops_keep_the_promises(command, program, options, valid_only):
    source, at = program
    argv = [command, source, *at]
    for opt in options:
        if valid_only and opt[0] not in _COMMAND_OPTIONS[command]:
            continue  # mostly options the command has (a wrong one is a usage error, also tested)
        argv += opt
    batch = "--batch" in argv
    check_promises(argv, input='{"x": 1.0}\n{"x": [1.0, 2.0]}\nnot json\n' if batch else None, program=source)


@FUZZ
@given(data=st.binary(max_size=200), command=st.sampled_from(COMMANDS), as_json=st.booleans(),
       how=st.sampled_from(["stdin", "file"]))
def test_random_bytes_as_the_program_keep_the_promises(tmp_path_factory, data, command, as_json, how):
    argv = [command]
    files: set[str] = set()
    if how == "file":
        path = tmp_path_factory.mktemp("prog") / "p.dt"
        path.write_bytes(data)
        files.add(str(path))
        argv += ["-f", str(path)]
        _WATCH["opened"].clear()
    else:
        argv.append("-")
    if as_json:
        argv.append("--json")
    check_promises(argv, input=data if how == "stdin" else None, files=files, program=data.decode("latin-1"))


@FUZZ
@given(data=st.binary(max_size=300), command=st.sampled_from(["eval", "grad", "jacobian"]))
def test_random_bytes_as_batch_points_keep_the_promises(tmp_path_factory, data, command):
    path = tmp_path_factory.mktemp("points") / "points.ndjson"
    path.write_bytes(data)
    check_promises([command, "sum(x**2)", "--at-file", str(path)], files={str(path)}, program="sum(x**2)")


@FUZZ
@given(argv=st.lists(st.sampled_from([
    "eval", "grad", "check", "diff", "--at", "x=1", "x=[]", "--max-flops", "--max-elements", "-1", "0", "nan",
    "1e400", "--json", "--batch", "--at-file", "/nonexistent/file", "-f", "--", "-", "x", "--seed", "৪",
    "--dtype", "float16", "--order", "9", "--of",
]), min_size=1, max_size=7))
def test_random_options_keep_the_promises(argv):
    check_promises(argv, input="")


# -- as real processes, each under a timeout ---------------------------------------------------------


@FEW
@given(command=st.sampled_from(["eval", "grad", "jacobian", "check"]), program=programs(), as_json=st.booleans())
def test_as_a_process_the_promises_hold(tmp_path_factory, command, program, as_json):
    source, at = program
    cwd = tmp_path_factory.mktemp("cwd")
    argv = [sys.executable, "-m", "difftape", command, source, *at] + (["--json"] if as_json else [])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd, env=env)
    if "error[internal]" in done.stderr and _known_op_bug(source, done.stderr):
        reject()
    context = (argv, done.returncode, done.stdout[:1000], done.stderr[:1000])
    assert done.returncode in (0, 1, 2), context
    assert "Traceback" not in done.stderr and "error[internal]" not in done.stderr, context
    if as_json:
        strict_loads(done.stdout)
    assert list(cwd.iterdir()) == [], "the command wrote into its working directory"


# -- var/std with no degrees of freedom left used to end in ZeroDivisionError (issue 18 item 1) ----------


@pytest.mark.parametrize(("command", "program", "value"), [
    ("grad", "var(x, ddof=2)", "[1.0, 2.0]"),
    ("grad", "var(x, ddof=1)", "[1.0]"),
    ("grad", "var(x)", "zeros(0)"),
    ("grad", "std(x, ddof=2)", "[1.0, 2.0]"),
    ("hessian", "var(x, ddof=2)", "[1.0, 2.0]"),
    ("jacobian", "std(x, ddof=1)", "[1.0]"),
    ("check", "var(x, ddof=2)", "[1.0, 2.0]"),
    ("diff", "var(x, ddof=2)", "[1.0, 2.0]"),
])
def test_no_degrees_of_freedom_is_no_internal_error(command, program, value):
    result = CliRunner().invoke(cli, [command, program, "--at", f"x={value}"])
    assert "error[internal]" not in result.output
    assert result.exit_code in (0, 2)


def test_the_file_watch_sees_reads_and_writes(tmp_path):
    # The promise checks are only as good as the audit hook: it must see a stray read and a write.
    stray = tmp_path / "stray.txt"
    stray.write_text("1")
    _WATCH["opened"].clear()
    _WATCH["on"].append(True)
    try:
        stray.read_text()
    finally:
        _WATCH["on"].pop()
    with pytest.raises(AssertionError, match="neither the program file"):
        _check_files(set())
    _check_files({str(stray.resolve())})
    _WATCH["opened"].clear()
    _WATCH["on"].append(True)
    try:
        (tmp_path / "out.txt").write_text("2")
    finally:
        _WATCH["on"].pop()
    with pytest.raises(AssertionError, match="wrote"):
        _check_files({str((tmp_path / "out.txt").resolve())})
