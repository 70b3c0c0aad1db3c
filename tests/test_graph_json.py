"""``graph --json`` gives structured nodes (issue 14, item 6): ``{"of", "target", "nodes": [...]}``
and ``"grad": [...]`` with ``--grad``; each node ``{"id", "op", "label", "inputs", "shape", "dtype",
"weak", "span": {"line", "column", "end_line", "end_column"}, "binds"}``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from click.testing import CliRunner

from difftape.answers.program import Program
from difftape.cli import cli

KEYS = {"id", "op", "label", "inputs", "shape", "dtype", "weak", "span", "binds"}


def graph(*args: str) -> dict:
    res = CliRunner().invoke(cli, ["graph", *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_nodes_are_objects_with_the_contract_keys():
    obj = graph("y = sin(x)*x", "--at", "1.0")
    assert obj["of"] == "y" and set(obj) == {"of", "target", "nodes"}
    nodes = obj["nodes"]
    assert all(set(n) == KEYS for n in nodes)
    assert [n["op"] for n in nodes] == ["input", "sin", "multiply"]
    assert [n["inputs"] for n in nodes] == [[], [0], [1, 0]]
    assert nodes[0]["binds"] == "x" and nodes[2]["binds"] == "y" and obj["target"] == 2
    assert nodes[1]["span"] == {"line": 1, "column": 5, "end_line": 1, "end_column": 11}
    assert nodes[2]["shape"] == [] and nodes[2]["dtype"] == "float64" and nodes[2]["weak"] is False


def test_the_nodes_are_the_graphs():
    source = "f(t) = t**2; y = sum(W @ f(x)); W = ones((2, 3))"
    obj = graph(source, "--at", "x=[1.0, 2.0, 3.0]")
    prog = Program(source, at={"x": np.array([1.0, 2.0, 3.0])})
    assert len(obj["nodes"]) == len(prog.graph.nodes)
    for row, node in zip(obj["nodes"], prog.graph.nodes):
        assert row["id"] == node.id and row["op"] == node.op and row["inputs"] == list(node.inputs)
        assert row["shape"] == (None if node.shape is None else list(node.shape))
    weak = next(n for n in obj["nodes"] if n["op"] == "literal")
    assert weak["weak"] is True and weak["dtype"] == "int"
    power = next(n for n in obj["nodes"] if n["op"] == "power")
    assert power["span"]["column"] == source.index("f(x)") + 1  # an inlined call: the call's span


def test_grad_adds_the_backward_nodes():
    obj = graph("y = sin(x)*x", "--at", "1.0", "--grad")
    assert len(obj["nodes"]) == 3 and obj["grad"]
    assert all(set(n) == KEYS for n in obj["grad"])
    assert obj["grad"][0]["id"] == 3
    assert any(n["binds"] and "grad x" in n["binds"] for n in obj["grad"])


def test_an_input_without_a_value_has_null_shape_and_dtype():
    obj = graph("y = x * 2")
    assert obj["nodes"][0]["shape"] is None and obj["nodes"][0]["dtype"] is None


def test_dot_with_json_keeps_the_dot_text():
    obj = graph("y = x * 2", "--at", "1.0", "--dot")
    assert obj["format"] == "dot" and "digraph" in obj["graph"] and len(obj["nodes"]) == 3


def test_the_real_command():
    proc = subprocess.run([sys.executable, "-m", "difftape", "graph", "y = x**2", "--at", "3.0", "--json", "--grad"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert [n["op"] for n in obj["nodes"]][-1] == "power" and obj["grad"]
