"""Results: run a compiled program on the tape and answer eval, grad, jacobian, hessian, check.

This is the layer between the graph and the renderers. It decides which leaves are
differentiated (variables by default, consts only when watched), promotes them to
the working float dtype, runs the graph under tapes, and returns plain numpy results
in a deterministic order (the order names first appear in the source).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from difftape.engine.tape import Tape
from difftape.engine.tensor import Tensor, as_array
from difftape.errors import DifftapeError, did_you_mean
from difftape.language.parser import no_gc
from difftape.transforms import reverse

FLOATS = {"float64": np.float64, "float32": np.float32}

#: A progress callback: ``on_step(done, total)`` after each step of a long computation (the passes of
#: a Jacobian, the elements a checker perturbs). The command line draws a bar with it; this layer
#: knows nothing of terminals.
OnStep = Callable[[int, int], Any]


def shifted(on_step: OnStep | None, before: int, total: int) -> OnStep | None:
    """``on_step`` for a part of a run: its steps counted after ``before`` earlier ones, of ``total`` in all."""
    if on_step is None:
        return None
    return lambda done, _total: on_step(before + done, total)


def _singular_is_a_value_error(method: Callable[..., Any]) -> Callable[..., Any]:
    """A derivative that needs the inverse of a singular matrix is the user's value, not a bug."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except np.linalg.LinAlgError as err:
            raise DifftapeError(
                "value", f"the derivative is not defined here: it needs the inverse of a singular matrix ({err})"
            ) from None

    return wrapper


def _check_block_size(kind: str, of: str, name: str, shape: tuple[int, ...]) -> None:
    """Refuse a derivative block over the element limit before it is allocated."""
    from difftape.language.compiler import MAX_ELEMENTS

    size = int(np.prod(shape, dtype=np.float64))
    if size > MAX_ELEMENTS:
        raise DifftapeError(
            "limit",
            f"the {kind} block of {of} with respect to {name} would have shape {tuple(shape)} with {size:,} "
            f"elements, over the limit of {MAX_ELEMENTS:,} (MAX_ELEMENTS)",
        )


def _float_dtype(dtype: str) -> np.dtype:
    if dtype not in FLOATS:
        raise DifftapeError("value", f"unknown dtype {dtype!r}: choose float64 or float32")
    return np.dtype(FLOATS[dtype])


def parse_value(text: str, *, seed: int = 0, dtype: str = "float64") -> np.ndarray:
    """The value of a constant expression of the language (``2``, ``[1,2]``, ``randn(3)``, ``pi/4``)."""
    from difftape.language.compiler import compile_program

    graph = compile_program(text, dtype=dtype)
    if graph.inputs:
        names = ", ".join(graph.inputs)
        raise DifftapeError("value", f"a value must be a constant expression, but it uses {names}")
    value = np.asarray(graph.run(seed=seed)._value)
    if value.dtype.kind == "f" and value.dtype != _float_dtype(dtype):
        value = value.astype(_float_dtype(dtype))  # `--at 2.5 --dtype float32` is a float32 value
    return value


class _Record:
    """The repr and value equality that ``@dataclass`` would generate, over ``_field_names``.

    The result classes are written by hand: creating dataclasses costs about a millisecond
    at every start of the command. As dataclasses, records are equal when they are of the
    same class and their fields (in order, as a tuple) are equal, and so are unhashable.
    """

    _field_names: tuple[str, ...] = ()

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._field_names)
        return f"{type(self).__qualname__}({fields})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        names = self._field_names
        return tuple(getattr(self, n) for n in names) == tuple(getattr(other, n) for n in names)

    __hash__ = None  # type: ignore[assignment]


class GradResult(_Record):
    of: str
    value: np.ndarray
    grad: dict[str, np.ndarray | None]
    summed: bool  # the target was not a scalar: this is the gradient of its sum

    _field_names = ("of", "value", "grad", "summed")

    def __init__(self, of: str, value: np.ndarray, grad: dict[str, np.ndarray | None], summed: bool) -> None:
        self.of = of
        self.value = value
        self.grad = grad
        self.summed = summed


class JacobianResult(_Record):
    of: str
    value: np.ndarray
    jacobian: dict[str, np.ndarray | None]

    _field_names = ("of", "value", "jacobian")

    def __init__(self, of: str, value: np.ndarray, jacobian: dict[str, np.ndarray | None]) -> None:
        self.of = of
        self.value = value
        self.jacobian = jacobian


