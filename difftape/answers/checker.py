"""``difftape check``: the tape's derivatives against numerical and analytic ones, at any size.

Two modes, chosen per run (``mode="auto"``: full up to :data:`FULL_LIMIT` input elements,
directional beyond):

- **full**: every element of every gradient against a numerical derivative of its own (the
  complex step where every op is complex-analytic, else Ridders' extrapolated central
  differences) and against the analytic gradient (``--expect`` or the one ``diff`` derives).
- **directional**: ``K`` random directions ``v`` per input (seeded), each checked three ways
  against each other: ``g . v`` from reverse mode, ``J v`` from forward mode, and the numerical
  derivative of the target along ``v`` (one complex-step evaluation, or one Ridders tableau),
  plus ``e . v`` for an analytic gradient ``e``. The cost is a few evaluations per direction,
  independent of the input's size (as PyTorch's ``gradcheck(fast_mode=True)`` and JAX's
  ``check_grads``), and a wrong gradient is caught with probability 1.

``order=2`` checks second derivatives: the Hessian (full) or Hessian-vector products
(directional), forward-over-reverse against reverse-over-reverse and against finite
differences of the tape's gradient.

Verdicts are only given where derivatives exist: a target that is not finite at the point, a
gradient that is not finite there, or nothing to differentiate is an error (``domain`` /
``value``), never a made-up number. Tolerances default from the dtype; a float32 program is
checked against the float64 model it rounds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from difftape.answers import numeric
from difftape.answers.program import CheckResult, CheckRow, OnStep, Program, _compare, _is_op, shifted
from difftape.errors import DifftapeError

#: Up to this many input elements in all, mode "auto" checks every element.
FULL_LIMIT = 1000
#: Second order: up to this many input elements the whole Hessian is checked.
FULL_LIMIT_ORDER2 = 60
#: Default tolerances by float dtype: (rtol, atol).
TOLERANCES = {"float64": (1e-6, 1e-8), "float32": (1e-3, 1e-5)}
MODES = ("auto", "full", "directional")
#: A derivative along a random direction ``v`` sums the terms ``g_i v_i``; errors of relative size ``rtol``
#: in the elements add up (their signs random with ``v``'s) to about ``rtol * |g * v|_2``, not to
#: ``rtol * |g * v|_1``, which is ~sqrt(n) times more and would let a wrong gradient of many elements
#: pass. A direction's tolerance is ``rtol`` times SPREAD standard deviations of that sum (never more
#: than the sum of the terms' sizes), plus the rounding of the sums, ROUNDING eps of the dtype per unit
#: of the terms' sizes.
SPREAD, ROUNDING = 4.0, 16.0


def directional_bound(atol: float, rtol: float, k: int, eps: float, scale: Any, spread: Any, ref: Any) -> Any:
    """The tolerance of the difference of two derivatives along a direction (one of ``k``): ``scale`` is
    the sum of the sizes of its terms, ``spread`` their 2-norm, ``ref`` the reference value."""
    return (atol * np.sqrt(max(k, 1)) + rtol * np.maximum(np.minimum(scale, SPREAD * spread), np.abs(ref))
            + ROUNDING * eps * scale)


def tolerances(dtype: str, rtol: float | None, atol: float | None) -> tuple[float, float]:
    """The tolerances for ``dtype``, with the ones given explicitly taking precedence."""
    d_rtol, d_atol = TOLERANCES.get(str(dtype), TOLERANCES["float64"])
    return (d_rtol if rtol is None else float(rtol), d_atol if atol is None else float(atol))


def _reference(program: Program) -> Program:
    """The float64 model of a float32 program (the same values, unrounded arithmetic)."""
    if program.float_dtype == np.float64:
        return program
    at = {k: (v.astype(np.float64) if np.asarray(v).dtype.kind == "f" else v) for k, v in program.at.items()}
    return Program(program.source, of=program._of_arg, at=at, seed=program.seed, dtype="float64")


def _not_finite(what: str, value: Any) -> DifftapeError | None:
    arr = np.asarray(value)
    if arr.dtype.kind not in "fc" or np.all(np.isfinite(arr)):
        return None
    bad = np.argwhere(~np.isfinite(arr))
    where = "" if arr.ndim == 0 else f" at {tuple(int(i) for i in bad[0])}"
    first = arr[tuple(bad[0])] if arr.ndim else arr
    return DifftapeError("domain", f"{what} is {first}{where}: there is no derivative to check at this point")


def check(
    program: Program,
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
    """Check ``program``'s derivatives at its point; see the module docstring.

    ``on_step(done, total)`` is called after each numerical derivative: an element (full mode), a
    direction (directional), a Hessian row or pass (second order)."""
    with np.errstate(all="ignore"):
        return _check(program, expect, rtol, atol, wrt, watch, mode, directions, order, on_step)


def check_options(mode: str, directions: int, order: int) -> None:
    """Refuse a bad --mode, --directions or --order (the single-point and the batch check alike)."""
    if mode not in MODES:
        raise DifftapeError("usage", f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if directions < 1:
        raise DifftapeError("usage", f"directions must be at least 1, got {directions}")
    if order not in (1, 2):
        raise DifftapeError("usage", f"check order must be 1 or 2, got {order}")


def _check(program: Program, expect: Mapping[str, str] | None, rtol: float | None, atol: float | None,
           wrt: Iterable[str] | None, watch: Iterable[str], mode: str, directions: int, order: int,
           on_step: OnStep | None = None) -> CheckResult:
    check_options(mode, directions, order)
    rtol, atol = tolerances(program.dtype, rtol, atol)
    names, watched = program.sources(wrt, watch)
    names = [n for n in names if n in watched]
    if not names:
        raise DifftapeError(
            "value", f"nothing to check: {program.of} has no input to differentiate (no variable, no --watch)"
        )
    grad = program.grad(wrt=names, watch=watch, unconnected="zero")
    bad = _not_finite(f"{program.of}", grad.value if np.ndim(grad.value) == 0 else np.sum(grad.value))
    if bad:
        raise bad
    for n in names:
        bad = _not_finite(f"the gradient with respect to {n}", grad.grad[n])
        if bad:
            raise bad
    ref = _reference(program)
    _, leaves = program._run([], watched)
    base = {n: np.asarray(leaves[n]._value, dtype=np.float64) for n in names}
    size = sum(int(v.size) for v in base.values())
    limit = FULL_LIMIT if order == 1 else FULL_LIMIT_ORDER2
    chosen = ("full" if size <= limit else "directional") if mode == "auto" else mode
    total = ref._compiled_total(watched, base)
    analytic_ops = all(getattr(node, "op", "") in numeric.ANALYTIC_OPS or not _is_op(node)
                       for node in getattr(ref.graph, "nodes", []))
    checker = _Checker(program, ref, names, watched, base, total, analytic_ops, rtol, atol,
                       np.random.default_rng(program.seed))
    if chosen == "full":  # one step per element (second order: a Hessian pass and a row of differences)
        steps = size * (2 if order == 2 else 1)
    else:
        steps = directions * len(names)
    checker.steps = _Steps(steps, on_step)
    if order == 2:
        return checker.second_order(chosen, directions)
    return checker.first_order(chosen, directions, grad.grad, expect or {})


class _Steps:
    """The steps of one check done so far, reported to ``on_step(done, total)``."""

    def __init__(self, total: int, on_step: OnStep | None) -> None:
        self.total, self.on_step, self.done = total, on_step, 0

    def tick(self) -> None:
        self.done += 1
        if self.on_step is not None:
            self.on_step(self.done, self.total)

    def part(self, n: int) -> OnStep | None:
        """A callback for a part of ``n`` steps that reports its own (done, of n); counted as done after."""
        before = self.done
        self.done += n
        return shifted(self.on_step, before, self.total)


class _Checker:
    """One check run: the point, the numeric evaluator and the tolerances."""

    steps: _Steps

    def __init__(self, program: Program, ref: Program, names: list[str], watched: set[str],
                 base: dict[str, np.ndarray], total: Callable[[str, Any], Any], analytic_ops: bool,
                 rtol: float, atol: float, rng: np.random.Generator) -> None:
        self.program, self.ref, self.names, self.watched, self.base = program, ref, names, watched, base
        self.total, self.analytic_ops, self.rtol, self.atol, self.rng = total, analytic_ops, rtol, atol, rng
        self.methods: set[str] = set()
        self.label = "" if program.float_dtype == np.float64 else " (float64 model)"
        self.steps = _Steps(0, None)

    # -- numbers -------------------------------------------------------------------------------
    def _complex_ok(self) -> bool:
        return self.analytic_ops and all(np.isrealobj(v) for v in self.base.values())

    def bound(self, ref: Any) -> Any:
        """The tolerance of an element's difference next to the reference ``ref`` (as ``_compare``)."""
        return self.atol + self.rtol * np.abs(ref)

    def numeric_gradient(self, n: str, tape: np.ndarray) -> tuple[np.ndarray, Any]:
        """The numerical gradient and its error: one for every element (Ridders) or one for all (complex step)."""
        x0 = self.base[n]
        start = self.steps.done
        if self._complex_ok():
            try:
                g, err = numeric.complex_step(lambda z: self.total(n, z), x0, tick=self.steps.part(x0.size))
                if np.all(np.isfinite(g)):
                    self.methods.add("complex step (h=1e-30)" + self.label)
                    return g, err
            except Exception:  # noqa: BLE001 - an op refused complex input: central differences
                pass
        self.methods.add("central differences with Richardson extrapolation (Ridders)" + self.label)
        self.steps.done = start  # (the complex step's elements are done again)
        return numeric.richardson_gradient(lambda z: float(np.real(self.total(n, z))), x0,
                                           tick=self.steps.part(x0.size), tape=tape, bound=self.bound)

    def numeric_directional(self, n: str, v: np.ndarray, tape: float,
                            bound: Callable[[Any], Any]) -> tuple[float, float]:
        x0 = self.base[n]
        if self._complex_ok():
            h = 1e-30 / max(float(np.max(np.abs(v))), 1.0)
            try:
                d = float(np.imag(self.total(n, x0 + 1j * h * v)) / h)
                if np.isfinite(d):
                    self.methods.add("complex step along random directions" + self.label)
                    return d, abs(d) * 4 * np.finfo(np.float64).eps * max(1.0, float(np.sum(np.abs(v))))
            except Exception:  # noqa: BLE001
                pass
        self.methods.add("central differences along random directions (Ridders)" + self.label)
        return numeric.directional(lambda z: float(np.real(self.total(n, z))), x0, v, tape, bound)

    def direction(self, n: str) -> np.ndarray:
        v = self.rng.standard_normal(self.base[n].shape)
        return v / max(float(np.sqrt(np.sum(v * v))), 1e-300) * np.sqrt(max(v.size, 1))

    # -- first order ---------------------------------------------------------------------------
    def first_order(self, mode: str, k: int, tape: Mapping[str, Any], expect: Mapping[str, str]) -> CheckResult:
        from difftape.answers import forward

        expect = self._expect(dict(expect))
        derived = self.program._derived([n for n in self.names if n not in expect])
        _, leaves = self.program._run([], self.watched)
        result = CheckResult(self.program.of, True, "", self.rtol, self.atol)
        for n in self.names:
            tape_g = np.asarray(tape[n], dtype=np.float64)
            text, origin = (expect[n], "expect") if n in expect else derived.get(n, (None, "none"))
            analytic = self.program._analytic(text, n, leaves, origin) if origin != "none" else None
            if mode == "full":
                numeric_g, err = self.numeric_gradient(n, tape_g)
                row = self._row(tape_g, [(numeric_g, err), (analytic, 0.0)], text, origin)
                row.numeric, row.analytic = numeric_g, analytic
                row.mode = "full"
            else:
                vs = [self.direction(n) for _ in range(k)]
                rev = np.array([float(np.sum(tape_g * v)) for v in vs])
                fwd = np.array([float(np.sum(forward.jvp(self.program, {n: v}, wrt=self.names,
                                                          watch=self._watch()).jvp)) for v in vs])
                scale = np.array([float(np.sum(np.abs(tape_g * v))) for v in vs])
                spread = np.array([float(np.sqrt(np.sum((tape_g * v) ** 2))) for v in vs])
                nums = []
                for j, v in enumerate(vs):
                    nums.append(self.numeric_directional(n, v, float(rev[j]),
                                                         self._directional_bound(k, scale[j], spread[j])))
                    self.steps.tick()
                num = np.array([d for d, _ in nums])
                err = np.array([e for _, e in nums])
                ana = None if analytic is None else np.array([float(np.sum(analytic * v)) for v in vs])
                row = self._row(rev, [(fwd, 0.0), (num, err), (ana, 0.0)], text, origin, scale, spread)
                if analytic is not None:
                    # the analytic gradient is a whole array, as the tape's: element by element too (a wrong
                    # element of many hides in a derivative along a direction)
                    a, r, good = _compare(tape_g, analytic, self.rtol, self.atol, 0.0)
                    row.max_abs_err, row.max_rel_err = max(row.max_abs_err, a), max(row.max_rel_err, r)
                    row.ok = row.ok and good
                row.tape, row.numeric, row.analytic, row.forward = rev, num, ana, fwd
                row.mode = f"directional ({k} direction{'s' * (k != 1)})"
            result.inputs[n] = row
            result.ok = result.ok and row.ok
        result.method = "; ".join(sorted(self.methods)) or "none"
        result.mode = sorted({r.mode.split(" ")[0] for r in result.inputs.values()})[0]
        return result

    def _directional_bound(self, k: int, scale: Any, spread: Any) -> Callable[[Any], Any]:
        """The tolerance of a derivative along a direction (as ``_row`` judges ``k`` of them), by reference."""
        eps = float(np.finfo(self.program.float_dtype).eps)
        return lambda ref: directional_bound(self.atol, self.rtol, k, eps, scale, spread, ref)

    def _watch(self) -> list[str]:
        return [n for n in self.names if n in self.program.consts]

    def _expect(self, expect: dict[str, str]) -> dict[str, str]:
        if "" in expect:
            if len(self.names) != 1:
                raise DifftapeError(
                    "usage",
                    "--expect EXPR needs exactly one input to differentiate; this program has "
                    f"{len(self.names)} ({', '.join(self.names)}): use --expect NAME=EXPR",
                )
            expect[self.names[0]] = expect.pop("")
        for n in expect:
            if n not in self.names:
                from difftape.errors import did_you_mean

                raise DifftapeError("name", f"--expect {n}=...: {n} is not differentiated here"
                                    f"{did_you_mean(n, self.names)}")
        return expect

    def _row(self, got: np.ndarray, refs: list[tuple[Any, Any]], text: str | None, origin: str,
             scale: np.ndarray | None = None, spread: np.ndarray | None = None) -> CheckRow:
        """The verdict on ``got`` against each ``(reference, its error)``; an error is one for all elements
        or one for each (an element's tolerance is widened by its own error only)."""
        abs_err, rel_err, ok, numeric_err = 0.0, 0.0, True, 0.0
        for ref, slack in refs:
            if ref is None:
                continue
            ref = np.asarray(ref, dtype=np.float64)
            if scale is not None:
                # a directional derivative can cancel to near 0 while its terms are large: judge
                # the difference against the size of the terms
                diff = np.abs(got - ref)
                bound = self._directional_bound(got.size, scale, scale if spread is None else spread)(ref) + slack
                a = float(np.max(diff, initial=0.0))
                r = float(np.max(diff / np.maximum(np.maximum(scale, np.abs(ref)), 1e-300), initial=0.0))
                good = bool(np.all(diff <= bound))
            else:
                a, r, good = _compare(got, ref, self.rtol, self.atol, slack)
            abs_err, rel_err, ok = max(abs_err, a), max(rel_err, r), ok and good
            numeric_err = max(numeric_err, float(np.max(slack, initial=0.0)))
        return CheckRow(got, None, numeric_err, None, abs_err, rel_err, ok, text, origin)

    # -- second order --------------------------------------------------------------------------
    def second_order(self, mode: str, k: int) -> CheckResult:
        from difftape.answers import forward

        result = CheckResult(self.program.of, True, "", self.rtol, self.atol, order=2)
        if self.program.target_shape != ():
            raise DifftapeError("shape", f"check --order 2 needs a scalar target, but {self.program.of} has shape "
                                f"{self.program.target_shape}")
        hess = None
        if mode == "full":
            passes = sum(int(self.base[b].size) for b in self.names)
            hess = self.program.hessian(wrt=self.names, watch=self._watch(), unconnected="zero",
                                        on_step=self.steps.part(passes)).hessian
        for a in self.names:
            if mode == "full":
                parts = [np.reshape(hess[a][b], self.base[a].shape + (-1,)) for b in self.names]
                block = np.concatenate(parts, axis=-1)
                num, err = self._numeric_hessian_rows(a, block)
                # forward over reverse for one random direction, against the block
                v = self.direction(a)
                fwd = forward.hvp(self.program, {a: v}, wrt=self.names, watch=self._watch()).hvp
                flat_fwd = np.concatenate([np.reshape(fwd[b], -1) for b in self.names])
                rev = np.tensordot(v, block, axes=v.ndim)
                row = self._row(block, [(num, err)], None, "none")
                extra = self._row(flat_fwd, [(rev, 0.0)], None, "none")
                row.ok = row.ok and extra.ok
                row.max_abs_err = max(row.max_abs_err, extra.max_abs_err)
                row.max_rel_err = max(row.max_rel_err, extra.max_rel_err)
                row.numeric = num
                row.mode = "full Hessian"
                self.methods.add("central differences of the tape's gradient (Ridders)" + self.label)
            else:
                fwd_list, rev_list, num_list, errs, scales, spreads = [], [], [], [], [], []
                for _ in range(k):
                    v = self.direction(a)
                    u = {b: self.rng.standard_normal(self.base[b].shape) for b in self.names}
                    hv = forward.hvp(self.program, {a: v}, wrt=self.names, watch=self._watch()).hvp
                    fwd_list.append(sum(float(np.sum(u[b] * hv[b])) for b in self.names))
                    rev_list.append(self._rev_over_rev(a, u, v))
                    scale = 0.1 * max(float(np.max(np.abs(self.base[a]), initial=0.0)), 1.0)
                    scales.append(sum(float(np.sum(np.abs(u[b] * hv[b]))) for b in self.names))
                    spreads.append(float(np.sqrt(sum(float(np.sum((u[b] * hv[b]) ** 2)) for b in self.names))))
                    steps = ([scale], [scale * 10.0**-j for j in (1, 2, 3)])

                    def run(h: float, u: Any = u, v: Any = v, a: str = a) -> tuple[float, float]:
                        return numeric.ridders(lambda t: self._ug(u, a, t, v), 0.0, h)

                    d, e = numeric.ridders_tried(run, steps)
                    d, e = numeric.second_opinion(run, numeric.second_steps(steps), fwd_list[-1],
                                                  self._directional_bound(k, scales[-1], spreads[-1]), d, e)
                    num_list.append(d)
                    errs.append(e)
                    self.steps.tick()
                fwd, rev, num = np.array(fwd_list), np.array(rev_list), np.array(num_list)
                row = self._row(fwd, [(rev, 0.0), (num, np.array(errs))], None, "none", np.array(scales),
                                np.array(spreads))
                row.tape, row.numeric, row.forward = rev, num, fwd
                row.mode = f"Hessian-vector products ({k} direction{'s' * (k != 1)})"
                self.methods.add("central differences of the tape's gradient along random directions (Ridders)"
                                 + self.label)
            result.inputs[a] = row
            result.ok = result.ok and row.ok
        result.method = "; ".join(sorted(self.methods))
        result.mode = "full" if mode == "full" else "directional"
        return result

    def _grad_at(self, a: str, value: np.ndarray) -> np.ndarray:
        """The float64 model's gradient (every input, flattened and joined) with input ``a`` moved."""
        from difftape.engine.tape import Tape
        from difftape.engine.tensor import Tensor

        prims = {b: Tensor(np.array(value if b == a else self.base[b], dtype=np.float64)) for b in self.names}
        with Tape() as tape:
            tape.watch(list(prims.values()))
            out, _ = self.ref._run([], self.watched, overrides=prims)
        grads = tape.gradient(out, [prims[b] for b in self.names], unconnected="zero")
        return np.concatenate([np.reshape(np.asarray(g._value, dtype=np.float64), -1) for g in grads])

    def _ug(self, u: Mapping[str, np.ndarray], a: str, t: float, v: np.ndarray) -> float:
        flat_u = np.concatenate([np.reshape(u[b], -1) for b in self.names])
        return float(np.sum(flat_u * self._grad_at(a, self.base[a] + t * v)))

    def _numeric_hessian_rows(self, a: str, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Block row ``a`` of the Hessian by extrapolated central differences of the tape's gradient, with
        the error of each element; an element that disagrees with the tape's ``block`` gets a second opinion."""
        x0 = self.base[a]
        width = sum(int(self.base[b].size) for b in self.names)
        out = np.empty((x0.size, width))
        errs = np.empty((x0.size, width))
        tape = np.reshape(block, (x0.size, width))
        for i in range(x0.size):
            e = np.zeros(x0.size)
            e[i] = 1.0
            e = e.reshape(x0.shape)
            # steps from this element's own size, several of them: one start can stop early on a
            # too-small error estimate (a false MISMATCH at randn(60) from the largest element's step)
            steps = numeric.starting_steps(float(x0.reshape(-1)[i]))

            def run(h: float, e: np.ndarray = e) -> tuple[np.ndarray, np.ndarray]:
                return numeric.ridders_vector(lambda t: self._grad_at(a, x0 + t * e), h)

            col, err = numeric.ridders_tried(run, steps)
            col, err = numeric.second_opinion(run, numeric.second_steps(steps), tape[i], self.bound, col, err)
            self.steps.tick()
            out[i], errs[i] = col, err
        return out.reshape(x0.shape + (width,)), errs.reshape(x0.shape + (width,))

    def _rev_over_rev(self, a: str, u: Mapping[str, np.ndarray], v: np.ndarray) -> float:
        """u' H v by reverse over reverse: the gradient of u . grad, dotted with v."""
        from difftape.engine import api
        from difftape.engine.tape import Tape
        from difftape.engine.tensor import Tensor

        prims = {b: Tensor(np.array(self.program._leaf_value(self.base[b]), copy=True)) for b in self.names}
        with Tape() as outer:
            outer.watch(list(prims.values()))
            with Tape() as inner:
                inner.watch(list(prims.values()))
                out, _ = self.program._run([], self.watched, overrides=prims)
            grads = inner.gradient(out, [prims[b] for b in self.names], unconnected="zero")
            ug = None
            for b, g in zip(self.names, grads):
                term = api.sum(g * Tensor(np.asarray(u[b], dtype=self.program.float_dtype)))
                ug = term if ug is None else ug + term
        d = outer.gradient(ug, prims[a], unconnected="zero")
        return float(np.sum(np.asarray(d._value, dtype=np.float64) * v))
