"""The installed package is the whole package: pyproject's explicit package list names every subpackage."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "difftape").rglob("__init__.py")}
    assert found - listed == set(), "missing from [tool.setuptools] packages: `pip install .` would leave them out"
