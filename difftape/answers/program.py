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

FLOATS = {"float64": np.float64, "float32": np.float32}


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


class CheckResult(_Record):
    of: str
    ok: bool
    method: str
    rtol: float
    atol: float
    inputs: dict[str, CheckRow]  # a new empty dict for each result unless given

    _field_names = ("of", "ok", "method", "rtol", "atol", "inputs")

    def __init__(
        self, of: str, ok: bool, method: str, rtol: float, atol: float, inputs: dict[str, CheckRow] | None = None
    ) -> None:
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

    def sources(self, wrt: Iterable[str] | None, watch: Iterable[str]) -> tuple[list[str], set[str]]:
        """(names to report, names to watch): variables by default, consts only when watched."""
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
            for name in names:
                if name not in known_set:
                    raise DifftapeError(
                        "name",
                        f"--wrt {name}: not an input, variable or const of the program{did_you_mean(name, known)}"
                        + (f"; choose from {', '.join(known)}" if known else ""),
                    )
        watched = {n for n in names if n in variable_set} | set(watch)
        return names, watched

    # -- running -----------------------------------------------------------------------------
    def _run(
        self, tapes: list[Tape], watched: set[str], overrides: Mapping[str, Any] | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Run the graph; watched leaves become float tensors watched by ``tapes``."""
        leaves: dict[str, Tensor] = {}
        overrides = overrides or {}

        def leaf(name: str, value: Any) -> Any:
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

        self.graph.check_values()
        out = self.graph.run(seed=self.seed, leaf=leaf)
        if not isinstance(out, Tensor):
            out = Tensor(as_array(out))
        return out, leaves

    def _as_float(self, value: Any) -> np.ndarray:
        arr = np.asarray(value)
        return arr.astype(self.float_dtype) if arr.dtype.kind not in "fc" else arr

    def evaluate(self) -> Any:
        """The target's value; ints stay ints."""
        out, _ = self._run([], set())
        return np.asarray(out._value)

    @_singular_is_a_value_error
    def grad(
        self, wrt: Iterable[str] | None = None, watch: Iterable[str] = (), unconnected: str = "none"
    ) -> GradResult:
        """Value and gradient of the target (of its sum, for a non-scalar target)."""
        check_unconnected(unconnected)
        names, watched = self.sources(wrt, watch)
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
        self, wrt: Iterable[str] | None = None, watch: Iterable[str] = (), unconnected: str = "none"
    ) -> JacobianResult:
        """Value and full Jacobian blocks of shape ``value.shape + input.shape``."""
        check_unconnected(unconnected)
        names, watched = self.sources(wrt, watch)
        with Tape(persistent=True) as tape:
            out, leaves = self._run([tape], watched)
        live = [n for n in names if n in watched and n in leaves]
        for n in names:
            if n in leaves:
                _check_block_size("jacobian", self.of, n, tuple(out.shape) + tuple(leaves[n].shape))
        jac = tape.jacobian(out, [leaves[n] for n in live], unconnected=unconnected) if live else []
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
        self, wrt: Iterable[str] | None = None, watch: Iterable[str] = (), unconnected: str = "none"
    ) -> HessianResult:
        """Value and Hessian blocks ``{a: {b: d2/da db}}`` of a scalar target."""
        check_unconnected(unconnected)
        shape = self.target_shape
        if shape != ():
            raise DifftapeError(
                "shape",
                f"hessian needs a scalar target, but {self.of} has shape {shape}; "
                "use `difftape jacobian` for the derivatives of every element",
            )
        names, watched = self.sources(wrt, watch)
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
        for a in names:
            row: dict[str, np.ndarray | None] = {}
            ga = grads[live.index(a)] if a in connected else None
            jac = outer.jacobian(ga, [leaves[b] for b in live], unconnected="none") if ga is not None else None
            for b in names:
                block = jac[live.index(b)] if jac is not None and b in live else None
                both = a in connected and b in connected
                if block is None and (both or unconnected == "zero") and a in leaves and b in leaves:
                    block = Tensor(np.zeros(leaves[a].shape + leaves[b].shape, dtype=self.float_dtype))
                row[b] = None if block is None else _plain(block)
            blocks[a] = row
        return HessianResult(self.of, self._as_float(out._value), blocks)

    def grad_graph(self, wrt: Iterable[str] | None = None, watch: Iterable[str] = ()) -> GradGraph:
        """The forward graph plus the backward pass's operations (``difftape graph --grad``)."""
        return _grad_graph(self, wrt, watch)

    # -- checking ----------------------------------------------------------------------------
    @_singular_is_a_value_error
    def check(
        self,
        expect: Mapping[str, str] | None = None,
        rtol: float = 1e-6,
        atol: float = 1e-8,
        wrt: Iterable[str] | None = None,
        watch: Iterable[str] = (),
    ) -> CheckResult:
        """Compare the tape gradient with numerical and analytic gradients.

        The analytic reference is ``expect`` where given, else the derivative that
        ``difftape diff`` derives (when every op has a printable derivative).
        """
        from difftape.answers import numeric

        grad = self.grad(wrt=wrt, watch=watch, unconnected="zero")
        names = list(grad.grad)
        expect = dict(expect or {})
        if "" in expect:
            if len(names) != 1:
                raise DifftapeError(
                    "usage",
                    "--expect EXPR needs exactly one input to differentiate; "
                    f"this program has {len(names)} ({', '.join(names) or 'none'}): use --expect NAME=EXPR",
                )
            expect[names[0]] = expect.pop("")
        for n in expect:
            if n not in names:
                raise DifftapeError("name", f"--expect {n}=...: {n} is not differentiated here{did_you_mean(n, names)}")
        _, watched = self.sources(wrt, watch)
        _, leaves = self._run([], watched)
        base = {n: np.asarray(leaves[n]._value, dtype=np.float64) for n in names}

        analytic_ops = all(
            getattr(node, "op", "") in numeric.ANALYTIC_OPS or not _is_op(node)
            for node in getattr(self.graph, "nodes", [])
        )
        use_complex = analytic_ops and all(np.isrealobj(v) for v in base.values())

        total = self._compiled_total(watched, base)

        derived = self._derived([n for n in names if n not in expect])
        result = CheckResult(self.of, True, "", rtol, atol)
        methods = set()
        for n in names:
            x0 = base[n]
            tape_g = np.asarray(grad.grad[n], dtype=np.float64)
            numeric_g: np.ndarray | None
            if use_complex:
                try:
                    numeric_g, err = numeric.complex_step(lambda z, n=n: total(n, z), x0)
                    methods.add("complex step (h=1e-30)")
                except Exception:  # noqa: BLE001 - an op refused complex input: fall back
                    use_complex = False
            if not use_complex:
                numeric_g, err = numeric.richardson_gradient(lambda z, n=n: float(np.real(total(n, z))), x0)
                methods.add("central differences with Richardson extrapolation (Ridders)")
            analytic, text, origin = None, None, "none"
            if n in expect:
                text, origin = expect[n], "expect"
            else:
                text, origin = derived.get(n, (None, "none"))
            if origin != "none":
                analytic = self._analytic(text, n, leaves, origin)
            refs = [r for r in (numeric_g, analytic) if r is not None]
            abs_err, rel_err, ok = 0.0, 0.0, True
            for k, ref in enumerate(refs):
                slack = err if k == 0 else 0.0
                a, r, good = _compare(tape_g, ref, rtol, atol, slack)
                abs_err, rel_err, ok = max(abs_err, a), max(rel_err, r), ok and good
            result.inputs[n] = CheckRow(
                tape_g, numeric_g, float(err), analytic, abs_err, rel_err, ok, text, origin
            )
            result.ok = result.ok and ok
        result.method = "; ".join(sorted(methods)) or "none (nothing to differentiate)"
        return result

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

        def run(*values: Tensor) -> Tensor:
            out, _ = self._run([], watched, overrides=dict(zip(order, values)))
            return api.sum(out)

        compiled = function(run)
        fixed = {n: self._leaf_value(v) for n, v in base.items()}

        def total(name: str, value: Any) -> Any:
            args = [Tensor(self._leaf_value(value)) if n == name else Tensor(fixed[n]) for n in order]
            try:
                with np.errstate(all="ignore"):
                    return compiled(*args)._value
            except Exception:  # noqa: BLE001 - the interpreter answers, or raises its own clear error
                out, _ = self._run([], watched, overrides={name: value})
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
            res = derive(self.source, wrt=names, of=self._of_arg, values=self.at)
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


