"""Program text to graph to values: names, targets, shapes, limits, const, randomness, size."""

from __future__ import annotations

import itertools
import random
from typing import Any

import numpy as np
import pytest

from difftape.engine.tape import Tape
from difftape.engine.tensor import Tensor
from difftape.errors import DifftapeError
from difftape.ir.graph import Graph
from difftape.language.compiler import MAX_ELEMENTS, compile_program


def value(source: str, **values: Any) -> Any:
    return compile_program(source, values=values).run().numpy()


def error(source: str, **values: Any) -> DifftapeError:
    with pytest.raises(DifftapeError) as info:
        compile_program(source, values=values).run()
    return info.value


def where(err: DifftapeError) -> tuple[str, int | None, int | None]:
    return err.kind, err.line, err.column


def gradients(graph: Graph, watch: tuple[str, ...] = ()) -> dict[str, Any]:
    """d target / d leaf for every variable (and the watched consts), through the engine's tape."""
    leaves: dict[str, Tensor] = {}
    wanted = set(graph.variables) | set(watch)
    with Tape() as tape:

        def leaf(name: str, v: Any) -> Any:
            if name not in wanted:
                return v
            t = Tensor(np.asarray(v._value if isinstance(v, Tensor) else v, dtype=np.float64))
            tape.watch(t)
            leaves[name] = t
            return t

        out = graph.run(leaf=leaf)
    names = list(leaves)
    grads = tape.gradient(out, [leaves[n] for n in names])
    return {n: None if g is None else np.asarray(g._value) for n, g in zip(names, grads)}


# ----------------------------------------------------------------------------------------
# the examples of the issue


def test_leaf_binding_used_before_it_is_bound() -> None:
    g = compile_program("y = x**2; x = randn(2,2)")
    assert g.target_name == "y"
    assert g.inputs == []
    assert g.variables == ["x"]
    assert g.consts == []
    assert set(g.bindings) == {"x", "y"}
    x = np.random.default_rng(0).standard_normal((2, 2))
    np.testing.assert_allclose(g.run().numpy(), x**2)
    np.testing.assert_allclose(gradients(g)["x"], 2 * x)


def test_ints_stay_ints() -> None:
    out = value("x**3", x=2)
    assert out == 8 and out.dtype.kind == "i"
    g = compile_program("x**3", values={"x": 2})
    literal = [n for n in g.nodes if n.op == "literal"]
    assert literal[0].params["value"] == 3 and type(literal[0].params["value"]) is int


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("-x**2", -9),
        ("2**-1", 0.5),
        ("2**3**2", 512),
        ("-2**2", -4),
        ("(-2)**2", 4),
        ("x**-1", 1 / 3),
        ("10 - 4 - 3", 3),
        ("2 * 3 + 4 * 5", 26),
        ("7 // 2 * 2", 6),
        ("-7 % 3", 2),
        ("2 + 3 < 4", False),
        ("x == 3", True),
        ("True + 1", 2),
        ("True + true", True),  # numpy's meaning, as at run time
        ("pi > 3", True),
        ("inf > 1e308", True),
    ],
)
def test_precedence_evaluated(source: str, expected: Any) -> None:
    np.testing.assert_allclose(value(source, x=3), expected)


def test_matmul_binds_tighter_than_plus() -> None:
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    b = np.array([[0.0, 1.0], [1.0, 0.0]])
    c = np.array([10.0, 20.0])
    np.testing.assert_allclose(value("a@b+c", a=a, b=b, c=c), a @ b + c)


@pytest.mark.parametrize("seed", range(6))
def test_order_independent_chain_of_bindings(seed: int) -> None:
    chain = ["a = b + 1", "b = c * 2", "c = d - 3", "d = h / 2", "h = f ** 2", "f = 4", "g = a + f"]
    random.Random(seed).shuffle(chain)
    g = compile_program("\n".join(chain))
    assert g.target_name == "g"
    assert g.variables == ["f"]
    # f=4 h=16 d=8 c=5 b=10 a=11 g=15
    assert g.run().numpy() == 15
    assert gradients(g)["f"] == pytest.approx(2 * 2 * 4 / 2 + 1)  # dg/df = da/df + 1 = 8 + 1


