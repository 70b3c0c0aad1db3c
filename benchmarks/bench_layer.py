"""Benchmark: large arrays, the cheap-gradient ratio and the peak memory of forward+gradient.

Run from the repository root:  python benchmarks/bench_layer.py [--quick] [--repeat N]

Two programs, each computed by every library as forward only (no gradient recording) and as
forward+gradient (the value and the gradient w.r.t. every input, from scratch):

- layer: ``sum(tanh(W@x + b)**2)`` with W 1000x1000, x 1000x64, b 1000x1 (gradients w.r.t. W, x, b);
- elementwise: ``sum(exp(sin(x)) * x**2)`` with x of 1e6 elements.

The cheap-gradient ratio is (forward+gradient time) / (forward time) of one library. Targets
(issue 6): difftape's forward+gradient within 1.10x of hand-written numpy's, and its peak memory
(tracemalloc, which numpy reports its buffers to; inputs allocated before, results kept after)
within 1.3x of the hand-written version's. ``--quick`` shrinks the arrays (a smoke run).

Issue 16: ``difftape.function`` replays of the same value-and-gradient run chains of elementwise
ops as fused kernels, blocked and on every core (transforms/fuse.py): the rows "difftape.function
replay (fused)" and "(unfused)" (the same replay with fusion off). Targets: elementwise <= 0.6x hand
numpy, layer <= 1.0x, peak memory not above eager difftape's. The layer's products W @ x and W.T @ g are
tall: difftape computes them in the layout OpenBLAS runs faster (benchmarks/bench_matmul.py), the
same in eager difftape and both replays; the hand-written numpy is numpy's plain ``a @ b``.
numexpr, the alternative measured, is timed on the same programs written by hand (where installed),
with its import time.
"""

from __future__ import annotations

import gc
import tracemalloc

import _common as c
import numpy as np

import difftape as dt

# ---------------------------------------------------------------------------------------------
# the two programs, hand-written


def layer_forward(W, x, b):
    return np.sum(np.tanh(W @ x + b) ** 2)


def layer_hand(W, x, b):
    t = np.tanh(W @ x + b)
    value = np.sum(t**2)
    gz = 2.0 * t * (1.0 - t**2)  # d/dz of tanh(z)**2, summed
    return value, (gz @ x.T, W.T @ gz, np.sum(gz, axis=1, keepdims=True))


def elem_forward(x):
    return np.sum(np.exp(np.sin(x)) * x**2)


def elem_hand(x):
    e = np.exp(np.sin(x))
    q = x**2
    value = np.sum(e * q)
    return value, (q * e * np.cos(x) + e * (2.0 * x),)


# ---------------------------------------------------------------------------------------------
# the same in each library


def layer_in(F, W, x, b):
    return F.sum(F.tanh(W @ x + b) ** 2)


def elem_in(F, x):
    return F.sum(F.exp(F.sin(x)) * x**2)


def programs(quick: bool):
    rng = np.random.default_rng(0)
    n, m, size = (300, 32, 100_000) if quick else (1000, 64, 1_000_000)
    W = rng.standard_normal((n, n)) / np.sqrt(n)
    x = rng.standard_normal((n, m))
    b = rng.standard_normal((n, 1))
    v = rng.standard_normal(size)
    return [
        (f"layer sum(tanh(W@x + b)**2), W {n}x{n}, x {n}x{m}", layer_in, layer_forward, layer_hand, (W, x, b)),
        (f"elementwise sum(exp(sin(x)) * x**2), {size:.0e} elements", elem_in, elem_forward, elem_hand, (v,)),
    ]


