"""The fast JSON path of --batch (msgspec, difftape.jsonlib) against the standard library's: the same bytes.

The test extra installs msgspec, so these run the fast path for real; DIFFTAPE_JSON=stdlib forces the
fallback. Every comparison is of whole outputs, byte for byte.
"""

from __future__ import annotations

import json
import math
import struct

import msgspec  # noqa: F401 - the test extra installs it: the fast path must be the one under test
import numpy as np
import pytest

from difftape import jsonlib
from difftape.answers import batch
from difftape.answers.batch import BatchProgram, parse_ndjson, run_ndjson
from difftape.io.render import dumps, json_column, json_numbers, json_rows

RNG = np.random.default_rng(16)


@pytest.fixture
def use(monkeypatch):
    """use("stdlib") or use("msgspec"): pick the JSON library for what follows."""

    def pick(name: str) -> None:
        monkeypatch.setenv(jsonlib.ENV, "stdlib" if name == "stdlib" else "auto")
        jsonlib.reset()
        assert jsonlib.name() == name

    yield pick
    jsonlib.reset()


def both(use, fn):
    use("stdlib")
    slow = fn()
    use("msgspec")
    fast = fn()
    return slow, fast


def odd_floats(n: int) -> np.ndarray:
    """Random bit patterns (every exponent: subnormals, huge, tiny) and the values that need repr's notation."""
    bits = RNG.integers(0, 2**64, n, dtype=np.uint64).view(np.float64)
    special = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e16, 9999999999999998.0,
               1e-4, 9.999999999999999e-05, 1e-5, 1e-7, 1e22, 1e-300, math.nan, math.inf, -math.inf, 0.1, 1 / 3, 1e15]
    uniform = RNG.uniform(-2, 5, n)
    return np.concatenate([bits, special, uniform, uniform * 1e-6, uniform * 1e17])


