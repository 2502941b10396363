"""Quality metrics of robot motions (issue 2 definitions).

- joint-jump frames: max |dq| over one 1/30 s step > 0.5 rad
- self-collision frames: MuJoCo contact between collision geoms of two different bodies (hands and
  wrists excluded; MuJoCo's parent/child filter and the MJCF's <exclude> pairs apply)
- joint-limit frames: any joint within 0.05 rad of its bound
- penetration frames: lowest foot point below -2 cm
- lowest-foot height: mean over frames of the lower foot's lowest point (floating shows here)
- foot skate: mean horizontal speed of a foot while in contact (cm/s)
- key-point error: tracked link points against the scaled human, root-relative, heading-aligned (cm)
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation

from humanoid_retarget.io.motion import RobotMotion
from humanoid_retarget.robot.config import Robot

JUMP_RAD = 0.5
LIMIT_RAD = 0.05
PENETRATION_M = -0.02
_EXCLUDE_RE = re.compile(r"wrist|hand|palm|finger|thumb", re.I)


@dataclass
class ClipMetrics:
  clip: str
  method: str
  frames: int
  joint_jump_pct: float
  self_collision_pct: float
  joint_limit_pct: float
  penetration_pct: float
  lowest_foot_mean_cm: float
  foot_skate_cms: float
  keypoint_error_cm: float | None = None
  max_joint_vel: float = 0.0
  velocity_limit_pct: float = 0.0

  def as_dict(self) -> dict:
    return asdict(self)


def joint_jump_mask(dof: np.ndarray, fps: float) -> np.ndarray:
  """(T,) bool: frame t jumps if max |q[t] - q[t - k]| > 0.5 rad with k frames = 1/30 s."""
  k = max(int(round(fps / 30.0)), 1)
  out = np.zeros(dof.shape[0], dtype=bool)
  if dof.shape[0] > k:
    out[k:] = np.abs(dof[k:] - dof[:-k]).max(axis=1) > JUMP_RAD
  return out


def _excluded_bodies(robot: Robot) -> set[int]:
  m = robot.model
  ex = set()
  for b, n in enumerate(m.body_names):
    if _EXCLUDE_RE.search(n):
      ex.add(b)
  for h in (robot.config.left_hand, robot.config.right_hand):
    if h:
      hb = m.body_index(h)
      ex.update(int(b) for b in np.flatnonzero(m.is_ancestor[hb]))
  return ex


def self_collision_mask(robot: Robot, motion: RobotMotion) -> np.ndarray:
  """(T,) bool: frames with a penetrating contact between two different non-hand bodies."""
  mm = robot.model.mj_model
  d = mujoco.MjData(mm)
  ex = {b + 1 for b in _excluded_bodies(robot)}  # MuJoCo body ids (world = 0)
  T = motion.num_frames
  out = np.zeros(T, dtype=bool)
  qpos = np.concatenate([motion.root_pos, motion.root_quat, motion.dof_pos], axis=1)
  gb = mm.geom_bodyid
  for t in range(T):
    d.qpos[:] = qpos[t]
    mujoco.mj_kinematics(mm, d)
    mujoco.mj_collision(mm, d)
    for c in d.contact[: d.ncon]:
      if c.dist >= 0:
        continue
      b1, b2 = gb[c.geom1], gb[c.geom2]
      if b1 == b2 or b1 in ex or b2 in ex or b1 == 0 or b2 == 0:
        continue
      out[t] = True
      break
  return out


def foot_lowest_points(robot: Robot, motion: RobotMotion) -> np.ndarray:
  """(T, 2) lowest sole point height of the left and right foot."""
  out = []
  for side in ("left", "right"):
    b = robot.foot_bodies[side]
    R = Rotation.from_quat(motion.body_quat_w[:, b], scalar_first=True).as_matrix()
    pts = motion.body_pos_w[:, b, None, :] + np.einsum("tij,pj->tpi", R, robot.foot_points[side])
    out.append(pts[..., 2].min(axis=1))
  return np.stack(out, axis=1)


def _heading_frames(R: np.ndarray) -> np.ndarray:
  """Yaw-only rotations (T, 3, 3) from body rotations (T, 3, 3) (x axis projected on the floor)."""
  x = R[:, :, 0]
  yaw = np.arctan2(x[:, 1], x[:, 0])
  return Rotation.from_euler("z", yaw[:, None]).as_matrix()


def keypoint_error_cm(robot: Robot, motion: RobotMotion, targets) -> float:
  """Mean distance of tracked link points to the scaled human, root-relative and heading-aligned (cm)."""
  links = robot.config.links
  ks = np.array([k for k, lk in enumerate(links) if lk.position_weight > 0])
  b = robot.link_body[ks]
  R = Rotation.from_quat(motion.body_quat_w[:, b].reshape(-1, 4), scalar_first=True).as_matrix().reshape(-1, len(ks), 3, 3)
  pts = motion.body_pos_w[:, b] + np.einsum("tkij,kj->tki", R, robot.link_point[ks])
  root_k = next(k for k, lk in enumerate(links) if lk.mode == "root")
  root_i = int(np.flatnonzero(ks == root_k)[0])
  Rr = _heading_frames(R[:, root_i])
  Rh = _heading_frames(targets.rot[:, root_k])
  T = min(len(pts), len(targets.raw_pos))
  a = np.einsum("tji,tkj->tki", Rr[:T], pts[:T] - pts[:T, root_i : root_i + 1])
  h = targets.raw_pos[:T, ks]
  h = np.einsum("tji,tkj->tki", Rh[:T], h - h[:, root_i : root_i + 1])
  return float(np.mean(np.linalg.norm(a - h, axis=-1)) * 100.0)


def evaluate_motion(robot: Robot, motion: RobotMotion, human=None, clip: str = "") -> ClipMetrics:
  """All metrics of one motion; ``human`` (HumanMotion) enables the key-point error."""
  from humanoid_retarget.retarget.targets import build_targets

  T = motion.num_frames
  q = motion.dof_pos
  lo, hi = robot.model.joint_range[:, 0], robot.model.joint_range[:, 1]
  jumps = joint_jump_mask(q, motion.fps)
  near = ((q - lo) < LIMIT_RAD) | ((hi - q) < LIMIT_RAD)
  coll = self_collision_mask(robot, motion)
  low = foot_lowest_points(robot, motion)
  pen = low.min(axis=1) < PENETRATION_M
  # Foot skate: horizontal speed of the foot body while its contact flag is set.
  skate = []
  for s, side in enumerate(("left", "right")):
    b = robot.foot_bodies[side]
    if T > 1:
      v = np.linalg.norm(np.diff(motion.body_pos_w[:, b, :2], axis=0), axis=-1) * motion.fps
      c = motion.contacts[1:, s] & motion.contacts[:-1, s]
      skate.extend(v[c].tolist())
  vel = np.abs(np.diff(q, axis=0)) * motion.fps if T > 1 else np.zeros((1, q.shape[1]))
  vlim = robot.velocity_limits
  kp = None
  if human is not None:
    h = human.resample(motion.fps) if abs(human.fps - motion.fps) > 1e-6 else human
    targets = build_targets(h, robot)
    kp = keypoint_error_cm(robot, motion, targets)
  return ClipMetrics(
    clip=clip or motion.source, method=motion.method, frames=T,
    joint_jump_pct=100.0 * jumps.mean(), self_collision_pct=100.0 * coll.mean(),
    joint_limit_pct=100.0 * near.any(axis=1).mean(), penetration_pct=100.0 * pen.mean(),
    lowest_foot_mean_cm=100.0 * float(low.min(axis=1).mean()),
    foot_skate_cms=100.0 * float(np.mean(skate)) if skate else 0.0, keypoint_error_cm=kp,
    max_joint_vel=float(vel.max()) if vel.size else 0.0,
    velocity_limit_pct=100.0 * float((vel > vlim).any(axis=1).mean()) if T > 1 else 0.0,
  )


def aggregate(rows: list[ClipMetrics]) -> dict:
  """Frame-weighted means of the percentages and errors over clips."""
  if not rows:
    return {}
  w = np.array([r.frames for r in rows], dtype=float)
  out = {"clips": len(rows), "frames": int(w.sum())}
  for key in ("joint_jump_pct", "self_collision_pct", "joint_limit_pct", "penetration_pct",
              "lowest_foot_mean_cm", "foot_skate_cms", "velocity_limit_pct"):
    out[key] = float(np.average([getattr(r, key) for r in rows], weights=w))
  kps = [(r.keypoint_error_cm, r.frames) for r in rows if r.keypoint_error_cm is not None]
  if kps:
    out["keypoint_error_cm"] = float(np.average([k for k, _ in kps], weights=[f for _, f in kps]))
  out["max_joint_vel"] = float(max(r.max_joint_vel for r in rows))
  return out
