"""Tracking evaluation: roll the tracker out on motion files, score and group the results.

Per clip: success (reached the last frame with no BeyondMimic termination), MPJPE (cm; the 14 tracked
bodies relative to the pelvis, simulated against reference) and W-MPJPE (cm; world positions), both over
the simulated frames (up to the failure when it fails), and the speed as a ratio to real time.

Groups (NMR's length bins, counted at 120 Hz): short < 250 frames, medium 250-1000, long > 1000.
Complexity, from the clip name first, reference statistics otherwise:
- ``upper_body``: names with wave, raise, clap, point, bow, greet, hand, arm; or, unnamed, the root
  travels < 0.3 m and every leg joint stays within a 0.35 rad range.
- ``whole_body_primitive``: names with walk, run, jog, turn, step, stand, squat, sit; or the root height
  varies < 0.15 m and the torso tilts < 0.35 rad from upright.
- ``whole_body_complex``: names with dance, jump, kick, punch, fight, fall, crawl, roll, cartwheel, and
  everything else.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass

import numpy as np

from humanoid_retarget.io.motion import RobotMotion
from humanoid_retarget.sim.model import SimModel
from humanoid_retarget.sim.reference import Reference, make_reference
from humanoid_retarget.sim.terminations import TRACKED_BODIES
from humanoid_retarget.sim.tracker import TrackerConfig, TrackResult, track

_UPPER = re.compile(r"wave|raise|clap|point|bow|greet|hand|arm", re.I)
_PRIMITIVE = re.compile(r"walk|run|jog|turn|step|stand|squat|sit", re.I)
_COMPLEX = re.compile(r"danc|jump|kick|punch|fight|fall|crawl|roll|cartwheel|spin|hop", re.I)


def length_group(frames: int, fps: float) -> str:
  n = frames * 120.0 / fps
  return "short" if n < 250 else "medium" if n <= 1000 else "long"


def complexity_group(name: str, motion: RobotMotion | None = None) -> str:
  """Complexity class of a clip (rule in the module docstring)."""
  base = os.path.basename(name)
  if _COMPLEX.search(base):
    return "whole_body_complex"
  if _UPPER.search(base):
    return "upper_body"
  if _PRIMITIVE.search(base):
    return "whole_body_primitive"
  if motion is None:
    return "whole_body_complex"
  travel = np.linalg.norm(motion.root_pos[:, :2] - motion.root_pos[:1, :2], axis=1).max()
  legs = [i for i, n in enumerate(motion.joint_names) if re.search(r"hip|knee|ankle", n)]
  leg_range = np.ptp(motion.dof_pos[:, legs], axis=0).max() if legs else 0.0
  if travel < 0.3 and leg_range < 0.35:
    return "upper_body"
  w, x, y, z = motion.root_quat.T
  tilt = np.arccos(np.clip(1.0 - 2.0 * (x * x + y * y), -1.0, 1.0)).max()
  if np.ptp(motion.root_pos[:, 2]) < 0.15 and tilt < 0.35:
    return "whole_body_primitive"
  return "whole_body_complex"


@dataclass
class ClipTracking:
  clip: str
  frames: int  # source frames
  fps: float  # source rate
  success: bool
  failed_at_s: float  # seconds into the clip, -1 when it succeeded
  mpjpe_cm: float
  w_mpjpe_cm: float
  realtime_factor: float
  length: str
  complexity: str

  def as_dict(self) -> dict:
    return asdict(self)


def tracking_errors(sim: SimModel, ref: Reference, res: TrackResult) -> tuple[float, float]:
  """(MPJPE, W-MPJPE) in cm over the simulated frames, the 14 tracked bodies."""
  tb = np.array([sim.body_index(n) for n in TRACKED_BODIES])
  root = sim.body_index("pelvis")
  n = len(res.body_pos)
  sp, rp = res.body_pos[:, tb], ref.body_pos[:n, tb]
  w = np.linalg.norm(sp - rp, axis=-1).mean()
  rel = np.linalg.norm((sp - res.body_pos[:, root, None]) - (rp - ref.body_pos[:n, root, None]), axis=-1).mean()
  return float(rel * 100.0), float(w * 100.0)


def physics_motion(sim: SimModel, res: TrackResult, motion: RobotMotion) -> RobotMotion:
  """The simulated robot as a motion file (format 1, method 'physics', at the control rate)."""
  J = sim.num_joints
  order = [sim.joint_names.index(n) for n in motion.joint_names] if set(motion.joint_names) == set(sim.joint_names) \
    else list(range(J))
  names = motion.joint_names if len(order) == J and set(motion.joint_names) == set(sim.joint_names) else sim.joint_names
  return RobotMotion(
    robot=motion.robot, fps=1.0 / sim.control_dt, joint_names=list(names), dof_pos=res.qpos[:, 7:][:, order],
    root_pos=res.qpos[:, :3], root_quat=res.qpos[:, 3:7], body_names=list(sim.body_names),
    body_pos_w=res.body_pos, body_quat_w=res.body_quat, contacts=res.contacts, method="physics",
    source=motion.source, extras={"reference_method": np.array(motion.method)},
  )


def evaluate_clip(sim: SimModel, motion: RobotMotion, name: str, cfg: TrackerConfig | None = None
                  ) -> tuple[ClipTracking, TrackResult, Reference]:
  ref = make_reference(motion, sim)
  res = track(sim, ref, cfg)
  mp, wmp = tracking_errors(sim, ref, res)
  row = ClipTracking(
    clip=name, frames=motion.num_frames, fps=motion.fps, success=res.success,
    failed_at_s=-1.0 if res.success else res.failed_at * sim.control_dt, mpjpe_cm=mp, w_mpjpe_cm=wmp,
    realtime_factor=res.realtime_factor, length=length_group(motion.num_frames, motion.fps),
    complexity=complexity_group(name, motion),
  )
  return row, res, ref


def _summary(rows: list[ClipTracking]) -> dict:
  if not rows:
    return {"clips": 0, "success_rate": None, "mpjpe_cm": None, "w_mpjpe_cm": None}
  ok = [r for r in rows if r.success]
  return {
    "clips": len(rows),
    "success_rate": float(np.mean([r.success for r in rows])),
    "mpjpe_cm": float(np.mean([r.mpjpe_cm for r in rows])),
    "w_mpjpe_cm": float(np.mean([r.w_mpjpe_cm for r in rows])),
    "mpjpe_success_cm": float(np.mean([r.mpjpe_cm for r in ok])) if ok else None,
  }


def aggregate(rows: list[ClipTracking]) -> dict:
  """Overall and per-group figures. MPJPE means are over clips (each clip over its simulated frames)."""
  out = _summary(rows)
  out["by_length"] = {g: _summary([r for r in rows if r.length == g]) for g in ("short", "medium", "long")}
  out["by_complexity"] = {g: _summary([r for r in rows if r.complexity == g])
                          for g in ("upper_body", "whole_body_primitive", "whole_body_complex")}
  out["realtime_factor"] = float(np.mean([r.realtime_factor for r in rows])) if rows else None
  return out