def test_every_order_of_a_five_binding_chain() -> None:
    chain = ["p = q * 2", "q = r + 1", "r = s * s", "s = t - 1", "t = 3"]
    for perm in itertools.permutations(chain):
        g = compile_program("; ".join(perm))
        assert (g.target_name, int(g.run().numpy())) == ("p", 10)


# ----------------------------------------------------------------------------------------
# names and targets


def test_inputs_and_variables_in_order_of_first_appearance() -> None:
    g = compile_program(
        "z = w * b + a; w = ones(2); c = const(3); z * c + v", values={"a": 1, "b": 2, "v": 3}
    )
    assert g.inputs == ["b", "a", "v"]
    assert g.variables == ["w", "b", "a", "v"]
    assert g.consts == ["c"]
    assert g.target_name == "z * c + v"


def test_target_is_the_bare_expression_stripped() -> None:
    g = compile_program("  (x + 1) * 2   # comment\ny = 3", values={"x": 1})
    assert g.target_name == "(x + 1) * 2"
    assert g.run().numpy() == 4


def test_target_by_of() -> None:
    g = compile_program("a = x + 1; b = a * 2; b + 1", of="a", values={"x": 1})
    assert (g.target_name, g.run().numpy()) == ("a", 2)
    g = compile_program("a = x + 1", of="x", values={"x": 5})
    assert g.run().numpy() == 5


def test_unknown_of_suggests() -> None:
    with pytest.raises(DifftapeError) as info:
        compile_program("alpha = 1; beta = alpha", of="alpah")
    assert info.value.kind == "name" and "did you mean 'alpha'" in info.value.message


def test_several_candidate_targets_are_listed() -> None:
    err = error("a = 1; b = 2; c = a")
    assert where(err) == ("name", 1, 15)
    assert "b, c" in err.message and "--of" in err.message


def test_name_errors_with_positions() -> None:
    err = error("y = 3\ny = 4\ny")
    assert where(err) == ("name", 2, 1) and "bound twice (first at 1:1)" in err.message
    for builtin in ("pi", "e", "sum", "randn", "const", "True"):
        err = error(f"{builtin} = 2")
        assert where(err) == ("name", 1, 1) and f"cannot bind '{builtin}'" in err.message
    err = error("y = sinn(x)", x=1)
    assert where(err) == ("name", 1, 5) and "did you mean 'sin'" in err.message
    err = error("sum + 1")
    assert where(err) == ("name", 1, 1) and "is a function" in err.message
    err = error("f = 2; f(3)")
    assert where(err) == ("name", 1, 8) and "not a function" in err.message


def test_cycles_name_their_bindings() -> None:
    err = error("a = b + 1\nb = c * 2\nc = a\nd = 1")
    assert where(err) == ("cycle", 1, 1)
    assert "cycle: a -> b -> c -> a" in err.message
    err = error("x = x + 1")
    assert "cycle: x -> x" in err.message


def test_missing_value_names_the_input() -> None:
    g = compile_program("y = alpha * 2; y + beta", values={"beta": 1})
    assert g.inputs == ["alpha", "beta"] and g.missing == ["alpha"]
    assert g.nodes[g.target].shape is None
    with pytest.raises(DifftapeError) as info:
        g.run()
    assert where(info.value) == ("name", 1, 5)
    assert "no value for input 'alpha'" in info.value.message


def test_values_override_leaf_bindings_only() -> None:
    assert value("y = x * 2; x = 3", x=5) == 10
    err = error("y = x * 2; x = 3", y=1)
    assert where(err) == ("name", 1, 1) and "uses x" in err.message
    assert value("y = x * 2; x = 3", unrelated=7) == 6  # names the program lacks are ignored