class HessianResult(_Record):
    of: str
    value: np.ndarray
    hessian: dict[str, dict[str, np.ndarray | None]]

    _field_names = ("of", "value", "hessian")

    def __init__(self, of: str, value: np.ndarray, hessian: dict[str, dict[str, np.ndarray | None]]) -> None:
        self.of = of
        self.value = value
        self.hessian = hessian


class CheckRow(_Record):
    tape: np.ndarray | None
    numeric: np.ndarray | None
    numeric_error: float
    analytic: np.ndarray | None
    max_abs_err: float
    max_rel_err: float
    ok: bool
    analytic_expr: str | None  # the analytic gradient's text (from --expect, or derived)
    analytic_source: str  # "expect", "diff", or "none" (with the reason in analytic_expr)
    mode: str  # "full", "directional (K directions)", "full Hessian", "Hessian-vector products (K directions)"
    forward: np.ndarray | None  # directional modes: the same derivatives by forward mode

    _field_names = (
        "tape", "numeric", "numeric_error", "analytic", "max_abs_err", "max_rel_err", "ok",
        "analytic_expr", "analytic_source",
    )

    def __init__(
        self,
        tape: np.ndarray | None,
        numeric: np.ndarray | None,
        numeric_error: float,
        analytic: np.ndarray | None,
        max_abs_err: float,
        max_rel_err: float,
        ok: bool,
        analytic_expr: str | None = None,
        analytic_source: str = "none",
        mode: str = "full",
        forward: np.ndarray | None = None,
    ) -> None:
        self.tape = tape
        self.numeric = numeric
        self.numeric_error = numeric_error
        self.analytic = analytic
        self.max_abs_err = max_abs_err
        self.max_rel_err = max_rel_err
        self.ok = ok
        self.analytic_expr = analytic_expr
        self.analytic_source = analytic_source
        self.mode = mode
        self.forward = forward


class CheckResult(_Record):
    of: str
    ok: bool
    method: str
    rtol: float
    atol: float
    inputs: dict[str, CheckRow]  # a new empty dict for each result unless given
    mode: str  # "full" or "directional"
    order: int

    _field_names = ("of", "ok", "method", "rtol", "atol", "inputs")

    def __init__(
        self, of: str, ok: bool, method: str, rtol: float, atol: float, inputs: dict[str, CheckRow] | None = None,
        mode: str = "full", order: int = 1,
    ) -> None:
        self.mode = mode
        self.order = order
        self.of = of
        self.ok = ok
        self.method = method
        self.rtol = rtol
        self.atol = atol
        self.inputs = {} if inputs is None else inputs


