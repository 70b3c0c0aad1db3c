"""The abstract syntax tree of a difftape program.

Every node carries the :class:`Span` of source text it came from, so that any later
stage (compiler, shape inference, evaluation) can point its errors at the exact spot.
Nodes are treated as immutable (they are plain slotted classes, not frozen ones,
because frozen construction costs five times as much and the parser makes one per
token) and compare by identity: programs may be hundreds of thousands of nodes deep,
so nothing here may recurse over the tree (no ``__eq__``), and :func:`walk` and
:func:`dump` use explicit stacks. The classes are hand-written, not ``@dataclass``:
creating a slotted dataclass costs about half a millisecond, paid at every start of
the command. Only :class:`Span` compares by value (and is unhashable, as a dataclass).
"""

from __future__ import annotations

from collections.abc import Iterator

from difftape.errors import DifftapeError


def _repr(self: object) -> str:
    """``ClassName(field=value, ...)`` over the slots, in order, as a dataclass prints itself."""
    fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
    return f"{type(self).__qualname__}({fields})"


class Span:
    """A stretch of source text: 1-based line/column (end exclusive) and 0-based offsets."""

    __slots__ = ("line", "column", "end_line", "end_column", "start", "end")

    line: int
    column: int
    end_line: int
    end_column: int
    start: int
    end: int

    def __init__(self, line: int, column: int, end_line: int, end_column: int, start: int, end: int) -> None:
        self.line = line
        self.column = column
        self.end_line = end_line
        self.end_column = end_column
        self.start = start
        self.end = end

    __repr__ = _repr

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return (self.line, self.column, self.end_line, self.end_column, self.start, self.end) == (
            other.line, other.column, other.end_line, other.end_column, other.start, other.end
        )

    __hash__ = None  # type: ignore[assignment]  # equal by value but mutable, as a dataclass with eq=True

    def to(self, other: Span) -> Span:
        """The span from the start of ``self`` to the end of ``other``."""
        return Span(self.line, self.column, other.end_line, other.end_column, self.start, other.end)

    def text(self, source: str) -> str:
        """The source text this span covers."""
        return source[self.start : self.end]

    def __str__(self) -> str:
        return f"{self.line}:{self.column}-{self.end_line}:{self.end_column}"


class Number:
    """A numeric literal; ``value`` is a Python int or float (kept weak for numpy)."""

    __slots__ = ("value", "text", "span")

    value: int | float
    text: str
    span: Span

    def __init__(self, value: int | float, text: str, span: Span) -> None:
        self.value = value
        self.text = text
        self.span = span

    __repr__ = _repr


class String:
    """A string literal (``"ij,j->i"``): only ever a static parameter, such as einsum's subscripts."""

    __slots__ = ("value", "span")

    value: str
    span: Span

    def __init__(self, value: str, span: Span) -> None:
        self.value = value
        self.span = span

    __repr__ = _repr


class Name:
    """A use of a name: a binding, an input or a built-in constant such as ``pi``."""

    __slots__ = ("id", "span")

    id: str
    span: Span

    def __init__(self, id: str, span: Span) -> None:
        self.id = id
        self.span = span

    __repr__ = _repr


class Unary:
    """``-x`` or ``+x``; ``op_span`` is the sign."""

    __slots__ = ("op", "operand", "span", "op_span")

    op: str
    operand: Expr
    span: Span
    op_span: Span

    def __init__(self, op: str, operand: Expr, span: Span, op_span: Span) -> None:
        self.op = op
        self.operand = operand
        self.span = span
        self.op_span = op_span

    __repr__ = _repr


class Binary:
    """An infix operation (arithmetic, ``@``, ``**`` or one comparison); ``op_span`` is the operator."""

    __slots__ = ("op", "left", "right", "span", "op_span")

    op: str
    left: Expr
    right: Expr
    span: Span
    op_span: Span

    def __init__(self, op: str, left: Expr, right: Expr, span: Span, op_span: Span) -> None:
        self.op = op
        self.left = left
        self.right = right
        self.span = span
        self.op_span = op_span

    __repr__ = _repr


