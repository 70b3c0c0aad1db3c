"""Batches (``--batch``): vectorised results equal per-point results, line by line.

Every comparison runs the same points through ``difftape.answers.batch`` (one vectorised run per input
signature) and through ``Program`` one point at a time, and asks for the same values, dtypes,
shapes and derivatives. The safety nets of the batch runner (a per-node point loop for ops without
a batching rule; splitting a failing run down to single points) would hide a wrong batching rule
behind a right answer, so the fixture ``strict`` makes them fail the test unless it expects them.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import difftape.answers.batch as batch
from difftape.answers.batch import BatchProgram, parse_ndjson, point_value, run_ndjson
from difftape.answers.program import Program, parse_value
from difftape.cli import cli
from difftape.errors import DifftapeError
from difftape.io.render import dumps, eval_json, grad_json, jacobian_json, json_column
from difftape.ops import OPS

RNG = np.random.default_rng(20240611)


def mat(*shape: int) -> list:
    return RNG.normal(size=shape).round(3).tolist()


def spd(n: int) -> list:
    a = RNG.normal(size=(n, n))
    return (a @ a.T + n * np.eye(n)).round(3).tolist()


@pytest.fixture(autouse=True)
def strict(monkeypatch):
    """Fail on any use of the per-point safety nets, unless a test allows them (``strict.allow``)."""

    class Nets:
        allowed = False
        used: list[str] = []

        def allow(self):
            self.allowed = True

    nets = Nets()
    alone, per_point = batch._Job._alone, batch.per_point

    def watched_alone(self, group, j):
        nets.used.append("alone")
        assert nets.allowed, f"a vectorised run failed for {self.prog.source!r}; fell back to single points"
        return alone(self, group, j)

    def watched_per_point(apply, B, op, node, args, flags):
        nets.used.append(op.name)
        assert nets.allowed, f"op {op.name} ran point by point"
        return per_point(apply, B, op, node, args, flags)

    monkeypatch.setattr(batch._Job, "_alone", watched_alone)
    monkeypatch.setattr(batch, "per_point", watched_per_point)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield nets


# ----------------------------------------------------------------------------------------
# comparing with Program, point by point


def assert_same(got, ref, where: str) -> None:
    if isinstance(got, DifftapeError) or isinstance(ref, DifftapeError):
        assert isinstance(got, DifftapeError) and isinstance(ref, DifftapeError), (where, got, ref)
        assert got.kind == ref.kind, (where, got, ref)
        return
    if not hasattr(ref, "of"):
        got, ref = np.asarray(got), np.asarray(ref)
        assert got.shape == ref.shape, (where, got.shape, ref.shape)
        assert got.dtype == ref.dtype, (where, got.dtype, ref.dtype)
        if ref.dtype.kind in "biu":
            assert np.array_equal(got, ref), (where, got, ref)
        else:
            assert np.allclose(got, ref, rtol=1e-11, atol=1e-13, equal_nan=True), (where, got, ref)
        return
    assert got.of == ref.of
    assert_same(got.value, ref.value, where + " value")
    blocks, ref_blocks = (got.grad, ref.grad) if hasattr(ref, "grad") else (got.jacobian, ref.jacobian)
    assert list(blocks) == list(ref_blocks), where
    for name, block in blocks.items():
        if ref_blocks[name] is None or block is None:
            assert block is None and ref_blocks[name] is None, (where, name, block, ref_blocks[name])
        else:
            assert_same(block, ref_blocks[name], f"{where} d/d{name}")
    if hasattr(ref, "summed"):
        assert got.summed == ref.summed


def per_point(source, command, point, at=None, dtype="float64", **options):
    try:
        values = {**(at or {}), **{k: point_value(v, dtype) for k, v in point.items()}}
        prog = Program(source, at=values, dtype=dtype)
        if command == "eval":
            return prog.evaluate()
        return getattr(prog, command)(**options)
    except DifftapeError as err:
        return err


def check(source, points, at=None, dtype="float64", commands=("eval", "grad", "jacobian"), **options):
    prog = BatchProgram(source, at=at, dtype=dtype)
    for command in commands:
        method = prog.evaluate if command == "eval" else getattr(prog, command)
        got = method(points) if command == "eval" else method(points, **options)
        assert len(got) == len(points)
        for i, (g, p) in enumerate(zip(got, points)):
            assert_same(g, per_point(source, command, p, at, dtype, **options), f"{source!r} {command} point {i}")


MATRICES = [{"A": mat(2, 3)} for _ in range(4)]
VECTORS = [{"x": mat(3)} for _ in range(4)]
SQUARE = [{"A": spd(3), "b": mat(3)} for _ in range(3)]


# Every case of op_cases.py with a program (each op, with per-point operands only) is run through
# --batch by test_op_cases.py. Here: operands shared by all points (bindings, literals, constructors)
# mixed with per-point ones, parameters the cases leave out, and where's nan-safety.


@pytest.mark.parametrize(
    "source",
    [
        # reductions: axis None / int / negative / tuple, keepdims
        "sum(A, axis=0)",
        "mean(A, axis=(0, 1))",
        "max(A, axis=(0, 1)) + min(A, axis=-1)",
        "logsumexp(A, axis=0)",
        # indexing and slicing
        "A[-1] * A[0, 0]",
        "sum(A[:, 0:2] * A[:, 1:3])",
        # transposes, reshapes
        "A.T @ A",
        "transpose(reshape(A, (1, 2, 3)), (2, 0, 1))",
        "reshape(A, (3, 2)) @ A",
        "squeeze(reshape(A, (1, 6)))",
        # matmul: shared stacks and vectors on either side
        "A @ A.T",
        "W @ A; W = randn(4, 2)",
        "A @ v; v = [1.0, 2.0, 3.0]",
        "v @ A; v = [1.0, 2.0]",
        "T @ A; T = randn(5, 3, 2)",
        "dot(A[0], A[1]) + dot(A, A[0]) + dot(A[0], 2.0)",
        "outer(A, v); v = [1, 2]",
        "diag(A) + diag(A, 1)",
        # concatenate / stack with shared operands
        "concatenate([A, W], axis=1); W = ones(2, 2)",
        "stack([A, 2 * A], axis=2)",
        "stack([A[0, 0], 1, 2.5])",
        # broadcasting between per-point shapes and with shared values
        "A + row; row = [1, 2, 3]",
        "A + col; col = [[1], [2]]",
        "broadcast_to(A, (4, 2, 3))",
        "full((2, 2, 3), A)",
        "A * ones(3) + zeros_like(A)",
        # where, clip, comparisons
        "clip(A, -0.5, 0.5) * (A != 0)",
        "stop_gradient(A) * A",
    ],
)
def test_matrix_programs(source):
    check(source, MATRICES)


@pytest.mark.parametrize(
    "source",
    [
        "diag(x, -1)",
        "diag(x, 2) @ ones(5)",
        "reshape(x, (-1, 1)) * x",
        "sum(x @ T); T = randn(2, 3, 4)",
        "T @ x; T = randn(2, 4, 3)",
        "concatenate([x, c]); c = [7.0, 8.0]",
        "sum(where(x > 0, log(x), x))",
    ],
)
def test_vector_programs(source):
    check(source, VECTORS)


@pytest.mark.parametrize(
    "source",
    [
        "det(A) * b",
        "inv(A) @ b",
        "solve(A, W) + sum(b); W = randn(3, 2)",
        "solve(W, b) + trace(A); W = [[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 4.0]]",
        "solve(A, stack([b, b], axis=1))",
    ],
)
def test_linear_algebra(source):
    check(source, SQUARE)


def test_scalar_points():
    points = [{"x": float(v)} for v in RNG.normal(size=6)] + [{"x": "nan"}, {"x": "inf"}, {"x": "-inf"}, {"x": 0.0}]
    check("sin(x)**2 * exp(-x/3)", points)
    check("where(x > 0, sqrt(x), x**2)", points)


def test_leaf_bindings_are_shared_unless_a_point_overrides_them():
    program = "W @ x + b; W = randn(2, 3); b = const(ones(2))"
    points = [{"x": mat(3)}, {"x": mat(3), "W": mat(2, 3)}, {"x": mat(3)}, {"x": mat(3), "b": [1.0, -1.0]}]
    check(program, points, watch=("b",))
    check(program, points, wrt=("W",))
    check(program, points, wrt=("b", "x"), unconnected="zero")  # b: a const, not watched: zeros
    # every point of the shared W gets the same W, so its own gradient: d(sum(W @ x))/dW = x
    res = BatchProgram(program).grad(points[:1] + points[2:3])
    for r, p in zip(res, points[:1] + points[2:3]):
        assert np.allclose(r.grad["W"], np.outer([1.0, 1.0], p["x"]))


def test_at_values_are_shared_and_points_override_them():
    at = {"a": np.asarray(2.0)}
    points = [{"x": 0.5}, {"x": 1.5, "a": 3.0}, {"x": -1.0}]
    check("a * x**2", points, at=at)


def test_ints_stay_ints_and_mixed_kinds_group_apart():
    check("x * 2", [{"x": 1}, {"x": 2.5}, {"x": 3}, {"x": True}])
    got = BatchProgram("x * 2").evaluate([{"x": 1}, {"x": 2.5}])
    assert got[0].dtype == np.int64 and got[1].dtype == np.float64


def test_float32():
    points = [{"x": 0.5, "y": 2.0}, {"x": 0.25, "y": [1.0, 2.0]}, {"x": [1.0, 2.0], "y": [3.0, 4.0]}]
    check("sin(x) * y + sum(y)", points, dtype="float32")


def test_unwatched_leaf_numbers_promote_as_per_point():
    # a leaf binding is a leaf even when it is a plain number: per point it becomes an int64/float64 array
    points = [{"x": [0.5, 1.5]}, {"x": [2.0, -1.0]}]
    check("x * y + x * z; y = 2; z = 0.5", points, dtype="float32", wrt=("x",))


def test_mixed_shapes_in_one_batch_keep_their_order():
    points = [{"x": 1.5}, {"x": [1.0, 2.0]}, {"x": [[1.0, 2.0], [3.0, 4.0]]}, {"x": 2.5}, {"x": [3.0, 4.0]},
              {"x": [1, 2]}, {"x": []}]
    check("sum(x**2) * x", points)
    values = BatchProgram("sum(x**2)").evaluate(points)
    assert [float(v) for v in values] == [2.25, 5.0, 30.0, 6.25, 25.0, 5, 0.0]


def test_unconnected_and_target_without_points():
    check("2 * y + 0 * x; y = 3.0", [{"x": 1.0}, {"x": 2.0}])
    check("sum(W); W = ones(2)", [{}, {}], commands=("eval", "grad", "jacobian"))
    check("sum(W) + x; W = ones(2)", [{"x": 1.0}, {"x": 2.0}], wrt=("x",), unconnected="zero")
    check("x > 0", [{"x": 1.0}, {"x": -2.0}])


def test_jacobian_of_matrix_valued_target():
    check("A @ B", [{"A": mat(2, 3), "B": mat(3, 2)} for _ in range(3)], commands=("jacobian",))


# ----------------------------------------------------------------------------------------
# the safety nets


def test_op_without_rule_runs_point_by_point(monkeypatch, strict):
    strict.allow()
    monkeypatch.setattr(OPS["outer"], "batch", None)
    check("outer(x, x) * 2", VECTORS)
    assert "outer" in strict.used


def test_batch_runner_knows_every_graph_kind():
    from difftape.ir.graph import GRAPH_KINDS

    assert set(GRAPH_KINDS) == set(batch.GRAPH_KINDS_RUN)


def test_every_op_with_tensor_inputs_has_a_batching_rule():
    missing = [name for name, op in OPS.items() if op.args and op.batch is None]
    assert missing == []


def test_failing_points_are_isolated(strict):
    strict.allow()
    good, singular = {"A": [[2.0, 0.0], [0.0, 4.0]]}, {"A": [[1.0, 2.0], [2.0, 4.0]]}
    points = [good] * 9 + [singular] + [good] * 10
    res = BatchProgram("inv(A)").evaluate(points)
    assert isinstance(res[9], DifftapeError) and "inv failed" in res[9].message
    for i, r in enumerate(res):
        if i != 9:
            assert np.allclose(r, [[0.5, 0.0], [0.0, 0.25]])


def test_a_shared_value_that_fails_fails_every_point_at_once(strict):
    res = BatchProgram("inv(W) @ x; W = zeros(2, 2)").evaluate([{"x": [1.0, 2.0]}] * 50)
    assert all(isinstance(r, DifftapeError) and "inv failed" in r.message for r in res)
    assert strict.used == []


# ----------------------------------------------------------------------------------------
# values and NDJSON


@pytest.mark.parametrize("text", ["2", "2.5", "true", "[1, 2]", "[1.5, 2]", "[[1, 2], [3, 4]]", "[]", "[true, 1.5]"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_point_values_are_what_at_gives(text, dtype):
    got, ref = point_value(json.loads(text), dtype), parse_value(text, dtype=dtype)
    assert got.dtype == ref.dtype and got.shape == ref.shape and np.array_equal(got, ref)


def test_point_value_strings_and_bad_values():
    assert np.isnan(point_value("nan", "float64")) and point_value("-inf", "float64") == -np.inf
    arr = point_value([1, "inf", "nan"], "float32")
    assert arr.dtype == np.float32 and arr[1] == np.inf and np.isnan(arr[2])
    for bad in ["abc", None, {"a": 1}, [1, "x"], [[1, 2], [3]], 2**70, [1, None]]:
        with pytest.raises(ValueError):
            point_value(bad, "float64")


def test_parse_ndjson_fast_path_equals_line_by_line():
    lines = ['{"x": 1}', '{"x": [1, 2], "y": 2.5}', '  {"x": "nan"}  ', '{"x": {"a": 1}}']
    for text in ["\n".join(lines), "\n".join(lines) + "\n", "\r\n".join(lines) + "\r\n"]:
        objs, bad = parse_ndjson(text.encode())
        assert bad == {} and objs == [json.loads(line) for line in lines]
    assert parse_ndjson(b"") == ([], {})


def test_parse_ndjson_lines_cannot_reach_into_each_other():
    # joined as one array these two bad lines would read as two good objects; each line counts alone
    objs, bad = parse_ndjson(b'{"x": 1}, {"y": [{}\n{}]}\n')
    assert sorted(bad) == [0, 1] and objs == [None, None]
    objs, bad = parse_ndjson(b'{"x": "}\n{", "y": 1}\n')
    assert sorted(bad) == [0, 1]


def test_parse_ndjson_blocks(monkeypatch):
    monkeypatch.setattr(batch, "PARSE_BLOCK", 3)
    lines = [json.dumps({"x": i}) for i in range(10)]
    lines[4] = '{"x": }'
    objs, bad = parse_ndjson("\n".join(lines) + "\n")
    assert sorted(bad) == [4] and objs[4] is None
    assert [o["x"] for i, o in enumerate(objs) if i != 4] == [0, 1, 2, 3, 5, 6, 7, 8, 9]


def test_parse_ndjson_bad_lines():
    objs, bad = parse_ndjson(b'{"x": 1}\n\nnot json\n[1]\n{"x": 2}\n\xff\xfe\n')
    assert objs[0] == {"x": 1} and objs[3] == [1] and objs[4] == {"x": 2}
    assert sorted(bad) == [1, 2, 5]
    assert "empty line" in bad[1].message and "invalid JSON" in bad[2].message and "UTF-8" in bad[5].message


def test_json_column_writes_what_dumps_writes():
    cases = [
        np.array([0.1, -0.0, 1e300, 5e-324, np.nan, np.inf, -np.inf, 2.0]),
        np.array([[1.5, np.nan], [0.25, 3.0]], dtype=np.float32),
        np.arange(6).reshape(3, 2),
        np.array([True, False]),
        np.array([[[True]], [[False]]]),
        np.zeros((2, 0)),
        np.array([2**63 - 1, -(2**63)]),
    ]
    for a in cases:
        assert json_column(a) == [dumps(row) for row in a]


def ndjson(points) -> str:
    return "".join(json.dumps(p) + "\n" for p in points)


def test_run_ndjson_lines_equal_the_json_of_each_point():
    source = "sum(A @ x) * y; A = [[1.0, 2.0], [3.0, 4.0]]"
    points = [{"x": mat(2), "y": float(v)} for v in RNG.normal(size=5)] + [{"x": [1, 2], "y": 2}]
    prog = BatchProgram(source)
    renderers = {"eval": lambda r, of: eval_json(of, r), "grad": lambda r, of: grad_json(r),
                 "jacobian": lambda r, of: jacobian_json(r)}
    for command, options in [("eval", {}), ("grad", {"unconnected": "none"}), ("jacobian", {"unconnected": "zero"})]:
        sink = run_ndjson(prog, ndjson(points), command, **options)
        out = sink.text().splitlines()
        assert len(out) == len(points) and sink.failed == 0
        for line, p in zip(out, points):
            ref = per_point(source, command, p, **options)
            expected = json.loads(dumps(renderers[command](ref, prog.of)))
            got = json.loads(line)
            assert list(got) == list(expected)
            assert got["shape"] == expected["shape"] and got["dtype"] == expected["dtype"]
            assert np.allclose(np.asarray(got["value"], float), np.asarray(expected["value"], float), rtol=1e-12)


def test_bad_lines_get_error_lines_and_the_rest_still_run():
    source = "W @ x; W = [[1.0, 2.0], [3.0, 4.0]]"
    text = "\n".join([
        '{"x": [1, 2]}',          # 1 ok
        '{"x": [1, 2',            # 2 invalid JSON
        '{"xx": [1, 2]}',         # 3 unknown name (and x missing)
        '{}',                     # 4 missing input
        '{"x": [1, 2, 3]}',       # 5 wrong shape
        '{"x": "abc"}',           # 6 non-numeric
        '',                       # 7 empty line: skipped (issue 14), no output line
        '[1, 2]',                 # 8 not an object
        '{"x": [[1], [2, 3]]}',   # 9 ragged
        '{"x": [0.5, -1]}',       # 10 ok
    ]) + "\n"
    sink = run_ndjson(BatchProgram(source), text, "grad")
    out = [json.loads(line) for line in sink.text().splitlines()]
    assert len(out) == 9 and sink.failed == 7
    numbers = [1, 2, 3, 4, 5, 6, 8, 9, 10]  # the input line each output line answers
    kinds = {numbers[i]: o["error"]["kind"] for i, o in enumerate(out) if "error" in o}
    assert kinds == {2: "value", 3: "name", 4: "name", 5: "shape", 6: "value", 8: "value", 9: "value"}
    for i, o in enumerate(out):
        if "error" in o:
            assert o["error"]["line"] == numbers[i] and o["error"]["column"] is None
    assert out[0]["value"] == [5.0, 11.0] and out[0]["grad"] == {"W": [[1.0, 2.0], [1.0, 2.0]], "x": [4.0, 6.0]}
    assert out[8]["value"] == [-1.5, -2.5]
    assert "did you mean 'x'" in out[2]["error"]["message"]
    assert "no value for input 'x'" in out[3]["error"]["message"]
    assert "of the program" in out[4]["error"]["message"]  # the program position of the shape error


def test_a_deeply_nested_value_is_one_bad_line():
    # 500 nested lists: numpy refuses them, and the element-by-element fallback used to recurse
    # until RecursionError, which failed the whole batch as an internal error
    deep = '{"x": ' + "[" * 500 + "1" + "]" * 500 + "}"
    sink = run_ndjson(BatchProgram("x**2"), deep + '\n{"x": 2.0}\n', "eval")
    out = [json.loads(line) for line in sink.text().splitlines()]
    assert sink.failed == 1 and out[0]["error"]["kind"] == "value" and "nested" in out[0]["error"]["message"]
    assert out[1]["value"] == 4.0


def test_empty_input():
    sink = run_ndjson(BatchProgram("x**2"), b"", "grad")
    assert sink.text() == "" and sink.failed == 0


def test_streaming_in_blocks_equals_one_block(monkeypatch):
    import difftape.language.compiler

    compiles = []
    compile_program = difftape.language.compiler.compile_program

    def counted(source, **kw):
        compiles.append({k: np.shape(v) for k, v in (kw.get("values") or {}).items()})
        return compile_program(source, **kw)

    points = [{"x": [float(i), 1.0]} if i % 3 else {"x": float(i)} for i in range(40)]
    text = ndjson(points)
    text = text.replace('{"x": 6.0}', '{"x": }').replace('{"x": [11.0, 1.0]}', '{"x": [1, 2, 3]}')
    whole = run_ndjson(BatchProgram("x * W; W = ones(2)"), text, "grad")
    prog = BatchProgram("x * W; W = ones(2)")
    monkeypatch.setattr(difftape.language.compiler, "compile_program", counted)
    pieces = iter([text.encode()[i : i + 7] for i in range(0, len(text.encode()), 7)])  # lines split across reads
    out, blocks = [], []
    report = batch.stream_ndjson(prog, lambda n: next(pieces, b""), out.append,
                                 "grad", block_lines=5, on_block=lambda lines, nbytes: blocks.append((lines, nbytes)))
    assert "".join(out) == whole.text()
    assert report.lines == 40 and report.failed == whole.failed == 2 and report.first_error[0] == 7
    assert sum(b[0] for b in blocks) == 40 and sum(b[1] for b in blocks) == len(text.encode()) and len(blocks) > 4
    errors = [json.loads(line)["error"]["line"] for line in "".join(out).splitlines() if "error" in line]
    assert errors == [7, 12]
    assert compiles == [{"x": ()}, {"x": (2,)}, {"x": (3,)}]  # once per input signature, for all blocks


def test_large_scalar_batches_run_vectorised(monkeypatch):
    runs = []
    run = batch.BatchGraph.run

    def counted(self, B, *args, **kw):
        runs.append(B)
        return run(self, B, *args, **kw)

    monkeypatch.setattr(batch.BatchGraph, "run", counted)
    xs = RNG.uniform(-5, 5, 100_000)
    sink = run_ndjson(BatchProgram("sin(x)**2 * exp(-x/3)"), ndjson({"x": float(v)} for v in xs), "grad")
    assert sum(runs) == len(xs) and min(runs[:-1]) >= batch.STREAM_BLOCK  # blocks of thousands of points
    out = sink.text().splitlines()
    s, e = np.sin(xs), np.exp(-xs / 3)
    for i in (0, 1, 4999, 99_999):
        obj = json.loads(out[i])
        assert np.isclose(obj["value"], s[i] ** 2 * e[i], rtol=1e-13)
        assert np.isclose(obj["grad"]["x"], e[i] * s[i] * (2 * np.cos(xs[i]) - s[i] / 3), rtol=1e-12, atol=1e-15)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    source=st.sampled_from(["sum(x * y)", "x @ y", "sum(outer(x, y)**2)", "max(x) * y", "sum(exp(-x) * y[0])"]),
    values=st.lists(
        st.tuples(st.integers(1, 3), st.lists(st.floats(-3, 3, allow_nan=False), min_size=6, max_size=6)),
        min_size=1,
        max_size=6,
    ),
)
def test_random_points_agree(source, values):
    points = [{"x": vals[:n], "y": vals[3 : 3 + n]} for n, vals in values]
    check(source, points, commands=("eval", "grad"))


# ----------------------------------------------------------------------------------------
# the command line


def invoke(*args, input=None):
    result = CliRunner().invoke(cli, list(args), input=input, prog_name="difftape")
    assert "Traceback" not in result.output
    return result


def test_cli_batch_grad_matches_per_point_json():
    points = [{"x": float(v)} for v in RNG.normal(size=4)]
    result = invoke("grad", "sin(x)**2 * exp(-x/3)", "--batch", input=ndjson(points))
    assert result.exit_code == 0
    for line, p in zip(result.stdout.splitlines(), points):
        single = invoke("grad", "sin(x)**2 * exp(-x/3)", "--at", f"x={p['x']!r}", "--json")
        got, ref = json.loads(line), json.loads(single.stdout)
        assert list(got) == list(ref) and got["shape"] == ref["shape"] and got["summed"] == ref["summed"]
        assert np.isclose(got["value"], ref["value"], rtol=1e-14)
        assert np.isclose(got["grad"]["x"], ref["grad"]["x"], rtol=1e-14)


def test_cli_eval_and_jacobian_batch_and_at_file(tmp_path):
    path = tmp_path / "points.ndjson"
    path.write_text(ndjson([{"x": [1.0, 2.0]}, {"x": [3.0, 4.0]}]))
    result = invoke("jacobian", "x**2", "--at-file", str(path))
    assert result.exit_code == 0
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out[1]["jacobian"]["x"] == [[6.0, 0.0], [0.0, 8.0]] and out[1]["value"] == [9.0, 16.0]
    result = invoke("eval", "x * 2", "--batch", input='{"x": 3}\n{"x": 0.5}\n')
    assert [json.loads(line)["value"] for line in result.stdout.splitlines()] == [6, 1.0]


def test_cli_exit_status_and_error_lines():
    result = invoke("grad", "x**2", "--batch", input='{"x": 1}\n{"x": }\n{"x": 3}\n')
    assert result.exit_code == 2
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out[0]["grad"] == {"x": 2.0} and out[1]["error"]["line"] == 2 and out[2]["grad"] == {"x": 6.0}
    assert "1 of 3 lines failed" in result.stderr
    assert "--batch" in invoke("grad", "--help").stdout and "2 if any failed" in invoke("grad", "--help").stdout


def test_cli_batch_with_shared_at_and_wrt():
    result = invoke("grad", "a * x**2", "--at", "a=3", "--wrt", "x", "--batch", input='{"x": 1}\n{"x": 2, "a": 1}\n')
    assert [json.loads(line)["grad"] for line in result.stdout.splitlines()] == [{"x": 6.0}, {"x": 4.0}]


def test_cli_batch_usage_errors():
    result = invoke("grad", "-", "--batch", input='{"x": 1}\n')
    assert result.exit_code == 2 and "stdin" in result.stderr
    result = invoke("grad", "x**2", "--batch", "--wrt", "nope", input='{"x": 1}\n')
    assert result.exit_code == 2 and json.loads(result.stdout)["error"]["kind"] == "name"
    result = invoke("grad", "x**2 +", "--batch", input='{"x": 1}\n')
    assert result.exit_code == 2 and json.loads(result.stdout)["error"]["kind"] == "syntax"


def test_cli_batch_empty_input():
    result = invoke("grad", "x**2", "--batch", input="")
    assert result.exit_code == 0 and result.stdout == ""

