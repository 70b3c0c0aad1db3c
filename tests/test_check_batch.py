"""``check --batch`` and ``check --points N``: the verdicts of one point's check, for many points at once.

Every comparison runs the same points through ``difftape.answers.batch_check`` (vectorised per input
signature) and through ``Program.check`` one point at a time (what ``difftape check --at ...`` runs),
and requires the same verdict, method, mode, analytic reference and error, and numbers that agree
within the numerical error. The batch checker's safety net (a failing run halved down to single
points, which are then checked by ``Program.check`` itself) would hide a wrong vectorised check, so
the comparisons also require that the net was not used.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from op_cases import CASES, Case

import difftape.answers.batch_check as bc
from difftape.answers import numeric
from difftape.answers.batch import BatchProgram, point_value
from difftape.answers.program import CheckResult, Program
from difftape.cli import cli
from difftape.errors import DifftapeError


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input)


def lines(text: str) -> list[dict]:
    return [json.loads(line, parse_constant=_no_constant) for line in text.splitlines() if line]


def _no_constant(name: str):
    raise AssertionError(f"not strict JSON: {name}")


@pytest.fixture
def no_fallback(monkeypatch):
    """Fail the test if any point had to be checked alone (the vectorised check failed for it)."""
    alone = []
    real = bc.BatchChecker._alone

    def watched(self, group, j, verdict, fail):
        alone.append(int(group.lines[j]))
        return real(self, group, j, verdict, fail)

    monkeypatch.setattr(bc.BatchChecker, "_alone", watched)
    yield alone
    assert not alone, f"points checked alone: {alone}"


def single(source: str, point: dict, dtype: str = "float64", at: dict | None = None, **options):
    """``Program.check`` at one point: its result, or its DifftapeError."""
    try:
        with np.errstate(all="ignore"):
            values = {k: point_value(v, np.float32 if dtype == "float32" else np.float64) for k, v in point.items()}
            prog = Program(source, at={**(at or {}), **values}, dtype=dtype)
            return prog.check(**options)
    except DifftapeError as err:
        return err


def same_verdicts(source: str, points: list[dict], dtype: str = "float64", at: dict | None = None,
                  **options) -> list:
    """Check ``points`` both ways and require the same answers; returns the batch's."""
    got = BatchProgram(source, at=at, dtype=dtype).check(points, **options)
    assert len(got) == len(points)
    for point, res in zip(points, got):
        want = single(source, point, dtype, at, **options)
        if isinstance(want, DifftapeError):
            assert isinstance(res, DifftapeError), (source, point, want, res)
            assert (res.kind, res.message) == (want.kind, want.message), (source, point)
            continue
        assert isinstance(res, CheckResult), (source, point, res)
        assert_same(want, res, (source, point))
    return got


def assert_same(want: CheckResult, got: CheckResult, where) -> None:
    assert (got.ok, got.method, got.mode, got.order, got.rtol, got.atol) == \
        (want.ok, want.method, want.mode, want.order, want.rtol, want.atol), where
    assert list(got.inputs) == list(want.inputs), where
    # float32: batched reductions may round differently, by an ulp of float32
    close = 1e-5 if "float64 model" in want.method else 1e-10
    for name, w in want.inputs.items():
        g = got.inputs[name]
        assert (g.ok, g.mode, g.analytic_expr, g.analytic_source) == (w.ok, w.mode, w.analytic_expr,
                                                                        w.analytic_source), (where, name)
        slack = 10 * max(w.numeric_error, g.numeric_error) + 1e-9
        np.testing.assert_allclose(g.tape, w.tape, rtol=close, atol=1e-12, err_msg=str(where))
        if np.isfinite(slack):
            np.testing.assert_allclose(g.numeric, w.numeric, rtol=1e-7, atol=slack, err_msg=str(where))
        for field in ("analytic", "forward"):
            a, b = getattr(w, field), getattr(g, field)
            assert (a is None) == (b is None), (where, name, field)
            if a is not None:
                np.testing.assert_allclose(b, a, rtol=max(close, 1e-9), atol=1e-12, err_msg=str(where))
        scale = close * float(np.max(np.abs(w.tape), initial=0.0))  # (float32: the tape's last bit moves them)
        for field, size in (("max_abs_err", scale), ("max_rel_err", close)):
            a, b = getattr(w, field), getattr(g, field)
            assert b == pytest.approx(a, rel=1e-3, abs=10 * slack + size), (where, name, field)


