"""Benchmark: the layout difftape's matmul picks for a float64 product, against numpy's ``a @ b``.

Run from the repository root:  python benchmarks/bench_matmul.py [--quick] [--repeat N]

numpy hands a row-major product to BLAS as the column-major product of the transposes. OpenBLAS's
dgemm (numpy's wheels ship it) is slower when that product's first dimension is the small one: a tall
product ``(m, k) @ (k, n)`` with ``m >> n``, as in a layer ``W @ x`` over a batch of columns and its
gradient ``W.T @ g``. difftape's matmul (ops/linalg.py, ``_matmul``) computes such a product as
``(b.T @ a.T).T`` when ``m >= TALL * n`` and ``m * k >= TALL_MIN``: this script times both layouts of
shapes on either side of the rule, and prints which one the rule picks, its ratio to numpy's
``a @ b`` and whether the two results are equal bit for bit. float32 (whose sgemm measured the other
way round) is printed to show why the rule is float64's only.
"""

from __future__ import annotations

import _common as c
import numpy as np

from difftape.ops import OPS, linalg

SHAPES = [
    (1000, 1000, 64),
    (1000, 1000, 16),
    (2000, 500, 100),
    (4000, 4000, 16),
    (3000, 300, 300),
    (1000, 1000, 250),
    (1000, 1000, 1000),
    (64, 1000, 1000),
    (300, 300, 32),
    (1000, 64, 64),
]
QUICK = [(600, 600, 32), (64, 600, 600), (300, 300, 32)]


def main() -> int:
    args = c.arguments(__doc__)
    c.header("matmul layout: numpy's a @ b and difftape's choice", args.quick)
    print(f"rule: float64 (m, k) @ (k, n) as (b.T @ a.T).T when m >= {linalg.TALL} * n and m * k >= {linalg.TALL_MIN}"
          f"; BLAS is OpenBLAS here: {linalg._TALL_FIRST}\n")
    min_time = 0.01 if args.quick else 0.1
    rng = np.random.default_rng(0)
    rows = []
    matmul = OPS["matmul"].forward
    for dtype in (np.float64, np.float32):
        for m, k, n in QUICK if args.quick else SHAPES:
            a = rng.standard_normal((m, k)).astype(dtype)
            b = rng.standard_normal((k, n)).astype(dtype)
            cases = {
                "numpy": lambda a=a, b=b: a @ b,
                "transposed": lambda a=a, b=b: (b.T @ a.T).T,
                "difftape": lambda a=a, b=b: matmul(a, b),
            }
            t = c.measure(cases, args.repeat, min_time, warmup=1)
            picked = matmul(a, b)
            tall = not picked.flags.c_contiguous
            rows.append(
                [
                    f"{m}x{k} @ {k}x{n}",
                    np.dtype(dtype).name,
                    c.fmt_ms(t["numpy"].median),
                    c.fmt_ms(t["transposed"].median),
                    "transposed" if tall else "numpy's",
                    f"{t['difftape'].median / t['numpy'].median:.2f}x",
                    "yes" if np.array_equal(picked, a @ b) else "ulps",
                ]
            )
    print(c.table(["product", "dtype", "a @ b ms", "(b.T @ a.T).T ms", "difftape picks", "difftape / numpy",
                   "bit-equal"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