class Keyword:
    """``name=value`` inside a call."""

    __slots__ = ("name", "value", "span", "name_span")

    name: str
    value: Expr
    span: Span
    name_span: Span

    def __init__(self, name: str, value: Expr, span: Span, name_span: Span) -> None:
        self.name = name
        self.value = value
        self.span = span
        self.name_span = name_span

    __repr__ = _repr


class Call:
    """``func(args..., key=value...)``; ``func`` is always a plain name."""

    __slots__ = ("func", "args", "keywords", "span", "name_span")

    func: str
    args: tuple[Expr, ...]
    keywords: tuple[Keyword, ...]
    span: Span
    name_span: Span

    def __init__(
        self, func: str, args: tuple[Expr, ...], keywords: tuple[Keyword, ...], span: Span, name_span: Span
    ) -> None:
        self.func = func
        self.args = args
        self.keywords = keywords
        self.span = span
        self.name_span = name_span

    __repr__ = _repr


class Slice:
    """``start:stop:step`` inside brackets; absent parts are None."""

    __slots__ = ("start", "stop", "step", "span")

    start: Expr | None
    stop: Expr | None
    step: Expr | None
    span: Span

    def __init__(self, start: Expr | None, stop: Expr | None, step: Expr | None, span: Span) -> None:
        self.start = start
        self.stop = stop
        self.step = step
        self.span = span

    __repr__ = _repr


class Index:
    """``value[items]``; each item is an expression or a :class:`Slice`."""

    __slots__ = ("value", "items", "span", "bracket_span")

    value: Expr
    items: tuple[Expr | Slice, ...]
    span: Span
    bracket_span: Span

    def __init__(self, value: Expr, items: tuple[Expr | Slice, ...], span: Span, bracket_span: Span) -> None:
        self.value = value
        self.items = items
        self.span = span
        self.bracket_span = bracket_span

    __repr__ = _repr


class Attribute:
    """``value.attr``; the parser only lets ``T`` through."""

    __slots__ = ("value", "attr", "span", "attr_span")

    value: Expr
    attr: str
    span: Span
    attr_span: Span

    def __init__(self, value: Expr, attr: str, span: Span, attr_span: Span) -> None:
        self.value = value
        self.attr = attr
        self.span = span
        self.attr_span = attr_span

    __repr__ = _repr


class ListExpr:
    """``[a, b, ...]``: an array literal whose elements may be expressions."""

    __slots__ = ("items", "span")

    items: tuple[Expr, ...]
    span: Span

    def __init__(self, items: tuple[Expr, ...], span: Span) -> None:
        self.items = items
        self.span = span

    __repr__ = _repr


class TupleExpr:
    """``(a, b, ...)``: used for shapes and axes."""

    __slots__ = ("items", "span")

    items: tuple[Expr, ...]
    span: Span

    def __init__(self, items: tuple[Expr, ...], span: Span) -> None:
        self.items = items
        self.span = span

    __repr__ = _repr


class Paren:
    """``(expr)``: kept so that the spans of enclosing nodes include the parentheses."""

    __slots__ = ("inner", "span")

    inner: Expr
    span: Span

    def __init__(self, inner: Expr, span: Span) -> None:
        self.inner = inner
        self.span = span

    __repr__ = _repr


Expr = Number | String | Name | Unary | Binary | Call | Index | Attribute | ListExpr | TupleExpr | Paren


class Assign:
    """A binding ``name = value``."""

    __slots__ = ("name", "value", "span", "name_span")

    name: str
    value: Expr
    span: Span
    name_span: Span

    def __init__(self, name: str, value: Expr, span: Span, name_span: Span) -> None:
        self.name = name
        self.value = value
        self.span = span
        self.name_span = name_span

    __repr__ = _repr


