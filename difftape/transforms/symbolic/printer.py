"""Expressions as difftape program text: precedence-correct, deterministic, shared parts bound once.

The language's precedence (``grammar/difftape.lark``), lowest first: comparisons, ``+ -``,
``* / // % @``, unary ``+ -``, ``**`` (right-associative, its right operand may be signed),
postfix (calls, indexing, ``.T``). Each node reports its level and its pieces; a child
whose level is below what its slot needs gets parentheses. Output is produced with an
explicit stack, so a 100,000-deep expression prints without recursion.

A subexpression used more than once is bound to a name (``t = ...; ...``) when that makes
the text shorter by a clear margin: that keeps shared DAGs from printing exponentially.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

import numpy as np

from difftape.errors import DifftapeError
from difftape.ops import OPS
from difftape.transforms.symbolic.expr import Expr, postorder
from difftape.transforms.symbolic.formats import KNOWN, exact_constant

COMPARE, SUM, TERM, UNARY, POWER, ATOM = range(6)

# An item is a literal string or (child, minimum level, flipped sign: 0 no, 1 after a binary
# minus, 2 after a unary minus).
Item = str | tuple[Expr, int, int]

_INFIX_COMPARE = {"less": "<", "less_equal": "<=", "greater": ">", "greater_equal": ">=", "equal": "==",
                  "not_equal": "!="}
_REDUCTIONS = {"sum", "mean", "prod", "max", "min", "var", "std", "logsumexp", "norm"}
#: Names that the printer will never use for its own bindings (besides the program's names).
BUILTIN_NAMES = frozenset(OPS) | {"pi", "e", "inf", "nan", "True", "False", "randn", "rand", "T"}


def fmt_number(v: Any) -> tuple[str, int]:
    """Text and level of a scalar number (ints exact, Fractions as p/q, floats round-trip)."""
    if isinstance(v, (bool, np.bool_)):
        return ("True" if v else "False"), ATOM
    if isinstance(v, (int, np.integer)):
        v = int(v)
        return (str(v), ATOM) if v >= 0 else (str(v), UNARY)
    if isinstance(v, Fraction):
        if v.denominator == 1:
            return fmt_number(v.numerator)
        if len(repr(float(v))) <= 8:
            return fmt_number(float(v))  # 2.5, 0.1: exact and short as a decimal
        return f"{v.numerator}/{v.denominator}", TERM
    f = float(v)
    exact = exact_constant(f)
    if exact is not None:  # cosh(3), 2/log(10): as a product's coefficient is
        num, den = _exact_items(*exact)
        neg = "-" if f < 0 else ""
        top = "*".join(num) or "1"
        if den:
            bottom = den[0] if len(den) == 1 else "(" + "*".join(den) + ")"
            return f"{neg}{top}/{bottom}", TERM
        return neg + top, (UNARY if neg else ATOM if len(num) == 1 else TERM)
    if math.isnan(f):
        return "nan", ATOM
    if math.isinf(f):
        return ("inf", ATOM) if f > 0 else ("-inf", UNARY)
    if f.is_integer() and abs(f) < 1e16:
        text = str(int(f))
    else:
        text = repr(f)
    return text, (ATOM if f >= 0 else UNARY)


def _negative(v: Any) -> bool:
    return not isinstance(v, (bool, np.bool_)) and v < 0


def fmt_shape(shape: tuple[int, ...]) -> str:
    if len(shape) == 1:
        return str(shape[0])
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def fmt_param(v: Any) -> str:
    """A static parameter as text: numbers, tuples, None-free."""
    if isinstance(v, (tuple, list)):
        inner = ", ".join(fmt_param(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if isinstance(v, (bool, np.bool_)):
        return "1" if v else "0"
    if isinstance(v, (int, float, np.integer, np.floating, Fraction)):
        text, level = fmt_number(v)
        return text if level >= UNARY else f"({text})"
    if isinstance(v, str) and '"' not in v and "\\" not in v and v.isprintable():
        return f'"{v}"'  # a string literal (einsum's subscripts)
    raise DifftapeError("unsupported", f"diff: the parameter value {v!r} has no form in the language")


def fmt_array(a: np.ndarray) -> tuple[str, int]:
    """A constant array as a list literal (booleans as a comparison)."""
    if a.dtype.kind == "b":
        text, _ = fmt_array(a.astype(np.int64))
        return f"{text} == 1", COMPARE

    def scalar(x: Any) -> str:
        return fmt_number(x.item())[0]

    if a.ndim == 0:
        return fmt_number(a.item())
    rows = [scalar(x) for x in a.reshape(-1)]
    for n in reversed(a.shape):
        rows = ["[" + ", ".join(rows[i:i + n]) + "]" for i in range(0, len(rows), n)] if n else ["[]"]
    return rows[0], ATOM


def fmt_index_item(it: Any) -> str:
    if isinstance(it, slice):
        parts = ["" if it.start is None else str(it.start), "" if it.stop is None else str(it.stop)]
        text = ":".join(parts)
        return text + (f":{it.step}" if it.step is not None else "")
    if isinstance(it, np.ndarray):
        return fmt_array(it)[0]
    return str(int(it))


# ----------------------------------------------------------------------------------------
# pieces of one node


def _exact_items(r: Fraction, k: int, e: int) -> tuple[list[str], list[str]]:
    """Numerator and denominator texts of ``|r| * KNOWN[k] ** e``."""
    name = KNOWN[k][0]
    name = name if "*" not in name else f"({name})"
    num = ([str(abs(r.numerator))] if abs(r.numerator) != 1 else []) + ([name] if e == 1 else [])
    den = ([str(r.denominator)] if r.denominator != 1 else []) + ([name] if e == -1 else [])
    return num, den


def _coeff_items(c: Any) -> tuple[list[str], list[str]]:
    """Numerator and denominator texts of a positive coefficient (1 gives nothing)."""
    if isinstance(c, Fraction) and c.denominator != 1:
        if c.numerator != 1 and len(repr(float(c))) <= 8:
            return [repr(float(c))], []  # 2.5*x rather than 5*x/2 (but x/2, 2*x/3)
        return ([] if c.numerator == 1 else [str(c.numerator)]), [str(c.denominator)]
    if c == 1:
        return [], []
    exact = exact_constant(c) if isinstance(c, float) else None
    if exact is not None:  # 1/log(10), not 0.43429448190325176
        return _exact_items(*exact)
    text, level = fmt_number(c)
    return [text if level >= POWER else f"({text})"], []


def _exp_text(e: Any) -> str:
    if isinstance(e, Fraction) and e.denominator & (e.denominator - 1) == 0 and e.denominator <= 16:
        e = float(e)  # x**0.5, x**1.25: exact in binary and shorter than (1/2)
    text, level = fmt_number(e)
    return text if level >= UNARY else f"({text})"


def _is_bool_dtype(d: Any) -> bool:
    if isinstance(d, type):
        return d is bool
    try:
        return np.dtype(d).kind == "b"
    except TypeError:
        return False


def prints_bool(e: Expr) -> bool:
    """Whether the printed text of ``e`` evaluates to booleans in numpy.

    Expressions mean arithmetic on numbers (a mask is 0 or 1), but numpy's ``+`` on two
    booleans is ``or``, and ``-`` on a boolean is an error: where the printer puts those
    operators, a boolean operand must be turned into a number first. A product prints as
    booleans when it has no coefficient and only boolean factors to the first power.
    """
    stack = [e]
    while stack:
        n = stack.pop()
        if n.op == "times":
            if n.value != 1 or any(x != 1 for x in n.exps):
                return False
            stack.extend(n.args)
        elif n.op == "plus":
            return False
        elif n.op == "const":
            if not (isinstance(n.value, (bool, np.bool_)) or (isinstance(n.value, np.ndarray)
                                                               and n.value.dtype.kind == "b")):
                return False
        elif not _is_bool_dtype(n.dtype):
            return False
    return True


def _num_pairs(e: Expr) -> list[tuple[Expr, Any]]:
    """The factors of a product in printed order (a shape carrier last), numerator first."""
    pairs = sorted(zip(e.args, e.exps), key=lambda p: p[0].op == "const")
    return [p for p in pairs if p[1] > 0] + [p for p in pairs if p[1] < 0]


def _starts_bool(e: Expr) -> bool:
    """Whether the leftmost operand of ``e``'s text, printed as a factor, is a boolean."""
    while e.op == "times":
        if e.value != 1:
            return False  # a coefficient (or 1/...) comes first
        b, x = _num_pairs(e)[0]
        if x != 1:
            return False  # b**2, 1/b: numbers
        e = b
    return prints_bool(e)