class Program:
    """A compiled program plus its input values, seed and dtype, ready to answer questions."""

    def __init__(
        self,
        source: str,
        *,
        of: str | None = None,
        at: Mapping[str, Any] | None = None,
        seed: int = 0,
        dtype: str = "float64",
    ) -> None:
        from difftape.language.compiler import compile_program

        self.source = source
        self.seed = int(seed)
        self.dtype = dtype
        self.float_dtype = _float_dtype(dtype)
        self.at = {k: as_array(v) for k, v in (at or {}).items()}
        if "" in self.at:  # `--at VALUE`: the value of the one input the program leaves free
            free = [n for n in compile_program(source, of=of, dtype=dtype).inputs if n not in self.at]
            if len(free) != 1:
                listed = ", ".join(free) if free else "none"
                raise DifftapeError(
                    "usage",
                    f"a value without a name needs exactly one free input; this program has {len(free)} "
                    f"({listed}): use --at NAME=VALUE",
                )
            self.at[free[0]] = self.at.pop("")
        self.graph = compile_program(source, of=of, values=self.at, dtype=dtype)
        known = self.graph.named_nodes()
        for name in self.at:  # a typo (`--at xx=2` for x) must not pass silently
            if name not in known:
                raise DifftapeError(
                    "name",
                    f"--at {name}: the program has no input or binding named {name!r}{did_you_mean(name, known)}",
                )
        self.of: str = self.graph.target_name
        self._of_arg = of

    # -- names -------------------------------------------------------------------------------
    @property
    def inputs(self) -> list[str]:
        return list(self.graph.inputs)

    @property
    def variables(self) -> list[str]:
        return list(self.graph.variables)

    @property
    def consts(self) -> list[str]:
        return list(self.graph.consts)

    @property
    def target_shape(self) -> tuple[int, ...]:
        self.graph.check_values()
        return tuple(self.graph.nodes[self.graph.target].shape or ())

    def intermediates(self) -> dict[str, int]:
        """Bindings computed from other names (not leaves), by name: their node ids."""
        nodes = self.graph.nodes
        return {n: k for n, k in self.graph.bindings.items() if not nodes[k].leaf}

    def sources(
        self, wrt: Iterable[str] | None, watch: Iterable[str], intermediates: bool = False
    ) -> tuple[list[str], set[str]]:
        """(names to report, names to watch): variables by default, consts only when watched.

        With ``intermediates``, ``wrt`` may also name a binding computed from others: its derivative is
        d target / d binding, through the paths that go through it (TensorFlow's gradient w.r.t. any
        watched tensor); the other names' gradients stay total."""
        variables, consts = self.variables, set(self.consts)  # sets: a program may have 100,000 names
        variable_set = set(variables)
        known = variables + [c for c in self.consts if c not in variable_set]
        watch = list(dict.fromkeys(watch))
        for name in watch:
            if name not in consts:
                hint = " (it is a variable: variables are watched already)" if name in variable_set else ""
                raise DifftapeError(
                    "name", f"--watch {name}: not a const of the program{hint or did_you_mean(name, known)}"
                )
        if wrt is None:
            watch_set = set(watch)
            names = variables + [c for c in self.consts if c in watch_set]
        else:
            names = list(dict.fromkeys(wrt))
            known_set = set(known)
            between = self.intermediates() if any(n not in known_set for n in names) else {}
            for name in names:
                if name in between:
                    if not intermediates:
                        raise DifftapeError(
                            "usage",
                            f"--wrt {name}: {name} is computed from other names (an intermediate); only grad, "
                            "jacobian and hessian (without --batch) differentiate with respect to one",
                        )
                    continue
                if name not in known_set:
                    choices = known + list(self.intermediates()) if intermediates else known
                    raise DifftapeError(
                        "name",
                        f"--wrt {name}: not an input, variable or const of the program"
                        + (" (nor one of its bindings)" if intermediates else "")
                        + did_you_mean(name, choices)
                        + (f"; choose from {', '.join(choices)}" if choices else ""),
                    )
        watched = {n for n in names if n in variable_set} | set(watch)
        if wrt is not None and intermediates:
            between = self.intermediates()
            watched |= {n for n in names if n in between}
        return names, watched

    # -- running -----------------------------------------------------------------------------
    def _run(
        self,
        tapes: list[Tape],
        watched: set[str],
        overrides: Mapping[str, Any] | None = None,
        graph: Any = None,
        outputs: Iterable[str] = (),
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Run the graph (or ``graph``); watched leaves become float tensors watched by ``tapes``.

        With ``outputs``, the values of those names are added to the leaves answered.
        """
        leaves: dict[str, Tensor] = {}
        overrides = overrides or {}
        graph = self.graph if graph is None else graph
        between = {n: k for n, k in self.intermediates().items() if n in watched} if graph is self.graph else {}
        aliases: dict[str, str] = {}
        if between:
            graph, aliases = self._marked(between)

        def leaf(name: str, value: Any) -> Any:
            if name in between:  # watched where it is computed: the tape keeps its history
                if not isinstance(value, Tensor) or np.asarray(value._value).dtype.kind != "f":
                    value = Tensor(self._as_float(value._value if isinstance(value, Tensor) else value))
                for tape in tapes:
                    tape.watch(value)
                leaves[name] = value
                return value
            if name in overrides:
                value = overrides[name]
                if isinstance(value, Tensor):  # used as it is (so that a tracer sees the argument itself)
                    leaves[name] = value
                    return value
            if name not in watched:
                if name in overrides:
                    value = Tensor(np.asarray(value))
                leaves[name] = value if isinstance(value, Tensor) else Tensor(as_array(value))
                return leaves[name]
            arr = np.asarray(value._value if isinstance(value, Tensor) else value)
            if arr.dtype.kind not in "fc":
                arr = arr.astype(self.float_dtype)
            elif arr.dtype.kind == "f" and arr.dtype != self.float_dtype:
                arr = arr.astype(self.float_dtype)
            t = Tensor(np.array(arr, copy=True))
            for tape in tapes:
                tape.watch(t)
            leaves[name] = t
            return t

        graph.check_values()
        outputs = list(outputs)
        if outputs:
            out, named = graph.run(seed=self.seed, leaf=leaf, outputs=outputs)
            leaves.update(named)
        else:
            out = graph.run(seed=self.seed, leaf=leaf)
        for alias, name in aliases.items():
            leaves[alias] = leaves[name]
        if not isinstance(out, Tensor):
            out = Tensor(as_array(out))
        return out, leaves

    def _marked(self, between: Mapping[str, int]) -> tuple[Any, dict[str, str]]:
        """The graph with the nodes of the intermediates ``between`` marked as leaves (so that ``_run``'s
        hook watches them in place), and {alias: name} for names that share a node."""
        from difftape.ir.graph import Graph, Node

        graph = self.graph
        nodes = list(graph.nodes)
        aliases: dict[str, str] = {}
        marked: dict[int, str] = {}
        for name, k in between.items():
            if k in marked:
                aliases[name] = marked[k]
                continue
            marked[k] = name
            n = nodes[k]
            nodes[k] = Node(n.id, n.op, n.inputs, n.params, n.shape, n.dtype, n.span, name, True)
        return Graph(nodes, graph.target, graph.target_name, graph.inputs, graph.variables, graph.consts,
                     graph.bindings, graph.source, graph.values, graph.missing, graph.dtype), aliases

    def _held(self, watched: set[str]) -> Any:
        """The graph with every ``const(...)`` of variables (a ``stop_gradient`` node) held at its
        value at the point: numerical derivatives must not move what the tape holds fixed.

        Each such node becomes an input node with that value (a named one keeps its name and
        stays a leaf, so that ``--watch`` still perturbs it).
        """
        from difftape.ir.graph import Graph, Node

        graph = self.graph
        held = [n for n in graph.nodes if n.op == "stop_gradient"]
        if not held:
            return graph
        keys = {n.id: n.name if n.leaf and n.name else f"%{n.id}" for n in held}
        probe = Graph(graph.nodes, graph.target, graph.target_name, graph.inputs, graph.variables, graph.consts,
                      {**graph.bindings, **{k: i for i, k in keys.items()}}, graph.source, graph.values,
                      graph.missing, graph.dtype)
        _, at = self._run([], watched, graph=probe, outputs=list(keys.values()))
        nodes = list(graph.nodes)
        values = dict(graph.values)
        for n in held:
            key = keys[n.id]
            nodes[n.id] = Node(n.id, "input", (), {}, n.shape, n.dtype, n.span, key, n.leaf)
            values[key] = at[key]
        return Graph(nodes, graph.target, graph.target_name, graph.inputs, graph.variables, graph.consts,
                     graph.bindings, graph.source, values, graph.missing, graph.dtype)

    def _as_float(self, value: Any) -> np.ndarray:
        arr = np.asarray(value)
        return arr.astype(self.float_dtype) if arr.dtype.kind not in "fc" else arr

    def evaluate(self) -> Any:
        """The target's value; ints stay ints."""
        with no_gc():  # one value per node, no cycles: the collector would only rescan them (see parser.no_gc)
            out, _ = self._run([], set())
        return np.asarray(out._value)

    @_singular_is_a_value_error
    def grad(
        self, wrt: Iterable[str] | None = None, watch: Iterable[str] = (), unconnected: str = "none"
    ) -> GradResult:
        """Value and gradient of the target (of its sum, for a non-scalar target)."""
        check_unconnected(unconnected)
        names, watched = self.sources(wrt, watch, intermediates=True)
        with no_gc():  # the run and its tape: one value and one entry per node, no cycles
            with Tape() as tape:
                out, leaves = self._run([tape], watched)
            sources = [leaves[n] for n in names if n in watched and n in leaves]
            grads = tape.gradient(out, sources, unconnected=unconnected) if sources else []
        by_name = dict(zip([n for n in names if n in watched and n in leaves], grads))
        result = {}
        for n in names:
            g = by_name.get(n)
            if g is None and unconnected == "zero" and n in leaves:
                g = Tensor(np.zeros(leaves[n].shape, dtype=self.float_dtype))
            result[n] = None if g is None else _plain(g)
        return GradResult(self.of, self._as_float(out._value), result, summed=out.ndim > 0)

    @_singular_is_a_value_error
    def jacobian(
        self, wrt: Iterable[str] | None = None, watch: Iterable[str] = (), unconnected: str = "none",
        on_step: OnStep | None = None,
    ) -> JacobianResult:
        """Value and full Jacobian blocks of shape ``value.shape + input.shape``.

        ``on_step(done, total)`` is called after each pass (one per input or output element)."""
        check_unconnected(unconnected)
        names, watched = self.sources(wrt, watch, intermediates=True)
        with Tape(persistent=True) as tape:
            out, leaves = self._run([tape], watched)
        live = [n for n in names if n in watched and n in leaves]
        forward_ok = not any(n in self.intermediates() for n in live)
        for n in names:
            if n in leaves:
                _check_block_size("jacobian", self.of, n, tuple(out.shape) + tuple(leaves[n].shape))
        n_in = sum(int(np.prod(leaves[n].shape, dtype=np.int64)) for n in live)
        if live and forward_ok and n_in < int(np.prod(out.shape, dtype=np.int64)):
            # fewer inputs than outputs: one forward pass per input element, not one reverse pass per output
            from difftape.answers.forward import jacobian_columns

            _, columns = jacobian_columns(self, live, watched, on_step=on_step)
            connected = {n for n in live if n in {m for m, g in zip(
                live, tape.gradient(out, [leaves[m] for m in live], unconnected="none")) if g is not None}}
            jac = [Tensor(columns[n]) if n in connected or unconnected == "zero" else None for n in live]
        else:
            jac = tape.jacobian(out, [leaves[n] for n in live], unconnected=unconnected,
                                on_step=on_step) if live else []
        by_name = dict(zip(live, jac))
        result = {}
        for n in names:
            j = by_name.get(n)
            if j is None and unconnected == "zero" and n in leaves:
                j = Tensor(np.zeros(out.shape + leaves[n].shape, dtype=self.float_dtype))
            result[n] = None if j is None else _plain(j)
        return JacobianResult(self.of, self._as_float(out._value), result)

    @_singular_is_a_value_error
    def hessian(
        self, wrt: Iterable[str] | None = None, watch: Iterable[str] = (), unconnected: str = "none",
        on_step: OnStep | None = None,
    ) -> HessianResult:
        """Value and Hessian blocks ``{a: {b: d2/da db}}`` of a scalar target.

        ``on_step(done, total)`` is called after each second-order pass (one per input element)."""
        check_unconnected(unconnected)
        shape = self.target_shape
        if shape != ():
            raise DifftapeError(
                "shape",
                f"hessian needs a scalar target, but {self.of} has shape {shape}; "
                "use `difftape jacobian` for the derivatives of every element",
            )
        names, watched = self.sources(wrt, watch, intermediates=True)
        with Tape(persistent=True) as outer:
            with Tape() as inner:
                out, leaves = self._run([outer, inner], watched)
            for a in names:
                for b in names:
                    if a in leaves and b in leaves:
                        _check_block_size("hessian", self.of, f"{a} and {b}",
                                          tuple(leaves[a].shape) + tuple(leaves[b].shape))
            live = [n for n in names if n in watched and n in leaves]
            grads = inner.gradient(out, [leaves[n] for n in live], unconnected="none") if live else []
        connected = {n for n, g in zip(live, grads) if g is not None}
        if out.ndim != 0:
            raise DifftapeError("shape", f"hessian needs a scalar target, but {self.of} has shape {out.shape}")
        blocks: dict[str, dict[str, np.ndarray | None]] = {}
        passes = sum(int(np.prod(leaves[a].shape, dtype=np.int64)) for a in names if a in connected)
        done = 0
        for a in names:
            row: dict[str, np.ndarray | None] = {}
            ga = grads[live.index(a)] if a in connected else None
            jac = None
            if ga is not None:
                jac = outer.jacobian(ga, [leaves[b] for b in live], unconnected="none",
                                     on_step=shifted(on_step, done, passes))
                done += int(np.prod(leaves[a].shape, dtype=np.int64))
            for b in names:
                block = jac[live.index(b)] if jac is not None and b in live else None
                both = a in connected and b in connected
                if block is None and (both or unconnected == "zero") and a in leaves and b in leaves:
                    block = Tensor(np.zeros(leaves[a].shape + leaves[b].shape, dtype=self.float_dtype))
                row[b] = None if block is None else _plain(block)
            blocks[a] = row
        return HessianResult(self.of, self._as_float(out._value), blocks)

    def grad_graph(self, wrt: Iterable[str] | None = None, watch: Iterable[str] = ()) -> Any:
        """The forward graph plus the backward pass's nodes (``difftape graph --grad``), as a Graph.

        Its first ``len(self.graph.nodes)`` nodes are the forward graph's; after them come the
        operations of the backward pass of ``sum(target)``, built by reverse mode
        (``transforms/reverse.py``) with a namespace that writes each down as a node, so they are
        the tape's. The gradient of each differentiated name is bound to ``grad NAME``: running
        the graph with ``outputs=["grad x"]`` gives the tape's gradient.
        """
        return _grad_graph(self, wrt, watch)

    # -- checking ----------------------------------------------------------------------------
    @_singular_is_a_value_error
    def check(
        self,
        expect: Mapping[str, str] | None = None,
        rtol: float | None = None,
        atol: float | None = None,
        wrt: Iterable[str] | None = None,
        watch: Iterable[str] = (),
        mode: str = "auto",
        directions: int = 3,
        order: int = 1,
        on_step: OnStep | None = None,
    ) -> CheckResult:
        """Compare the tape's derivatives with numerical and analytic ones (see ``answers/checker.py``).

        The analytic reference is ``expect`` where given, else the derivative that ``difftape diff``
        derives (when every op has a printable derivative). Tolerances default from the dtype.
        ``on_step(done, total)`` is called after each numerical derivative (an element or a direction).
        """
        from difftape.answers import checker

        return checker.check(self, expect=expect, rtol=rtol, atol=atol, wrt=wrt, watch=watch, mode=mode,
                             directions=directions, order=order, on_step=on_step)

    def _compiled_total(self, watched: set[str], base: Mapping[str, np.ndarray]) -> Callable[[str, Any], Any]:
        """``(name, value) -> sum(target)`` with that one input changed: what numeric derivatives evaluate.

        They evaluate it dozens of times per element, so the program is traced once per input
        signature by ``difftape.function`` and replayed as straight-line numpy. Should a replay
        fail (or the trace), that point is run through the graph as usual, which raises the
        same errors a plain run would.
        """
        from difftape.engine import api
        from difftape.engine.tracing import function

        order = list(base)
        held = self._held(watched)

        def run(*values: Tensor) -> Tensor:
            out, _ = self._run([], watched, overrides=dict(zip(order, values)), graph=held)
            return api.sum(out)

        compiled = function(run)
        fixed = {n: self._leaf_value(v) for n, v in base.items()}

        def total(name: str, value: Any) -> Any:
            args = [Tensor(self._leaf_value(value)) if n == name else Tensor(fixed[n]) for n in order]
            try:
                with np.errstate(all="ignore"):
                    return compiled(*args)._value
            except Exception:  # noqa: BLE001 - the interpreter answers, or raises its own clear error
                out, _ = self._run([], watched, overrides={name: value}, graph=held)
                return np.sum(out._value)

        return total

    def _leaf_value(self, value: Any) -> np.ndarray:
        """A watched input's value as ``_run`` makes it: floats in the program's float dtype, complex kept."""
        arr = np.asarray(value)
        if arr.dtype.kind not in "fc" or (arr.dtype.kind == "f" and arr.dtype != self.float_dtype):
            arr = arr.astype(self.float_dtype)
        return arr

    def _derived(self, names: list[str]) -> dict[str, tuple[str | None, str]]:
        """Analytic gradients from the symbolic differentiator: {name: (text, "diff")}.

        Where it has no printable derivative, the reason is kept with origin "none".
        """
        if not names:
            return {}
        from difftape.transforms.symbolic import derive

        try:
            res = derive(self.source, wrt=names, of=self._of_arg, values=self.at, max_terms=None)
        except DifftapeError as exc:
            return {n: (f"not derived: {exc.message}", "none") for n in names}
        return {n: (res.diff[n], "diff") for n in names if n in res.diff}

    def _analytic(self, text: str, name: str, leaves: Mapping[str, Tensor], origin: str = "expect") -> np.ndarray:
        from difftape.language.compiler import compile_program

        values = {k: np.asarray(v._value) for k, v in leaves.items()}
        try:
            graph = compile_program(text, values=values, dtype=self.dtype)
        except DifftapeError as exc:
            where = "--expect" if origin == "expect" else "the derived gradient"
            exc.message = f"in {where} for {name}: {exc.message}"
            exc.source = text
            raise
        value = np.asarray(graph.run(seed=self.seed)._value, dtype=np.float64)
        shape = leaves[name].shape
        try:
            return np.broadcast_to(value, shape).copy()
        except ValueError:
            raise DifftapeError(
                "shape", f"--expect for {name} has shape {value.shape}, but {name} has shape {shape}"
            ) from None


def _plain(t: Tensor) -> np.ndarray:
    """A derivative as a numpy array, with -0.0 (from 0 * negative) written as 0.0."""
    arr = np.asarray(t._value)
    return arr + 0.0 if arr.dtype.kind == "f" else arr


def _is_op(node: Any) -> bool:
    from difftape.ops import OPS

    return getattr(node, "op", None) in OPS


def _compare(got: np.ndarray, ref: np.ndarray, rtol: float, atol: float, slack: Any) -> tuple[float, float, bool]:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.size == 0:
        return 0.0, 0.0, True
    same_nonfinite = (~np.isfinite(got) | ~np.isfinite(ref)) & (got == ref) | (np.isnan(got) & np.isnan(ref))
    diff = np.where(same_nonfinite, 0.0, np.abs(got - ref))
    diff = np.where(np.isnan(diff), np.inf, diff)
    abs_err = float(np.max(diff))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(diff == 0, 0.0, diff / np.abs(ref))
    rel_err = float(np.max(np.where(np.isnan(rel), np.inf, rel)))
    ok = bool(np.all(diff <= atol + rtol * np.abs(np.where(np.isfinite(ref), ref, 0.0)) + slack))
    return abs_err, rel_err, ok


def check_unconnected(unconnected: str) -> None:
    if unconnected not in ("none", "zero"):
        raise DifftapeError("value", f"unconnected must be 'none' or 'zero', not {unconnected!r}")


# ----------------------------------------------------------------------------------------
# graph --grad: the backward pass as graph nodes, built by reverse mode itself


class _Value:
    """A value of the backward graph being built: its numpy value at the point and its node.

    Arithmetic and comparisons on it (the VJPs use Python's operators) add nodes too.
    """

    __slots__ = ("b", "id", "value")
    __array_ufunc__ = None  # numpy defers to the reflected operators

    def __init__(self, b: _Builder, id: int, value: Any) -> None:
        self.b, self.id, self.value = b, id, value

    shape = property(lambda self: np.shape(self.value))
    ndim = property(lambda self: np.ndim(self.value))
    dtype = property(lambda self: np.asarray(self.value).dtype)
    size = property(lambda self: int(np.size(self.value)))
    T = property(lambda self: self.b.call("transpose", (self,), {}))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self.value, dtype=dtype)

    def __bool__(self) -> bool:
        return bool(self.value)

    def __getitem__(self, index: Any) -> Any:
        return self.b.call("getitem", (self,), {"index": index})