def _compare(got: np.ndarray, ref: np.ndarray, rtol: float, atol: float, slack: float) -> tuple[float, float, bool]:
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


class _Listing:
    """A recorder that keeps every applied op, in order (for ``graph --grad``)."""

    def __init__(self) -> None:
        self.steps: list[tuple[Any, tuple[Any, ...], dict[str, Any], Tensor]] = []

    def _record(self, op: Any, args: tuple[Any, ...], params: dict[str, Any], out: Tensor) -> None:
        self.steps.append((op, args, params, out))


class GradGraph(_Record):
    """The forward graph plus the backward pass's operations, renderable like a Graph."""

    nodes: list[Any]
    target: int
    target_name: str
    first_backward: int

    _field_names = ("nodes", "target", "target_name", "first_backward")

    def __init__(self, nodes: list[Any], target: int, target_name: str, first_backward: int) -> None:
        self.nodes = nodes
        self.target = target
        self.target_name = target_name
        self.first_backward = first_backward

    def to_text(self) -> str:
        from difftape.ir.graph import render_text

        lines = render_text(self.nodes, self.target, self.target_name).splitlines()
        for i, line in enumerate(lines):
            if line.startswith(f"%{self.first_backward} "):
                lines.insert(i, f"-- backward pass: gradient of sum({self.target_name}) --")
                break
        return "\n".join(lines) + "\n"

    def to_dot(self) -> str:
        from difftape.ir.graph import render_dot

        return render_dot(self.nodes, self.target, self.target_name)