def cases_for(body, fwd_np, hand, inputs):
    """name -> (forward, forward+gradient, gradient extractor) for every available library."""
    out = {"hand-written numpy": (lambda: fwd_np(*inputs), lambda: hand(*inputs), lambda r: r[1])}

    d_in = [dt.constant(a) for a in inputs]

    def dt_both():
        with dt.Tape() as tape:
            for v in d_in:
                tape.watch(v)
            y = body(dt, *d_in)
        return y, tape.gradient(y, d_in)

    out["difftape"] = (lambda: body(dt, *d_in), dt_both, lambda r: [g.numpy() for g in r[1]])

    from difftape.transforms import fuse

    fused = dt.function(dt_both_of(body, len(inputs)))
    fused(*d_in)
    plain = dt.function(dt_both_of(body, len(inputs)))
    real, fuse.MIN_SIZE = fuse.MIN_SIZE, 1 << 62  # this one trace compiles without fusion
    plain(*d_in)
    fuse.MIN_SIZE = real
    fwd_traced = dt.function(lambda *xs: body(dt, *xs))
    fwd_traced(*d_in)
    out["difftape.function replay (fused)"] = (lambda: fwd_traced(*d_in), lambda: fused(*d_in), _dt_grads)
    out["difftape.function replay (unfused)"] = (lambda: fwd_traced(*d_in), lambda: plain(*d_in), _dt_grads)

    ne = c.optional("numexpr")
    if ne is not None:
        out["numexpr (by hand)"] = NUMEXPR[body.__name__](ne, inputs)
    else:
        out["numexpr (by hand)"] = None

    ag = c.optional("autograd")
    if ag is not None:
        import autograd.numpy as anp

        f_ag = lambda *xs: body(anp, *xs)
        vg = ag.value_and_grad(f_ag, tuple(range(len(inputs))))
        out["HIPS autograd"] = (lambda: f_ag(*inputs), lambda: vg(*inputs), lambda r: list(r[1]))
    else:
        out["HIPS autograd"] = None

    torch = c.optional("torch")
    if torch is not None:
        t_in = [torch.tensor(a, requires_grad=True) for a in inputs]

        def t_fwd():
            with torch.no_grad():
                return body(torch, *t_in)

        def t_both():
            y = body(torch, *t_in)
            return y, torch.autograd.grad(y, t_in)

        out["PyTorch"] = (t_fwd, t_both, lambda r: [g.numpy() for g in r[1]])
    else:
        out["PyTorch"] = None

    jax = c.optional("jax")
    if jax is not None:
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)
        j_in = [jnp.asarray(a) for a in inputs]
        f_j = lambda *xs: body(jnp, *xs)
        vg_j = jax.value_and_grad(f_j, tuple(range(len(inputs))))

        def j_fwd():
            return f_j(*j_in).block_until_ready()

        def j_both():
            y, g = vg_j(*j_in)
            return y.block_until_ready(), [a.block_until_ready() for a in g]

        out["JAX eager"] = (j_fwd, j_both, lambda r: [np.asarray(g) for g in r[1]])
        jf, jvg = jax.jit(f_j), jax.jit(vg_j)

        def jit_both():
            y, g = jvg(*j_in)
            return y.block_until_ready(), [a.block_until_ready() for a in g]

        out["jax.jit"] = (lambda: jf(*j_in).block_until_ready(), jit_both, lambda r: [np.asarray(g) for g in r[1]])
    else:
        out["JAX eager"] = None
        out["jax.jit"] = None
    return out


def _dt_grads(r):
    return [g.numpy() for g in r[1]]


def dt_both_of(body, n):
    def both(*xs):
        with dt.Tape() as tape:
            for v in xs:
                tape.watch(v)
            y = body(dt, *xs)
        return y, tape.gradient(y, list(xs))

    return both


def _numexpr_layer(ne, inputs):
    W, x, b = inputs

    def fwd():
        z = W @ x + b
        return ne.evaluate("sum(tanh(z) ** 2)", local_dict={"z": z})

    def both():
        z = W @ x + b
        t = ne.evaluate("tanh(z)", local_dict={"z": z})
        gz = ne.evaluate("2.0 * t * (1.0 - t * t)", local_dict={"t": t})
        return ne.evaluate("sum(t * t)", local_dict={"t": t}), (gz @ x.T, W.T @ gz, np.sum(gz, axis=1, keepdims=True))

    return fwd, both, lambda r: list(r[1])


def _numexpr_elem(ne, inputs):
    (x,) = inputs

    def fwd():
        return ne.evaluate("sum(exp(sin(x)) * x ** 2)", local_dict={"x": x})

    def both():
        e = ne.evaluate("exp(sin(x))", local_dict={"x": x})
        d = {"e": e, "x": x}
        return ne.evaluate("sum(e * x * x)", local_dict=d), (
            ne.evaluate("e * (x * x * cos(x) + 2.0 * x)", local_dict=d),
        )

    return fwd, both, lambda r: list(r[1])


NUMEXPR = {"layer_in": _numexpr_layer, "elem_in": _numexpr_elem}


def numexpr_import_ms() -> float | None:
    """Median cumulative import time of numexpr after numpy, in a fresh process (None: not installed)."""
    import statistics
    import subprocess
    import sys

    times = []
    for _ in range(5):
        err = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import numpy; import numexpr"], capture_output=True, text=True
        ).stderr
        for line in err.splitlines():
            if line.rstrip().endswith("| numexpr"):
                times.append(int(line.split("|")[1]) / 1000)
    return statistics.median(times) if times else None


def _scalar(v) -> float:
    return float(v.detach()) if hasattr(v, "detach") else float(v)


def peak_bytes(fn) -> int:
    """Peak traced bytes allocated while ``fn`` runs (its result kept until the end), best of two runs."""
    best = None
    for _ in range(2):
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        del result
        best = peak if best is None else min(best, peak)
    return best