def test_json_numbers_fast_equals_repr(use):
    a = odd_floats(20_000)
    slow, fast = both(use, lambda: json_numbers(a))
    assert slow == fast
    assert slow[: len(a) // 4] == [dumps(v) for v in a[: len(a) // 4]]  # and both are what dumps writes
    for other in (a.astype(np.float32), np.array([2**63 - 1, -(2**63), 0, 7]), np.array([True, False, True])):
        slow, fast = both(use, lambda other=other: json_numbers(other))
        assert slow == fast == [dumps(v) for v in other]


def test_json_rows_fast_equals_stdlib_and_dumps(use):
    n = 50
    cases = [
        [odd_floats(10)[:n].reshape(n)],
        [odd_floats(200)[: n * 6].reshape(n, 2, 3), RNG.normal(size=n)],
        [RNG.integers(-5, 5, (n, 2)), RNG.normal(size=(n, 1, 1)).astype(np.float32)],  # kinds mixed
        [np.zeros((n, 0)), RNG.normal(size=n) > 0, np.full((n, 2), 2**64 - 1, dtype=np.uint64)],
        [RNG.normal(size=(n, 2)) + 1j],
    ]
    for arrays in cases:
        pieces = ['{"a": '] + [f', "k{i}": ' for i in range(len(arrays) - 1)] + ["}\n"]
        slow, fast = both(use, lambda arrays=arrays, pieces=pieces: json_rows(pieces, arrays))
        assert slow == fast
        want = "".join(pieces[0] + "".join(dumps(a[i]) + p for a, p in zip(arrays, pieces[1:])) for i in range(n))
        assert slow == want
    a = RNG.normal(size=(4, 3))
    assert json_column(a) == [dumps(row) for row in a]


EDGE_LINES = [
    '{"x": 123456789012345678901234567890}',  # beyond 64 bits: an error of its own, on either path
    '{"x": 18446744073709551616}',
    '{"x": -9223372036854775809}',
    '{"x": 9223372036854775807}',
    '{"x": 1e400}',  # json.loads reads inf, msgspec refuses: the block falls back
    '{"x": NaN}',
    '{"x": -Infinity}',
    '{"x": 1, "x": 2.5}',
    '{"x": "\\udc00"}',
    '{"x": "\\ud83d\\ude00"}',
    '{"x": -0}',
    '{"x": -0.0}',
    '{"x": 4.9406564584124654e-324}',
    '{"x": 2.4703282292062328e-324}',
    '{"x": 1.000000000000000111022302462515654042363166809082031250001}',
    '{"x": "nan"}',
    '{"x": [1, "inf", -0.0]}',
    '{"x": [[1.5e-310, 2], [3, 4]]}',
    '{"x": 1E5, "y": 1.5e+3}',
    '{"\\u0078": 0.5}',
    '{"x": 0.5, "é": 1}',
    '{"x": 01}',
    '{"x": .5}',
    '{"x": [1, 2}',
    '[1, 2]',
    '{"x": true}',
    '{"x": null}',
]


def test_parse_ndjson_fast_equals_stdlib(use):
    rows = [EDGE_LINES] + [[line] for line in EDGE_LINES] + [["{\"x\": 1}", line, "{\"x\": 2}"] for line in EDGE_LINES]
    for lines in rows:
        for end in ("\n", "\r\n"):
            data = (end.join(lines) + end).encode("utf-8", "surrogatepass")
            slow, fast = both(use, lambda data=data: parse_ndjson(data))
            assert repr(slow[0]) == repr(fast[0])  # repr: nan == nan, -0.0 apart from 0.0, int apart from float
            assert {k: (e.kind, e.message) for k, e in slow[1].items()} == \
                   {k: (e.kind, e.message) for k, e in fast[1].items()}


def test_parse_ndjson_floats_read_back_bit_for_bit(use, monkeypatch):
    a = odd_floats(20_000)
    a = a[np.isfinite(a)]
    data = "".join(json.dumps({"x": v}) + "\n" for v in a.tolist()).encode()
    for name in ("stdlib", "msgspec"):
        use(name)
        if name == "msgspec":  # and it is msgspec that reads them
            monkeypatch.setattr(batch.json, "loads", lambda *a, **k: pytest.fail("json.loads on the fast path"))
        objs, bad = parse_ndjson(data)
        assert not bad
        got = np.array([o["x"] for o in objs])
        assert struct.pack(f"{len(a)}d", *got) == struct.pack(f"{len(a)}d", *a)


def test_parse_ndjson_deep_nesting_same_on_both_paths(use):
    for depth in (30, 33, 500, 2000):
        data = ('{"x": ' + "[" * depth + "1" + "]" * depth + "}\n").encode() * 3
        slow, fast = both(use, lambda data=data: parse_ndjson(data))
        assert repr(slow[0]) == repr(fast[0])
        assert {k: e.message for k, e in slow[1].items()} == {k: e.message for k, e in fast[1].items()}


def random_points(n: int) -> list[dict]:
    """Points of every kind a line can hold: odd floats, ints (some beyond 64 bits), strings, lists, bad values."""
    floats = odd_floats(n)[:n].tolist()
    pool = [
        lambda i: floats[i],
        lambda i: int(RNG.integers(-(2**62), 2**62)),
        lambda i: 2**64 + i,
        lambda i: ["nan", "inf", "-inf"][i % 3],
        lambda i: [floats[i], floats[(i + 1) % n]],
        lambda i: -0.0,
        lambda i: True,
        lambda i: None,
    ]
    weights = np.array([10, 2, 1, 1, 1, 1, 1, 1], dtype=float)
    choice = RNG.choice(len(pool), size=n, p=weights / weights.sum())
    return [{"x": pool[c](i), "y": floats[(i * 7) % n]} for i, c in enumerate(choice.tolist())]


@pytest.mark.parametrize("command", ["eval", "grad", "jacobian"])
def test_batch_output_fast_equals_stdlib(use, command):
    points = random_points(3000)
    text = "".join(json.dumps(p) + "\n" for p in points)  # json.dumps writes NaN, Infinity: the fallback
    text += "".join(json.dumps(p, allow_nan=True).replace("NaN", '"nan"').replace("-Infinity", '"-inf"')
                    .replace("Infinity", '"inf"') + "\n" for p in points)
    text += "\n  \n" + '{"x": 1.5, "y": 1e-7}\n{"x": [1, 2], "y": 1e300}\n{"x": 01}\n'
    source = "sum(sin(x) * y) + 1e-5 * y**3"
    prog_src = source if command != "eval" else "x * y"

    def run():
        prog = BatchProgram(prog_src)
        with np.errstate(all="ignore"):
            return run_ndjson(prog, text.encode(), command, block_lines=700).text()

    slow, fast = both(use, run)
    assert slow == fast
    assert slow.count("\n") == len(points) * 2 + 3  # blank lines answer nothing


def test_a_block_without_blank_lines_is_not_searched_for_them(monkeypatch):
    """The blank-line search once matched the newline that ends every block, so every block of a big
    batch was split into lines and rejoined (a third of the run's time)."""

    def no(*args):
        raise AssertionError("searched for blank lines in a block that has none")

    monkeypatch.setattr(batch, "_without_blank_lines", no)
    text = "".join(json.dumps({"x": float(v)}) + "\n" for v in range(100))
    report = run_ndjson(BatchProgram("x**2"), text.encode(), "grad", block_lines=30)
    assert report.lines == 100 and report.failed == 0
    for blank in ("\n", "  \n", "\t\r\n"):
        with pytest.raises(AssertionError, match="blank lines"):
            run_ndjson(BatchProgram("x**2"), ('{"x": 1}\n' + blank + '{"x": 2}\n').encode(), "grad")
