"""Compare the eager tape and ``difftape.function`` replay of two revisions, in one run.

For "no benchmark gets more than 5% slower": each revision is checked out into a temporary
worktree and timed in its own child process, alternately (A B A B ...), so that a burst of load
on a shared machine hits both alike. A figure is the smallest CPU time (``time.process_time``)
per operation of the 100-op scalar and 2x2 chains of ``bench_tape_chain.py``, forward+gradient,
over many repeats: CPU time ignores time spent descheduled, and the minimum the rest of the noise.

    python benchmarks/compare_revisions.py BASE [NEW]     # NEW defaults to the working tree
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r'''
import json, sys, time
sys.path.insert(0, sys.argv[1])
sys.path.insert(1, sys.argv[1] + "/benchmarks")
import numpy as np
import difftape as dt
import bench_tape_chain as b
out = {}
for label, shape in (("scalar", ()), ("2x2", (2, 2))):
    eager, replay, _, _ = b.difftape_cases(shape)
    for name, fn in (("eager", eager), ("replay", replay)):
        for _ in range(20):
            fn()
        best = float("inf")
        for _ in range(int(sys.argv[2])):
            t = time.process_time()
            for _ in range(20):
                fn()
            best = min(best, (time.process_time() - t) / 20 / b.N_OPS)
        out[f"{label} {name}"] = best * 1e6
print(json.dumps(out))
'''


def measure(path: Path, repeats: int) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(repeats)], capture_output=True, text=True,
                          check=True, cwd=tempfile.gettempdir())
    return json.loads(done.stdout)


def main() -> None:
    base = sys.argv[1] if len(sys.argv) > 1 else "HEAD~1"
    new = sys.argv[2] if len(sys.argv) > 2 else None
    rounds, repeats = 6, 40
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for label, rev in (("base", base), ("new", new)):
            if rev is None:
                trees[label] = REPO
                continue
            path = Path(tmp) / label
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(path), rev], check=True)
            trees[label] = path
        try:
            best: dict[str, dict[str, float]] = {"base": {}, "new": {}}
            for _ in range(rounds):
                for label in ("base", "new"):
                    for key, us in measure(trees[label], repeats).items():
                        best[label][key] = min(best[label].get(key, float("inf")), us)
        finally:
            for label, rev in (("base", base), ("new", new)):
                if rev is not None:
                    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(trees[label])])
    print(f"base {base}, new {new or 'working tree'}: best CPU us per op over {rounds} x {repeats} samples")
    print(f"{'case':<16}{'base':>10}{'new':>10}{'new/base':>10}")
    for key in best["base"]:
        b, n = best["base"][key], best["new"][key]
        print(f"{key:<16}{b:>10.3f}{n:>10.3f}{n / b:>10.3f}")


if __name__ == "__main__":
    main()
