"""Pictures with matplotlib (an optional extra: ``pip install "difftape[plot]"``).

matplotlib is imported here only, when a picture is asked for (``plot --output``,
``check --plot``), never when the command starts. Figures are made with matplotlib's
object API on the Agg canvas (no pyplot, no GUI backend, no global state), and the format
follows the file's extension: .png, .svg or .pdf.

:func:`draw_function` draws a sweep (f, f', f'' in panels sharing x, gaps as breaks in the
line); :func:`draw_check` draws a gradient check: the tape, analytic and numeric gradient per
element and their relative differences on a log axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from difftape.errors import DifftapeError

FORMATS = (".png", ".svg", ".pdf")
INSTALL = 'pip install "difftape[plot]"'
#: Curve colours, one per panel (matplotlib's default cycle: blue, orange, green, red).
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")
#: A relative difference of exactly 0 is drawn at this height on the log axis.
EXACT = 1e-17


def figure_format(path: str) -> str:
    """The format of ``path`` from its extension; a clear error for one matplotlib is not asked to write."""
    import os

    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise DifftapeError("usage", f"cannot tell the picture format of {path!r}: end the name with "
                                     f"{', '.join(FORMATS)}")
    return ext[1:]


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise DifftapeError("environment", f"drawing a picture needs matplotlib, which is not installed for this "
                                           f"Python; install it with: {INSTALL}") from None
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str) -> None:
    fmt = figure_format(path)
    try:
        fig.savefig(path, format=fmt, metadata=_metadata(fmt))
    except OSError as err:
        raise DifftapeError("usage", f"cannot write {path}: {err.strerror or err}") from None


def _metadata(fmt: str) -> dict[str, Any] | None:
    """No creation dates or software versions in the file: the same plot gives the same bytes."""
    if fmt == "png":
        return {"Software": None}
    if fmt == "svg":
        return {"Date": None, "Creator": None}
    if fmt == "pdf":
        return {"CreationDate": None, "Creator": None, "Producer": None}
    return None


def with_gaps(x: np.ndarray, y: np.ndarray, gaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x and y with a nan inserted after each point whose segment to the next is a gap (matplotlib breaks there)."""
    cut = np.flatnonzero(gaps) + 1
    if cut.size == 0:
        return x, y
    return np.insert(x.astype(np.float64), cut, math.nan), np.insert(y.astype(np.float64), cut, math.nan)


def draw_function(
    path: str,
    x: np.ndarray,
    curves: Sequence[tuple[str, np.ndarray, np.ndarray]],
    *,
    title: str,
    xlabel: str,
    ylimits: Sequence[tuple[float, float]] | None = None,
) -> None:
    """Panels of ``(label, y, gaps)`` over ``x`` (one colour each), written to ``path``."""
    from difftape.answers.plot import limits

    n = len(curves)
    fig = _figure(8.0, 2.0 + 2.0 * n)
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    lims = list(ylimits) if ylimits is not None else [limits(y) for _, y, _ in curves]
    for k, (ax, (label, y, gaps), (lo, hi)) in enumerate(zip(axes, curves, lims)):
        gx, gy = with_gaps(x, y, gaps)
        ax.plot(gx, gy, color=COLOURS[k % len(COLOURS)], linewidth=1.6, label=label)
        ax.set_ylim(lo, hi)
        ax.set_ylabel(label)
        ax.axhline(0.0, color="#999999", linewidth=0.6, zorder=0)
        ax.grid(True, color="#dddddd", linewidth=0.5)
    axes[-1].set_xlabel(xlabel)
    axes[-1].set_xlim(float(x[0]), float(x[-1]))
    axes[0].set_title(title)
    fig.tight_layout()
    _save(fig, path)


def draw_check(
    path: str,
    names: Sequence[str],
    tape: Sequence[np.ndarray],
    numeric: Sequence[np.ndarray | None],
    analytic: Sequence[np.ndarray | None],
    *,
    rtol: float,
    title: str = "",
) -> None:
    """A gradient check: per input, its elements (flattened) along x.

    Top: the tape gradient (line), the analytic (circles) and numeric (crosses) references.
    Bottom: ``|tape - ref| / |ref|`` for each reference on a log axis, with ``rtol`` as a line;
    an exact match is drawn at 1e-17, the bottom of the axis.
    """
    fig = _figure(8.0, 6.0)
    top, bottom = fig.subplots(2, 1, sharex=True)
    start = 0
    ticks, ticklabels = [], []
    drawn: set[str] = set()

    def once(label: str) -> str | None:
        """A legend label the first time (the same series of the next input is not listed again)."""
        if label in drawn:
            return None
        drawn.add(label)
        return label

    for name, t, num, ana in zip(names, tape, numeric, analytic):
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        idx = np.arange(start, start + t.size)
        top.plot(idx, t, color=COLOURS[0], marker=".", linewidth=1.2, label=once("tape"))
        for ref, colour, marker, label in ((ana, COLOURS[1], "o", "analytic"), (num, COLOURS[2], "x", "numeric")):
            if ref is None:
                continue
            r = np.asarray(ref, dtype=np.float64).reshape(-1)
            top.plot(idx, r, linestyle="none", marker=marker, markersize=6, markerfacecolor="none",
                     color=colour, label=once(label))
            with np.errstate(all="ignore"):
                rel = np.abs(t - r) / np.abs(r)
            rel = np.where(t == r, EXACT, rel)
            rel = np.where(np.isfinite(rel), np.maximum(rel, EXACT), np.nan)
            bottom.plot(idx, rel, linestyle="none", marker=marker, markersize=6, markerfacecolor="none",
                        color=colour, label=once(f"vs {label}"))
        ticks.append(start + (t.size - 1) / 2)
        ticklabels.append(name)
        if start:
            for ax in (top, bottom):
                ax.axvline(start - 0.5, color="#bbbbbb", linewidth=0.8)
        start += t.size
    bottom.set_yscale("log")
    bottom.axhline(rtol, color=COLOURS[3], linewidth=1.0, linestyle="--", label=f"rtol {rtol:g}")
    lo, hi = bottom.get_ylim()
    bottom.set_ylim(min(lo, EXACT / 3), max(hi, rtol * 10))
    bottom.set_ylabel("relative difference")
    top.set_ylabel("gradient")
    bottom.set_xticks(ticks)
    bottom.set_xticklabels(ticklabels)
    bottom.set_xlabel("input (elements in order)")
    if title:
        top.set_title(title)
    top.legend(loc="best", fontsize="small")
    bottom.legend(loc="best", fontsize="small")
    top.grid(True, color="#dddddd", linewidth=0.5)
    bottom.grid(True, color="#dddddd", linewidth=0.5)
    fig.tight_layout()
    _save(fig, path)


def plot_check(res: Any, path: str) -> None:
    """``check --plot FILE``: :func:`draw_check` of a CheckResult (duck-typed: ``inputs``, each a row)."""
    names = [n for n, row in res.inputs.items() if row.tape is not None]
    if not names:
        raise DifftapeError("usage", "check --plot: there is no gradient to draw (nothing is differentiated)")
    rows = [res.inputs[n] for n in names]
    draw_check(path, names, [r.tape for r in rows], [r.numeric for r in rows], [r.analytic for r in rows],
               rtol=res.rtol, title=f"check {' '.join(res.of.split())}")