def test_override_keeps_the_random_stream() -> None:
    both = value("a = randn(3); b = randn(3); b")
    overridden = value("a = randn(3); b = randn(3); b", a=np.zeros(3))
    np.testing.assert_array_equal(both, overridden)


# ----------------------------------------------------------------------------------------
# static shapes and limits


def test_shape_errors_point_at_the_operator_and_name_both_shapes() -> None:
    err = error("y = ones(2,3) @ ones(2,3)")
    assert where(err) == ("shape", 1, 15)
    assert "(2, 3) @ (2, 3)" in err.message
    err = error("a = ones(2, 3)\nb = (a +\n  ones(3, 2))")
    assert where(err) == ("shape", 2, 8)
    assert "(2, 3) and (3, 2)" in err.message
    err = error("sum(x, axis=2)", x=np.ones((2, 2)))
    assert where(err) == ("shape", 1, 1) and "out of bounds" in err.message
    err = error("x[5]", x=np.ones(3))
    assert where(err) == ("shape", 1, 2) and "index 5 is out of bounds" in err.message
    err = error("reshape(x, 4)", x=np.ones((2, 3)))
    assert err.kind == "shape" and "(2, 3)" in err.message


def test_shapes_are_known_before_running() -> None:
    g = compile_program("s = sum(A @ B, axis=0); s", values={"A": np.ones((2, 3)), "B": np.ones((3, 4))})
    assert [n.shape for n in g.nodes] == [(2, 3), (3, 4), (2, 4), (4,)]
    assert g.nodes[g.target].dtype == np.float64


def test_limits_refuse_before_allocating() -> None:
    err = error("zeros(100000, 100000)")
    assert where(err) == ("limit", 1, 1)
    assert "MAX_ELEMENTS" in err.message and f"{MAX_ELEMENTS:,}" in err.message
    err = error("x = ones(10000, 1) + ones(1, 10000)")
    assert where(err) == ("limit", 1, 20)
    err = error("outer(ones(10000), ones(10000))")
    assert err.kind == "limit"
    err = error("randn(8000, 8000)")
    assert err.kind == "limit"
    err = error("[" * 40 + "1" + "]" * 40)
    assert err.kind == "limit" and "dimensions" in err.message


def test_ragged_lists_are_errors() -> None:
    err = error("[[1, 2], [3]]")
    assert where(err) == ("shape", 1, 10) and "ragged" in err.message
    err = error("[x, [1, 2]]", x=1.0)
    assert err.kind == "shape" and "ragged" in err.message


# ----------------------------------------------------------------------------------------
# calls


def test_constructors() -> None:
    np.testing.assert_array_equal(value("zeros(2, 3)"), np.zeros((2, 3)))
    np.testing.assert_array_equal(value("zeros((2, 3))"), np.zeros((2, 3)))
    np.testing.assert_array_equal(value("ones(2)"), np.ones(2))
    np.testing.assert_array_equal(value("full((2, 2), 7)"), np.full((2, 2), 7))
    np.testing.assert_array_equal(value("eye(3)"), np.eye(3))
    np.testing.assert_array_equal(value("eye(2, 3, k=1)"), np.eye(2, 3, 1))
    np.testing.assert_array_equal(value("arange(5)"), np.arange(5))
    np.testing.assert_allclose(value("arange(0, 1, 0.25)"), np.arange(0, 1, 0.25))
    np.testing.assert_allclose(value("linspace(0, 1, 5)"), np.linspace(0, 1, 5))


def test_shape_arguments_spread_or_tuple() -> None:
    x = np.arange(6.0)
    np.testing.assert_array_equal(value("reshape(x, 2, 3)", x=x), x.reshape(2, 3))
    np.testing.assert_array_equal(value("reshape(x, (-1,))", x=x.reshape(2, 3)), x)
    np.testing.assert_array_equal(value("reshape(x, (3, -1))", x=x), x.reshape(3, 2))


