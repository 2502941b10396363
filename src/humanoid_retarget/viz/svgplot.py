"""Small hand-written SVG line plots for self-contained HTML (no plotting library, no external links).

The SVG is meant to be inlined in HTML5, which needs no ``xmlns``; text is escaped.
"""

from __future__ import annotations

import html
import itertools
import math

import numpy as np


_IDS = itertools.count()


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
  """About ``n`` round tick values covering [lo, hi]."""
  if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
    return [lo]
  raw = (hi - lo) / max(n, 1)
  mag = 10 ** math.floor(math.log10(raw))
  step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
  start = math.ceil(lo / step - 1e-9) * step
  out = []
  v = start
  while v <= hi + 1e-9 * step:
    out.append(round(v, 10))
    v += step
  return out


def _fmt(v: float) -> str:
  if abs(v) >= 100 or v == int(v):
    return f"{v:.0f}"
  return f"{v:.3g}"


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
  """[start, stop) index ranges where a boolean mask is True."""
  m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
  d = np.diff(m.astype(np.int8))
  return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def decimate(x: np.ndarray, y: np.ndarray, max_points: int = 500) -> tuple[np.ndarray, np.ndarray]:
  """Fewer points for drawing, keeping each bucket's minimum and maximum (spikes stay visible)."""
  n = len(x)
  if n <= max_points:
    return x, y
  buckets = max_points // 2
  edges = np.linspace(0, n, buckets + 1).astype(int)
  idx = []
  for a, b in zip(edges[:-1], edges[1:]):
    if b <= a:
      continue
    seg = y[a:b]
    i, j = a + int(np.argmin(seg)), a + int(np.argmax(seg))
    idx += sorted({i, j})
  idx = np.array(idx)
  return x[idx], y[idx]


