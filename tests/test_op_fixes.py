"""Bugs found from outside in single operations' rules, each pinned against a closed form."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from gradcheck import numeric_grad

import difftape as dt
from difftape.cli import cli


def run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, list(args), prog_name="difftape")
    return res.exit_code, res.output


def hessian_json(program: str, *at: str) -> dict:
    code, out = run("hessian", program, *sum((["--at", a] for a in at), []), "--json")
    assert code == 0, out
    return json.loads(out.strip().splitlines()[-1])


# -- prod: derivatives of the product of the others are exact at zeros ---------------------------


def test_prod_hessian_at_two_zeros_is_the_product_of_the_others():
    h = hessian_json("prod(x)", "x=[0.0, 0.0, 3.0]")["hessian"]["x"]["x"]
    assert np.array_equal(np.array(h), [[0, 3, 0], [3, 0, 0], [0, 0, 0]])


@pytest.mark.parametrize("x", [[0.0, 0.0, 3.0, 2.0], [0.0, 0.0, 0.0, 2.0], [1.5, -2.0, 0.5, 3.0], [0.0, 1.0, 2.0, 3.0]])
def test_prod_hessian_matches_the_closed_form(x):
    x = np.array(x)
    n = len(x)
    expected = np.array([[0.0 if i == j else np.prod(np.delete(x, [i, j])) for j in range(n)] for i in range(n)])
    got = dt.hessian(lambda v: dt.prod(v), dt.constant(x)).numpy()
    assert np.allclose(got, expected, rtol=1e-12, atol=0)


def test_prod_over_several_axes_keeps_exact_second_derivatives():
    x = np.array([[0.0, 2.0, 0.0], [1.5, -1.0, 0.5]])

    def f(v):
        return dt.sum(dt.prod(v, axis=(0,)) * dt.constant([1.0, 2.0, 3.0]))

    got = dt.hessian(f, dt.constant(x)).numpy().reshape(6, 6)
    flat = x.reshape(-1)

    def fn(z):
        return float(np.sum(np.prod(z.reshape(2, 3), axis=0) * np.array([1.0, 2.0, 3.0])))

    # the function is a polynomial of degree 2 in each column: finite differences of the gradient are exact
    grad = lambda z: numeric_grad(lambda u: fn(u), [z], 0)  # noqa: E731
    numeric = np.stack([(grad(flat + 1e-4 * e) - grad(flat - 1e-4 * e)) / 2e-4 for e in np.eye(6)])
    assert np.allclose(got, numeric, atol=1e-6)


# -- det: the cofactor matrix, at singular matrices too ----------------------------------------


def cofactor_closed_form(a: np.ndarray) -> np.ndarray:
    n = a.shape[0]
    return np.array([[(-1) ** (i + j) * np.linalg.det(np.delete(np.delete(a, i, 0), j, 1)) for j in range(n)]
                     for i in range(n)])


@pytest.mark.parametrize("a", [
    [[1.0, 2.0], [2.0, 4.0]],
    [[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 0.0, 1.0]],
    [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
    [[2.0, -1.0, 0.5], [0.3, 1.0, -2.0], [1.0, 1.0, 1.0]],
])
def test_det_hessian_exists_at_singular_matrices(a):
    a = np.array(a)
    n = a.shape[0]
    h = np.array(hessian_json("det(A)", f"A={a.tolist()}")["hessian"]["A"]["A"]).reshape(n * n, n * n)
    # d2 det / dA_ij dA_kl is the cofactor of the cofactor: finite differences of the exact gradient
    flat = a.reshape(-1)
    numeric = np.stack([
        (cofactor_closed_form((flat + 1e-6 * e).reshape(n, n)) - cofactor_closed_form((flat - 1e-6 * e).reshape(n, n)))
        .reshape(-1) / 2e-6 for e in np.eye(n * n)])
    assert np.allclose(h, numeric, atol=1e-6)


def test_compiled_gradient_of_det_at_a_singular_matrix():
    @dt.function
    def f(a):
        return dt.det(a)

    for a in ([[2.0, 1.0], [1.0, 3.0]], [[1.0, 2.0], [2.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]):
        a = dt.constant(a)
        with dt.Tape() as tape:
            tape.watch(a)
            y = f(a)
        g = tape.gradient(y, a).numpy()
        assert np.allclose(g, cofactor_closed_form(a.numpy()), atol=1e-12)


def test_cofactor_is_a_function_of_the_language():
    code, out = run("eval", "cofactor(A)", "--at", "A=[[1.0, 2.0], [3.0, 4.0]]", "--json")
    assert code == 0, out
    assert np.allclose(json.loads(out)["value"], [[4.0, -3.0], [-2.0, 1.0]])


# -- var/std with no degrees of freedom left follow numpy ---------------------------------------


@pytest.mark.parametrize("program,at", [
    ("var(x, ddof=2)", "x=[1.0, 2.0]"),
    ("var(x, ddof=1)", "x=[1.0]"),
    ("std(x, ddof=1)", "x=[1.0]"),
    ("var(x)", "x=zeros(0)"),
    ("std(x)", "x=zeros(0)"),
    ("mean(x)", "x=zeros(0)"),
    ("std(x, ddof=3)", "x=[1.0, 2.0]"),
])
@pytest.mark.parametrize("command", ["grad", "hessian", "jacobian", "diff"])
def test_no_degrees_of_freedom_is_not_an_internal_error(program, at, command):
    code, out = run(command, program, "--at", at, "--json")
    assert "internal" not in out
    assert code in (0, 2), out


def test_var_with_no_degrees_of_freedom_has_numpy_value_and_a_gradient_that_follows_it():
    x = dt.constant([1.0, 2.0])
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        with dt.Tape() as tape:
            tape.watch(x)
            y = dt.var(x, ddof=2)
        g = tape.gradient(y, x).numpy()
        expected = np.var(np.array([1.0, 2.0]), ddof=2)
    assert np.isinf(y.numpy()) and y.numpy() == expected
    assert np.array_equal(g, [-np.inf, np.inf])