def test_keyword_and_positional_parameters() -> None:
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(
        value("sum(x, axis=(0, 1), keepdims=True)", x=x), x.sum(axis=(0, 1), keepdims=True)
    )
    np.testing.assert_array_equal(value("sum(x, 1)", x=x), x.sum(1))
    np.testing.assert_array_equal(value("mean(x, axis=-1)", x=x), x.mean(axis=-1))
    np.testing.assert_allclose(value("std(x, ddof=1)", x=x), x.std(ddof=1))


def test_concatenate_and_stack_take_a_written_list() -> None:
    np.testing.assert_array_equal(value("concatenate([[1, 2], [3]])"), [1, 2, 3])
    x = np.ones((2, 2))
    np.testing.assert_array_equal(value("concatenate([x, x], axis=1)", x=x), np.ones((2, 4)))
    np.testing.assert_array_equal(value("stack((x, 2*x), 1)", x=x), np.stack([x, 2 * x], 1))
    err = error("concatenate(x)", x=x)
    assert err.kind == "type" and "[a, b]" in err.message


def test_list_of_expressions_is_differentiable() -> None:
    g = compile_program("sum([x, 2*x, [3, 4]])", values={"x": np.array([1.0, 2.0])})
    assert g.run().numpy() == 16.0
    np.testing.assert_array_equal(gradients(g)["x"], [3.0, 3.0])


def test_call_errors() -> None:
    err = error("sin(x, 2)", x=1.0)
    assert where(err) == ("arity", 1, 8) and "takes at most 1 argument (x)" in err.message
    err = error("sum(x, foo=1)", x=1.0)
    assert where(err) == ("arity", 1, 8) and "no argument 'foo'" in err.message
    err = error("sum(x, kepdims=True)", x=1.0)
    assert "did you mean 'keepdims'" in err.message
    err = error("where(x > 0, x)", x=1.0)
    assert where(err) == ("arity", 1, 1) and "missing y" in err.message
    err = error("sum(x, axis=1, axis=2)", x=1.0)
    assert err.kind == "arity"
    err = error("const(x, 2)", x=1.0)
    assert where(err) == ("arity", 1, 1)


def test_parameters_must_be_constants() -> None:
    err = error("n = 1; sum(x, axis=n)", x=np.ones((2, 2)))
    assert where(err) == ("value", 1, 20)
    assert "must be a constant" in err.message and "'n'" in err.message
    err = error("zeros(x)", x=2)
    assert where(err) == ("value", 1, 7)
    err = error("max(x, x)", x=np.ones(2))
    assert "maximum(a, b)" in err.message
    err = error("sum(x, axis=1.5)", x=np.ones((2, 2)))
    assert err.kind == "type"
    err = error("zeros(-2)")
    assert err.kind == "value" and "negative" in err.message
    err = error("x[y]", x=np.ones(2), y=0)
    assert err.kind == "value" and "constant" in err.message
    assert value("sum(x, axis=2-1-1)", x=np.ones((2, 3))).shape == (3,)
    assert value("zeros(2*3)").shape == (6,)


def test_indexing() -> None:
    x = np.arange(12.0).reshape(3, 4)
    for index in ["0", "1:3", ":, 0", "-1", "::2", "::-1", "1:, ::-2", "-1, -1"]:
        np.testing.assert_array_equal(value(f"x[{index}]", x=x), eval(f"x[{index}]"))  # noqa: S307 - test oracle
    np.testing.assert_array_equal(value("x[0][1]", x=x), x[0][1])
    np.testing.assert_array_equal(value("x.T", x=x), x.T)
    np.testing.assert_array_equal(value("x.T[0]", x=x), x.T[0])


def test_tuples_are_not_values() -> None:
    err = error("(2, 3) + 1")
    assert where(err) == ("type", 1, 1) and "[2, 3]" in err.message


# ----------------------------------------------------------------------------------------
# const