class Define:
    """A function definition ``name(params...) = body``; calls are inlined by the compiler."""

    __slots__ = ("name", "params", "param_spans", "body", "span", "name_span")

    name: str
    params: tuple[str, ...]
    param_spans: tuple[Span, ...]
    body: Expr
    span: Span
    name_span: Span

    def __init__(
        self, name: str, params: tuple[str, ...], param_spans: tuple[Span, ...], body: Expr, span: Span,
        name_span: Span,
    ) -> None:
        self.name = name
        self.params = params
        self.param_spans = param_spans
        self.body = body
        self.span = span
        self.name_span = name_span

    __repr__ = _repr


Statement = Assign | Define | Expr


class Program:
    """A whole program: statements in source order and the text they came from."""

    __slots__ = ("statements", "source")

    statements: tuple[Statement, ...]
    source: str

    def __init__(self, statements: tuple[Statement, ...], source: str) -> None:
        self.statements = statements
        self.source = source

    __repr__ = _repr


Node = Expr | Assign | Define | Keyword | Slice


def children(node: Node) -> tuple[Node, ...]:
    """The direct sub-nodes of ``node``, in source order."""
    if isinstance(node, (Number, Name, String)):
        return ()
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Call):
        return (*node.args, *node.keywords)
    if isinstance(node, Index):
        return (node.value, *node.items)
    if isinstance(node, Slice):
        return tuple(p for p in (node.start, node.stop, node.step) if p is not None)
    if isinstance(node, (ListExpr, TupleExpr)):
        return node.items
    if isinstance(node, (Attribute, Keyword, Assign)):
        return (node.value,)
    if isinstance(node, Define):
        return (node.body,)
    if isinstance(node, Paren):
        return (node.inner,)
    raise TypeError(f"not a syntax node: {type(node).__name__}")


def walk(node: Node) -> Iterator[Node]:
    """Every node under ``node`` (itself first), in source order, without recursion."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(children(n)))


def dump(node: Node | Program) -> str:
    """A compact prefix rendering, e.g. ``(- (** x 2))`` for ``-x**2``; parentheses vanish.

    Meant for tests and debugging: it shows the structure the precedence rules produced.
    """
    if isinstance(node, Program):
        return "; ".join(dump(s) for s in node.statements)
    out: list[str] = []
    # Work items are nodes to render or literal strings to emit.
    stack: list[Node | str | None] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        if item is None:
            out.append("_")
            continue
        while isinstance(item, Paren):
            item = item.inner
        head, parts = _dump_parts(item)
        if not parts:
            out.append(head)
            continue
        out.append("(" + head)
        stack.append(")")
        for part in reversed(parts):
            stack.append(part)
            stack.append(" ")
    return "".join(out)


def _dump_parts(node: Node) -> tuple[str, list[Node | str | None]]:
    if isinstance(node, Number):
        return node.text, []
    if isinstance(node, Name):
        return node.id, []
    if isinstance(node, String):
        return repr(node.value), []
    if isinstance(node, Binary):
        return node.op, [node.left, node.right]
    if isinstance(node, Unary):
        return node.op, [node.operand]
    if isinstance(node, Call):
        return "call " + node.func, [*node.args, *node.keywords]
    if isinstance(node, Keyword):
        return "= " + node.name, [node.value]
    if isinstance(node, Index):
        return "[]", [node.value, *node.items]
    if isinstance(node, Slice):
        return ":", [node.start, node.stop, node.step]
    if isinstance(node, Attribute):
        return "." + node.attr, [node.value]
    if isinstance(node, ListExpr):
        return "list", list(node.items)
    if isinstance(node, TupleExpr):
        return "tuple", list(node.items)
    if isinstance(node, Assign):
        return "= " + node.name, [node.value]
    if isinstance(node, Define):
        return "def " + node.name + "(" + ", ".join(node.params) + ")", [node.body]
    raise TypeError(f"not a syntax node: {type(node).__name__}")


def error_at(kind: str, message: str, span: Span, source: str | None = None) -> DifftapeError:
    """A :class:`DifftapeError` pointing at ``span`` (the caret covers it when it fits on one line)."""
    end = span.end_column if span.end_line == span.line and span.end_column > span.column else None
    return DifftapeError(kind, message, span.line, span.column, source, end)
