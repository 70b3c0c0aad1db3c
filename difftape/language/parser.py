"""Program text to syntax tree, with errors that say what was expected, where.

The grammar (``grammar/difftape.lark``, shipped as ``difftape.lark`` next to this file) holds all
of the precedence rules. Lark computes its LALR(1) tables once, at build time
(``grammar/build_tables.py`` writes ``parse_tables.py``); the small driver here runs them and
calls :class:`_Builder` at each reduction, so the tree is built while parsing, without a
second walk, and without recursion however deep the program nests. The tokens come from
:class:`_Lexer`, built from the grammar's own terminals, which also matches brackets (for
"unclosed '(' opened at 1:4"), lets newlines inside brackets continue a line and bounds the
nesting depth. Every error is a :class:`DifftapeError` that says in words what was expected.

Long programs repeat themselves: a program is parsed statement by statement, and the actions the
tables take for one sequence of token kinds are kept and replayed (then compiled to a function) for
every later statement of the same kinds, so that 100,000 statements cost about 100,000 builder
calls and hardly any table look-ups. Any error sends the whole program through the one-pass parse,
whose messages and positions are the reference (Lark's: ``tests/test_parse_tables.py``).
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from difftape.errors import DifftapeError
from difftape.language import parse_tables as _tables
from difftape.language.syntax import (
    Assign,
    Attribute,
    Binary,
    Call,
    Define,
    Index,
    Keyword,
    ListExpr,
    Name,
    Number,
    Paren,
    Program,
    Slice,
    Span,
    String,
    TupleExpr,
    Unary,
    error_at,
)

#: Deepest allowed nesting of brackets; deeper programs get a ``limit`` error.
MAX_NESTING = 10_000
#: Longest program text (characters) and longest line: a file such as /dev/zero, or a runaway
#: generator, gets a ``limit`` error instead of being read until memory runs out. A program of
#: 100,000 statements is about 2 MB, even on one line.
MAX_PROGRAM_CHARS = 16_000_000
MAX_LINE_CHARS = 4_000_000

GRAMMAR_PATH = Path(__file__).with_name("difftape.lark")

_INT64_MAX = 2**63 - 1
_CLOSER = {"LPAR": ")", "LSQB": "]"}

# Python keywords that someone may try; none of them means anything in difftape.
_PY_KEYWORDS = frozenset(
    "None and as assert async await break class continue def del elif else except finally for from "
    "global if import in is lambda nonlocal not or pass raise return try while with yield".split()
)

class Token:
    """A token: its terminal's name, its text and where it is in the source.

    A plain slotted object (a ``str`` subclass with a ``__dict__`` cost five times as much to
    make, and the lexer makes one per token of the program). A token never spans lines, so its
    end is computed from its start and length.
    """

    __slots__ = ("type", "value", "start_pos", "line", "column")

    type: str
    value: str
    start_pos: int
    line: int
    column: int

    def __init__(self, type_: str, value: str, start_pos: int, line: int, column: int) -> None:
        self.type, self.value, self.start_pos, self.line, self.column = type_, value, start_pos, line, column

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"Token({self.type!r}, {self.value!r}, {self.start_pos}, {self.line}, {self.column})"

    @property
    def end_line(self) -> int:
        return self.line

    @property
    def end_column(self) -> int:
        return self.column + len(self.value)

    @property
    def end_pos(self) -> int:
        return self.start_pos + len(self.value)


_new_token = object.__new__


class _UnexpectedTokenError(Exception):
    """The parser met ``token`` where only the terminals ``expected`` could follow."""

    def __init__(self, token: Token, expected: set[str]) -> None:
        super().__init__(token.type)
        self.token, self.expected = token, expected


def parse(source: str) -> Program:
    """Parse a whole program; raises :class:`DifftapeError` (never anything else) on bad input."""
    if not isinstance(source, str):
        raise DifftapeError("type", f"a program must be text, not {type(source).__name__}")
    source = strip_bom(source)
    check_program_size(source)
    try:
        with no_gc():
            statements = _parse_statements(source)
    except DifftapeError as err:
        raise err.with_source(source) from None
    except _UnexpectedTokenError as err:
        raise _unexpected_token(source, err) from None
    bare = [s for s in statements if not isinstance(s, (Assign, Define))]
    if len(bare) > 1:
        raise error_at(
            "syntax",
            "a program may have only one bare expression (the result); bind the others to names, "
            f"e.g. 'name = {bare[1].span.text(source).strip()}'",
            bare[1].span,
            source,
        )
    return Program(tuple(statements), source)


@contextmanager
def no_gc() -> Iterator[None]:
    """No cyclic garbage collection while parsing and compiling.

    Both make hundreds of thousands of small objects that live on (the tokens, the tree, the nodes)
    and none that form cycles; the collector would rescan the growing heap again and again, which
    made parsing and compiling 100,000 statements about twice as slow. Reference counting frees
    everything as before; the collector is back on (if it was) when this ends.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def strip_bom(source: str) -> str:
    """``source`` without the UTF-8 byte-order mark some editors put at the start of a file."""
    return source[1:] if source.startswith("\ufeff") else source


