"""Issue 18 item 3: huge work is refused before it starts, with the size and the option that raises it."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from difftape import cli as cli_module
from difftape.answers.program import parse_value
from difftape.cli import cli
from difftape.language import cost
from difftape.language.compiler import compile_program
from difftape.language.cost import check_cost, op_flops


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input)


def _limit_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = result.output.strip().splitlines()[0]
    assert text.startswith("error[limit]: ")
    return text


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("eval", "det(A); A = randn(7000,7000)"), "--max-flops"),
        (("eval", " @ ".join(["A"] * 13) + "; A = randn(7000,7000)"), "--max-flops"),
        (("jacobian", "sin(x) * 2", "--at", "x=ones(100000)"), "--max-flops"),
        (("eval", " + ".join(["A"] * 30) + "; A = ones(7000,7000)"), "--max-elements"),
        (("grad", "sum(inv(A)); A = randn(5000,5000)"), "--max-flops"),
        (("hessian", "sum(x**2)", "--at", "x=ones(20000)"), "--max-elements"),
        (("check", "sum(x**2)", "--at", "x=ones(100000)", "--mode", "full"), "--max-flops"),
        (("diff", "sum(A @ A); A = randn(5000, 5000)"), "--max-flops"),
    ],
    ids=["det", "matmul-chain", "jacobian-passes", "30-adds", "grad-inv", "hessian", "check", "diff"],
)
def test_huge_work_is_refused_with_the_option_to_raise_it(args, option):
    text = _limit_error(run(*args))
    assert f"raise the limit with {option} " in text
    suggested = float(text.rsplit(" ", 1)[1])
    # ... written so that the option takes it as it is (--max-elements is an integer: not 4e+08)
    assert run("eval", "1", option, text.rsplit(" ", 1)[1]).exit_code == 0
    # The suggested value is enough: with it, the estimate passes (checked without running).
    values = None
    if "--at" in args:
        values = {"x": parse_value(args[args.index("--at") + 1][2:])}
    graph = compile_program(args[1], values=values)
    if option == "--max-flops":
        kw = {"max_flops": suggested, "max_elements": 10**18}
    else:
        kw = {"max_elements": int(suggested), "max_flops": 1e30}
    if "--mode" in args:
        kw["check_mode"] = args[args.index("--mode") + 1]
    check_cost(graph, args[0], **kw)


def test_the_limit_error_is_json_too():
    result = run("eval", "det(A); A = randn(7000,7000)", "--json")
    payload = json.loads(result.output.strip().splitlines()[-1])
    assert payload["error"]["kind"] == "limit"
    assert "--max-flops" in payload["error"]["message"]


def test_raising_the_limits_lets_a_program_run():
    src = "det(A); A = eye(200)"
    assert _limit_error(run("eval", src, "--max-flops", "1e5"))
    result = run("eval", src, "--max-flops", "1e8")
    assert result.exit_code == 0, result.output
    assert "1.0" in result.output
    assert _limit_error(run("eval", src, "--max-elements", "100"))
    assert run("eval", src, "--max-elements", "100000").exit_code == 0


def test_the_batch_commands_check_the_work_of_a_point():
    result = run("eval", "det(A); A = randn(7000,7000)", "--batch", input='{"x": 1}\n')
    assert result.exit_code == 2
    assert json.loads(result.output.strip().splitlines()[-1])["error"]["kind"] == "limit"


def test_graph_only_compiles_so_it_is_not_refused():
    assert run("graph", "det(A); A = randn(7000,7000)").exit_code == 0


def test_everyday_programs_are_far_from_the_limits():
    for args in (("grad", "sum(W @ x); W = randn(50, 50)", "--at", "x=ones(50)"),
                 ("jacobian", "A @ x; A = randn(100, 100)", "--at", "x=ones(100)"),
                 ("hessian", "sum(x**3)", "--at", "x=ones(30)"),
                 ("check", "sum(sin(x))", "--at", "x=ones(50)")):
        result = run(*args)
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize("command", ["eval", "grad", "jacobian", "hessian", "check", "diff", "graph"])
def test_every_command_documents_the_options(command):
    out = run(command, "--help").output
    assert "--max-flops" in out and "--max-elements" in out


def test_the_cli_defaults_are_the_cost_modules():
    assert cli_module.DEFAULT_MAX_FLOPS == cost.DEFAULT_MAX_FLOPS
    assert cli_module.DEFAULT_MAX_ELEMENTS == cost.DEFAULT_MAX_ELEMENTS


def test_op_cost_rules():
    assert op_flops("matmul", (3, 5), [(3, 4), (4, 5)]) == 2 * 3 * 4 * 5
    assert op_flops("matmul", (2, 3, 5), [(2, 3, 4), (4, 5)]) == 2 * 2 * 3 * 4 * 5
    assert op_flops("dot", (), [(7,), (7,)]) == 2 * 7
    assert op_flops("det", (), [(9, 9)]) == pytest.approx(2 / 3 * 9**3)
    assert op_flops("inv", (4, 9, 9), [(4, 9, 9)]) == 2 * 4 * 9**3
    assert op_flops("solve", (9,), [(9, 9), (9,)]) == pytest.approx(2 / 3 * 9**3 + 2 * 81)
    assert op_flops("sin", (10, 10), [(10, 10)]) == 100  # the fallback: elements of the output
    assert op_flops("sum", (), [(10, 10)]) == 1
    assert set(cost.FLOPS) == {"matmul", "dot", "inv", "det", "solve"}


def test_unknown_shapes_count_as_nothing():
    graph = compile_program("sum(W @ x); W = randn(3, 3)")  # x has no value: no static shapes downstream
    assert check_cost(graph, "grad").flops >= 0
