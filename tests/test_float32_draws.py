"""Issue 12 item 5: a float32 run is the float64 run rounded (random draws and integer list literals)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from difftape.answers.batch import BatchProgram, run_ndjson
from difftape.answers.program import Program, parse_value
from difftape.ir.graph import draw


@pytest.mark.parametrize("fn", ["randn", "rand"])
@pytest.mark.parametrize("seed", [0, 7])
def test_float32_draws_are_the_float64_draws_rounded(fn, seed):
    src = f"W; W = {fn}(4, 3); V = {fn}(5)"
    v64 = Program(src, seed=seed).evaluate()
    v32 = Program(src, seed=seed, dtype="float32").evaluate()
    assert v32.dtype == np.float32 and v64.dtype == np.float64
    np.testing.assert_array_equal(v32, v64.astype(np.float32))
    # and the second draw keeps its place in the stream
    w64 = Program(src.replace("W;", "V;", 1), seed=seed).evaluate()
    w32 = Program(src.replace("W;", "V;", 1), seed=seed, dtype="float32").evaluate()
    np.testing.assert_array_equal(w32, w64.astype(np.float32))

def test_the_issue_example():
    v32 = Program("W; W=randn(3)", dtype="float32").evaluate()
    np.testing.assert_allclose(v32, [0.126, -0.132, 0.640], atol=1e-3)

def test_gradients_in_float32_use_the_same_draws():
    src = "sum(W * x); W = randn(3)"
    g64 = Program(src, at={"x": np.ones(3)}).grad().grad["x"]
    g32 = Program(src, at={"x": np.ones(3)}, dtype="float32").grad().grad["x"]
    np.testing.assert_array_equal(np.asarray(g32), np.asarray(g64).astype(np.float32))

def test_at_values_draw_the_same_numbers_in_float32():
    v64 = parse_value("randn(3)", seed=3, dtype="float64")
    v32 = parse_value("randn(3)", seed=3, dtype="float32")
    np.testing.assert_array_equal(v32, np.asarray(v64).astype(np.float32))

def test_batch_draws_are_the_float64_draws_rounded():
    src = "W * x; W = randn(3)"
    out64 = json.loads(run_ndjson(BatchProgram(src), '{"x": 1.0}\n', "eval").text())
    out32 = json.loads(run_ndjson(BatchProgram(src, dtype="float32"), '{"x": 1.0}\n', "eval").text())
    np.testing.assert_array_equal(np.float32(out32["value"]), np.float32(out64["value"]))
    alone = Program("W; W = randn(3)", dtype="float32").evaluate()
    np.testing.assert_array_equal(np.float32(out32["value"]), alone)

def test_uniform_draws_rounded_to_float32_stay_below_one():
    class Near1:
        def random(self, shape):
            return np.full(shape, 1 - 2.0**-30)

    out = draw(Near1(), {"dist": "uniform", "shape": (3,), "dtype": "float32"})
    assert out.dtype == np.float32 and (out < 1).all()

def test_integer_list_literal_meeting_float32_stays_float32():
    src = "W*x + b; W = ones(2,2); b = zeros(2); x = [1,0]"
    value = Program(src, dtype="float32").evaluate()
    assert value.dtype == np.float32
    np.testing.assert_array_equal(value, [[1, 0], [1, 0]])
    assert Program(src).evaluate().dtype == np.float64
    done = subprocess.run([sys.executable, "-m", "difftape", "eval", src, "--dtype", "float32", "--json"],
                          capture_output=True, text=True, timeout=60)
    assert json.loads(done.stdout)["dtype"] == "float32"

def test_integer_list_literal_alone_keeps_ints():
    assert Program("x + 1; x = [1, 0]", dtype="float32").evaluate().dtype == np.int64
    assert Program("[1, 2] * 2", dtype="float32").evaluate().dtype == np.int64

def test_a_literal_already_used_as_int_keeps_its_static_dtype():
    # `a` used x as int64 before `b` met a float32 array: x stays int64, and every node's static dtype
    # is the dtype it has when run (no stale static information).
    prog = Program("a + b; a = x + 1; b = W * x; W = ones(2); x = [1, 0]", dtype="float32")
    value = prog.evaluate()
    np.testing.assert_array_equal(value, [3, 1])
    graph = prog.graph

    _, named = graph.run(outputs=["a", "b", "x"])
    for name, got in named.items():
        assert np.asarray(getattr(got, "_value", got)).dtype == graph.nodes[graph.bindings[name]].dtype, name