def check_program_size(source: str) -> None:
    """Raise the ``limit`` error for a program longer than :data:`MAX_PROGRAM_CHARS` or with a line
    longer than :data:`MAX_LINE_CHARS` (before anything else looks at it)."""
    if len(source) > MAX_PROGRAM_CHARS:
        raise DifftapeError(
            "limit", f"the program is {len(source):,} characters long, over the limit of {MAX_PROGRAM_CHARS:,}"
        )
    if len(source) > MAX_LINE_CHARS:
        for number, line in enumerate(source.split("\n"), 1):
            if len(line) > MAX_LINE_CHARS:
                raise DifftapeError(
                    "limit",
                    f"line {number} of the program is {len(line):,} characters long, over the limit of "
                    f"{MAX_LINE_CHARS:,}; break it into lines (newlines may go between statements and "
                    "inside brackets)",
                )


# ----------------------------------------------------------------------------------------
# the LALR(1) driver (the tables are Lark's, computed from the grammar at build time)


class _Group(list):
    """The children of a rule without a callback (``_stmt``, repetitions): spliced into their parent."""


def _reducer(callback: Any, include: Any, nones: int, expand1: bool) -> Any:
    """The function that makes a rule's value from the values of its children (Lark's tree builder)."""
    if include is None and not expand1:
        return callback if callback is not None else _Group

    def reduce(children: list) -> Any:
        if include is not None:  # drop filtered tokens, splice groups, add None for missing [optionals]
            kept: list[Any] = []
            parts = include
            if include and include[0] == (0, True, 0) and type(children[0]) is _Group:
                # A left-recursive repetition (statements, arguments, list items) splices the
                # group built so far first: extend that group in place (only the stack held
                # it) instead of copying it at every item, which made long programs quadratic.
                kept = children[0]
                parts = include[1:]
            for i, splice, before in parts:
                if before:
                    kept += [None] * before
                if splice:
                    kept += children[i]
                else:
                    kept.append(children[i])
            if nones:
                kept += [None] * nones
            children = kept
        if expand1 and len(children) == 1:
            return children[0]
        if callback is None:
            return children if type(children) is _Group else _Group(children)
        return callback(children)

    return reduce


def _reducers() -> list[tuple[str, int, Any]]:
    """Per rule of RULES: its name, its length and its :func:`_reducer` (callbacks from :class:`_Builder`)."""
    return [
        (origin, size, _reducer(getattr(_BUILDER, callback, None), include, nones, expand1))
        for origin, size, callback, include, nones, expand1 in _tables.RULES
    ]


#: Tokens that end a statement (outside brackets: the lexer drops newlines inside them).
_SEPARATORS = frozenset({"_SEMI", "_NL"})
#: Statements of at most this many tokens have their parse kept, for the next statement of the same tokens.
_TEMPLATE_TOKENS = 256
#: A statement's kept parse becomes a compiled function at its this-many-th use (compiling costs about
#: as much as replaying it a dozen times).
_COMPILE_AT = 4


def _parse_statements(source: str) -> list[Any]:
    """The statements of ``source`` as the builder makes them (errors as raised, untranslated).

    The program is parsed statement by statement (:func:`_parse_by_statement`); when that meets
    any error, the whole program is parsed again in one pass, lexing as it goes, so that the
    error is the one the grammar meets first, exactly as Lark would report it.
    """
    try:
        return _parse_by_statement(source)
    except (DifftapeError, _UnexpectedTokenError):
        pass
    return _run_tables(_LEXER.lex(source))