def _operator(name: str, swap: bool = False) -> Callable[..., Any]:
    if swap:
        return lambda self, other: self.b.call(name, (other, self), {})
    return lambda self, other: self.b.call(name, (self, other), {})


for _name, _op_name in (("add", "add"), ("sub", "subtract"), ("mul", "multiply"), ("truediv", "divide"),
                        ("floordiv", "floor_divide"), ("mod", "remainder"), ("pow", "power"), ("matmul", "matmul")):
    setattr(_Value, f"__{_name}__", _operator(_op_name))
    setattr(_Value, f"__r{_name}__", _operator(_op_name, swap=True))
for _name, _op_name in (("lt", "less"), ("le", "less_equal"), ("gt", "greater"), ("ge", "greater_equal"),
                        ("eq", "equal"), ("ne", "not_equal"), ("and", "logical_and"), ("or", "logical_or")):
    setattr(_Value, f"__{_name}__", _operator(_op_name))
_Value.__hash__ = None  # type: ignore[assignment]
_Value.__neg__ = lambda self: self.b.call("negative", (self,), {})  # type: ignore[attr-defined]
_Value.__pos__ = lambda self: self.b.call("positive", (self,), {})  # type: ignore[attr-defined]
_Value.__abs__ = lambda self: self.b.call("abs", (self,), {})  # type: ignore[attr-defined]
_Value.__invert__ = lambda self: self.b.call("logical_not", (self,), {})  # type: ignore[attr-defined]


