"""The results layer: which names are differentiated, promotion, nulls, checks, grad graphs."""

from __future__ import annotations

import numpy as np
import pytest

from difftape import DifftapeError
from difftape.answers.program import Program, grad_graph_text, parse_value


def test_value_without_name_goes_to_the_only_free_input():
    prog = Program("x**3", at={"": 2})
    assert prog.evaluate() == 8 and prog.evaluate().dtype.kind == "i"
    assert prog.grad().grad["x"] == 12.0


def test_value_without_name_needs_exactly_one_free_input():
    with pytest.raises(DifftapeError, match="exactly one free input.*x, y"):
        Program("x*y", at={"": 2})


def test_grad_promotes_integer_leaves_to_the_working_float():
    res = Program("x*x; x = 3").grad()
    assert res.grad["x"].dtype == np.float64 and res.grad["x"] == 6.0
    res32 = Program("x*x; x = 3", dtype="float32").grad()
    assert res32.grad["x"].dtype == np.float32 and res32.value.dtype == np.float32


def test_const_is_null_unless_watched():
    prog = Program("a*x; a = const(2.0); x = 1.0")
    assert prog.grad(wrt=["a"]).grad == {"a": None}
    assert prog.grad(wrt=["a"], watch=["a"]).grad["a"] == 1.0
    assert list(prog.grad().grad) == ["x"]
    assert list(prog.grad(watch=["a"]).grad) == ["a", "x"] or list(prog.grad(watch=["a"]).grad) == ["x", "a"]


def test_unconnected_variable_is_null_or_zero():
    prog = Program("y = 2*x; x = 1.0; z = [3.0, 4.0]", of="y")
    assert prog.grad(wrt=["x", "z"]).grad == {"x": 2.0, "z": None}
    zero = prog.grad(wrt=["x", "z"], unconnected="zero").grad["z"]
    assert zero.shape == (2,) and not zero.any()
    assert prog.jacobian(wrt=["z"]).jacobian == {"z": None}
    assert prog.jacobian(wrt=["z"], unconnected="zero").jacobian["z"].shape == (2,)


def test_unknown_wrt_name_suggests():
    with pytest.raises(DifftapeError, match="did you mean .xx."):
        Program("xx*2; xx = 1.0").grad(wrt=["xxx"])


def test_hessian_block_is_zero_not_null_when_both_are_connected():
    res = Program("sum(x**2)*y; x = [1.0, 2.0]; y = 3.0").hessian()
    assert np.array_equal(res.hessian["y"]["y"], np.array(0.0))
    assert np.array_equal(res.hessian["x"]["y"], [2.0, 4.0])
    assert np.array_equal(res.hessian["x"]["x"], [[6.0, 0.0], [0.0, 6.0]])


def test_hessian_of_a_vector_points_to_jacobian():
    with pytest.raises(DifftapeError, match="jacobian"):
        Program("x*2; x = [1.0, 2.0]").hessian()


def test_check_uses_complex_step_for_analytic_programs_and_ridders_otherwise():
    ok = Program("sin(x)*exp(x)", at={"x": 0.3}).check(expect={"": "cos(x)*exp(x) + sin(x)*exp(x)"})
    assert ok.ok and "complex step" in ok.method
    assert ok.inputs["x"].max_abs_err < 1e-14
    kink = Program("sum(abs(x))", at={"x": np.array([1.0, -2.0])}).check()
    assert kink.ok and "Richardson" in kink.method


def test_check_at_a_point_near_a_kink_resolves_it():
    # The first step (0.1) straddles the kink at 0; the step from |x| does not.
    res = Program("abs(x)", at={"x": 1e-9}).check()
    assert res.ok and abs(res.inputs["x"].numeric - 1.0) < 1e-9


def test_check_near_a_kink_away_from_zero_resolves_it():
    # The kink of maximum sits 0.004 from x: the first steps (0.148 and down) straddle it and the
    # tableau settled on a wrong slope (0.47), so a correct gradient was reported as MISMATCH.
    res = Program("maximum(-1.48, x) + relu(x + 2.001)", at={"x": -1.4841331707711822}).check()
    assert res.ok and abs(res.inputs["x"].numeric - 1.0) < 1e-9
    res = Program("sum(maximum(x, 2.0))", at={"x": np.array([1.99, 2.005, -3.0])}).check()
    assert res.ok and np.allclose(res.inputs["x"].numeric, [0.0, 1.0, 0.0], atol=1e-9)


def test_check_complex_step_at_a_tiny_input():
    # h = 1e-30 is not small next to x = 1e-300: the step must scale with |x| (it gave 7e14, not 5e149)
    res = Program("sqrt(x)", at={"x": 1e-300}).check()
    assert "complex step" in res.method and res.ok
    assert res.inputs["x"].numeric == pytest.approx(5e149, rel=1e-12)
    res = Program("sum(abs(x))", at={"x": np.array([1e-12, -1e-12])}).check()
    assert res.ok and np.allclose(res.inputs["x"].numeric, [1.0, -1.0])


def test_check_reports_a_wrong_expectation():
    res = Program("x**3", at={"x": 2.0}).check(expect={"x": "3*x"})
    assert not res.ok and res.inputs["x"].max_abs_err == pytest.approx(6.0)


def test_expect_shape_mismatch_is_an_error():
    with pytest.raises(DifftapeError, match="shape"):
        Program("sum(x); x = [1.0, 2.0]").check(expect={"x": "[1.0, 2.0, 3.0]"})