def _parse_by_statement(source: str) -> list[Any]:
    """Parse each statement on its own: what the tables do for a statement depends only on its tokens'
    kinds, so the actions taken for one statement are replayed for every later statement of the
    same kinds (:func:`_replay`, then :func:`_compiled`), without looking at the tables.

    ``start: (_sep | _stmt _sep)* _stmt?`` makes a program the statements between its separators, and
    each is parsed as the whole program ``start: _stmt`` (the grammar is LALR(1), so unambiguous: a
    statement has one tree wherever it stands). A program this way gives the tree of the one-pass
    parse, the reductions in the same order; on an error, the caller parses again in one pass.
    """
    tokens = list(_LEXER.lex(source, stand_ins=True))
    kinds = [t.type for t in tokens]
    ends = [i for i, k in enumerate(kinds) if k in _SEPARATORS]
    ends.append(len(tokens))
    statements: list[Any] = []
    # per statement kinds: [uses, the actions recorded, the compiled function or None]
    templates: dict[tuple[str, ...], list[Any]] = {}
    start = 0
    for end in ends:
        if end > start:
            key = tuple(kinds[start:end])
            template = templates.get(key)
            if template is None:
                if end - start <= _TEMPLATE_TOKENS:
                    actions: list[Any] = []
                    statements += _run_tables(tokens[start:end], actions)
                    templates[key] = [1, actions, None]
                else:
                    statements += _run_tables(tokens[start:end])
            elif template[2] is not None:
                statements += template[2](tokens[start:end])
            else:
                template[0] += 1
                if template[0] >= _COMPILE_AT:
                    template[2] = _compiled(template[1])
                    statements += template[2](tokens[start:end])
                else:
                    statements += _replay(template[1], tokens, start)
        start = end + 1
    return statements


def _replay(actions: list[Any], tokens: list[Token], i: int) -> Any:
    """Run the ``actions`` that :func:`_run_tables` recorded, on the tokens from ``tokens[i]``: None shifts
    the next token, a rule's number makes its value from the values of its children."""
    values: list[Any] = []
    rules = _RULES
    for action in actions:
        if action is None:
            values.append(tokens[i])
            i += 1
            continue
        _origin, size, reduce = rules[action]
        if size:
            children = values[-size:]
            del values[-size:]
        else:
            children = []
        values.append(reduce(children))
    return values[-1]


def _compiled(actions: list[Any]) -> Any:
    """The recorded ``actions`` as straight-line Python: a function of the statement's tokens that
    makes the values :func:`_replay` makes, with the same calls in the same order (each rule's
    children filtered as :func:`_reducer` filters them, written out)."""
    scope: dict[str, Any] = {"_Group": _Group}
    stack: list[str] = []
    body: list[str] = []
    shifted = 0
    for action in actions:
        if action is None:
            stack.append(f"t{shifted}")
            shifted += 1
            continue
        _origin, size, callback, include, nones, expand1 = _tables.RULES[action]
        children = stack[len(stack) - size :] if size else []
        del stack[len(stack) - size :]
        value = f"v{len(body)}"
        make = "_Group"
        function = getattr(_BUILDER, callback, None)  # as _reducers finds it
        if function is not None:
            make = f"c{action}"
            scope[make] = function
        if include is not None and any(splice or before for _i, splice, before in include) or nones or (
            include is not None and expand1
        ):
            reducer = f"r{action}"
            scope[reducer] = _RULES[action][2]
            line = f"{reducer}([{', '.join(children)}])"
        else:
            kept = children if include is None else [children[i] for i, _splice, _before in include]
            if expand1 and len(kept) == 1:
                line = kept[0]
            elif make == "_Group":
                line = f"_Group([{', '.join(kept)}])"
            else:
                line = f"{make}([{', '.join(kept)}])"
        body.append(f"    {value} = {line}")
        stack.append(value)
    unpack = ", ".join(f"t{k}" for k in range(shifted)) + ("," if shifted == 1 else "")
    lines = ["def replay(tokens):", f"    {unpack} = tokens" if shifted else "    pass", *body,
             f"    return {stack[-1]}"]
    exec(compile("\n".join(lines), "<difftape.parse>", "exec"), scope)  # noqa: S102 - generated from the tables
    return scope["replay"]


