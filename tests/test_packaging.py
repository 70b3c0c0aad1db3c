"""The installed package is the whole package: pyproject's package discovery finds every subpackage."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
setuptools = pytest.importorskip("setuptools")

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_installed():
    # a hand-written package list once left out difftape/ops: `pip install .` (what CI runs) then broke
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    include = config["packages"]["find"]["include"]
    installed = set(setuptools.find_packages(where=str(ROOT), include=include))
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "difftape").rglob("__init__.py")}
    assert found - installed == set(), "not found by [tool.setuptools.packages.find]: `pip install .` leaves them out"
    assert all(name.startswith("difftape") for name in installed)


def test_the_grammar_ships_with_the_language():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "*.lark" in data["difftape.language"]
