"""Benchmark: our kinematic retargeter against a GMR-style baseline, same clips, one run.

Measures, on the same BVH clips:

1. single process, end to end per clip (load BVH -> retarget -> RobotMotion), ours and the baseline
   (``benchmarks/gmr_baseline.py``: per-frame two-stage mink IK, as GMR);
2. the real batch path with ``--workers`` processes (``humanoid_retarget.batch.run_batch`` with
   ``pipeline.retarget_task`` for ours, ``gmr_baseline.gmr_task`` for the baseline), writing motion
   files to a temporary folder that is deleted afterwards;
3. the quality metrics of both (``eval.metrics.evaluate_motion`` + ``aggregate``), outside the timing.

The baseline is slow, so ``--baseline-limit N`` runs it (and the same-clips comparison of ours) on N
clips spread evenly over the selection; ours also runs on every selected clip. Nothing is written
into the repository; ``--json OUT`` saves the results (``benchmarks/results/`` is git-ignored).

  .venv/bin/python benchmarks/bench_kinematic.py --limit 5
  .venv/bin/python benchmarks/bench_kinematic.py --baseline-limit 60 --json benchmarks/results/kinematic.json
"""

from __future__ import annotations

import os

# One BLAS/OpenMP thread everywhere, as the batch workers do: "single process" means one core.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
  os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from humanoid_retarget.batch import Task, one_line_error, run_batch  # noqa: E402
from humanoid_retarget.eval.metrics import ClipMetrics, aggregate, evaluate_motion  # noqa: E402
from humanoid_retarget.human.load import list_inputs, load_human  # noqa: E402
from humanoid_retarget.human.motion import HumanMotion  # noqa: E402
from humanoid_retarget.io.motion import RobotMotion  # noqa: E402
from humanoid_retarget.pipeline import RetargetOptions, cached_robot, retarget_task  # noqa: E402
from humanoid_retarget.retarget.kinematic import retarget_kinematic  # noqa: E402

ROBOT = "unitree_g1_29dof"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "bandai1"
METRIC_ROWS = (
  ("keypoint_error_cm", "key-point error [cm]"),
  ("joint_jump_pct", "joint-jump frames [%]"),
  ("self_collision_pct", "self-collision frames [%]"),
  ("joint_limit_pct", "joint-limit frames [%]"),
  ("penetration_pct", "penetration frames [%]"),
  ("lowest_foot_mean_cm", "lowest foot, mean [cm]"),
  ("foot_skate_cms", "foot skate [cm/s]"),
  ("velocity_limit_pct", "over velocity limit [%]"),
  ("max_joint_vel", "max joint speed [rad/s]"),
)


class BenchError(Exception):
  """A one-line reason the benchmark cannot run."""


@dataclass
class SingleRun:
  """Per-clip wall times of one method in this process, and the metrics of its motions."""

  method: str
  seconds: dict[str, float] = field(default_factory=dict)  # clip path -> wall-clock s
  cpu: dict[str, float] = field(default_factory=dict)  # clip path -> CPU s of this process
  frames: dict[str, int] = field(default_factory=dict)
  metrics: dict[str, ClipMetrics] = field(default_factory=dict)
  failed: list[str] = field(default_factory=list)

  def fps(self, clips: list[str]) -> float:
    ok = [c for c in clips if c in self.seconds]
    t = sum(self.seconds[c] for c in ok)
    return sum(self.frames[c] for c in ok) / t if t > 0 else float("nan")

  def summary(self, clips: list[str]) -> dict:
    ok = [c for c in clips if c in self.seconds]
    frames = int(sum(self.frames[c] for c in ok))
    cpu = float(sum(self.cpu[c] for c in ok))
    return {"clips": len(ok), "frames": frames, "seconds": float(sum(self.seconds[c] for c in ok)),
            "fps": self.fps(clips), "cpu_seconds": cpu, "fps_cpu": frames / cpu if cpu > 0 else float("nan")}