def _run_tables(tokens: Iterable[Token], actions: list[Any] | None = None) -> Any:
    """Shift and reduce the tokens (Lark's LALR loop); the start rule's value at the end.

    The loop is the parser's hot path (about 20 actions a statement), so it is written for
    speed: a reduction by a unit rule that stands for its one child (``sum: term``, the
    precedence layers every operand climbs) only changes the state on top of the stack.
    With ``actions``, the shifts and the other reductions are recorded there for :func:`_replay`.
    """
    states, rules, units, end_state = _tables.STATES, _RULES, _UNITS, _tables.END
    state_stack = [_tables.START]
    values: list[Any] = []
    last = None
    for token in _with_end(tokens):
        kind = token.type
        while True:
            row = states[state_stack[-1]]
            action = row.get(kind)
            if action is None:
                raise _UnexpectedTokenError(token, {s for s in row if s.isupper()})
            if action >= 0:
                state_stack.append(action)
                values.append(token)
                if actions is not None:
                    actions.append(None)
                break
            r = -1 - action
            origin = units[r]
            if origin is not None:  # a unit rule: the value stays, only the state changes
                state_stack[-1] = states[state_stack[-2]][origin]
                continue
            origin, size, reduce = rules[r]
            if size:
                children = values[-size:]
                del state_stack[-size:]
                del values[-size:]
            else:
                children = []
            value = reduce(children)
            if actions is not None:
                actions.append(r)
            state_stack.append(states[state_stack[-1]][origin])
            values.append(value)
            if kind == "$END" and state_stack[-1] == end_state:
                last = value
                break
    return last


def _with_end(tokens: Iterable[Token]) -> Iterator[Token]:
    """The tokens, then ``$END`` (placed at the last token, as Lark places it)."""
    token = None
    for token in tokens:
        yield token
    if token is None:
        yield Token("$END", "", 0, 1, 1)
    else:
        yield Token("$END", "", token.start_pos, token.line, token.column)


# ----------------------------------------------------------------------------------------
# building the tree during the LALR reductions


def _tspan(tok: Token) -> Span:
    n = len(tok.value)
    line, column, pos = tok.line, tok.column, tok.start_pos
    return Span(line, column, line, column + n, pos, pos + n)


def _span(x: Any) -> Span:
    """Span of a tree node or a token."""
    return _tspan(x) if type(x) is Token else x.span