def test_const_of_a_constant_is_not_a_variable() -> None:
    g = compile_program("sum(w * x); w = const(randn(3)); x = ones(3)")
    assert g.variables == ["x"] and g.consts == ["w"]
    w = np.random.default_rng(0).standard_normal(3)
    grads = gradients(g)
    assert set(grads) == {"x"}
    np.testing.assert_allclose(grads["x"], w)
    np.testing.assert_allclose(gradients(g, watch=("w",))["w"], np.ones(3))


def test_const_of_variables_stops_the_gradient() -> None:
    g = compile_program("sum(const(x * 2) * x)", values={"x": np.array([1.0, 2.0])})
    assert [n.op for n in g.nodes].count("stop_gradient") == 1
    np.testing.assert_allclose(gradients(g)["x"], [2.0, 4.0])  # not 4x


def test_leaf_hook_sees_every_variable_and_const_binding() -> None:
    g = compile_program("y = a * b + c; a = 2.0; c = const(1.0); b", values={"b": 3.0})
    seen: list[str] = []
    g.run(leaf=lambda name, v: seen.append(name) or v)
    assert sorted(seen) == ["a", "b", "c"]


# ----------------------------------------------------------------------------------------
# randomness and dtypes


def test_random_draws_follow_the_source_order() -> None:
    g = compile_program("c = a + 10 * b; b = rand(2); a = randn(2); c")
    rng = np.random.default_rng(7)
    b = rng.random(2)
    a = rng.standard_normal(2)
    np.testing.assert_allclose(g.run(seed=7).numpy(), a + 10 * b)
    np.testing.assert_allclose(g.run(seed=7).numpy(), g.run(seed=7).numpy())
    assert not np.allclose(g.run(seed=1).numpy(), g.run(seed=7).numpy())


def test_float32_programs_stay_float32() -> None:
    source = (
        "y = x * (1/3) + 2.5 * sin(x) - pi + [1.0, 2.0] + [x, x][0]\n"
        "y + randn(2) + zeros(2) + full((2,), 0.5)"
    )
    g = compile_program(source, values={"x": np.ones(2, np.float32)}, dtype="float32")
    assert g.nodes[g.target].dtype == np.float32
    assert g.run().numpy().dtype == np.float32
    # a reduction of a plain number stays a plain number, like exp(1.4) (it made the program float64)
    # and so does where(c, 0.5, 0.25): numpy's where makes plain floats a float64 array
    for source in ("sum(1.4) * x", "logsumexp(1.5) * x + prod(2) * x", "mean(2) * x + std(0.5) + norm(-2.0)",
                   "where(x > 0, 0.5, 0.25) * x", "where(x > 0, x, 0.25)"):
        g = compile_program(source, values={"x": np.ones(2, np.float32)}, dtype="float32")
        assert g.nodes[g.target].dtype == np.float32 and g.run().numpy().dtype == np.float32, source
    with pytest.raises(DifftapeError, match="out of bounds"):
        compile_program("sum(1.4, axis=0)")
    with pytest.raises(DifftapeError) as info:
        compile_program("1", dtype="float16")
    assert info.value.kind == "value"


def test_number_literals_stay_python_numbers() -> None:
    g = compile_program("x * 2 + 0.5 - (1 / 4)", values={"x": 1.0})
    literals = [n.params["value"] for n in g.nodes if n.op == "literal"]
    assert [type(v) for v in literals] == [int, float, float]


# ----------------------------------------------------------------------------------------
# size and sharing


def test_sum_of_100000_terms_compiles_and_evaluates() -> None:
    g = compile_program("+".join(["x"] * 100_000), values={"x": 1.5})
    assert len(g.nodes) == 100_000
    assert g.run().numpy() == 150_000.0


