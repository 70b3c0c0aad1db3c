"""Random and wrong input to every command: exit 0, 1 or 2 only, never a traceback, JSON always strict.

Three kinds of input: arbitrary text as the program, programs that parse but are wrong in
some way (unknown names, shape clashes, cycles, overflow, bad calls...) with random options,
and arbitrary argument lists. Bounded so that the whole file runs well under a minute.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from difftape.cli import cli

COMMANDS = ["eval", "grad", "jacobian", "hessian", "check", "graph"]

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Help and version print text (not JSON) by design; everything else must honour --json.
_NOT_JSON = {"-h", "--help", "--version", "-V"}


def strict_loads(text: str):
    """json.loads that refuses NaN/Infinity tokens."""

    def refuse(token: str):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def check_invariants(argv: list[str], input: str | bytes | None = None) -> None:
    """Run the CLI and assert the promises every run must keep."""
    result = CliRunner().invoke(cli, argv, input=input, prog_name="difftape")
    context = (argv, input, result.exit_code, result.stdout[:2000], result.stderr[:2000])
    assert result.exit_code in (0, 1, 2), context
    assert "Traceback" not in result.output, context
    assert result.exception is None or isinstance(result.exception, SystemExit), context
    if result.exit_code == 2:
        assert result.stderr.strip(), context
        assert "error[internal]" not in result.stderr, context  # a bug in some module: please report it
    if result.exit_code == 1:
        assert argv and argv[0] == "check", context
    dashdash = argv.index("--") if "--" in argv else len(argv)
    if "--json" in argv[:dashdash] and not _NOT_JSON & set(argv[:dashdash]):
        obj = strict_loads(result.stdout)
        assert isinstance(obj, dict), context
        assert result.stdout.count("\n") == 1, context
        if result.exit_code == 2:
            assert set(obj) == {"error"} and set(obj["error"]) >= {"kind", "message", "line", "column"}, context


# ----------------------------------------------------------------------------------------
# arbitrary text as the program

program_text = st.text(
    alphabet=st.one_of(st.sampled_from(list("xyab01.,;=()[]{}+-*/%@<>!:#\n\t _eE^&|~'\"\\")), st.characters()),
    max_size=40,
)


@pytest.mark.parametrize("command", COMMANDS)
@FUZZ
@given(text=program_text, as_json=st.booleans(), via_stdin=st.booleans())
def test_random_text(command, text, as_json, via_stdin):
    opts = ["--json"] if as_json else []
    if via_stdin:
        # stdin carries bytes: a lone surrogate cannot be UTF-8, so it arrives as invalid bytes
        check_invariants([command, *opts, "-"], input=text.encode("utf-8", "surrogatepass"))
    else:
        check_invariants([command, *opts, "--", text])


# ----------------------------------------------------------------------------------------
# programs that parse but are wrong, with random options

NAMES = ["x", "y", "a", "W", "nope", "pi", "sum", "T", "_"]
ATOMS = [
    "1", "2.5", "0", "1e999", "1e-320", "99999999999999999999999", "10**400", "2**62", "0.0",
    "ones(2)", "ones(2,3)", "zeros((2,2))", "randn(3)", "rand(2,2)", "const(1.0)", "const([1.0, 2.0])", "eye(2)",
    "arange(3)", "linspace(0, 1, 4)", "[1, 2]", "[[1, 2], [3, 4]]", "[1, [2, 3]]", "[]", "()", "(1, 2)",
    "unknown(1)", "sum()", "sum(x, axis=5)", "sum(x, axis=x)", "reshape(x, (7,))", "ones(-1)", "ones(2.5)",
    "x[5]", "x[::0]", "x[0, 0, 0]", "x.T", "x.foo", "inv(zeros((2,2)))", "det(ones((3,3)))", "log(-1)",
    "solve(ones((2,2)), ones(2))", "where(x > 0, x, y)", "stop_gradient(x)", "softmax(x)", "norm(x, ord=7)",
    "max(x)", "abs(x)", "sqrt(0.0)", "x**0.5", "0**-1", "1/0", "-1//0", "5 % 0", "full((2,), nan)",
    "ones(2) + ones(3)", "ones((2,3)) @ ones((2,3))", "concatenate([ones(2), ones((2,2))])", "true", "None",
]
OPS = ["+", "-", "*", "/", "//", "%", "@", "**", "<", "==", ">="]


def _expr() -> st.SearchStrategy[str]:
    leaf = st.sampled_from(NAMES + ATOMS)
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(OPS), inner).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
            st.tuples(st.sampled_from(["sin", "exp", "sum", "-", "mean", "tanh", "relu", "log"]), inner).map(
                lambda t: f"-({t[1]})" if t[0] == "-" else f"{t[0]}({t[1]})"
            ),
            inner.map(lambda e: f"({e})"),
            st.tuples(inner, inner).map(lambda t: f"[{t[0]}, {t[1]}]"),
        ),
        max_leaves=6,
    )


@st.composite
def wrong_programs(draw) -> str:
    statements = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(NAMES))
        statements.append(f"{name} = {draw(_expr())}")
    if draw(st.booleans()) or not statements:
        statements.append(draw(_expr()))
    draw(st.randoms()).shuffle(statements)
    return draw(st.sampled_from(["; ", "\n", ";\n"])).join(statements)


VALUES = ["2", "2.0", "[1.0, 2.0]", "randn(3)", "pi/4", "y", "[1,", "1e999", "ones(2,2)", "const(1)", "",
          "[[1], [2, 3]]", "-3", "x=1", "randn(-1)", "eye(2) @ ones(2)", "==2"]


@st.composite
def option_lists(draw, command: str) -> list[str]:
    opts: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        value = draw(st.sampled_from(VALUES))
        name = draw(st.sampled_from(["", *NAMES]))
        opts += ["--at", f"{name}={value}" if name else value]
    if draw(st.booleans()):
        opts += ["--of", draw(st.sampled_from(NAMES))]
    if draw(st.booleans()):
        opts += ["--seed", draw(st.sampled_from(["0", "7", "-1", "x", "99999999999999999999"]))]
    if draw(st.booleans()):
        opts += ["--dtype", draw(st.sampled_from(["float64", "float32", "int8"]))]
    if command in ("grad", "jacobian", "hessian", "check"):
        for flag in ("--wrt", "--watch"):
            if draw(st.booleans()):
                opts += [flag, draw(st.sampled_from(["x", "a", "x,a", "nope", "", ",", "x,x", "1"]))]
    if command in ("grad", "jacobian", "hessian") and draw(st.booleans()):
        opts += ["--unconnected", draw(st.sampled_from(["none", "zero", "maybe"]))]
    if command == "check":
        for _ in range(draw(st.integers(0, 2))):
            opts += ["--expect", draw(st.sampled_from(["2*x", "x=cos(x)", "a=1", "nope=1", "(", "ones(5)", ""]))]
        for flag in ("--rtol", "--atol"):
            if draw(st.booleans()):
                opts += [flag, draw(st.sampled_from(["0", "1e-3", "-1", "nan", "inf", "x"]))]
    if command == "graph":
        opts += draw(st.sampled_from([[], ["--dot"], ["--grad"], ["--dot", "--grad"]]))
    return opts


@pytest.mark.parametrize("command", COMMANDS)
@FUZZ
@given(data=st.data(), as_json=st.booleans())
def test_wrong_programs_with_random_options(command, data, as_json):
    program = data.draw(wrong_programs())
    opts = data.draw(option_lists(command))
    check_invariants([command, *(["--json"] if as_json else []), *opts, "--", program])


# ----------------------------------------------------------------------------------------
# arbitrary argument lists

TOKENS = ["eval", "grad", "check", "graph", "--json", "--at", "x=1", "1", "--of", "x", "--seed", "3", "--dtype",
          "float32", "-f", "-", "--", "--wrt", "--watch", "--expect", "--dot", "--grad", "--rtol", "--bogus",
          "x**2", "-x", "", "=", "--at=2", "-fx"]


@FUZZ
@given(argv=st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=8)), max_size=8))
def test_random_argument_lists(argv):
    if _NOT_JSON & set(argv):
        return
    check_invariants(argv, input="x**2")
