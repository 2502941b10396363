"""Physics benchmark (issue 6): env steps/s, tracker speed, tracking success on Bandai-2 clips.

  .venv/bin/python benchmarks/bench_sim.py [--per-class N] [--json out.json]

1. Physics steps/s of the G1 + floor (5 ms steps, implicitfast, pyramidal): one MjData stepped from Python,
   and ``mujoco.rollout`` over 16 environments with 1 and 2 threads (robot standing under PD control,
   so contacts are active).
2. Tracker: the Bandai-2 walk, walk-turn-left/right, run and wave-* clips (N per class, default all 28)
   are retargeted (kinematic) into a temporary folder, then tracked; success rate, MPJPE, W-MPJPE and the
   tracker's speed as a ratio to real time, overall and per class, plus the mean fraction of each clip
   tracked before a termination (diagnostic). Targets: >= 90 %, <= 5 cm, >= 0.5x. ``--mpc`` tracks the
   same clips with the predictive-sampling layer (``sim.mpc``) as well (slow: ~0.2-0.3x real time).
3. Reference feasibility of the running clips: the longest interval with both retargeted soles > 2 cm
   above the floor, and the mean vertical CoM acceleration over those frames (a ballistic body: -9.81).
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
  ap.add_argument("--mpc", action="store_true", help="also measure the predictive-sampling tracker")
  ap.add_argument("--config", default="", help='TrackerConfig overrides as JSON, e.g. \'{"search": null}\' '
                  '(the QP without the footstep search) or \'{"stepping": null, "search": null}\' (the plain QP)')
  a = ap.parse_args()
  sim = build_robot_sim()
  ph = physics_speed(sim)
  print("physics steps/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in ph.items()))
  from humanoid_retarget.io.motion import save_motion
  from humanoid_retarget.pipeline import RetargetOptions, retarget_file

  tmp = a.motions or tempfile.mkdtemp(prefix="bench_sim_")
  files = []
  for c in CLASSES:
    pat = os.path.join(a.data, f"dataset-2_{c}_*.bvh")
    for f in sorted(glob.glob(pat))[: a.per_class]:
      out = os.path.join(tmp, os.path.basename(f)[:-4] + ".npz")
      if not os.path.exists(out):
        save_motion(out, retarget_file(f, RetargetOptions()))
      files.append((c, out))
  if not files:
    print(f"no clips: nothing matches dataset-2_<class>_*.bvh under {a.data}", file=sys.stderr)
    return 1
  out = {"physics": ph}
  flights = run_flight_check(sim, [f for c, f in files if c == "run"])
  if flights:
    out["run_flight"] = flights
    long = [r for r in flights if r["longest_airborne_s"] >= 0.2]
    print(f"running references: {len(long)}/{len(flights)} have both soles > 2 cm up for >= 0.2 s; over those "
          f"airborne frames the CoM accelerates at {np.mean([r['airborne_com_az'] for r in long]) if long else 0:.1f} "
          f"m/s^2 on average (ballistic: -9.81)")
  controllers = [("qp", None)]
  if a.mpc:
    controllers.append(("mpc", "mpc"))
  cfg = None
  if a.config:
    from humanoid_retarget.sim.tracker import TrackerConfig

    cfg = TrackerConfig(**json.loads(a.config))
    out["config"] = json.loads(a.config)
  for name, kind in controllers:
    out[name] = track_all(sim, files, kind, cfg)
  if a.json:
    with open(a.json, "w") as f:
      json.dump(out, f, indent=2)
  return 0


def track_all(sim, files, kind, cfg=None) -> dict:
  """Track every clip with the QP tracker (kind None) or the sampling tracker ('mpc'); print and return figures."""
  from humanoid_retarget.io.motion import load_motion
  from humanoid_retarget.sim.evaluate import ClipTracking, aggregate, complexity_group, length_group, tracking_errors
  from humanoid_retarget.sim.reference import make_reference
  from humanoid_retarget.sim.tracker import track

  rows, by_class, frac = [], {}, {}
  t0 = time.perf_counter()
  for c, f in files:
    motion = load_motion(f)
    ref = make_reference(motion, sim)
    tracker = None
    if kind == "mpc":
      from humanoid_retarget.sim.mpc import SamplingTracker

      from humanoid_retarget.sim.mpc import SamplingConfig

      tracker = SamplingTracker(sim, SamplingConfig(qp=cfg) if cfg is not None else None)
    res = track(sim, ref, cfg, tracker=tracker)
    if tracker is not None:
      tracker.close()
    mp, wmp = tracking_errors(sim, ref, res)
    name = os.path.basename(f)
    row = ClipTracking(clip=name, frames=motion.num_frames, fps=motion.fps, success=res.success,
                       failed_at_s=-1.0 if res.success else res.failed_at * sim.control_dt, mpjpe_cm=mp,
                       w_mpjpe_cm=wmp, realtime_factor=res.realtime_factor,
                       length=length_group(motion.num_frames, motion.fps), complexity=complexity_group(name, motion))
    rows.append(row)
    by_class.setdefault(c, []).append(row)
    frac.setdefault(c, []).append(1.0 if res.success else res.failed_at / max(ref.num_frames - 1, 1))
  wall = time.perf_counter() - t0
  summ = aggregate(rows)
  sim_s = sum((r.frames - 1) / r.fps if r.success else r.failed_at_s for r in rows)
  label = kind or "qp"
  print(f"{label} tracker: {len(rows)} clips, success {100 * summ['success_rate']:.1f}%, mpjpe {summ['mpjpe_cm']:.2f} cm, "
        f"w-mpjpe {summ['w_mpjpe_cm']:.2f} cm, speed {sim_s / wall:.2f}x real time (incl. reference prep)")
  classes = {}
  for c, rs in by_class.items():
    classes[c] = {"clips": len(rs), "success_rate": float(np.mean([r.success for r in rs])),
                  "mpjpe_cm": float(np.mean([r.mpjpe_cm for r in rs])),
                  "w_mpjpe_cm": float(np.mean([r.w_mpjpe_cm for r in rs])), "tracked_fraction": float(np.mean(frac[c]))}
    print(f"  {c:<18} clips {len(rs):3d}  success {100 * classes[c]['success_rate']:5.1f}%  "
          f"mpjpe {classes[c]['mpjpe_cm']:.2f} cm  w-mpjpe {classes[c]['w_mpjpe_cm']:.1f} cm  "
          f"tracked {100 * classes[c]['tracked_fraction']:.0f}% of the clip")
  return {"tracker": summ, "classes": classes, "realtime_factor": sim_s / wall}


def run_flight_check(sim, files) -> list[dict]:
  """Per running clip: longest both-soles-airborne interval (s) and the mean CoM z acceleration then."""
  from humanoid_retarget.io.motion import load_motion
  from humanoid_retarget.sim.reference import make_reference
  from humanoid_retarget.sim.tracker import reference_features

  out = []
  for f in files:
    ref = make_reference(load_motion(f), sim)
    feat = reference_features(sim, ref, feasible_com=False, swing_clearance=0.0)
    air = (feat.sole_height > 0.02).all(axis=1)
    longest = run = 0
    for x in air:
      run = run + 1 if x else 0
      longest = max(longest, run)
    out.append({"clip": os.path.basename(f), "longest_airborne_s": longest / ref.fps,
                "airborne_fraction": float(air.mean()),
                "airborne_com_az": float(feat.com_acc[air, 2].mean()) if air.any() else float("nan")})
  return out


if __name__ == "__main__":
  sys.exit(main())