# ----------------------------------------------------------------------------------------
# the verdicts of one point's check


def _points(case: Case, count: int) -> list[dict]:
    out = []
    for seed in range(count):
        values = case.values(seed=seed + 11)
        out.append({i.name: v.tolist() for i, v in zip(case.inputs, values)})
    return out


SAMPLE = [c for c in CASES if c.program is not None and c.batch][::5]


@pytest.mark.parametrize("case", SAMPLE, ids=[c.id for c in SAMPLE])
def test_op_cases_get_the_verdicts_of_one_point_checks(case, no_fallback):
    same_verdicts(case.program, _points(case, 3))


@pytest.mark.parametrize("case", SAMPLE[::3], ids=[c.id for c in SAMPLE[::3]])
def test_op_cases_in_directional_mode(case, no_fallback):
    same_verdicts(case.program, _points(case, 2), mode="directional", directions=2)


@pytest.mark.parametrize("source,points", [
    ("sin(x)**2 * exp(-x/3)", [{"x": float(v)} for v in np.random.default_rng(1).standard_normal(40)]),
    ("abs(x) * x + x**3", [{"x": float(v)} for v in np.random.default_rng(2).standard_normal(40)]),
    ("sum(maximum(x, 0.2) * x)", [{"x": np.random.default_rng(k).standard_normal(3).tolist()} for k in range(10)]),
    ("sum(tanh(W @ x) ** 2); W = randn(2, 3)", [{"x": np.random.default_rng(k).standard_normal(3).tolist()}
                                               for k in range(10)]),
    ("sum(x * const(x)) + y * const(x[0] * y)", [{"x": [0.5, k - 2.0], "y": k / 3} for k in range(6)]),
    ("x**y", [{"x": 0.5 + k / 4, "y": k - 2.0} for k in range(8)]),  # an int power here and there
    ("det(A)", [{"A": (np.eye(2) + 0.3 * np.random.default_rng(k).standard_normal((2, 2))).tolist()}
                for k in range(6)]),
])
@pytest.mark.parametrize("mode", ["full", "directional"])
def test_random_points_of_small_programs(source, points, mode, no_fallback):
    same_verdicts(source, points, mode=mode)


def test_a_wrong_expectation_is_caught_at_the_points_where_it_is_wrong(no_fallback):
    points = [{"x": v} for v in (0.0, 0.5, -1.0, 1e-5, 2.0)]
    got = same_verdicts("sin(x) * x", points, expect={"x": "cos(x) * x + sin(x) + 0.01 * x**2"})
    assert [r.ok for r in got] == [True, False, False, True, False]  # x**2 < the tolerance near 0


def test_points_outside_the_domain_get_its_error_and_the_others_their_verdicts(no_fallback):
    points = [{"x": 2.0}, {"x": -1.0}, {"x": 0.0}, {"x": 0.25}, {"x": "nan"}]
    got = same_verdicts("log(x) * x**2", points)
    assert [type(r).__name__ for r in got] == ["CheckResult", "DifftapeError", "DifftapeError", "CheckResult",
                                               "DifftapeError"]
    assert got[1].kind == "domain" and "no derivative to check" in got[1].message
    vec = same_verdicts("sum(x**0.5)", [{"x": [1.0, 4.0]}, {"x": [1.0, 0.0]}])
    assert vec[1].kind == "domain" and "at (1,)" in vec[1].message  # the gradient's bad element is named


def test_float32_programs_use_float32_tolerances_against_the_float64_model(no_fallback):
    points = [{"x": v, "y": 1.5} for v in (0.3, 1.7, -2.2)]
    got = same_verdicts("sin(x) * y + x**3", points, dtype="float32")
    assert all(r.ok and (r.rtol, r.atol) == (1e-3, 1e-5) and "(float64 model)" in r.method for r in got)
    wrong = same_verdicts("sin(x)", [{"x": 0.5}], dtype="float32", expect={"x": "cos(x) * 1.0005"})
    assert wrong[0].ok  # 5e-4 is within float32's rtol 1e-3 ...
    wrong = same_verdicts("sin(x)", [{"x": 0.5}], dtype="float32", expect={"x": "cos(x) * 1.01"})
    assert not wrong[0].ok  # ... 1e-2 is not


