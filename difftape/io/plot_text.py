"""Curves drawn in the terminal with Unicode braille: each character is a 2 x 4 grid of dots.

One panel per curve (f, f', f''), stacked, sharing the x axis; each panel has its own y range
(labelled at its top, middle and bottom) and the x axis carries "nice" tick values. Segments
that the sweep marks as gaps (jumps, poles, nan) are not drawn, and segments leaving the
panel are clipped to it, so a pole leaves the picture instead of smearing a wall of dots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Braille dot bits by (column 0..1, row 0..3) within a cell.
_DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
_BRAILLE = 0x2800


class Canvas:
    """A grid of ``cols`` x ``rows`` braille cells: ``2*cols`` x ``4*rows`` dots, (0, 0) top left."""

    def __init__(self, cols: int, rows: int) -> None:
        self.cols, self.rows = cols, rows
        self.width, self.height = 2 * cols, 4 * rows
        self.bits = np.zeros((rows, cols), dtype=np.int64)

    def dot(self, px: int, py: int) -> None:
        if 0 <= px < self.width and 0 <= py < self.height:
            self.bits[py // 4, px // 2] |= _DOTS[px % 2][py % 4]

    def line(self, x0: float, y0: float, x1: float, y1: float) -> None:
        """The segment between two dot positions, clipped to the canvas first (Liang-Barsky)."""
        clipped = _clip(x0, y0, x1, y1, -0.5, -0.5, self.width - 0.5, self.height - 0.5)
        if clipped is None:
            return
        x0, y0, x1, y1 = clipped
        n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        for i in range(n + 1):
            t = i / n
            self.dot(int(round(x0 + (x1 - x0) * t)), int(round(y0 + (y1 - y0) * t)))

    def text_rows(self) -> list[str]:
        return ["".join(chr(_BRAILLE + int(b)) for b in row) for row in self.bits]


def _clip(x0: float, y0: float, x1: float, y1: float, xmin: float, ymin: float, xmax: float,
          ymax: float) -> tuple[float, float, float, float] | None:
    dx, dy = x1 - x0, y1 - y0
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, x0 - xmin), (dx, xmax - x0), (-dy, y0 - ymin), (dy, ymax - y0)):
        if p == 0:
            if q < 0:
                return None
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return None
    return x0 + t0 * dx, y0 + t0 * dy, x0 + t1 * dx, y0 + t1 * dy


def nice_ticks(lo: float, hi: float, most: int) -> list[float]:
    """Round values (1, 2 or 5 times a power of ten apart) in [lo, hi], at most ``most`` of them."""
    if not hi > lo or most < 2:
        return [lo]
    raw = (hi - lo) / (most - 1)
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        step = m * power
        if (hi - lo) / step <= most - 1:
            break
    first = math.ceil(lo / step - 1e-9)
    ticks = []
    for i in range(most + 1):  # at most `most` fit; the bound also guards against a step below rounding
        v = (first + i) * step
        if v > hi + 1e-9 * step:
            break
        ticks.append(0.0 if abs(v) < 1e-12 * step else v)
    return ticks or [lo]


def number(v: float) -> str:
    """A tick label: short (4 significant digits), no trailing zeros."""
    if v == 0:
        return "0"
    text = f"{v:.4g}"
    return text.replace("e+0", "e").replace("e-0", "e-").replace("e+", "e")


def render(
    x: np.ndarray,
    curves: Sequence[tuple[str, np.ndarray, np.ndarray]],
    *,
    xlabel: str,
    width: int = 80,
    height: int = 24,
    ylimits: Sequence[tuple[float, float]] | None = None,
) -> str:
    """Panels of ``(title, y, gaps)``, one per curve, fitted into ``width`` x ``height`` characters."""
    from difftape.answers.plot import limits

    n = len(curves)
    lims = list(ylimits) if ylimits is not None else [limits(y) for _, y, _ in curves]
    # per panel: a title line and the plot rows; below the last: the axis, the tick labels
    rows = max(3, min(16, (height - 3 - n) // n))
    marks = [_row_labels(lo, hi, rows) for lo, hi in lims]
    gutter = max(len(s) for m in marks for s in m.values()) + 1
    cols = max(10, width - gutter - 2)
    xlo, xhi = float(x[0]), float(x[-1])
    out: list[str] = []
    for (title, y, gaps), (lo, hi), labels in zip(curves, lims, marks):
        canvas = Canvas(cols, rows)
        px = (x - xlo) / (xhi - xlo) * (canvas.width - 1)
        with np.errstate(all="ignore"):
            py = (hi - y) / (hi - lo) * (canvas.height - 1)
        _draw(canvas, px, py, gaps)
        out.append(" " * gutter + " " + title)
        for r, text in enumerate(canvas.text_rows()):
            label = labels.get(r)
            out.append((label or "").rjust(gutter) + ("┤" if label is not None else "│") + text)
    ticks = nice_ticks(xlo, xhi, max(2, cols // 10))
    axis = ["─"] * cols
    under = [" "] * cols
    for t in ticks:
        c = int(round((t - xlo) / (xhi - xlo) * (cols - 1)))
        axis[c] = "┬"
        text = number(t)
        start = max(0, min(c - len(text) // 2, cols - len(text)))
        if all(ch == " " for ch in under[max(0, start - 1):start + len(text) + 1]):
            under[start:start + len(text)] = list(text)
    out.append(" " * gutter + "└" + "".join(axis))
    ticks_line = " " * (gutter + 1) + "".join(under).rstrip()
    if len(ticks_line) + 3 + len(xlabel) <= width:
        ticks_line += f"   {xlabel}"
    out.append(ticks_line)
    return "\n".join(out)


def _row_labels(lo: float, hi: float, rows: int) -> dict[int, str]:
    """{row: label} for round y values in [lo, hi] (each on the row of characters it falls in)."""
    out: dict[int, str] = {}
    dots = 4 * rows
    for t in nice_ticks(lo, hi, max(2, rows // 3 + 1)):
        row = int(round((hi - t) / (hi - lo) * (dots - 1))) // 4
        if 0 <= row < rows and row not in out and row - 1 not in out:
            out[row] = number(t)
    if len(out) < 2:  # the round values are too far apart: label the edges too
        for row, v in ((0, hi), (rows - 1, lo)):
            if all(abs(row - r) > 1 for r in out):
                out[row] = number(v)
    return out


def _draw(canvas: Canvas, px: np.ndarray, py: np.ndarray, gaps: np.ndarray) -> None:
    ok = np.isfinite(py)
    n = len(px)
    if n < 2:
        drawn = np.zeros(0, dtype=bool)
    else:
        drawn = ~gaps & ok[:-1] & ok[1:]
        with np.errstate(invalid="ignore"):
            inside = (py >= -0.5) & (py <= canvas.height - 0.5)
        easy = drawn & inside[:-1] & inside[1:]
        _segments(canvas, px[:-1][easy], py[:-1][easy], px[1:][easy], py[1:][easy])
        for i in np.flatnonzero(drawn & ~easy).tolist():  # leaving the panel: clipped one by one
            canvas.line(px[i], py[i], px[i + 1], py[i + 1])
    # a point whose segments on both sides are not drawn is still shown
    left = np.concatenate([[False], drawn])
    right = np.concatenate([drawn, [False]])
    with np.errstate(invalid="ignore"):
        alone = ok & ~left & ~right & (py >= -0.5) & (py <= canvas.height - 0.5)
    for i in np.flatnonzero(alone).tolist():
        canvas.dot(int(round(px[i])), int(round(py[i])))


def _segments(canvas: Canvas, x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray) -> None:
    """Many segments inside the canvas at once: each sampled once per dot it crosses."""
    if x0.size == 0:
        return
    steps = (np.maximum(np.abs(x1 - x0), np.abs(y1 - y0)).astype(np.int64) + 1)
    seg = np.repeat(np.arange(x0.size), steps + 1)
    first = np.repeat(np.cumsum(steps + 1) - (steps + 1), steps + 1)
    t = (np.arange(seg.size) - first) / steps[seg]
    dx = np.clip(np.rint(x0[seg] + (x1 - x0)[seg] * t), 0, canvas.width - 1).astype(np.int64)
    dy = np.clip(np.rint(y0[seg] + (y1 - y0)[seg] * t), 0, canvas.height - 1).astype(np.int64)
    bits = np.array(_DOTS, dtype=np.int64)[dx % 2, dy % 4]
    np.bitwise_or.at(canvas.bits, (dy // 4, dx // 2), bits)