class _Builder:
    """Lark callbacks, one per aliased grammar rule; each gets the rule's children list.

    The hot ones (``assign``, ``binary``, ``name``, ``number``: every statement makes some) build
    their spans directly, as ``a.to(b)`` would.
    """

    def start(self, c: list) -> list:
        return c

    def assign(self, c: list) -> Assign:
        name, value = c
        text = name.value
        if text in _PY_KEYWORDS:
            raise _keyword_error(name)
        here = _tspan(name)
        end = value.span
        span = Span(here.line, here.column, end.end_line, end.end_column, here.start, end.end)
        return Assign(text, value, span, here)

    def define(self, c: list) -> Define:
        name, _lpar, arguments, _rpar, body = c
        _check_name(name)
        fname = name.value
        params: list[str] = []
        spans: list[Span] = []
        for a in arguments or ():
            if isinstance(a, Keyword):
                raise error_at(
                    "syntax", f"a parameter is a plain name: '{a.name}=...' has no meaning here", a.span
                )
            if not isinstance(a, Name):
                raise error_at(
                    "syntax",
                    f"the parameters of {fname}(...) = ... must be plain names, as in {fname}(t) = t**2 + 1",
                    a.span,
                )
            if a.id in params:
                raise error_at("name", f"{fname}(): parameter '{a.id}' is given twice", a.span)
            params.append(a.id)
            spans.append(a.span)
        return Define(fname, tuple(params), tuple(spans), body, _tspan(name).to(body.span), _tspan(name))

    def compare(self, c: list) -> Binary:
        if len(c) > 3:
            op = c[3]
            raise error_at(
                "syntax",
                f"a chained comparison like 'a < b < c' is not supported (second operator '{op.value}'): "
                "compare two values at a time; to pick values by a condition, use where(...)",
                _tspan(op),
            )
        return self.binary(c)

    def binary(self, c: list) -> Binary:
        left, op, right = c
        text = op.value
        first = left.span
        last = right.span
        line, column, pos, n = op.line, op.column, op.start_pos, len(text)
        return Binary(
            _ASCII_OPS.get(text, text),
            left,
            right,
            Span(first.line, first.column, last.end_line, last.end_column, first.start, last.end),
            Span(line, column, line, column + n, pos, pos + n),
        )

    def unary(self, c: list) -> Unary:
        op, operand = c
        text = op.value
        return Unary(_ASCII_OPS.get(text, text), operand, _tspan(op).to(operand.span), _tspan(op))

    def superscript(self, c: list) -> Binary:
        value, tok = c
        span = _tspan(tok)
        power = _SUPERSCRIPTS[tok.value]
        return Binary("**", value, Number(power, str(power), span), value.span.to(span), span)

    def index(self, c: list) -> Index:
        value, lsqb, items, rsqb = c
        return Index(value, items, value.span.to(_tspan(rsqb)), _tspan(lsqb).to(_tspan(rsqb)))

    def subscripts(self, c: list) -> tuple:
        return tuple(x for x in c if x is not None)

    def slice(self, c: list) -> Slice:
        start, _colon, stop, _colon2, step = c
        present = [x for x in c if x is not None]
        return Slice(start, stop, step, _span(present[0]).to(_span(present[-1])))

    def attribute(self, c: list) -> Attribute:
        value, name = c
        attr = name.value
        if isinstance(value, Name) and value.id in _MODULES:
            what = f"{attr}(...)" if attr not in ("pi", "e", "inf", "nan") else attr
            raise error_at(
                "syntax",
                f"drop the '{value.id}.': write {what}; difftape's functions and constants go by their numpy "
                "names without a module",
                value.span.to(_tspan(name)),
            )
        if attr != "T":
            raise error_at(
                "syntax",
                f"unknown attribute '.{attr}': the only attribute is '.T' (transpose)",
                _tspan(name),
            )
        return Attribute(value, "T", value.span.to(_tspan(name)), _tspan(name))

    def number(self, c: list) -> Number:
        (tok,) = c
        text = tok.value
        if text.isdigit():
            # Compare lengths first: int() refuses more than 4300 digits.
            if len(text) > 18 and (len(text.lstrip("0")) > 19 or int(text) > _INT64_MAX):
                raise error_at(
                    "value",
                    f"the integer {text[:25]}{'...' if len(text) > 25 else ''} does not fit in 64 bits; "
                    "write it as a float (e.g. 1e30)",
                    _tspan(tok),
                )
            value: int | float = int(text)
        else:
            value = float(text)
        line, column, pos, n = tok.line, tok.column, tok.start_pos, len(text)
        return Number(value, text, Span(line, column, line, column + n, pos, pos + n))

    def string(self, c: list) -> String:
        (tok,) = c
        return String(tok.value[1:-1], _tspan(tok))

    def name(self, c: list) -> Name:
        (tok,) = c
        text = tok.value
        if text in _PY_KEYWORDS:
            raise _keyword_error(tok)
        line, column, pos, n = tok.line, tok.column, tok.start_pos, len(text)
        return Name("pi" if text == "π" else text, Span(line, column, line, column + n, pos, pos + n))

    def call(self, c: list) -> Call | Binary:
        name, _lpar, arguments, rpar = c
        _check_name(name)
        if name.value == "ln":  # the name people know log by
            name = _retyped(name, "log")
        fname = name.value
        args, keywords = [], []
        for a in arguments or ():
            if isinstance(a, Keyword):
                if any(k.name == a.name for k in keywords):
                    raise error_at("arity", f"keyword argument '{a.name}' is given twice", a.name_span)
                keywords.append(a)
            elif keywords:
                raise error_at("syntax", "a positional argument cannot follow a keyword argument", a.span)
            else:
                args.append(a)
        span = _tspan(name).to(_tspan(rpar))
        if fname == "log" and len(args) == 2 and not keywords:  # log(x, b): the logarithm in base b
            log_x = Call("log", (args[0],), (), span, _tspan(name))
            log_b = Call("log", (args[1],), (), span, _tspan(name))
            return Binary("/", log_x, log_b, span, _tspan(name))
        return Call(fname, tuple(args), tuple(keywords), span, _tspan(name))

    def arguments(self, c: list) -> list:
        return [x for x in c if x is not None]

    def keyword(self, c: list) -> Keyword:
        name, value = c
        return Keyword(name.value, value, _tspan(name).to(value.span), _tspan(name))

    def paren(self, c: list) -> Paren:
        lpar, inner, rpar = c
        return Paren(inner, _tspan(lpar).to(_tspan(rpar)))

    def tuple(self, c: list) -> TupleExpr:
        items = tuple(x for x in c[1:-1] if x is not None)
        return TupleExpr(items, _tspan(c[0]).to(_tspan(c[-1])))

    def list(self, c: list) -> ListExpr:
        items = tuple(x for x in c[1:-1] if x is not None)
        return ListExpr(items, _tspan(c[0]).to(_tspan(c[-1])))


#: Operators as people type them, to the ASCII the rest of difftape uses (U+2212 minus sign).
_ASCII_OPS = {"−": "-"}
_SUPERSCRIPTS = {"²": 2, "³": 3}
#: Module prefixes people write out of habit (np.sin): the hint is to drop them.
_MODULES = frozenset({"np", "numpy", "math", "jnp", "torch", "tf"})


def _retyped(tok: Token, text: str) -> Token:
    """``tok`` with another text, at the same place (an alias's span stays the alias's)."""
    return Token(tok.type, text, tok.start_pos, tok.line, tok.column)