def test_options_go_through_as_one_points_check_takes_them(no_fallback):
    points = [{"x": [0.5, -1.0]}, {"x": [2.0, 0.1]}]
    same_verdicts("sum(x**3) * a; a = 2.0", points, wrt=["x"])
    same_verdicts("sum(x**3) * a; a = const(2.0)", points, watch=["a"], rtol=1e-9, atol=1e-12)
    same_verdicts("sum(sin(x))", points, mode="directional", directions=5)
    big = [{"x": np.random.default_rng(k).standard_normal(1001).tolist()} for k in range(2)]
    got = same_verdicts("sum(sin(x) * x)", big)  # auto: directional beyond 1,000 elements
    assert got[0].mode == "directional"


def test_second_order_is_checked_point_by_point_with_the_same_verdicts(no_fallback):
    same_verdicts("sin(x) * y**2", [{"x": 0.5, "y": 2.0}, {"x": -1.0, "y": 0.5}], order=2)


def test_an_unbatchable_point_is_checked_alone_and_answered_as_alone():
    # a singular matrix at one point: inv fails for the whole batch, the point alone says why
    points = [{"A": [[2.0, 1.0], [0.0, 1.0]]}, {"A": [[1.0, 2.0], [2.0, 4.0]]}, {"A": [[1.0, 0.0], [0.5, 3.0]]}]
    got = same_verdicts("sum(inv(A))", points)
    assert isinstance(got[1], DifftapeError) and isinstance(got[0], CheckResult)


def test_json_lines_in_bulk_are_the_json_of_each_points_result():
    from difftape.io.render import check_json, dumps

    for source, options in [("sin(x) * y", {}), ("sum(abs(x) * x)", {}), ("sum(tanh(W @ x)); W = randn(2, 3)",
                                                                         {"mode": "directional"}),
                            ("x**2 * y", {"expect": {"x": "3*x*y"}})]:
        prog = BatchProgram(source, at={"x": np.zeros(3)} if "sum" in source else {})
        group, _ = bc.draw_points(prog, 60, seed=1)
        group.values["x"][::7] = 0.0  # zeros, and (below) non-finite gradients mixed in
        if "y" in group.values:
            group.values["y"][3] = np.inf
        blocks: list = []
        bc.BatchChecker(prog, **options).check_group(group, None, lambda lines, err: None,
                                                     lambda lines, block, blocks=blocks: blocks.append(block))
        assert blocks
        for block in blocks:
            want = [dumps(check_json(block.result(i), block.rtol, block.atol)) + "\n" for i in range(len(block.ok))]
            assert block.json_lines() == want, source


# ----------------------------------------------------------------------------------------
# the numerical pieces: Ridders for many points is Ridders at each point


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_ridders_for_many_points_is_ridders_at_each_point():
    fns = [np.sin, np.exp, lambda t: np.sqrt(np.abs(t) + 1e-3), lambda t: np.where(t > 0.3, t**2, -t), np.log]
    xs = np.array([0.5, -1.0, 0.0, 0.31, 1e-7, 3.0])
    for fn in fns:  # (log: nan sides where x <= 0, so steps shrink and tableaux stop at different places)
        def batch_f(idx, t, fn=fn):
            return fn(t)
        best, err = bc.ridders_batch(batch_f, np.arange(xs.size), xs, 0.1 * np.maximum(np.abs(xs), 1.0))
        for k, x in enumerate(xs):
            want, want_err = numeric.ridders(lambda t, fn=fn: float(fn(t)), float(x), 0.1 * max(abs(float(x)), 1.0))
            np.testing.assert_equal([best[k], err[k]], [want, want_err])


# ----------------------------------------------------------------------------------------
# --points N