def _prod_parts(e: Expr, flip: bool, unary: bool = False) -> tuple[int, list[Item]]:
    """A product; ``flip`` prints it without its sign, ``unary`` when a ``-`` goes right before it."""
    c = e.value
    neg = _negative(c)
    if flip:
        c, neg = -c, False
    if neg:
        level, items = _prod_parts(e, True, unary=True)
        return (TERM if level == TERM else UNARY), ["-", *items]
    num, den = _coeff_items(c)
    num_items: list[list[Item]] = [[t] for t in num]
    den_items: list[list[Item]] = [[t] for t in den]
    # a shape carrier (ones(shape)) reads best last: x*ones((2, 3))
    pairs = sorted(zip(e.args, e.exps), key=lambda p: p[0].op == "const")
    # c*A @ B is (c*A) @ B, the same as c*(A @ B) when every other factor is a scalar: no parentheses
    last_matmul = len(pairs) == 1 and pairs[0][0].op == "matmul" and pairs[0][1] == 1
    for b, x in pairs:
        if x == 1:
            # a product kept whole (see simplify.FLATTEN) needs no parentheses in a numerator
            inner = TERM if b.op == "times" and not _negative(b.value) else POWER
            if last_matmul and num_items:
                inner = TERM
            num_items.append([(b, inner, False)])
        elif x == -1:
            den_items.append([(b, POWER, False)])
        elif x > 0:
            num_items.append([(b, ATOM, False), "**" + _exp_text(x)])
        else:
            den_items.append([(b, ATOM, False), "**" + _exp_text(-x)])
    if unary and not num and num_items and not isinstance(num_items[0][0], str) and len(
            num_items[0]) == 1 and _starts_bool(num_items[0][0][0]):
        num_items.insert(0, ["1"])  # -1*(y > 0): a unary minus cannot negate a boolean
    items: list[Item] = []
    if not num_items:
        items.append("1")
    for k, part in enumerate(num_items):
        if k:
            items.append("*")
        items.extend(part)
    if den_items:
        items.append("/")
        if len(den_items) > 1:
            items.append("(")
        for k, part in enumerate(den_items):
            if k:
                items.append("*")
            items.extend(part)
        if len(den_items) > 1:
            items.append(")")
    if len(num_items) == 1 and not den_items:
        part = num_items[0]
        if len(part) == 2:
            return POWER, items
        if isinstance(part[0], str):
            return fmt_number(c)[1], items
        # after a binary minus `a - b // c` needs no parentheses; after a unary one it does
        child = part[0][0]
        need = POWER if unary else TERM
        level = parts(child)[0] if child.op not in ("times", "plus") else TERM
        return (ATOM if level < need else level), [(child, need, False)]
    return TERM, items


