"""Issue 18 item 3, for ``diff``: expression swell is refused quickly (error[limit], --max-terms), never minutes
of silence; a derivation that runs out of its budget anyway stops with the same error."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from difftape import cli as cli_module
from difftape.cli import cli
from difftape.errors import DifftapeError
from difftape.transforms.symbolic import derive as derive_fn
from difftape.transforms.symbolic import expr

derive_module = importlib.import_module("difftape.transforms.symbolic.derive")

SUGGESTION = re.compile(r"raise the limit with --max-terms (\d+)$")


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def _diff_process(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``difftape diff ARGS`` as a real process, killed (and the test failed) if it runs for a minute."""
    return subprocess.run([sys.executable, "-m", "difftape", "diff", *args], capture_output=True, text=True,
                          timeout=timeout)


SWELL = ["sigmoid(sigmoid(sigmoid(x)))*softplus(x)", "x**x**x", "arctan(sigmoid(x))*tanh(x)**3"]


@pytest.mark.parametrize("program", SWELL)
def test_swell_at_order_8_is_refused_in_seconds_with_the_option_to_raise(program):
    start = time.monotonic()
    p = _diff_process(program, "--order", "8")
    took = time.monotonic() - start
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stdout == ""
    assert p.stderr.startswith("error[limit]: `diff --order 8` of this program would build about ")
    assert "nodes at orders 1 to" in p.stderr and "Traceback" not in p.stderr
    m = SUGGESTION.search(p.stderr.strip())
    assert m and int(m.group(1)) > derive_module.DEFAULT_MAX_TERMS
    assert took < 60  # (the subprocess timeout is the real bound; before the limit this ran for minutes)


def test_the_json_error_names_the_option():
    result = run("diff", SWELL[0], "--order", "8", "--json")
    assert result.exit_code == 2
    payload = result.output.strip().splitlines()[-1]
    assert '"kind": "limit"' in payload and "--max-terms" in payload


def test_raising_the_limit_lets_it_run():
    refused = run("diff", "x**x**x", "--order", "6", "--max-terms", "3000")
    assert refused.exit_code == 2 and refused.output.startswith("error[limit]")
    ok = run("diff", "x**x**x", "--order", "6", "--max-terms", "1000000")
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("of x**x**x\nd6/dx6  ")


def test_a_first_order_derivation_over_the_budget_stops_with_the_same_error():
    source = " + ".join(f"sin({i}*x)*exp(x/{i})" for i in range(1, 200))
    with pytest.raises(DifftapeError) as err:
        derive_fn(source, max_terms=500)
    assert err.value.kind == "limit"
    assert err.value.message.startswith("`diff` of this program builds more than 500 expression nodes")
    assert err.value.message.endswith("raise the limit with --max-terms 5000")
    assert expr._BUDGETS == []  # the budget is gone with the derivation
    assert derive_fn(source).diff["x"]  # the default is far above a program of this size


def test_orders_that_stay_small_are_not_refused():
    for program, order in [("exp(x**2)", 8), ("sin(x)/x + cos(x)/x**2", 8), ("1/(1 + x**2)", 8),
                           ("x**8 + 3*x**5", 8), ("sin(x*y)*exp(y/x)", 2)]:
        result = run("diff", program, "--order", str(order))
        assert result.exit_code == 0, (program, result.output)


def test_check_derives_its_reference_without_a_limit(monkeypatch):
    import difftape.transforms.symbolic as symbolic
    from difftape.answers.program import Program

    calls = []
    real = symbolic.derive

    def spy(*args, **kw):
        calls.append(kw.get("max_terms", "default"))
        return real(*args, **kw)

    monkeypatch.setattr(symbolic, "derive", spy)
    res = Program("sigmoid(sigmoid(sigmoid(x)))*softplus(x)", at={"x": 0.3}).check()
    assert res.ok and res.inputs["x"].analytic_source == "diff"
    assert calls == [None]


def test_the_cli_default_is_the_derive_modules():
    assert cli_module.DEFAULT_MAX_TERMS == derive_module.DEFAULT_MAX_TERMS
    text = run("diff", "--help").output
    assert "--max-terms N" in text and str(derive_module.DEFAULT_MAX_TERMS) in text


@pytest.mark.slow
def test_a_large_but_bounded_order_8_finishes_within_the_budget():
    p = _diff_process("tan(tan(tan(x)))", "--order", "8")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("of tan(tan(tan(x)))\nd8/dx8  ")
