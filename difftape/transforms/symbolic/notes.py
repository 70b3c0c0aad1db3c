"""Side notes of ``difftape diff``: what the printed formula leaves out at its edge points.

The printed derivative is the one a person writes (``log(x)``, ``x/norm(x)``, ``x/x`` as 1).
The tape keeps conventions at a few points (``ops.safe``: a guarded denominator or log
argument) and, where a cancellation was made, computes a 0/0. Each such point is said
once, in words, beside the formula, instead of inside it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from difftape.transforms.symbolic import simplify as S  # noqa: N812
from difftape.transforms.symbolic.evaluate import evaluate
from difftape.transforms.symbolic.expr import Expr, const, postorder
from difftape.transforms.symbolic.printer import to_text

Key = tuple[str, ...]
#: Longest tape value a note spells out.
SHORT = 40


def _names(e: Expr) -> set[str]:
    return {n.value for n in postorder(e) if n.op == "name"}


def _at(root: Expr, name: Expr, value: Any) -> Expr:
    return S.substitute(root, {id(name): const(value, name.shape, name.dtype)})


def _join(pairs: list[tuple[Key, str]], head: Callable[[Key], str]) -> list[str]:
    """One line per distinct text, the derivatives it is about first."""
    order: dict[str, list[str]] = {}
    for key, text in pairs:
        heads = order.setdefault(text, [])
        if head(key) not in heads:
            heads.append(head(key))
    return [f"{', '.join(heads)}: {text}" for text, heads in order.items()]


def guard_notes(found: list[tuple[Key, Expr, Expr]], head: Callable[[Key], str]) -> list[str]:
    """For each guard ``where(u == k, v, u)`` dropped from a derivative: what the tape gives where ``u = k``."""
    pairs: list[tuple[Key, str]] = []
    for key, root, guard in found:
        cond, _, u = guard.args
        k = cond.args[1]
        at = S._assume(root, cond, True)
        if u.op == "name":
            at = _at(at, u, k.value)
        elif u.op in ("norm", "abs") and u.args[0].op == "name" and k.is_const(0):
            at = _at(at, u.args[0], 0)  # norm(x) = 0 only at x = 0
        if not at.free:
            with np.errstate(all="ignore"):
                v = np.asarray(evaluate(at, {}), dtype=np.float64)
            if not np.all(np.isfinite(v)):
                continue  # not finite in the tape either: the formula has nothing to add there
        value = to_text(at) if not any(n.op in ("guard", "where") for n in postorder(at)) else ""
        point = f"{to_text(u)} = {to_text(k)}"
        if value and len(value) <= SHORT and ";" not in value:
            pairs.append((key, f"where {point} the tape uses {value}"))
        else:
            pairs.append((key, f"where {point} the tape takes {to_text(u)} as {to_text(guard.args[1])} here "
                               "(its guarded form, as `difftape check` evaluates it)"))
    return _join(pairs, head)


def cancel_notes(bases: list[Expr], items: list[tuple[Key, Expr]], head: Callable[[Key], str]) -> list[str]:
    """For each base that a product cancelled (``x/x``): where the printed formula is the limit of a 0/0.

    A base that is a name is tried at 0 (other names at a generic point): the note is kept only
    where the printed formula is finite there (where it is not, the formula is undefined anyway).
    """
    seen: set[int] = set()
    pairs: list[tuple[Key, str]] = []
    for b in bases:
        if id(b) in seen or not b.free:
            continue
        seen.add(id(b))
        bnames = _names(b)
        for key, e in items:
            if b.op != "name" and not bnames & _names(e):
                continue
            if b.op == "name":
                env = {n.value: np.full(n.shape, 0.7) for n in postorder(e) if n.op == "name"}
                env[b.value] = np.zeros(b.shape)
                try:
                    with np.errstate(all="ignore"):
                        v = np.asarray(evaluate(e, env), dtype=np.float64)
                except Exception:  # noqa: BLE001 - a note is a best effort
                    continue
                if not np.any(np.isfinite(v)):
                    continue
            elif b.size > 12:
                continue
            text = f"where {to_text(b)} = 0 this is the limit of the tape's value, which is nan there (0/0)"
            pairs.append((key, text))
    return _join(pairs, head)