def _const_parts(e: Expr, flip: bool) -> tuple[int, list[Item]]:
    v = e.value
    if isinstance(v, np.ndarray):
        text, level = fmt_array(-v if flip else v)
        return level, [text]
    if flip:
        v = -v
    if not e.shape:
        text, level = fmt_number(v)
        return level, [text]
    if isinstance(v, (bool, np.bool_)):
        return COMPARE, [f"{'ones' if v else 'zeros'}({fmt_shape(e.shape)}) == 1"]
    if v == 0:
        return ATOM, [f"zeros({fmt_shape(e.shape)})"]
    if v == 1:
        return ATOM, [f"ones({fmt_shape(e.shape)})"]
    mag = -v if _negative(v) else v
    ones = f"ones({fmt_shape(e.shape)})"
    if isinstance(mag, Fraction):
        body = (f"{mag.numerator}*" if mag.numerator != 1 else "") + f"{ones}/{mag.denominator}"
    else:
        text, level = fmt_number(mag)
        body = f"{text if level >= POWER else '(' + text + ')'}*{ones}"
    return (TERM, ["-", body]) if _negative(v) else (TERM, [body])


def _is_negative_term(t: Expr) -> bool:
    if t.op == "times":
        return _negative(t.value)
    if t.op == "const" and not isinstance(t.value, np.ndarray):
        return _negative(t.value)
    return False


