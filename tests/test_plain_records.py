"""The hand-written record classes keep what their former ``@dataclass`` versions did.

syntax.py, graph.py and program.py define plain classes (dataclass creation was a large
part of the command's start-up time); these tests pin the generated behaviour they
replace: equality and hashing, the repr, the defaults (fresh objects for factories),
and the slots of the classes made in bulk.
"""

from __future__ import annotations

import pytest

from difftape.answers.program import CheckResult, CheckRow, GradResult, HessianResult, JacobianResult
from difftape.ir.graph import Graph, Node
from difftape.language.parser import parse
from difftape.language.syntax import Binary, Name, Number, Program, Span

# ---------------------------------------------------------------------------------------
# syntax


def test_span_compares_by_value_and_is_unhashable():
    a, b = Span(1, 2, 1, 5, 1, 4), Span(1, 2, 1, 5, 1, 4)
    assert a == b and not (a != b)
    assert a != Span(1, 2, 1, 6, 1, 5)
    assert a != (1, 2, 1, 5, 1, 4)  # another class is never equal
    assert Span.__hash__ is None
    with pytest.raises(TypeError):
        hash(a)
    with pytest.raises(TypeError):
        {a}  # noqa: B018


def test_span_repr_and_methods():
    span = Span(1, 2, 1, 5, 1, 4)
    assert repr(span) == "Span(line=1, column=2, end_line=1, end_column=5, start=1, end=4)"
    assert str(span) == "1:2-1:5"
    assert span.to(Span(2, 1, 2, 3, 10, 12)) == Span(1, 2, 2, 3, 1, 12)
    assert span.text("x+yz*w") == "+yz"


def test_nodes_compare_by_identity_and_hash():
    span = Span(1, 1, 1, 2, 0, 1)
    a, b = Name("x", span), Name("x", span)
    assert a == a and a != b
    assert Name.__eq__ is object.__eq__ and Name.__hash__ is object.__hash__
    assert len({a, b}) == 2


def test_node_repr_is_in_the_dataclass_style():
    span = Span(1, 1, 1, 2, 0, 1)
    x, two = Name("x", span), Number(2, "2", span)
    node = Binary("**", x, two, span, span)
    s = "Span(line=1, column=1, end_line=1, end_column=2, start=0, end=1)"
    assert repr(x) == f"Name(id='x', span={s})"
    assert repr(node) == (
        f"Binary(op='**', left=Name(id='x', span={s}), right=Number(value=2, text='2', span={s}), "
        f"span={s}, op_span={s})"
    )
    assert repr(Program((), "")) == "Program(statements=(), source='')"


def test_nodes_take_keywords_and_have_slots():
    span = Span(1, 1, 1, 2, 0, 1)
    node = Number(text="2", value=2, span=span)
    assert (node.value, node.text, node.span) == (2, "2", span)
    with pytest.raises(AttributeError):
        node.extra = 1  # type: ignore[attr-defined]
    assert not hasattr(node, "__dict__") and not hasattr(span, "__dict__")


def test_parsed_nodes_repr():
    tree = parse("x")
    assert repr(tree).startswith("Program(statements=(Name(id='x', span=Span(line=1, column=1,")


# ---------------------------------------------------------------------------------------
# graph


def _graph(**kwargs) -> Graph:
    return Graph(nodes=[], target=0, target_name="x", inputs=[], variables=[], consts=[], bindings={}, source="x",
                 **kwargs)


def test_graph_node_defaults_slots_and_repr():
    node = Node(0, "literal", (), {"value": 2}, (), int, None)
    assert node.name is None and node.leaf is False
    node.name, node.leaf = "x", True  # the compiler names nodes after creating them
    assert repr(node) == (
        "Node(id=0, op='literal', inputs=(), params={'value': 2}, shape=(), dtype=<class 'int'>, span=None, "
        "name='x', leaf=True)"
    )
    with pytest.raises(AttributeError):
        node.extra = 1  # type: ignore[attr-defined]
    same = Node(0, "literal", (), {"value": 2}, (), int, None, "x", True)
    assert node != same and len({node, same}) == 2  # identity, as eq=False


def test_graph_defaults_are_fresh_and_equality_is_identity():
    a, b = _graph(), _graph()
    assert a.values == {} and a.missing == [] and a.dtype == "float64"
    assert a.values is not b.values and a.missing is not b.missing
    a.values["x"] = 1
    a.missing.append("y")
    assert b.values == {} and b.missing == []
    assert a != _graph() and a == a and hash(a) == hash(a)
    assert repr(b) == (
        "Graph(nodes=[], target=0, target_name='x', inputs=[], variables=[], consts=[], bindings={}, "
        "source='x', values={}, missing=[], dtype='float64')"
    )
    given = {"x": 1.0}
    assert _graph(values=given).values is given


# ---------------------------------------------------------------------------------------
# program results


def test_result_records_compare_by_value_and_are_unhashable():
    for cls in (GradResult, JacobianResult, HessianResult, CheckRow, CheckResult):
        assert cls.__hash__ is None, cls
    a = GradResult("y", 1.0, {"x": 2.0}, False)
    assert a == GradResult("y", 1.0, {"x": 2.0}, summed=False)
    assert a != GradResult("y", 1.0, {"x": 3.0}, False)
    assert a != JacobianResult("y", 1.0, {"x": 2.0})
    with pytest.raises(TypeError):
        hash(a)
    assert repr(a) == "GradResult(of='y', value=1.0, grad={'x': 2.0}, summed=False)"


def test_check_records_defaults():
    row = CheckRow(None, None, 0.0, None, 0.0, 0.0, True)
    assert row.analytic_expr is None and row.analytic_source == "none"
    assert repr(row) == (
        "CheckRow(tape=None, numeric=None, numeric_error=0.0, analytic=None, max_abs_err=0.0, max_rel_err=0.0, "
        "ok=True, analytic_expr=None, analytic_source='none')"
    )
    a, b = CheckResult("y", True, "", 1e-6, 1e-8), CheckResult("y", True, "", 1e-6, 1e-8)
    assert a.inputs == {} and a.inputs is not b.inputs
    a.inputs["x"] = row
    assert b.inputs == {} and a != b
    assert repr(b) == "CheckResult(of='y', ok=True, method='', rtol=1e-06, atol=1e-08, inputs={})"