def _plain_value(v: Any) -> Any:
    if isinstance(v, _Value):
        return v.value
    if isinstance(v, (tuple, list)):
        return type(v)(_plain_value(e) for e in v)
    if isinstance(v, dict):
        return {k: _plain_value(e) for k, e in v.items()}
    return v


class _Builder:
    """The namespace ``F`` that writes each operation down as a node (after the forward graph's)."""

    def __init__(self, nodes: list[Any]) -> None:
        self.nodes = nodes
        self.numbers: dict[tuple[type, str], _Value] = {}  # one node per Python number used

    def __getattr__(self, name: str) -> Any:
        from difftape.ops import OPS

        op = OPS.get(name)
        if op is None:
            raise AttributeError(name)
        n = len(op.args)
        names = [p for p, _ in op.params]

        def bound(*args: Any, **kwargs: Any) -> Any:
            tensors, rest = ((args[0],), args[1:]) if op.variadic else (args[:n], args[n:])
            params = dict(zip(names, rest))
            params.update(kwargs)
            return self.call(name, tensors, params)

        setattr(self, name, bound)
        return bound

    def node(self, op: str, inputs: tuple[int, ...], params: dict[str, Any], value: Any) -> int:
        from difftape.ir.graph import Node

        dtype = type(value) if type(value) in (bool, int, float) else np.asarray(value).dtype
        self.nodes.append(Node(len(self.nodes), op, inputs, params, np.shape(value), dtype, None))
        return len(self.nodes) - 1

    def literal(self, value: Any) -> _Value:
        """A constant as a node of its own (a Python number: one node for all its uses)."""
        if type(value) in (bool, int, float):
            key = (type(value), repr(value))
            if key not in self.numbers:
                self.numbers[key] = _Value(self, self.node("literal", (), {"value": value}, value), value)
            return self.numbers[key]
        value = np.asarray(value)
        return _Value(self, self.node("literal", (), {"value": value}, value), value)

    def call(self, name: str, tensors: tuple[Any, ...], params: dict[str, Any]) -> Any:
        from difftape.ops import OPS

        op = OPS[name]
        items = tuple(tensors[0]) if op.variadic else tuple(tensors)
        plain = {k: _plain_value(v) for k, v in params.items()}
        values = [_plain_value(t) for t in items]
        with np.errstate(all="ignore"):
            value = op.forward(*values, **plain)
        if not any(isinstance(t, _Value) for t in items):
            return value  # constants fold (a node only when something of the graph uses them)
        ins = tuple((t if isinstance(t, _Value) else self.literal(t)).id for t in items)
        return _Value(self, self.node(name, ins, plain, value), value)