def _check_name(tok: Token) -> None:
    if tok.value in _PY_KEYWORDS:
        raise _keyword_error(tok)


def _keyword_error(tok: Token) -> DifftapeError:
    word = tok.value
    if word in ("if", "else", "elif"):
        hint = "for a choice, use where(condition, a, b)"
    elif word in ("and", "or", "not"):
        hint = "combine conditions with where(...) or arithmetic on comparisons"
    elif word == "None":
        hint = "there is no None value"
    else:
        hint = "a program is only bindings 'name = expression' and one expression"
    return error_at("syntax", f"'{word}' is Python, not difftape: {hint}", _tspan(tok))


# ----------------------------------------------------------------------------------------
# the lexer


class _Lexer:
    """Tokenizer for Lark built from the grammar's own terminals; it also matches brackets.

    One combined regular expression scanned with ``finditer`` is several times faster
    than Lark's general lexer, and doing the bracket work here costs no extra pass:
    newlines inside brackets continue the line, a bracket that closes nothing or the
    wrong thing is reported at once, and an unclosed one at the end, naming where it
    was opened. Nesting deeper than :data:`MAX_NESTING` is a ``limit`` error. All state
    is local to one ``lex`` call, so one parser serves every thread.
    """

    def __init__(self) -> None:
        # TERMINALS are in Lark's own order: priority, then longest possible match, then name.
        # Spaces and comments are matched as the prefix of the token after them (one match a
        # token, not two); a match without a token is trailing space, or a bad character.
        # The operators at the end of the order (OPERATORS: fixed texts) are one group, ``op``,
        # their texts in the same order, runs of single characters as one class: the regular
        # expression engine then tries a class, not twenty alternatives, and the text names the
        # terminal (no terminal is named in lower case).
        ignored = "|".join(regex for name, regex in _tables.TERMINALS if name in _tables.IGNORE)
        by_text = {name for _text, name in _tables.OPERATORS}
        named = "|".join(
            f"(?P<{name}>{regex})"
            for name, regex in _tables.TERMINALS
            if name not in _tables.IGNORE and name not in by_text
        )
        self._operators: dict[str, str] = {}
        for text, name in _tables.OPERATORS:
            self._operators.setdefault(text, name)
        alternatives: list[str] = []
        singles = ""
        for text, _name in _tables.OPERATORS:
            if len(text) == 1:
                singles += re.escape(text)  # it escapes - ] ^ and the backslash too: safe inside a class
                continue
            if singles:
                alternatives.append(f"[{singles}]")
                singles = ""
            alternatives.append(re.escape(text))
        if singles:
            alternatives.append(f"[{singles}]")
        operators = f"|(?P<op>{'|'.join(alternatives)})" if alternatives else ""
        self._finditer = re.compile(f"(?:{ignored})*(?:{named}{operators})?").finditer

    def lex(self, text: str, stand_ins: bool = False) -> Iterator[Token]:
        """Yield the tokens of ``text``; raises DifftapeError on a bad character or bracket.

        With ``stand_ins``, a token the tree never holds (a terminal named ``_...``: ``=``, ``;``, ``,``)
        is one shared token of its kind, at no position: for a parse that starts again, with the
        real tokens, on any error.
        """
        new, cls, operators, brackets = _new_token, Token, self._operators, _BRACKET_KINDS
        shared = _STAND_INS if stand_ins else {}
        size = len(text)
        line, line_start, pos = 1, 0, 0
        opened: list[Token] = []
        for m in self._finditer(text):
            kind = m.lastgroup
            if kind is None:  # nothing but spaces and comments: the end, or a character no token has
                pos = m.end()
                if pos == size:
                    break
                raise _bad_character(text, pos, line, pos - line_start + 1)
            value = m.group(kind)
            start = m.start(kind)
            if kind == "op":
                kind = operators[value]
                if kind in shared:
                    pos = start + len(value)
                    yield shared[kind]
                    continue
            tok = new(cls)
            tok.type, tok.value, tok.start_pos, tok.line, tok.column = kind, value, start, line, start - line_start + 1
            pos = start + len(value)
            bracket = brackets.get(kind)
            if bracket is not None:
                if bracket == 0:  # a new line
                    line += 1
                    line_start = pos
                    if opened:
                        continue
                elif bracket == 1:  # ( [
                    opened.append(tok)
                    if len(opened) > MAX_NESTING:
                        raise error_at(
                            "limit", f"brackets nest deeper than the limit of {MAX_NESTING} levels", _tspan(tok)
                        )
                else:  # ) ]
                    if not opened:
                        raise error_at("syntax", f"unexpected '{value}': no bracket is open here", _tspan(tok))
                    opener = opened.pop()
                    if _CLOSER[opener.type] != value:
                        raise error_at(
                            "syntax",
                            f"expected '{_CLOSER[opener.type]}' to close '{opener.value}' opened at "
                            f"{opener.line}:{opener.column}, found '{value}'",
                            _tspan(tok),
                        )
            yield tok
        if pos != len(text):
            raise _bad_character(text, pos, line, pos - line_start + 1)
        if opened:
            opener = opened[-1]
            end_line, end_col = _end_of_code(text)
            raise DifftapeError(
                "syntax",
                f"unclosed '{opener.value}' opened at {opener.line}:{opener.column}: "
                f"expected '{_CLOSER[opener.type]}' before the end of the program",
                end_line,
                end_col,
            )


