"""Physics benchmark (issue 6): env steps/s, tracker speed, tracking success on Bandai-2 clips.

  .venv/bin/python benchmarks/bench_sim.py [--per-class N] [--json out.json]

1. Physics steps/s of the G1 + floor (5 ms steps, implicitfast, pyramidal): one MjData stepped from Python,
   and ``mujoco.rollout`` over 16 environments with 1 and 2 threads (robot standing under PD control,
   so contacts are active).
2. Tracker: the Bandai-2 walk, walk-turn-left/right, run and wave-* clips (N per class, default all 28)
   are retargeted (kinematic) into a temporary folder, then tracked; success rate, MPJPE, W-MPJPE and the
   tracker's speed as a ratio to real time, overall and per class. Targets: >= 90 %, <= 5 cm, >= 0.5x.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time

import mujoco
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "src"))

from humanoid_retarget.sim.model import build_robot_sim  # noqa: E402
from humanoid_retarget.sim.parallel import BatchSim  # noqa: E402

CLASSES = ("walk", "walk-turn-left", "walk-turn-right", "run", "wave-both-hands", "wave-left-hand", "wave-right-hand")


def physics_speed(sim, seconds: float = 2.0) -> dict:
  m = sim.model
  d = mujoco.MjData(m)
  d.qpos[2] = 0.78
  d.ctrl[:] = 0.0
  mujoco.mj_forward(m, d)
  n = 0
  t0 = time.perf_counter()
  while time.perf_counter() - t0 < seconds:
    for _ in range(100):
      mujoco.mj_step(m, d)
    n += 100
  single = n / (time.perf_counter() - t0)
  out = {"mj_step_1thread": single}
  for nthread in (1, 2):
    bs = BatchSim(sim, num_envs=16, nthread=nthread)
    d0 = mujoco.MjData(m)
    d0.qpos[2] = 0.78
    bs.set_state_from(d0)
    ctrl = np.zeros((16, m.nu))
    steps = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
      bs.step(ctrl)
      steps += 16 * sim.config.decimation
    out[f"rollout_{nthread}threads"] = steps / (time.perf_counter() - t0)
    bs.close()
  return out


def main() -> int:
  ap = argparse.ArgumentParser()
  ap.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "bandai2"))
  ap.add_argument("--per-class", type=int, default=28)
  ap.add_argument("--json", default="")
  ap.add_argument("--motions", default="", help="already retargeted clips (skip retargeting)")
  a = ap.parse_args()
  sim = build_robot_sim()
  ph = physics_speed(sim)
  print("physics steps/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in ph.items()))
  from humanoid_retarget.io.motion import load_motion, save_motion
  from humanoid_retarget.pipeline import RetargetOptions, retarget_file
  from humanoid_retarget.sim.evaluate import aggregate, evaluate_clip

  tmp = a.motions or tempfile.mkdtemp(prefix="bench_sim_")
  files = []
  for c in CLASSES:
    pat = os.path.join(a.data, f"dataset-2_{c}_*.bvh")
    for f in sorted(glob.glob(pat))[: a.per_class]:
      out = os.path.join(tmp, os.path.basename(f)[:-4] + ".npz")
      if not os.path.exists(out):
        save_motion(out, retarget_file(f, RetargetOptions()))
      files.append((c, out))
  rows, by_class = [], {}
  t0 = time.perf_counter()
  for c, f in files:
    row, _, _ = evaluate_clip(sim, load_motion(f), os.path.basename(f))
    rows.append(row)
    by_class.setdefault(c, []).append(row)
  wall = time.perf_counter() - t0
  summ = aggregate(rows)
  sim_s = sum((r.frames - 1) / r.fps if r.success else r.failed_at_s for r in rows)
  print(f"tracker: {len(rows)} clips, success {100 * summ['success_rate']:.1f}%, mpjpe {summ['mpjpe_cm']:.2f} cm, "
        f"w-mpjpe {summ['w_mpjpe_cm']:.2f} cm, speed {sim_s / wall:.2f}x real time (incl. reference prep)")
  classes = {}
  for c, rs in by_class.items():
    classes[c] = {"clips": len(rs), "success_rate": float(np.mean([r.success for r in rs])),
                  "mpjpe_cm": float(np.mean([r.mpjpe_cm for r in rs]))}
    print(f"  {c:<18} clips {len(rs):3d}  success {100 * classes[c]['success_rate']:5.1f}%  mpjpe {classes[c]['mpjpe_cm']:.2f} cm")
  if a.json:
    with open(a.json, "w") as f:
      json.dump({"physics": ph, "tracker": summ, "classes": classes, "realtime_factor": sim_s / wall}, f, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