class _Forward(reverse.View):
    """The compiled graph as reverse mode reads it, its values those of one run at the point."""

    def __init__(self, graph: Any, values: list[Any]) -> None:
        from difftape.ops import OPS

        self.graph = graph
        self.values = values
        self.ops = [OPS.get(n.op) for n in graph.nodes]

    def __len__(self) -> int:
        return len(self.graph.nodes)

    def op(self, k: int) -> Any:
        return self.ops[k]

    def inputs(self, k: int) -> tuple[int, ...]:
        return tuple(self.graph.nodes[k].inputs)

    def params(self, k: int) -> dict[str, Any]:
        return self.graph.nodes[k].params

    def value(self, k: int) -> Any:
        return self.values[k]


def _grad_graph(prog: Program, wrt: Iterable[str] | None, watch: Iterable[str]) -> Any:
    from difftape.ir.graph import Graph

    names, watched = prog.sources(wrt, watch)
    graph = prog.graph
    keys = [f"%{n.id}" for n in graph.nodes]  # every node's value, by a name no binding can have
    probe = Graph(graph.nodes, graph.target, graph.target_name, graph.inputs, graph.variables, graph.consts,
                  {**graph.bindings, **dict(zip(keys, range(len(keys))))}, graph.source, graph.values,
                  graph.missing, graph.dtype)
    _, at = prog._run([], watched, graph=probe, outputs=keys)
    nodes = list(graph.nodes)
    first = len(nodes)
    b = _Builder(nodes)
    values: list[Any] = []
    for node, key in zip(graph.nodes, keys):
        v = at[key]
        v = v._value if isinstance(v, Tensor) else v
        # a Python number stays one (as the tape's first derivatives see it: x**2 has the slope 2*x)
        values.append(v if node.op == "literal" and isinstance(v, (bool, int, float)) else _Value(b, node.id, v))
    live = [n for n in names if n in watched]
    source = {n: node.id for node in graph.nodes for n in live if node.leaf and node.name == n}
    target = graph.nodes[graph.target]
    seed = b.literal(np.ones(target.shape, dtype=_float_dtype(prog.dtype)))
    grads = reverse.backward(b, _Forward(graph, values), graph.target, seed, list(source.values()))
    if all(g is None for g in grads.values()):
        del nodes[first:]  # nothing to differentiate: no backward pass (not even its seed)
    bindings = dict(graph.bindings)
    for name, k in source.items():
        g = grads[k]
        if g is None:
            continue
        if not isinstance(g, _Value) or g.id < first:  # a constant, or a node of the forward pass
            g = b.call("positive", (b.literal(g) if not isinstance(g, _Value) else g,), {})
        node = nodes[g.id]
        node.name = f"grad {name}" if node.name is None else f"{node.name}, grad {name}"
        bindings[f"grad {name}"] = g.id
    return Graph(nodes, graph.target, graph.target_name, graph.inputs, graph.variables, graph.consts, bindings,
                 graph.source, graph.values, graph.missing, graph.dtype)


def grad_graph_text(graph: Any, first: int) -> str:
    """The text of a graph from :meth:`Program.grad_graph`, the backward pass marked off from
    the forward graph's ``first`` nodes."""
    lines = graph.to_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"%{first} "):
            lines.insert(i, f"-- backward pass: gradient of sum({graph.target_name}) --")
            break
    return "\n".join(lines) + "\n"