class Plot:
  """One chart: x and y ranges map into a ``width`` x ``height`` pixel box with margins for axes."""

  def __init__(self, width: int, height: int, xlim: tuple[float, float], ylim: tuple[float, float],
               title: str = "", xlabel: str = "", ylabel: str = "", margin: tuple[int, int, int, int] = (46, 10, 20, 28),
               xticks: bool = True, yticks: bool = True):
    self.w, self.h = width, height
    self.l, self.r, self.t, self.b = margin
    x0, x1 = xlim
    y0, y1 = ylim
    if x1 <= x0:
      x1 = x0 + 1.0
    if y1 <= y0:
      y0, y1 = y0 - 0.5, y0 + 0.5
    self.xlim, self.ylim = (x0, x1), (y0, y1)
    self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
    self._xticks, self._yticks = xticks, yticks
    self.items: list[str] = []
    self.free: list[str] = []  # drawn unclipped, above the plot (labels in the margins)
    self.legend_items: list[tuple[str, str, str]] = []

  def X(self, x):
    x0, x1 = self.xlim
    return self.l + (np.asarray(x, dtype=float) - x0) / (x1 - x0) * (self.w - self.l - self.r)

  def Y(self, y):
    y0, y1 = self.ylim
    return self.h - self.b - (np.asarray(y, dtype=float) - y0) / (y1 - y0) * (self.h - self.t - self.b)

  def band(self, x0: float, x1: float, color: str, opacity: float = 0.25, y0: float | None = None,
           y1: float | None = None) -> None:
    """A shaded rectangle over [x0, x1] (full height, or [y0, y1])."""
    top = self.t if y1 is None else float(self.Y(min(y1, self.ylim[1])))
    bottom = self.h - self.b if y0 is None else float(self.Y(max(y0, self.ylim[0])))
    xa, xb = float(self.X(x0)), float(self.X(x1))
    self.items.append(f'<rect x="{xa:.1f}" y="{top:.1f}" width="{max(xb - xa, 0.8):.1f}" height="{max(bottom - top, 0):.1f}" '
                      f'fill="{color}" fill-opacity="{opacity}"/>')

  def hline(self, y: float, color: str = "#999", dash: str = "4 3", width: float = 1.0) -> None:
    if not (self.ylim[0] <= y <= self.ylim[1]):
      return
    yy = float(self.Y(y))
    self.items.append(f'<line x1="{self.l}" x2="{self.w - self.r}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="{color}" '
                      f'stroke-width="{width}" stroke-dasharray="{dash}"/>')

  def line(self, x: np.ndarray, y: np.ndarray, color: str, width: float = 1.3, label: str = "",
           max_points: int = 500) -> None:
    x, y = decimate(np.asarray(x, float), np.asarray(y, float), max_points)
    y = np.clip(y, *self.ylim)
    pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(self.X(x), self.Y(y)))
    self.items.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="{width}" '
                      'stroke-linejoin="round"/>')
    if label:
      self.legend_items.append(("line", color, label))

  def ticks(self, xs: np.ndarray, y0: float, y1: float, color: str, width: float = 1.5, label: str = "") -> None:
    """Vertical marks at ``xs`` spanning [y0, y1] (event markers)."""
    ya, yb = float(self.Y(y0)), float(self.Y(y1))
    for x in np.asarray(xs, float):
      xx = float(self.X(x))
      self.items.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{ya:.1f}" y2="{yb:.1f}" stroke="{color}" '
                        f'stroke-width="{width}"/>')
    if label:
      self.legend_items.append(("line", color, label))

  def points(self, x: np.ndarray, y: np.ndarray, color: str, r: float = 2.5, label: str = "") -> None:
    for a, b in zip(self.X(x), self.Y(np.clip(y, *self.ylim))):
      self.items.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="{r}" fill="{color}"/>')
    if label:
      self.legend_items.append(("point", color, label))

  def legend_band(self, color: str, label: str, opacity: float = 0.25) -> None:
    self.legend_items.append(("band", color, label, opacity))  # type: ignore[arg-type]

  def text(self, x: float, y: float, s: str, anchor: str = "start", size: int = 10, color: str = "#333",
           dx: float = 0.0) -> None:
    """Text at data coordinates (not clipped, so it may sit in the margins)."""
    self.free.append(f'<text x="{float(self.X(x)) + dx:.1f}" y="{float(self.Y(y)):.1f}" font-size="{size}" '
                     f'text-anchor="{anchor}" fill="{color}">{html.escape(s)}</text>')

  def _axes(self) -> list[str]:
    out = []
    x0, y0 = self.l, self.h - self.b
    x1, y1 = self.w - self.r, self.t
    out.append(f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="#fff" stroke="#bbb"/>')
    if self._yticks:
      for v in nice_ticks(*self.ylim, n=4):
        yy = float(self.Y(v))
        out.append(f'<line x1="{x0}" x2="{x1}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{x0 - 4}" y="{yy + 3:.1f}" font-size="9" text-anchor="end" fill="#555">{_fmt(v)}</text>')
    if self._xticks:
      for v in nice_ticks(*self.xlim, n=6):
        xx = float(self.X(v))
        out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{y0}" y2="{y0 + 3}" stroke="#888"/>')
        out.append(f'<text x="{xx:.1f}" y="{y0 + 13}" font-size="9" text-anchor="middle" fill="#555">{_fmt(v)}</text>')
    if self.xlabel:
      out.append(f'<text x="{x1}" y="{self.h - 2}" font-size="9" text-anchor="end" fill="#555">'
                 f'{html.escape(self.xlabel)}</text>')
    if self.ylabel:
      out.append(f'<text x="10" y="{(y0 + y1) / 2:.1f}" font-size="9" text-anchor="middle" fill="#555" '
                 f'transform="rotate(-90 10 {(y0 + y1) / 2:.1f})">{html.escape(self.ylabel)}</text>')
    if self.title:
      out.append(f'<text x="{x0}" y="{self.t - 6}" font-size="11" font-weight="bold" fill="#222">'
                 f'{html.escape(self.title)}</text>')
    return out

  def _legend(self) -> list[str]:
    out = []
    x = self.w - self.r
    for item in reversed(self.legend_items):
      kind, color, label = item[0], item[1], item[2]
      tw = 6 * len(label) + 18
      x -= tw
      y = self.t - 10
      if kind == "band":
        out.append(f'<rect x="{x}" y="{y - 6}" width="12" height="9" fill="{color}" fill-opacity="{item[3]}"/>')
      elif kind == "point":
        out.append(f'<circle cx="{x + 6}" cy="{y - 1.5}" r="3" fill="{color}"/>')
      else:
        out.append(f'<line x1="{x}" x2="{x + 12}" y1="{y - 1.5}" y2="{y - 1.5}" stroke="{color}" stroke-width="2"/>')
      out.append(f'<text x="{x + 15}" y="{y + 2}" font-size="9" fill="#333">{html.escape(label)}</text>')
    return out

  def svg(self) -> str:
    cid = f"clip{next(_IDS)}"
    clip = f'<clipPath id="{cid}"><rect x="{self.l}" y="{self.t}" width="{self.w - self.l - self.r}" ' \
           f'height="{self.h - self.t - self.b}"/></clipPath>'
    body = "".join(self.items)
    parts = [f'<svg class="plot" width="{self.w}" height="{self.h}" viewBox="0 0 {self.w} {self.h}" role="img">',
             f"<defs>{clip}</defs>", *self._axes(), f'<g clip-path="url(#{cid})">{body}</g>',
             *self.free, *self._legend(), "</svg>"]
    return "".join(parts)
