"""The README's function list and the operation table must not drift apart."""

from __future__ import annotations

import re
from pathlib import Path

from difftape.language.compiler import LANGUAGE_FUNCTIONS
from difftape.ops import OPS

README = Path(__file__).resolve().parent.parent / "README.md"
INTERNAL = {n for n, op in OPS.items() if op.kind == "index"}  # reached through x[...] and gradients


def _listed() -> set[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("The functions, by family", 1)[1].split("\n\n", 2)[1]
    return set(re.findall(r"`([a-z_0-9]+)`", section))


def test_every_function_of_the_language_is_listed():
    missing = (set(OPS) - INTERNAL | set(LANGUAGE_FUNCTIONS)) - _listed()
    assert not missing, f"README lacks {sorted(missing)}"


def test_the_list_names_no_function_that_does_not_exist():
    extra = _listed() - set(OPS) - set(LANGUAGE_FUNCTIONS) - {"axis", "keepdims", "ddof", "ord"}
    assert not extra, f"README lists unknown functions {sorted(extra)}"