@dataclass
class BatchRun:
  method: str
  workers: int
  clips: int
  frames: int
  seconds: float
  cpu_seconds: float  # this process plus its (reaped) workers
  failed: list[tuple[str, str]]

  @property
  def fps(self) -> float:
    return self.frames / self.seconds if self.seconds > 0 else float("nan")

  @property
  def fps_cpu(self) -> float:
    return self.frames / self.cpu_seconds if self.cpu_seconds > 0 else float("nan")


def _progress(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def time_single(method: str, run: Callable[[HumanMotion], RobotMotion], clips: list[str]) -> SingleRun:
  """Load + retarget each clip, timed as one unit; metrics afterwards, untimed."""
  robot = cached_robot(ROBOT)
  out = SingleRun(method)
  for i, path in enumerate(clips):
    try:
      t0, c0 = time.perf_counter(), time.process_time()
      human = load_human(path)
      motion = run(human)
      dt, dc = time.perf_counter() - t0, time.process_time() - c0
    except Exception as e:  # noqa: BLE001 - a failing clip is reported, the benchmark goes on
      out.failed.append(one_line_error(e, path))
      continue
    out.seconds[path] = dt
    out.cpu[path] = dc
    out.frames[path] = motion.num_frames
    out.metrics[path] = evaluate_motion(robot, motion, human, clip=os.path.basename(path))
    if (i + 1) % 10 == 0 or i + 1 == len(clips):
      _progress(f"  {method}: {i + 1}/{len(clips)} clips, {out.fps(clips):.0f} frames/s so far")
  return out


def time_batch(method: str, fn: Callable[[Task], int], clips: list[str], workers: int, out_dir: str) -> BatchRun:
  """The batch path: ``run_batch`` with ``workers`` processes, motion files written to ``out_dir``."""
  tasks = [Task(p, os.path.join(out_dir, method, f"{i:04d}_{Path(p).stem}.npz")) for i, p in enumerate(clips)]
  t0, c0 = time.perf_counter(), os.times()
  res = run_batch(fn, tasks, workers=workers, skip_existing=False, progress=False, desc=method)
  dt, c1 = time.perf_counter() - t0, os.times()
  cpu = (c1.user + c1.system + c1.children_user + c1.children_system
         - c0.user - c0.system - c0.children_user - c0.children_system)
  return BatchRun(method, workers, len(res.done), res.frames, dt, cpu, res.failed)


def spread(items: list[str], n: int) -> list[str]:
  """``n`` items evenly spread over ``items`` (all when n >= len)."""
  if n >= len(items):
    return list(items)
  idx = np.unique(np.round(np.linspace(0, len(items) - 1, n)).astype(int))
  return [items[i] for i in idx]


def _fmt(v, nd: int = 2) -> str:
  if v is None or (isinstance(v, float) and not np.isfinite(v)):
    return "-"
  return f"{v:.{nd}f}"


def _table(headers: list[str], rows: list[list[str]]) -> str:
  widths = [max(len(r[i]) for r in [headers] + rows) for i in range(len(headers))]
  line = lambda r: "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))  # noqa: E731
  sep = "  ".join("-" * w for w in widths)
  return "\n".join([line(headers), sep] + [line(r) for r in rows])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--data", default=str(DEFAULT_DATA), help="folder of BVH clips (default: %(default)s)")
  ap.add_argument("--limit", type=int, default=0, help="use the first N clips (default: all)")
  ap.add_argument("--baseline-limit", type=int, default=0,
                  help="run the baseline on N clips spread over the selection (default: all selected)")
  ap.add_argument("--workers", type=int, default=2, help="processes for the batch runs (default: %(default)s)")
  ap.add_argument("--no-batch", action="store_true", help="skip the multi-process batch runs")
  ap.add_argument("--json", default="", metavar="OUT", help="write all results to this JSON file")
  args = ap.parse_args(argv)
  for name in ("limit", "baseline_limit"):
    if getattr(args, name) < 0:
      ap.error(f"--{name.replace('_', '-')} must be >= 0")
  if args.workers < 1:
    ap.error("--workers must be >= 1")
  return args


def select_clips(data: str, limit: int) -> list[str]:
  if not os.path.isdir(data):
    raise BenchError(f"{data}: no such folder (pass --data DIR with BVH clips)")
  clips = [p for p in list_inputs(data) if p.lower().endswith(".bvh")]
  if not clips:
    raise BenchError(f"{data}: no .bvh files found")
  return clips[:limit] if limit else clips


def run(args: argparse.Namespace) -> dict:
  try:
    from benchmarks.gmr_baseline import cached_retargeter, gmr_task
    gmr = cached_retargeter(ROBOT)
  except ImportError as e:
    raise BenchError(str(e)) from None
  clips = select_clips(args.data, args.limit)
  base_clips = spread(clips, args.baseline_limit) if args.baseline_limit else list(clips)
  subset = len(base_clips) < len(clips)
  robot = cached_robot(ROBOT)
  ours_fn = lambda h: retarget_kinematic(h, robot)  # noqa: E731
  load_start = os.getloadavg()
  _progress(f"{len(clips)} clips from {args.data}; baseline on {len(base_clips)}"
            f"{' (evenly spread)' if subset else ''}; load average {load_start[0]:.2f}")
  # Warm-up (untimed): imports, caches, first-call costs of both methods on a short slice.
  warm = load_human(clips[0])
  warm = warm.slice(0, min(10, warm.num_frames))
  ours_fn(warm)
  gmr.retarget(warm)

  _progress("[1/4] ours, single process")
  ours = time_single("ours", ours_fn, clips)
  _progress("[2/4] GMR-style baseline, single process")
  base = time_single("gmr_baseline", gmr.retarget, base_clips)
  batches: list[BatchRun] = []
  if not args.no_batch:
    with tempfile.TemporaryDirectory(prefix="bench_kinematic_") as tmp:
      ours_task = partial(retarget_task, opts=RetargetOptions(robot=ROBOT))
      _progress(f"[3/4] ours, run_batch with {args.workers} workers")
      batches.append(time_batch("ours", ours_task, clips, args.workers, tmp))
      if subset:
        batches.append(time_batch("ours_same_clips", ours_task, base_clips, args.workers, tmp))
      _progress(f"[4/4] GMR-style baseline, run_batch with {args.workers} workers")
      batches.append(time_batch("gmr_baseline", gmr_task, base_clips, args.workers, tmp))
  load_end = os.getloadavg()

  ok_same = [c for c in base_clips if c in ours.metrics and c in base.metrics]
  result = {
    "data": os.path.abspath(args.data),
    "clips": len(clips), "baseline_clips": len(base_clips), "baseline_subset": subset,
    "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                "loadavg_start": load_start, "loadavg_end": load_end},
    "single": {
      "ours_all": ours.summary(clips),
      "ours_same_clips": ours.summary(base_clips),
      "gmr_baseline": base.summary(base_clips),
    },
    "batch": [{"method": b.method, "workers": b.workers, "clips": b.clips, "frames": b.frames,
               "seconds": b.seconds, "fps": b.fps, "cpu_seconds": b.cpu_seconds, "fps_cpu": b.fps_cpu,
               "failed": b.failed} for b in batches],
    "metrics": {
      "ours_all": aggregate([ours.metrics[c] for c in clips if c in ours.metrics]),
      "ours_same_clips": aggregate([ours.metrics[c] for c in ok_same]),
      "gmr_baseline": aggregate([base.metrics[c] for c in ok_same]),
    },
    "failed": {"ours": ours.failed, "gmr_baseline": base.failed},
    "per_clip": [
      {"clip": os.path.basename(c), "frames": ours.frames.get(c),
       "ours_s": ours.seconds.get(c), "gmr_s": base.seconds.get(c),
       "ours": ours.metrics[c].as_dict() if c in ours.metrics else None,
       "gmr_baseline": base.metrics[c].as_dict() if c in base.metrics else None}
      for c in clips
    ],
  }
  single = result["single"]
  result["ratio_single"] = single["ours_same_clips"]["fps"] / single["gmr_baseline"]["fps"]
  result["ratio_single_cpu"] = single["ours_same_clips"]["fps_cpu"] / single["gmr_baseline"]["fps_cpu"]
  by = {b.method: b for b in batches}
  if "gmr_baseline" in by:
    ours_b = by.get("ours_same_clips", by["ours"])
    result["ratio_batch"] = ours_b.fps / by["gmr_baseline"].fps
    result["ratio_batch_cpu"] = ours_b.fps_cpu / by["gmr_baseline"].fps_cpu
  return result


def report(res: dict) -> str:
  s = res["single"]
  n_all, n_b = res["clips"], res["baseline_clips"]
  sub = res["baseline_subset"]
  same = f"same {n_b} clips" + (" (evenly spread)" if sub else "")

  def ratio(v) -> str:
    return _fmt(v, 1) + "x"

  rows = [
    ["single process, wall clock", _fmt(s["ours_same_clips"]["fps"], 0), _fmt(s["gmr_baseline"]["fps"], 0),
     ratio(res["ratio_single"])],
    ["single process, per CPU-second", _fmt(s["ours_same_clips"]["fps_cpu"], 0),
     _fmt(s["gmr_baseline"]["fps_cpu"], 0), ratio(res["ratio_single_cpu"])],
  ]
  by = {b["method"]: b for b in res["batch"]}
  if by:
    w = res["batch"][0]["workers"]
    ob = by.get("ours_same_clips", by["ours"])
    gb = by["gmr_baseline"]
    rows += [[f"run_batch {w} workers, wall clock", _fmt(ob["fps"], 0), _fmt(gb["fps"], 0), ratio(res["ratio_batch"])],
             [f"run_batch {w} workers, per CPU-second", _fmt(ob["fps_cpu"], 0), _fmt(gb["fps_cpu"], 0),
              ratio(res["ratio_batch_cpu"])]]
  out = [f"Throughput in frames/s, end to end (load BVH -> motion; run_batch also writes .npz), {same}: "
         f"{s['gmr_baseline']['frames']} frames",
         _table(["", "ours", "gmr_baseline", "ours/baseline"], rows)]
  if sub:
    rows_all = [["single process, wall clock", _fmt(s["ours_all"]["fps"], 0)],
                ["single process, per CPU-second", _fmt(s["ours_all"]["fps_cpu"], 0)]]
    if by:
      rows_all += [[f"run_batch {w} workers, wall clock", _fmt(by["ours"]["fps"], 0)],
                   [f"run_batch {w} workers, per CPU-second", _fmt(by["ours"]["fps_cpu"], 0)]]
    out += ["", f"Ours on all {n_all} clips ({s['ours_all']['frames']} frames)", _table(["", "ours"], rows_all)]
  m = res["metrics"]
  cols = [("ours", m["ours_same_clips"]), ("gmr_baseline", m["gmr_baseline"])]
  if sub:
    cols.append((f"ours, all {n_all}", m["ours_all"]))
  mrows = [[label] + [_fmt(c.get(key)) for _, c in cols] for key, label in METRIC_ROWS]
  out += ["", f"Quality (frame-weighted means over clips; {same})", _table(["metric"] + [n for n, _ in cols], mrows)]
  fails = [f for v in res["failed"].values() for f in v] + [f"{b['method']}: {e}" for b in res["batch"] for _, e in b["failed"]]
  if fails:
    out += ["", f"{len(fails)} failure(s):"] + [f"  {f}" for f in fails]
  la, lb = res["machine"]["loadavg_start"], res["machine"]["loadavg_end"]
  out += ["", f"{res['machine']['cpu_count']} CPUs; 1-min load average {la[0]:.2f} at start, {lb[0]:.2f} at end. "
          "Wall-clock rates include waiting for the CPU when the machine is shared; per-CPU-second rates do not."]
  return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  try:
    res = run(args)
  except BenchError as e:
    print(f"bench_kinematic: error: {e}", file=sys.stderr)
    return 2
  print(report(res))
  if args.json:
    try:
      os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
      with open(args.json, "w") as f:
        json.dump(res, f, indent=1, default=float)
    except OSError as e:
      print(f"bench_kinematic: error: cannot write {args.json} ({e.strerror})", file=sys.stderr)
      return 2
    print(f"\nresults written to {args.json}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