def test_parse_value_rejects_free_names():
    assert parse_value("pi/4") == pytest.approx(np.pi / 4)
    with pytest.raises(DifftapeError, match="constant expression"):
        parse_value("x + 1")


def test_grad_graph_lists_backward_nodes_and_marks_gradients():
    prog = Program("y = sin(x)*x; x = 2.0")
    text = grad_graph_text(prog.grad_graph(), len(prog.graph.nodes))
    forward, backward = text.split("-- backward pass")
    assert "sin" in forward and "cos" in backward and "grad x" in backward
    dot = Program("y = sin(x)*x; x = 2.0").grad_graph().to_dot()
    assert dot.startswith("digraph") and "cos" in dot


def test_derivatives_have_no_negative_zeros():
    jac = Program("sin(x)", at={"x": np.array([1.0, 2.0])}).jacobian().jacobian["x"]
    assert not np.signbit(jac[0, 1]) and not np.signbit(jac[1, 0])


def test_parse_value_gives_the_working_float_dtype():
    assert parse_value("2.5", dtype="float32").dtype == np.float32
    assert parse_value("[2.5]", dtype="float32").dtype == np.float32
    assert parse_value("2", dtype="float32").dtype.kind == "i"
    assert parse_value("2.5").dtype == np.float64


def test_check_without_expect_uses_the_derived_gradient():
    res = Program("x**3", at={"x": 2}).check()
    row = res.inputs["x"]
    assert res.ok and row.analytic_source == "diff" and row.analytic_expr == "3*x**2"
    assert row.analytic == 12.0 and row.tape == 12.0 and abs(row.numeric - 12.0) < 1e-12


def test_check_prefers_expect_over_the_derived_gradient():
    row = Program("x**3", at={"x": 2.0}).check(expect={"x": "3*x**2"}).inputs["x"]
    assert row.analytic_source == "expect" and row.analytic_expr == "3*x**2"


def test_check_derived_gradients_for_matrices_and_leaf_bindings():
    res = Program("sum(W @ x); W = randn(2,3)", at={"x": np.array([1.0, 2.0, 3.0])}, seed=3).check()
    assert res.ok
    assert {n: r.analytic_source for n, r in res.inputs.items()} == {"W": "diff", "x": "diff"}


def test_a_value_for_a_name_the_program_lacks_is_an_error():
    with pytest.raises(DifftapeError, match="no input or binding named 'xx'.*did you mean 'x'"):
        Program("x**2", at={"xx": 2.0})
    assert Program("y = 2; x*y", at={"x": 1, "y": 5}).evaluate() == 5  # overriding a leaf binding is fine


# ----------------------------------------------------------------------------------------
# check's numeric derivatives run the compiled path (difftape.function), not the interpreter


_COMPILED_CASES = [
    ("y = sum(sin(x)*exp(x)); x = randn(12)", "complex"),  # analytic: the complex step
    ("y = sum(abs(sin(x))*exp(x)); x = randn(12)", "ridders"),  # a kink: Ridders
    ("y = sum(maximum(x @ w, 0.0)**2) + mean(w); x = randn(3, 4); w = rand(4, 2)", "ridders"),
    ("y = x[1:, ::2] * 2.0 + noise; noise = randn(2, 2); x = randn(3, 4)", "complex"),  # random node
]


def _interpreted_numeric(prog: Program, name: str, complex_step: bool) -> np.ndarray:
    from difftape.answers import numeric

    _, watched = prog.sources(None, ())
    _, leaves = prog._run([], watched)
    x0 = np.asarray(leaves[name]._value, dtype=np.float64)

    def total(z):
        out, _ = prog._run([], watched, overrides={name: z})
        return np.sum(out._value)

    if complex_step:
        return numeric.complex_step(total, x0)[0]
    return numeric.richardson_gradient(lambda z: float(np.real(total(z))), x0)[0]


@pytest.mark.parametrize(("source", "method"), _COMPILED_CASES)
def test_check_numeric_gradients_are_the_interpreter_s_exactly(source, method, monkeypatch):
    prog = Program(source, seed=3)
    runs = []
    real_run = Program._run
    monkeypatch.setattr(Program, "_run", lambda self, *a, **k: runs.append(1) or real_run(self, *a, **k))
    result = prog.check()
    assert result.ok
    assert ("complex step" in result.method) == (method == "complex")
    elements = sum(np.size(row.tape) for row in result.inputs.values())
    # the interpreter would run the whole graph several times per element; the compiled path
    # runs it a few times in all (the base run, the gradient, one trace per input signature)
    assert len(runs) <= 4 + 2 * len(result.inputs) < 3 * elements
    monkeypatch.setattr(Program, "_run", real_run)
    for name, row in result.inputs.items():
        np.testing.assert_array_equal(row.numeric, _interpreted_numeric(prog, name, method == "complex"))


def test_check_compiled_path_keeps_float32_and_errors():
    prog = Program("sum(sin(x)*x)", at={"x": np.array([1.0, 2.0])}, dtype="float32")
    res = prog.check()  # the probes run the program as the interpreter does (complex step: complex128)
    np.testing.assert_array_equal(res.inputs["x"].numeric, _interpreted_numeric(prog, "x", True))
    assert res.ok and res.inputs["x"].tape.dtype == np.float64  # (rows are float64; the tape ran in float32)
    # a point where the program fails is reported as the interpreter reports it
    with pytest.raises(DifftapeError):
        Program("det(inv(a)); a = [[1.0, 2.0], [2.0, 4.0]]").check()