def _sum_parts(e: Expr, bound: set[int]) -> tuple[int, list[Item]]:
    terms = list(e.args)
    neg = [_is_negative_term(t) and id(t) not in bound for t in terms]
    if neg[0] and not all(neg):
        k = neg.index(False)
        terms.insert(0, terms.pop(k))
        neg.insert(0, neg.pop(k))
    lead: list[Item] = []
    if not neg[0] and len(terms) > 1 and prints_bool(terms[0]):
        # numpy adds two booleans as `or`: the sum must start with a number
        k = next((k for k, t in enumerate(terms) if not neg[k] and not prints_bool(t)), None)
        if k is not None:
            terms.insert(0, terms.pop(k))
            neg.insert(0, neg.pop(k))
        else:
            lead = ["1*"]
    items: list[Item] = list(lead)
    for k, (t, n) in enumerate(zip(terms, neg)):
        if k == 0:
            items.extend(["-", (t, TERM, 2)] if n else [(t, TERM if lead else SUM, False)])  # 2: after a unary minus
        else:
            items.extend([" - ", (t, TERM, True)] if n else [" + ", (t, TERM, False)])
    return SUM, items


def _args(children: Iterable[Expr], extra: list[str]) -> list[Item]:
    items: list[Item] = []
    for k, c in enumerate(children):
        if k:
            items.append(", ")
        items.append((c, COMPARE, False))
    for text in extra:
        items.append(", " if items else "")
        items.append(text)
    return items


def _axis_params(e: Expr) -> list[str]:
    out = []
    x = e.args[0]
    axis = e.param("axis")
    keep = bool(e.param("keepdims", False))
    axes = tuple(range(x.ndim)) if axis is None else tuple(axis) if isinstance(axis, tuple) else (axis,)
    if e.op == "norm" and e.param("ord") is not None:
        ordv = e.param("ord")
        if isinstance(ordv, str):
            raise DifftapeError("unsupported", f"diff: norm(ord={ordv!r}) has no form in the language")
        out.append(f"ord={fmt_param(ordv)}")
    if axes != tuple(range(x.ndim)) or keep:
        out.append(f"axis={fmt_param(axes[0] if len(axes) == 1 else axes)}")
    if keep:
        out.append("keepdims=True")
    ddof = e.param("ddof", 0)
    if ddof:
        out.append(f"ddof={fmt_param(ddof)}")
    return out


def parts(e: Expr, flip: int = 0, bound: set[int] | None = None) -> tuple[int, list[Item]]:
    """(level, items) of one node: how it prints, its children left as slots."""
    op = e.op
    if op == "name":
        return ATOM, [str(e.value)]
    if op == "const":
        return _const_parts(e, flip)
    if op == "times":
        return _prod_parts(e, bool(flip), unary=flip == 2)
    if op == "plus":
        return _sum_parts(e, bound or set())
    if op == "random":
        raise DifftapeError(
            "unsupported",
            f"diff: the derivative uses the unnamed random draw {e.value}, which a printed program cannot "
            "reproduce; bind it to a name (r = randn(...)) so the derivative can refer to it",
        )
    a = e.args
    if op == "stop_gradient":
        return ATOM, ["const(", (a[0], COMPARE, False), ")"]
    if op in _INFIX_COMPARE:
        return COMPARE, [(a[0], SUM, False), f" {_INFIX_COMPARE[op]} ", (a[1], SUM, False)]
    if op == "matmul":
        left = TERM if a[0].op == "matmul" else POWER
        return TERM, [(a[0], left, False), " @ ", (a[1], POWER, False)]
    if op in ("floor_divide", "remainder", "divide"):
        sym = {"floor_divide": " // ", "remainder": " % ", "divide": "/"}[op]
        return TERM, [(a[0], POWER, False), sym, (a[1], POWER, False)]
    if op == "power":
        return POWER, [(a[0], ATOM, False), "**", (a[1], UNARY, False)]
    if op == "transpose":
        axes = e.param("axes")
        if e.ndim == 2:
            return ATOM, [(a[0], ATOM, False), ".T"]
        return ATOM, [f"{op}(", *_args(a, [fmt_param(tuple(axes))]), ")"]
    if op == "getitem":
        index = e.param("index")
        return ATOM, [(a[0], ATOM, False), "[" + ", ".join(fmt_index_item(it) for it in index) + "]"]
    if op in ("reshape", "broadcast_to"):
        return ATOM, [f"{op}(", *_args(a, [fmt_shape(e.shape) if len(e.shape) != 1 else f"({e.shape[0]},)"]), ")"]
    if op in _REDUCTIONS:
        return ATOM, [f"{op}(", *_args(a, _axis_params(e)), ")"]
    if op in ("concatenate", "stack"):
        items: list[Item] = [f"{op}(["]
        for k, c in enumerate(a):
            if k:
                items.append(", ")
            items.append((c, COMPARE, False))
        items.append("]" + (f", axis={e.param('axis')}" if e.param("axis") else "") + ")")
        return ATOM, items
    if op == "eye":
        n, m, k = e.param("N"), e.param("M"), e.param("k")
        extra = [str(n)] + ([str(m)] if m is not None and m != n else []) + ([f"k={k}"] if k else [])
        return ATOM, [f"eye({', '.join(extra)})"]
    if op == "arange":
        start, stop, step = e.param("start"), e.param("stop"), e.param("step")
        if stop is None:
            start, stop = 0, start
        vals = [start, stop, step] if step != 1 else [start, stop] if start != 0 else [stop]
        return ATOM, [f"arange({', '.join(fmt_param(v) for v in vals)})"]
    if op == "linspace":
        vals = [e.param("start"), e.param("stop"), e.param("num")]
        return ATOM, [f"linspace({', '.join(fmt_param(v) for v in vals)})"]
    if op == "guard":
        return ATOM, ["where(", *_args(a, []), ")"]
    # a plain call: parameters written before the tensors (einsum's subscripts), the tensor inputs, then the
    # parameters that differ from their defaults
    entry = OPS[op]
    defaults = dict(entry.params)
    lead = [fmt_param(e.param(k)) for k in entry.lead]
    extra = [f"{k}={fmt_param(v)}" for k, v in e.params
             if k != "dtype" and k not in entry.lead and not _same(v, defaults.get(k))]
    return ATOM, [f"{op}(" + "".join(f"{s}, " for s in lead), *_args(a, extra), ")"]


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) and type(a) is type(b) or (a is None and b is None)
    except Exception:  # noqa: BLE001 - arrays and the like: not the default
        return False