#: The lexer's bracket work by terminal: 0 a new line, 1 an opening bracket, 2 a closing one.
_BRACKET_KINDS = {"_NL": 0, "LPAR": 1, "LSQB": 1, "RPAR": 2, "RSQB": 2}
#: Operators that Lark filters out of the tree (named ``_...``), as the one token of each kind
#: that ``_Lexer.lex(stand_ins=True)`` yields.
_STAND_INS = {
    name: Token(name, text, 0, 1, 1)
    for text, name in _tables.OPERATORS
    if name.startswith("_") and name not in _BRACKET_KINDS
}


def _end_of_code(text: str) -> tuple[int, int]:
    """Line and column just after the last character that is not space or comment."""
    lines = text.split("\n")
    for i in range(len(lines) - 1, -1, -1):
        code = lines[i].split("#", 1)[0].rstrip()
        if code:
            return i + 1, len(code) + 1
    return 1, 1


# ----------------------------------------------------------------------------------------
# translating Lark's errors


_EXPR_START = {"NAME", "NUMBER", "LPAR", "LSQB", "PLUS", "MINUS"}
_OPERATORS = {"POW", "STAR", "SLASH", "DSLASH", "PERCENT", "AT", "LT", "LE", "GT", "GE", "EQEQ", "NE"}
_WORDS = {
    "_NL": "the end of the line",
    "$END": "the end of the program",
    "_SEMI": "';'",
    "_COMMA": "','",
    "_EQ": "'='",
    "_DOT": "'.'",
}


def _describe(tok: Token) -> str:
    if tok.type in _WORDS:
        return _WORDS[tok.type]
    if tok.type == "NAME":
        return f"name '{tok.value}'"
    if tok.type == "NUMBER":
        return f"number '{tok.value}'"
    return f"'{tok.value}'"


def _expected_words(expected: set[str], closer: str | None) -> str:
    words = []
    if "NUMBER" in expected:
        words.append("an expression")
    if expected & _OPERATORS:
        words.append("an operator")
    for kind, word in (("_COMMA", "','"), ("COLON", "':'"), ("_EQ", "'='"), ("NAME", "a name")):
        if kind in expected and not (kind == "NAME" and "NUMBER" in expected):
            words.append(word)
    if "RPAR" in expected or "RSQB" in expected:
        words.append(f"'{closer}'" if closer else "a closing bracket")
    if expected & {"_SEMI", "_NL", "$END"}:
        words.append("';' or a new line")
    if not words:
        return "something else"
    return ", ".join(words[:-1]) + (" or " if len(words) > 1 else "") + words[-1]


def _context(source: str, upto: int, is_end: bool) -> tuple[Token | None, list[Token]]:
    """The token before offset ``upto`` and the brackets open there (error path only)."""
    prev = None
    opened: list[Token] = []
    try:
        for tok in _LEXER.lex(source):
            if not is_end and tok.start_pos >= upto:
                break
            if tok.type in _CLOSER:
                opened.append(tok)
            elif tok.type in ("RPAR", "RSQB") and opened:
                opened.pop()
            prev = tok
    except Exception:  # noqa: BLE001 - only context for a message; the real error is being raised
        pass
    return prev, opened


def _module_before(source: str, name: Token) -> Token | None:
    """The ``np`` of ``np.name`` (a module prefix from :data:`_MODULES`) just before ``name``, if any."""
    last: list[Token] = []
    try:
        for tok in _LEXER.lex(source):
            if tok.start_pos >= name.start_pos:
                break
            last = [*last[-1:], tok]
    except Exception:  # noqa: BLE001 - only a hint; the real error is being raised
        return None
    if len(last) == 2 and last[1].type == "_DOT" and last[0].type == "NAME" and last[0].value in _MODULES:
        return last[0]
    return None


