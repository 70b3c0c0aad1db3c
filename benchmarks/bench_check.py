"""``check`` time against input size: full vs directional mode, and against torch's gradcheck.

The program is the issue's ``sum(tanh(W @ x) ** 2)`` with ``W`` of shape (n, n) and ``x`` of shape
(n,), for several n. Each row times ``difftape.answers.checker.check`` (what ``difftape check``
runs, without process start-up) in full mode (every element: the cost grows with n**2 elements)
and in directional mode (3 random directions: about constant in the number of elements), and,
where torch is installed, ``torch.autograd.gradcheck(fast_mode=True)`` on the same function in
float64 (PyTorch's own fast mode), as a ratio measured in the same run.

    python benchmarks/bench_check.py [--quick] [--sizes 10,30,100,300]
"""

from __future__ import annotations

import time

import numpy as np
from _common import arguments, header, optional, table

from difftape.answers.checker import check
from difftape.answers.program import Program


def timed(fn, repeat: int) -> float:
    """Median seconds of ``repeat`` calls (after one warm-up)."""
    fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return float(np.median(samples))


def main() -> None:
    args = arguments(__doc__, sizes=("10,30,100,300", "matrix sizes n (W is n x n)"))
    header("check: time against input size (full vs directional) and torch.autograd.gradcheck(fast_mode)", args.quick)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.quick:
        sizes = [s for s in sizes if s <= 100] or sizes[:1]
    repeat = 1 if args.quick else 3
    torch = optional("torch")
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        at = {"W": rng.standard_normal((n, n)) / np.sqrt(n), "x": rng.standard_normal(n)}
        program = Program("sum(tanh(W @ x) ** 2)", at=at)
        elements = n * n + n
        t_dir = timed(lambda program=program: check(program, mode="directional"), repeat)
        t_full = None
        if elements <= 11_000 or not args.quick:
            t_full = timed(lambda program=program: check(program, mode="full"), repeat)
        t_torch = None
        if torch is not None:
            W = torch.tensor(at["W"], requires_grad=True)
            x = torch.tensor(at["x"], requires_grad=True)

            def torch_check(W=W, x=x):
                assert torch.autograd.gradcheck(lambda w, v: (torch.tanh(w @ v) ** 2).sum(), (W, x), fast_mode=True)

            t_torch = timed(torch_check, repeat)
        rows.append([
            n, elements,
            f"{t_full:.3f}" if t_full is not None else "-",
            f"{t_dir:.3f}",
            f"{t_torch:.3f}" if t_torch is not None else "skipped (not installed)",
            f"{t_dir / t_torch:.2f}x" if t_torch else "-",
        ])
    print(table(["n", "input elements", "full (s)", "directional (s)", "torch fast gradcheck (s)",
                 "directional / torch"], rows))
    print()
    print("target: the 300 x 300 case checks in under 3 s (directional; `difftape check` end to end adds start-up)")


if __name__ == "__main__":
    main()