# ----------------------------------------------------------------------------------------
# whole texts


def _emit(root: Expr, names: dict[int, str], out: list[str], bound: set[int]) -> None:
    """Append the text of ``root`` (bound children by name) to ``out``, without recursion."""
    stack: list[Any] = [(root, COMPARE, False, True)]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        node, need, flip, top = item
        if not top and id(node) in names:
            out.append(names[id(node)])
            continue
        level, items = parts(node, flip, bound)
        pending: list[Any] = []
        for it in items:
            pending.append(it if isinstance(it, str) else (it[0], it[1], it[2], False))
        if level < need:
            pending = ["(", *pending, ")"]
        stack.extend(reversed(pending))


def _width(items: list[Item], length: dict[int, int], names: dict[int, str]) -> int:
    total = 0
    for it in items:
        if isinstance(it, str):
            total += len(it)
        else:
            child = it[0]
            total += len(names[id(child)]) if id(child) in names else length.get(id(child), 1)
    return total


def to_text(root: Expr, reserved: Iterable[str] = (), share: bool = True) -> str:
    """Program text for ``root``: bindings for shared parts (when shorter), then the expression."""
    nodes = postorder(root)
    uses: dict[int, int] = {}
    for n in nodes:
        for c in n.args:
            uses[id(c)] = uses.get(id(c), 0) + 1
    names: dict[int, str] = {}
    order: list[Expr] = []
    length: dict[int, int] = {}
    taken = set(reserved) | BUILTIN_NAMES
    for n in nodes:
        level, items = parts(n, False, set(names))
        width = _width(items, length, names) + (2 if level < TERM else 0)
        length[id(n)] = width
        k = uses.get(id(n), 0)
        if share and n is not root and k >= 2 and n.op not in ("name", "const"):
            saving = (k - 1) * (width - 3) - 8
            if saving >= 12 or width > 400:
                names[id(n)] = ""
                order.append(n)
    # deterministic names: t when there is one binding, else t1, t2, ... (skipping taken names)
    fresh = (name for name in ((["t"] if len(order) == 1 else []) + [f"t{k}" for k in range(1, len(order) + len(
        taken) + 2)]) if name not in taken)
    for n in order:
        names[id(n)] = next(fresh)
    out: list[str] = []
    bound = set(names)
    for n in order:
        out.append(f"{names[id(n)]} = ")
        _emit(n, names, out, bound)
        out.append("; ")
    _emit(root, names, out, bound)
    return "".join(out)