def _grad_graph(prog: Program, wrt: Iterable[str] | None, watch: Iterable[str]) -> GradGraph:
    from difftape.engine import tape as tape_module
    from difftape.ir.graph import Node
    from difftape.ops import OPS

    names, watched = prog.sources(wrt, watch)
    forward, backward = _Listing(), _Listing()
    with Tape() as tape:
        tape_module._ACTIVE.append(forward)
        try:
            out, leaves = prog._run([tape], watched)
        finally:
            tape_module._ACTIVE.remove(forward)
    live = [n for n in names if n in watched and n in leaves]
    tape_module._ACTIVE.append(backward)  # another recorder: the backward pass runs on tensors
    try:
        grads = tape.gradient(out, [leaves[n] for n in live]) if live else []
    finally:
        tape_module._ACTIVE.remove(backward)

    graph = prog.graph
    nodes = list(graph.nodes)
    where: dict[int, int] = {}
    op_nodes = [n for n in graph.nodes if n.op in OPS]
    for node, step in zip(op_nodes, forward.steps):
        where[id(step[3])] = node.id
    for node in graph.nodes:
        if node.leaf and node.name in leaves:
            where[id(leaves[node.name])] = node.id
    first = len(nodes)

    def node_of(value: Any) -> int:
        if isinstance(value, Tensor) and id(value) in where:
            return where[id(value)]
        arr = np.asarray(value._value if isinstance(value, Tensor) else value)
        literal = value if isinstance(value, (bool, int, float)) else arr
        nodes.append(Node(len(nodes), "literal", (), {"value": literal}, arr.shape, arr.dtype, None))
        if isinstance(value, Tensor):
            where[id(value)] = len(nodes) - 1
        return len(nodes) - 1

    for op, args, params, result in backward.steps:
        inputs = tuple(node_of(a) for a in args)
        arr = np.asarray(result._value)
        nodes.append(Node(len(nodes), op.name, inputs, dict(params), arr.shape, arr.dtype, None))
        where[id(result)] = len(nodes) - 1
    for name, g in zip(live, grads):
        if g is not None:
            node = nodes[node_of(g)]
            node.name = f"grad {name}" if node.id >= first else node.name
    return GradGraph(nodes, graph.target, prog.of, first)
