"""Exporters from the motion file (format 1) to the formats the tracking stacks read.

- ``csv``: the 36-column G1 CSV (root xyz, quaternion xyzw, 29 joints in MJCF order, no header);
  BeyondMimic, mjlab and Unitree read it. G1 only.
- ``mjlab``: tracking npz at 50 fps, bodies in MuJoCo depth-first order (30 G1 bodies).
- ``beyondmimic``: the same npz with joints and bodies in PhysX breadth-first order (IsaacLab).
- ``gmr``: GMR's pickle (fps, root_pos, root_rot xyzw, dof_pos), loadable under NumPy 1 and 2.

Tracking npz files carry ``joint_names``, ``body_names`` and ``dialect`` so a wrong order is visible.
"""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from humanoid_retarget.errors import MotionFileError, RetargetError
from humanoid_retarget.io.motion import RobotMotion, atomic_write_bytes, save_npz_atomic
from humanoid_retarget.robot.config import Robot

FORMATS = ("mjlab", "beyondmimic", "csv", "gmr")
G1_NAMES = ("unitree_g1_29dof",)


def resample_motion_state(motion: RobotMotion, fps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Root position (lerp), root quaternion wxyz (slerp) and joints (lerp) at ``fps``."""
  T = motion.num_frames
  t_src = np.arange(T) / motion.fps
  n = int(np.floor(t_src[-1] * fps + 1e-9)) + 1
  t_new = np.arange(n) / fps
  if T == 1:
    return motion.root_pos.copy(), motion.root_quat.copy(), motion.dof_pos.copy()
  lerp = lambda a: np.stack([np.interp(t_new, t_src, a[:, k]) for k in range(a.shape[1])], axis=1)
  rq = Slerp(t_src, Rotation.from_quat(motion.root_quat, scalar_first=True))(t_new)
  return lerp(motion.root_pos), rq.as_quat(scalar_first=True), lerp(motion.dof_pos)


def angular_velocity(quat_wxyz: np.ndarray, dt: float) -> np.ndarray:
  """World-frame angular velocity from a quaternion track (T, ..., 4): central differences
  (rotation vector of q[t+1] q[t-1]^-1 over 2 dt), one-sided at the ends."""
  shp = quat_wxyz.shape
  T = shp[0]
  q = quat_wxyz.reshape(T, -1, 4)
  out = np.zeros((T, q.shape[1], 3))
  if T < 2:
    return out.reshape(*shp[:-1], 3)
  R = [Rotation.from_quat(q[:, k], scalar_first=True) for k in range(q.shape[1])]
  for k, r in enumerate(R):
    if T >= 3:
      out[1:-1, k] = (r[2:] * r[:-2].inv()).as_rotvec() / (2 * dt)
    out[0, k] = (r[1] * r[0].inv()).as_rotvec() / dt
    out[-1, k] = (r[-1] * r[-2].inv()).as_rotvec() / dt
  return out.reshape(*shp[:-1], 3)


def bfs_order(parents: np.ndarray) -> list[int]:
  """Breadth-first order of a tree given parent indices (-1 = root), children in index order."""
  children: dict[int, list[int]] = {}
  for i, p in enumerate(parents):
    children.setdefault(int(p), []).append(i)
  order, queue = [], list(children.get(-1, []))
  while queue:
    b = queue.pop(0)
    order.append(b)
    queue.extend(children.get(b, []))
  return order


def tracking_arrays(motion: RobotMotion, robot: Robot, fps: float = 50.0, dialect: str = "mjlab") -> dict[str, np.ndarray]:
  """The whole-body-tracking npz arrays for ``dialect`` ('mjlab' or 'beyondmimic')."""
  from humanoid_retarget.retarget.kinematic import make_motion

  if dialect not in ("mjlab", "beyondmimic"):
    raise RetargetError(f"unknown tracking dialect '{dialect}' (mjlab or beyondmimic)")
  _check_robot(motion, robot)
  rp, rq, q = resample_motion_state(motion, fps)
  R = Rotation.from_quat(rq, scalar_first=True).as_matrix()
  m = make_motion(robot, rp, R, q, np.zeros((len(q), 2), bool), fps, motion.method, motion.source)
  dt = 1.0 / fps
  joint_vel = np.gradient(q, dt, axis=0) if len(q) > 1 else np.zeros_like(q)
  lin = np.gradient(m.body_pos_w, dt, axis=0) if len(q) > 1 else np.zeros_like(m.body_pos_w)
  ang = angular_velocity(m.body_quat_w, dt)
  jn = list(robot.model.joint_names)
  bn = list(robot.model.body_names)
  if dialect == "mjlab":
    jorder = list(range(len(jn)))
    border = list(range(len(bn)))
  else:
    border = bfs_order(robot.model.body_parent)
    # Joints follow the bodies they move (one hinge per body for these robots).
    jorder = [j for b in border for j in robot.model.body_joints[b]]
  return {
    "fps": np.array([fps], dtype=np.float64),
    "joint_pos": q[:, jorder].astype(np.float32),
    "joint_vel": joint_vel[:, jorder].astype(np.float32),
    "body_pos_w": m.body_pos_w[:, border].astype(np.float32),
    "body_quat_w": m.body_quat_w[:, border].astype(np.float32),
    "body_lin_vel_w": lin[:, border].astype(np.float32),
    "body_ang_vel_w": ang[:, border].astype(np.float32),
    "joint_names": np.array([jn[j] for j in jorder]),
    "body_names": np.array([bn[b] for b in border]),
    "dialect": np.array(dialect),
  }


def _check_robot(motion: RobotMotion, robot: Robot) -> None:
  if list(motion.joint_names) != list(robot.model.joint_names):
    raise MotionFileError(
      f"motion joints do not match robot '{robot.name}' ({len(motion.joint_names)} vs {robot.model.num_joints} joints)",
      motion.source)


def csv_rows(motion: RobotMotion) -> np.ndarray:
  """(T, 36) rows: root xyz, quaternion xyzw, 29 joints. Refuses robots other than the G1 29-DoF."""
  if motion.robot not in G1_NAMES or motion.dof_pos.shape[1] != 29:
    raise RetargetError(
      f"the 36-column CSV is defined for the Unitree G1 29-DoF only; this motion is for '{motion.robot}' "
      f"({motion.dof_pos.shape[1]} joints): use --format mjlab or gmr")
  xyzw = motion.root_quat[:, [1, 2, 3, 0]]
  return np.concatenate([motion.root_pos, xyzw, motion.dof_pos], axis=1)


class _PortablePickler(pickle.Pickler):
  """Pickles numpy arrays as ``numpy.array(list, dtype)`` so NumPy 1.x can read files written under 2.x."""

  def reducer_override(self, obj):
    if isinstance(obj, np.ndarray):
      return np.array, (obj.tolist(), str(obj.dtype))
    if isinstance(obj, np.generic):
      return type(obj.item()), (obj.item(),)
    return NotImplemented


def gmr_dict(motion: RobotMotion) -> dict:
  return {
    "fps": float(motion.fps),
    "root_pos": motion.root_pos.astype(np.float64),
    "root_rot": motion.root_quat[:, [1, 2, 3, 0]].astype(np.float64),
    "dof_pos": motion.dof_pos.astype(np.float64),
    "local_body_pos": None,
    "link_body_list": None,
  }


def export_motion(motion: RobotMotion, fmt: str, out: str | os.PathLike, robot: Robot | None = None,
                  fps: float | None = None) -> None:
  """Write ``motion`` to ``out`` in format ``fmt`` (atomically)."""
  out = os.fspath(out)
  if fmt == "csv":
    buf = io.StringIO()
    np.savetxt(buf, csv_rows(motion), delimiter=",", fmt="%.6f")
    atomic_write_bytes(out, buf.getvalue().encode())
  elif fmt in ("mjlab", "beyondmimic"):
    if robot is None:
      raise RetargetError("a robot is needed for tracking npz export")
    save_npz_atomic(out, tracking_arrays(motion, robot, fps or 50.0, fmt))
  elif fmt == "gmr":
    buf = io.BytesIO()
    _PortablePickler(buf, protocol=2).dump(gmr_dict(motion))
    atomic_write_bytes(out, buf.getvalue())
  else:
    raise RetargetError(f"unknown export format '{fmt}' (choose from {', '.join(FORMATS)})")


def load_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Read a 36-column G1 CSV: root_pos (T, 3), root_quat wxyz (T, 4), dof_pos (T, 29)."""
  path = os.fspath(path)
  try:
    a = np.loadtxt(path, delimiter=",", ndmin=2)
  except ValueError as e:
    raise MotionFileError(f"not a numeric CSV ({e})", path) from None
  if a.shape[1] != 36:
    raise MotionFileError(f"expected 36 columns (xyz, quaternion xyzw, 29 joints), found {a.shape[1]}", path)
  return a[:, :3], a[:, [6, 3, 4, 5]], a[:, 7:]


def load_gmr_pickle(path: str | os.PathLike) -> dict:
  path = os.fspath(path)
  with open(path, "rb") as f:
    d = pickle.load(f)
  for k in ("fps", "root_pos", "root_rot", "dof_pos"):
    if k not in d:
      raise MotionFileError(f"not a GMR pickle: missing '{k}'", path)
  return d