def test_points_are_reproducible_and_each_point_does_not_depend_on_n():
    prog = BatchProgram("sum(W @ x) * y; W = randn(2, 3)", at={"x": np.zeros(3)})
    a, names = bc.draw_points(prog, 50, seed=4)
    b, _ = bc.draw_points(prog, 50, seed=4)
    c, _ = bc.draw_points(prog, 7, seed=4)
    d, _ = bc.draw_points(prog, 50, seed=5)
    assert names == ["x", "y"] and a.values["x"].shape == (50, 3) and a.values["y"].shape == (50,)
    for k in names:
        np.testing.assert_array_equal(a.values[k], b.values[k])
        np.testing.assert_array_equal(a.values[k][:7], c.values[k])
        assert not np.array_equal(a.values[k], d.values[k])
    first = invoke("check", "sin(x) * y", "--points", "200", "--seed", "3", "--json")
    again = invoke("check", "sin(x) * y", "--points", "200", "--seed", "3", "--json")
    other = invoke("check", "sin(x) * y", "--points", "200", "--seed", "4", "--json")
    assert first.exit_code == 0 and first.stdout == again.stdout and first.stdout != other.stdout


def test_points_summary_counts_mismatches_and_names_the_worst_point():
    res = invoke("check", "x**2 * y", "--points", "300", "--expect", "x=2*x*y + 1e-3*x**4", "--json")
    assert res.exit_code == 1, res.output
    out = json.loads(res.stdout, parse_constant=_no_constant)
    assert out["points"] == 300 and out["checked"] == 300 and out["failed"] == 0
    assert 0 < out["mismatched"] < 300 and len(out["mismatches"]) == out["mismatched"]
    worst = out["worst"]
    assert worst["check"]["ok"] is False and set(worst["at"]) == {"x", "y"}
    # the worst point is the one whose difference is largest next to its tolerance
    listed = invoke("check", "x**2 * y", "--points", "300", "--expect", "x=2*x*y + 1e-3*x**4", "--batch")
    rows = lines(listed.stdout)
    assert len(rows) == 300 and listed.exit_code == 1
    assert rows[worst["point"] - 1]["at"] == worst["at"]
    xs = [r["inputs"]["x"] for r in rows]
    ratios = [abs(x["tape"] - x["analytic"]) / (1e-8 + 1e-6 * abs(x["analytic"])) for x in xs]
    assert int(np.argmax(ratios)) == worst["point"] - 1
    assert sum(1 for r in rows if not r["ok"]) == out["mismatched"]
    assert [k for k, r in enumerate(rows, 1) if not r["ok"]] == out["mismatches"]
    text = invoke("check", "x**2 * y", "--points", "300", "--expect", "x=2*x*y + 1e-3*x**4")
    assert text.exit_code == 1 and f"checked    300 of 300 points: {300 - out['mismatched']} ok" in text.stdout
    assert f"worst      point {worst['point']}" in text.stdout and "MISMATCH at" in text.stdout


def test_points_are_the_verdicts_of_one_point_checks_at_the_drawn_points():
    res = invoke("check", "log(x) * sum(v**2)", "--at", "v=zeros(2)", "--points", "40", "--seed", "9", "--batch")
    rows = lines(res.stdout)
    assert res.exit_code == 2 and len(rows) == 40  # log at negative points: no verdict there
    domain = [r for r in rows if "error" in r]
    assert domain and all(r["error"]["kind"] == "domain" and r["at"]["x"] <= 0 for r in domain)
    for k, r in enumerate(rows[:12], 1):
        want = single("log(x) * sum(v**2)", r["at"])
        if isinstance(want, DifftapeError):
            assert r["error"]["message"] == want.message and r["error"]["line"] == k
        else:
            assert r["ok"] == want.ok and r["method"] == want.method


