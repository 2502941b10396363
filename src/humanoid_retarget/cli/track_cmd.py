"""``humanoid-retarget track-eval``: a simulated G1 tracks robot motions (physics check and pairs)."""

from __future__ import annotations

import json as _json
import os
import sys
from functools import lru_cache, partial
from typing import Literal

from humanoid_retarget.errors import RetargetError


@lru_cache(maxsize=4)
def _cached_sim(robot: str):
  from humanoid_retarget.sim.model import build_robot_sim

  return build_robot_sim(robot)


def track_file(path: str, root: str | None, robot: str, save_dir: str | None):
  """Track one motion file (module level: a Ray task calls it by reference); returns its row."""
  from humanoid_retarget.io.motion import load_motion, save_motion
  from humanoid_retarget.sim.evaluate import evaluate_clip, physics_motion

  sim = _cached_sim(robot)
  m = load_motion(path)
  name = os.path.relpath(path, root) if root else os.path.basename(path)
  row, res, _ = evaluate_clip(sim, m, name)
  if save_dir and row.success:
    save_motion(os.path.join(save_dir, os.path.splitext(name)[0] + ".npz"), physics_motion(sim, res, m))
  return row


def track_eval(motions: list[str], /, json: str | None = None, save_dir: str | None = None,
               robot: str = "unitree_g1_29dof", executor: Literal["local", "ray"] = "local",
               ray_address: str = "", quiet: bool = False) -> int:
  """Track robot motions (.npz files or folders) in MuJoCo with the whole-body QP tracker (needs daqp).

  Prints one line per clip and a summary (success rate, MPJPE / W-MPJPE in cm, by length and complexity
  group). With --json, writes the rows and the summary (keys ``success_rate``, ``mpjpe_cm``, ``by_length``,
  ``by_complexity``, ``clips``). With --save-dir, the simulated motion of every clip that reached its end
  is saved there (same file name, format 1, method 'physics', 50 fps): the physics pairs.
  --executor ray runs one Ray task per clip (--ray-address: the cluster, default: start or join a
  local instance); clips that fail are then listed at the end (exit status 1).
  """
  from humanoid_retarget.io.motion import atomic_write_bytes
  from humanoid_retarget.io.motion import list_motion_files
  from humanoid_retarget.sim.evaluate import aggregate

  files = list_motion_files(motions)
  if not files:
    raise RetargetError("no motion files (.npz) given")
  _cached_sim(robot)
  root = os.path.abspath(motions[0]) if os.path.isdir(motions[0]) else None
  fn = partial(track_file, root=root, robot=robot, save_dir=os.path.abspath(save_dir) if save_dir else None)
  failed = []
  if executor == "ray":
    from humanoid_retarget.distributed import map_files_ray

    results = map_files_ray(fn, files, address=ray_address or None, progress=not quiet, desc="track")
  else:
    results = ((f, fn(f), None) for f in files)  # an error stops the run, as before
  rows = []
  for _, row, err in results:
    if err is not None:
      failed.append(err)
      continue
    rows.append(row)
    if not quiet:
      state = "ok  " if row.success else f"FAIL at {row.failed_at_s:.2f}s"
      print(f"{row.clip:<48} {state:<14} mpjpe {row.mpjpe_cm:5.1f} cm  w-mpjpe {row.w_mpjpe_cm:5.1f} cm  "
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
  from humanoid_retarget.batch import print_failures

  return print_failures(failed)