def test_deep_nesting_compiles_and_evaluates() -> None:
    assert value("(" * 10_000 + "x" + ")" * 10_000, x=2) == 2
    assert value("-" * 100_001 + "x", x=2) == -2
    g = compile_program("sin(" * 2_000 + "x" + ")" * 2_000, values={"x": 0.5})
    expected = 0.5
    for _ in range(2_000):
        expected = np.sin(expected)
    assert g.run().numpy() == pytest.approx(expected)
    assert gradients(g)["x"] > 0


def test_shared_subexpressions_are_computed_once() -> None:
    g = compile_program("y = sin(x); z = y * y + y; z", values={"x": 1.0})
    assert [n.op for n in g.nodes].count("sin") == 1
    counts: dict[str, int] = {}
    g.run(leaf=lambda name, v: counts.__setitem__(name, counts.get(name, 0) + 1) or v)
    assert counts == {"x": 1}
    assert g.run().numpy() == pytest.approx(np.sin(1.0) ** 2 + np.sin(1.0))


def test_run_with_named_outputs() -> None:
    g = compile_program("a = x + 1; b = a * 2; b", values={"x": 1})
    out, named = g.run(outputs=["a", "x"])
    assert out.numpy() == 4 and np.asarray(named["a"]._value) == 2 and named["x"] == 1
    with pytest.raises(DifftapeError):
        g.run(outputs=["nope"])


def test_runtime_failures_are_positioned_errors() -> None:
    err = error("y = 1\ny + inv(zeros((2, 2)))")
    assert err.kind == "value" and err.line == 2 and "inv" in err.message


# ----------------------------------------------------------------------------------------
# rendering


def test_to_text_lists_every_node() -> None:
    g = compile_program("y = x**3", values={"x": 2})
    lines = g.to_text().splitlines()
    assert lines[0].split() == ["id", "op", "inputs", "shape", "dtype", "span", "binds"]
    assert lines[1].split()[:3] == ["%0", "input", "x"] and "1:5-1:6" in lines[1]
    assert "literal 3" in lines[2]
    assert lines[3].split()[:4] == ["%2", "power", "%0", "%1"]
    assert "int64" in lines[3] and "1:5-1:9" in lines[3] and lines[3].endswith("y")


def test_to_dot_is_a_digraph() -> None:
    g = compile_program("y = sin(x) * x; z = y + 1; z", values={"x": 1.0})
    dot = g.to_dot()
    assert dot.startswith("digraph difftape {") and dot.rstrip().endswith("}")
    assert dot.count("->") == sum(len(n.inputs) for n in g.nodes)
    assert "peripheries=2" in dot


# ----------------------------------------------------------------------------------------
# every error kind of the compiler, with its caret


@pytest.mark.parametrize(
    ("source", "kind", "caret"),
    [
        ("y = ones(2,3) @ ones(2,3)", "shape", "                  ^"),
        ("y = zeros(100000, 100000)", "limit", "        ^^^^^"),
        ("y = sinn(2)", "name", "        ^^^^"),
        ("a = b\nb = a", "cycle", "    ^"),
        ("y = sin(1, 2)", "arity", "               ^"),
        ("y = sum([1, 2], axis=0.5)", "type", "                         ^^^"),
        ("n = 1\ny = sum([1, 2], axis=n)", "value", "                         ^"),
    ],
)
def test_error_kinds_render_a_caret(source: str, kind: str, caret: str) -> None:
    with pytest.raises(DifftapeError) as info:
        compile_program(source)
    err = info.value
    assert err.kind == kind and err.source == source
    rendered = err.render().splitlines()
    assert rendered[0].startswith(f"error[{kind}] at {err.line}:{err.column}: ")
    assert rendered[1] == f"{err.line} | {source.splitlines()[err.line - 1]}"
    assert rendered[2] == caret


def test_index_parameter_is_checked() -> None:
    err = error("getitem(x, index=((0,),))", x=np.ones(2))
    assert err.kind == "type"
    np.testing.assert_array_equal(value("getitem(x, index=(1,))", x=np.arange(3)), 1)