def _unexpected_token(source: str, err: _UnexpectedTokenError) -> DifftapeError:
    tok = err.token
    is_end = tok.type == "$END"
    prev, opened = _context(source, tok.start_pos, is_end)
    expected = set(err.expected)
    here = _tspan(tok)
    if is_end or tok.type == "_NL":
        if prev is not None:
            line, col = prev.end_line, prev.end_column
        else:
            line, col = 1, 1
        here = Span(line, col, line, col + 1, prev.end_pos if prev else 0, prev.end_pos if prev else 0)

    def fail(message: str, span: Span = here) -> DifftapeError:
        return error_at("syntax", message, span, source)

    if tok.type == "LPAR" and prev is not None and prev.type == "NAME":
        module = _module_before(source, prev)
        if module is not None:
            return error_at(
                "syntax",
                f"drop the '{module}.': write {prev.value}(...); difftape's functions go by their numpy names "
                "without a module",
                _tspan(module).to(_tspan(prev)),
                source,
            )
    if prev is not None and prev.type == "NAME" and prev.value in _PY_KEYWORDS:
        return _keyword_error(prev).with_source(source)
    if tok.type == "NAME" and tok.value in _PY_KEYWORDS:
        return _keyword_error(tok).with_source(source)
    closer = _CLOSER[opened[-1].type] if opened else None
    found = "" if is_end or tok.type == "_NL" else f", found {_describe(tok)}"

    if tok.type == "_EQ":
        if prev is not None and prev.type == "NAME":
            if opened:
                return fail(
                    "'=' can only bind a name at the start of a statement or name a keyword "
                    "argument in a call (to compare, use '==')"
                )
            return fail("a statement binds one name: 'a = b = ...' is not supported")
        return fail("'=' needs a name on its left (to compare, use '==')")
    if "NUMBER" in expected and not expected & _OPERATORS:
        if prev is None or prev.type in ("_NL", "_SEMI"):
            return fail(f"expected an expression{found}")
        return fail(f"expected an expression after '{prev.value}'{found}")
    if tok.type == "COLON" and closer != "]":
        return fail("unexpected ':': slices like 'a:b' are only allowed inside [ ]")
    if tok.type in _EXPR_START and expected & _OPERATORS:
        if opened:
            op = opened[-1]
            return fail(
                f"unexpected {_describe(tok)}: expected an operator, ',' or '{closer}' "
                f"to close '{op.value}' opened at {op.line}:{op.column}"
            )
        if (
            prev is not None
            and prev.type == "NUMBER"
            and tok.type == "NAME"
            and prev.end_pos == tok.start_pos
            and prev.value[-1].isdigit()
        ):
            return fail(
                f"unexpected name '{tok.value}' right after the number '{prev.value}'; "
                f"write '{prev.value}*{tok.value}' to multiply"
            )
        return fail(
            f"unexpected {_describe(tok)} after an expression: separate statements with ';' or a new line"
        )
    return fail(f"unexpected {_describe(tok)}: expected {_expected_words(expected, closer)}")


_CHAR_HINTS = {
    '"': "a string ends on the same line with the same quote, and has no escapes",
    "'": "a string ends on the same line with the same quote, and has no escapes",
    "!": "did you mean '!='?",
    "^": "for powers use '**'",
    "&": "there are no bitwise or logical operators; use where(...)",
    "|": "for an absolute value write abs(x); there are no bitwise or logical operators (use where(...))",
    "~": "there are no bitwise or logical operators; use where(...)",
    "{": "braces are not part of difftape; use [ ] for arrays",
    "}": "braces are not part of difftape; use [ ] for arrays",
    "\\": "a line continues inside brackets without a backslash",
}


def _bad_character(source: str, pos: int, line: int, column: int) -> DifftapeError:
    ch = source[pos]
    hint = _CHAR_HINTS.get(ch)
    if hint is None and ch.isdigit():  # \d would take it; numbers are written in ASCII only
        hint = "numbers are written with the ASCII digits 0-9"
    message = f"unexpected character {ch!r}" + (f": {hint}" if hint else "")
    return DifftapeError("syntax", message, line, column, source, column + 1)


_LEXER = _Lexer()
_BUILDER = _Builder()
_RULES = _reducers()
#: Per rule: its name when it is a unit rule whose one child stands for it, else None.
_UNITS = [origin if size == 1 and include is None and expand1 else None
          for origin, size, _callback, include, _nones, expand1 in _tables.RULES]