def test_points_with_inputs_bound_in_the_program_keep_them_and_ints_bools_as_said():
    prog = BatchProgram("where(m, x * W[0, 0], x); W = randn(2, 2)", at={"m": np.array(True), "x": np.zeros(2)})
    assert bc.drawn_shapes(prog) == {"x": (2,)}  # the mask stays, W stays as bound
    res = invoke("check", "where(m, x * W[0, 0], x); W = randn(2, 2)", "--at", "m=True", "--at", "x=zeros(2)",
                 "--points", "20", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["drawn"] == {"x": [2]}


def test_absurd_point_counts_are_a_limit_error():
    res = invoke("check", "sin(x)", "--points", "100000000")
    assert res.exit_code == 2 and "error[limit]" in res.stderr and "at most 10,000,000" in res.stderr
    res = invoke("check", "sum(x)", "--at", "x=zeros(1000)", "--points", "1000000")
    assert res.exit_code == 2 and "error[limit]" in res.stderr and "input elements" in res.stderr
    res = invoke("check", "x; x = 2.0", "--points", "10")
    assert res.exit_code == 2 and "nothing to draw" in res.stderr


# ----------------------------------------------------------------------------------------
# the command line: lines, exit statuses, strict JSON


def test_batch_lines_are_the_json_of_one_point_check():
    pts = [{"x": 0.5, "y": 2.0}, {"x": -1.5, "y": 0.25}]
    res = invoke("check", "sin(x) * y**2", "--batch", input="".join(json.dumps(p) + "\n" for p in pts))
    assert res.exit_code == 0
    for row, p in zip(lines(res.stdout), pts):
        one = invoke("check", "sin(x) * y**2", "--at", f"x={p['x']!r}", "--at", f"y={p['y']!r}", "--json")
        want = json.loads(one.stdout)
        assert set(row) == set(want)
        assert {k: v for k, v in row.items() if k != "inputs"} == {k: v for k, v in want.items() if k != "inputs"}
        for name in want["inputs"]:
            a, b = row["inputs"][name], want["inputs"][name]
            assert set(a) == set(b) and a["ok"] == b["ok"] and a["analytic_expr"] == b["analytic_expr"]
            assert a["tape"] == pytest.approx(b["tape"], rel=1e-12)


@pytest.mark.parametrize("input,args,code", [
    ('{"x": 0.5}\n{"x": 2.0}\n', [], 0),
    ('{"x": 0.5}\n{"x": 2.0}\n', ["--expect", "3*x"], 1),
    ('{"x": 0.5}\n{"x": -2.0}\n', [], 2),  # a point outside the domain: no verdict there
    ('{"x": 0.5}\n{"x": }\n', [], 2),  # a bad line
    ('{"x": 0.5}\n{"x": -2.0}\n{"x": 2.0}\n', ["--expect", "3/x"], 1),  # a mismatch outweighs a failed line
    ('{"x": 1.0}\n{"x": -2.0}\n', ["--expect", "2/x"], 2),  # (2/x is right: no mismatch, one failed line)
])
def test_exit_statuses(input, args, code):
    res = invoke("check", "log(x) * 2", "--batch", *args, input=input)
    assert res.exit_code == code, (res.output, res.stderr)
    rows = lines(res.stdout)
    assert len(rows) == input.count("\n")
    if code == 1:
        assert "MISMATCH at" in res.stderr and "the first, line" in res.stderr
    if any("error" in r for r in rows):
        assert "lines failed; the first, line" in res.stderr


def test_nonfinite_numbers_are_strings_and_lines_strict_json():
    res = invoke("check", "sum(where(x > 0, x, 0) * c); c = const([1.0, 2.0])", "--batch", "--echo",
                 input='{"x": [1.0, "inf"]}\n{"x": ["nan", 2.0]}\n{"x": [1.0, 2.0]}\n')
    rows = lines(res.stdout)  # raises on NaN/Infinity tokens
    assert res.exit_code == 2 and rows[0]["error"]["kind"] == "domain" and rows[2]["ok"] is True
    assert rows[0]["at"] == {"x": [1.0, "inf"]}


def test_bad_options_fail_before_any_line_is_read():
    for args, message in [
        (["--expect", "2*x +* 1"], "error[syntax]"),
        (["--expect", "z=2*x"], "not differentiated here"),
        (["--wrt", "nope"], "--wrt nope"),
        (["--plot", "p.png"], "--plot draws one point"),
    ]:
        res = invoke("check", "x**2", "--batch", *args, input='{"x": 1.0}\n')
        assert res.exit_code == 2 and message in res.stderr, (args, res.stderr)
        assert res.stdout.count("\n") == 1 and '"error"' in res.stdout  # the one error object, no line answered
    res = invoke("check", "2.0", "--batch", input='{"x": 1.0}\n')
    assert res.exit_code == 2 and "nothing to check" in res.stderr


def test_at_file_and_partitions_give_the_same_lines(tmp_path):
    rng = np.random.default_rng(8)
    text = "".join(json.dumps({"x": float(v), "w": rng.standard_normal(2).tolist()}) + "\n"
                   for v in rng.standard_normal(60))
    (tmp_path / "p.ndjson").write_text(text)
    args = ["check", "log(x) * sum(w**3)", "--expect", "x=sum(w**3)/x"]
    piped = invoke(*args, "--batch", input=text)
    from_file = invoke(*args, "--at-file", str(tmp_path / "p.ndjson"))
    parted = invoke(*args, "--at-file", str(tmp_path / "p.ndjson"), "--output", str(tmp_path / "out"))
    assert piped.exit_code == from_file.exit_code == parted.exit_code == 2  # no mismatch; negative x fail
    assert piped.stdout == from_file.stdout == (tmp_path / "out" / "p.ndjson").read_text()
    wrong = invoke(*args[:-1], "x=sum(w**3)/x + 1e-3", "--at-file", str(tmp_path / "p.ndjson"), "--output",
                   str(tmp_path / "out2"))
    assert wrong.exit_code == 1 and "MISMATCH at" in wrong.stderr


def test_parquet_points_get_the_verdicts_of_the_same_points_in_ndjson(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(2)
    x = rng.standard_normal(100)
    pq.write_table(pa.table({"x": x}), tmp_path / "p.parquet", row_group_size=30)
    (tmp_path / "p.ndjson").write_text("".join(json.dumps({"x": float(v)}) + "\n" for v in x))
    args = ["check", "sin(x) * x", "--expect", "cos(x) * x + sin(x) + 1e-7 * x**8"]
    nd = invoke(*args, "--at-file", str(tmp_path / "p.ndjson"))
    pqr = invoke(*args, "--at-file", str(tmp_path / "p.parquet"), "--output", str(tmp_path / "out"))
    assert nd.exit_code == pqr.exit_code == 1
    result = pq.read_table(tmp_path / "out" / "p.parquet").column("result").to_pylist()
    assert [line + "\n" for line in result] == nd.stdout.splitlines(keepends=True)


def test_the_real_command_in_a_subprocess():
    run = subprocess.run(
        [sys.executable, "-m", "difftape", "check", "x**3", "--batch", "--expect", "3*x**2 + 1e-4*x**6"],
        input='{"x": 0.1}\n{"x": 3.0}\n', capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    rows = lines(run.stdout)
    assert [r["ok"] for r in rows] == [True, False]
    run = subprocess.run([sys.executable, "-m", "difftape", "check", "x**3", "--points", "500"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "ok: every gradient agrees within the tolerance at all 500 points" in run.stdout


def test_help_says_what_batches_do():
    out = invoke("check", "--help").stdout
    for words in ("--batch", "--points", "point by point", "1 if any point mismatched, else 2"):
        assert words in " ".join(out.split()), words


def test_directional_ridders_tries_smaller_steps_past_nearby_kinks(no_fallback):
    """Along a random direction of many elements the nearest kink of abs is closer than the first
    step: one start of Ridders reported MISMATCH for a right gradient (seed 1, randn(1500)). Both the
    single-point check and the batch one try decades of smaller steps, with the same verdicts."""
    source = "sum(abs(x)*sin(x)*exp(x/3))"
    rng = np.random.default_rng(1)
    points = [{"x": rng.standard_normal(1500).tolist()} for _ in range(3)]
    got = same_verdicts(source, points, mode="directional", directions=5)
    assert all(isinstance(r, CheckResult) and r.ok for r in got)
    res = single(source, points[0], mode="directional", directions=5)
    assert res.ok and res.inputs["x"].max_rel_err < 1e-7
    wrong = single(source, points[0], mode="directional", directions=5,
                   expect={"x": "exp(x/3)*abs(x)*cos(x)"})
    assert not wrong.ok
