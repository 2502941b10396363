"""The Unitree H1 (config generated from its MJCF alone) on the walk, run and wave clips of bandai2.

Usage:
  .venv/bin/python benchmarks/bench_h1.py [--data ../shared/data/bandai2] [--model ../shared/robots/unitree_h1/h1.xml]
      [--pattern 'walk|run|wave'] [--limit N] [--workers 2] [--json out.json]

Targets (issue 9): joint-jump frames 0 %, penetration frames <= 1 %, self-collision frames <= 2 %,
per clip, with the G1's metric definitions (``humanoid_retarget.eval.metrics``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("HUMANOID_RETARGET_SHARED", REPO.parent / "shared"))
BARS = {"joint_jump_pct": 0.0, "penetration_pct": 1.0, "self_collision_pct": 2.0}


def run_clip(args: tuple[str, str]) -> dict:
  path, model = args
  from humanoid_retarget.eval.metrics import evaluate_motion
  from humanoid_retarget.human.load import load_human
  from humanoid_retarget.pipeline import cached_robot
  from humanoid_retarget.retarget.kinematic import retarget_kinematic

  robot = cached_robot(model)
  human = load_human(path)
  t0 = time.perf_counter()
  motion = retarget_kinematic(human, robot)
  dt = time.perf_counter() - t0
  m = evaluate_motion(robot, motion, human, clip=os.path.basename(path))
  d = m.as_dict()
  d["solve_s"] = dt
  return d


def main() -> int:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--data", default=str(SHARED / "data" / "bandai2"))
  ap.add_argument("--model", default=str(SHARED / "robots" / "unitree_h1" / "h1.xml"))
  ap.add_argument("--pattern", default=r"_(walk|run|wave)[-_]", help="regex on file names")
  ap.add_argument("--limit", type=int, default=0)
  ap.add_argument("--workers", type=int, default=2)
  ap.add_argument("--json", default="")
  a = ap.parse_args()
  from humanoid_retarget.eval.metrics import ClipMetrics, aggregate
  from humanoid_retarget.robot.config import load_robot

  files = sorted(str(p) for p in Path(a.data).glob("*.bvh") if re.search(a.pattern, p.name))
  if a.limit:
    files = files[: a.limit]
  if not files:
    print(f"no clips matching {a.pattern!r} in {a.data}", file=sys.stderr)
    return 2
  load_robot(a.model)  # generate the config once, before the workers start
  t0 = time.perf_counter()
  with ProcessPoolExecutor(a.workers) as ex:
    rows = list(ex.map(run_clip, [(f, a.model) for f in files]))
  wall = time.perf_counter() - t0
  keys = ("joint_jump_pct", "penetration_pct", "self_collision_pct", "joint_limit_pct", "foot_skate_cms",
          "keypoint_error_cm", "velocity_limit_pct")
  print(f"{'clip':<46}" + "".join(f"{k[:14]:>16}" for k in keys))
  for r in rows:
    print(f"{r['clip'][:46]:<46}" + "".join(f"{r[k]:>16.2f}" for k in keys))
  objs = [ClipMetrics(**{k: v for k, v in r.items() if k != "solve_s"}) for r in rows]
  agg = aggregate(objs)
  print("\naggregate (frame-weighted):", json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in agg.items()}))
  fails = {k: [r["clip"] for r in rows if r[k] > bar] for k, bar in BARS.items()}
  worst = {k: max(r[k] for r in rows) for k in BARS}
  for group in ("walk", "run", "wave"):
    g = [o for o in objs if re.search(rf"_{group}[-_]", o.clip)]
    if g:
      ag = aggregate(g)
      print(f"  {group:<5} {len(g):>3} clips: " + ", ".join(f"{k} {ag[k]:.3f}" for k in BARS))
  print(f"clips: {len(rows)}, frames: {agg['frames']}, wall {wall:.0f} s, "
        f"solve {sum(r['solve_s'] for r in rows):.0f} s total")
  for k, bar in BARS.items():
    print(f"  {k}: worst clip {worst[k]:.2f} % (bar {bar} %), clips over the bar: {len(fails[k])}"
          + (f" ({', '.join(fails[k][:6])}{' ...' if len(fails[k]) > 6 else ''})" if fails[k] else ""))
  if a.json:
    Path(a.json).write_text(json.dumps({"clips": rows, "aggregate": agg, "over_bar": fails}, indent=1))
  return 0 if not any(fails.values()) else 1


if __name__ == "__main__":
  sys.exit(main())
