"""Self-contained HTML report of an evaluation run (``humanoid-retarget eval --json``).

Tables: the aggregate and each method's aggregate, then every clip's metrics grouped by method.
Plots (inline SVG, per clip, when the eval JSON names the clip's motion file under ``motion``):
events on a time line (joint jumps, self-collisions, near-limit and penetration frames), the lowest
foot point of each foot with its contact phases, and every joint's trajectory against its limits.
The page links to nothing outside itself.
"""

from __future__ import annotations

import datetime as _dt
import html
import os
from dataclasses import dataclass

import numpy as np

from humanoid_retarget.viz.svgplot import Plot, runs

METRICS = [  # key, column title, unit/explanation, lower is better
  ("frames", "frames", "", False),
  ("joint_jump_pct", "jump %", "frames where a joint moves > 0.5 rad in 1/30 s", True),
  ("self_collision_pct", "collision %", "frames with a self-collision (hands excluded)", True),
  ("joint_limit_pct", "limit %", "frames with a joint within 0.05 rad of its bound", True),
  ("penetration_pct", "penetration %", "frames with a foot below -2 cm", True),
  ("lowest_foot_mean_cm", "lowest foot cm", "mean height of the lower foot", False),
  ("foot_skate_cms", "skate cm/s", "foot speed while in contact", True),
  ("keypoint_error_cm", "key-point cm", "tracked points against the scaled human", True),
  ("max_joint_vel", "max joint vel rad/s", "", False),
  ("velocity_limit_pct", "vel-limit %", "frames above a joint velocity limit", True),
]
EVENT_COLORS = {"joint jump": "#d62728", "self-collision": "#9467bd", "near limit": "#ff7f0e",
                "penetration": "#8c564b", "velocity limit": "#e377c2"}