def main() -> int:
    args = c.arguments(__doc__)
    c.header("large arrays: cheap-gradient ratio and peak memory", args.quick)
    min_time = 0.02 if args.quick else 0.2
    verdicts = []
    verdicts16 = []
    torch = c.optional("torch")
    if torch is not None:
        print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} intra-op threads\n")
    for title, body, fwd_np, hand, inputs in programs(args.quick):
        libs = cases_for(body, fwd_np, hand, inputs)
        ref = hand(*inputs)
        cases, agree = {}, {}
        for name, entry in libs.items():
            if entry is None:
                continue
            fwd, both, grads = entry
            cases[f"{name} forward"] = fwd
            cases[f"{name} forward+gradient"] = both
            got = both()
            agree[name] = all(np.allclose(g, r, rtol=1e-8, atol=1e-10) for g, r in zip(grads(got), ref[1]))
            agree[name] = agree[name] and bool(np.isclose(_scalar(got[0]), float(ref[0]), rtol=1e-10))
        # Libraries on numpy's threads are timed together, interleaved; one with threads of its own
        # (PyTorch's OpenMP pool, XLA's) alone after them: idle threads that spin-wait steal a core.
        timings = {}
        numpy_threads = (
            "hand-written numpy",
            "difftape",
            "HIPS autograd",
            "difftape.function replay (fused)",
            "difftape.function replay (unfused)",
            "numexpr (by hand)",
        )
        for group in (numpy_threads, ("PyTorch",), ("JAX eager", "jax.jit")):
            part = {k: f for k, f in cases.items() if k.rsplit(" ", 1)[0] in group}
            if part:
                timings.update(c.measure(part, args.repeat, min_time, warmup=1))
        hand_fg = timings["hand-written numpy forward+gradient"].median
        rows = []
        for name, entry in libs.items():
            if entry is None:
                rows.append([name, c.SKIPPED, "", "", "", ""])
                continue
            f, fg = timings[f"{name} forward"], timings[f"{name} forward+gradient"]
            rows.append(
                [
                    name,
                    c.fmt_ms(f.median),
                    f"{c.fmt_ms(fg.median)} (best {c.fmt_ms(fg.best)})",
                    f"{fg.median / f.median:.2f}x",
                    f"{fg.median / hand_fg:.2f}x",
                    "reference" if name.startswith("hand") else ("yes" if agree[name] else "NO"),
                ]
            )
        hand_peak = peak_bytes(libs["hand-written numpy"][1])
        dt_peak = peak_bytes(libs["difftape"][1])
        fused_peak = peak_bytes(libs["difftape.function replay (fused)"][1])
        plain_peak = peak_bytes(libs["difftape.function replay (unfused)"][1])
        hand_fwd_peak = peak_bytes(libs["hand-written numpy"][0])
        print(f"{title}; medians of {args.repeat} samples, ms")
        print(
            c.table(
                ["library", "forward", "forward+gradient", "cheap-gradient ratio", "f+g vs hand numpy", "grads agree"],
                rows,
            )
        )
        print(
            f"peak memory of forward+gradient (tracemalloc): hand-written numpy {hand_peak / 2**20:.1f} MiB, "
            f"difftape {dt_peak / 2**20:.1f} MiB ({dt_peak / hand_peak:.2f}x); "
            f"hand-written forward alone {hand_fwd_peak / 2**20:.1f} MiB; replay fused {fused_peak / 2**20:.1f} MiB, "
            f"unfused {plain_peak / 2**20:.1f} MiB"
        )
        fg_ratio = timings["difftape forward+gradient"].median / hand_fg
        fg_best = timings["difftape forward+gradient"].best / timings["hand-written numpy forward+gradient"].best
        what = f"{title.split(' ')[0]}: difftape f+g / hand numpy f+g"
        verdicts.append(c.target_line(what, fg_ratio, 1.10, "x", best=fg_best))
        mem_ratio = dt_peak / hand_peak
        verdicts.append(c.target_line(f"{title.split(' ')[0]}: difftape peak memory / hand numpy", mem_ratio, 1.3, "x"))
        kind = title.split(" ")[0]
        f16 = timings["difftape.function replay (fused) forward+gradient"]
        h16 = timings["hand-written numpy forward+gradient"]
        verdicts16.append(
            c.target_line(
                f"{kind}: replay (fused) f+g / hand numpy f+g",
                f16.median / h16.median,
                0.6 if kind == "elementwise" else 1.0,
                "x",
                best=f16.best / h16.best,
            )
        )
        verdicts16.append(
            c.target_line(f"{kind}: replay (fused) peak memory / eager difftape's", fused_peak / dt_peak, 1.0, "x")
        )
        print()
    print("targets (issue 6; times judged on medians):")
    print("\n".join(verdicts))
    print()
    print("targets (issue 16; times judged on medians):")
    print("\n".join(verdicts16))
    ms = numexpr_import_ms()
    print(
        f"numexpr: import after numpy {ms:.1f} ms (median of 5 fresh processes)"
        if ms is not None
        else f"numexpr: {c.SKIPPED}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
