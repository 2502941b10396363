"""``humanoid-retarget track-eval``: a simulated G1 tracks robot motions (physics check and pairs)."""

from __future__ import annotations

import json as _json
import os
import sys

from humanoid_retarget.errors import RetargetError


def _motion_files(paths: list[str]) -> list[str]:
  out = []
  for p in paths:
    if os.path.isdir(p):
      for d, _, fs in os.walk(p):
        out += [os.path.join(d, f) for f in fs if f.endswith(".npz") and not f.startswith(".")]
    elif os.path.isfile(p):
      out.append(p)
    else:
      raise RetargetError(f"{p}: no such file or folder")
  return sorted(out)


def track_eval(motions: list[str], /, json: str | None = None, save_dir: str | None = None,
               robot: str = "unitree_g1_29dof", quiet: bool = False) -> int:
  """Track robot motions (.npz files or folders) in MuJoCo with the inverse-dynamics tracker.

  Prints one line per clip and a summary (success rate, MPJPE / W-MPJPE in cm, by length and complexity
  group). With --json, writes the rows and the summary (keys ``success_rate``, ``mpjpe_cm``, ``by_length``,
  ``by_complexity``, ``clips``). With --save-dir, the simulated motion of every clip that reached its end
  is saved there (same file name, format 1, method 'physics', 50 fps): the physics pairs.
  """
  from humanoid_retarget.io.motion import atomic_write_bytes, load_motion, save_motion
  from humanoid_retarget.sim.evaluate import aggregate, evaluate_clip, physics_motion
  from humanoid_retarget.sim.model import build_robot_sim

  files = _motion_files(motions)
  if not files:
    raise RetargetError("no motion files (.npz) given")
  sim = build_robot_sim(robot)
  rows = []
  for f in files:
    m = load_motion(f)
    name = os.path.relpath(f, motions[0]) if os.path.isdir(motions[0]) else os.path.basename(f)
    row, res, _ = evaluate_clip(sim, m, name)
    rows.append(row)
    if save_dir and row.success:
      save_motion(os.path.join(save_dir, os.path.splitext(name)[0] + ".npz"), physics_motion(sim, res, m))
    if not quiet:
      state = "ok  " if row.success else f"FAIL at {row.failed_at_s:.2f}s"
      print(f"{name:<48} {state:<14} mpjpe {row.mpjpe_cm:5.1f} cm  w-mpjpe {row.w_mpjpe_cm:5.1f} cm  "
            f"{row.realtime_factor:5.1f}x real time  [{row.length}, {row.complexity}]")
  summ = aggregate(rows)
  print(f"clips {summ['clips']}  success {100 * summ['success_rate']:.1f}%  mpjpe {summ['mpjpe_cm']:.2f} cm  "
        f"w-mpjpe {summ['w_mpjpe_cm']:.2f} cm  speed {summ['realtime_factor']:.1f}x real time")
  for key in ("by_length", "by_complexity"):
    for g, s in summ[key].items():
      if s["clips"]:
        print(f"  {g:<22} clips {s['clips']:4d}  success {100 * s['success_rate']:5.1f}%  mpjpe {s['mpjpe_cm']:.2f} cm")
  if json:
    doc = dict(summ, rows=[r.as_dict() for r in rows])
    atomic_write_bytes(json, _json.dumps(doc, indent=2).encode())
  sys.stdout.flush()
  return 0