FOOT_COLORS = {"left": "#1f77b4", "right": "#2ca02c"}

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px} .muted{color:#777;font-size:12px}
table{border-collapse:collapse;font-size:12px;background:#fff;margin:6px 0 12px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f0f2f5;position:sticky;top:0;white-space:normal;max-width:80px;vertical-align:bottom} td.name,th.name{text-align:left}
td.bad{background:#fde2e1} td.good{background:#e6f4ea} td.na{color:#aaa}
details{background:#fff;border:1px solid #ddd;border-radius:6px;margin:10px 0;padding:6px 10px}
summary{cursor:pointer;font-weight:600;font-size:14px} .grid{display:flex;flex-wrap:wrap;gap:4px}
svg.plot{background:#fff;font-family:inherit} .fail{color:#b00020;font-family:monospace;font-size:12px}
.legend span{display:inline-block;margin-right:12px;font-size:12px}
.sw{display:inline-block;width:12px;height:10px;margin-right:4px;vertical-align:middle}
"""


@dataclass
class ReportOptions:
  """Report settings.

  Attributes:
    title: page title.
    plots: draw per-clip plots when the motion files are found.
    max_plot_clips: draw plots for at most this many clips (tables list all).
    joint_columns: joint panels per row.
  """

  title: str = "Retargeting evaluation"
  plots: bool = True
  max_plot_clips: int = 60
  joint_columns: int = 4


def _cell(key: str, v, best: float | None = None) -> str:
  if v is None or (isinstance(v, float) and not np.isfinite(v)):
    return '<td class="na">-</td>'
  if key == "frames" or key == "clips":
    return f"<td>{int(v)}</td>"
  cls = ""
  lower = dict((k, lb) for k, _, _, lb in METRICS).get(key, False)
  if lower and key.endswith("_pct") and v > 0:
    cls = ' class="bad"'
  elif lower and best is not None and abs(v - best) < 1e-9:
    cls = ' class="good"'
  return f"<td{cls}>{v:.2f}</td>"


def _metric_table(rows: list[tuple[str, dict]], first: str, with_counts: bool = False, compete_from: int = 0) -> str:
  """A table with one row per (name, metrics dict); the best value of each column among the rows from
  ``compete_from`` on is marked."""
  keys = [k for k, *_ in METRICS if any(k in r for _, r in rows)]
  head = f'<tr><th class="name">{html.escape(first)}</th>' + ("<th>clips</th>" if with_counts else "")
  titles = {k: (t, tip) for k, t, tip, _ in METRICS}
  head += "".join(f'<th title="{html.escape(titles[k][1])}">{html.escape(titles[k][0])}</th>' for k in keys) + "</tr>"
  best = {}
  if len(rows) - compete_from > 1:
    for k in keys:
      vals = [r.get(k) for _, r in rows[compete_from:] if isinstance(r.get(k), (int, float))]
      if vals:
        best[k] = min(vals, key=abs) if k == "lowest_foot_mean_cm" else min(vals)
  body = []
  for i, (name, r) in enumerate(rows):
    cells = f'<td class="name">{html.escape(str(name))}</td>'
    if with_counts:
      cells += f"<td>{int(r.get('clips', 0))}</td>"
    cells += "".join(_cell(k, r.get(k), best.get(k) if i >= compete_from else None) for k in keys)
    body.append(f"<tr>{cells}</tr>")
  return f"<table>{head}{''.join(body)}</table>"


def resolve_motion_path(path: str, eval_dir: str) -> str | None:
  """A clip's motion file: as given, else relative to the eval JSON's folder."""
  if not path:
    return None
  for p in (path, os.path.join(eval_dir, path)):
    if os.path.isfile(p):
      return p
  return None


def clip_plots(motion, robot, opts: ReportOptions) -> str:
  """SVG plots of one motion: event time line, foot heights with contacts, joints against limits."""
  from humanoid_retarget.eval.metrics import (
    LIMIT_RAD, PENETRATION_M, foot_lowest_points, joint_jump_mask, self_collision_mask,
  )

  T = motion.num_frames
  t = np.arange(T) / motion.fps
  q = motion.dof_pos
  names = motion.joint_names
  jidx = [robot.model.joint_names.index(n) for n in names]
  lo, hi = robot.model.joint_range[jidx, 0], robot.model.joint_range[jidx, 1]
  jumps = joint_jump_mask(q, motion.fps)
  coll = self_collision_mask(robot, motion)
  near_j = ((q - lo) < LIMIT_RAD) | ((hi - q) < LIMIT_RAD)
  low = foot_lowest_points(robot, motion)
  pen = low.min(axis=1) < PENETRATION_M
  vel = np.zeros_like(q)
  if T > 1:
    vel[1:] = np.abs(np.diff(q, axis=0)) * motion.fps
  vmask = (vel > robot.velocity_limits[jidx]).any(axis=1)
  dt = 1.0 / motion.fps
  W = 900
  xlim = (0.0, max(t[-1] + dt, dt))
  out = []

  # Events.
  events = [("joint jump", jumps), ("self-collision", coll), ("near limit", near_j.any(axis=1)),
            ("penetration", pen), ("velocity limit", vmask)]
  ev = Plot(W, 34 + 18 * len(events), xlim, (0, len(events)), title="Events", xlabel="time (s)",
            margin=(110, 10, 20, 26), yticks=False)
  for r, (name, mask) in enumerate(events):
    y0 = len(events) - r - 1
    ev.band(xlim[0], xlim[1], "#f4f4f4", 1.0, y0 + 0.1, y0 + 0.9)
    for a, b in runs(mask):
      ev.band(t[a], t[b - 1] + dt, EVENT_COLORS[name], 0.85, y0 + 0.15, y0 + 0.85)
    ev.text(xlim[0], y0 + 0.35, f"{name} ({100 * mask.mean():.1f}%)", anchor="end", dx=-6)
  out.append(ev.svg())

  # Feet.
  lo_cm = low * 100.0
  ymin = min(float(lo_cm.min()), PENETRATION_M * 100 - 1.0)
  ymax = max(float(np.percentile(lo_cm, 99)), 5.0) + 2.0
  fp = Plot(W, 210, xlim, (ymin, ymax), title="Lowest foot point and contact phases", xlabel="time (s)",
            ylabel="height (cm)")
  span = ymax - ymin
  for s, side in enumerate(("left", "right")):
    for a, b in runs(motion.contacts[:, s]):
      # Contact phases as bands in the lower (left) or upper (right) half of a strip at the bottom.
      fp.band(t[a], t[b - 1] + dt, FOOT_COLORS[side], 0.35, ymin + (0.5 * s) * 0.08 * span,
              ymin + (0.5 * s + 0.5) * 0.08 * span)
  fp.hline(0.0, "#666", "3 3")
  fp.hline(PENETRATION_M * 100, "#d62728", "5 3")
  for a, b in runs(pen):
    fp.band(t[a], t[b - 1] + dt, EVENT_COLORS["penetration"], 0.2)
  for s, side in enumerate(("left", "right")):
    fp.line(t, lo_cm[:, s], FOOT_COLORS[side], label=f"{side} foot")
  fp.legend_band(FOOT_COLORS["left"], "contact (bottom strip: left, right)", 0.35)
  fp.legend_items.append(("line", "#d62728", "penetration bound"))
  out.append(fp.svg())

  # Joints.
  cols = max(1, opts.joint_columns)
  pw = W // cols - 4
  panels = []
  jt = np.flatnonzero(jumps)
  for j, n in enumerate(names):
    pad = 0.08 * (hi[j] - lo[j])
    p = Plot(pw, 120, xlim, (lo[j] - pad, hi[j] + pad), title=n.replace("_joint", ""), margin=(34, 6, 18, 18))
    for a, b in runs(near_j[:, j]):
      p.band(t[a], t[b - 1] + dt, EVENT_COLORS["near limit"], 0.3)
    for a, b in runs(coll):
      p.band(t[a], t[b - 1] + dt, EVENT_COLORS["self-collision"], 0.12)
    p.hline(lo[j], "#d62728", "4 2", 1.2)
    p.hline(hi[j], "#d62728", "4 2", 1.2)
    p.line(t, q[:, j], "#1f3a93", 1.2)
    if len(jt):
      # Mark the frames where this joint itself jumps.
      k = max(int(round(motion.fps / 30.0)), 1)
      own = jt[np.abs(q[jt, j] - q[np.maximum(jt - k, 0), j]) > 0.5]
      if len(own):
        p.points(t[own], q[own, j], EVENT_COLORS["joint jump"], 2.8)
    panels.append(p.svg())
  out.append('<div class="legend"><span><b>Joints (rad)</b></span>'
             '<span><i class="sw" style="background:#1f3a93"></i>angle</span>'
             '<span><i class="sw" style="background:#d62728;height:2px"></i>limits</span>'
             f'<span><i class="sw" style="background:{EVENT_COLORS["near limit"]};opacity:.4"></i>within 0.05 rad of a limit</span>'
             f'<span><i class="sw" style="background:{EVENT_COLORS["self-collision"]};opacity:.25"></i>self-collision</span>'
             f'<span><i class="sw" style="background:{EVENT_COLORS["joint jump"]};border-radius:6px"></i>joint jump</span></div>')
  out.append(f'<div class="grid">{"".join(panels)}</div>')
  return "\n".join(out)


def build_report(doc: dict, eval_path: str = "", opts: ReportOptions = ReportOptions(), robot_loader=None,
                 log=None) -> str:
  """The report page (HTML text) of an eval JSON document.

  ``robot_loader`` maps a motion to its robot (default: :func:`humanoid_retarget.pipeline.robot_for_motion`).
  """
  if robot_loader is None:
    from humanoid_retarget.pipeline import robot_for_motion as robot_loader
  from humanoid_retarget.io.motion import load_motion

  clips = list(doc.get("clips", []))
  agg = doc.get("aggregate", {}) or {}
  by_method = doc.get("by_method", {}) or {}
  failed = list(doc.get("failed", []))
  eval_dir = os.path.dirname(os.path.abspath(eval_path)) if eval_path else os.getcwd()
  now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
  parts = [f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(opts.title)}</title>",
           f"<style>{CSS}</style></head><body>",
           f"<h1>{html.escape(opts.title)}</h1>",
           f'<div class="muted">{html.escape(os.path.basename(eval_path) or "eval")} · {len(clips)} clips · '
           f"{len(failed)} failed · {int(agg.get('frames', sum(c.get('frames', 0) for c in clips)))} frames · "
           f"made {now}</div>"]

  parts.append("<h2>Summary</h2>")
  summary_rows = [("all clips", agg)] if agg else []
  summary_rows += [(m, a) for m, a in sorted(by_method.items())]
  if summary_rows:
    parts.append('<div class="muted">Frame-weighted means; the best method per column is green, '
                 "any frames with defects red.</div>")
    parts.append(_metric_table(summary_rows, "method", with_counts=True, compete_from=1 if agg else 0))
  else:
    parts.append("<p>No clips were evaluated.</p>")

  methods: dict[str, list[dict]] = {}
  for c in clips:
    methods.setdefault(str(c.get("method", "?")), []).append(c)
  for m, rows in sorted(methods.items()):
    parts.append(f"<h2>Method: {html.escape(m)} ({len(rows)} clips)</h2>")
    parts.append(_metric_table([(r.get("clip", "?"), r) for r in rows], "clip"))

  if failed:
    parts.append(f"<h2>Failed ({len(failed)})</h2>")
    parts += [f'<div class="fail">{html.escape(str(f))}</div>' for f in failed]

  if opts.plots:
    parts.append("<h2>Clips</h2>")
    with_motion = [c for c in clips if c.get("motion")]
    if not with_motion:
      parts.append('<p class="muted">The eval JSON names no motion files (key <code>motion</code> per clip), '
                   "so there are no per-clip plots.</p>")
    for n, c in enumerate(with_motion):
      title = f"{c.get('clip', '?')} · {c.get('method', '?')}"
      if n >= opts.max_plot_clips:
        parts.append(f'<p class="muted">{len(with_motion) - n} more clips without plots '
                     f"(--max-plot-clips {opts.max_plot_clips}).</p>")
        break
      path = resolve_motion_path(str(c["motion"]), eval_dir)
      if path is None:
        parts.append(f'<details><summary>{html.escape(title)}</summary><p class="fail">motion file not found: '
                     f"{html.escape(str(c['motion']))}</p></details>")
        continue
      try:
        motion = load_motion(path)
        robot = robot_loader(motion)
        body = clip_plots(motion, robot, opts)
      except Exception as e:  # noqa: BLE001 - one bad clip must not sink the report
        parts.append(f'<details><summary>{html.escape(title)}</summary><p class="fail">cannot plot: '
                     f"{html.escape(type(e).__name__)}: {html.escape(str(e))}</p></details>")
        continue
      if log:
        log(f"plotted {c.get('clip', path)}")
      rel = os.path.relpath(os.path.abspath(path), eval_dir)
      shown = rel if not rel.startswith("..") else path
      info = (f'<div class="muted">{html.escape(shown)} · {motion.num_frames} frames at {motion.fps:g} fps · '
              f"robot {html.escape(motion.robot)} · source {html.escape(motion.source or '-')}</div>")
      parts.append(f"<details{' open' if n == 0 else ''}><summary>{html.escape(title)}</summary>{info}{body}</details>")
  parts.append("</body></html>")
  return "\n".join(parts)


def write_report(eval_path: str, out_path: str, opts: ReportOptions = ReportOptions(), log=None) -> None:
  """Read an eval JSON file and write the HTML report atomically."""
  import json

  from humanoid_retarget.errors import InputFormatError
  from humanoid_retarget.io.motion import atomic_write_bytes

  try:
    with open(eval_path, encoding="utf-8") as f:
      doc = json.load(f)
  except FileNotFoundError:
    raise InputFormatError("no such file", eval_path) from None
  except (OSError, ValueError) as e:
    raise InputFormatError(f"not a readable JSON file ({type(e).__name__})", eval_path) from None
  if not isinstance(doc, dict) or "clips" not in doc or not isinstance(doc["clips"], list):
    raise InputFormatError("not an eval JSON (expected keys clips, aggregate, by_method, failed)", eval_path)
  atomic_write_bytes(out_path, build_report(doc, eval_path, opts, log=log).encode("utf-8"))
