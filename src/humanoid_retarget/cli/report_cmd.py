"""``humanoid-retarget report``."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import tyro


def report(
  eval_json: tyro.conf.Positional[str],
  output: Annotated[str, tyro.conf.arg(aliases=("-o",))] = "",
  title: str = "Retargeting evaluation",
  no_plots: bool = False,
  max_plot_clips: int = 60,
  quiet: bool = False,
) -> int:
  """Self-contained HTML report of an evaluation run (the JSON of ``humanoid-retarget eval --json``).

  Metric tables per method and per clip; per-clip plots (events, foot heights with contact phases,
  joints against their limits) for clips whose motion file the JSON names (key ``motion``).

  Args:
    eval_json: eval results (JSON).
    output: HTML file to write (default: EVAL_JSON with .html).
    title: page title.
    no_plots: tables only.
    max_plot_clips: plot at most this many clips.
    quiet: print nothing but errors.
  """
  from humanoid_retarget.viz.report import ReportOptions, write_report

  out = output or os.path.splitext(eval_json)[0] + ".html"
  opts = ReportOptions(title=title, plots=not no_plots, max_plot_clips=max_plot_clips)
  write_report(eval_json, out, opts, log=None if quiet else (lambda s: print(s, file=sys.stderr)))
  if not quiet:
    print(f"wrote {out}")
  return 0
